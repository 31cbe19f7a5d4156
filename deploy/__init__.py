"""From laptop to cluster: check, package and deploy the pipeline on Apache Pulsar.

* ``function_config``: the FunctionConfig field list and the admin server's Python rules.
* ``topology``: ``deploy/pipeline.yaml`` (tenant, namespace, topics, functions).
* ``imports``: which third-party modules a function's code imports.
* ``packaging``: ``build/functions/<name>.zip`` in the layout Pulsar's Python runtime installs.
* ``pulsar_schema``: topic schemas for the schema registry from ``schemas/``.
* ``deployer``: the ``pulsar-admin`` commands / REST calls, and running them.
* ``admin_rest``: the REST side, with urllib.
* ``cli``: ``wtpulsar deploy`` and ``wtpulsar undeploy``.
"""
