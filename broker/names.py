"""Topic names: `persistent://tenant/namespace/local` and `non-persistent://...` (docs/pulsar-wire-protocol.md §4).

Anything that is not of that shape, or whose parts break the name rule (docs/names.md,
`schemas/names.py`), is rejected with InvalidTopicName before it reaches storage; the paths built
from a name are checked again by `broker/paths.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from schemas.names import MAX_LOCAL, InvalidName, check_local, check_part

_PARTITION = re.compile(r"^(?P<base>.+)-partition-(?P<index>\d+)$")
MAX_LOCAL_NAME = MAX_LOCAL


class InvalidTopicName(InvalidName):
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
        try:
            check_part("tenant", tenant)
            check_part("namespace", namespace)
            check_local(local)
        except InvalidName as exc:
            raise InvalidTopicName(f"invalid topic {text!r}: {exc}") from None
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
