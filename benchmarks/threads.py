"""Two notebooks at once against one alone: what sharing the cores (rlhf_lib/threads.py) buys.

    python benchmarks/threads.py                 # notebooks 04 and 05, about 12 minutes on 2 cores
    python benchmarks/threads.py --notebooks 04 --pinned   # also the old behaviour (two threads each, pinned)
    python benchmarks/threads.py --plot-only

Each notebook runs in the full setting (RLHF_FAST=0, `jupyter nbconvert --execute`), first alone, then two
copies started together; the figure is each copy's wall time over the time alone. With --pinned, also two
copies with RLHF_THREADS=2 each: torch's own default before the library shared the cores. Run it alone.
Writes results/threads.json and assets/figures/threads_two_notebooks.png.
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
RESULTS = ROOT / "benchmarks" / "results" / "threads.json"
FIGURE = ROOT / "assets" / "figures" / "threads_two_notebooks.png"
NAMES = {p.name[:2]: p for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}


def cpu() -> str:
    """The processor's model and the vector extensions that decide its speed."""
    info = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in info.get("flags", "").split()]
    return f"{info.get('model name', platform.processor() or 'unknown')}, {os.cpu_count()} cores, {' '.join(flags)}"


def execute(notebooks: list[str], threads: str | None) -> list[float]:
    """Start one nbconvert per notebook at once; each one's wall seconds."""
    env = {**os.environ, "RLHF_FAST": "0", "MPLBACKEND": "Agg"}
    env.pop("RLHF_THREADS", None)
    if threads:
        env["RLHF_THREADS"] = threads
    out = Path(tempfile.mkdtemp(prefix="threads_"))
    jupyter = str(Path(sys.executable).with_name("jupyter"))
    start, procs = time.perf_counter(), []
    for i, nb in enumerate(notebooks):
        procs.append(subprocess.Popen([jupyter, "nbconvert", "--to", "notebook", "--execute", str(NAMES[nb]),
                                       "--output-dir", str(out / str(i)), "--ExecutePreprocessor.timeout=3600"],
                                      env=env, cwd=ROOT / "notebooks", stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE))
    seconds = [0.0] * len(procs)
    waiting = set(range(len(procs)))
    while waiting:
        for i in list(waiting):
            if procs[i].poll() is not None:
                seconds[i] = round(time.perf_counter() - start, 1)
                waiting.discard(i)
                if procs[i].returncode:
                    raise SystemExit(f"notebook {notebooks[i]} failed:\n{procs[i].stderr.read()[-3000:].decode()}")
        time.sleep(0.2)
    return seconds


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["notebooks"]
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    labels, shared, pinned = [], [], []
    for nb, r in rows.items():
        labels.append(f"notebook {nb}\n({r['alone']:.0f} s alone)")
        shared.append(max(r["two_shared"]) / r["alone"])
        pinned.append(max(r["two_pinned"]) / r["alone"] if r.get("two_pinned") else float("nan"))
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], pinned, width=0.4, color="0.6", label="two threads each (torch's default)")
    ax.bar([i + 0.2 for i in x], shared, width=0.4, color="tab:blue", label="cores shared (rlhf_lib/threads.py)")
    for i, (p, s) in enumerate(zip(pinned, shared)):
        ax.text(i + 0.2, s, f"{s:.1f}x", ha="center", va="bottom")
        if p == p:
            ax.text(i - 0.2, p, f"{p:.1f}x", ha="center", va="bottom")
    ax.axhline(2.5, color="tab:red", ls="--", lw=1, label="target: 2.5x")
    ax.set_xticks(list(x), labels)
    ax.set(ylabel="slower copy's time / time alone", title="two copies of a notebook at once on 2 cores")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(FIGURE, dpi=110)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", default="04,05", help="comma-separated notebook numbers")
    parser.add_argument("--pinned", action="store_true", help="also two copies at two threads each (slow)")
    parser.add_argument("--plot-only", action="store_true")
    args = parser.parse_args(argv)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"notebooks": {}}
    if not args.plot_only:
        for nb in args.notebooks.split(","):
            if nb not in NAMES:
                raise SystemExit(f"no notebook {nb!r}; there are {', '.join(sorted(NAMES))}")
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
        for nb in args.notebooks.split(","):
            row = results["notebooks"].get(nb, {})
            row.update(alone=execute([nb], None)[0], two_shared=execute([nb, nb], None))
            if args.pinned:
                row["two_pinned"] = execute([nb, nb], "2")
            row.update(date=str(date.today()), commit=commit, machine=cpu())
            results["notebooks"][nb] = row
            print(nb, json.dumps(row))
        results["command"] = "python benchmarks/threads.py --notebooks " + args.notebooks + (" --pinned" * args.pinned)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    plot(results)


if __name__ == "__main__":
    main()
