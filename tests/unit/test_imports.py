"""The import graph of p2e_cli (top-level and function-level imports, read with ast) has no cycle,
and the lower floors import nothing from the floors above them (issue 31)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "p2e_cli"
LOW = ("p2e_cli.registry", "p2e_cli.records", "p2e_cli.wan", "p2e_cli.lora_io", "p2e_cli.canon", "p2e_cli.effects",
       "p2e_cli.hypernet.model", "p2e_cli.metrics")
HIGH = ("p2e_cli.cli", "p2e_cli.world", "p2e_cli.catalog", "p2e_cli.lora_jobs", "p2e_cli.lora_store", "p2e_cli.evaluation",
        "p2e_cli.ablations")


def modules(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for f in root.rglob("*.py"):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """{module: the p2e_cli modules it imports}, at any depth in the file; `from pkg import sub`
    counts as importing pkg.sub, and a package's own submodules are not edges back to it."""
    graph = {m: set() for m in mods}
    for m, f in mods.items():
        package = m.split(".") if f.name == "__init__.py" else m.split(".")[:-1]
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                    if node.level else node.module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[m] |= {t for t in targets if t in mods and t != m and not m.startswith(t + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (iterative Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]; counter[0] += 1; stack.append(root); on.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter[0]; counter[0] += 1; stack.append(w); on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop(); on.discard(w); comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_no_import_cycle():
    assert cycles(import_graph(modules())) == []


def test_lower_floors_import_nothing_from_above():
    graph = import_graph(modules())
    bad = [(m, t) for m, targets in graph.items() if m.startswith(LOW) for t in targets if t.startswith(HIGH)]
    assert bad == []


def test_the_checks_can_fail(tmp_path):
    """A planted circle and a planted upward import are found."""
    pkg = tmp_path / "p2e_cli"
    (pkg / "cli").mkdir(parents=True)
    for name, text in {"__init__.py": "", "wan.py": "def f():\n    from .cli import run\n",
                       "cli/__init__.py": "", "cli/run.py": "from ..wan import f\n"}.items():
        (pkg / name).write_text(text)
    graph = import_graph(modules(pkg))
    assert cycles(graph) == [["p2e_cli.cli.run", "p2e_cli.wan"]]
    assert "p2e_cli.cli.run" in graph["p2e_cli.wan"]
    with pytest.raises(AssertionError):
        assert [t for t in graph["p2e_cli.wan"] if t.startswith(HIGH)] == []
