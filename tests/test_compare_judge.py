"""``itcollect judge`` scores the candidates of the turns a person compared, like any answer (the
ledger, a run cut short and continued, ``--dry-run``, ``--batch-api``), so ``stats --compare``
gives the agreement between the person's pick and the judge's (issue 23, part 5). The comparisons
are written through the store's API; the judge is the loopback server; the figures are by hand."""

from __future__ import annotations

import json

from itcollect.judge.run import self_judging_warning
from itcollect.workspace import Workspace

from .conftest import run_cli
from .judging import imported, make_ws, variant_answer, variant_responder
from .test_judge import BATCH_CONFIG, judge, judge_batch_server  # noqa: F401 (a fixture)

#: the judge's scores of the variants used (tests/judging.py): wellformed -6, clean 0, pileup -25
SCORES = {"wellformed": -6.0, "clean": 0.0, "pileup": -25.0}


def _cand(system: str, text: str, status: str = "answered") -> dict:
    return {"system": system, "model": f"m-{system}", "status": status, "content": text}


def _compare(store, did: str, cands: list[dict], **decision) -> int:
    turn = store.get_turns(did)[1]
    cid = store.add_comparison(did, 1, cands)
    store.decide_comparison(cid, turn_id=turn["id"], **decision)
    return cid


def _workspace(tmp_path, extra: str = ""):
    """Five imported dialogues (one answer each); four turns a person compared, one the judge did.

    agreement by hand, on the turns a person picked or ranked:
      d0 picks B (clean 0) over A (wellformed -6), C (pileup -25): the judge's best is B -> 1
      d1 picks A (wellformed -6) over B (clean 0): the judge's best is B -> 0
      d2 ranks A > B, both clean (0, 0): the judge's best is {A, B} -> 1/2
      d3 all bad (``none``, the person wrote the answer): not counted; its candidates are judged
    n = 3, agreement (1 + 0 + 0.5) / 3 = 0.5
    """
    ws = make_ws(tmp_path, extra=extra)
    v = variant_answer
    firsts = [v("wellformed", 0), v("wellformed", 1), v("clean", 2), v("wellformed", 3), v("clean", 4)]
    ids = imported(ws, tmp_path, firsts)
    s = ws.store
    cids = [
        _compare(s, ids[0], [_cand("A", firsts[0]), _cand("B", v("clean", 0)), _cand("C", v("pileup", 0)),
                             _cand("D", "", "failed"), _cand("E", "Je refuse.", "rejected")],
                 chooser="human", decision="pick", winner="B", annotator="ann"),
        _compare(s, ids[1], [_cand("A", firsts[1]), _cand("B", v("clean", 1))],
                 chooser="human", decision="pick", winner="A", annotator="ann"),
        _compare(s, ids[2], [_cand("A", firsts[2]), _cand("B", v("clean", 2) + " ")],
                 chooser="human", decision="rank", ranking=[["A"], ["B"]], winner="A", annotator="ann"),
        _compare(s, ids[3], [_cand("A", v("pileup", 3)), _cand("B", v("clean", 3))],
                 chooser="human_edit", decision="none", reason="all bad", annotator="ann"),
        _compare(s, ids[4], [_cand("A", firsts[4]), _cand("B", v("wellformed", 4))],
                 chooser="judge", decision="rank", ranking=[["A"], ["B"]], winner="A", annotator="j"),
    ]
    return ws, ids, cids


#: candidates to judge: d0 A B C, d1 A B, d2 A B, d3 A B (not D failed, E rejected, nor d4's: the judge's)
N_CANDIDATES = 9
#: distinct judge prompts: 5 answers + the candidates whose text is no answer's (d0 B C, d1 B, d2 B, d3 A B)
N_PROMPTS = 5 + 6


def _scores(ws, cid: int) -> dict[str, tuple]:
    return {r[0]: tuple(r[1:]) for r in ws.store.query(
        "SELECT system, judge_status, score, judge_model FROM candidates WHERE comparison_id=? ORDER BY system",
        (cid,))}


