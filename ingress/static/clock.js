// The page's offset to the ingress's clock (FRAMING.md "Clock"; docs/clock-sync.md).
// capture_ts and every t_* the pipeline stamps are on the ingress's clock; this page's may be off by
// seconds, or step (a suspend, an NTP correction on either side). As NTP does (docs/clock-sync.md), each
// CLOCK request carries the page's send time t0, the reply the ingress's receive and send times t1, t2,
// and the page reads t3 on arrival: offset = ((t1 - t0) + (t2 - t3)) / 2, round trip = (t3 - t0) - (t2 - t1).
// Of the last CLOCK_WINDOW samples the one with the shortest round trip wins (its error is at most half
// of it). A sample further from the estimate than both their half round trips (+ slack) says a clock
// stepped: the window restarts from it. Requests go out every CLOCK_PERIOD_MS on every session, and at
// once when this page's two clocks part: after a suspend the wall clock (Date.now) has jumped while the
// monotonic one behind performance.now() has not, so their difference moving says "measure again now".
import { S } from "./stats.js";

export const CLOCK_PERIOD_MS = 1000;
const CLOCK_WINDOW = 8, CLOCK_STEP_SLACK_MS = 50, CLOCK_MAX_RTT_MS = 5000;
const CLOCK_WATCH_MS = 250, CLOCK_JUMP_MS = 200;
// Frames captured between a clock jump on this side and the first CLOCK reply after it wait (at most
// CLOCK_RESYNC_WAIT_MS) to be stamped with the new offset; what comes after them waits too, in order.
const CLOCK_RESYNC_WAIT_MS = 1000;

export const now = () => performance.timeOrigin + performance.now();  // this page's clock (pts, timers)
export const clockSync = { offset: 0, rtt: null, samples: [], synced: false, steps: 0, replies: 0, resyncing: false };
export const serverNow = () => now() + clockSync.offset;  // the ingress's clock, as capture_ts is stamped
// Open sessions; each sends CLOCK requests and is asked for a burst of them when this side's clock jumps.
export const clockSessions = new Set();
const stamps = { queue: [], timer: null };

export function onClockReply(r) {
  const t3 = now(), rtt = (t3 - r.origin) - (r.transmitted - r.received);
  if (!(rtt >= 0) || rtt > CLOCK_MAX_RTT_MS) return;  // straddled a clock step on this side, or far too slow
  const offset = ((r.received - r.origin) + (r.transmitted - t3)) / 2;
  if (clockSync.resyncing && clockSync.samples.length) { clockSync.samples = []; clockSync.steps++; }  // this side jumped
  else if (clockSync.synced && Math.abs(offset - clockSync.offset) > (rtt + clockSync.rtt) / 2 + CLOCK_STEP_SLACK_MS) {
    clockSync.samples = []; clockSync.steps++;  // a clock stepped: older samples describe the old offset
  }
  clockSync.samples.push({ offset, rtt }); if (clockSync.samples.length > CLOCK_WINDOW) clockSync.samples.shift();
  const best = clockSync.samples.reduce((a, b) => (b.rtt < a.rtt ? b : a));
  clockSync.offset = best.offset; clockSync.rtt = best.rtt; clockSync.synced = true; clockSync.replies++;
  S.clock = { offset: best.offset, rtt: best.rtt, steps: clockSync.steps, replies: clockSync.replies };
  if (clockSync.resyncing) { clockSync.resyncing = false; clearTimeout(stamps.timer); releaseStamps(); }
}

let wallMinusPage = Date.now() - now();
export function clockCheck() {  // every CLOCK_WATCH_MS, and before each captured frame is stamped
  const d = Date.now() - now();
  if (Math.abs(d - wallMinusPage) > CLOCK_JUMP_MS && clockSync.synced) {  // a suspend or a clock step here
    clockSync.synced = false; clockSync.resyncing = true;  // the next reply starts a new window
    for (const s of clockSessions) s._clockBurst();
    clearTimeout(stamps.timer); stamps.timer = setTimeout(() => { clockSync.resyncing = false; releaseStamps(); }, CLOCK_RESYNC_WAIT_MS);
  }
  wallMinusPage = d;
}
setInterval(clockCheck, CLOCK_WATCH_MS);

export function whenStamped(send) { if (stamps.queue.length || clockSync.resyncing) stamps.queue.push(send); else send(); }
function releaseStamps() { const q = stamps.queue; stamps.queue = []; for (const send of q) send(); }
// The capture time of a frame taken at page time t: final now, or (during a re-measurement) null, to be
// computed when it is sent (captureOn).
export const captureAt = (t) => (clockSync.resyncing ? null : t + clockSync.offset);
export const captureOn = (t, cap) => (cap === null ? t + clockSync.offset : cap);
export async function clockSynced(timeoutMs) {  // the first estimate, or give up after timeoutMs (offset stays 0)
  const until = now() + timeoutMs;
  while (!clockSync.synced && now() < until) await new Promise((r) => setTimeout(r, 20));
}
