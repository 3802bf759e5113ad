"""The package's shape stays as designed: no upward imports between its layers, small functions, errors in one
module. These walk the source, so a change that breaks the design fails here, not in review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "actstore"

# Lower layers never import higher ones (function-level imports included). Modules of one layer may import
# each other. Anything not listed is a base module (errors, config, location, params, ...): layer 0.
LAYERS = {
    "store": 1, "catalog": 2, "extract": 3, "coresets": 3, "interpret": 4, "evaluate": 5, "report": 6,
    "describe": 6, "demo": 7, "cli": 8,
}
MAX_FUNCTION_LINES = 60


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 99  # the package's own __init__ sits on top


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import of an actstore module in ``path``, wherever it stands."""
    here = _name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("actstore"):
                names = [f"{target}.{a.name}" for a in node.names] if node.module is None else [target]
                out += [(node.lineno, t) for t in names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("actstore")]
    return out


def test_no_module_imports_a_higher_layer():
    upward = []
    for path in _modules():
        mine = _layer(_name(path))
        for line, target in _imports(path):
            if _layer(target) > mine:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not upward, "\n".join(upward)


def test_the_layer_check_can_fail(tmp_path):
    """The walker sees a function-level relative import that climbs a layer (the check is not vacuous)."""
    fake = PACKAGE / "store" / "_layering_probe.py"
    fake.write_text("def f():\n    from ..extract.models import load_model\n")
    try:
        assert (2, "actstore.extract.models") in _imports(fake)
        assert _layer("actstore.extract.models") > _layer(_name(fake))
    finally:
        fake.unlink()


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_no_function_is_longer_than_sixty_lines():
    long = []
    for path in _modules():
        for fn in _functions(ast.parse(path.read_text())):
            lines = fn.end_lineno - fn.lineno + 1  # type: ignore[operator]
            if lines > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(PACKAGE.parent)}:{fn.lineno} {fn.name} ({lines} lines)")
    assert not long, "\n".join(long)


def test_every_exception_class_lives_in_errors():
    elsewhere = []
    for path in _modules():
        if path.name == "errors.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(b, ast.Name) and (b.id.endswith(("Error", "Exception"))) for b in node.bases):
                elsewhere.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}")
    assert not elsewhere, "\n".join(elsewhere)


@pytest.mark.parametrize("builtin", ["ValueError", "RuntimeError", "TypeError", "KeyError"])
def test_no_plain_builtin_error_is_raised_to_users(builtin):
    raised = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and \
                    isinstance(node.exc.func, ast.Name) and node.exc.func.id == builtin:
                raised.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not raised, "\n".join(raised)