def test_the_judge_scores_a_persons_candidates_once_and_stats_agree(tmp_path, fake_openai):
    fake_openai.responder = variant_responder
    ws, ids, cids = _workspace(tmp_path)
    summary = judge(ws, fake_openai)
    assert (summary.todo, summary.judged, summary.candidates) == (5 + N_CANDIDATES, 5 + N_CANDIDATES, N_CANDIDATES)
    # one call per distinct prompt: a candidate whose text is its turn's answer is that answer's call
    assert fake_openai.total_requests == N_PROMPTS
    assert _scores(ws, cids[0]) == {"A": ("judged", -6.0, "judge-model"), "B": ("judged", 0.0, "judge-model"),
                                    "C": ("judged", -25.0, "judge-model"), "D": (None, None, None),
                                    "E": (None, None, None)}
    assert _scores(ws, cids[3]) == {"A": ("judged", -25.0, "judge-model"), "B": ("judged", 0.0, "judge-model")}
    assert _scores(ws, cids[4]) == {"A": (None, None, None), "B": (None, None, None)}  # the judge's own turn
    # the answers' judgements are where they were; no judgement row for a candidate
    assert ws.store.scalar("SELECT COUNT(*) FROM judgements") == 5

    fake_openai.reset()  # a second run: nothing to judge, nothing sent
    again = judge(ws, fake_openai)
    assert (again.todo, again.judged, fake_openai.total_requests) == (0, 0, 0)
    fake_openai.reset()  # another judge model scores them again
    other = judge(ws, fake_openai, model="judge-model-2")
    assert other.candidates == N_CANDIDATES and fake_openai.total_requests == N_PROMPTS
    assert {r[0] for r in ws.store.query("SELECT judge_model FROM candidates WHERE judge_status IS NOT NULL")} \
        == {"judge-model-2"}
    root = ws.root
    ws.close()

    r = run_cli("-C", str(root), "stats", "--json")
    assert r.returncode == 0, r.stderr
    compare = json.loads(r.stdout)["compare"]
    assert compare["agreement"] == {"n": 3, "agreement": 0.5}
    assert compare["by_chooser"] == {"human": 3, "judge": 1, "human_edit": 1}
    r = run_cli("-C", str(root), "stats", "--compare")
    assert "a person's pick and the judge's: 3 turns, agreement 0.5" in r.stdout
    # a judge model that wrote candidates a person compared is warned about, as one that wrote answers
    ws = Workspace(root)
    assert "m-B" in ws.store.answer_models() and "m-D" not in ws.store.answer_models()  # D's call failed
    warning = self_judging_warning(ws, "m-C")
    assert warning is not None and "m-C" in warning
    ws.close()


