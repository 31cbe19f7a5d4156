"""Client authentication for function instances, with `pulsar-admin functions localrun`'s flags:
`--client-auth-plugin org.apache.pulsar.client.impl.auth.AuthenticationToken --client-auth-params
token:<jwt>|file:///path`. The supervisor passes them to its instances through the environment
(never on their command lines, which every local user can read in `ps`)."""

from __future__ import annotations

import os
from typing import Any

TOKEN_PLUGINS = ("org.apache.pulsar.client.impl.auth.AuthenticationToken", "token")
ENV_PLUGIN = "WTPULSAR_CLIENT_AUTH_PLUGIN"
ENV_PARAMS = "WTPULSAR_CLIENT_AUTH_PARAMS"


def problem(plugin: str | None, params: str | None) -> str | None:
    """Why these flags cannot be used, or None."""
    if not plugin and not params:
        return None
    if not plugin or not params:
        return "--client-auth-plugin and --client-auth-params go together"
    if plugin not in TOKEN_PLUGINS:
        return f"--client-auth-plugin {plugin!r} is not supported; use {TOKEN_PLUGINS[0]}"
    if not (params.startswith("token:") or params.startswith("file://")):
        return "--client-auth-params must be token:<jwt> or file:///path/to/token"
    if params.startswith("file://") and not os.path.isfile(params[len("file://"):]):
        return f"--client-auth-params: token file {params[len('file://'):]} does not exist"
    return None


def client_kwargs_from_env() -> dict[str, Any]:
    """`authentication=` for pulsar.Client, from the environment the supervisor set (or nothing)."""
    plugin, params = os.environ.get(ENV_PLUGIN), os.environ.get(ENV_PARAMS)
    if not plugin or not params:
        return {}
    import pulsar

    return {"authentication": pulsar.Authentication(plugin, params)}
