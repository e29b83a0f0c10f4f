"""The import graph of platform/ringbit: every component owns its config (ringbit.models.config,
ringbit.train.config, ...), ringbit.config is only the shared machinery, the model code
(models/, parallel/, quant/) never reaches the job layer (train, tune, the CLI, services,
tracking; Ray, MLflow), and no modules import each other in a cycle.

Mostly static (the AST of every module, no imports), plus fresh interpreters for what the
config modules load at run time."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

from conftest import REPO

PKG = REPO / "platform" / "ringbit"
MODEL_CODE = ("ringbit.models", "ringbit.parallel", "ringbit.quant")
# what model code must not import, directly, lazily inside a function, or through another module
JOB_LAYER = ("ringbit.train", "ringbit.tune", "ringbit.cli", "ringbit.workflows", "ringbit.jobs",
             "ringbit.services", "ringbit.tracking", "ringbit.registry", "ringbit.serving",
             "ringbit.agents", "ringbit.evaluator", "ringbit.llm", "ringbit.k8s")
HEAVY_RUNTIMES = ("ray", "mlflow", "deepspeed")
# the schema modules: importing them (and validating a config) is pydantic + yaml only
CONFIG_MODULES = ("ringbit.config", "ringbit.models.config", "ringbit.quant.config",
                  "ringbit.parallel.config", "ringbit.data.config", "ringbit.train.config",
                  "ringbit.evaluator.config", "ringbit.agents.config", "ringbit.agents.computer.config",
                  "ringbit.agents.react.config", "ringbit.agents.memwalker_config", "ringbit.tune.space",
                  "ringbit.workflows")
NOT_FOR_CONFIGS = ("torch", "ray", "mlflow", "deepspeed", "gymnasium", "miniwob", "selenium",
                   "rank_bm25", "typer", "ringbit.cli")


def _name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@lru_cache(maxsize=None)
def _modules() -> dict[str, Path]:
    return {_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return _modules()[name].name == "__init__.py"


class _Imports(ast.NodeVisitor):
    """Modules a file imports: at import time only (module and class bodies, not functions, not
    `if TYPE_CHECKING:`), or everywhere."""

    def __init__(self, module: str, everywhere: bool):
        self.module, self.everywhere, self.found = module, everywhere, []

    def _base(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        package = self.module if _is_package(self.module) else self.module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        return f"{package}.{node.module}" if node.module else package

    def visit_Import(self, node: ast.Import) -> None:
        self.found += [(a.name, node.lineno) for a in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._base(node)
        for alias in node.names:  # `from pkg import submodule` imports the submodule
            sub = f"{base}.{alias.name}"
            self.found.append((sub if sub in _modules() else base, node.lineno))

    def visit_If(self, node: ast.If) -> None:
        test = ast.unparse(node.test)
        if not self.everywhere and test in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def _function(self, node: ast.AST) -> None:
        if self.everywhere:
            self.generic_visit(node)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function


@lru_cache(maxsize=None)
def _imports(module: str, everywhere: bool = False) -> tuple[tuple[str, int], ...]:
    visitor = _Imports(module, everywhere)
    visitor.visit(ast.parse(_modules()[module].read_text()))
    return tuple(visitor.found)


def _with_packages(name: str) -> list[str]:
    """Importing a.b.c runs a/__init__ and a/b/__init__ first."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _closure(roots: list[str]) -> dict[str, str]:
    """Every module imported at import time from `roots` (ringbit modules are followed, others
    are leaves), each with the chain that imports it."""
    seen: dict[str, str] = {}
    todo = [(r, r) for r in roots]
    while todo:
        module, chain = todo.pop()
        if module in seen:
            continue
        seen[module] = chain
        if module in _modules():
            for imported, _ in _imports(module):
                for step in _with_packages(imported):
                    todo.append((step, f"{chain} -> {step}"))
    return seen


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_scan_sees_the_package():
    mods = _modules()
    assert "ringbit.models.transformer" in mods and "ringbit.train.config" in mods
    assert "ringbit.models.config" in [m for m, _ in _imports("ringbit.models.transformer")]
    assert "ringbit.quant.bitlinear" in [m for m, _ in _imports("ringbit.models.linear", everywhere=True)]
    assert "ringbit.quant.bitlinear" not in [m for m, _ in _imports("ringbit.models.linear")]  # lazy


def test_config_is_only_the_machinery():
    """ringbit.config imports nothing from ringbit (nowhere, not even lazily) and holds no schema."""
    found = [f"line {line}: {m}" for m, line in _imports("ringbit.config", everywhere=True)
             if _under(m, ("ringbit",))]
    assert not found, f"ringbit.config must not import from ringbit: {found}"
    tree = ast.parse(_modules()["ringbit.config"].read_text())
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    assert sorted(classes) == ["ConfigError", "StrictModel"], (
        f"job schemas belong beside their code, not in ringbit.config: {classes}")


@pytest.mark.parametrize("package", MODEL_CODE)
def test_model_code_stays_out_of_the_job_layer(package):
    """models/, parallel/, quant/: no import of the job layer or of Ray/MLflow, in any function,
    nor through any module they import; from ringbit.config only the machinery."""
    own = [m for m in _modules() if _under(m, (package,))]
    problems = []
    for module in own:
        for imported, line in _imports(module, everywhere=True):
            if _under(imported, JOB_LAYER + HEAVY_RUNTIMES):
                problems.append(f"{module} line {line} imports {imported}")
    for module, chain in _closure(own).items():
        before = chain.split(" -> ")[:-1]  # report where the chain first goes wrong only
        if _under(module, JOB_LAYER + HEAVY_RUNTIMES) and not any(_under(m, JOB_LAYER + HEAVY_RUNTIMES) for m in before):
            problems.append(f"imported at import time: {chain}")
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    """No ringbit modules import each other at import time in a cycle (a package's __init__
    importing its own submodules is the usual pattern, not a cycle)."""
    graph: dict[str, set[str]] = {m: set() for m in _modules()}
    for module in graph:
        for imported, _ in _imports(module):
            for target in _with_packages(imported):
                is_own_package = module == target or module.startswith(target + ".")
                if target in graph and not is_own_package:
                    graph[module].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    assert not cycles, f"import cycles: {cycles}"


def test_config_modules_import_light():
    """Importing every schema module and the workflow registry, and validating each workflow's
    default config (the eval-computer one with an unknown task: checked when the workflow starts,
    not here), loads no torch, Ray, MLflow, browser stack or CLI."""
    code = f"""
import importlib, json, sys
for name in {list(CONFIG_MODULES)!r}:
    importlib.import_module(name)
from ringbit.workflows import WORKFLOWS
from ringbit.agents.computer.config import ComputerEvalConfig
ComputerEvalConfig(tasks=["no-such-task"])
print(json.dumps({{"modules": sorted(sys.modules), "workflows": sorted(WORKFLOWS)}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.splitlines()[-1])
    heavy = [m for m in loaded["modules"] if _under(m, NOT_FOR_CONFIGS)]
    assert not heavy, f"the config modules pulled in {sorted({m.split('.')[0] for m in heavy})}: {heavy[:10]}"
    assert "eval-computer" in loaded["workflows"]


def test_machinery_alone_imports_no_other_ringbit_module():
    proc = subprocess.run([sys.executable, "-c", "import sys, ringbit.config; "
                           "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ringbit'))"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['ringbit', 'ringbit.config']"
