"""The shared runners of every LLM stage: a stage describes one item's calls as a small resumable
state machine (:mod:`.machine`), and one online runner (:mod:`.online`) and one batch-rounds runner
(:mod:`.batch_rounds`) drive any such machine. simulate's machine is its dialogue
(:class:`itcollect.simulate.machine.DialogueMachine`), the judge's is the judgement of one answer
(:class:`itcollect.llm.judgement.ask.JudgementMachine`: ask, re-ask once, record).

The modules are imported by name (``from itcollect.llm.runners.online import OnlineRunner``):
the batch-rounds runner imports the Batch API transport, which online runs do not need.
"""
