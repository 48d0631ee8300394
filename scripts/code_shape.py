"""The shape of the code, measured: files per package, the longest files and functions, imports
written inside functions, and the import graph between sub-packages.

    python scripts/code_shape.py          # the figures, as text
    python scripts/code_shape.py --json   # the same, as JSON (tests/test_code_shape.py reads them)

Standard library only; it reads the source, it runs none of it.
"""

from __future__ import annotations

import ast
import json
import sys
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cllnn_edge", "export", "runtime", "benchmarks")
ROLE_PACKAGES = ("runtime", "export")  # the two whose sub-packages hold roles


@dataclass
class Shape:
    files_per_package: dict[str, int] = field(default_factory=dict)
    longest_files: list[tuple[str, int]] = field(default_factory=list)
    longest_functions: list[tuple[str, int]] = field(default_factory=list)
    function_level_imports: dict[str, int] = field(default_factory=dict)
    subpackage_imports: dict[str, list[str]] = field(default_factory=dict)
    subpackage_cycles: list[list[str]] = field(default_factory=list)


def package_files(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def unit_of(module: str) -> str | None:
    """The unit a module belongs to in the layer graph: its sub-package (``runtime.checks``), itself for a
    module at a role package's top (``runtime.loader``), the package for the other packages' modules."""
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    if parts[0] in ROLE_PACKAGES and len(parts) > 1:
        if (ROOT / parts[0] / parts[1]).is_dir() or (ROOT / parts[0] / f"{parts[1]}.py").is_file():
            return f"{parts[0]}.{parts[1]}"
    return parts[0]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        return [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return []


def function_imports(tree: ast.AST) -> int:
    """Import statements inside a function body, at any depth, each counted once."""
    seen: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            seen.update(id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return len(seen)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def measure() -> Shape:
    shape = Shape()
    files: list[tuple[str, int]] = []
    functions: list[tuple[str, int]] = []
    imports: Counter[str] = Counter()
    graph: dict[str, set[str]] = defaultdict(set)
    for package in PACKAGES:
        paths = package_files(package)
        shape.files_per_package[package] = len(paths)
        for path in paths:
            rel = str(path.relative_to(ROOT))
            text = path.read_text()
            tree = ast.parse(text)
            files.append((rel, len(text.splitlines())))
            for fn in ast.walk(tree):
                if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    functions.append((f"{rel}:{fn.name}", fn.end_lineno - fn.lineno + 1))
            imports[package] += function_imports(tree)
            source = unit_of(module_name(path))
            for node in ast.walk(tree):
                for target in map(unit_of, imported_modules(node)):
                    if target and source and target != source:
                        graph[source].add(target)
    for package in ROLE_PACKAGES:
        for sub in sorted(p for p in (ROOT / package).iterdir() if (p / "__init__.py").exists()):
            shape.files_per_package[f"{package}.{sub.name}"] = len(package_files(f"{package}/{sub.name}"))
    shape.longest_files = sorted(files, key=lambda kv: -kv[1])[:5]
    shape.longest_functions = sorted(functions, key=lambda kv: -kv[1])[:5]
    shape.function_level_imports = dict(imports)
    shape.subpackage_imports = {k: sorted(v) for k, v in sorted(graph.items())}
    # a role package's __init__ (runtime's public API, re-exported) is not a layer of its own
    layered = {k: {t for t in v if t not in ROLE_PACKAGES} for k, v in graph.items() if k not in ROLE_PACKAGES}
    shape.subpackage_cycles = cycles(layered)
    return shape


def main(argv: list[str]) -> int:
    shape = measure()
    if "--json" in argv:
        print(json.dumps(asdict(shape), indent=1))
        return 0
    print("files per package:", ", ".join(f"{k} {v}" for k, v in shape.files_per_package.items()))
    print("longest files:", ", ".join(f"{k} {v}" for k, v in shape.longest_files))
    print("longest functions:", ", ".join(f"{k} {v}" for k, v in shape.longest_functions))
    total = sum(shape.function_level_imports.values())
    print(f"function-level imports: {total} (" + ", ".join(f"{k} {v}" for k, v in shape.function_level_imports.items()) + ")")
    print("sub-package cycles:", shape.subpackage_cycles or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
