"""Clients of the pipeline, not parts of it: the WebTransport client the tests, benches and `wtpulsar
publish` talk to the ingress with, and the commands that read a room's topics from Pulsar (`wtpulsar
consume`, `wtpulsar record`)."""
