"""What the notebooks and the docs name exists: every name they import from rlhf_lib, every rlhf_lib/... path they
point a reader to, every module the package's docstring lists; and importing the package stays light."""

import ast
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
DOCS = [ROOT / "README.md", ROOT / "README.zh-CN.md", *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "benchmarks" / "README.md"]
SOURCES = sorted((ROOT / "rlhf_lib").rglob("*.py"))
PATH = re.compile(r"rlhf_lib/(?:\w+/)*(?:\w+\.py)?")  # rlhf_lib/lm.py, rlhf_lib/exercises/, rlhf_lib/


def code_cells(path: Path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)


def rlhf_lib_imports(code: str) -> list[tuple[str, str | None]]:
    """(module, name) for each `from rlhf_lib... import name`, (module, None) for each `import rlhf_lib...`."""
    code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))  # magics
    found = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "rlhf_lib":
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names if alias.name.split(".")[0] == "rlhf_lib"]
    return found


def missing_imports(code: str) -> list[str]:
    """The rlhf_lib names `code` imports that do not import, as `module.name`."""
    missing = []
    for module, name in rlhf_lib_imports(code):
        try:
            imported = importlib.import_module(module)
            if name is not None and name != "*" and not hasattr(imported, name):
                importlib.import_module(f"{module}.{name}")  # `from rlhf_lib import tastes`: a submodule
        except ImportError:
            missing.append(f"{module}.{name}" if name else module)
    return missing


def missing_paths(text: str) -> list[str]:
    """The rlhf_lib/... files and folders `text` names that are not in the repository."""
    return sorted({p for p in PATH.findall(text) if not (ROOT / p).exists()})


@pytest.mark.parametrize("path", NOTEBOOKS + DOCS, ids=lambda p: p.name)
def test_every_name_a_notebook_or_doc_imports_exists(path):
    code = code_cells(path) if path.suffix == ".ipynb" else python_blocks(path)
    assert [m for cell in code for m in missing_imports(cell)] == []


@pytest.mark.parametrize("path", NOTEBOOKS + DOCS + SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_rlhf_lib_path_a_notebook_or_doc_names_exists(path):
    assert missing_paths(path.read_text()) == []


def test_the_checks_find_a_missing_name_and_a_missing_path():
    code = "%matplotlib inline\nfrom rlhf_lib import set_seed, tastes\n" \
           "from rlhf_lib.exercises import check, no_such_name"
    assert rlhf_lib_imports(code) == [("rlhf_lib", "set_seed"), ("rlhf_lib", "tastes"),
                                      ("rlhf_lib.exercises", "check"), ("rlhf_lib.exercises", "no_such_name")]
    assert missing_imports(code) == ["rlhf_lib.exercises.no_such_name"]
    assert missing_imports("import rlhf_lib.no_such_module") == ["rlhf_lib.no_such_module"]
    text = "see `rlhf_lib/lm.py`, `rlhf_lib/exercises/` and rlhf_lib/threads.py. Not rlhf_lib/gone.py or rlhf_lib/gone/"
    assert missing_paths(text) == ["rlhf_lib/gone.py", "rlhf_lib/gone/"]


def test_the_readme_tree_lists_files_that_exist():
    tree = re.search(r"```\nrlhf_lib/\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL).group(1)
    entries = [line.split()[0] for line in tree.splitlines() if line.startswith("  ")]
    entries = [e for e in entries if e.endswith(("/", ".py"))]  # not the wrapped descriptions
    assert len(entries) > 20
    assert [e for e in entries if not (ROOT / "rlhf_lib" / e).exists()] == []


def test_the_package_docstring_lists_every_module():
    import rlhf_lib

    listed = set(re.findall(r"^    (\w+\.py|\w+/) ", rlhf_lib.__doc__, flags=re.MULTILINE))
    modules = {p.name for p in (ROOT / "rlhf_lib").glob("*.py") if p.name != "__init__.py"}
    packages = {p.parent.name + "/" for p in (ROOT / "rlhf_lib").glob("*/__init__.py")}
    assert listed == modules | packages


def test_importing_the_package_loads_no_torch():
    """The tabular notebooks need no torch: `import rlhf_lib` and its re-exported names must not pull it in."""
    code = "import sys, rlhf_lib; print(sorted(m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"
