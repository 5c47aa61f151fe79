"""Each stage's narrow store interface (itcollect/store/interfaces.py) is honest and enforced:

* ``Store`` satisfies every protocol, member by member (names, kinds, defaults, annotations);
* every store call in a stage's source is a member of that stage's protocol (read from the AST);
* no module outside ``itcollect/store/`` runs SQL or imports another stage's store mixin;
* who may take a spec is written once (``store/availability.py``), used by both claim paths.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from itcollect.store import Store
from itcollect.store import interfaces as I
from itcollect.store.sources import IngestStaging

PKG = Path(__file__).resolve().parent.parent / "itcollect"

#: Module (path under itcollect/, a folder ending in "/") -> the protocol its store calls must keep
#: to. The longest matching prefix wins.
STAGES: dict[str, type] = {
    "ingest/": I.IngestStore,
    "plan.py": I.PlanStore,
    "simulate/": I.SimulateStore,
    "compare/": I.CompareStore,
    "session/": I.SessionStore,
    "session/review/": I.ReviewStore,
    "session/web/": I.WebStore,
    "session/web/auth.py": I.AccountsStore,
    "importer.py": I.ImportStore,
    "judge/": I.JudgeStore,
    "filter/": I.FilterStore,
    "export/": I.ExportStore,
    "stats/": I.StatsStore,
    "stats/judge.py": I.JudgeStatsStore,
    "stats/quality.py": I.QualityStore,
    "llm/": I.LLMStore,
    "llm/batch.py": I.BatchStore,
    "demo.py": I.DemoStore,
    "cli/annotators_cmd.py": I.AccountsStore,
    "cli/export_cmd.py": I.ExportStore,
}
#: Modules that own the Store object itself (open and close it) rather than use it as a stage.
OWNERS = {"workspace.py"}
#: store submodules any module may import (no tables of a stage in them) ...
SHARED_STORE_MODULES = {"interfaces", "availability"}
#: ... and the mixin modules a stage may import besides (its own area's row types).
OWN_STORE_MODULES = {"ingest/": {"sources"}, "importer.py": {"imports"}}

#: Attributes that hold the store on an object (``ws.store``, ``self.store``, a worker's own
#: connection ``self._store``, the web app's read connection ``self._reader``).
STORE_ATTRS = {"store", "_store", "_reader"}


def _modules() -> list[tuple[str, Path]]:
    return [(p.relative_to(PKG).as_posix(), p) for p in sorted(PKG.rglob("*.py"))
            if p.relative_to(PKG).parts[0] != "store"]


def _match(rel: str, table: dict[str, object]) -> str | None:
    keys = [k for k in table if rel == k or (k.endswith("/") and rel.startswith(k))]
    return max(keys, key=len) if keys else None


def own_members(proto: type) -> set[str]:
    """The members a protocol declares itself: what its stage calls."""
    return ({k for k, v in vars(proto).items() if not k.startswith("_") and callable(v)}
            | {k for k in vars(proto).get("__annotations__", {}) if not k.startswith("_")})


def members(proto: type) -> set[str]:
    """A protocol's members, inherited ones included: what its stage's store must offer (a stage
    hands its store on to the layers whose protocols it inherits)."""
    return set().union(*(own_members(k) for k in proto.__mro__ if k is not object and k.__module__ != "typing"))


def _holder_names(tree: ast.AST, attrs: set[str], names: set[str],
                  protocol_names: set[str]) -> Callable[[ast.expr], bool]:
    """A predicate 'this expression is the store' for one module: ``store``, the store attributes,
    any name annotated with a store protocol, and any name assigned from one of these."""
    names = set(names)
    for n in ast.walk(tree):
        ann = getattr(n, "annotation", None)
        if isinstance(n, ast.arg) and ann is not None and any(
                isinstance(x, ast.Name) and x.id in protocol_names for x in ast.walk(ann)):
            names.add(n.arg)

    def is_store(e: ast.expr) -> bool:
        return (isinstance(e, ast.Name) and e.id in names) or (isinstance(e, ast.Attribute) and e.attr in attrs)

    changed = True
    while changed:
        changed = False
        for n in ast.walk(tree):
            pairs: list[tuple[ast.expr, ast.expr]] = []
            if isinstance(n, ast.Assign):
                for t in n.targets:
                    if isinstance(t, ast.Tuple) and isinstance(n.value, ast.Tuple):
                        pairs += list(zip(t.elts, n.value.elts))
                    else:
                        pairs.append((t, n.value))
            elif isinstance(n, ast.AnnAssign) and n.value is not None:
                pairs.append((n.target, n.value))
            elif isinstance(n, ast.withitem) and n.optional_vars is not None:
                pairs.append((n.optional_vars, n.context_expr))
            for t, v in pairs:
                if isinstance(t, ast.Name) and t.id not in names and is_store(v):
                    names.add(t.id)
                    changed = True
    return is_store


def store_uses(source: str) -> set[str]:
    """Every attribute taken of the store in a module's source (calls and references alike)."""
    return _uses(source, STORE_ATTRS, {"store"}, {p.__name__ for p in I.PROTOCOLS})


