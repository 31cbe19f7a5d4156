"""`wtpulsar audit ROOM`: the room audit. ``room_audit`` counts frames in and out per stream and
rendition and measures per-hop latency (sans-I/O); ``cli`` is the command that feeds it from a room's
topics."""
