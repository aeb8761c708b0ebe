"""``make stress``: run every scenario and print a summary table.

    python -m tests.stress [--quick]

Exit status 1 if any scenario found a failure.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.stress.scenarios import run_all


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.stress")
    parser.add_argument("--quick", action="store_true", help="a tenth of the work")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fsstore-stress-") as tmp:
        results = run_all(Path(tmp), quick=args.quick)
    print("| scenario | operations | failures | figures |")
    print("|---|---:|---:|---|")
    for r in results:
        figures = r.skipped or ", ".join(f"{k}: {v}" for k, v in r.figures.items())
        print(f"| {r.name} | {r.operations} | {r.failures} | {figures} |")
    for r in results:
        for problem in r.problems:
            print(f"{r.name}: {problem}", file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
