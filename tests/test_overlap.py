"""Overlap: a share of the specs people take is done by several different annotators, each in a
copy of their own; claims stay atomic; simulate never takes such a spec."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest

from itcollect.store import Overlap, Store, human_holder

from .conftest import REPO
from .test_leases import make_specs
from .test_session import CountingResponder, make_workspace


def expected_copies(seed: int, seq: int, share: float, annotators: int) -> int:
    """The documented rule, written out: a sha256 coin of the plan position against the share."""
    digest = hashlib.sha256(f"overlap|{seed}|{seq}".encode()).digest()
    return annotators if int.from_bytes(digest[:8], "big") / 2.0 ** 64 < share else 1


def set_config(ws, **values) -> None:
    """Set keys of the workspace config (default lines ``key = value`` replaced)."""
    import re

    path = ws / "itcollect.toml"
    text = path.read_text(encoding="utf-8")
    for key, value in values.items():
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text, count=1)
        assert n == 1, key
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "itcollect.db")
    yield s
    s.close()


def test_copies_go_to_different_annotators_and_the_spec_is_done_when_all_are(store):
    ids = make_specs(store, 12)
    ov = Overlap(0.5, 2)
    specs = {s["id"]: s for s in store.iter_specs()}
    want = {i: expected_copies(specs[i]["seed"], specs[i]["seq"], 0.5, 2) for i in ids}
    assert 2 in want.values() and 1 in want.values()  # the seeds of make_specs give both kinds
    first = next(i for i in ids if want[i] == 2)
    # ann takes specs in order until she holds the first overlap spec
    while True:
        got = store.lease_next_spec(human_holder("ann"), 60, now=1000.0, overlap=ov)
        assert got["copy"] == 0 and got["copies"] == want[got["id"]]
        if got["id"] == first:
            break
        store.release_lease(got["id"], human_holder("ann"), "done")
    # bob is offered the second copy of that spec before any fresh spec
    bob = store.lease_next_spec(human_holder("bob"), 60, now=1000.0, overlap=ov)
    assert (bob["id"], bob["copy"]) == (first, 1)
    # cleo cannot get a third copy; ann, asking again, gets her own copy back, never bob's
    cleo = store.lease_next_spec(human_holder("cleo"), 60, now=1000.0, overlap=ov)
    assert cleo["id"] != first
    again = store.lease_next_spec(human_holder("ann"), 60, now=1001.0, overlap=ov)
    assert (again["id"], again["copy"], again["own"]) == (first, 0, True)
    assert store.lease_spec(first, human_holder("ann"), 60, copy=1) is False  # never two copies to one person
    # ann's copy is done: the spec waits for bob's
    did = store.create_dialogue(origin="human", spec_id=first, annotator="ann", copy=0)
    store.set_dialogue_status(did, "done")
    assert store.release_lease(first, human_holder("ann"), "done")
    assert store.get_spec(first)["status"] == "in_progress"
    did = store.create_dialogue(origin="human", spec_id=first, annotator="bob", copy=1)
    store.set_dialogue_status(did, "done")
    assert store.release_lease(first, human_holder("bob"), "done")
    assert store.get_spec(first)["status"] == "done"
    assert [d["annotator"] for d in store.dialogues_for_spec(first)] == ["ann", "bob"]


def test_an_expired_copy_is_not_taken_over_by_the_holder_of_the_other_copy(store):
    ids = make_specs(store, 12)
    ov = Overlap(1.0, 2)  # every spec overlaps
    a = store.lease_next_spec(human_holder("ann"), 60, now=1000.0, overlap=ov)
    b = store.lease_next_spec(human_holder("bob"), 60, now=1000.0, overlap=ov)
    assert (a["id"], a["copy"], b["id"], b["copy"]) == (ids[0], 0, ids[0], 1)
    store.create_dialogue(origin="human", spec_id=ids[0], annotator="ann", copy=0)
    # long after both leases ran out: bob's own copy comes back to him; ann's copy goes to cleo, not bob
    assert store.lease_next_spec(human_holder("bob"), 60, now=5000.0, overlap=ov)["copy"] == 1
    c = store.lease_next_spec(human_holder("cleo"), 60, now=5000.0, overlap=ov)
    assert (c["id"], c["copy"], c["previous_holder"]) == (ids[0], 0, "human:ann")


def test_simulate_never_takes_an_overlap_spec_a_person_started(store):
    ids = make_specs(store, 6)
    ov = Overlap(1.0, 2)
    got = store.lease_next_spec(human_holder("ann"), 60, now=1000.0, overlap=ov)
    did = store.create_dialogue(origin="human", spec_id=got["id"], annotator="ann", copy=0)
    store.set_dialogue_status(did, "done")
    store.release_lease(got["id"], human_holder("ann"), "done")
    assert store.get_spec(got["id"])["status"] == "pending"  # its second copy waits for a person
    claimed = store.claim_specs("simulate@elsewhere:1", 100)
    assert claimed == ids[1:]
    # an overlap spec a person took and gave back untouched is still for people only
    assert store.lease_next_spec(human_holder("bob"), 60, overlap=ov)["id"] == got["id"]


def test_overlap_off_claims_as_before(store):
    ids = make_specs(store, 3)
    got = [store.lease_next_spec(human_holder(n), 60, now=1000.0, overlap=Overlap(0.0, 2)) for n in ("a", "b", "c")]
    assert [(g["id"], g["copy"], g["copies"]) for g in got] == [(i, 0, None) for i in ids]
    assert store.lease_next_spec(human_holder("d"), 60, now=1000.0, overlap=Overlap(0.0, 2)) is None


def test_sixteen_protocol_sessions_with_overlap(tmp_path, fake_openai):
    """16 annotators at once, overlap 0.5 with 2 annotators: every overlap spec is done by exactly
    two different annotators, every other spec once; then simulate, run over the same workspace
    while an overlap spec waits for its second copy, takes none of it."""
    fake_openai.responder = CountingResponder()
    n_specs = 14
    ws = make_workspace(tmp_path / "ws", n_specs, types=("translate",))
    set_config(ws, overlap_share=0.5, overlap_annotators=2)
    block = "request Please translate this sentence into Chinese.\naccept\nfinish\n"
    script = block * (n_specs + 2)
    env_cmd = [sys.executable, "-m", "itcollect", "-C", str(ws), "session", "--base-url", fake_openai.base_url,
               "--model", "fake-model"]
    env = dict(os.environ, ITCOLLECT_PROGRESS="0", OPENAI_API_KEY="sk-test")
    env.pop("OPENAI_BASE_URL", None)
    procs = [subprocess.Popen([*env_cmd, "--annotator", f"a{i:02d}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=REPO) for i in range(16)]
    # every session gets its script at once: a session that has finished waits while specs are only
    # leased by others (issue 24 item 8), so feeding them one after the other would leave session 0
    # waiting for the leases of sessions that have not been given their input yet
    with ThreadPoolExecutor(len(procs)) as pool:
        outs = list(pool.map(lambda p: p.communicate(script, timeout=300), procs))
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.splitlines()[-1].startswith("idle "), out[-500:]
    with Store(ws / "itcollect.db") as store:
        specs = {s["id"]: s for s in store.iter_specs()}
        by_spec: dict[int, list[dict]] = defaultdict(list)
        for d in store.iter_dialogues():
            by_spec[d["spec_id"]].append(d)
        overlap = {i for i, s in specs.items() if expected_copies(s["seed"], s["seq"], 0.5, 2) == 2}
        assert overlap and overlap != set(specs)
        for spec_id, spec in specs.items():
            ds = by_spec[spec_id]
            assert spec["status"] == "done" and all(d["status"] == "done" for d in ds)
            if spec_id in overlap:
                assert spec["copies"] == 2
                assert sorted(d["copy"] for d in ds) == [0, 1]
                assert len({d["annotator"] for d in ds}) == 2, ds
            else:
                assert len(ds) == 1 and spec["copies"] == 1
        assert sum(len(v) for v in by_spec.values()) == n_specs + len(overlap)
        assert store.leases_held("human:a00") == [] and store.spec_counts()["done"] == n_specs
        # a second round: two more specs, the first an overlap one; ann does its first copy...
        more = [{"seed": 1, "seq": k, "source_id": specs[1]["source_id"], "src_lang": "en", "tgt_lang": "zh",
                 "instruction_lang": "en", "n_turns": 1, "interaction_types": ["translate"], "params": {}}
                for k in range(40)]
        store.add_specs(more)
        fresh = [s for s in store.iter_specs(["pending"])]
        first = next(s for s in fresh if expected_copies(s["seed"], s["seq"], 0.5, 2) == 2)
        other = next(s for s in fresh if s["id"] != first["id"])
        for s in fresh:
            if s["id"] != first["id"]:
                store.set_spec_status(s["id"], "done")  # out of the way while ann works
    p = subprocess.run([*env_cmd, "--annotator", "ann"], input=block, capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert Counter(line.split(" ", 1)[0] for line in p.stdout.splitlines())["done"] == 1
    with Store(ws / "itcollect.db") as store:
        store.set_spec_status(other["id"], "pending")
    # ...and simulate, run now, takes the other spec but not the overlap spec's second copy
    from .responders import responder

    fake_openai.responder = responder
    p = subprocess.run([sys.executable, "-m", "itcollect", "-C", str(ws), "simulate", "--base-url",
                        fake_openai.base_url, "--model", "fake-model"], capture_output=True, text=True, env=env,
                       timeout=300)
    with Store(ws / "itcollect.db") as store:
        ds = store.dialogues_for_spec(first["id"])
        assert [(d["origin"], d["annotator"], d["copy"]) for d in ds] == [("human", "ann", 0)]
        assert store.get_spec(first["id"])["status"] == "pending"
        sims = store.dialogues_for_spec(other["id"])
        assert [d["origin"] for d in sims] == ["simulated"], (p.stdout, p.stderr)


@pytest.mark.parametrize("key,value,message", [
    ("overlap_share", "1.5", "session.overlap_share and session.control_share must be between 0 and 1"),
    ("control_share", "-0.1", "session.overlap_share and session.control_share must be between 0 and 1"),
    ("overlap_annotators", "1", "session.overlap_annotators must be 2..16"),
    ("overlap_annotators", "0.5", "'session.overlap_annotators' must be an integer"),
    ("min_seconds_per_word", "-1", "session.min_seconds_per_word must be 0 or more"),
])
def test_quality_config_keys_are_checked(tmp_path, key, value, message):
    from itcollect.workspace import init_workspace

    from .conftest import run_cli

    init_workspace(tmp_path / "ws").close()
    set_config(tmp_path / "ws", **{key: value})
    r = run_cli("-C", str(tmp_path / "ws"), "stats", "--json")
    assert r.returncode == 1 and message in r.stderr and "itcollect.toml" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
