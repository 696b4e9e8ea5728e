"""Contract fuzzing: schemathesis against a real ``runyard serve`` (keys on, the dummy provider).

Shared by ``tests/test_contract_fuzz.py`` (bounded, every CI run) and ``bench/fuzz.py`` (longer).
Every operation of ``/openapi.json`` is called with the API key, with positive and negative data,
and statefully along the spec's links (create -> get -> cancel). The checks: no 5xx, every status,
content type, header and body as the spec says, the auth the spec claims enforced; no hang (each
request has a timeout).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from runyard.config import hash_api_key

from .gateway import GatewayProcess

KEY = "ry_contract_fuzz_key"
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "ignored_auth",
)
# Answers the spec documents that are not server faults, per operation (schemathesis.toml).
# POST /v1/moderations: 501 `moderation_not_available` when no provider offers moderation
# (the fuzzed server has only the dummy provider; tests/test_openai_local.py checks the 501).
EXPECTED_SERVER_STATUSES = {"/v1/moderations": ["2XX", "3XX", "4XX", "501"]}


def schemathesis_toml() -> str:
    """The per-operation check settings, as a ``schemathesis.toml``."""
    blocks = [
        f'[[operations]]\ninclude-path = "{path}"\n'
        f"checks.not_a_server_error.expected-statuses = {json.dumps(statuses)}\n"
        for path, statuses in EXPECTED_SERVER_STATUSES.items()
    ]
    return "\n".join(blocks)


def fuzz_config(root: Path) -> Path:
    path = root / "runyard.toml"
    path.write_text(f"""
[server]
api_keys = ["{hash_api_key(KEY)}"]

[storage]
url = "sqlite+aiosqlite:///{root / "runyard.db"}"

[files]
dir = "{root / "files"}"

[catalog]
defaults = false  # no shipped models: routing picks among the dummy ones (no local model loads)

[providers.local]
kind = "dummy"  # unrouted chat's fallback, local::chat, answered by the dummy provider (no weights load)

[models.fast]
routes = ["dummy::echo"]

[workers]
concurrency = 2
poll_interval_s = 0.1
""")
    return path


@dataclass
class FuzzResult:
    returncode: int
    operations: int
    examples: int
    failures: list[str]
    output: str

    @property
    def links(self) -> str:
        """Stateful testing's reach: ``"<covered> covered / <total>"`` API links (the spec's id flows)."""
        found = re.search(r"API Links:\s+(\d+ covered / \d+) selected", self.output)
        return found.group(1) if found else "none (no stateful phase)"

    def summary(self) -> str:
        return (
            f"contract fuzzing: {self.operations} operations, {self.examples} examples, "
            f"{len(self.failures)} failures; API links {self.links}"
        )


def _schemathesis() -> str:
    local = Path(sys.executable).parent / "schemathesis"
    return str(local) if local.exists() else (shutil.which("schemathesis") or "schemathesis")


def run_fuzz(
    server: GatewayProcess,
    report_dir: Path,
    *,
    max_examples: int,
    phases: str = "examples,coverage,fuzzing,stateful",
    workers: int = 1,
    seed: int | None = None,
    max_time: int | None = None,
    timeout_s: float = 600,
) -> FuzzResult:
    """Run schemathesis; the counts come from its JSON report.

    One worker by default: on CPython 3.11 concurrent ``ast.parse`` calls in threads (hypothesis
    describes lambdas with it) can fail with ``SystemError: AST constructor recursion depth
    mismatch`` (cpython#106905), a tool error reported against whichever operation it hit.
    """
    report = report_dir / "report.json"
    settings = report_dir / "schemathesis.toml"
    settings.write_text(schemathesis_toml())
    args = [
        _schemathesis(),
        "--config-file",
        str(settings),
        "run",
        f"{server.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {KEY}",
        "--checks",
        ",".join(CHECKS),
        "--mode",
        "all",
        "--phases",
        phases,
        "--max-examples",
        str(max_examples),
        "--workers",
        str(workers),
        "--request-timeout",
        "20",
        "--no-shrink",
        "--suppress-health-check",
        "all",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--output-truncate",
        "true",
    ]
    if seed is not None:
        args += ["--seed", str(seed)]
    if max_time is not None:
        args += ["--max-time", str(max_time)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, cwd=report_dir)
    output = proc.stdout + proc.stderr
    operations, examples = _counts(report, output)
    failures = re.findall(r"^_+ (\w+ /\S*) _+$", output, flags=re.M)
    return FuzzResult(proc.returncode, operations, examples, failures, output)


def _counts(report: Path, output: str) -> tuple[int, int]:
    """(operations tested, test cases generated) from the JSON report (the summary lines as a fallback)."""
    if report.exists():
        data = json.loads(report.read_text())
        return int(data["operations"]["tested"]), int(data["test_cases"]["generated"])
    ops = re.search(r"Tested: (\d+)", output)
    cases = re.search(r"(\d+) generated", output)
    return (int(ops.group(1)) if ops else 0), (int(cases.group(1)) if cases else 0)
