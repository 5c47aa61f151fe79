"""The shared runners of LLM stages (itcollect/llm/runners/) drive any machine, online and in Batch API
rounds, over the real client, the loopback server and a real store.

The machine here is a comparison in miniature (what issue 23's compare stage is): per item, N
candidate answers asked at once (optional calls: one failing does not stop the item), then one
judgement per answered candidate, asked at once, then the best. It is a new machine on the same
runners, with no loop of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from itcollect.llm import ChatResult, LLMClient
from itcollect.llm.batch import BatchRunner, CollectReport
from itcollect.llm.runners.batch_rounds import FINISHED, SEND, BatchRounds
from itcollect.llm.runners.machine import Answer, Call, Failed
from itcollect.llm.runners.online import CALL_FAILED, Ended, OnlineRunner

N = 3
MODEL = "gpt-4o-mini"  # priced in the default config: the budget test needs a cost


def responder(body: dict) -> str:
    last = body["messages"][-1]["content"]
    if last.startswith("Score:"):
        return str(len(last) % 10)  # a deterministic "score" of the candidate
    return f"a candidate for {last}"


@dataclass
class Pick:
    item: int
    candidates: list[Answer] | None = None
    scores: dict[int, int] | None = None  # candidate index -> score (answered candidates only)

    @property
    def best(self) -> int | None:
        if not self.scores:
            return None
        return max(self.scores, key=lambda i: (self.scores[i], -i))  # type: ignore[index]


class BestOfN:
    """N candidates at once, then a judgement of each answered candidate at once, then done."""

    def __init__(self, n: int = N, *, optional: bool = True) -> None:
        self.n = n
        self.optional = optional

    def calls(self, st: Pick) -> Sequence[Call]:
        if st.candidates is None:
            msgs = [{"role": "user", "content": f"Item {st.item}: translate it."}]
            return [Call("assistant", msgs, sample=s, optional=self.optional, label=f"candidate {s}")
                    for s in range(self.n)]
        if st.scores is None:
            return [Call("annotator", [{"role": "user", "content": f"Score: {i}. {a.text}"}], label=f"judgement {i}")
                    for i, a in enumerate(st.candidates) if isinstance(a, ChatResult)]
        return []

    def apply(self, st: Pick, calls: Sequence[Call], answers: Sequence[Answer]) -> None:
        assert len(calls) == len(answers)
        if st.candidates is None:
            st.candidates = list(answers)
            return
        answered = [i for i, a in enumerate(st.candidates) if isinstance(a, ChatResult)]
        st.scores = {i: int(a.text) for i, a in zip(answered, answers)}  # type: ignore[union-attr]


class OnlineItems:
    def __init__(self, machine: BestOfN, n_items: int) -> None:
        self.machine = machine
        self._items = iter(range(n_items))
        self.ended: dict[int, tuple[Ended, Pick | None]] = {}
        self.closed = False

    async def next_item(self) -> int | None:
        return next(self._items, None)

    def start(self, item: int) -> Pick:
        return Pick(item)

    def end(self, item: int, state: Pick | None, ended: Ended) -> None:
        self.ended[item] = (ended, state)

    def close(self) -> None:
        self.closed = True


class RoundItems:
    """Items kept across rounds, as simulate keeps its dialogues."""

    def __init__(self, machine: BestOfN, n_items: int) -> None:
        self.machine = machine
        self.states: dict[int, Pick] = {}
        self.n_items = n_items
        self.finished: dict[int, Pick] = {}
        self.rounds_walked = 0
        self.reports: list[CollectReport] = []

    def begin(self) -> None:
        self.states = {i: Pick(i) for i in range(self.n_items)}

    def items(self) -> Iterator[tuple[int, Pick]]:
        self.rounds_walked += 1
        yield from list(self.states.items())

    def settle(self, item: int, state: Pick, kind: str) -> None:
        assert kind in (FINISHED, SEND), kind
        if kind == FINISHED:
            self.finished[item] = self.states.pop(item)

    def end_round(self) -> None:
        pass

    def collected(self, reports: Sequence[CollectReport]) -> None:
        self.reports += reports

    def over_budget(self, kept: int, total: int, spent: float, upper: float) -> str | None:
        return f"{kept} of {total}"


@pytest.fixture
def server(batch_server):
    batch_server.responder = responder
    return batch_server


@pytest.fixture
def cfg(batch_cfg):
    batch_cfg["llm"]["max_retries"] = 0  # a fault fails its call at once
    return batch_cfg


def _online(workspace, cfg, server, machine: BestOfN, n_items: int, *, concurrency: int = 16):
    async def main():
        llm = LLMClient(cfg, workspace.store, command="test-runners", base_url=server.base_url, model=MODEL,
                        concurrency=concurrency)
        try:
            work = OnlineItems(machine, n_items)
            runner: OnlineRunner[int, Pick] = OnlineRunner(llm, checkpoints=workspace.store.background_checkpoints())
            await runner.run(work)
            return work, runner
        finally:
            await llm.aclose()
    return asyncio.run(main())


def _rounds(workspace, cfg, server, machine: BestOfN, n_items: int, *, max_cost: float | None = None):
    async def main():
        llm = LLMClient(cfg, workspace.store, command="test-runners --batch-api", base_url=server.base_url,
                        model=MODEL)
        try:
            work = RoundItems(machine, n_items)
            rounds: BatchRounds[int, Pick] = BatchRounds(BatchRunner(workspace.store, cfg, llm), llm, wait=True,
                                                         max_cost=max_cost)
            return work, await rounds.run(work)
        finally:
            await llm.aclose()
    return asyncio.run(main())


def test_online_runner_sends_an_items_calls_together_and_a_rerun_is_free(workspace, cfg, server):
    server.set_latency(0.05)
    work, runner = _online(workspace, cfg, server, BestOfN(), 1)
    assert work.closed and runner.stop_reason is None
    (ended, st), = work.ended.values()
    assert ended.kind == "finished" and st is not None
    assert len(st.candidates) == N and all(isinstance(a, ChatResult) for a in st.candidates)
    assert len(st.scores) == N and st.best is not None
    assert server.total_requests == 2 * N
    assert server.max_in_flight == N  # the candidates went out together, then the judgements

    many, _ = _online(workspace, cfg, server, BestOfN(), 12, concurrency=4)
    assert {e.kind for e, _ in many.ended.values()} == {"finished"}
    assert server.max_in_flight <= 4  # the client's call slots bound what is in flight
    sent = server.total_requests
    assert not server.paid_twice()
    again, _ = _online(workspace, cfg, server, BestOfN(), 12, concurrency=4)
    assert server.total_requests == sent  # every answer from the ledger
    assert {i: s.scores for i, (_, s) in again.ended.items()} == {i: s.scores for i, (_, s) in many.ended.items()}


def test_an_optional_call_that_fails_is_answered_with_failed_and_the_item_goes_on(workspace, cfg, server):
    server.queue_faults("400")  # the first request that arrives: one of the candidates
    work, runner = _online(workspace, cfg, server, BestOfN(), 1)
    (ended, st), = work.ended.values()
    assert ended.kind == "finished" and runner.stop_reason is None
    failed = [a for a in st.candidates if isinstance(a, Failed)]
    assert len(failed) == 1 and failed[0].reason.startswith("candidate ")
    assert len(st.scores) == N - 1  # only the answered candidates were judged


def test_a_required_call_that_fails_leaves_the_item_for_the_next_run(workspace, cfg, server):
    server.queue_faults("400")
    work, runner = _online(workspace, cfg, server, BestOfN(optional=False), 1)
    (ended, st), = work.ended.values()
    assert ended.kind == CALL_FAILED and st.candidates is None
    assert ended.reason == runner.last_call_error and ended.reason.startswith("candidate ")
    again, _ = _online(workspace, cfg, server, BestOfN(optional=False), 1)
    (ended, st), = again.ended.values()
    assert ended.kind == "finished" and len(st.scores) == N  # the other candidates came from the ledger
    assert not server.paid_twice()


def test_batch_rounds_drive_the_same_machine_and_match_online(workspace, cfg, server):
    work, end = _rounds(workspace, cfg, server, BestOfN(), 5)
    assert not end.still_out and end.stopped is None
    assert end.rounds == 2 and end.submitted == 2 * N * 5  # candidates in round 1, judgements in round 2
    assert work.rounds_walked == 3 and len(work.finished) == 5 and not work.states
    assert sum(r.answered for r in work.reports) == 2 * N * 5
    again, end2 = _rounds(workspace, cfg, server, BestOfN(), 5)
    assert end2.rounds == 0 and len(again.finished) == 5  # everything from the ledger: nothing submitted
    online, _ = _online(workspace, cfg, server, BestOfN(), 5)
    assert server.total_requests == 0  # the same calls, keys and answers online: all in the ledger
    assert {i: s.scores for i, (_, s) in online.ended.items()} == {i: s.scores for i, s in work.finished.items()}


def test_batch_rounds_stop_at_the_budget(workspace, cfg, server):
    work, end = _rounds(workspace, cfg, server, BestOfN(), 4, max_cost=1e-12)
    assert end.rounds == 0 and end.stopped == f"0 of {N * 4}"
    assert len(work.states) == 4 and not work.finished
