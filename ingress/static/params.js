// What the page was opened with. Query parameters:
//   token=…        session token (`wtpulsar token --room R --user U --role publisher|viewer`); required
//   server=…       ingress HTTP base, default this page's origin (file://: http://127.0.0.1:8000);
//                  the WebTransport port and certificate hash come from <server>/cert-hash
//   certHash=…     hex SHA-256 of the ingress certificate, overrides /cert-hash
//   wt=…           full WebTransport URL, overrides the one built from /cert-hash
//   mode=view      start watching on load;  rendition=360p|720p;  playback=webcodecs|mse
//   transport=websocket   skip WebTransport (the fallback path)

export const params = new URLSearchParams(location.search);

function serverBase() {
  const s = params.get("server");
  if (s) return s.replace(/\/+$/, "");
  if (location.protocol === "http:" || location.protocol === "https:") return location.origin;
  return "http://127.0.0.1:8000";
}
export const SERVER = serverBase();
export const TOKEN = params.get("token") || "";
export const FORCE_WS = params.get("transport") === "websocket";

function decodeToken(t) {  // the claims, unchecked: the ingress checks the signature
  try {
    const b = t.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(b + "===".slice((b.length + 3) % 4)));
  } catch (e) { return null; }
}
export const CLAIMS = TOKEN ? decodeToken(TOKEN) : null;
