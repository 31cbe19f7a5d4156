"""One function instance: the process the supervisor starts `parallelism` times.

It reproduces the official `python_instance.py` loop (docs/pulsar-functions.md §1.2, §2):
consumers with a message listener put each message into a `Queue(1)`; one execution thread
(here: the main thread) takes them one at a time, deserializes, calls `process()`, sends a
non-None result to the output topic and acks per `AckPolicy`; every failure is a negative ack.
SIGTERM/SIGINT/SIGHUP finish the message in hand, flush and close, and exit 0.

Run as `python -m localrun.instance --spec-file F --instance-id N --service-url URL ...`
(the supervisor builds that command line).
"""

from __future__ import annotations

import argparse
import binascii
import logging
import queue
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localrun.config import FunctionSpec
from localrun.guarantees import AckPolicy
from localrun.metrics import InstanceStats, StatsCollector, build_registry, serve
from localrun.sent_messages import SentMessages, send_keeping

log = logging.getLogger("localrun.instance")

CONSOLE_FORMAT = "[%(asctime)s] [%(levelname)s] [{fqfn}:{instance}] %(filename)s: %(message)s"
LOG_TOPIC_FORMAT = "[%(asctime)s] [%(levelname)s]: %(message)s"  # docs/pulsar-functions.md §2.5
DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"
RECEIVE_POLL_MS = 200  # how often an idle receive loop looks at the stop flag
DEFAULT_NACK_DELAY_MS = 60_000  # the Python client's default, unchanged by the official instance (docs/pulsar-functions.md §2.3)


@dataclass
class InputItem:
    """One delivery waiting in the Queue(1)."""

    message: Any
    topic: str  # message.topic_name(): the full topic, with -partition-N
    serde: Any
    use_schema: bool
    consumer: Any


class StreamToLogger:
    """`print()` goes to the log (stdout at INFO, stderr at ERROR), as in the official instance (docs/pulsar-functions.md §2.5)."""

    def __init__(self, logger: logging.Logger, level: int) -> None:
        self.logger = logger
        self.level = level
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            if line.rstrip():
                self.logger.log(self.level, line.rstrip())
        return len(text)

    def flush(self) -> None:
        if self._partial.rstrip():
            self.logger.log(self.level, self._partial.rstrip())
        self._partial = ""

    def isatty(self) -> bool:
        return False


