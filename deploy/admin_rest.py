"""The Pulsar admin REST API with urllib, for machines without ``pulsar-admin`` (a JVM tool).

Only what the deployer needs: JSON requests, the multipart upload of ``functions create/update``
(parts ``functionConfig`` as JSON and ``data`` as the package file, the same form ``pulsar-admin``
sends), and the HTTP status so that "already exists" (409) and "not found" (404) can be told apart
from real failures.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TIMEOUT_S = 120.0  # a function upload of ~60 MB to a busy worker


@dataclass(frozen=True)
class Response:
    status: int  # 0: no HTTP answer at all (connection refused, DNS, timeout)
    body: str

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def multipart(parts: list[tuple[str, str, bytes, str | None]]) -> tuple[bytes, str]:
    """Encode (name, content type, data, file name) parts; returns the body and its Content-Type."""
    boundary = f"wtpulsar-{uuid.uuid4().hex}"
    chunks: list[bytes] = []
    for name, content_type, data, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        chunks.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                      f"Content-Type: {content_type}\r\n\r\n".encode())
        chunks.append(data)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


class AdminRest:
    """Requests against one admin URL (e.g. ``http://localhost:8080``)."""

    def __init__(self, admin_url: str, timeout: float = TIMEOUT_S) -> None:
        self.admin_url = admin_url.rstrip("/")
        self.timeout = timeout

    def request(self, method: str, path: str, *, json_body: Any = None, body: bytes | None = None,
                content_type: str | None = None) -> Response:
        data = body
        headers = {"Accept": "application/json"}
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        elif content_type:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.admin_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as reply:
                return Response(reply.status, reply.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError as exc:
            return Response(exc.code, exc.read().decode("utf-8", "replace"))
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return Response(0, f"no answer from {self.admin_url}: {reason}")

    def upload_function(self, method: str, path: str, function_config: dict[str, Any], package: Path) -> Response:
        body, content_type = multipart([
            ("functionConfig", "application/json", json.dumps(function_config).encode(), None),
            ("data", "application/octet-stream", package.read_bytes(), package.name),
        ])  # fmt: skip
        return self.request(method, path, body=body, content_type=content_type)