def test_limit_dry_run_and_a_continued_run_pay_each_prompt_once(tmp_path, fake_openai):
    fake_openai.responder = variant_responder
    ws, ids, cids = _workspace(tmp_path)
    root = ws.root
    ws.close()
    r = run_cli("-C", str(root), "judge", "--base-url", fake_openai.base_url, "--model", "judge-model", "--dry-run",
                "--json")
    assert r.returncode == 0, r.stderr
    e = json.loads(r.stdout)["dry_run"]
    assert (e["answers"], e["candidates"], e["calls"]) == (5 + N_CANDIDATES, N_CANDIDATES, 5 + N_CANDIDATES)
    assert fake_openai.total_requests == 0
    r = run_cli("-C", str(root), "judge", "--base-url", fake_openai.base_url, "--model", "judge-model", "--dry-run")
    assert f"dry run: {5 + N_CANDIDATES} answers to judge ({N_CANDIDATES} of them candidates" in r.stdout
    # a run cut short after the answers and two candidates, then continued
    r = run_cli("-C", str(root), "judge", "--base-url", fake_openai.base_url, "--model", "judge-model", "--limit", "7",
                "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["candidates"] == 2
    r = run_cli("-C", str(root), "judge", "--base-url", fake_openai.base_url, "--model", "judge-model")
    assert r.returncode == 0, r.stderr
    assert f"{N_CANDIDATES - 2} judged, 0 unparsed of {N_CANDIDATES - 2} answers" in r.stdout
    assert f"{N_CANDIDATES - 2} of them candidates of compared turns" in r.stdout
    assert fake_openai.total_requests == N_PROMPTS
    ws = Workspace(root)
    assert ws.store.scalar("SELECT COUNT(*) FROM candidates WHERE judge_status='judged'") == N_CANDIDATES
    ws.close()


def test_batch_api_scores_the_candidates_with_the_online_figures(tmp_path, judge_batch_server):  # noqa: F811
    server = judge_batch_server
    ws, ids, cids = _workspace(tmp_path, extra=BATCH_CONFIG)
    root = ws.root
    ws.close()
    r = run_cli("-C", str(root), "judge", "--batch-api", "--base-url", server.base_url, "--model", "judge-model",
                "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["judged"], out["candidates"]) == (5 + N_CANDIDATES, N_CANDIDATES)
    assert server.total_requests == 0 and len(server.batch_api.batches) == 1
    ws = Workspace(root)
    assert _scores(ws, cids[0])["C"] == ("judged", -25.0, "judge-model")
    assert _scores(ws, cids[2]) == {"A": ("judged", 0.0, "judge-model"), "B": ("judged", 0.0, "judge-model")}
    summary = judge(ws, server)  # online afterwards: nothing left, nothing sent
    assert summary.todo == 0 and server.total_requests == 0
    ws.close()


def test_kill_9_while_judging_candidates_then_rerun_scores_each_once(tmp_path, fake_openai):
    """30 answers, then 90 candidates (60 with a text of their own); the run is killed with SIGKILL
    while it judges candidates; the re-run scores every candidate, sending only what never came back."""
    import os
    import subprocess
    import sys

    from .conftest import REPO
    from .waiting import kill_9_after

    fake_openai.responder = variant_responder
    ws = make_ws(tmp_path)
    n = 30
    firsts = [variant_answer("wellformed", i) for i in range(n)]
    ids = imported(ws, tmp_path, firsts)
    for i, did in enumerate(ids):
        _compare(ws.store, did, [_cand("A", firsts[i]), _cand("B", variant_answer("clean", i)),
                                 _cand("C", variant_answer("pileup", i))],
                 chooser="human", decision="pick", winner="B", annotator="ann")
    root = ws.root
    ws.close()
    fake_openai.reset()
    fake_openai.set_latency((0.02, 0.08))
    env = dict(os.environ, ITCOLLECT_PROGRESS="0")
    env.pop("OPENAI_BASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "itcollect", "-C", str(root), "judge", "--base-url",
                             fake_openai.base_url, "--model", "judge-model", "--concurrency", "4"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_9_after(proc, fake_openai, n + 20)
    ws = Workspace(root)
    answered_at_kill = ws.store.scalar("SELECT COUNT(*) FROM llm_calls WHERE role='judge' AND status='done'")
    in_flight_at_kill = ws.store.scalar("SELECT COUNT(*) FROM llm_calls WHERE role='judge' AND status='pending'")
    scored_at_kill = ws.store.scalar("SELECT COUNT(*) FROM candidates WHERE judge_status IS NOT NULL")
    assert n <= answered_at_kill < 3 * n and scored_at_kill < 3 * n
    ws.close()
    fake_openai.set_latency(0)
    r = run_cli("-C", str(root), "judge", "--base-url", fake_openai.base_url, "--model", "judge-model", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    ws = Workspace(root)
    scores = [tuple(r) for r in ws.store.query(
        "SELECT system, judge_status, score FROM candidates ORDER BY comparison_id, system")]
    assert scores == [(s, "judged", v) for _ in range(n) for s, v in (("A", -6.0), ("B", 0.0), ("C", -25.0))]
    needed = ws.store.scalar("SELECT COUNT(*) FROM llm_calls WHERE role='judge' AND status='done'")
    assert needed == 3 * n  # one call per distinct prompt: the answers', and the 60 candidates of their own
    assert out["calls"]["sent"] == needed - answered_at_kill
    assert len(fake_openai.paid_twice()) <= in_flight_at_kill
    ws.close()
