"""The shape of the package, kept: small modules, no import cycle, the core below tracking and
sweep, and MLflow's and Optuna's private names only in the one adapter (``sae/internals.py``)."""

import ast
import re
from pathlib import Path

SAE = Path(__file__).resolve().parents[1] / "sae"
MAX_LINES = 450
CORE = (
    "sae.config",
    "sae.model",
    "sae.penalties",
    "sae.metrics",
    "sae.splits",
    "sae.steppers",
    "sae.records",
    "sae.resume",
    "sae.train",
)
MAX_FUNCTION_LINES = 80
ABOVE_CORE = ("sae.tracking", "sae.sweep", "sae.report", "sae.cli", "sae.commands", "sae.runner")


def _modules() -> dict[str, Path]:
    modules = {}
    for path in SAE.rglob("*.py"):
        parts = path.relative_to(SAE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The sae modules ``name`` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                )
            # ``from package import module`` imports the module; ``from module import name``
            # the module
            targets = [f"{base.rstrip('.')}.{alias.name}" for alias in node.names]
            targets = [t if t in modules else base for t in targets]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target.startswith("sae") and target != name:
                found.add(target)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        state[module] = 2
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_layout__small_modules_no_import_cycle_and_the_core_imports_nothing_above_it():
    modules = _modules()
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules.items()}
    assert max(sizes.values()) < MAX_LINES, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    for name in CORE:
        assert not {t for t in graph[name] if t.startswith(ABOVE_CORE)}, (name, graph[name])
    # the check itself finds a cycle where there is one
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def _long_functions(source: str) -> list[tuple[str, int]]:
    """Every function (and method) of ``source`` longer than MAX_FUNCTION_LINES, with its length
    from its ``def`` line to its last line."""
    return [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def test_layout__no_function_in_the_package_over_80_lines():
    """A long orchestration reads as a few named steps (style.md): none over 80 lines."""
    long = {
        f"{path.relative_to(SAE.parent)}:{name}": lines
        for path in sorted(SAE.rglob("*.py"))
        for name, lines in _long_functions(path.read_text())
    }
    assert long == {}
    # the check itself finds one
    body = "\n".join(f"    x = {i}" for i in range(MAX_FUNCTION_LINES))
    assert _long_functions(f"def f():\n{body}\n") == [("f", MAX_FUNCTION_LINES + 1)]


PRIVATE = re.compile(
    r"\b(?:mlflow|optuna)(?:\.\w+)*\._(?!_)\w+"  # mlflow.store._x, optuna._imports, ...
    r"|\._(?:tracking_client|storage|trial_id|study_id|backend)\b"  # private attributes
    r"|\bstorage\.(?:get_trial_id_from|set_trial_|get_study_id_from)\w*"  # Optuna's storage API
)


def test_layout__private_mlflow_and_optuna_names_only_in_the_adapter():
    offenders = [
        f"{path.relative_to(SAE.parent)}:{number}: {line.strip()}"
        for path in sorted(SAE.rglob("*.py"))
        if path.name != "internals.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE.search(line) and not line.lstrip().startswith("#")
    ]
    assert offenders == []
    assert PRIVATE.search((SAE / "internals.py").read_text())  # the pattern still finds them
