"""The repository's promises to a newcomer: pinned requirements, and a CI that runs the README's command."""

import re
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```(?:bash|sh)\n(.*?)\n```", text, flags=re.DOTALL)


def pins(name: str) -> dict[str, str]:
    """package -> pinned version, from a requirements or constraints file."""
    found = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith(("-e", "-c")):
            continue
        assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][A-Za-z0-9.+]*", line), f"unpinned in {name}: {line}"
        package, pinned = line.split("==")
        found[re.sub(r"[-_.]+", "-", re.sub(r"\[.*\]", "", package)).lower()] = pinned  # one spelling a package
    return found


def test_every_requirement_is_pinned_alike_and_installed_as_pinned():
    """torch is pinned in requirements.txt (an unpinned one would pull CUDA packages), a package pinned in both
    files has the same version in both, and the tests run with the versions requirements.txt pins."""
    required, constrained = pins("requirements.txt"), pins("constraints.txt")
    assert "torch" in required and "torch" not in constrained
    assert {p: (v, constrained[p]) for p, v in required.items() if p in constrained and constrained[p] != v} == {}
    installed = {p: version(p).split("+")[0] for p in required}  # 2.13.0+cpu is 2.13.0
    assert {p: (v, installed[p]) for p, v in required.items() if installed[p] != v} == {}


def test_ci_runs_the_readme_test_command():
    commands = readme_commands()
    test_command = next(c for c in commands if "pytest" in c)
    ci = (ROOT / ".ci" / "run").read_text()
    steps = [step.strip() for step in test_command.split("&&")]  # venv, install, pytest: in CI, in this order
    places = [ci.find(step) for step in steps]
    assert -1 not in places and places == sorted(places), (steps, places)
    lint = ci.find(".venv/bin/ruff check .")
    assert places[-2] < lint < places[-1], "CI lints after the install and before the tests"
    assert any("jupyter lab" in c for c in commands)
