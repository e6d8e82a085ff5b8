"""The packages form layers that point one way, and no modules import each other in a circle.

Every import counts, at module level or inside a function: an import moved into a function
still ties the two modules together (it only hides the circle until run time)."""

from __future__ import annotations

import ast
from pathlib import Path

from harness.processes import REPO

# Each package and the packages it may import (besides itself and third-party code):
# common <- (api, worker) <- launcher; offline tools and tests above them.
ALLOWED: dict[str, set[str]] = {
    "common": set(),
    "api": {"common"},
    "worker": {"common"},
    "launcher": {"common"},
    "voice_model": {"common", "worker"},
    "harness": {"common", "launcher", "voice_model"},
    "bench": {"common", "worker", "launcher", "harness", "voice_model"},
    "docs_support": {"common", "api"},
    "tests": {
        "common",
        "api",
        "worker",
        "launcher",
        "voice_model",
        "harness",
        "bench",
        "docs_support",
    },
}


def modules() -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    found = {}
    for package in ALLOWED:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports, anywhere in its file."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + is_package]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(target for target in targets if target in known)
    found.discard(name)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def test_no_package_imports_a_layer_above_it() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in sorted(targets)
        if (top := target.split(".")[0]) != (own := module.split(".")[0])
        and top not in ALLOWED[own]
    ]
    assert not wrong, "\n".join(wrong)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_modules_import_each_other_in_a_circle() -> None:
    edges = graph()
    # A package's __init__ importing its own modules is how a package is assembled, not a circle.
    for module, targets in edges.items():
        edges[module] = {t for t in targets if not module.startswith(t + ".")}
    assert not cycles(edges), cycles(edges)


def test_the_checks_see_a_circle_and_a_wrong_layer() -> None:
    """The two checks above can fail: a made-up circle is found, and the real graph has the
    edges the layering allows (the worker uses common)."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert "common.config" in graph()["worker.tasks"]
