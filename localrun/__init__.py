"""Local Pulsar Functions runtime: runs `functions/` from their FunctionConfig files with the
behaviour of Pulsar's official Python instance (docs/pulsar-functions.md).

Modules: config (FunctionConfig → FunctionSpec, admin-server validation), loader (py/zip,
className, serde/schema), context (pulsar.Context), state (persistent state), guarantees (ack
rules), metrics (Prometheus), instance (one process), supervisor (N processes, restarts),
status and cli (`wtpulsar functions localrun|status`).
"""
