"""The persistent topics of a namespace, as the broker's admin REST lists them (``GET
/admin/v2/persistent/{tenant}/{namespace}``, a JSON list of full topic names): `wtpulsar consume`
asks for the renditions a room has, `wtpulsar audit` for the room's output topics."""

from __future__ import annotations

import json
import urllib.request


def list_topics(admin_url: str, tenant: str, namespace: str) -> list[str]:
    """Short names (the part after the last ``/``) of the persistent topics in ``tenant/namespace``."""
    with urllib.request.urlopen(f"{admin_url.rstrip('/')}/admin/v2/persistent/{tenant}/{namespace}", timeout=10) as r:
        names = json.loads(r.read().decode("utf-8"))
    return [n.rsplit("/", 1)[-1] for n in names]
