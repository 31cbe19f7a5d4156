// Reading the fragmented MP4 the chunk function writes (ISO/IEC 14496-12 boxes): the avcC of an init
// segment for the WebCodecs decoder, and the samples of one moof+mdat fragment. Pure: no DOM, no state.

export function boxes(buf, start = 0, end = buf.length) {
  const out = []; const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let o = start;
  while (o + 8 <= end) {
    let size = dv.getUint32(o); const type = String.fromCharCode(buf[o + 4], buf[o + 5], buf[o + 6], buf[o + 7]);
    let header = 8;
    if (size === 1) { size = Number(dv.getBigUint64(o + 8)); header = 16; } else if (size === 0) size = end - o;
    if (size < header || o + size > end) break;
    out.push({ type, start: o, body: o + header, end: o + size }); o += size;
  }
  return out;
}
function child(buf, box, type) { return boxes(buf, box.body, box.end).find((b) => b.type === type); }
function path(buf, types) { let list = boxes(buf); let b = null;
  for (const t of types) { b = list.find((x) => x.type === t); if (!b) return null; list = boxes(buf, b.body, b.end); } return b; }

export function avcDescription(init) {  // moov/trak/mdia/minf/stbl/stsd -> avc1 -> avcC
  const stsd = path(init, ["moov", "trak", "mdia", "minf", "stbl", "stsd"]);
  if (!stsd) return null;
  const entry = boxes(init, stsd.body + 8, stsd.end)[0];  // stsd: version/flags + entry count
  if (!entry) return null;
  const avcC = boxes(init, entry.body + 78, entry.end).find((b) => b.type === "avcC");  // 78 = VisualSampleEntry fields
  return avcC ? init.slice(avcC.body, avcC.end) : null;
}

export function fragmentSamples(frag) {  // moof/traf (tfhd, tfdt, trun) + mdat -> [{data, dts, dur, key}]
  const moof = boxes(frag).find((b) => b.type === "moof"), mdat = boxes(frag).find((b) => b.type === "mdat");
  if (!moof || !mdat) return [];
  const dv = new DataView(frag.buffer, frag.byteOffset, frag.byteLength);
  const traf = child(frag, moof, "traf"); if (!traf) return [];
  const tfhd = child(frag, traf, "tfhd"), tfdt = child(frag, traf, "tfdt"), trun = child(frag, traf, "trun");
  if (!tfhd || !trun) return [];
  let o = tfhd.body; const thf = dv.getUint32(o) & 0xffffff; o += 8;
  if (thf & 1) o += 8; if (thf & 2) o += 4;
  let defDur = 0, defSize = 0, defFlags = 0;
  if (thf & 8) { defDur = dv.getUint32(o); o += 4; } if (thf & 0x10) { defSize = dv.getUint32(o); o += 4; }
  if (thf & 0x20) { defFlags = dv.getUint32(o); o += 4; }
  let dts = 0;
  if (tfdt) { const v = dv.getUint8(tfdt.body); dts = v === 1 ? Number(dv.getBigUint64(tfdt.body + 4)) : dv.getUint32(tfdt.body + 4); }
  o = trun.body; const trf = dv.getUint32(o) & 0xffffff; const count = dv.getUint32(o + 4); o += 8;
  let dataOffset = mdat.body - moof.start;
  if (trf & 1) { dataOffset = dv.getInt32(o); o += 4; }
  let firstFlags = null; if (trf & 4) { firstFlags = dv.getUint32(o); o += 4; }
  let pos = moof.start + dataOffset; const out = [];
  for (let i = 0; i < count; i++) {
    let dur = defDur, size = defSize, flags = defFlags;
    if (trf & 0x100) { dur = dv.getUint32(o); o += 4; } if (trf & 0x200) { size = dv.getUint32(o); o += 4; }
    if (trf & 0x400) { flags = dv.getUint32(o); o += 4; } if (trf & 0x800) o += 4;
    if (i === 0 && firstFlags !== null) flags = firstFlags;
    out.push({ data: frag.subarray(pos, pos + size), dts, dur, key: !(flags & 0x10000) });
    pos += size; dts += dur;
  }
  return out;
}
