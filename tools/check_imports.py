"""Check cloudml's import graph: no cycle among its modules, emulators independent of providers.

Every import counts, the lazy ones inside functions included: a lazy import postpones a cycle, it
does not remove it. A module's edges are the cloudml modules it names (`from cloudml.a import b`
names `cloudml.a`, or `cloudml.a.b` when that is a module). Run: `python tools/check_imports.py`
(exit 1 and one line per problem when the graph breaks a rule).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "cloudml"
# (importer prefix, forbidden prefix, why)
FORBIDDEN = [
    ("cloudml.emulators", "cloudml.providers", "an emulator must not import the provider it emulates"),
    ("cloudml.serving", "cloudml.packaging", "serving and packaging share only cloudml.contract and cloudml.backends"),
    ("cloudml.packaging", "cloudml.serving", "serving and packaging share only cloudml.contract and cloudml.backends"),
] + [
    ("cloudml.backends", above, "the runtime backends sit below packaging and serving, which both run models")
    for above in ("cloudml.serving", "cloudml.packaging", "cloudml.providers", "cloudml.preflight", "cloudml.cli")
] + [
    ("cloudml.serving", "cloudml.providers", "the serving runtime runs in containers without providers"),
    ("cloudml.packaging", "cloudml.providers", "packaging sits below the providers"),
    ("cloudml.packaging", "cloudml.preflight", "preflight sits above packaging and serving"),
    ("cloudml.serving", "cloudml.preflight", "preflight sits above packaging and serving"),
] + [
    ("cloudml.images", above, "the image builder sits below the providers and knows no model or server")
    for above in ("cloudml.providers", "cloudml.packaging", "cloudml.serving", "cloudml.preflight", "cloudml.emulators", "cloudml.cli")
] + [
    (f"cloudml.serving.{below}", "cloudml.serving.http", "the data plane and the model know no HTTP: only the adapters above them do")
    for below in ("errors", "requests", "model", "batching", "dataplane", "metrics")
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def imported(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module for alias in node.names]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith(PACKAGE):
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def main() -> int:
    modules = discover()
    graph = {name: imported(path, name, modules) for name, path in modules.items()}
    # A package's __init__ is run by importing any of its submodules; an edge from a package to
    # its own submodules (re-exports) is the normal direction and is not a cycle with them.
    problems = []
    for component in cycles({n: {t for t in ts if not within(n, t)} for n, ts in graph.items()}):
        problems.append("import cycle: " + " <-> ".join(component))
    for name, targets in sorted(graph.items()):
        for target in sorted(targets):
            for importer, forbidden, why in FORBIDDEN:
                if within(name, importer) and within(target, forbidden):
                    problems.append(f"{name} imports {target}: {why}")
    for line in problems:
        print(line)
    print(f"{len(modules)} modules, {sum(len(t) for t in graph.values())} imports: "
          + ("no cycle, no forbidden import" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
