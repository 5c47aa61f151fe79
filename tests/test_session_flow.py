"""Issue 24 items 3 and 8 in the line protocol (the real CLI, the loopback LLM server, the real
store): an early finish takes a reason and is counted; while specs are only leased by others
the session waits instead of saying idle."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading

from itcollect.store import Store

from .conftest import REPO, run_cli
from .test_overlap import set_config
from .test_session import events, make_workspace, server, session  # noqa: F401  (server: the fixture)


def test_finish_before_the_planned_turns_needs_a_reason_and_is_counted(tmp_path, server):  # noqa: F811
    ws = make_workspace(tmp_path / "ws", 2)  # two planned turns each (translate, polish)
    script = "\n".join([
        "request Please translate this sentence into Chinese.", "accept",
        "finish",                                   # bare, after 1 of 2: an error naming the count
        "finish the source is a caption, one turn is all it takes",
        "request 请把这句话译成中文。", "accept", "request 请润色一下，让它更通顺。",
        "finish",                                   # the plan is met: no reason needed
    ]) + "\n"
    r = session(ws, "ann", script, server.base_url)
    assert r.returncode == 0, r.stderr
    ev = events(r.stdout)
    err = next(d for t, d in ev if t == "error")
    assert err["command"] == "finish" and err["code"] == "early_finish"
    assert (err["done"], err["planned"]) == (1, 2) and "1 of 2 planned turns" in err["message"]
    assert [t for t, _ in ev].count("done") == 2
    with Store(ws / "itcollect.db") as store:
        first, second = store.dialogue_for_spec(1), store.dialogue_for_spec(2)
        assert first["status"] == second["status"] == "done"
        assert first["early_finish"] == "the source is a caption, one turn is all it takes"
        assert second["early_finish"] is None
    out = run_cli("-C", str(ws), "stats", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["annotators"]["ann"]["early_finishes"] == 1
    table = run_cli("-C", str(ws), "stats", "--annotators")
    assert "early" in table.stdout


class Annotator:
    """One scripted annotator: the real CLI's line protocol in a subprocess, driven event by event
    (a thread reads its events into a queue; the test decides when it acts)."""

    def __init__(self, ws, name: str, url: str) -> None:
        env = dict(os.environ, ITCOLLECT_PROGRESS="0", OPENAI_API_KEY="sk-test")
        env.pop("OPENAI_BASE_URL", None)
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "itcollect", "-C", str(ws), "session", "--annotator", name, "--base-url", url,
             "--model", "fake-model"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env, cwd=REPO)
        self.events: queue.Queue = queue.Queue()
        self.seen: list[tuple[str, dict]] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            tag, _, payload = line.rstrip("\n").partition(" ")
            self.events.put((tag, json.loads(payload)))
        self.events.put(("eof", {}))

    def expect(self, *tags: str) -> tuple[str, dict]:
        """The next event with one of ``tags`` (the others are kept in ``seen``)."""
        while True:
            tag, data = self.events.get(timeout=120)
            self.seen.append((tag, data))
            if tag in tags:
                return tag, data
            assert tag != "eof", (self.name, self.seen[-5:], self.proc.stderr.read())

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def work_one(self) -> None:
        """Translate the open dialogue and finish it (the next spec is then opened at once)."""
        assert self.expect("ready")[1]["expect"] == "request"
        self.send("request Please translate this sentence into Chinese.")
        assert self.expect("ready")[1]["expect"] == "decision"
        self.send("finish")
        self.expect("done")

    def close(self) -> int:
        if self.proc.poll() is None:
            self.proc.stdin.close()
        return self.proc.wait(60)


def test_four_annotators_over_four_overlap_specs_none_is_left_short(tmp_path, server):  # noqa: F811
    """Issue 24 item 8, made deterministic by deciding who holds the leases: every spec has two
    copies; when the last spec's two copies are held by two annotators who then quit without
    writing, the other two are not told idle: they wait, and take the copies as they come back."""
    ws = make_workspace(tmp_path / "ws", 4, types=("translate",))
    set_config(ws, overlap_share=1.0, overlap_annotators=2, wait_seconds=0.2)
    people: list[Annotator] = []
    try:
        for name in ("a", "b", "c", "d"):  # one at a time: a, b take spec 1's copies; c, d spec 2's
            people.append(Annotator(ws, name, server.base_url))
            assert people[-1].expect("dialogue")[1]["spec_id"] == (1 if name in "ab" else 2)
        a, b, c, d = people
        for p in people:  # each finishes and at once opens the next: a, b spec 3; c, d spec 4
            p.work_one()
            assert p.expect("dialogue")[1]["spec_id"] == (3 if p in (a, b) else 4)
        a.work_one()
        b.work_one()
        # nothing to open, but spec 4's two copies are leased by c and d: a and b wait, not idle
        for p in (a, b):
            tag, w = p.expect("waiting", "idle")
            assert tag == "waiting" and w["leased_by_others"] == 2 and w["retry_s"] > 0
        # c and d were about to stop: they quit without writing a word; their copies are released at once
        c.send("quit")
        d.send("quit")
        assert c.expect("bye") and d.expect("bye")
        for p in (a, b):
            assert p.expect("dialogue")[1]["spec_id"] == 4
            p.work_one()
            assert p.expect("idle", "waiting")[0] in ("idle", "waiting")
        for p in (a, b):  # once the other has finished too, nothing is left: idle, the session ends
            while p.seen[-1][0] != "idle":
                p.expect("idle")
            assert p.close() == 0
        assert c.close() == 0 and d.close() == 0
    finally:
        for p in people:
            if p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait(10)
    with Store(ws / "itcollect.db") as store:
        for spec in store.iter_specs():
            ds = [x for x in store.iter_dialogues() if x["spec_id"] == spec["id"]]
            assert spec["status"] == "done" and sorted(x["copy"] for x in ds) == [0, 1], (spec["id"], ds)
            assert all(x["status"] == "done" for x in ds) and len({x["annotator"] for x in ds}) == 2
