"""Short fuzz run (hypothesis) of the name rule (schemas/names.py) and the paths the broker builds
from names (broker/paths.py): every input is accepted or refused with InvalidName, and nothing
accepted yields a path outside the data directory (tests/test_fuzz_targets.py `names_target`)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_fuzz_targets import TARGETS, corpus

_PIECES = st.sampled_from(["..", ".", "/", "%2E", "%2F", "\x00", "persistent://", "non-persistent://", "public", "default",
                           "-partition-0", ":", "=", "\\", "~", "\u2024", "\uff0e", " ", "\n", "a" * 300])
names = st.one_of(
    st.text(max_size=80),
    st.lists(_PIECES | st.text(max_size=5), max_size=12).map("".join),
    st.sampled_from(corpus("names")).map(lambda b: b.decode("utf-8", "replace")),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names)
def test_names_never_escape(text: str) -> None:
    TARGETS["names"](text.encode("utf-8", "surrogatepass"))


def test_names_target_refuses_the_escapes_of_the_report() -> None:
    assert TARGETS["names"](b"persistent://public/default/ok") is True
    assert TARGETS["names"](b"..") is True  # accepted, but only as a (percent-encoded) subscription name
    from broker.names import InvalidTopicName, TopicName

    for bad in ("persistent://../../metadata", "persistent://public/../x", "persistent://./default/x", "../../x"):
        try:
            TopicName.parse(bad)
        except InvalidTopicName:
            continue
        raise AssertionError(f"{bad!r} was accepted")