def staging_uses(source: str) -> set[str]:
    """The same for ingest's staging area (what ``staged_ingest()`` yields)."""
    return _uses(source, {"staging"}, {"staging"}, {"IngestStagingArea"})


def _uses(source: str, attrs: set[str], names: set[str], protocol_names: set[str]) -> set[str]:
    tree = ast.parse(source)
    is_store = _holder_names(tree, attrs, names, protocol_names)
    return {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and is_store(n.value)}


# -- Store satisfies every protocol --------------------------------------------------------------
def _params(fn: Callable) -> list[tuple[str, object, bool, str]]:
    sig = inspect.signature(fn)
    return [(p.name, p.kind, p.default is inspect.Parameter.empty, str(p.annotation))
            for p in sig.parameters.values() if p.name != "self"]


def _check_against(impl: type, proto: type) -> list[str]:
    problems = []
    for name in sorted(members(proto)):
        want = inspect.getattr_static(proto, name, None)
        have = inspect.getattr_static(impl, name, None)
        if want is None:  # a data member (``path``): checked on an instance
            continue
        if have is None or not callable(have):
            problems.append(f"{proto.__name__}.{name}: missing on {impl.__name__}")
            continue
        if _params(want) != _params(have):
            problems.append(f"{proto.__name__}.{name}: {inspect.signature(want)} != {inspect.signature(have)}")
        if not hasattr(have, "__wrapped__"):  # a @contextmanager's declared type is its generator's
            ret_want, ret_have = inspect.signature(want).return_annotation, inspect.signature(have).return_annotation
            if ret_want != ret_have:
                problems.append(f"{proto.__name__}.{name}: returns {ret_want} on the protocol, {ret_have} on the store")
    return problems


@pytest.mark.parametrize("proto", I.PROTOCOLS, ids=lambda p: p.__name__)
def test_store_satisfies_the_protocol(proto: type, tmp_path: Path) -> None:
    assert _check_against(Store, proto) == []
    store = Store(tmp_path / "s.db")
    try:
        assert isinstance(store, proto)
        for name in members(proto):
            if inspect.getattr_static(proto, name, None) is None:  # a data member: the reopen target
                assert name == "target" and getattr(store, name) == str(tmp_path / "s.db"), name
    finally:
        store.close()


def test_ingest_staging_satisfies_its_protocol() -> None:
    assert _check_against(IngestStaging, I.IngestStagingArea) == []


def test_every_protocol_member_is_used_by_its_stage() -> None:
    """No member listed 'just in case': each is used by a module mapped to that protocol."""
    used: dict[type, set[str]] = {}
    for rel, path in _modules():
        key = _match(rel, STAGES)
        if key is not None:
            used.setdefault(STAGES[key], set()).update(store_uses(path.read_text(encoding="utf-8")))
    used.setdefault(I.IngestStagingArea, set()).update(
        staging_uses((PKG / "ingest" / "pipeline.py").read_text(encoding="utf-8")))
    unused = {}
    for proto in (*I.PROTOCOLS, I.IngestStagingArea):
        left = own_members(proto) - used.get(proto, set())
        if left:
            unused[proto.__name__] = sorted(left)
    assert unused == {}


# -- stages keep to their protocol ---------------------------------------------------------------
def test_every_module_is_mapped_or_makes_no_store_call() -> None:
    unmapped = {}
    for rel, path in _modules():
        if _match(rel, STAGES) is None and rel not in OWNERS:
            uses = store_uses(path.read_text(encoding="utf-8"))
            if uses:
                unmapped[rel] = sorted(uses)
    assert unmapped == {}


@pytest.mark.parametrize("rel", sorted(rel for rel, _ in _modules() if _match(rel, STAGES)))
def test_store_calls_are_in_the_stage_protocol(rel: str) -> None:
    proto = STAGES[_match(rel, STAGES)]
    source = (PKG / rel).read_text(encoding="utf-8")
    # a stage's own calls are what its protocol declares; what it inherits it only hands on
    outside = store_uses(source) - own_members(proto)
    assert not outside, f"{rel} uses {sorted(outside)}, not declared by {proto.__name__}"
    staged = staging_uses(source)
    if staged:
        assert rel.startswith("ingest/"), rel
        assert staged <= own_members(I.IngestStagingArea), sorted(staged - own_members(I.IngestStagingArea))


