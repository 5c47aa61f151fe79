"""Leases of specs to annotators: atomic claims, own work first, expiry, takeover, renewal."""

from __future__ import annotations

import multiprocessing as mp
from collections import Counter
from pathlib import Path

import pytest

from itcollect.store import LeaseLost, Store, human_holder, source_id_for


def make_specs(store: Store, n: int, *, seed: int = 0) -> list[int]:
    """n distinct sources and one pending spec per source."""
    specs = []
    for i in range(n):
        text = f"The council approved budget number {seed}-{i} for the new bridge on Monday."
        sid = source_id_for(text)
        store.add_source(source_id=sid, text=text, lang="en", origin_file="test.txt", origin_line=i + 1)
        specs.append({"seed": seed, "seq": i, "source_id": sid, "src_lang": "en", "tgt_lang": "zh",
                      "instruction_lang": "zh" if i % 2 else "en", "n_turns": 2,
                      "interaction_types": ["translate", "polish"], "params": {}})
    store.add_specs(specs)
    return [s["id"] for s in store.iter_specs()]


def test_claims_lowest_pending_and_marks_in_progress(store):
    ids = make_specs(store, 3)
    a = store.lease_next_spec(human_holder("ann"), 60, now=1000.0)
    b = store.lease_next_spec(human_holder("bob"), 60, now=1000.0)
    assert (a["id"], b["id"]) == (ids[0], ids[1])
    assert a["own"] is False and a["previous_holder"] is None
    assert store.get_spec(ids[0])["status"] == "in_progress"
    assert store.lease_of(ids[0])["holder"] == "human:ann"
    assert store.spec_counts()["pending"] == 1


def test_own_lease_comes_back_first_even_when_expired(store):
    ids = make_specs(store, 3)
    store.lease_next_spec("human:ann", 60, now=1000.0)
    # Long after the expiry, nobody else claimed it: ann gets her own spec back, not the next one.
    again = store.lease_next_spec("human:ann", 60, now=5000.0)
    assert again["id"] == ids[0] and again["own"] is True
    assert store.lease_of(ids[0])["expires_at"] == 5060.0


def test_expired_lease_returns_spec_to_pool_and_old_holder_cannot_write(store):
    ids = make_specs(store, 2)
    store.lease_next_spec("human:ann", 60, now=1000.0)
    # Still live: bob gets the other spec.
    assert store.lease_next_spec("human:bob", 60, now=1030.0)["id"] == ids[1]
    # Expired: carol takes ann's spec over, and is told whose it was.
    taken = store.lease_next_spec("human:carol", 60, now=1100.0)
    assert taken["id"] == ids[0] and taken["previous_holder"] == "human:ann"
    assert store.renew_lease(ids[0], "human:ann", 60) is False
    with pytest.raises(LeaseLost):
        with store.transaction():
            store.ensure_lease(ids[0], "human:ann", 60)
    assert store.release_lease(ids[0], "human:ann", "done") is False
    assert store.get_spec(ids[0])["status"] == "in_progress"
    assert store.release_lease(ids[0], "human:carol", "done") is True
    assert store.get_spec(ids[0])["status"] == "done" and store.lease_of(ids[0]) is None


def test_nothing_free_returns_none(store):
    make_specs(store, 1)
    assert store.lease_next_spec("human:ann", 60, now=1000.0) is not None
    assert store.lease_next_spec("human:bob", 60, now=1010.0) is None


def test_lease_spec_by_id_respects_other_holders(store):
    ids = make_specs(store, 2)
    assert store.lease_spec(ids[1], "human:ann", 60, now=1000.0)
    assert not store.lease_spec(ids[1], "human:bob", 60, now=1010.0)
    assert store.lease_spec(ids[1], "human:bob", 60, now=2000.0)  # ann's lease ran out
    store.release_lease(ids[1], "human:bob", "skipped", "bad_source")
    assert not store.lease_spec(ids[1], "human:ann", 60, now=3000.0)  # finished specs stay finished


def test_simulate_claims_never_take_a_live_human_lease_and_vice_versa(store):
    ids = make_specs(store, 4)
    human = store.lease_next_spec("human:ann", 3600)
    sim = store.claim_specs("simulate@elsewhere:1", 10, lease_s=3600)
    assert human["id"] not in sim and sorted(sim + [human["id"]]) == ids
    assert store.lease_next_spec("human:bob", 3600) is None


