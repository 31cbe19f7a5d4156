"""Short fuzz run (hypothesis) of the YAML loaders: localrun/config.py (FunctionConfig for
`functions localrun`), deploy/function_config.py and deploy/topology.py (pipeline.yaml).

Each loader must either load or raise its own error type (ConfigError, FunctionConfigError,
PipelineError) whose message names the file; nothing else may escape.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_fuzz_targets import TARGETS, _as_file, corpus, known_bug_input

YAML_TARGETS = ["localrun_config", "deploy_function_config", "topology"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True), st.text(max_size=30),
                    st.sampled_from(["persistent://public/wtpulsar/raw-video", "fn.py", "fn.process", "MANUAL",
                                     "ATLEAST_ONCE", "Earliest", "bytes_serde.BytesSerDe"]))
keys = st.sampled_from(["name", "tenant", "namespace", "className", "py", "inputs", "inputSpecs", "output",
                        "processingGuarantees", "parallelism", "userConfig", "resources", "topics", "functions",
                        "partitions", "schema", "config", "room_topics", "template", "retainKeyOrdering",
                        "subscriptionPosition", "timeoutMs", "cpu", "receiverQueueSize", "serdeClassName"])
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys | st.text(max_size=6),
                                                                                              inner, max_size=6),
                         max_leaves=20)


def _seed_edit(seed: bytes, where: int, insert: bytes) -> bytes:
    pos = where % (len(seed) + 1)
    return seed[:pos] + insert + seed[pos:]


def inputs_for(target: str) -> st.SearchStrategy[bytes]:
    seeds = corpus(target)
    return st.one_of(
        documents.map(lambda d: yaml.safe_dump(d, allow_unicode=True).encode("utf-8")),
        st.builds(_seed_edit, st.sampled_from(seeds), st.integers(0, 10_000),
                  st.sampled_from([b"\n", b": ", b"- ", b"&a ", b"*a", b"{", b"]", b"\x00", b"\t", b"!!binary ", b"~"])),
        st.binary(max_size=120),
    )


@pytest.mark.parametrize("target", YAML_TARGETS)
def test_yaml_loader_never_crashes(target: str) -> None:
    @settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(inputs_for(target))
    def run(data: bytes) -> None:
        TARGETS[target](data)

    run()


def test_loader_errors_name_the_file() -> None:
    from deploy.function_config import FunctionConfigError, load_function_config
    from deploy.topology import PipelineError, load_pipeline
    from localrun.config import ConfigError
    from localrun.config import load_function_config as load_localrun

    with pytest.raises(PipelineError, match="pipeline.yaml"):
        load_pipeline(_as_file(b"tenant: [", "pipeline.yaml"))
    with pytest.raises(ConfigError, match="function.yaml"):
        load_localrun(_as_file(b"- a", "function.yaml"))
    with pytest.raises(FunctionConfigError, match="function.yaml"):
        load_function_config(_as_file(b"name: [", "function.yaml"))


# Found by fuzzing: the loaders let UnicodeDecodeError escape on a non-UTF-8 file (fixed).
@pytest.mark.parametrize("target", YAML_TARGETS)
def test_non_utf8_file_is_a_clear_error(target: str) -> None:
    from deploy.function_config import FunctionConfigError, load_function_config
    from deploy.topology import PipelineError, load_pipeline
    from localrun.config import ConfigError
    from localrun.config import load_function_config as load_localrun

    loaders: dict[str, tuple[Callable[[Path], object], type[Exception]]] = {
        "localrun_config": (load_localrun, ConfigError),
        "deploy_function_config": (load_function_config, FunctionConfigError),
        "topology": (load_pipeline, PipelineError)}
    loader, error = loaders[target]
    with pytest.raises(error, match="not UTF-8 text"):
        loader(_as_file(known_bug_input("yaml_not_utf8.yaml"), "function.yaml"))


# Found by bench/fuzz.py: parse_pipeline called .get() on a `room_topics` that is not a map (fixed).
def test_room_topics_that_is_not_a_map_is_a_clear_error() -> None:
    from deploy.topology import PipelineError, load_pipeline

    with pytest.raises(PipelineError, match="room_topics"):
        load_pipeline(_as_file(known_bug_input("topology_room_topics_not_a_map.yaml"), "pipeline.yaml"))
