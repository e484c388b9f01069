"""`python -m rlhf_lib classroom serve|train`: run the class's labeling server, train on what the class labelled.

    python -m rlhf_lib classroom serve --db class.db --port 8000 [--host 0.0.0.0] [--pairs FILE]
    python -m rlhf_lib classroom train --db class.db --out runs/class
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path


def add_classroom_commands(sub) -> None:
    """Register the `classroom` command group on the main parser's subparsers."""
    group = sub.add_parser("classroom", help="a labeling server for a whole class, and training on its labels")
    commands = group.add_subparsers(dest="classroom_command", required=True)

    p = commands.add_parser("serve", help="serve the labeling pages and API (students label, the teacher watches)")
    p.add_argument("--db", required=True, type=Path, help="SQLite file of the class's pairs and labels "
                   "(made if missing; a restarted server carries on from it)")
    p.add_argument("--port", type=int, default=8000, help="(default: 8000)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1; 0.0.0.0 lets the class's machines in)")
    p.add_argument("--pairs", type=Path, default=None, help="JSONL of {prompt, completion_a, completion_b} "
                   "(default: sample --n-pairs pairs from the course model)")
    p.add_argument("--n-pairs", type=int, default=200, dest="n_pairs", help="pairs to sample (default: 200)")
    p.add_argument("--shared", type=float, default=0.2,
                   help="share of the pairs given to two students, to measure agreement (default: 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seeds the sampled pairs and which are shared (default: 0)")
    p.add_argument("--teacher-token", default=None, dest="teacher_token",
                   help="token for the teacher page and the export (default: the one saved in --db, or a new one)")
    p.add_argument("--runs", type=Path, default=Path("runs"),
                   help="folder for the teacher page's training runs (default: runs)")
    p.set_defaults(run=cmd_serve, out=None)

    p = commands.add_parser("train", help="train the class's reward model and a short PPO policy on its labels")
    p.add_argument("--db", required=True, type=Path, help="the class's SQLite file (from `classroom serve`)")
    p.add_argument("--out", required=True, type=Path, help="new folder: labels.jsonl, reward_model/, ppo/")
    p.add_argument("--epochs", type=int, default=8, help="reward model epochs (default: 8)")
    p.add_argument("--iterations", type=int, default=30, help="PPO iterations (default: 30)")
    p.add_argument("--heldout", type=int, default=200, help="fresh pairs to check the reward model against gold")
    p.add_argument("--eval-samples", type=int, default=200, dest="eval_samples",
                   help="samples for the before/after figures (default: 200)")
    p.add_argument("--min-labels", type=int, default=20, dest="min_labels",
                   help="refuse to train on fewer a/b labels than this (default: 20)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=cmd_train)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def cmd_serve(args):
    from rlhf_lib.classroom.store import Store, read_pairs_file

    _check(1 <= args.port <= 65535, f"--port must be between 1 and 65535, got {args.port}")
    _check(0.0 <= args.shared <= 1.0, f"--shared must be between 0 and 1, got {args.shared}")
    _check(args.n_pairs >= 1, f"--n-pairs must be at least 1, got {args.n_pairs}")
    _check(args.teacher_token is None or len(args.teacher_token) >= 8, "--teacher-token: use 8 characters or more")
    check_port(args.host, args.port)
    pairs = read_pairs_file(args.pairs) if args.pairs is not None else None
    store = Store(args.db)
    if pairs is not None:
        n = store.seed_pairs(pairs, shared=args.shared, seed=args.seed, model=f"pairs from {args.pairs.name}")
    elif store.n_pairs():
        n = store.n_pairs()
        print(f"carrying on with the {n} pairs in {args.db}", flush=True)
    else:
        n = store.seed_pairs(course_model_pairs(args.n_pairs, args.seed), shared=args.shared, seed=args.seed)
    token = args.teacher_token or store.get_meta("teacher_token") or secrets.token_urlsafe(12)
    store.set_meta("teacher_token", token)
    serve(store, token, args.host, args.port, args.runs)
    return None


def check_port(host: str, port: int) -> None:
    """Refuse a port another program holds before any work starts (uvicorn would find out only at the end)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as err:
            raise ValueError(f"--host {host} --port {port}: cannot listen there ({err.strerror}); "
                             "choose another --port") from None


def course_model_pairs(n: int, seed: int) -> list[tuple[str, str, str]]:
    from rlhf_lib.feedback import sample_pairs
    from rlhf_lib.lm import load_model

    print(f"sampling {n} pairs from the course model (seed {seed})...", flush=True)
    model, tokenizer = load_model(None)
    return sample_pairs(model, tokenizer, n, seed=seed)


def serve(store, token: str, host: str, port: int, runs: Path) -> None:
    import uvicorn

    from rlhf_lib.classroom.app import make_app

    trainer = BackgroundTrainer(store.path, runs)
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    print(f"{store.n_pairs()} pairs in {store.path}\n"
          f"students: http://{shown}:{port}/\n"
          f"teacher:  http://{shown}:{port}/teacher?token={token}\n"
          f"teacher token: {token}", flush=True)
    try:
        uvicorn.run(make_app(store, token, trainer), host=host, port=port, log_level="warning", access_log=False)
    finally:
        trainer.stop()


class BackgroundTrainer:
    """The teacher page's "Train now": one `classroom train` process at a time, its output in a log file."""

    def __init__(self, db: Path, runs: Path):
        self.db, self.runs = Path(db), Path(runs)
        self.process, self.out, self.lock = None, None, threading.Lock()

    def start(self) -> None:
        with self.lock:
            if self.process is not None and self.process.poll() is None:
                return
            self.out = self.runs / datetime.now().strftime("class-%Y%m%d-%H%M%S")
            self.out.mkdir(parents=True)
            log = open(self.out / "train.log", "w")
            self.process = subprocess.Popen([sys.executable, "-m", "rlhf_lib", "classroom", "train", "--db",
                                             str(self.db), "--out", str(self.out)],
                                            stdout=log, stderr=subprocess.STDOUT)
            log.close()

    def state(self) -> dict:
        if self.process is None:
            return dict(state="not started", out=None, log_tail="")
        code = self.process.poll()
        state = "running" if code is None else "finished" if code == 0 else f"failed (exit code {code})"
        log = (self.out / "train.log").read_text(errors="replace")
        return dict(state=state, out=str(self.out), log_tail=log[-3000:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


def cmd_train(args):
    """Export the class's labels, then the library's `reward` and `ppo` commands on them (`rlhf_lib.pipeline`)."""
    from rlhf_lib.classroom.store import Store
    from rlhf_lib.feedback import read_records
    from rlhf_lib.pipeline import ppo_and_save, reward_and_save, write_summary
    from rlhf_lib.reward_model import RewardConfig
    from rlhf_lib.rlhf import RLHFConfig

    _check(args.db.is_file(), f"--db: no database at {args.db}")
    leftover = [f.name for f in args.out.iterdir() if f.name != "train.log"] if args.out.is_dir() else []
    _check(not leftover, f"--out {args.out} already holds {leftover[:3]}; choose a new folder")
    for name in ("epochs", "iterations", "heldout", "eval_samples"):
        _check(getattr(args, name) >= 1, f"--{name.replace('_', '-')} must be at least 1")
    labels = args.out / "labels.jsonl"
    n = Store(args.db).export(labels)
    decided = sum(r["choice"] in ("a", "b") for r in read_records(labels, allow_empty=True))
    _check(decided >= args.min_labels, f"the class has {decided} a/b labels in {args.db} ({n} in all); "
                                       f"--min-labels asks for {args.min_labels}")
    print(f"{n} labels ({decided} a/b) exported to {labels}", flush=True)
    reward, ppo = args.out / "reward_model", args.out / "ppo"
    # the class labels one-sentence completions of the course prompts: the sentence task end to end
    _step(["reward", "--task", "sentence", "--out", str(reward), "--labels", str(labels), "--epochs", str(args.epochs),
           "--heldout", str(args.heldout), "--seed", str(args.seed)], reward,
          lambda: reward_and_save(reward, RewardConfig(epochs=args.epochs, seed=args.seed), labels,
                                  heldout=args.heldout))
    _step(["ppo", "--task", "sentence", "--out", str(ppo), "--reward-model", str(reward), "--iterations",
           str(args.iterations), "--eval-samples", str(args.eval_samples), "--seed", str(args.seed)], ppo,
          lambda: ppo_and_save(ppo, RLHFConfig(iterations=args.iterations, seed=args.seed), reward,
                               eval_samples=args.eval_samples, task="sentence"))
    rm = json.loads((reward / "summary.json").read_text())
    rl = json.loads((ppo / "summary.json").read_text())
    before, after = rl["before"], rl["after"]
    print("\nsamples of the policy before and after PPO (same prompts, same seed):")
    for b, a in zip(before.get("examples", []), after.get("examples", [])):
        print(f"  before: {b}\n  after:  {a}")
    keys = [k for k in before if isinstance(before[k], (int, float)) and k in after]
    summary = dict(labels=str(labels), n_labels=n, n_decided=decided,
                   reward_model_gold_accuracy=rm.get("gold_accuracy"),
                   before={k: before[k] for k in keys}, after={k: after[k] for k in keys},
                   examples_before=before.get("examples", []), examples_after=after.get("examples", []),
                   reward_model=str(reward), policy=rl.get("policy"))
    write_summary(args.out, summary)
    return summary


def _step(argv: list[str], out: Path, work) -> None:
    """One step of `train`: says which command it is, runs `work` (that command's library function), and
    reports as that command does; a failure is printed, and stops the training."""
    from rlhf_lib.pipeline import print_summary

    print("python -m rlhf_lib " + " ".join(argv), flush=True)
    try:
        summary = work()
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise ValueError(f"`{argv[0]}` failed (its error is printed above)") from None
    print_summary(summary, out)
