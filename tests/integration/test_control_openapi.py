"""Property tests: every operation of the served OpenAPI document, called on a live daemon with
generated inputs, answers as the document says (status codes, content types, schemas, auth)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import Case

from botd.control.openapi import openapi_document
from botd.control.server import botd_version
from tests.integration.daemon_proc import Daemon, make_workspace, run_args

MAX_EXAMPLES = 8  # per operation: ~15 operations, a few seconds in all


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    tmp: Path = tmp_path_factory.mktemp("openapi")
    ws = make_workspace(tmp)
    daemon = Daemon(run_args(ws), cwd=tmp)
    try:
        daemon.wait_for(lambda r: r["event"] == "botd ready")
        url = json.loads((ws["data"] / "control.json").read_text())["url"]
        token = (ws["data"] / "control.token").read_text().strip()
        yield url, token
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0, daemon.read_stderr()
    finally:
        daemon.kill()


# The document in the code; the first test checks the daemon serves exactly this one.
schema = schemathesis.openapi.from_dict(openapi_document(botd_version()))


def test_served_document_is_the_one_in_the_code(live: tuple[str, str]) -> None:
    url, _ = live
    doc = requests.get(f"{url}/v1/openapi.json", timeout=10).json()
    assert doc == json.loads(json.dumps(openapi_document(botd_version())))


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
    derandomize=True,
)
def test_api_matches_its_openapi_document(case: Case, live: tuple[str, str]) -> None:
    url, token = live
    case.call_and_validate(base_url=url, headers={"Authorization": f"Bearer {token}"})
