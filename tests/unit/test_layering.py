"""The import direction of DESIGN.md section 3: graphs -> nodes, checkpoint; nodes import neither graphs nor
checkpoint; checkpoint never imports graphs. Read from the source (ast), so an import inside a function
or under TYPE_CHECKING counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"nodes": ("graphs", "checkpoint"), "checkpoint": ("graphs",)}


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a module of `package`: `import a.b`, `from a.b
    import c` (as a.b and a.b.c, so `from graphs import x` counts), relative imports resolved against
    `package`, and importlib.import_module / __import__ calls with a literal name."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def violations(package: str) -> list[str]:
    """`file:line imports module` for every import of a package `package` must not import."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        inside = ".".join(path.relative_to(ROOT).parts[:-1])
        for line, module in imported_modules(path.read_text(encoding="utf-8"), inside):
            if module.split(".")[0] in FORBIDDEN[package]:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_in_the_allowed_direction(package: str) -> None:
    assert (ROOT / package / "__init__.py").is_file()
    assert violations(package) == []


def test_every_import_form_is_seen() -> None:
    """The checker itself: each way of writing an import is caught (a checker that sees nothing passes)."""
    source = "\n".join(
        [
            "import graphs.api",
            "import checkpoint",
            "from graphs import api",
            "from checkpoint.saver import ConvomemSaver",
            "from . import state",
            "from .. import graphs",
            "def later():",
            "    from graphs.settings import Settings",
            "    import importlib; importlib.import_module('checkpoint.locks')",
        ]
    )
    found = {name for _, name in imported_modules(source, "nodes.sub")}
    assert {
        "graphs.api",
        "checkpoint",
        "graphs",
        "checkpoint.saver",
        "graphs.settings",
        "checkpoint.locks",
        "nodes.sub.state",
        "nodes.graphs",
    } <= found
