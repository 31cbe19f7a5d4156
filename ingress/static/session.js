// One session with the ingress, whatever carries it: WebTransport, else the WebSocket fallback
// (schemas/FRAMING.md "Where records travel", "WebSocket"). send(channel, record) and onRecord(parsed).
import { showInfo } from "./banner.js";
import { CLOCK_PERIOD_MS, clockSessions, now, onClockReply } from "./clock.js";
import { setPill } from "./dom.js";
import { clockRequest, parseRecord, REC, RecordReader } from "./framing.js";
import { FORCE_WS, params, SERVER, TOKEN } from "./params.js";
import { S } from "./stats.js";

let wtFailed = false;  // once WebTransport failed, the page's other sessions go straight to the fallback
export function retryWebTransport() { wtFailed = false; }

export async function fetchCertInfo() {
  let resp;
  try { resp = await fetch(SERVER + "/cert-hash", { cache: "no-store" }); }
  catch (e) { throw Object.assign(new Error(`Cannot reach the server at ${SERVER} (is \`wtpulsar up\` running?).`), { retry: true }); }
  if (!resp.ok) throw Object.assign(new Error(`The server at ${SERVER} answered ${resp.status} for /cert-hash.`), { retry: true });
  return await resp.json();
}
function hexToBytes(hex) { const out = new Uint8Array(hex.length / 2); for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16); return out; }
function wtUrl(info, query) {
  if (params.get("wt")) return params.get("wt") + "?" + query;
  let host = new URL(SERVER).hostname;
  // Chromium tries ::1 first for "localhost" over QUIC and does not fall back (docs/media-and-webtransport.md §3.3).
  if (host === "localhost") host = "127.0.0.1";
  return `https://${host}:${info.port}${info.path || "/wt"}?${query}`;
}
function wsUrl(query) { const u = new URL(SERVER); return `${u.protocol === "https:" ? "wss:" : "ws:"}//${u.host}/ws?${query}`; }

