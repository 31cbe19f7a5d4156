"""`wtpulsar functions localrun --secrets JSON`, as pulsar-admin's flag: bad values are refused before
anything starts, with what was wrong. (That a secret given this way reaches `context.get_secret`
through the environment provider is shown by tests/test_pipeline_auth.py: moderate checks the
ingress's signatures only with it.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_localrun_py_override import FIXTURES, IN, archive_config, cli


@pytest.mark.parametrize(("value", "message"), [
    ("{not json", "error: --secrets is not JSON: "),
    ('["chatSigningKey"]', "error: --secrets must be a JSON object of secret name to value"),
    ('{"": "x"}', "error: --secrets must be a JSON object of secret name to value"),
])  # fmt: skip
def test_bad_secrets_are_refused(tmp_path: Path, value: str, message: str) -> None:
    config = archive_config(tmp_path, name="a", inputs=[IN])
    done = cli("--function-config-file", str(config), "--py", str(FIXTURES / "identity.py"),
               "--broker-service-url", "pulsar://127.0.0.1:1", "--secrets", value)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "running" not in done.stderr
