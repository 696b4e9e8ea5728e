"""Contract fuzzing, the long run: schemathesis against a real ``runyard serve`` (keys on, the dummy
provider), every operation in ``/openapi.json``, all phases (examples, coverage, fuzzing, stateful),
positive and negative data. The bounded version runs in CI (tests/test_contract_fuzz.py).

    .venv/bin/python bench/fuzz.py                      # 200 examples per operation
    .venv/bin/python bench/fuzz.py -n 1000 --max-time 1800 --seed 7

Prints the operations and examples run; exit status 1 on any server error, spec violation or hang.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from support.contract_fuzz import fuzz_config, run_fuzz  # noqa: E402
from support.gateway import GatewayProcess  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--max-examples", type=int, default=200, help="examples per operation and phase")
    parser.add_argument("--phases", default="examples,coverage,fuzzing,stateful")
    parser.add_argument("--workers", type=int, default=1)  # see run_fuzz: threads + CPython 3.11
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--max-time", type=int, default=None, help="time budget in seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runyard-fuzz-") as tmp:
        root = Path(tmp)
        server = GatewayProcess(fuzz_config(root)).start()
        started = time.monotonic()
        try:
            result = run_fuzz(
                server,
                root,
                max_examples=args.max_examples,
                phases=args.phases,
                workers=args.workers,
                seed=args.seed,
                max_time=args.max_time,
                timeout_s=(args.max_time or 3600) + 300,
            )
        finally:
            server.stop()
        print(result.output[-6000:])
        print(f"{result.summary()} in {time.monotonic() - started:.0f}s")
        return 0 if result.returncode == 0 and not result.failures else 1


if __name__ == "__main__":
    sys.exit(main())