class LogTopicHandler(logging.Handler):
    """Publishes each record to `logTopic` (LZ4, 100 ms batching), as the official instance does."""

    def __init__(self, producer: Any) -> None:
        super().__init__()
        self.producer = producer
        self.setFormatter(logging.Formatter(LOG_TOPIC_FORMAT, DATE_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.producer.send_async(self.format(record).encode("utf-8"), _ignore_send_result)
        except Exception:  # noqa: BLE001 - logging must never break processing
            self.handleError(record)


def _ignore_send_result(result: Any, msg_id: Any) -> None:
    return None


class Instance:
    def __init__(
        self,
        spec: FunctionSpec,
        instance_id: str,
        service_url: str,
        *,
        state_dir: str | None = None,
        nack_delay_ms: int = DEFAULT_NACK_DELAY_MS,
        metrics_port: int | None = 0,
        cluster: str = "local",
        secrets_provider: str = "",
        function_id: str = "",
        function_version: str = "",
    ) -> None:
        self.spec = spec
        self.instance_id = instance_id
        self.service_url = service_url
        self.state_dir = state_dir
        self.nack_delay_ms = nack_delay_ms
        self.metrics_port = metrics_port
        self.cluster = cluster
        self.secrets_provider_name = secrets_provider
        self.function_id = function_id or spec.fqfn
        self.function_version = function_version or "0"
        self.policy = AckPolicy(spec.processing_guarantees, spec.auto_ack)
        self._ack_after_send = self.policy.ack_after_send
        self._ack_without_output = self.policy.ack_without_output
        self.stats = InstanceStats(window_start=time.time())
        self.queue: queue.Queue[InputItem] = queue.Queue(1)
        self.stopping = False
        self.bound_metrics_port: int | None = None
        self.client: Any = None
        self.consumers: dict[str, Any] = {}
        self.decoders: dict[str, tuple[Any, bool]] = {}  # configured topic → (serde, use schema?)
        self.topic_keys: dict[str, str] = {}  # full topic name → configured topic (one shared consumer)
        self._receivers: list[threading.Thread] = []
        self.output_producer: Any = None
        self.output_serde: Any = None
        self.output_schema_is_bytes = True
        self._raw_send: Any = None  # see raw_sender()
        self._message_builder: Any = None
        # Sent messages are dropped on this (the execution) thread: see localrun/sent_messages.py.
        self.sent = SentMessages()
        self.log_producer: Any = None
        self.log_handler: LogTopicHandler | None = None
        self.context: Any = None
        self.function: Any = None
        self.state: Any = None
        self._metrics_server: Any = None
        import pulsar

        self._result_ok = pulsar.Result.Ok

    # --- setup ---
    def start(self) -> None:
        import pulsar

        from localrun.client_auth import client_kwargs_from_env
        from localrun.context import ContextImpl, producer_properties, secrets_provider
        from localrun.loader import instantiate_function, load_schema, load_serde
        from localrun.state import open_state

        if self.metrics_port is not None:
            collector = StatsCollector(self.stats, self.spec.tenant, self.spec.namespace, self.spec.name,
                                       self.instance_id, self.cluster, clock=time.time)
            self._metrics_server, self.bound_metrics_port = serve(build_registry(collector), self.metrics_port)
        self.state = open_state(self.state_dir, self.spec.tenant, self.spec.namespace, self.spec.name)
        # Operation timeout 30 s, one I/O and one listener thread, as the official instance (docs/pulsar-functions.md §5).
        self.client = pulsar.Client(self.service_url, operation_timeout_seconds=30, io_threads=1,
                                    message_listener_threads=1, logger=_client_logger(), **client_kwargs_from_env())
        consumer_type = {"Shared": pulsar.ConsumerType.Shared, "Failover": pulsar.ConsumerType.Failover,
                         "KeyShared": pulsar.ConsumerType.KeyShared}[self.spec.subscription_type]
        position = (pulsar.InitialPosition.Earliest if self.spec.subscription_position == "EARLIEST"
                    else pulsar.InitialPosition.Latest)
        props = producer_properties(self.spec, self.instance_id)
        specs = self.spec.inputs
        for topic, input_spec in specs.items():
            self.decoders[topic] = (load_serde(input_spec.serde_class_name), bool(input_spec.schema_type))

        def consumer_kwargs(topic: str) -> dict[str, Any]:
            input_spec = specs[topic]
            kwargs: dict[str, Any] = {
                "consumer_type": consumer_type,
                "schema": load_schema(input_spec.schema_type, self.spec.input_type_class_name,
                                      input_spec.schema_properties),
                "unacked_messages_timeout_ms": self.spec.timeout_ms,
                "negative_ack_redelivery_delay_ms": self.nack_delay_ms,
                "initial_position": position,
                "properties": props,
            }
            if input_spec.receiver_queue_size is not None:
                kwargs["receiver_queue_size"] = input_spec.receiver_queue_size
            return kwargs

        subscription = self.spec.effective_subscription_name
        if can_share_one_consumer(self.spec):
            # Several plain topics with the same consumer settings: one multi-topic consumer, so
            # the execution thread can receive() directly. Every configured key maps to it, so
            # context.ack keeps the official lookup rules (docs/pulsar-functions.md §1.5).
            topics = list(specs)
            shared = self.client.subscribe(topics, subscription, **consumer_kwargs(topics[0]))
            for topic in topics:
                self.consumers[topic] = shared
                self.topic_keys[full_topic_name(topic)] = topic
        else:
            for topic, input_spec in specs.items():
                target = re.compile(topic) if input_spec.is_regex else topic
                self.consumers[topic] = self.client.subscribe(target, subscription, **consumer_kwargs(topic))
        if self.spec.log_topic:
            self.log_producer = self.client.create_producer(
                self.spec.log_topic, block_if_queue_full=True, batching_enabled=True,
                batching_max_publish_delay_ms=100, compression_type=pulsar.CompressionType.LZ4)
            self.log_handler = LogTopicHandler(self.log_producer)
        self.function = instantiate_function(self.spec.class_name)
        self.context = ContextImpl(
            self.spec, self.instance_id, self.client, self.consumers, self.state, self.stats,
            function_id=self.function_id, function_version=self.function_version,
            secrets=secrets_provider(self.secrets_provider_name), sent=self.sent,
        )

    def _setup_output(self) -> None:
        import pulsar

        from localrun.context import producer_properties
        from localrun.loader import load_schema, load_serde

        spec = self.spec
        self.output_serde = load_serde(spec.output_serde_class_name)
        schema = load_schema(spec.output_schema_type, spec.output_type_class_name, {})
        self.output_schema_is_bytes = not spec.output_schema_type
        compression = {"NONE": pulsar.CompressionType.NONE, "LZ4": pulsar.CompressionType.LZ4,
                       "ZLIB": pulsar.CompressionType.ZLib, "ZSTD": pulsar.CompressionType.ZSTD,
                       "SNAPPY": pulsar.CompressionType.SNAPPY}[spec.compression_type]
        batching = pulsar.BatchingType.KeyBased if spec.batch_builder == "KEY_BASED" else pulsar.BatchingType.Default
        self.output_producer = self.client.create_producer(
            spec.output, schema=schema, block_if_queue_full=True, batching_enabled=True,
            batching_type=batching, batching_max_publish_delay_ms=10, compression_type=compression,
            # Infinite send timeout, as the official instance: avoids a deadlock with a consumer
            # blocked on unacked messages (docs/pulsar-functions.md §2.4).
            send_timeout_millis=0, properties=producer_properties(spec, self.instance_id))
        if self.output_schema_is_bytes:
            self._raw_send, self._message_builder = raw_sender(self.output_producer)

    # --- receiving ---
    # The official instance uses the client's message listener feeding a Queue(1) drained by one
    # execution thread. Its observable behaviour is: one message at a time, in delivery order,
    # a delivery counted when it is handed over, ATMOST_ONCE acked before process(), and
    # backpressure from the receiver queue. With a single consumer (one input topic or one
    # pattern) we get exactly that by calling `receive()` in the execution thread, which avoids
    # a per-message C++→Python listener callback and a thread hand-off (~3× the throughput,
    # see bench/localrun.py). Several plain input topics with the same consumer settings share
    # one multi-topic consumer and take the same path; otherwise (a pattern next to other inputs,
    # different schemas or queue sizes) each consumer gets a receiving thread feeding the Queue(1).
    def _on_message(self, serde: Any, use_schema: bool, consumer: Any, message: Any) -> None:
        """Queue one delivery (used by the receiving threads when there are several consumers)."""
        self.stats.received_shared()
        item = InputItem(message, message.topic_name(), serde, use_schema, consumer)
        while not self.stopping:
            try:
                self.queue.put(item, timeout=0.2)
                break
            except queue.Full:
                continue
        else:
            return  # shutting down: leave it unacked, it will be redelivered
        if self.policy.ack_on_receipt:
            consumer.acknowledge(message)

    def _receive_into_queue(self, topic_key: str, consumer: Any) -> None:
        import pulsar

        serde, use_schema = self.decoders[topic_key]
        while not self.stopping:
            try:
                message = consumer.receive(timeout_millis=RECEIVE_POLL_MS)
            except pulsar.Timeout:
                continue
            except Exception:  # noqa: BLE001 - consumer closed during shutdown
                if not self.stopping:
                    log.exception("receiving from %s failed", topic_key)
                return
            self._on_message(serde, use_schema, consumer, message)

    # --- the execution loop ---
    def run(self) -> None:
        distinct = {id(c): (k, c) for k, c in self.consumers.items()}
        if len(distinct) == 1:
            [(topic_key, consumer)] = distinct.values()
            self._run_single(topic_key, consumer)
            return
        for topic_key, consumer in self.consumers.items():
            thread = threading.Thread(target=self._receive_into_queue, args=(topic_key, consumer),
                                      name=f"receive-{topic_key}", daemon=True)
            thread.start()
            self._receivers.append(thread)
        while not self.stopping:
            try:
                item = self.queue.get(timeout=0.2)
            except queue.Empty:
                self.sent.release()
                continue
            if not self._execute(item):
                return

    def _run_single(self, topic_key: str, consumer: Any) -> None:
        import pulsar

        timeout = pulsar.Timeout
        ack_first = self.policy.ack_on_receipt
        receive = consumer.receive
        stats = self.stats
        serde, use_schema = self.decoders[topic_key]
        remap = bool(self.topic_keys)  # one consumer for several topics: the serde depends on the topic
        release_sent = self.sent.release
        while not self.stopping:
            try:
                message = receive(RECEIVE_POLL_MS)
            except timeout:
                release_sent()
                continue
            stats.received()
            if remap:
                item = self._accept(topic_key, consumer, message)
                if ack_first:
                    consumer.acknowledge(message)
                if not self._execute(item):
                    return
                continue
            if ack_first:
                consumer.acknowledge(message)
            try:
                self._handle(message, message.topic_name(), serde, use_schema, consumer)
            except Exception:  # noqa: BLE001 - _handle() already counts and nacks
                log.exception("unexpected failure while handling a message")
            except BaseException as exc:  # noqa: BLE001
                self._halt(exc)
                return

    def _accept(self, topic_key: str, consumer: Any, message: Any) -> InputItem:
        """The item for a delivery from the consumer shared by several topics."""
        topic = message.topic_name()
        topic_key = self.topic_keys.get(_PARTITION_SUFFIX.sub("", topic), topic_key)
        serde, use_schema = self.decoders[topic_key]
        return InputItem(message, topic, serde, use_schema, consumer)

    def _halt(self, exc: BaseException) -> None:
        # docs/pulsar-functions.md §1.2: a non-Exception (e.g. SystemExit) ends the execution thread; the process
        # stays up and processes nothing more until it is stopped.
        log.critical("execution stopped by %s; this instance processes nothing more", type(exc).__name__)
        while not self.stopping:
            time.sleep(0.2)

    def _execute(self, item: InputItem) -> bool:
        """Handle one item; False when execution must end for good."""
        try:
            self.handle(item)
        except Exception:  # noqa: BLE001 - handle() already counts and nacks
            log.exception("unexpected failure while handling a message")
        except BaseException as exc:  # noqa: BLE001
            self._halt(exc)
            return False
        return True

    def handle(self, item: InputItem) -> None:
        self._handle(item.message, item.topic, item.serde, item.use_schema, item.consumer)

    # The per-message path. It runs once per input, so it is written for speed: no per-message
    # locks or property lookups (the policy flags are precomputed), the ack callback is a closure.
    def _handle(self, message: Any, topic: str, serde: Any, use_schema: bool, consumer: Any) -> None:
        self.sent.release()
        try:
            value = message.value() if use_schema else serde.deserialize(message.data())
            context = self.context
            context._message = message
            context._topic = topic
            saved = self._swap_in_log_topic() if self.log_handler is not None else None
            stats = self.stats
            try:
                stats.last_invocation_ms = int(time.time() * 1000)
                started = perf_counter()
                output = self.function.process(value, context)
                latency_ms = (perf_counter() - started) * 1000.0
            except Exception as exc:  # noqa: BLE001 - user code
                log.exception("Exception while executing user method")
                stats.user_exception(exc, time.time())
                consumer.negative_acknowledge(message)
                return
            finally:
                if saved is not None:
                    self._restore_handlers(saved)
            if output is not None and self.spec.output:
                self._send_output(output, message, topic, consumer)
            elif self._ack_without_output:
                consumer.acknowledge(message)
            stats.processed(latency_ms)
        except Exception as exc:  # noqa: BLE001 - serde errors, send errors
            log.error("Uncaught exception in Python instance: %s", exc)
            self.stats.system_exception(exc, time.time())
            consumer.negative_acknowledge(message)

    def _send_output(self, output: Any, message: Any, topic: str, consumer: Any) -> None:
        if self.output_producer is None:
            self._setup_output()
        payload = self.output_serde.serialize(output) if self.output_schema_is_bytes else output
        if payload is None:
            return
        ack_after_send = self._ack_after_send
        ok = self._result_ok
        keep = self.sent.keep
        built: Any = None  # the message, when built here

        def done(result: Any, _msg_id: Any) -> None:
            if built is not None:
                keep(built)
            if result == ok:
                if ack_after_send:
                    consumer.acknowledge(message)
                return
            self._send_failed(result, message, consumer)

        # Only these two properties: no key, event time or input properties (docs/pulsar-functions.md §2.4).
        props = {"__pfn_input_topic__": topic,
                 "__pfn_input_msg_id__": urlsafe_b64(message.message_id().serialize())}
        if self._raw_send is not None and type(payload) is bytes:
            # The same message the public `Producer.send_async` builds for bytes content and
            # properties, without its ten argument checks (about 3 µs a message; see
            # `raw_sender`).
            built = self._message_builder().content(payload).properties(props).build()
            self._raw_send(built, done)
        else:
            send_keeping(self.output_producer, self.sent, payload, done, properties=props)

    def _send_failed(self, result: Any, message: Any, consumer: Any) -> None:
        error = (f"Failed to publish to topic [{self.spec.output}] with error [{result}] "
                 f"with src message id [{message.message_id()}]")
        log.error(error)
        self.stats.system_exception(Exception(error), time.time())
        consumer.negative_acknowledge(message)

    def _swap_in_log_topic(self) -> list[logging.Handler] | None:
        if self.log_handler is None:
            return None
        root = logging.getLogger()
        saved = list(root.handlers)
        for handler in saved:
            root.removeHandler(handler)
        root.addHandler(self.log_handler)
        return saved

    def _restore_handlers(self, saved: list[logging.Handler] | None) -> None:
        if saved is None:
            return
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)

    # --- shutdown ---
    def stop(self) -> None:
        self.stopping = True

    def close(self) -> None:
        """Flush the output (so pending acks happen), then close consumers, producers, client."""
        for producer in (self.output_producer, self.log_producer):
            if producer is not None:
                try:
                    producer.flush()
                except Exception:  # noqa: BLE001
                    log.debug("flush failed", exc_info=True)
        if self.context is not None:
            self.context.close_producers()
        for consumer in {id(c): c for c in self.consumers.values()}.values():
            try:
                consumer.close()
            except Exception:  # noqa: BLE001
                log.debug("consumer close failed", exc_info=True)
        for producer in (self.output_producer, self.log_producer):
            if producer is not None:
                try:
                    producer.close()
                except Exception:  # noqa: BLE001
                    log.debug("producer close failed", exc_info=True)
        if self.client is not None:
            self.client.close()
        if self.state is not None:
            self.state.close()
        self.sent.clear()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()


_PARTITION_SUFFIX = re.compile(r"-partition-\d+$")
_URLSAFE = bytes.maketrans(b"+/", b"-_")
perf_counter = time.perf_counter


def urlsafe_b64(raw: bytes) -> str:
    """`base64.urlsafe_b64encode(raw).decode()`, without its per-call overhead (used per message)."""
    return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).decode("ascii")


