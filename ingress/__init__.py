"""WebTransport/WebSocket ingress and egress: browsers in, input topics out; room topics back to viewers.

How the package is laid out (one app/config object, protocol cores without I/O, parallel adapters):

- shared state: ``config.py`` (IngressConfig), ``app.py`` (IngressApp: admission, tokens, publisher,
  metrics, egress hub); they import none of the servers. ``server.py`` starts and stops the servers.
- cores without I/O: ``session.py`` (a publisher session: bytes and broker outcomes in, actions out),
  ``viewer.py`` (what each viewer is sent: join points, dedup, the slow-viewer skip policy, a room's
  fan-out), ``verdicts.py`` (a publisher session following its room's verdicts, by composition).
- adapters, side by side: ``webtransport_server.py`` (aioquic) and ``websocket_server.py`` (aiohttp,
  the /ws fallback); both run publishers through ``publishing.py`` and viewers through ``viewer.py``.
  ``http_server.py`` serves the page, /health, /metrics, /cert-hash, /hls/ and routes /ws.
- broker side: ``publisher.py`` (producers), ``egress.py`` (the Pulsar reader threads and their hub).

Its clients (the WebTransport client, `wtpulsar publish`, `consume`, `record`) live in ``clients/``,
which this package never imports (tests/test_package_layering.py).
tests/test_import_graph.py keeps the package free of import circles.
"""
