"""The Batch API transport (itcollect.llm.batch.BatchRunner) against the loopback Files/Batches server:
splitting, partial failures, expiry, whole-batch failure, and resuming from every state a crash
can leave behind (reproduced through the real SDK and store, not mocked)."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from itcollect.llm import LLMClient
from itcollect.llm.batch import BatchCall, BatchRunner, parse_result_line, split_calls


def _calls(llm: LLMClient, n: int, *, role: str = "assistant", tag: str = "") -> list[BatchCall]:
    out = []
    for i in range(n):
        msgs = [{"role": "user", "content": f"Translate sentence {tag}{i} into German."}]
        out.append(llm.batch_call(role, msgs))
    return out


def _run(workspace, batch_cfg, server, fn):
    async def main():
        llm = LLMClient(batch_cfg, workspace.store, command="test-batch", base_url=server.base_url, model="gpt-4o-mini")
        try:
            return await fn(llm, BatchRunner(workspace.store, batch_cfg, llm))
        finally:
            await llm.aclose()
    return asyncio.run(main())


def test_split_respects_count_bytes_and_model():
    body = {"model": "a", "messages": [{"role": "user", "content": "x" * 100}]}
    calls = [BatchCall(f"k{i}", "assistant", "a", None, body) for i in range(10)]
    calls += [BatchCall(f"m{i}", "annotator", "b", None, {**body, "model": "b"}) for i in range(3)]
    files = split_calls(calls, max_requests=4, max_bytes=10_000)
    assert [len(f) for f in files] == [4, 4, 2, 3]
    assert all(len({c.model for c in f}) == 1 for f in files)
    one = len(calls[0].line())
    files = split_calls(calls[:10], max_requests=100, max_bytes=3 * one)
    assert [len(f) for f in files] == [3, 3, 3, 1]
    assert [c.key for f in files for c in f] == [c.key for c in calls[:10]]  # order kept, nothing lost


def test_parse_result_line_failures_are_explicit():
    ok = {"custom_id": "k", "response": {"status_code": 200, "body": {
        "model": "m", "choices": [{"message": {"content": "Hallo"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1}}}}
    r = parse_result_line(ok)
    assert r.ok and r.answer.text == "Hallo" and r.answer.prompt_tokens == 3
    empty = json.loads(json.dumps(ok))
    empty["response"]["body"]["choices"][0]["message"]["content"] = "  "
    assert not parse_result_line(empty).ok and "empty" in parse_result_line(empty).error
    assert "500" in parse_result_line({"custom_id": "k", "response": {"status_code": 500, "body": {}}}).error
    assert "batch_expired" in parse_result_line({"custom_id": "k", "response": None,
                                                 "error": {"code": "batch_expired", "message": "x"}}).error


def test_round_split_over_files_answers_everything(workspace, batch_cfg, batch_server):
    api = batch_server.batch_api
    batch_cfg["batch"]["max_requests_per_file"] = 7
    api.max_requests_per_file = 7
    api.polls_before_done = 2

    async def go(llm, runner):
        calls = _calls(llm, 20)
        ids = runner.record_round(calls, workspace.store.next_batch_round())
        assert len(ids) == 3
        # recorded before anything was sent: every call is 'batched', nothing uploaded yet
        assert workspace.store.ledger_counts()["batched"] == 20 and api.uploads == []
        assert await runner.drain() == []
        return calls

    calls = _run(workspace, batch_cfg, batch_server, go)
    assert workspace.store.ledger_counts() == {"pending": 0, "done": 20, "failed": 0, "batched": 0}
    assert len(api.uploads) == 3 and all(u["lines"] <= 7 for u in api.uploads)
    assert sorted(cid for _, _, cid in api.answered) == sorted(c.key for c in calls)
    totals = workspace.store.call_totals()
    assert totals["sent"] == 20 and totals["cost_usd"] > 0
    # cost at batch prices: gpt-4o-mini batch = [0.075, 0.30] per 1M
    expected = (totals["prompt_tokens"] * 0.075 + totals["completion_tokens"] * 0.30) / 1e6
    assert totals["cost_usd"] == pytest.approx(expected, abs=1e-6)  # call_totals rounds to 1e-6
    assert expected < (totals["prompt_tokens"] * 0.15 + totals["completion_tokens"] * 0.60) / 1e6 / 1.9


def test_partial_failures_and_expiry_come_back_failed(workspace, batch_cfg, batch_server):
    api = batch_server.batch_api
    api.fail_first_share = 0.25

    async def go(llm, runner):
        calls = _calls(llm, 40)
        runner.record_round(calls, 1)
        await runner.drain()
        failed = {r["key"] for r in workspace.store.ledger_calls(["failed"])}
        assert 0 < len(failed) < 40
        # next round: only the failed calls, resubmitted alone; now one batch expires half-way
        api.expire_next = 1
        retry = [c for c in calls if c.key in failed]
        runner.record_round(retry, 2)
        await runner.drain()
        return calls, failed, retry

    calls, failed, retry = _run(workspace, batch_cfg, batch_server, go)
    round2 = [cid for _, r, cid in api.answered if r == "2"]
    assert set(round2) <= failed and len(round2) == len(retry) // 2
    counts = workspace.store.ledger_counts()
    assert counts["failed"] == len(retry) - len(retry) // 2 and counts["batched"] == 0
    expired = workspace.store.ledger_calls(["failed"])
    assert all("expired" in r["error"] for r in expired)
    assert all(n == 1 for n in api.answered_per_round().values())
    assert workspace.store.batch_failure_counts([r["key"] for r in expired]) == {r["key"]: 2 for r in expired}


def test_expired_without_error_lines_still_accounted(workspace, batch_cfg, batch_server):
    api = batch_server.batch_api
    api.expire_next = 1
    api.expired_lines_in_error_file = False

    async def go(llm, runner):
        runner.record_round(_calls(llm, 10), 1)
        await runner.drain()

    _run(workspace, batch_cfg, batch_server, go)
    assert workspace.store.ledger_counts() == {"pending": 0, "done": 5, "failed": 5, "batched": 0}


def test_whole_batch_failure_frees_its_calls(workspace, batch_cfg, batch_server):
    api = batch_server.batch_api
    api.fail_next = 1

    async def go(llm, runner):
        runner.record_round(_calls(llm, 5), 1)
        await runner.drain()
        return runner.collected

    reports = _run(workspace, batch_cfg, batch_server, go)
    assert reports[0].remote_status == "failed" and reports[0].failed == 5
    rows = workspace.store.ledger_calls(["failed"])
    assert len(rows) == 5 and all("injected" in r["error"] for r in rows)
    assert api.answered == []


def test_resume_after_upload_reached_server_reuses_file(workspace, batch_cfg, batch_server):
    """The crash state: the file was uploaded but its id never recorded (status 'uploading')."""
    api = batch_server.batch_api

    async def go(llm, runner):
        [bid] = runner.record_round(_calls(llm, 6), 1)
        workspace.store.update_batch(bid, status="uploading")
        sdk = openai.OpenAI(base_url=batch_server.base_url, api_key="x")
        sdk.files.create(file=(runner.filename(bid), runner.content(bid)), purpose="batch")
        await runner.drain()
        return bid

    _run(workspace, batch_cfg, batch_server, go)
    assert len(api.uploads) == 1 and len(api.created) == 1
    assert workspace.store.ledger_counts()["done"] == 6


def test_resume_after_create_reached_server_finds_batch(workspace, batch_cfg, batch_server):
    """The crash state: the remote batch exists but its id was never recorded (status 'creating')."""
    api = batch_server.batch_api

    async def go(llm, runner):
        [bid] = runner.record_round(_calls(llm, 6), 1)
        b = workspace.store.get_batch(bid)
        await runner.push(b)  # uploaded and created ...
        rid = workspace.store.get_batch(bid)["remote_id"]
        workspace.store.update_batch(bid, status="creating")  # ... but as if the id was lost
        runner2 = BatchRunner(workspace.store, batch_cfg, llm)
        await runner2.drain()
        return rid

    rid = _run(workspace, batch_cfg, batch_server, go)
    assert len(api.created) == 1 and api.created[0]["id"] == rid
    assert workspace.store.ledger_counts()["done"] == 6


def test_collect_twice_counts_once(workspace, batch_cfg, batch_server):
    async def go(llm, runner):
        [bid] = runner.record_round(_calls(llm, 4), 1)
        await runner.drain()
        sdk = openai.OpenAI(base_url=batch_server.base_url, api_key="x")
        rb = sdk.batches.retrieve(workspace.store.get_batch(bid)["remote_id"])
        again = await runner.collect(workspace.store.get_batch(bid), rb)  # a re-run after a crash
        return again

    again = _run(workspace, batch_cfg, batch_server, go)
    assert again.answered == 0 and again.already == 4
    assert workspace.store.call_totals()["sent"] == 4


def test_record_refuses_calls_already_out_or_answered(workspace, batch_cfg, batch_server):
    async def go(llm, runner):
        calls = _calls(llm, 3)
        runner.record_round(calls, 1)
        with pytest.raises(ValueError, match="already in batch"):
            runner.record_round(calls[:1], 2)
        await runner.drain()
        with pytest.raises(ValueError, match="already answered"):
            runner.record_round(calls[1:2], 2)

    _run(workspace, batch_cfg, batch_server, go)
    assert workspace.store.batch_totals()["total"] == 1  # the refused rounds left nothing behind
