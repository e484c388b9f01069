"""Rebuild the course model with the pretraining command and compare it with assets/model.

    python benchmarks/pretrain.py          # about 11 minutes on 2 cores; writes benchmarks/results/pretrain.json

Records the wall time of `python -m rlhf_lib pretrain` (training, evaluation and saving), whether the
rebuilt weights equal the shipped ones (same seed, same machine), and both models' figures.
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
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]


def main():
    out = Path(tempfile.mkdtemp(prefix="pretrain_")) / "model"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rlhf_lib", "pretrain", "--out", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    shipped, rebuilt = load_file(ROOT / "assets/model/model.safetensors"), load_file(out / "model.safetensors")
    max_diff = max((shipped[k] - rebuilt[k]).abs().max().item() for k in shipped)
    new = json.loads((out / "summary.json").read_text())
    old = json.loads((ROOT / "assets/model/summary.json").read_text())
    result = dict(date=str(date.today()), machine=f"{platform.machine()}, {torch.get_num_threads()} torch threads",
                  torch=torch.__version__, command="python -m rlhf_lib pretrain --out DIR",
                  wall_seconds=round(seconds, 1), training_seconds=new["seconds"],
                  max_abs_weight_difference_vs_shipped=max_diff,
                  rebuilt=dict(heldout_loss=new["heldout_loss"], samples_t1=new["samples_t1"]),
                  shipped=dict(heldout_loss=old["heldout_loss"], samples_t1=old["samples_t1"]))
    path = ROOT / "benchmarks/results/pretrain.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
