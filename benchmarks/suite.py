"""The whole test suite's wall time, alone, as the README runs it (and, for comparison, in one process).

    python benchmarks/suite.py                # the README's command: two processes (about 20 minutes)
    python benchmarks/suite.py --workers 0    # everything in one process, in order (about 28 minutes)

Runs `python -m pytest` in the repository with nothing else busy on the machine (the times are for a
maintainer's laptop, not a shared one) and writes results/suite.json: the seconds, the tests passed, failed and
skipped, the 15 slowest items, the machine, the date and the commit; earlier measurements are kept under
"earlier". A failing suite is recorded too, and the command exits with its status.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notebook_times import machine  # noqa: E402  (the same description of the processor)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "suite.json"


def counts(summary: str) -> dict[str, int]:
    """pytest's last line, "3 failed, 972 passed, 1 warning in 1147.54s", as {"failed": 3, "passed": 972, ...}."""
    return {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", summary)}


def slowest(output: str, n: int = 15) -> list[str]:
    """The first `n` lines of pytest's last "slowest durations" block (the whole run's; the tests that run alone
    print theirs before it)."""
    lines = output.splitlines()
    start = next((i for i in reversed(range(len(lines))) if "slowest" in lines[i] and "durations" in lines[i]), None)
    if start is None:
        return []
    return [line.strip() for line in lines[start + 1 : start + 1 + n] if re.match(r"\s*[\d.]+s ", line)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None,
                        help="pytest-xdist processes (default: pyproject.toml's, 2); 0 runs everything in one")
    args = parser.parse_args(argv)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
    if args.workers is not None:
        if args.workers < 0:
            parser.error(f"--workers must be 0 or more, got {args.workers}")
        command += ["-n", str(args.workers)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = round(time.perf_counter() - start, 1)
    summaries = [line for line in done.stdout.splitlines() if re.match(r"=+ .* in [\d.]+s", line)]
    summary = summaries[-1] if summaries else ""  # the whole run's; a run's alone tests report in a line before it
    total: dict[str, int] = {}
    for line in summaries:
        for word, n in counts(line).items():
            total[word] = total.get(word, 0) + n
    total.pop("deselected", None)  # the alone tests: deselected in the parallel run, run in their own
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    result = dict(command=" ".join(["python"] + command[1:]), workers=2 if args.workers is None else args.workers,
                  seconds=seconds, exit_status=done.returncode, **total, slowest=slowest(done.stdout),
                  machine=machine(), date=date.today().isoformat(), commit=commit)
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    earlier = old.pop("earlier", [])
    if old:
        earlier.append(old)
    RESULTS.write_text(json.dumps({**result, "earlier": earlier}, indent=1) + "\n")
    print(f"{seconds / 60:.1f} minutes: {summary.strip('= ')}")
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