export class Session {
  constructor(query, onRecord, onClose) {
    this.query = `token=${encodeURIComponent(TOKEN)}&${query}`; this.onRecord = onRecord; this.onClose = onClose; this.closed = false;
    this.kind = null; this.wt = null; this.ws = null; this.channels = {};
  }
  async open() {
    const info = await fetchCertInfo();
    const wtMissing = typeof WebTransport === "undefined";
    if (!wtMissing && !FORCE_WS && !wtFailed) {
      const hash = params.get("certHash") ? hexToBytes(params.get("certHash")) : new Uint8Array(info.value);
      try {
        const wt = new WebTransport(wtUrl(info, this.query), { serverCertificateHashes: [{ algorithm: "sha-256", value: hash }] });
        await wt.ready;
        this.wt = wt; this.kind = "webtransport"; S.transport = "webtransport";
        setPill("transportState", "transport: WebTransport", "ok");
        wt.closed.then((c) => this._closed(c.closeCode || 0, c.reason || ""),
                       (e) => this._closed(0, String(e && e.message || e)));
        this._readIncoming(); this._readDatagrams(); this._startClock();
        return this;
      } catch (e) {
        console.warn("WebTransport failed", e);
        wtFailed = true;  // the page's other sessions go straight to the fallback
        showInfo("WebTransport could not connect (the server certificate was not trusted, or UDP port " +
                 info.port + " is blocked). Using the WebSocket fallback instead.");
      }
    } else if (wtMissing) {
      showInfo("This browser has no WebTransport; using the WebSocket fallback (higher latency under loss).");
    }
    await this._openWs();
    return this;
  }
  _openWs() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(wsUrl(this.query)); ws.binaryType = "arraybuffer";
      let opened = false;
      ws.onopen = () => { opened = true; this.ws = ws; this.kind = "websocket"; S.transport = "websocket";
        setPill("transportState", "transport: WebSocket (fallback)", "warn"); this._startClock(); resolve(this); };
      ws.onmessage = (ev) => { if (ev.data instanceof ArrayBuffer) this._deliver(new Uint8Array(ev.data)); };
      ws.onerror = () => { if (!opened) reject(Object.assign(new Error(`Cannot open the WebSocket to ${SERVER}.`), { retry: true })); };
      ws.onclose = (ev) => { if (opened) this._closed(ev.code === 1000 || ev.code === 1005 ? 0 : ev.code, ev.reason); };
    });
  }
  _deliver(rec) {
    try { const r = parseRecord(rec); if (r.type === REC.CLOCK) onClockReply(r); else this.onRecord(r); }
    catch (e) { console.error("bad record", e); }
  }
  _startClock() { clockSessions.add(this); this._clockBurst(); }
  _clockBurst() {  // four quick CLOCK requests for a fresh estimate, then one every CLOCK_PERIOD_MS
    clearTimeout(this.clockTimer);
    let sent = 0;
    const tick = () => { if (this.closed) return; this._sendClock(); sent++; this.clockTimer = setTimeout(tick, sent < 4 ? 100 : CLOCK_PERIOD_MS); };
    tick();
  }
  _sendClock() {
    const rec = clockRequest(now());
    try {
      if (this.ws) { if (this.ws.readyState === 1) this.ws.send(rec); return; }
      if (!this.dgWriter) this.dgWriter = this.wt.datagrams.writable.getWriter();  // a lost datagram is a lost sample
      this.dgWriter.write(rec).catch(() => {});
    } catch (e) { /* closing */ }
  }
  async _readDatagrams() {
    const reader = this.wt.datagrams.readable.getReader();
    try { for (;;) { const { value, done } = await reader.read(); if (done) break; this._deliver(value); } } catch (e) { /* closed */ }
  }
  async _readStream(readable) {
    const reader = readable.getReader(), rr = new RecordReader();
    try {
      for (;;) { const { value, done } = await reader.read(); if (done) break; for (const r of rr.feed(value)) this._deliver(r); }
    } catch (e) { /* a group stream reset by the server (viewer too slow): next group starts at a keyframe */ }
  }
  async _readIncoming() {
    const reader = this.wt.incomingUnidirectionalStreams.getReader();
    try { for (;;) { const { value, done } = await reader.read(); if (done) break; this._readStream(value); } } catch (e) { /* closed */ }
  }
  // channel: a name; "group:<track>" channels start a fresh uni stream when newGroup is true.
  async send(channel, record, newGroup = false) {
    if (this.closed) throw new Error("session closed");
    if (this.ws) { this.ws.send(record); return; }
    // channels hold a promise of the writer, so two sends racing for a new stream share one stream
    // (the ingress holds a later stream's frames of a stream id until the earlier stream ends).
    let ch = this.channels[channel];
    if (channel === "chat") {  // bidi: the Ack comes back on the same stream (FRAMING.md)
      if (!ch) ch = this.channels[channel] = this.wt.createBidirectionalStream().then((bidi) => {
        this._readStream(bidi.readable); return bidi.writable.getWriter(); });
    } else if (!ch || newGroup) {
      if (ch) ch.then((w) => w.close()).catch(() => {});
      ch = this.channels[channel] = this.wt.createUnidirectionalStream().then((w) => w.getWriter());
    }
    try { await (await ch).write(record); }
    catch (e) {  // stream reset/stopped by the ingress (a Notice says why): the next send opens a new one
      if (this.channels[channel] === ch) delete this.channels[channel];
      throw e;
    }
  }
  backlogged() {  // WebSocket sends never block; look at what is still queued in the socket
    return !!this.ws && this.ws.bufferedAmount > 1024 * 1024;
  }
  close() {
    this.closed = true; clearTimeout(this.clockTimer); clockSessions.delete(this);
    try { if (this.wt) this.wt.close({ closeCode: 0, reason: "bye" }); if (this.ws) this.ws.close(1000); } catch (e) { }
  }
  _closed(code, reason) { if (this.closed) return; this.closed = true; clearTimeout(this.clockTimer); clockSessions.delete(this); this.onClose(code, reason); }
}