def full_topic_name(topic: str) -> str:
    """`x` → persistent://public/default/x, `t/n/x` → persistent://t/n/x (what topic_name() reports)."""
    if "://" in topic:
        return topic
    parts = topic.split("/")
    if len(parts) == 1:
        return f"persistent://public/default/{topic}"
    return f"persistent://{topic}"


def raw_sender(producer: Any) -> tuple[Any, Any]:
    """The native `send_async` of a `pulsar.Producer` and the native message builder, or
    (None, None) when this client version does not have them where 3.13 has them.

    `Producer.send_async` checks ten optional arguments and copies properties one by one before
    calling the native producer; for bytes content with properties only, building the message
    ourselves gives the same message for half the Python work. Only the output producer of a
    bytes (schema-less) output uses it, so the schema's `encode` is the identity it skips.
    """
    try:
        import _pulsar

        native = producer._producer
        builder = _pulsar.MessageBuilder
        if not (callable(native.send_async) and hasattr(builder, "properties")):
            return None, None
    except (ImportError, AttributeError):
        return None, None
    return native.send_async, builder


def can_share_one_consumer(spec: FunctionSpec) -> bool:
    """True when all inputs are plain topics with identical consumer settings."""
    specs = list(spec.inputs.values())
    if len(specs) < 2 or any(s.is_regex for s in specs):
        return False
    first = specs[0]
    same = all((s.schema_type, s.receiver_queue_size, s.schema_properties)
               == (first.schema_type, first.receiver_queue_size, first.schema_properties) for s in specs)
    return same and len({full_topic_name(t) for t in spec.inputs}) == len(specs)


