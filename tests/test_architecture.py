"""The architecture's import rule, checked over the import graph (``tests/importgraph.py``): each
stage imports only the shared layers (the kernel, the store, the LLM layer, and the config and
workspace they are opened with) and its own package; orchestration (the CLI, the demo) may call
stages, and every other edge from one stage to another is listed below with its reason. The shared
layers import no stage."""

from __future__ import annotations

import functools

from .importgraph import import_graph as _read_graph

import_graph = functools.cache(_read_graph)  # read once for all the tests here

#: The stages, each a package or a module (ARCHITECTURE.md, "The stages").
STAGES = {
    "ingest": "itcollect.ingest",
    "plan": "itcollect.plan",
    "simulate": "itcollect.simulate",
    "session": "itcollect.session",
    "import": "itcollect.importer",
    "judge": "itcollect.judge",
    "filter": "itcollect.filter",
    "export": "itcollect.export",
    "stats": "itcollect.stats",
    "compare": "itcollect.compare",
}
#: What every stage may import: the shared layers, lowest first. A layer imports only itself and the
#: layers listed before it (and the package root, for its version).
LAYERS = {
    # the kernel and the config declaration are one tier: the config raises the kernel's errors, the
    # kernel's prompt loader reads the config's [prompts]
    "kernel": ("itcollect.kernel", "itcollect.config", "itcollect.settings"),
    "store": ("itcollect.store",),
    "llm": ("itcollect.llm",),
    "workspace": ("itcollect.workspace",),
}
#: Orchestration: may call any stage, and says so here.
ORCHESTRATION = {
    "itcollect.cli": "the command line: each command parses its options and calls its stage",
    "itcollect.demo": "the whole flow offline: it runs the stages through their CLI commands",
    "itcollect.__main__": "`python -m itcollect`: the CLI",
}
#: Edges from one stage to another that the rule allows, as (importing module or package, imported
#: module), with the reason. An entry that no import uses any more fails the test.
ALLOWED_EDGES = {
    ("itcollect.session.web", "itcollect.stats.quality"):
        "orchestration: the web lead's dashboard shows stats' per-annotator quality figures",
    ("itcollect.session.web.lead", "itcollect.export"):
        "orchestration: the lead's page downloads what `export --format all` writes, as a zip",
    ("itcollect.session.compare", "itcollect.compare.record"):
        "a compare session records its runs and a dialogue's systems the one way compare writes them",
    ("itcollect.simulate", "itcollect.compare.record"):
        "simulate --compare records its judged turns through compare.record, the one writer of compared "
        "turns (runs, a dialogue's systems, candidates, decision and continuing answer in one transaction)",
}
ROOT = "itcollect"  # the package itself (``__version__``)


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _kind(module: str) -> str:
    """stage:NAME, layer:NAME, orchestration, root or unknown."""
    for name, prefix in STAGES.items():
        if _within(module, prefix):
            return f"stage:{name}"
    for name, prefixes in LAYERS.items():
        if any(_within(module, p) for p in prefixes):
            return f"layer:{name}"
    if any(_within(module, p) for p in ORCHESTRATION):
        return "orchestration"
    return "root" if module == ROOT else "unknown"


def _allowed_edge(importer: str, imported: str) -> str | None:
    for (src, dst), _reason in ALLOWED_EDGES.items():
        if _within(importer, src) and _within(imported, dst):
            return f"{src} -> {dst}"
    return None


def test_every_module_is_a_stage_a_layer_or_orchestration():
    unknown = sorted(m for m in import_graph() if _kind(m) == "unknown")
    assert not unknown, (f"modules that are neither a stage, a shared layer nor orchestration: {unknown}; "
                         "add them to STAGES, LAYERS or ORCHESTRATION in tests/test_architecture.py")


def test_a_stage_imports_only_the_shared_layers_and_itself():
    bad = []
    for module, targets in sorted(import_graph().items()):
        kind = _kind(module)
        if not kind.startswith("stage:"):
            continue
        for target in sorted(targets):
            other = _kind(target)
            if other == kind or other.startswith("layer:") or other == "root":
                continue
            if _allowed_edge(module, target) is None:
                bad.append(f"{module} -> {target} ({other})")
    assert not bad, ("a stage imports another stage or orchestration (stages meet in the store; move the "
                     "shared code to the kernel, or list an orchestration edge with its reason in "
                     "ALLOWED_EDGES):\n" + "\n".join(bad))


def test_the_shared_layers_import_no_stage_and_only_layers_below_them():
    order = list(LAYERS)
    bad = []
    for module, targets in sorted(import_graph().items()):
        kind = _kind(module)
        if not kind.startswith("layer:"):
            continue
        level = order.index(kind.split(":")[1])
        for target in sorted(targets):
            other = _kind(target)
            if other == "root" or (other.startswith("layer:") and order.index(other.split(":")[1]) <= level):
                continue
            bad.append(f"{module} -> {target} ({other})")
    assert not bad, "a shared layer imports a stage, orchestration or a layer above it:\n" + "\n".join(bad)


def test_every_allowed_edge_is_used():
    graph = import_graph()
    used = {_allowed_edge(m, t) for m, targets in graph.items() for t in targets}
    stale = [f"{src} -> {dst}" for src, dst in ALLOWED_EDGES if f"{src} -> {dst}" not in used]
    assert not stale, f"ALLOWED_EDGES entries no import uses any more (remove them): {stale}"


def test_the_kinds_are_what_the_rule_says():
    assert _kind("itcollect.filter.rules") == "stage:filter"
    assert _kind("itcollect.kernel.text") == "layer:kernel"
    assert _kind("itcollect.demo") == "orchestration"
    assert _kind("itcollect.cli.stats_cmd") == "orchestration"
    assert _allowed_edge("itcollect.session.web.app", "itcollect.stats.quality") is not None
    assert _allowed_edge("itcollect.session.engine", "itcollect.stats.quality") is None
    assert _allowed_edge("itcollect.session.web.app", "itcollect.stats.report") is None
