"""Checkpoints of a PPO-RLHF run that a crash at any moment cannot corrupt.

A checkpoint is a folder:

    policy/             the policy (AutoModelForCausalLM.from_pretrained loads it)
    trainer.pt          value head, optimizer, iteration, beta, history, settings, the shuffler's state
    sampler-<rank>.pt   each process's sampling generator (one per process under accelerate)
    history.json        the figures so far, for people
    manifest.json       written last: iteration, number of processes, and the SHA-256 of every file above

A save writes everything into `<folder>.new`, fsyncs it, writes the manifest, and only then swaps it in:
`<folder>` becomes `<folder>.old`, `<folder>.new` becomes `<folder>`, and `<folder>.old` is deleted. A crash
at any moment leaves at least one complete checkpoint among the three names. Loading takes the newest
complete one, checks every file against its manifest (pieces of two different saves are refused), and
checks that the run's settings and number of processes are those of the run being resumed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, is_dataclass
from pathlib import Path

import torch

from rlhf_lib.files import atomic_file, fsync_file, fsync_folder, write_atomic

MANIFEST = "manifest.json"


def _sibling(folder: Path, suffix: str) -> Path:
    return folder.with_name(folder.name + suffix)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _save_torch(obj, path: Path) -> None:
    with atomic_file(path, "wb") as f:
        torch.save(obj, f)


def save_checkpoint(folder, model, opt, rank: int, state: dict, accelerator=None) -> None:
    """Policy (loadable with AutoModelForCausalLM.from_pretrained), value head, optimizer and the
    random-number states, so that a resumed run continues with the same numbers. Atomic (see above)."""
    folder = Path(folder)
    new, old = _sibling(folder, ".new"), _sibling(folder, ".old")
    world = accelerator.num_processes if accelerator else 1
    sync = accelerator.wait_for_everyone if accelerator else (lambda: None)
    sync()
    if rank == 0:
        if new.exists():  # what an interrupted save left: never the only complete checkpoint (see load)
            shutil.rmtree(new)
        new.mkdir(parents=True)
    sync()
    _save_torch({"iteration": state["iteration"], "sampler": state["sampler"]}, new / f"sampler-{rank}.pt")
    sync()
    if rank == 0:
        model.lm.save_pretrained(new / "policy")
        _save_torch({"value_head": model.value_head.state_dict(), "optimizer": opt.state_dict(),
                     "state": {k: v for k, v in state.items() if k != "sampler"}}, new / "trainer.pt")
        write_atomic(new / "history.json", json.dumps(state["history"], indent=1))
        files = sorted(p for p in new.rglob("*") if p.is_file())
        for p in files:  # save_pretrained's files are not synced by their writer
            fsync_file(p)
        manifest = dict(iteration=state["iteration"], processes=world,
                        files={str(p.relative_to(new)): _sha256(p) for p in files})
        write_atomic(new / MANIFEST, json.dumps(manifest, indent=1))
        fsync_folder(new / "policy")
        if folder.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(folder, old)
        os.replace(new, folder)
        fsync_folder(folder.parent)
        shutil.rmtree(old, ignore_errors=True)
    sync()


def _manifest(folder: Path) -> dict | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        return manifest if isinstance(manifest, dict) and "files" in manifest else None
    except (OSError, ValueError):
        return None


def find_checkpoint(folder) -> Path | None:
    """The newest complete checkpoint among `folder`, `folder.new` and `folder.old` (None if there is none)."""
    folder = Path(folder)
    found = [(m["iteration"], p) for p in (folder, _sibling(folder, ".new"), _sibling(folder, ".old"))
             if (m := _manifest(p)) is not None]
    return max(found, key=lambda x: x[0])[1] if found else None


def _settings(config) -> dict:
    return asdict(config) if is_dataclass(config) else dict(config)


def load_checkpoint(folder, model, opt, rank: int, config=None, world: int = 1) -> dict:
    """Load the newest complete checkpoint of `folder` into model and opt; return the saved state.

    Refused with a clear error: no checkpoint; only an interrupted one; files of different saves; a
    checkpoint of a run with other settings (`config`, compared field by field) or another number of
    processes (`world`)."""
    folder = Path(folder)
    source = find_checkpoint(folder)
    if source is None:
        leftovers = [p for p in (folder, _sibling(folder, ".new")) if p.is_dir() and any(p.iterdir())]
        if (folder / "trainer.pt").is_file():  # written before checkpoints had manifests
            return _load_unchecked(folder, model, opt, rank, config)
        if leftovers:
            raise FileNotFoundError(f"no complete checkpoint to resume in {folder}: the save there was interrupted "
                                    "before it finished. Start the run again without resuming.")
        raise FileNotFoundError(f"no checkpoint to resume in {folder} (expected trainer.pt there)")
    manifest = _manifest(source)
    for name, digest in manifest["files"].items():
        path = source / name
        if not path.is_file() or _sha256(path) != digest:
            raise ValueError(f"the checkpoint in {source} is inconsistent: {name} does not belong to the save that "
                             f"wrote {MANIFEST} (iteration {manifest['iteration']}). Refusing to resume from a "
                             "mix of two saves.")
    if manifest["processes"] != world:
        raise ValueError(f"the checkpoint in {source} was made by {manifest['processes']} process(es); resume it "
                         f"with the same number (this run has {world})")
    return _load_unchecked(source, model, opt, rank, config)


def _load_unchecked(folder: Path, model, opt, rank: int, config) -> dict:
    from transformers import AutoModelForCausalLM

    try:
        blob = torch.load(folder / "trainer.pt", weights_only=False, map_location="cpu")
        sampler = torch.load(folder / f"sampler-{rank}.pt", weights_only=False, map_location="cpu")
    except Exception as err:  # EOFError, pickle or zip errors: all mean a damaged file
        raise ValueError(f"cannot read the checkpoint in {folder} ({type(err).__name__}: {err}); it is damaged, "
                         "probably by an interrupted save. Start the run again without resuming.") from None
    saved_settings = blob["state"].get("config")
    if config is not None and saved_settings is not None:
        wanted = _settings(config)
        differ = [f"{k}: {saved_settings.get(k)!r} in the checkpoint, {v!r} now" for k, v in wanted.items()
                  if saved_settings.get(k) != v]
        if differ:
            raise ValueError(f"the checkpoint in {folder} belongs to a run with other settings ("
                             + "; ".join(differ) + "). Resume with the same settings, or start a new run.")
    saved = AutoModelForCausalLM.from_pretrained(folder / "policy", local_files_only=True)
    model.lm.load_state_dict(saved.state_dict())
    model.value_head.load_state_dict(blob["value_head"])
    opt.load_state_dict(blob["optimizer"])
    state = dict(blob["state"])
    state["sampler"] = sampler["sampler"] if isinstance(sampler, dict) else sampler
    if isinstance(sampler, dict) and sampler.get("iteration") != state["iteration"]:
        raise ValueError(f"the checkpoint in {folder} is inconsistent: sampler-{rank}.pt is from iteration "
                         f"{sampler.get('iteration')}, trainer.pt from iteration {state['iteration']}")
    return state