def test_the_scan_finds_a_call_outside_the_protocol() -> None:
    """The AST scan itself: every way a stage reaches its store is seen (so the test above can fail)."""
    src = (
        "def f(ws, other: SimulateStore):\n"
        "    ws.store.a()\n"
        "    st = ws.store\n"
        "    st.b()\n"
        "    store, cfg = ws.store, ws.config\n"
        "    with store.transaction():\n"
        "        store.c(1)\n"
        "    other.d()\n"
        "    cfg.not_the_store()\n"
        "class K:\n"
        "    def g(self):\n"
        "        self.store.e()\n"
        "        self._store.f\n"
        "        self._reader.g()\n"
    )
    assert store_uses(src) == {"a", "b", "transaction", "c", "d", "e", "f", "g"}
    planted = (PKG / "simulate" / "driver.py").read_text(encoding="utf-8") + "\n\ndef _x(store):\n    store.save_judgements([])\n"
    assert "save_judgements" in store_uses(planted) - own_members(I.SimulateStore)


def _sql_and_store_imports(rel: str, tree: ast.AST) -> list[str]:
    problems = []
    pkg_parts = ["itcollect", *Path(rel).parent.parts]
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute) and n.attr in ("execute", "executemany", "executescript", "conn"):
            problems.append(f"{rel}:{n.lineno}: .{n.attr} (SQL belongs in itcollect/store/)")
        mods: list[str] = []
        if isinstance(n, ast.Import):
            mods = [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            base = pkg_parts[:len(pkg_parts) - n.level + 1] if n.level else []
            mod = ".".join([*base, *(n.module.split(".") if n.module else [])])
            # ``from ..store import sources`` imports a submodule too (a name that is a file of the package)
            mods = [mod] + [f"{mod}.{a.name}" for a in n.names
                            if (PKG.parent / mod.replace(".", "/") / f"{a.name}.py").exists()]
        for mod in mods:
            if mod == "sqlite3":
                problems.append(f"{rel}:{n.lineno}: imports sqlite3")
            parts = mod.split(".")
            if parts[:2] == ["itcollect", "store"] and len(parts) > 2:
                own = OWN_STORE_MODULES.get(_match(rel, OWN_STORE_MODULES) or "", set())
                if parts[2] not in SHARED_STORE_MODULES | own:
                    problems.append(f"{rel}:{n.lineno}: imports {mod}")
    return problems


def test_no_sql_and_no_other_stages_store_module_outside_the_store() -> None:
    problems = []
    for rel, path in _modules():
        problems += _sql_and_store_imports(rel, ast.parse(path.read_text(encoding="utf-8")))
    assert problems == []


def test_the_sql_and_import_check_can_fail() -> None:
    planted = ("from ..store.judgements import JudgementsMixin\nfrom ..store import sources\nimport sqlite3\n"
               "def f(store):\n    with store.transaction() as c:\n        c.execute('SELECT 1')\n    store.conn\n")
    found = _sql_and_store_imports("filter/run.py", ast.parse(planted))
    assert len(found) == 5, found
    assert _sql_and_store_imports("ingest/pipeline.py", ast.parse("from ..store.sources import IngestStaging\n")) == []


# -- spec availability is written once -----------------------------------------------------------
def test_both_claim_paths_take_availability_from_one_place() -> None:
    from itcollect.store import availability as A

    store_dir = PKG / "store"
    claims = (store_dir / "claims.py").read_text(encoding="utf-8")
    leases = (store_dir / "leases.py").read_text(encoding="utf-8")
    for src in (claims, leases):
        assert "may_take(" in src and "PENDING_FREE" in src
    # the rules' SQL is in availability.py only: no module re-derives who may take a spec
    rederived = [re.compile(r"origin\s*(<>|!=)\s*'(simulated|human)'"),  # may_take()
                 re.compile(r"leases\b[^\"]*expires_at\s*>=")]  # LIVE_LEASE / PENDING_FREE
    for path in PKG.rglob("*.py"):
        if path.name == "availability.py":
            continue
        text = path.read_text(encoding="utf-8")
        for pattern in rederived:
            found = pattern.search(text)
            assert found is None, f"{path.relative_to(PKG)} re-derives availability ({found.group(0)!r})"
    # the patterns do find the copies this replaced (simulate's claim, as it was written before)
    claims_before = ("\"SELECT s.id FROM specs s WHERE s.status='pending'\"\n"
                     "\" AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.spec_id = s.id AND l.expires_at >= ?)\"")
    assert rederived[1].search(claims_before) and rederived[0].search(A.may_take("human"))
    assert "expires_at >= ?" in A.LIVE_LEASE and A.LIVE_LEASE in A.PENDING_FREE