def _client_logger() -> object:
    """The C++ client's own console logger at WARN. A Python `logging.Logger` here would make the
    client call into Python for every DEBUG line (two per message), costing ~7% of throughput."""
    import pulsar

    return pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn)


def configure_logging(spec: FunctionSpec, instance_id: str, level: str = "INFO") -> None:
    root = logging.getLogger()
    root.setLevel(level)
    handler = logging.StreamHandler(sys.__stderr__)
    handler.setFormatter(logging.Formatter(CONSOLE_FORMAT.format(fqfn=spec.fqfn, instance=instance_id), DATE_FORMAT))
    root.handlers[:] = [handler]
    sys.stdout = StreamToLogger(root, logging.INFO)
    sys.stderr = StreamToLogger(root, logging.ERROR)


def write_instance_file(run_dir: str, spec: FunctionSpec, instance_id: str, metrics_port: int | None) -> None:
    """Tell `wtpulsar functions status` where this instance's metrics are."""
    import json
    import os

    directory = Path(run_dir) / fqfn_dirname(spec.fqfn)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{instance_id}.json.tmp"
    tmp.write_text(json.dumps({"instanceId": instance_id, "pid": os.getpid(), "metricsPort": metrics_port,
                               "startedAt": int(time.time() * 1000)}))
    tmp.replace(directory / f"instance-{instance_id}.json")


