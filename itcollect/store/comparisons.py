"""Comparisons of several systems per turn (``simulate --compare``, ``session --compare``).

* A **compare run** records which systems it compared (name, model, endpoint), who chooses
  (``human`` or ``judge``) and, for the judge, its model and seed.
* A dialogue keeps the **systems it started with** (``dialogue_systems``): the first run that
  compares in it records them; a later run with another list continues it with these.
* Per compared turn, a **comparison**: the candidates' systems in the order shown (label A is the
  first), its status (``open`` while it waits for a decision, ``decided``, ``void`` when fewer than
  two answers came, ``undone`` when the turn was taken back), the chooser (``human`` | ``judge`` |
  ``human_edit``: the person's own text is the chosen answer), the decision (``pick`` one system,
  ``rank`` them in tiers, ties allowed, or ``none``: all bad) with its reason, the tie flag (the
  best were equal and the seed chose which continues), the winner and the assistant turn that
  continues the dialogue.
* Per comparison, every **candidate** with its provenance (system, model, endpoint, prompt hash,
  ledger key, tokens, latency), its status (``answered``; ``rejected`` by a check: it loses;
  ``failed``: the call failed, it takes no part) and, once judged, the judge's scores.

A candidate is never a turn: only the chosen answer (or the person's edit of it) becomes the
dialogue's active answer at that position, so every reader of turns (filter, export's SFT rows,
judge) sees one answer per turn as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from itcollect.kernel.errors import StoreError
from itcollect.store.core import StoreCore, dumps, inserted_id, loads, utcnow

CHOOSERS = ("human", "judge", "human_edit")
DECISIONS = ("pick", "rank", "none")
CANDIDATE_STATUSES = ("answered", "rejected", "failed")

#: What a candidate is stored with (:meth:`ComparisonsMixin.add_comparison`); only ``system``,
#: ``model`` and ``status`` are required.
CANDIDATE_FIELDS = ("system", "model", "base_url", "status", "content", "failure", "prompt_hash", "call_key",
                    "prompt_tokens", "completion_tokens", "latency_ms", "finish_reason", "warnings")
#: A candidate's judgement (:meth:`ComparisonsMixin.set_candidate_judgements`).
JUDGEMENT_FIELDS = ("judge_status", "judge_model", "judge_call_key", "score", "compliance", "rating")

_CANDIDATE_READ = ("id", "comparison_id", *CANDIDATE_FIELDS, *JUDGEMENT_FIELDS)
_COMPARISON_READ = ("id", "dialogue_id", "idx", "run_id", "status", "labels", "chooser", "decision", "ranking",
                    "winner", "tie", "reason", "annotator", "turn_id", "created_at", "decided_at")


def _comparison(row: Sequence[Any]) -> dict[str, Any]:
    c = dict(zip(_COMPARISON_READ, row))
    c["labels"] = loads(c["labels"], [])
    c["ranking"] = loads(c["ranking"], None)
    c["tie"] = bool(c["tie"])
    return c


def _candidate(row: Sequence[Any]) -> dict[str, Any]:
    c = dict(zip(_CANDIDATE_READ, row))
    c["warnings"] = loads(c["warnings"], [])
    return c


def _check_decision(chooser: str, decision: str, winner: str | None, ranking: Sequence[Sequence[str]] | None,
                    systems: set[str]) -> None:
    if chooser not in CHOOSERS:
        raise ValueError(f"unknown chooser {chooser!r} (one of {', '.join(CHOOSERS)})")
    if decision not in DECISIONS:
        raise ValueError(f"unknown decision {decision!r} (one of {', '.join(DECISIONS)})")
    if decision == "pick" and winner is None:
        raise ValueError("a pick names its winner")
    if decision == "rank":
        if not ranking or any(not tier for tier in ranking):
            raise ValueError("a rank is a list of non-empty tiers, best first")
        ranked = [s for tier in ranking for s in tier]
        if len(ranked) != len(set(ranked)) or not set(ranked) <= systems:
            raise ValueError(f"a rank names each candidate's system at most once: {ranking!r}")
        if winner is not None and winner not in ranking[0]:
            raise ValueError(f"the winner {winner!r} is not in the rank's best tier {ranking[0]!r}")
    if winner is not None and winner not in systems:
        raise ValueError(f"the winner {winner!r} is not one of the candidates' systems {sorted(systems)}")
    if decision == "none" and chooser == "judge":
        raise ValueError("the judge always ranks; 'none' (all bad) is a person's decision")


class ComparisonsMixin(StoreCore):
    # -- compare runs ---------------------------------------------------------------------------------
    def start_compare_run(self, command: str, chooser: str, systems: Sequence[Mapping[str, Any]], *,
                          judge_model: str | None = None, seed: int | None = None) -> int:
        """Record a run that compares ``systems`` (each ``{name, model, base_url}``, in the order
        given); returns its id."""
        rows = [{"name": s["name"], "model": s["model"], "base_url": s.get("base_url")} for s in systems]
        with self.transaction() as c:
            cur = c.execute("INSERT INTO compare_runs(command, chooser, systems, judge_model, seed, started_at)"
                            " VALUES (?,?,?,?,?,?)", (command, chooser, dumps(rows), judge_model, seed, utcnow()))
            return inserted_id(cur)

    def finish_compare_run(self, run_id: int) -> None:
        with self.transaction() as c:
            c.execute("UPDATE compare_runs SET finished_at=? WHERE id=?", (utcnow(), run_id))

    def compare_runs(self) -> list[dict[str, Any]]:
        """Every compare run, oldest first, ``systems`` decoded."""
        out = []
        for r in self.query("SELECT * FROM compare_runs ORDER BY id"):
            d = dict(r)
            d["systems"] = loads(d["systems"], [])
            out.append(d)
        return out

    # -- a dialogue's systems -------------------------------------------------------------------------
    def set_dialogue_systems(self, dialogue_id: str, systems: Sequence[Mapping[str, Any]],
                             run_id: int | None = None) -> list[dict[str, Any]]:
        """The systems the dialogue is compared with: recorded by the first call, and returned as
        recorded then by every later one, whatever it passes (a dialogue keeps the systems it
        started with; the caller compares the two lists to say so)."""
        with self.transaction() as c:
            have = self.dialogue_systems(dialogue_id)
            if have:
                return have
            if len({s["name"] for s in systems}) != len(systems):
                raise ValueError("a dialogue's systems have distinct names")
            c.executemany("INSERT INTO dialogue_systems(dialogue_id, position, name, model, base_url, run_id)"
                          " VALUES (?,?,?,?,?,?)",
                          [(dialogue_id, k, s["name"], s["model"], s.get("base_url"), run_id)
                           for k, s in enumerate(systems)])
        return self.dialogue_systems(dialogue_id)

    def dialogue_systems(self, dialogue_id: str) -> list[dict[str, Any]]:
        """``[{name, model, base_url, run_id}]`` in the order first given; empty when the dialogue
        was never compared."""
        return [dict(r) for r in self.query(
            "SELECT name, model, base_url, run_id FROM dialogue_systems WHERE dialogue_id=? ORDER BY position",
            (dialogue_id,))]

    def compared_systems(self) -> list[dict[str, Any]]:
        """Every system some dialogue keeps (``{name, model, base_url}``, each once, by name): the
        systems a compare run may have to ask to continue those dialogues."""
        return [dict(r) for r in self.query(
            "SELECT name, model, base_url FROM dialogue_systems GROUP BY name, model, base_url"
            " ORDER BY name, model, base_url")]

    def compared_spec_ids(self) -> set[int]:
        """The specs whose dialogue keeps systems (a comparison started it): a plain run leaves them."""
        return {r[0] for r in self.query("SELECT DISTINCT d.spec_id FROM dialogues d JOIN dialogue_systems ds"
                                         " ON ds.dialogue_id = d.id WHERE d.spec_id IS NOT NULL")}

    # -- comparisons ----------------------------------------------------------------------------------
    def add_comparison(self, dialogue_id: str, idx: int, candidates: Sequence[Mapping[str, Any]], *,
                       labels: Sequence[str] | None = None, run_id: int | None = None) -> int:
        """An open comparison at answer position ``idx`` with its candidates (one per system);
        ``labels``: the systems in the order shown (default: the candidates' order). Raises
        :class:`~itcollect.kernel.errors.StoreConflict` when an open or decided one is already at
        ``idx`` (a void one may be followed by another try of the turn)."""
        systems = [c["system"] for c in candidates]
        if len(set(systems)) != len(systems):
            raise ValueError(f"one candidate per system: {systems}")
        order = list(systems if labels is None else labels)
        if sorted(order) != sorted(systems):
            raise ValueError(f"the labels {order} are not the candidates' systems {systems}")
        rows = []
        now = utcnow()
        for cand in candidates:
            unknown = set(cand) - set(CANDIDATE_FIELDS) - set(JUDGEMENT_FIELDS)
            if unknown:
                raise ValueError(f"unknown candidate fields {sorted(unknown)}")
            if cand["status"] not in CANDIDATE_STATUSES:
                raise ValueError(f"unknown candidate status {cand['status']!r}")
            values = {k: cand.get(k) for k in (*CANDIDATE_FIELDS, *JUDGEMENT_FIELDS)}
            values["warnings"] = dumps(list(cand.get("warnings") or []))
            rows.append(values)
        with self.transaction() as c:
            cur = c.execute("INSERT INTO comparisons(dialogue_id, idx, run_id, status, labels, created_at)"
                            " VALUES (?,?,?,'open',?,?)", (dialogue_id, idx, run_id, dumps(order), now))
            cid = inserted_id(cur)
            cols = (*CANDIDATE_FIELDS, *JUDGEMENT_FIELDS)
            c.executemany(f"INSERT INTO candidates(comparison_id, {', '.join(cols)}, created_at)"
                          f" VALUES ({','.join('?' * (len(cols) + 2))})",
                          [(cid, *(r[k] for k in cols), now) for r in rows])
            return cid

    def decide_comparison(self, comparison_id: int, *, chooser: str, decision: str, winner: str | None = None,
                          ranking: Sequence[Sequence[str]] | None = None, tie: bool = False,
                          reason: str | None = None, annotator: str | None = None,
                          turn_id: int | None = None) -> None:
        """Decide an open comparison, or decide a decided one again (a person's pick they then
        edit becomes ``human_edit``). ``winner``: the system whose answer continues (None when the
        person's own text does, or nothing yet); ``turn_id``: the active answer that continues."""
        with self.transaction() as c:
            row = c.execute("SELECT status FROM comparisons WHERE id=?", (comparison_id,)).fetchone()
            if row is None or row[0] not in ("open", "decided"):
                raise StoreError(f"comparison {comparison_id} is not open ({'missing' if row is None else row[0]})",
                                 path=str(self.path))
            systems = {r[0] for r in c.execute("SELECT system FROM candidates WHERE comparison_id=?"
                                               " AND status != 'failed'", (comparison_id,))}
            _check_decision(chooser, decision, winner, ranking, systems)
            c.execute("UPDATE comparisons SET status='decided', chooser=?, decision=?, ranking=?, winner=?, tie=?,"
                      " reason=?, annotator=?, turn_id=?, decided_at=? WHERE id=?",
                      (chooser, decision, None if ranking is None else dumps([list(t) for t in ranking]), winner,
                       int(tie), reason, annotator, turn_id, utcnow(), comparison_id))

    def void_comparison(self, comparison_id: int, reason: str, turn_id: int | None = None) -> None:
        """Fewer than two answers came: not a comparison (``reason`` says so); ``turn_id``: the one
        answer that continues, if any."""
        with self.transaction() as c:
            c.execute("UPDATE comparisons SET status='void', reason=?, turn_id=?, decided_at=? WHERE id=?"
                      " AND status='open'", (reason, turn_id, utcnow(), comparison_id))

    def undo_comparisons(self, dialogue_id: str, from_idx: int) -> int:
        """Take back the comparisons at answer positions ``from_idx`` and later (the turns they
        decided were undone); how many."""
        with self.transaction() as c:
            return c.execute("UPDATE comparisons SET status='undone' WHERE dialogue_id=? AND idx>=?"
                             " AND status != 'undone'", (dialogue_id, from_idx)).rowcount

    def set_candidate_judgements(self, comparison_id: int, judgements: Mapping[str, Mapping[str, Any]]) -> None:
        """Store the judge's scores of candidates: ``{system: {judge_status, judge_model,
        judge_call_key, score, compliance, rating}}`` (the candidates of other systems untouched)."""
        rows = []
        for system, j in judgements.items():
            unknown = set(j) - set(JUDGEMENT_FIELDS)
            if unknown:
                raise ValueError(f"unknown judgement fields {sorted(unknown)}")
            rows.append((*(j.get(k) for k in JUDGEMENT_FIELDS), comparison_id, system))
        with self.transaction() as c:
            c.executemany(f"UPDATE candidates SET {', '.join(f'{k}=?' for k in JUDGEMENT_FIELDS)}"
                          " WHERE comparison_id=? AND system=?", rows)

    # -- the judge's side: candidates of a person's comparisons -------------------------------------
    _TO_JUDGE = (" FROM candidates k JOIN comparisons c ON c.id=k.comparison_id JOIN dialogues d ON d.id=c.dialogue_id"
                 " WHERE c.status='decided' AND c.chooser <> 'judge' AND d.status='done' AND k.status='answered'"
                 " AND (k.judge_status IS NULL OR k.judge_model <> ?)")

    def count_candidates_to_judge(self, judge_model: str) -> int:
        """Answered candidates of the turns a person decided (finished dialogues) that this judge
        model has not scored (``itcollect judge`` scores them like any answer)."""
        return int(self.scalar("SELECT COUNT(*)" + self._TO_JUDGE, (judge_model,)) or 0)

    def candidates_to_judge(self, judge_model: str, *, after: int = 0, limit: int = 500) -> list[dict[str, Any]]:
        """Those candidates with id above ``after``, by id: ``{id, comparison_id, system, content,
        dialogue_id, idx}`` (``idx``: the answer position they compete for)."""
        return [dict(zip(("id", "comparison_id", "system", "content", "dialogue_id", "idx"), r)) for r in self.query(
            "SELECT k.id, k.comparison_id, k.system, k.content, c.dialogue_id, c.idx" + self._TO_JUDGE
            + " AND k.id > ? ORDER BY k.id LIMIT ?", (judge_model, after, limit))]

    def _with_candidates(self, comparisons: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not comparisons:
            return comparisons
        by_id = {c["id"]: c for c in comparisons}
        for c in comparisons:
            c["candidates"] = []
        ids = list(by_id)
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            for r in self.stream(f"SELECT {', '.join(_CANDIDATE_READ)} FROM candidates WHERE comparison_id IN"
                                 f" ({','.join('?' * len(part))}) ORDER BY id", part):
                by_id[r[1]]["candidates"].append(_candidate(r))
        return comparisons

    def comparison_at(self, dialogue_id: str, idx: int) -> dict[str, Any] | None:
        """The live (not undone) comparison at answer position ``idx``, with its ``candidates``: the
        open or decided one, else the latest void one."""
        rows = list(self.stream(f"SELECT {', '.join(_COMPARISON_READ)} FROM comparisons WHERE dialogue_id=?"
                                f" AND idx=? AND status != 'undone' ORDER BY status = 'void', id DESC LIMIT 1",
                                (dialogue_id, idx)))
        return self._with_candidates([_comparison(r) for r in rows])[0] if rows else None

    def comparisons_of(self, dialogue_id: str, *, include_undone: bool = False) -> list[dict[str, Any]]:
        """The dialogue's comparisons by position (with ``candidates``)."""
        sql = f"SELECT {', '.join(_COMPARISON_READ)} FROM comparisons WHERE dialogue_id=?"
        if not include_undone:
            sql += " AND status != 'undone'"
        return self._with_candidates([_comparison(r) for r in self.stream(sql + " ORDER BY idx, id", (dialogue_id,))])

    # -- readers: stats and export --------------------------------------------------------------------
    def has_comparisons(self) -> bool:
        """Whether any turn was decided among candidates."""
        return self.scalar("SELECT 1 FROM comparisons WHERE status='decided' LIMIT 1") is not None

    def compare_rows(self) -> list[dict[str, Any]]:
        """Every decided comparison with what ``stats`` groups it by: its dialogue's language pair,
        instruction language, origin and spec (``spec_id``: overlap copies share it), the interaction type of the request it answers, the
        request's number (``request_no``: 1 for the first user turn), and the candidates (system, status, judge
        scores; no content)."""
        rows = []
        for r in self.stream(
                f"SELECT {', '.join('c.' + f for f in _COMPARISON_READ)}, d.src_lang, d.tgt_lang, d.instruction_lang,"
                " d.origin, d.spec_id, COALESCE(u.interaction_type, a.interaction_type),"
                " (SELECT COUNT(*) FROM turns t WHERE t.dialogue_id=c.dialogue_id AND t.state='active'"
                "  AND t.role='user' AND t.idx < c.idx)"
                " FROM comparisons c JOIN dialogues d ON d.id=c.dialogue_id"
                " LEFT JOIN turns u ON u.dialogue_id=c.dialogue_id AND u.idx=c.idx-1 AND u.state='active'"
                " LEFT JOIN turns a ON a.id=c.turn_id"
                " WHERE c.status='decided' ORDER BY c.id"):
            c = _comparison(r[:len(_COMPARISON_READ)])
            c.update(zip(("src_lang", "tgt_lang", "instruction_lang", "origin", "spec_id", "interaction_type",
                              "request_no"),
                         r[len(_COMPARISON_READ):]))
            c["candidates"] = []
            rows.append(c)
        by_id = {c["id"]: c for c in rows}
        if by_id:
            for r in self.stream("SELECT k.comparison_id, k.system, k.status, k.judge_status, k.score, k.compliance,"
                                 " k.rating FROM candidates k JOIN comparisons c ON c.id=k.comparison_id"
                                 " WHERE c.status='decided' ORDER BY k.id"):
                by_id[r[0]]["candidates"].append(dict(zip(
                    ("system", "status", "judge_status", "score", "compliance", "rating"), r[1:])))
        return rows

    def compare_call_rows(self) -> list[tuple[str, str, float | None, str | None, float | None]]:
        """(system, status, latency_ms, call_key, ledger cost_usd) of every candidate ever asked
        for (of undone and void comparisons too: they were paid for)."""
        return [tuple(r) for r in self.stream(
            "SELECT k.system, k.status, k.latency_ms, k.call_key, l.cost_usd FROM candidates k"
            " LEFT JOIN llm_calls l ON l.key=k.call_key ORDER BY k.id")]

    def kept_comparisons(self, *, after: int = 0, upto: int | None = None) -> dict[str, list[dict[str, Any]]]:
        """Decided comparisons (with ``candidates``, content included) of the finished dialogues the
        latest filter run kept (replayed specs' left out, as export leaves them out), with rowid in (``after``, ``upto``], by dialogue id, by position."""
        upper = "" if upto is None else " AND d.rowid <= ?"
        params: tuple = (after,) if upto is None else (after, upto)
        rows = [_comparison(r) for r in self.stream(
            f"SELECT {', '.join('c.' + f for f in _COMPARISON_READ)} FROM dialogues d"
            f" JOIN verdicts v ON v.dialogue_id=d.id AND v.kept=1 JOIN comparisons c ON c.dialogue_id=d.id"
            f" WHERE d.rowid > ?{upper} AND d.status='done' AND c.status='decided' AND NOT EXISTS"
            f" (SELECT 1 FROM specs rs WHERE rs.id=d.spec_id AND rs.replay_of IS NOT NULL)"
            f" ORDER BY d.rowid, c.idx", params)]
        out: dict[str, list[dict[str, Any]]] = {}
        for c in self._with_candidates(rows):
            out.setdefault(c["dialogue_id"], []).append(c)
        return out

