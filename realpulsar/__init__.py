"""Apache Pulsar itself, next to our own broker: the standalone we prove the product on.

`distribution` fetches the binary distribution from Maven Central into a cache outside the repo,
`worker_python` makes the Python environment the functions worker starts instances with, and
`standalone` runs broker + bookie + table service + functions worker on 127.0.0.1. `cli` is
`wtpulsar pulsar`. Facts this relies on are in docs/real-pulsar.md.
"""
