"""Every notebook's wall time, alone, in the full setting and in the test setting.

    python benchmarks/notebook_times.py                        # all notebooks, both settings (about 35 minutes)
    python benchmarks/notebook_times.py --notebooks 00,01 --settings full

Each notebook runs by itself from a fresh kernel (`jupyter nbconvert --to notebook --execute`, outputs thrown
away) with RLHF_FAST=0 (full) or RLHF_FAST=1 (fast). Run it with nothing else busy on the machine: the times are
for a learner's laptop, not for a shared one. Writes results/notebook_times.json (the measured times with the
machine, date and commit; earlier measurements kept under "earlier") and the two compute columns of the table
in docs/teaching.md for the notebooks it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "notebook_times.json"
GUIDE = ROOT / "docs" / "teaching.md"
NOTEBOOKS = {p.name[:2]: p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))}
SETTINGS = {"full": "0", "fast": "1"}
COLUMNS = {"full": 3, "fast": 4}  # the table's columns: #, notebook, reading, compute full, compute fast


def machine() -> str:
    """The processor's model, its vector extensions and the cores: timings differ between machines."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                platform.processor() or "unknown")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    vector = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags)
    return f"{name}, {os.cpu_count()} cores, {vector}; Python {platform.python_version()}"


def time_notebook(path: Path, setting: str) -> float:
    """Seconds to run the notebook top to bottom in a fresh kernel; a failing notebook stops the benchmark."""
    env = {**os.environ, "RLHF_FAST": SETTINGS[setting], "MPLBACKEND": "Agg"}
    jupyter = str(Path(sys.executable).with_name("jupyter"))
    with tempfile.TemporaryDirectory(prefix="notebook_times_") as out:
        start = time.perf_counter()
        done = subprocess.run([jupyter, "nbconvert", "--to", "notebook", "--execute", str(path), "--output-dir", out,
                               "--ExecutePreprocessor.timeout=3600"], cwd=path.parent, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{path.name} failed in the {setting} setting:\n{done.stderr[-3000:]}")
    return round(seconds, 1)


def update_guide(times: dict[str, dict[str, float]]) -> None:
    """Write the measured seconds into the compute columns of docs/teaching.md's table, row by row."""
    lines = GUIDE.read_text().splitlines(keepends=True)
    header = next(i for i, line in enumerate(lines) if "| compute, full | compute, fast |" in line)
    for i in range(header + 2, len(lines)):  # the rows under the header and its separator, to the first blank line
        if not lines[i].startswith("|"):
            break
        cells = lines[i].rstrip("\n").split("|")
        number = cells[1].strip()
        if number not in times:
            continue
        for setting, seconds in times[number].items():
            cells[COLUMNS[setting] + 1] = f" {seconds:,.0f} s "
        lines[i] = "|".join(cells) + "\n"
    GUIDE.write_text("".join(lines))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", default=",".join(NOTEBOOKS), help="comma-separated numbers (default: all)")
    parser.add_argument("--settings", default="full,fast", help="full, fast or both")
    args = parser.parse_args(argv)
    numbers, settings = args.notebooks.split(","), args.settings.split(",")
    unknown = [n for n in numbers if n not in NOTEBOOKS] + [s for s in settings if s not in SETTINGS]
    if unknown:
        raise SystemExit(f"unknown: {', '.join(unknown)}; notebooks are {', '.join(NOTEBOOKS)}, settings full, fast")
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results = old if "seconds" in old else {"earlier": old, "seconds": {}}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    measured: dict[str, dict[str, float]] = {}
    for number in numbers:
        for setting in settings:
            seconds = time_notebook(NOTEBOOKS[number], setting)
            measured.setdefault(number, {})[setting] = seconds
            results["seconds"].setdefault(number, {})[setting] = dict(seconds=seconds, date=str(date.today()),
                                                                      commit=commit, machine=machine())
            print(f"{NOTEBOOKS[number].stem:32} {setting:4} {seconds:8.1f} s", flush=True)
    results["command"] = "python benchmarks/notebook_times.py (each notebook alone, jupyter nbconvert --execute)"
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    update_guide(measured)


if __name__ == "__main__":
    main()
