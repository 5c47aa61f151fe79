"""Atomic spec claims: several simulate processes on one workspace never take the same spec."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from itcollect.store import Store, process_holder

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """A store with 60 pending specs: the workspace's file, or a PostgreSQL database (its URL)."""
    path = str(tmp_path / "itcollect.db") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    with Store(path) as s:
        s.add_source(source_id="s1", text="A sentence about the news today.", lang="en", origin_file="x.txt")
        s.add_specs([{"seed": 1, "seq": i, "source_id": "s1", "src_lang": "en", "tgt_lang": "zh",
                      "instruction_lang": "en", "n_turns": 2, "interaction_types": ["translate", "polish"]}
                     for i in range(60)])
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_claims_are_exclusive_and_finish(db):
    with Store(db) as s:
        a = s.claim_specs("simulate@h:1", 10)
        b = s.claim_specs("simulate@h:2", 10)
        assert len(a) == len(b) == 10 and not set(a) & set(b)
        assert s.spec_counts()["in_progress"] == 20
        assert s.finish_claim(a[0], "simulate@h:1", "done")
        assert not s.finish_claim(a[1], "simulate@h:2", "done")  # not its spec: nothing changes
        assert s.get_spec(a[0])["status"] == "done" and s.get_spec(a[1])["status"] == "in_progress"
        # a holder asking again gets its own unfinished specs back first
        assert s.claim_specs("simulate@h:1", 3) == sorted(a[1:])[:3]
        assert s.release_claims("simulate@h:2") == 10
        assert all(s.get_spec(i)["status"] == "pending" for i in b)


def test_dead_process_specs_are_reclaimed_at_once(db):
    import socket

    dead = f"simulate@{socket.gethostname()}:{_dead_pid()}"
    alive = f"simulate@{socket.gethostname()}:{os.getppid()}"
    with Store(db) as s:
        mine = process_holder()
        kept = s.claim_specs(alive, 5, lease_s=3600)
        lost = s.claim_specs(dead, 5, lease_s=3600)
        got = s.claim_specs(mine, 7)
        assert set(lost) <= set(got) and not set(kept) & set(got)
        human = s.claim_specs("human:alice", 2, lease_s=3600)
        assert not set(human) & set(got)


def test_expired_lease_is_taken_over(db):
    with Store(db) as s:
        old = s.claim_specs("simulate@elsewhere:1", 3, lease_s=-1)  # already expired
        new = s.claim_specs("simulate@h:2", 3)
        assert new == old


def test_parallel_processes_never_claim_the_same_spec(db):
    child = textwrap.dedent("""
        import sys
        from itcollect.store import Store
        got = []
        with Store(sys.argv[1]) as s:
            while True:
                ids = s.claim_specs(sys.argv[2], 2)
                if not ids:
                    break
                got += ids
                for i in ids:
                    assert s.finish_claim(i, sys.argv[2], "done")
        print(" ".join(map(str, got)))
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", child, str(db), f"simulate@h:{900000 + i}"], env=env,
                              stdout=subprocess.PIPE, text=True) for i in range(3)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    claimed = [int(x) for out in outs for x in out.split()]
    assert len(claimed) == len(set(claimed)) == 60
    with Store(db) as s:
        assert s.spec_counts()["done"] == 60 and s.claim_holders() == {}
        assert s.scalar("SELECT COUNT(*) FROM leases") == 0


def test_a_human_dialogue_is_never_claimed_by_simulate(db):
    """An annotator's expired lease must not hand their dialogue to a machine."""
    with Store(db) as s:
        spec = s.lease_next_spec("human:ann", -1, now=1000.0)  # leased, and already expired
        did = s.create_dialogue(origin="human", spec_id=spec["id"], annotator="ann", source_id="s1")
        s.add_turn(did, role="user", content="Please translate this.", author="human", annotator="ann")
        claimed = s.claim_specs("simulate@h:9", 100)
        assert spec["id"] not in claimed
        assert len(claimed) == 59
        # nor when the human's spec went back to pending
        s.release_claims("simulate@h:9")
        s.set_spec_status(spec["id"], "pending")
        assert spec["id"] not in s.claim_specs("simulate@h:10", 100)
