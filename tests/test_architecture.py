"""The package's architecture: the import layers of pyproject.toml (import-linter), no import cycle, no private
name imported across modules, and function-level imports only where they defer an optional heavy dependency."""
from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hso"
# what a function may import lazily: optional heavy dependencies, and hso modules that import one at module level
# optional heavy dependencies, and scipy: required, but 0.36 s of a 0.51 s `import hso`, and only a search's
# polish and `show_config` need it (tests/test_library.py holds a default lookup free of it)
DEFERRABLE = {"torch", "diffusers", "triton", "matplotlib", "sklearn", "scipy"}
DEFERRABLE_HSO = {"hso.fast.reference_torch": "torch", "hso.fast.triton": "triton",
                  "hso.evaluation": "the evaluation harness"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if path.name != "__init__.py":
        base.pop()
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def test_import_linter_contracts_hold(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0


def test_no_import_cycle_among_hso_modules():
    graph = grimp.build_graph("hso", cache_dir=None)
    cycles = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            chain = graph.find_shortest_chain(importer=imported, imported=module)
            if chain:
                cycles.append(" -> ".join((module,) + tuple(chain)))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_private_name_is_imported_from_another_module():
    found = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                source = _absolute(module, path, node)
                if source.split(".")[0] != "hso":
                    continue
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{module}: from {source} import {alias.name}")
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                if isinstance(node.value, ast.Name) and node.value.id in {"fast", "optimize", "measured", "library",
                                                                           "schedules", "calibration", "diffusers"}:
                    found.append(f"{module}: {node.value.id}.{node.attr}")
    assert not found, "private names used across modules:\n" + "\n".join(found)


def test_function_level_imports_only_defer_optional_heavy_dependencies():
    bad = []
    for module, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for fn in ast.walk(ast.parse(text)):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    targets = [_absolute(module, path, node)]
                else:
                    continue
                where = f"{module}:{node.lineno}: {lines[node.lineno - 1].strip()}"
                for target in targets:
                    heavy = target.split(".")[0] in DEFERRABLE or any(
                        target == m or target.startswith(m + ".") for m in DEFERRABLE_HSO)
                    if not heavy:
                        bad.append(f"{where} (not an optional heavy dependency: import it at module level)")
                commented = "#" in lines[node.lineno - 1] or lines[node.lineno - 2].strip().startswith("#")
                if not commented:
                    bad.append(f"{where} (say why it is deferred, in a comment)")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("layer", ["hso.optimize", "hso.calibration", "hso.diffusers", "hso.library"])
def test_the_product_never_imports_its_evaluation_harness(layer):
    graph = grimp.build_graph("hso", cache_dir=None)
    for harness in ("hso.evaluation", "hso.testbeds"):
        assert not graph.chain_exists(importer=layer, imported=harness, as_packages=True), f"{layer} reaches {harness}"
