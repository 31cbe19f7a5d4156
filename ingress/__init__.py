"""WebTransport/WebSocket ingress and egress: browsers in, input topics out; room topics back to viewers."""
