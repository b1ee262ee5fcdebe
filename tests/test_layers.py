"""The house plan, enforced: the layers (pyproject's import-linter contracts) and no import cycle.

A violation planted in a copy of the tree must fail both checks, so neither can pass vacuously.
"""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("web", "runtime", "core", "scorer", "explainer", "llm", "cli")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the project modules it imports, anywhere in the file (lazy imports count)."""
    files = {module_name(root, p): p for pkg in PACKAGES for p in (root / pkg).rglob("*.py")}
    files["server"] = root / "server.py"
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(script), str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_tree(tmp_path: Path) -> Path:
    copy = tmp_path / "tree"
    copy.mkdir()
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, copy / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.npz", "static"))
    for name in ("server.py", "pyproject.toml"):
        shutil.copy(ROOT / name, copy / name)
    return copy


def test_no_import_cycle():
    assert cycles(import_graph(ROOT)) == []


def test_the_layer_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_planted_cycle_is_found(tmp_path):
    tree = copy_tree(tmp_path)
    with open(tree / "llm" / "usage.py", "a") as f:
        f.write("\n\ndef _planted():\n    from llm.pricing import estimate_cost  # noqa: F401\n")
    assert ["llm.pricing", "llm.usage"] in cycles(import_graph(tree))


def test_a_planted_layer_violation_fails(tmp_path):
    tree = copy_tree(tmp_path)
    with open(tree / "llm" / "usage.py", "a") as f:
        f.write("\n\ndef _planted():\n    from scorer.math import pearson  # noqa: F401\n")
    with open(tree / "scorer" / "math.py", "a") as f:
        f.write("\n\ndef _planted():\n    import flask  # noqa: F401\n    from llm.usage import Usage  # noqa: F401\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "Layers: HTTP -> composition root -> domain -> edge BROKEN" in result.stdout
    assert "Only the HTTP package and the entry point import Flask BROKEN" in result.stdout
    assert "The math is pure BROKEN" in result.stdout


def test_every_prompt_writes_a_token_the_same_way():
    from core.text import render_token
    from explainer.styles import base as styles
    from scorer.simulators import prompts

    assert styles.render_token is prompts.render_token is render_token
    assert render_token("a\\b\n\t\r\x00\u2028<|endoftext|>") == "a\\\\b\\n\\t\\r\\x00\\u2028<end-of-text>"


def test_invisible_characters_are_shown_in_prompts():
    from core.text import render_token

    assert render_token("a\u202eb\u200bc") == "a\\u202eb\\u200bc"
    assert render_token("👨\u200d👩") == "👨\u200d👩"  # a joiner inside an emoji stays
