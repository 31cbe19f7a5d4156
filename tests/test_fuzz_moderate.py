"""Short fuzz run (hypothesis) of the chat moderator, functions/moderate.py, via FakeContext.

Every input, valid or not, must end in exactly one verdict and exactly one ack (nothing lost,
nothing stuck); bad input goes to the dead-letter topic instead of raising.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_fuzz_targets import corpus, moderate_target

SEEDS = corpus("moderate")

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=8)


def _chat(text: str, user: str, extra: dict[str, object], sent_at: object) -> bytes:
    body: dict[str, object] = {"room": "lobby", "user": user, "msg_id": "m1", "text": text, "sent_at": sent_at}
    body.update(extra)
    return json.dumps(body, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


chats = st.builds(
    _chat,
    st.text(max_size=300),
    st.sampled_from(["alice", "bob", ""]),
    st.dictionaries(st.sampled_from(["stream", "reply_to", "room", "msg_id", "text", "x"]), json_values, max_size=3),
    st.one_of(st.integers(), st.floats(), st.text(max_size=5), st.none()),
)
inputs = st.one_of(chats, st.binary(max_size=200), st.sampled_from(SEEDS).flatmap(
    lambda seed: st.binary(max_size=8).map(lambda noise: seed[: len(seed) // 2] + noise + seed[len(seed) // 2:])))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs)
def test_moderator_handles_any_payload(data: bytes) -> None:
    moderate_target(data)
