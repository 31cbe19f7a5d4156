// The resend buffer: nothing is lost. Every frame is kept until the ingress acknowledges it
// (schemas/FRAMING.md "Ack": OK = broker-acknowledged; cumulative per media stream id, exactly one seq
// for chat). After a dropped session the page reconnects with backoff and resends what is
// unacknowledged, oldest first. Bounded: past the bound the oldest media is dropped up to its stream's
// next keyframe (counted in the metrics); chat is never dropped silently.
import { KIND, MEDIA_KINDS } from "./framing.js";
import { S } from "./stats.js";

export const RECONNECT_MAX_MS = 8000;  // the longest wait between two reconnection attempts
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class Outbox {
  constructor(maxFrames, maxBytes) { this.kept = new Map(); this.bytes = 0; this.maxFrames = maxFrames; this.maxBytes = maxBytes; }
  // e: { sid, seq, kind, key, rec, channel }. Returns false when a chat frame cannot be kept.
  add(e) {
    while (this.kept.size + 1 > this.maxFrames || this.bytes + e.rec.byteLength > this.maxBytes) {
      const n = this._dropOldestMedia();
      if (!n) { if (!MEDIA_KINDS.has(e.kind)) return false; S.pub.overflowDropped++; S.pub.overflows++; return true; }
      S.pub.overflowDropped += n; S.pub.overflows++;
    }
    this.kept.set(e.sid + ":" + e.seq, e); this.bytes += e.rec.byteLength; return true;
  }
  ack(r) {  // one Ack record; returns the entry to send again after a REJECTED, else null
    const exact = this.kept.get(r.stream + ":" + r.seq);
    if (r.status !== 0) { if (exact) exact.rejected = true; return exact || null; }
    if (exact && !MEDIA_KINDS.has(exact.kind)) { this._forget(r.stream + ":" + r.seq); return null; }
    // media: cumulative up to seq, except frames REJECTED and not sent again yet
    for (const [k, e] of this.kept) if (e.sid === r.stream && e.seq <= r.seq && MEDIA_KINDS.has(e.kind) && !e.rejected) this._forget(k);
    return null;
  }
  entries() { for (const e of this.kept.values()) e.rejected = false; return [...this.kept.values()]; }
  clear() { this.kept.clear(); this.bytes = 0; }
  _forget(k) { const e = this.kept.get(k); this.kept.delete(k); this.bytes -= e.rec.byteLength; }
  _dropOldestMedia() {
    let oldest = null; for (const e of this.kept.values()) if (MEDIA_KINDS.has(e.kind)) { oldest = e; break; }
    if (!oldest) return 0;
    let n = 0;
    for (const [k, e] of this.kept) {
      if (e.sid !== oldest.sid) continue;
      if (n > 0 && e.key && e.kind !== KIND.audio) break;  // the stream resumes at this keyframe
      this._forget(k); n++;
      if (e.kind === KIND.audio) break;  // audio packets decode alone: one is enough
    }
    return n;
  }
}

// A fresh session: everything unacknowledged, in order. Returns [resent, held]: how many had gone out on
// an earlier session (true resends), and how many were never sent (queued while no session was open,
// e.g. the first chat message while its session opens, or frames captured while reconnecting), which go
// out now for the first time.
export function resendAll(session, box, trackOf) {
  const entries = box.entries(), opened = new Set();
  let resent = 0;
  for (const e of entries) {
    const t = trackOf(e);
    const first = !opened.has(e.channel); opened.add(e.channel);
    if (e.sentOn && e.sentOn !== session) resent++;
    t.pending++; e.sentOn = session;
    t.chain = t.chain.then(() => session.send(e.channel, e.rec, first || (e.key && e.channel.startsWith("group:"))))
      .catch((err) => console.warn("resend", err)).finally(() => { t.pending--; });
  }
  return [resent, entries.length - resent];
}
