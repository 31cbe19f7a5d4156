"""wtpulsar: browsers stream over WebTransport into Pulsar, Pulsar Functions transcode, chunk,
moderate and route, viewers subscribe to the output topics."""

__version__ = "0.1.0"
