"""localrun against a real broker: the Context through the wire, publish with message_conf,
log topic, failure → nack → redelivery, state across restarts, regex inputs, zip packages, and
the ack table checked by what the broker redelivers (docs/pulsar-functions.md §1-§2)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pulsar
import pytest

from tests.localrun_harness import (
    FIXTURES,
    receive_all,
    running,
    status,
    topic,
    totals,
    wait_status,
    write_config,
)

EVERYTHING = str(FIXTURES / "everything.py")


@pytest.fixture
def client(broker):
    c = pulsar.Client(broker.service_url, operation_timeout_seconds=30)
    yield c
    c.close()


def test_context_publish_log_topic_redelivery_and_state(broker, client, tmp_path: Path) -> None:
    t_in, t_out, t_side, t_logs = topic("in"), topic("out"), topic("side"), topic("logs")
    cfg = write_config(tmp_path / "cfg", name="everything", className="everything.Everything", py=EVERYTHING,
                       inputs=[t_in], output=t_out, logTopic=t_logs, userConfig={"greeting": "hi"},
                       secrets={"token": "s3cret"})
    out = client.subscribe(t_out, "check", initial_position=pulsar.InitialPosition.Earliest)
    side = client.subscribe(t_side, "check", initial_position=pulsar.InitialPosition.Earliest)
    logs = client.subscribe(t_logs, "check", initial_position=pulsar.InitialPosition.Earliest)
    producer = client.create_producer(t_in)
    with running([cfg], broker.service_url, tmp_path) as sup:
        sent_id = producer.send(b"ctx", partition_key="kk", properties={"q": "1"}, event_timestamp=777)
        [msg] = receive_all(out, 1)
        ctx = json.loads(msg.data())
        assert ctx == {
            "key": "kk", "partition_key": "kk", "ordering_key": None, "eventtime": 777,
            "properties": {"q": "1"}, "topic": t_in, "partition": -1,
            "sequence_id": ctx["seq_check"], "seq_check": ctx["seq_check"],
            "tenant": "public", "namespace": "default", "name": "everything", "instance_id": "0",
            "user_config_map": {"greeting": "hi"}, "greeting": "hi", "input_topics": [t_in],
            "output_topic": "AttributeError", "has_num_instances": False, "secret": "s3cret",
        }
        # docs/pulsar-functions.md §2.4: the output carries no key/event time/input properties, only the two __pfn_ ones.
        assert msg.properties() == {"__pfn_input_topic__": t_in,
                                    "__pfn_input_msg_id__": base64.urlsafe_b64encode(sent_id.serialize()).decode()}
        assert msg.partition_key() == "" and msg.event_timestamp() == 0

        producer.send(f"publish:{t_side}".encode())
        [side_msg] = receive_all(side, 1)
        assert side_msg.data() == b"side" and side_msg.partition_key() == "k1"
        assert side_msg.event_timestamp() == 1234 and side_msg.properties() == {"p": "v"}

        producer.send(b"log:abc")
        lines = [m.data().decode() for m in receive_all(logs, 2)]
        assert any(line.endswith("[INFO]: logged abc") for line in lines), lines
        assert any(line.endswith("[INFO]: printed abc") for line in lines), lines

        producer.send(b"failonce:K")  # fails, is nacked, comes back after --nack-delay-ms, succeeds
        [retried] = receive_all(out, 1)
        assert retried.data() == b"ok:K"

        producer.send(b"count:c")
        producer.send(b"count:c")
        assert [m.data() for m in receive_all(out, 2)] == [b"1", b"2"]
        st = wait_status(sup, "public/default/everything", lambda s: totals(s, "numSuccessfullyProcessed") == 6)
        assert totals(st, "numReceived") == 7  # the redelivery counts as a second receipt
        assert totals(st, "numUserExceptions") == 1
        assert st["instances"][0]["status"]["latestUserExceptions"] == [{"exceptionString": "first attempt fails"}]
    # State survives a restart of the function (same --state-dir).
    with running([cfg], broker.service_url, tmp_path):
        producer.send(b"count:c")
        assert [m.data() for m in receive_all(out, 1)] == [b"3"]


def test_no_state_counters_are_inert(broker, client, tmp_path: Path) -> None:
    t_in, t_out = topic("in"), topic("out")
    cfg = write_config(tmp_path / "cfg", name="nostate", className="everything.Everything", py=EVERYTHING,
                       inputs=[t_in], output=t_out)
    out = client.subscribe(t_out, "check", initial_position=pulsar.InitialPosition.Earliest)
    producer = client.create_producer(t_in)
    with running([cfg], broker.service_url, tmp_path, state=False):
        producer.send(b"count:c")
        assert [m.data() for m in receive_all(out, 1)] == [b"None"]
    assert not (tmp_path / "state").exists()


# (guarantee, autoAck, input commands, how many of them the broker must hand back afterwards)
ACK_ROWS = [
    ("ATLEAST_ONCE", True, [b"echo:a", b"none"], 0),
    ("ATLEAST_ONCE", True, [b"fail"], 1),  # nacked: still owed
    ("ATLEAST_ONCE", False, [b"echo:a", b"none"], 2),
    ("MANUAL", True, [b"echo:a", b"none"], 2),
    ("MANUAL", True, [b"ack", b"none"], 1),  # the function acked the first one itself
    ("ATMOST_ONCE", True, [b"echo:a", b"fail"], 0),  # acked on receipt: the failure loses it
]


@pytest.mark.parametrize(("guarantee", "auto_ack", "commands", "owed"), ACK_ROWS,
                         ids=[f"{r[0]}-autoAck={r[1]}-{b'+'.join(r[2]).decode()}" for r in ACK_ROWS])
def test_ack_table_rows_against_the_broker(broker, client, tmp_path: Path, guarantee: str, auto_ack: bool,
                                           commands: list[bytes], owed: int) -> None:
    t_in, t_out = topic("in"), topic("out")
    cfg = write_config(tmp_path / "cfg", name="acks", className="everything.Everything", py=EVERYTHING,
                       inputs=[t_in], output=t_out, processingGuarantees=guarantee, autoAck=auto_ack,
                       subName="acks-sub")
    out = client.subscribe(t_out, "check", initial_position=pulsar.InitialPosition.Earliest)
    producer = client.create_producer(t_in)
    with running([cfg], broker.service_url, tmp_path, nack_delay_ms=60_000) as sup:
        for command in commands:
            producer.send(command)
        wait_status(sup, "public/default/acks", lambda s: totals(s, "numSuccessfullyProcessed")
                    + totals(s, "numUserExceptions") == len(commands))
        if b"echo:a" in commands:
            assert [m.data() for m in receive_all(out, 1)] == [b"a"]  # the ack (if any) follows the send
    # The function is stopped: whatever it did not ack is handed to the next consumer.
    after = client.subscribe(t_in, "acks-sub", consumer_type=pulsar.ConsumerType.Shared)
    back = receive_all(after, len(commands), timeout=2.0)
    assert len(back) == owed, [m.data() for m in back]
    after.close()


def test_regex_and_plain_inputs_together(broker, client, tmp_path: Path) -> None:
    """A pattern next to a plain topic: two consumers, each with its receiving thread (docs/pulsar-functions.md §2.1)."""
    base = topic("rx")
    t_a, t_b, t_plain, t_out = f"{base}-a", f"{base}-b", topic("plain"), topic("out")
    pa, pb = client.create_producer(t_a), client.create_producer(t_b)  # exist before the pattern subscribes
    cfg = write_config(tmp_path / "cfg", name="regex", className="everything.Everything", py=EVERYTHING,
                       topicsPattern=f"{base}-.*", inputs=[t_plain], output=t_out)
    out = client.subscribe(t_out, "check", initial_position=pulsar.InitialPosition.Earliest)
    with running([cfg], broker.service_url, tmp_path):
        pa.send(b"echo:from-a")
        pb.send(b"echo:from-b")
        client.create_producer(t_plain).send(b"echo:from-plain")
        got = receive_all(out, 3)
    assert sorted(m.data() for m in got) == [b"from-a", b"from-b", b"from-plain"]
    assert {m.properties()["__pfn_input_topic__"] for m in got} == {t_a, t_b, t_plain}


def test_two_inputs_with_their_own_serdes_and_manual_acks(broker, client, tmp_path: Path) -> None:
    """Two plain inputs share one consumer; each keeps its serde and its configured ack key."""
    import pickle

    t_a, t_b, t_out = topic("a"), topic("b"), topic("out")
    cfg = write_config(tmp_path / "cfg", name="two", className="everything.Everything", py=EVERYTHING,
                       inputSpecs={t_a: {}, t_b: {"serdeClassName": "serde.PickleSerDe"}}, output=t_out,
                       processingGuarantees="MANUAL", subName="two-sub")
    out = client.subscribe(t_out, "check", initial_position=pulsar.InitialPosition.Earliest)
    pa, pb = client.create_producer(t_a), client.create_producer(t_b)
    with running([cfg], broker.service_url, tmp_path) as sup:
        pa.send(b"ack")
        pb.send(pickle.dumps("ack"))
        pa.send(b"echo:x")
        pb.send(pickle.dumps("echo:y"))
        assert sorted(m.data() for m in receive_all(out, 2)) == [b"x", b"y"]
        wait_status(sup, "public/default/two", lambda s: totals(s, "numSuccessfullyProcessed") == 4)
    after = client.subscribe([t_a, t_b], "two-sub", consumer_type=pulsar.ConsumerType.Shared)
    owed = receive_all(after, 4, timeout=2.0)
    # MANUAL: the two echoes were never acked; the two "ack" inputs acked themselves.
    assert sorted(m.data() for m in owed) == sorted([b"echo:x", pickle.dumps("echo:y")])
    after.close()


def test_zip_package_with_a_dependency_wheel(broker, client, tmp_path: Path) -> None:
    from tests.test_localrun_loader import make_zip_package

    package = make_zip_package(tmp_path / "pkg")
    t_in, t_out = topic("in"), topic("out")
    cfg = write_config(tmp_path / "cfg", name="shout", className="shout.Shout", py=str(package),
                       inputs=[t_in], output=t_out)
    out = client.subscribe(t_out, "check", initial_position=pulsar.InitialPosition.Earliest)
    producer = client.create_producer(t_in)
    with running([cfg], broker.service_url, tmp_path):
        producer.send(b"hey")
        assert [m.data() for m in receive_all(out, 1)] == [b"HEY!"]


def test_unimportable_class_crash_loops_with_a_logged_reason(broker, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    cfg = write_config(tmp_path / "cfg", name="broken", className="everything.Missing", py=EVERYTHING,
                       inputs=[topic("in")])
    with caplog.at_level("WARNING", logger="localrun.supervisor"), \
            running([cfg], broker.service_url, tmp_path, wait=False) as sup:
        inst = sup.instances()[0]
        import time

        deadline = time.monotonic() + 30
        while inst.restarts < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert inst.restarts >= 1
        assert "exited with status 1" in caplog.text
        st = status(sup, "public/default/broken")
        assert st["numRunning"] == 0


@pytest.mark.slow
def test_timeout_ms_redelivers_what_was_not_acked(broker, client, tmp_path: Path) -> None:
    """timeoutMs is the consumer's ack timeout (docs/pulsar-functions.md §2.1): an input nobody acks comes back after it."""
    t_in = topic("in")
    cfg = write_config(tmp_path / "cfg", name="timeout", className="everything.Everything", py=EVERYTHING,
                       inputs=[t_in], autoAck=False, timeoutMs=10_000)
    producer = client.create_producer(t_in)
    with running([cfg], broker.service_url, tmp_path, nack_delay_ms=60_000) as sup:
        producer.send(b"none")
        st = wait_status(sup, "public/default/timeout", lambda s: totals(s, "numReceived") >= 2, timeout=40)
    assert totals(st, "numSuccessfullyProcessed") >= 2  # processed again after the ack timeout
