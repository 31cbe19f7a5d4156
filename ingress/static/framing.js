// The browser↔ingress records (schemas/FRAMING.md, version 1): the page's copy of schemas/framing_codec.py.
// Pure: no DOM, no clock, no state. tests/test_browser_framing.py checks it against the Python codec.

export const KIND = { video: 1, screen: 2, audio: 3, chat: 4, file: 5 };
export const KIND_NAME = { 1: "video", 2: "screen", 3: "audio", 4: "chat", 5: "file" };
export const CODEC = { vp8: 1, vp9: 2, h264: 3, opus: 6, json: 8 };
export const REC = { ACK: 0x10, NOTICE: 0x11, VERDICT: 0x12, CLOCK: 0x13, DELIVERY: 0x20 };
export const VERDICT_ACTION = { 0: "allow", 1: "mask", 2: "drop", 3: "flag" };
export const MEDIA_KINDS = new Set([KIND.video, KIND.screen, KIND.audio]);

export const te = new TextEncoder(), td = new TextDecoder();

// FRAMING.md "Records": one frame (media or chat) as the page sends it.
export function frameRecord(kind, codec, key, seq, ptsUs, captureTs, w, h, streamId, payload) {
  const sid = te.encode(streamId);
  const body = 33 + sid.length + payload.byteLength;  // bytes after the u32 length
  const buf = new Uint8Array(4 + body), dv = new DataView(buf.buffer);
  dv.setUint32(0, body); dv.setUint8(4, 1); dv.setUint8(5, kind); dv.setUint8(6, codec); dv.setUint8(7, key ? 1 : 0);
  dv.setBigUint64(8, BigInt(seq)); dv.setBigInt64(16, BigInt(Math.round(ptsUs))); dv.setFloat64(24, captureTs);
  dv.setUint16(32, w || 0); dv.setUint16(34, h || 0); dv.setUint8(36, sid.length);
  buf.set(sid, 37); buf.set(new Uint8Array(payload.buffer || payload, payload.byteOffset || 0, payload.byteLength), 37 + sid.length);
  return buf;
}

// FRAMING.md "Clock": a request carries its send time (`sentAt`, ms on the page's clock); received = sent = 0.
export function clockRequest(sentAt) {
  const buf = new Uint8Array(30), dv = new DataView(buf.buffer);
  dv.setUint32(0, 26); dv.setUint8(4, 1); dv.setUint8(5, REC.CLOCK); dv.setFloat64(6, sentAt);
  return buf;
}

export function parseRecord(rec) {  // rec: Uint8Array of one whole record including the length prefix
  const dv = new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
  const version = dv.getUint8(4), type = dv.getUint8(5);
  if (version !== 1) throw new Error("unsupported record version " + version);
  let o = 6;
  if (type === REC.ACK) {
    const status = dv.getUint8(o), code = dv.getUint32(o + 1), seq = Number(dv.getBigUint64(o + 5)); o += 13;
    const n = dv.getUint8(o); const stream = td.decode(rec.subarray(o + 1, o + 1 + n)); o += 1 + n;
    const m = dv.getUint16(o); const reason = td.decode(rec.subarray(o + 2, o + 2 + m));
    return { type, status, code, seq, stream, reason };
  }
  if (type === REC.NOTICE) {
    const code = dv.getUint32(o); o += 4; const n = dv.getUint8(o);
    const stream = td.decode(rec.subarray(o + 1, o + 1 + n)); o += 1 + n;
    const m = dv.getUint16(o); return { type, code, stream, reason: td.decode(rec.subarray(o + 2, o + 2 + m)) };
  }
  if (type === REC.VERDICT) {  // what moderation decided about a chat frame this session sent
    const action = dv.getUint8(o), seq = Number(dv.getBigUint64(o + 1)), n = dv.getUint8(o + 9);
    const stream = td.decode(rec.subarray(o + 10, o + 10 + n));
    return { type, action, seq, stream, payload: rec.subarray(o + 10 + n) };
  }
  if (type === REC.CLOCK) return { type, origin: dv.getFloat64(o), received: dv.getFloat64(o + 8), transmitted: dv.getFloat64(o + 16) };
  if (type === REC.DELIVERY) {
    const kind = dv.getUint8(o), count = dv.getUint8(o + 1); o += 2;
    const props = {};
    for (let i = 0; i < count; i++) {
      const kl = dv.getUint8(o); const k = td.decode(rec.subarray(o + 1, o + 1 + kl)); o += 1 + kl;
      const vl = dv.getUint16(o); props[k] = td.decode(rec.subarray(o + 2, o + 2 + vl)); o += 2 + vl;
    }
    return { type, kind, props, payload: rec.subarray(o) };
  }
  return { type };  // unknown types are skipped, not fatal
}

export class RecordReader {  // length-prefixed records back to back on a stream
  constructor() { this.buf = new Uint8Array(0); }
  feed(chunk) {
    const joined = new Uint8Array(this.buf.length + chunk.length); joined.set(this.buf); joined.set(chunk, this.buf.length);
    const out = []; let o = 0;
    while (joined.length - o >= 4) {
      const len = new DataView(joined.buffer, o, 4).getUint32(0);
      if (joined.length - o < 4 + len) break;
      out.push(joined.slice(o, o + 4 + len)); o += 4 + len;
    }
    this.buf = joined.slice(o);
    return out;
  }
}
