"""Import rules of DESIGN.md, checked on the source (no imports executed).

Data flows one way: data_mix -> vision_banana.train -> checkpoint -> vision_banana.predict ->
tasks decode -> eval. So: `tasks` imports nothing of the project; `data_mix` only `tasks`;
`eval.metrics` (a leaf library) only `tasks`; the rest of `eval` reaches `vision_banana` only
through the Predictor (`vision_banana.predict`); `vision_banana` uses `eval.metrics` and, for
the demo only, the benchmark runner. And no module imports another that imports it back, at
module level or inside a function.
"""

from __future__ import annotations

import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("tasks", "data_mix", "eval", "vision_banana", "launch", "benchmarks")


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module `name` refers to (a module, or the package holding a name)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: pathlib.Path) -> set[str]:
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[:len(base) - node.level + (1 if is_pkg else 0)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # `from pkg import submodule` depends on the submodule, `from pkg import name` on pkg.
            names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in MODULES else prefix
                     for a in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name)
            if target and target != module:
                found.add(target)
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _top(module: str) -> str:
    return module.split(".")[0]


def _allowed(src: str, dst: str) -> bool:
    """Whether module `src` may import project module `dst` (DESIGN.md's flow)."""
    s, d = _top(src), _top(dst)
    if s == d and not (src.startswith("eval.metrics") and not dst.startswith("eval.metrics")
                       and dst != "eval"):
        return True
    if s == "tasks":
        return False
    if s == "data_mix":
        return d == "tasks"
    if src.startswith("eval.metrics"):
        return d == "tasks"
    if s == "eval":
        return d in ("tasks", "data_mix") or dst == "vision_banana.predict"
    if s == "vision_banana":
        if d == "eval":
            return dst.startswith("eval.metrics") or src.startswith("vision_banana.demo")
        return d in ("tasks", "data_mix", "launch")
    return True  # launch, benchmarks: entry points


def test_flow_of_imports():
    bad = sorted(f"{src} imports {dst}" for src, dsts in GRAPH.items() for dst in dsts
                 if not _allowed(src, dst))
    assert not bad, "imports against the data flow of DESIGN.md:\n" + "\n".join(bad)


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    cycles = _cycles()
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_rules_see_imports():
    """Guards the checker itself: known edges are found."""
    assert "vision_banana.checkpoint" in GRAPH["vision_banana.train"]
    assert "data_mix.builders" in GRAPH["data_mix.mixture"]  # `from data_mix import builders`
    assert "tasks.colors" in GRAPH["tasks.semantic"] or "tasks" in GRAPH["tasks.semantic"]