def fqfn_dirname(fqfn: str) -> str:
    return fqfn.replace("/", "__")


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m localrun.instance", description="One Pulsar Function instance.")
    p.add_argument("--spec-file", required=True, help="FunctionSpec JSON written by the supervisor")
    p.add_argument("--instance-id", required=True)
    p.add_argument("--service-url", required=True)
    p.add_argument("--sys-path", action="append", default=[], help="directory to put first on sys.path")
    p.add_argument("--state-dir", default=None)
    p.add_argument("--nack-delay-ms", type=int, default=DEFAULT_NACK_DELAY_MS)
    p.add_argument("--metrics-port", type=int, default=0)
    p.add_argument("--run-dir", default=None)
    p.add_argument("--cluster", default="local")
    p.add_argument("--secrets-provider", default="")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--function-id", default="", help="what get_function_id() returns (default: the fqfn)")
    p.add_argument("--function-version", default="", help="what get_function_version() returns (default: 0)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    spec = FunctionSpec.from_json(Path(args.spec_file).read_text())
    configure_logging(spec, args.instance_id, args.log_level)
    from localrun.loader import add_to_sys_path

    add_to_sys_path(args.sys_path)
    instance = Instance(spec, args.instance_id, args.service_url, state_dir=args.state_dir,
                        nack_delay_ms=args.nack_delay_ms, metrics_port=args.metrics_port,
                        cluster=args.cluster, secrets_provider=args.secrets_provider,
                        function_id=args.function_id, function_version=args.function_version)

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s, stopping after the message in hand", signal.Signals(signum).name)
        instance.stop()

    # Until start() returns, the default SIGTERM action applies: a Python handler could not run
    # while the client blocks in subscribe (up to its 30 s operation timeout), and there is no
    # message in hand to finish yet.
    try:
        instance.start()
    except Exception:  # noqa: BLE001 - e.g. NameError for an unimportable className, subscribe timeout
        log.exception("instance %s of %s failed to start", args.instance_id, spec.fqfn)
        try:
            instance.close()
        except Exception:  # noqa: BLE001
            pass
        return 1
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    if args.run_dir:
        write_instance_file(args.run_dir, spec, args.instance_id, instance.bound_metrics_port)
    log.info("instance %s of %s started (subscription %r, %s, metrics port %s)", args.instance_id, spec.fqfn,
             spec.effective_subscription_name, spec.subscription_type, instance.bound_metrics_port)
    instance.run()
    instance.close()
    log.info("instance %s of %s stopped", args.instance_id, spec.fqfn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
