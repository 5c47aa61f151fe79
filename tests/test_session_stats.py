"""Per-annotator figures: active time excludes pauses; counts come from turns and the action log."""

from __future__ import annotations

import pytest

from itcollect.store import Store

from .test_leases import make_specs


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "itcollect.db")
    yield s
    s.close()


def ev(action: str, t: str) -> dict:
    return {"action": action, "created_at": f"2026-01-01T10:{t}Z"}


def test_active_time_skips_quit_and_crash_gaps(store):
    events = [ev("open", "00:00.000"), ev("request", "00:30.000"), ev("accept", "01:00.000"),
              ev("quit", "02:00.000"),                       # 2 min of work, then a break...
              ev("resume", "40:00.000"), ev("request", "40:20.000"),  # ...not counted
              ev("answer", "40:30.000"),                     # kill -9 here: no event...
              ev("resume", "55:00.000"), ev("finish", "55:10.000")]   # ...the gap is not work
    assert store._active_seconds(events) == 120 + 30 + 10


def test_annotator_stats_from_turns_and_events(store):
    make_specs(store, 3)
    for spec_id, name in ((1, "ann"), (2, "ann"), (3, "bob")):
        did = store.create_dialogue(origin="human", spec_id=spec_id, annotator=name)
        store.log_event(name, "open", dialogue_id=did, spec_id=spec_id)
        if spec_id == 2:
            store.log_event(name, "skip", dialogue_id=did, spec_id=spec_id, detail={"reason": "offensive"})
            continue
        store.add_turn(did, role="user", content="q", author="human", annotator=name)
        tid = store.add_turn(did, role="assistant", content="a", author="model", model="m")
        store.log_event(name, "regenerate", dialogue_id=did, turn_id=tid)
        if name == "bob":
            store.update_turn(tid, content="b", original_content="a", author="human", annotator=name)
        store.log_event(name, "finish", dialogue_id=did, spec_id=spec_id)
    # a simulated dialogue never shows up as an annotator
    sim = store.create_dialogue(origin="simulated", annotator="gpt-x")
    store.add_turn(sim, role="user", content="q", author="model", annotator="gpt-x", model="gpt-x")
    stats = store.annotator_stats()
    assert set(stats) == {"ann", "bob"}
    assert {k: stats["ann"][k] for k in ("dialogues", "skipped", "turns", "edits", "regenerations")} == {
        "dialogues": 1, "skipped": 1, "turns": 1, "edits": 0, "regenerations": 1}
    assert stats["ann"]["skip_reasons"] == {"offensive": 1}
    assert stats["bob"]["edits"] == 1 and stats["bob"]["skip_reasons"] == {}
    assert stats["bob"]["median_seconds_per_dialogue"] is not None
