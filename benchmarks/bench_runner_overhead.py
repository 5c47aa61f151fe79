"""CPU of the judge's per-answer path on the online runner, without the network (run it per checkout).

    PYTHONPATH=/path/to/checkout python benchmarks/bench_runner_overhead.py [N]

A client that answers every call at once with a well-formed judgement leaves only the stage's own
work per answer: the runner's single-call branch, the :class:`JudgementMachine` state and its
:class:`Call`, the parse and the row (a checkout from before the shared runners runs its
``judge_task`` instead). Prints microseconds of CPU per answer, after a warm-up.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from itcollect.config import validated
from itcollect.llm.answers import ChatResult

REPLY = json.dumps({"errors": [{"span": "rapport", "category": "style", "severity": "minor"}],
                    "compliance": "yes", "reason": "It does what the user asked."})


class InstantClient:
    """Answers every call at once (what is measured is everything but the call)."""

    concurrency = 256

    async def chat(self, role: str, messages: list[dict], *, sample: int = 0, priority: float = 0.0,
                   **params: Any) -> ChatResult:
        return ChatResult(REPLY, "stop", "m", f"k{sample}", 10, 10, 0.0, 0.0, True, 0)


async def _measure(n: int) -> tuple[str, float]:
    try:
        from itcollect.llm.judgement.ask import Asking, Judge, JudgementMachine, Task
        from itcollect.llm.runners.online import OnlineRunner
        tree = "shared runners"
    except ImportError:  # a checkout from before them
        from itcollect.judge.run import Judge, Task, judge_task  # type: ignore[no-redef,attr-defined]
        tree = "judge_task"
    judge = Judge(validated({}), "judge-model")
    task = Task("d", 1, 0, "translation", "translate", True, [{"role": "system", "content": judge.system},
                {"role": "user", "content": "x" * 3000}], "t", "h", 0, None)
    client = InstantClient()
    if tree == "shared runners":
        runner, machine = OnlineRunner(client), JudgementMachine(judge)

        async def one() -> Any:
            st = Asking(task)
            while calls := machine.calls(st):
                machine.apply(st, calls, await runner._answer(calls))
            return st.row
    else:
        async def one() -> Any:
            return (await judge_task(client, judge, task))[0]
    for _ in range(2000):
        await one()
    t0 = time.process_time()
    for _ in range(n):
        await one()
    return tree, (time.process_time() - t0) / n * 1e6


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    tree, us = asyncio.run(_measure(n))
    print(f"{tree}: {us:.1f} us CPU per answer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
