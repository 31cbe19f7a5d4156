"""Topic names: `persistent://tenant/namespace/local` and `non-persistent://...` (§4).

Anything that is not of that shape, or whose parts hold characters Pulsar does not allow, is
rejected with InvalidTopicName before it reaches storage, so no name can escape the data dir.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PART = re.compile(r"^[A-Za-z0-9_=:.\-]+$")
_LOCAL = re.compile(r"^[A-Za-z0-9_=:.\-%]+$")
_PARTITION = re.compile(r"^(?P<base>.+)-partition-(?P<index>\d+)$")
MAX_LOCAL_NAME = 512


class InvalidTopicName(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class TopicName:
    domain: str  # "persistent" or "non-persistent"
    tenant: str
    namespace: str
    local: str

    @classmethod
    def parse(cls, text: str) -> TopicName:
        if "://" in text:
            domain, _, rest = text.partition("://")
        else:  # short forms the clients expand: "topic" and "tenant/ns/topic"
            domain, rest = "persistent", text if text.count("/") == 2 else f"public/default/{text}"
        if domain not in ("persistent", "non-persistent"):
            raise InvalidTopicName(f"unknown topic domain {domain!r} in {text!r}")
        parts = rest.split("/")
        if len(parts) != 3:
            raise InvalidTopicName(f"topic {text!r} is not of the form {domain}://tenant/namespace/topic")
        tenant, namespace, local = parts
        for label, part in (("tenant", tenant), ("namespace", namespace)):
            if not _PART.fullmatch(part):
                raise InvalidTopicName(f"invalid {label} {part!r} in topic {text!r}")
        if not local or len(local) > MAX_LOCAL_NAME or not _LOCAL.fullmatch(local) or local in (".", ".."):
            raise InvalidTopicName(f"invalid local topic name {local!r} in {text!r}")
        return cls(domain, tenant, namespace, local)

    @property
    def persistent(self) -> bool:
        return self.domain == "persistent"

    @property
    def namespace_name(self) -> str:
        return f"{self.tenant}/{self.namespace}"

    @property
    def partition_index(self) -> int:
        match = _PARTITION.match(self.local)
        return int(match.group("index")) if match else -1

    @property
    def base(self) -> TopicName:
        """The partitioned topic this partition belongs to (itself when not a partition)."""
        match = _PARTITION.match(self.local)
        return TopicName(self.domain, self.tenant, self.namespace, match.group("base")) if match else self

    def partition(self, index: int) -> TopicName:
        return TopicName(self.domain, self.tenant, self.namespace, f"{self.local}-partition-{index}")

    def __str__(self) -> str:
        return f"{self.domain}://{self.tenant}/{self.namespace}/{self.local}"
