"""The import layers of docs/architecture.md hold: checked on the source text, so a new import that breaks them
fails here rather than in a review."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, subprocess_environment

SOURCE = REPO / "source"
LEAVES = {
    "source.errors": set(),
    "source.models.registry": set(),
    "source.models.slide_registry": set(),
    "source.models.settings": {"source.models.registry", "source.models.slide_registry"},
    "source.wsi.settings": {"source.errors"},
    "source.heatmaps.settings": set(),
    "source.explain.settings": set(),
}
"""The bottom layer: plain settings and registries. Each may import only the modules listed (no torch)."""
CONFIG_MAY_IMPORT = {"source.config", "source.errors", "source.io", *LEAVES}
"""Config schemas, checks and Hydra plumbing sit on the leaves (and source.io's atomic writes) only."""


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path) -> set[str]:
    """The ``source.*`` modules ``path`` imports, at any depth of the file (lazy imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("source"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.startswith("source")}
    return names


def allowed(name: str, prefixes: set[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


@pytest.mark.parametrize("leaf", sorted(LEAVES))
def test_leaf_modules_import_only_the_leaves_below_them(leaf):
    path = SOURCE.parent / (leaf.replace(".", "/") + ".py")
    assert project_imports(path) <= LEAVES[leaf], f"{leaf} imports {project_imports(path) - LEAVES[leaf]}"


@pytest.mark.parametrize("path", sorted((SOURCE / "config").glob("*.py")), ids=lambda path: path.name)
def test_config_imports_nothing_above_it(path):
    above = {name for name in project_imports(path) if not allowed(name, CONFIG_MAY_IMPORT)}
    assert not above, f"{path.name} imports {above}: config may import only {sorted(CONFIG_MAY_IMPORT)}"


def test_nothing_below_engines_imports_engines_or_entry():
    offenders = {}
    for path in SOURCE.rglob("*.py"):
        name = module_name(path)
        if allowed(name, {"source.engines", "source.entry"}):
            continue
        upward = {
            imported for imported in project_imports(path) if allowed(imported, {"source.engines", "source.entry"})
        }
        if upward:
            offenders[name] = upward
    assert not offenders


def test_config_and_the_leaves_load_without_torch():
    """The command line is checked before torch loads: every config module and leaf imports without it."""
    modules = sorted({module_name(path) for path in (SOURCE / "config").glob("*.py")} | set(LEAVES))
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_environment(), cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"


RUNS_MAY_IMPORT = {"source.runs", "source.config", "source.errors", "source.io", "source.log", "source.distributed"}
"""Run folders, locks and claims sit below the engines and above config, with nothing of the compute stack."""
RUNS_ORDER = ["termination", "owned", "claims", "lock", "shared", "folder"]
"""source.runs' modules in import order: each imports only those before it (no circle)."""


@pytest.mark.parametrize("path", sorted((SOURCE / "runs").glob("*.py")), ids=lambda path: path.name)
def test_run_folders_import_nothing_of_the_compute_stack_and_run_one_way(path):
    imported = project_imports(path)
    above = {name for name in imported if not allowed(name, RUNS_MAY_IMPORT)}
    assert not above, f"{path.name} imports {above}: source.runs may import only {sorted(RUNS_MAY_IMPORT)}"
    if path.stem in RUNS_ORDER:
        before = {f"source.runs.{name}" for name in RUNS_ORDER[: RUNS_ORDER.index(path.stem)]}
        later = {name for name in imported if allowed(name, {"source.runs"}) and name not in before}
        assert not later, f"{path.name} imports {later}: source.runs imports one way ({' <- '.join(RUNS_ORDER)})"


CONFIG_EDGE = {"source.config", "source.entry", "source.engines.job"}
"""Where a raw (omegaconf) config may be read: the schemas, the entry start-up and the job wiring (the job skeleton and
each ``source.engines.<name>_job``); the loops and stages of engines take settings too."""


def at_the_edge(name: str) -> bool:
    return allowed(name, CONFIG_EDGE) or (name.startswith("source.engines.") and name.endswith("_job"))


def imports_omegaconf(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "omegaconf":
            return True
        if isinstance(node, ast.Import) and any(alias.name.split(".")[0] == "omegaconf" for alias in node.names):
            return True
    return False


def test_a_raw_config_is_read_only_at_the_edge():
    readers = {module_name(path) for path in SOURCE.rglob("*.py") if imports_omegaconf(path)}
    below_the_edge = {name for name in readers if not at_the_edge(name)}
    assert below_the_edge == set(), "take settings built at the edge, not a DictConfig"


def test_the_benchmarks_import_each_other_without_a_circle():
    graph = {}
    for path in (REPO / "benchmarks").glob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("benchmarks."):
                imported.add(node.module.split(".", 1)[1])
        graph[path.stem] = imported
    visiting, done = [], set()

    def visit(module: str) -> None:
        assert module not in visiting, f"import circle: {' -> '.join(visiting[visiting.index(module) :] + [module])}"
        if module in done:
            return
        visiting.append(module)
        for imported in graph.get(module, ()):
            visit(imported)
        visiting.pop()
        done.add(module)

    for module in graph:
        visit(module)
