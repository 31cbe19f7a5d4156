"""FunctionConfig loading and the admin server's validation for Python (docs/pulsar-functions.md §3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from localrun.config import ConfigError, FunctionSpec, InputSpec, is_valid_topic, load_function_config

IN = "persistent://public/default/in"
OUT = "persistent://public/default/out"


@pytest.fixture
def code(tmp_path: Path) -> Path:
    path = tmp_path / "exclaim.py"
    path.write_text("class Exclaim:\n    def process(self, input, context):\n        return input + '!'\n")
    return path


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fn.yaml"
    path.write_text(text)
    return path


def base(code: Path, extra: str = "") -> str:
    return f"className: exclaim.Exclaim\npy: {code}\ninputs: [{IN}]\noutput: {OUT}\n{extra}"


def test_minimal_config_gets_the_cli_defaults(tmp_path: Path, code: Path) -> None:
    spec = load_function_config(write(tmp_path, base(code, "userConfig: {n: 3}\n")))
    assert (spec.tenant, spec.namespace, spec.name) == ("public", "default", "Exclaim")
    assert spec.inputs == {IN: InputSpec()}
    assert spec.processing_guarantees == "ATLEAST_ONCE" and spec.auto_ack is True
    assert spec.effective_subscription_name == "public/default/Exclaim"
    assert spec.subscription_type == "Shared" and spec.subscription_position == "LATEST"
    assert spec.compression_type == "LZ4" and spec.parallelism == 1
    assert spec.user_config == {"n": 3}
    assert spec.py == str(code.resolve())


def test_spec_round_trips_through_json(tmp_path: Path, code: Path) -> None:
    spec = load_function_config(write(tmp_path, base(code, "topicsPattern: persistent://public/default/x-.*\n")))
    again = FunctionSpec.from_json(spec.to_json())
    assert again == spec
    assert again.inputs["persistent://public/default/x-.*"].is_regex


def test_all_input_forms_are_merged(tmp_path: Path, code: Path) -> None:
    text = (
        f"className: exclaim.Exclaim\npy: {code}\ninputs: [a]\ntopicsPattern: 'persistent://public/default/r-.*'\n"
        "customSerdeInputs: {b: mymod.MySerDe}\ncustomSchemaInputs: {c: string}\n"
        "inputSpecs: {d: {schemaType: json, receiverQueueSize: 7, isRegexPattern: false}}\n"
        "subName: my-sub\nsubscriptionPosition: Earliest\nretainKeyOrdering: true\n"
    )
    spec = load_function_config(write(tmp_path, text))
    assert list(spec.inputs) == ["a", "persistent://public/default/r-.*", "b", "c", "d"]
    assert spec.inputs["persistent://public/default/r-.*"].is_regex
    assert spec.inputs["b"].serde_class_name == "mymod.MySerDe"
    assert spec.inputs["c"].schema_type == "string"
    assert spec.inputs["d"] == InputSpec(schema_type="json", receiver_queue_size=7)
    assert spec.effective_subscription_name == "my-sub"
    assert spec.subscription_position == "EARLIEST"
    assert spec.subscription_type == "KeyShared"


def test_retain_ordering_gives_failover(tmp_path: Path, code: Path) -> None:
    spec = load_function_config(write(tmp_path, base(code, "retainOrdering: true\n")))
    assert spec.subscription_type == "Failover"


def test_py_is_also_found_relative_to_the_config_file(tmp_path: Path, code: Path, monkeypatch) -> None:
    monkeypatch.chdir("/")
    spec = load_function_config(write(tmp_path, base(Path(code.name))))
    assert spec.py == str(code.resolve())


# (extra YAML appended to a valid config, field named in the error, reason fragment)
REJECTIONS = [
    ("processingGuarantees: EFFECTIVELY_ONCE\n", "processingGuarantees",
     "Effectively-once processing guarantees not yet supported in Python"),
    ("maxMessageRetries: 3\n", "maxMessageRetries", "Message retries not yet supported in python"),
    ("maxMessageRetries: 0\n", "maxMessageRetries", "Message retries not yet supported in python"),
    ("deadLetterTopic: persistent://public/default/dlq\n", "deadLetterTopic",
     "Dead Letter Topic specified, however max retries is set to infinity"),
    ("windowConfig: {windowLengthCount: 10}\n", "windowConfig", "There is currently no support windowing in python"),
    ("windowConfig: {windowLengthCount: 10}\nautoAck: true\n", "autoAck",
     "Cannot enable auto ack when using windowing functionality"),
    ("timeoutMs: 5000\n", "timeoutMs", "10000 ms minimum"),
    ("timeoutMs: 0\n", "timeoutMs", "Function timeout must be a positive number"),
    ("timeoutMs: 20000\nprocessingGuarantees: ATMOST_ONCE\n", "timeoutMs",
     "Message timeout can only be specified with processing guarantee is ATLEAST_ONCE"),
    ("timeoutMs: 20000\nprocessingGuarantees: MANUAL\n", "timeoutMs",
     "Message timeout can only be specified with processing guarantee is ATLEAST_ONCE"),
    ("processingGuarantees: ATMOST_ONCE\nautoAck: false\n", "autoAck", "ATMOST_ONCE"),
    ("processingGuarantees: SOMETIMES\n", "processingGuarantees", "is not one of"),
    ("parallelism: 0\n", "parallelism", "Function parallelism must be a positive number"),
    ("retainOrdering: true\nretainKeyOrdering: true\n", "retainKeyOrdering",
     "Only one of retain ordering or retain key ordering can be set"),
    ("autoack: false\n", "autoack", 'Unrecognized field "autoack"'),
    ("inputSpecs: {x: {serdeClassName: a.B, schemaType: json}}\n", "inputSpecs.x",
     "Only one of schemaType or serdeClassName should be set in inputSpec"),
    ("inputSpecs: {x: {receiverQueueSize: -1}}\n", "inputSpecs.x.receiverQueueSize",
     "Receiver queue size should be >= zero"),
    ("inputSpecs: {x: {regexp: true}}\n", "inputSpecs.x.regexp", 'Unrecognized field "regexp"'),
    ("producerConfig: {compression: LZ4}\n", "producerConfig.compression", 'Unrecognized field "compression"'),
    ("producerConfig: {compressionType: BROTLI}\n", "producerConfig.compressionType", "is not one of"),
    ("logTopic: 'bad://x/y/z'\n", "logTopic", "LogTopic topic bad://x/y/z is invalid"),
    ("outputSerdeClassName: a.B\noutputSchemaType: json\n", "outputSchemaType",
     "Only one of outputSchemaType or outputSerdeClassName should be set"),
    ("parallelism: two\n", "parallelism", "expected an integer"),
    ("autoAck: 'yes'\n", "autoAck", "expected true or false"),
    ("resources: {gpu: 1}\n", "resources.gpu", "Unrecognized field"),
    ("subscriptionPosition: Middle\n", "subscriptionPosition", "is not Latest or Earliest"),
]


@pytest.mark.parametrize(("extra", "field", "reason"), REJECTIONS, ids=[r[1] + ":" + r[2][:30] for r in REJECTIONS])
def test_rejections_name_the_file_and_the_field(tmp_path: Path, code: Path, extra: str, field: str,
                                                reason: str) -> None:
    path = write(tmp_path, base(code, extra))
    with pytest.raises(ConfigError) as info:
        load_function_config(path)
    assert info.value.field == field
    assert reason in info.value.reason
    assert str(path) in str(info.value) and field in str(info.value)


def test_missing_classname(tmp_path: Path, code: Path) -> None:
    path = write(tmp_path, f"name: f\npy: {code}\ninputs: [{IN}]\n")
    with pytest.raises(ConfigError, match="className: Function classname cannot be null"):
        load_function_config(path)


def test_missing_inputs(tmp_path: Path, code: Path) -> None:
    path = write(tmp_path, f"className: exclaim.Exclaim\npy: {code}\noutput: {OUT}\n")
    with pytest.raises(ConfigError, match="inputs: No input topic\\(s\\) specified for the function"):
        load_function_config(path)


def test_output_equal_to_an_input(tmp_path: Path, code: Path) -> None:
    path = write(tmp_path, f"className: exclaim.Exclaim\npy: {code}\ninputs: [{IN}]\noutput: {IN}\n")
    with pytest.raises(ConfigError) as info:
        load_function_config(path)
    assert info.value.field == "output"
    assert info.value.reason == (f"Output topic {IN} is also being used as an input topic "
                                 "(topics must be one or the other)")


def test_invalid_input_topic(tmp_path: Path, code: Path) -> None:
    path = write(tmp_path, f"className: exclaim.Exclaim\npy: {code}\ninputs: ['public/default']\n")
    with pytest.raises(ConfigError, match="Input topic public/default is invalid"):
        load_function_config(path)


def test_missing_py_file(tmp_path: Path) -> None:
    path = write(tmp_path, f"className: m.C\npy: {tmp_path / 'nope.py'}\ninputs: [{IN}]\n")
    with pytest.raises(ConfigError) as info:
        load_function_config(path)
    assert info.value.field == "py" and "does not exist" in info.value.reason


def test_missing_py_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_function_config(write(tmp_path, f"className: m.C\ninputs: [{IN}]\n"))
    assert info.value.field == "py"


def test_invalid_yaml_reports_the_line(tmp_path: Path, code: Path) -> None:
    path = write(tmp_path, f"className: exclaim.Exclaim\npy: {code}\ninputs: [{IN}\noutput: x\n")
    with pytest.raises(ConfigError) as info:
        load_function_config(path)
    assert info.value.field == "(yaml)"
    assert "line " in info.value.reason and str(path) in str(info.value)


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_function_config(write(tmp_path, "- a\n- b\n"))


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_function_config(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("topic", "valid"),
    [("in", True), ("public/default/in", True), ("persistent://public/default/in", True),
     ("non-persistent://public/default/in", True), ("persistent://public/default/in-.*", True),
     ("t/c/n/legacy", True), ("", False), ("public/default", False), ("http://public/default/in", False),
     ("persistent://public//in", False), ("a/b/c/d/e", False)],
)
def test_topic_validity(topic: str, valid: bool) -> None:
    assert is_valid_topic(topic) is valid
