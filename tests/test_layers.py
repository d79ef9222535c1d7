"""The layers of the package: who may import whom, checked on the source (no import needed)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "generator"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path) -> set[str]:
    """Modules of the package that `path` imports when it is imported: module-level statements
    only (not inside functions, not under `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text("utf-8"))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Try):
                visit(node.body)
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("generator"))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join([*base, node.module] if node.module else base)
                else:
                    target = node.module or ""
                if not target.startswith("generator"):
                    continue
                for alias in node.names:  # `from . import kinds` imports a module
                    sub = f"{target}.{alias.name}"
                    found.add(sub if (PACKAGE.parent / sub.replace(".", "/")).exists()
                              or (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists()
                              else target)

    visit(tree.body)
    found.discard(me)
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): top_level_imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                found.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def test_the_checker_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_among_the_package_modules() -> None:
    edges = graph()
    assert "generator.types" in edges["generator.plan"]  # the checker reads real imports
    assert cycles(edges) == []


def test_shared_types_import_no_pipeline_step() -> None:
    steps = {"generator.plan", "generator.execute", "generator.render", "generator.plugin",
             "generator.cli", "generator.kinds"}
    assert not graph()["generator.types"] & steps


@pytest.mark.parametrize("module", ["generator.plugin", "generator.cli", "generator.render",
                                    "generator.plan", "generator.kinds"])
def test_front_ends_and_core_do_not_import_torch(module: str) -> None:
    code = (f"import sys, {module}\n"
            "heavy = [m for m in ('torch', 'diffusers', 'open_clip', 'cv2', 'duckdb')"
            " if m in sys.modules]\n"
            "assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
