// The page's live counters, also window.wtpulsar: the metrics panel shows them, and
// tests/test_browser_*.py and bench/glass_to_glass.py read them. Counters and figures only; each
// module keeps its working state to itself.

export const S = window.wtpulsar = {
  transport: null, errors: [], pub: { frames: 0, bytes: 0, acked: -1, dropped: 0, keyframes: 0, audio: 0,
         unacked: 0, resent: 0, heldSent: 0, reconnects: 0, reconnecting: false, overflowDropped: 0, overflows: 0 },
  view: { frames: 0, segments: 0, dropped: 0, latencies: [], hops: {}, mode: null, currentTime: 0, initSeen: false,
          audioSegments: 0, audioPlayed: 0, avSkewMs: null, hopLog: [], dropReasons: {}, chatLatencies: [],
          status: "idle", ends: [] },  // status: idle | waiting | nobody | starting | playing | ended
  chat: [], notes: [], chatNotes: [], verdicts: [], clock: { offset: 0, rtt: null, steps: 0, replies: 0 },
};

export function pct(arr, q) {  // the q-quantile of a list of numbers, or null for none
  if (!arr.length) return null;
  const s = [...arr].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}
