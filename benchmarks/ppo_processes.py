"""The `ppo` command with one process and under `accelerate launch` with two, same settings otherwise.

    python benchmarks/ppo_processes.py     # about 5 minutes on 2 cores; writes results/ppo_processes.json

With two processes each samples half of every batch (different random streams) and the gradients are
averaged, so the figures should be comparable to one process's, not identical. On this 2-core machine the
two processes share the cores, so no speed-up is expected; the point is that the same command scales out.
"""

import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PPO = ["-m", "rlhf_lib", "ppo", "--reward-model", str(ROOT / "assets" / "reward_model")]


def run(command: list[str], out: Path) -> dict:
    start = time.perf_counter()
    done = subprocess.run(command + ["--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"{command[0]} failed:\n{done.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    keep = ("positive_rate", "grammatical_rate", "kl_k1", "kl_exact", "reward")
    return dict(command=" ".join(command[:8]) + " ...", wall_seconds=round(time.perf_counter() - start, 1),
                train_seconds=summary["train_seconds"], processes=summary["processes"],
                before={k: summary["before"][k] for k in keep}, after={k: summary["after"][k] for k in keep},
                weight_checksum_spread=summary["last_iteration"].get("weight_checksum_spread"))


def main():
    tmp = Path(tempfile.mkdtemp(prefix="ppo_processes_"))
    accelerate = str(Path(sys.executable).parent / "accelerate")
    results = {
        "1 process": run([sys.executable] + PPO, tmp / "one"),
        "2 processes": run([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                            "--mixed_precision", "no", "--dynamo_backend", "no"] + PPO, tmp / "two"),
    }
    out = dict(date=str(date.today()), machine=f"{platform.machine()}, {torch.get_num_threads()} torch threads",
               torch=torch.__version__, results=results)
    (ROOT / "benchmarks/results/ppo_processes.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
