#!/usr/bin/env python3
"""Finds cycles among a crate's modules: `python3 scripts/module_cycles.py [CRATE_SRC ...]`.

A module is a top-level file or folder under a crate's `src/` (`run.rs`, `bench/`); module A
depends on B when any file of A names `crate::B` (in a `use`, a path or a doc link outside
comments). The strongly connected components with more than one module are the cycles; the
script prints each with one edge that closes it and the line that makes the edge, and exits 1
when there is any. With no arguments it checks every crate of the workspace. A module's own
submodules (bench/measure.rs → bench/mod.rs) are one node, so they never count as a cycle.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRATES = ["models/src", "tasks/src", "actors/src", "cluster/src", "runtime/src", "benchmarks/src"]
PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
GROUP = re.compile(r"\bcrate::\{([^}]*)\}")


def module_of(src: Path, file: Path) -> str | None:
    """The top-level module a file belongs to (None for the crate root)."""
    rel = file.relative_to(src)
    if len(rel.parts) > 1:
        return rel.parts[0]
    if rel.stem in ("lib", "main"):
        return None
    return rel.stem


def code_lines(text: str):
    """Lines with `//` comments (docs included) removed; strings are kept (rarely name modules)."""
    for number, line in enumerate(text.splitlines(), 1):
        yield number, line.split("//", 1)[0]


def edges_of(src: Path):
    """(from, to) -> first 'file:line' that makes the edge."""
    edges: dict[tuple[str, str], str] = {}
    for file in sorted(src.rglob("*.rs")):
        here = module_of(src, file)
        if here is None:
            continue
        for number, line in code_lines(file.read_text()):
            targets = PATH.findall(line)
            for group in GROUP.findall(line):
                targets += [t.strip().split("::")[0] for t in group.split(",") if t.strip()]
            for target in targets:
                if target != here and target not in ("self", "super"):
                    where = f"{file.relative_to(ROOT)}:{number}"
                    edges.setdefault((here, target), where)
    return edges


def cycles(edges):
    """Strongly connected components (Tarjan) with more than one module."""
    graph: dict[str, list[str]] = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    crates = [Path(a) for a in sys.argv[1:]] or [ROOT / c for c in CRATES]
    found = 0
    for src in crates:
        src = src.resolve()
        edges = edges_of(src)
        for component in cycles(edges):
            found += 1
            print(f"cycle in {src.relative_to(ROOT)}: {' ↔ '.join(component)}")
            members = set(component)
            for (a, b), where in sorted(edges.items()):
                if a in members and b in members:
                    print(f"    {a} → {b}   ({where})")
        print(f"{src.relative_to(ROOT)}: {len({m for e in edges for m in e})} modules, "
              f"{len(edges)} dependencies")
    print("no module cycles" if not found else f"{found} module cycle(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
