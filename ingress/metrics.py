"""Prometheus metrics of one ingress instance, on its own registry (several may share a process in tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# publish latency buckets, seconds: sub-millisecond resolution around the 5 ms p99 target
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0)


class IngressMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions = Gauge("wtpulsar_ingress_sessions", "Open sessions", ["transport", "role"], registry=r)
        self.sessions_refused = Counter("wtpulsar_ingress_sessions_refused_total",
                                        "Sessions refused, by close code name", ["reason"], registry=r)
        self.frames = Counter("wtpulsar_ingress_frames_total", "Frames received", ["kind", "transport"],
                              registry=r)
        self.frame_bytes = Counter("wtpulsar_ingress_frame_bytes_total", "Frame payload bytes received",
                                   ["kind"], registry=r)
        self.rejected = Counter("wtpulsar_ingress_rejected_total",
                                "Streams, frames or sessions refused for bad input or limits", ["what"],
                                registry=r)
        self.published = Counter("wtpulsar_ingress_published_total", "Broker-acked publishes", ["topic"],
                                 registry=r)
        self.publish_errors = Counter("wtpulsar_ingress_publish_errors_total", "Publishes the broker refused",
                                      ["topic"], registry=r)
        self.publish_latency = Histogram("wtpulsar_ingress_publish_latency_seconds",
                                         "Frame fully received -> broker acknowledged", ["topic"],
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.inflight = Gauge("wtpulsar_ingress_inflight", "Publishes awaiting a broker ack", registry=r)
        self.streams_ended = Counter("wtpulsar_ingress_streams_ended_total",
                                     "End-of-stream messages published, by why the session ended", ["reason"],
                                     registry=r)
        self.paused = Counter("wtpulsar_ingress_read_paused_total",
                              "Times a session stopped granting read credit (backpressure)", registry=r)
        self.delivered = Counter("wtpulsar_egress_delivered_total", "Messages sent to viewers", ["kind"],
                                 registry=r)
        self.skipped = Counter("wtpulsar_egress_skipped_total",
                               "Media a slow viewer skipped (to the next keyframe)", ["kind"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
