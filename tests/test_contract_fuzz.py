"""Contract fuzzing in CI: schemathesis against a live ``runyard serve`` (keys on, dummy provider).

Every operation in ``/openapi.json``, authenticated, positive and negative data, stateful along
the spec's links; bounded examples per operation so it fits every CI run (``bench/fuzz.py`` runs
longer, with the coverage phase). Asserts 0 server errors, 0 spec violations, 0 hangs (timeouts
are errors), and prints the counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.contract_fuzz import fuzz_config, run_fuzz
from support.gateway import GatewayProcess

pytestmark = pytest.mark.timeout(400)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("contract-fuzz")
    gw = GatewayProcess(fuzz_config(root)).start()
    try:
        yield gw
    finally:
        gw.stop()


def test_contract_fuzzing_finds_no_server_error_violation_or_hang(server: GatewayProcess, tmp_path: Path) -> None:
    phases = "examples,coverage,fuzzing,stateful"
    result = run_fuzz(server, tmp_path, max_examples=10, phases=phases, seed=19, timeout_s=360)
    print("\n" + result.summary())
    assert result.operations >= 80, result.output[-3000:]
    assert result.examples > result.operations
    assert result.returncode == 0 and not result.failures, result.output[-8000:]