def test_expire_leases_returns_specs_to_pending(store):
    ids = make_specs(store, 2)
    store.lease_next_spec("human:ann", 60, now=1000.0)
    assert store.expire_leases(now=2000.0) == 1
    assert store.get_spec(ids[0])["status"] == "pending" and store.lease_of(ids[0]) is None


def _claimer(db: str, name: str, start, out) -> None:
    store = Store(db)
    start.wait()
    got = []
    while True:
        spec = store.lease_next_spec(f"human:{name}", 600)
        if spec is None:
            break
        got.append(spec["id"])
        store.release_lease(spec["id"], f"human:{name}", "done")
    store.close()
    out.put((name, got))


def test_sixteen_processes_started_together_never_share_a_spec(tmp_path: Path):
    db = tmp_path / "itcollect.db"
    with Store(db) as store:
        ids = make_specs(store, 120)
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    out = ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(str(db), f"a{i}", start, out)) for i in range(16)]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    claimed = Counter(i for _, got in results for i in got)
    assert sorted(claimed) == ids
    assert set(claimed.values()) == {1}
    with Store(db) as store:
        assert store.spec_counts()["done"] == 120


def test_session_takeover_after_expiry_and_the_old_holder_cannot_write(tmp_path):
    """Engine level (no LLM call needed): ann's lease runs out, bob continues her dialogue and is
    told whose it was; ann's next action is refused with LeaseLost and writes nothing."""
    from itcollect.session.engine import Session
    from itcollect.workspace import init_workspace

    ws = init_workspace(tmp_path / "ws")
    make_specs(ws.store, 2)
    ann = Session(ws.config, ws.store, "ann", client_factory=lambda: None)
    cur = ann.open_next()
    assert cur.spec["id"] == 1 and not cur.resumed
    ann.add_request("Please translate this sentence into Chinese.")
    assert ann.state() == "answer"
    ws.store.renew_lease(1, "human:ann", -1.0)  # her lease ran out a second ago

    bob_store = Store(ws.db_path)
    bob = Session(ws.config, bob_store, "bob", client_factory=lambda: None)
    taken = bob.open_next()
    assert taken.spec["id"] == 1 and taken.resumed
    assert "taken over from ann" in taken.resume_note and "no answer yet" in taken.resume_note
    assert bob_store.get_dialogue(taken.dialogue_id)["annotator"] == "bob"
    assert bob_store.get_dialogue(taken.dialogue_id)["meta"]["previous_annotators"] == ["ann"]

    n_turns = len(ws.store.get_turns(cur.dialogue_id, include_inactive=True))
    with pytest.raises(LeaseLost):
        ann.undo()
    with pytest.raises(LeaseLost):
        ann.flag("mine!")
    assert len(ws.store.get_turns(cur.dialogue_id, include_inactive=True)) == n_turns
    assert ws.store.get_turns(cur.dialogue_id)[0]["state"] == "active"
    assert not ws.store.get_dialogue(cur.dialogue_id)["flagged"]
    bob.undo()  # bob holds it now
    assert ws.store.get_turns(cur.dialogue_id) == []
    bob_store.close()
    ws.close()


def test_own_unfinished_dialogue_offered_first_even_after_its_lease_was_released(tmp_path):
    from itcollect.session.engine import Session
    from itcollect.workspace import init_workspace

    ws = init_workspace(tmp_path / "ws")
    make_specs(ws.store, 3)
    s = Session(ws.config, ws.store, "ann", client_factory=lambda: None)
    s.open_next()
    s.add_request("Please translate this sentence into Chinese.")
    s.quit()
    ws.store.expire_leases(now=10 ** 12)  # maintenance returned every expired lease to the pool
    assert ws.store.get_spec(1)["status"] == "pending"
    again = Session(ws.config, ws.store, "ann", client_factory=lambda: None).open_next()
    assert again.spec["id"] == 1 and again.resumed
    other = Session(ws.config, ws.store, "bob", client_factory=lambda: None).open_next()
    assert other.spec["id"] == 2
    ws.close()


def test_human_never_continues_a_simulated_dialogue(store):
    ids = make_specs(store, 2)
    # a simulate run started spec 1, then gave it back on Ctrl-C (pending, its dialogue kept)
    assert store.claim_specs("simulate@h:1", 1, lease_s=60) == [ids[0]]
    store.create_dialogue(origin="simulated", spec_id=ids[0], annotator="m")
    store.release_claims("simulate@h:1")
    assert store.get_spec(ids[0])["status"] == "pending"
    assert store.lease_next_spec("human:ann", 60)["id"] == ids[1]
    assert store.lease_next_spec("human:bob", 60) is None
