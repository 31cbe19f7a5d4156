"""Supervisor behaviour against a real broker: kill -9 mid-stream loses nothing under
ATLEAST_ONCE and under MANUAL-with-ack-in-publish-callback; parallelism 3 spreads a Shared
subscription; retainKeyOrdering keeps per-key order across 3 instances."""

from __future__ import annotations

import signal
from pathlib import Path

import pulsar
import pytest

from tests.localrun_harness import (
    FIXTURES,
    receive_until,
    running,
    status,
    topic,
    totals,
    wait_ready,
    write_config,
)

N_MESSAGES = 400


@pytest.fixture
def client(broker):
    c = pulsar.Client(broker.service_url, operation_timeout_seconds=30)
    yield c
    c.close()


@pytest.mark.parametrize(
    ("class_name", "py", "guarantee"),
    [("identity.Identity", "identity.py", "ATLEAST_ONCE"), ("manual_ack.ManualAck", "manual_ack.py", "MANUAL")],
)
def test_kill_9_mid_stream_loses_nothing(broker, client, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                         class_name: str, py: str, guarantee: str) -> None:
    t_in, t_out = topic("in"), topic("out")
    cfg = write_config(tmp_path / "cfg", name="survivor", className=class_name, py=str(FIXTURES / py),
                       inputs=[t_in], output=t_out, processingGuarantees=guarantee,
                       userConfig={"sleep_ms": 4, "out": t_out})
    out = client.subscribe(t_out, "check", initial_position=pulsar.InitialPosition.Earliest)
    producer = client.create_producer(t_in, batching_enabled=True)
    expected = {f"m-{i}".encode() for i in range(N_MESSAGES)}
    with caplog.at_level("INFO", logger="localrun.supervisor"), \
            running([cfg], broker.service_url, tmp_path, nack_delay_ms=200) as sup:
        for i in range(N_MESSAGES):
            producer.send_async(f"m-{i}".encode(), None)
        producer.flush()
        first = receive_until(out, lambda msgs: len({m.data() for m in msgs}) >= N_MESSAGES // 4, timeout=30)
        seen = {m.data() for m in first}
        assert len(seen) < N_MESSAGES  # the kill really happens mid-stream
        victim = sup.kill_instance("public/default/survivor", "0", signal.SIGKILL)
        rest = receive_until(out, lambda msgs: seen | {m.data() for m in msgs} >= expected, timeout=60)
        seen |= {m.data() for m in rest}
        inst = sup.instances()[0]
        assert inst.restarts == 1 and inst.pid != victim
    assert seen >= expected, f"{len(expected - seen)} inputs never produced an output"
    assert f"(pid {victim}) killed by SIGKILL; restarting" in caplog.text


def test_parallelism_3_spreads_a_shared_subscription(broker, client, tmp_path: Path) -> None:
    t_in, t_out = topic("in"), topic("out")
    cfg = write_config(tmp_path / "cfg", name="spread", className="identity.Identity",
                       py=str(FIXTURES / "identity.py"), inputSpecs={t_in: {"receiverQueueSize": 5}},
                       output=t_out, parallelism=3)
    out = client.subscribe(t_out, "check", initial_position=pulsar.InitialPosition.Earliest)
    producer = client.create_producer(t_in)
    with running([cfg], broker.service_url, tmp_path) as sup:
        assert [i.instance_id for i in sup.instances()] == ["0", "1", "2"]
        assert len({i.pid for i in sup.instances()}) == 3
        for i in range(300):
            producer.send_async(f"m-{i}".encode(), None)
        producer.flush()
        got = receive_until(out, lambda msgs: len({m.data() for m in msgs}) >= 300, timeout=60)
        st = status(sup, "public/default/spread")
    assert {m.data() for m in got} == {f"m-{i}".encode() for i in range(300)}
    per_instance = [i["status"]["numReceived"] for i in st["instances"]]
    assert all(n > 0 for n in per_instance), per_instance
    assert totals(st, "numReceived") >= 300


def test_retain_key_ordering_across_3_instances(broker, client, tmp_path: Path) -> None:
    t_in, t_out = topic("in"), topic("out")
    cfg = write_config(tmp_path / "cfg", name="keyed", className="identity.Identity",
                       py=str(FIXTURES / "identity.py"), inputs=[t_in], output=t_out, parallelism=3,
                       retainKeyOrdering=True)
    out = client.subscribe(t_out, "check", initial_position=pulsar.InitialPosition.Earliest)
    producer = client.create_producer(t_in, batching_enabled=False)
    keys, per_key = [f"k{k}" for k in range(12)], 40
    with running([cfg], broker.service_url, tmp_path) as sup:
        wait_ready(sup)
        for seq in range(per_key):
            for key in keys:
                producer.send_async(f"{key}:{seq}".encode(), None, partition_key=key)
        producer.flush()
        total = len(keys) * per_key
        got = receive_until(out, lambda msgs: len(msgs) >= total, timeout=60)
        st = status(sup, "public/default/keyed")
    assert len(got) == total
    order: dict[str, list[int]] = {}
    for msg in got:
        key, seq = msg.data().decode().split(":")
        order.setdefault(key, []).append(int(seq))
    assert all(order[k] == list(range(per_key)) for k in keys), {k: v[:10] for k, v in order.items()}
    busy = [i["status"]["numReceived"] for i in st["instances"] if i["status"]["numReceived"] > 0]
    assert len(busy) >= 2, st  # the keys were spread over more than one instance
