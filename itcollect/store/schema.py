"""Schema of the store as a list of forward migrations.

``PRAGMA user_version`` holds the number of migrations applied. A migration is appended, never
edited once released: an older workspace is brought forward by running the ones it lacks, each in
its own transaction, so an interrupted upgrade leaves a consistent older schema behind.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable

# Migration 1: the foundation as first released (sources and ingest bookkeeping).
_M1_SOURCES = """
CREATE TABLE ingest_runs (
    id            INTEGER PRIMARY KEY,
    path          TEXT NOT NULL,
    format        TEXT NOT NULL,
    declared_lang TEXT,
    ref_lang      TEXT,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    lines         INTEGER NOT NULL DEFAULT 0,
    kept          INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE ingest_drops (
    run_id INTEGER NOT NULL REFERENCES ingest_runs(id) ON DELETE CASCADE,
    reason TEXT NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (run_id, reason)
);
CREATE TABLE sources (
    id          TEXT PRIMARY KEY,          -- content hash of the normalised text
    text        TEXT NOT NULL,
    lang        TEXT NOT NULL,
    docid       TEXT,
    origlang    TEXT,
    seg_id      TEXT,
    origin_file TEXT NOT NULL,
    origin_line INTEGER,
    run_id      INTEGER REFERENCES ingest_runs(id),
    created_at  TEXT NOT NULL
);
CREATE INDEX sources_lang ON sources(lang);
CREATE TABLE source_refs (
    source_id  TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    lang       TEXT NOT NULL,
    text       TEXT NOT NULL,
    translator TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (source_id, lang, translator)
);
"""

# Migration 2: dialogue production, the LLM ledger, verdicts and exports.
_M2_DIALOGUES = """
CREATE TABLE specs (
    id                INTEGER PRIMARY KEY,
    seed              INTEGER NOT NULL,
    seq               INTEGER NOT NULL,          -- position in the plan for this seed
    source_id         TEXT NOT NULL REFERENCES sources(id),
    src_lang          TEXT NOT NULL,
    tgt_lang          TEXT NOT NULL,
    instruction_lang  TEXT NOT NULL,
    n_turns           INTEGER NOT NULL,          -- user turns
    interaction_types TEXT NOT NULL,             -- JSON list, one per user turn
    params            TEXT NOT NULL DEFAULT '{}',-- JSON: must-include terms, retarget language, bounds
    status            TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending','in_progress','done','failed','skipped')),
    status_reason     TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    UNIQUE (seed, seq)
);
CREATE INDEX specs_status ON specs(status);
CREATE INDEX specs_source ON specs(source_id);

CREATE TABLE leases (
    spec_id     INTEGER PRIMARY KEY REFERENCES specs(id) ON DELETE CASCADE,
    holder      TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    expires_at  REAL NOT NULL                    -- unix time
);

CREATE TABLE dialogues (
    id               TEXT PRIMARY KEY,
    spec_id          INTEGER REFERENCES specs(id),
    origin           TEXT NOT NULL CHECK (origin IN ('simulated','human','imported')),
    annotator        TEXT,                       -- human name, or the annotator model
    source_id        TEXT REFERENCES sources(id),
    source_text      TEXT,                       -- the sentence translated (also for imports)
    src_lang         TEXT,
    tgt_lang         TEXT,
    instruction_lang TEXT,
    status           TEXT NOT NULL DEFAULT 'in_progress'
                     CHECK (status IN ('in_progress','done','failed','skipped')),
    status_reason    TEXT,
    flagged          INTEGER NOT NULL DEFAULT 0,
    review_status    TEXT,                       -- NULL | accepted | rejected
    origin_file      TEXT,
    origin_line      INTEGER,
    meta             TEXT NOT NULL DEFAULT '{}',
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE UNIQUE INDEX dialogues_spec ON dialogues(spec_id) WHERE spec_id IS NOT NULL;
CREATE INDEX dialogues_status ON dialogues(status);

CREATE TABLE turns (
    id                INTEGER PRIMARY KEY,
    dialogue_id       TEXT NOT NULL REFERENCES dialogues(id) ON DELETE CASCADE,
    idx               INTEGER NOT NULL,          -- position in the dialogue, from 0
    role              TEXT NOT NULL CHECK (role IN ('system','user','assistant')),
    content           TEXT NOT NULL,
    state             TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active','rejected','undone')),
    author            TEXT NOT NULL CHECK (author IN ('human','model','imported')),
    annotator         TEXT,
    model             TEXT,
    interaction_type  TEXT,
    template_name     TEXT,
    template_hash     TEXT,
    params            TEXT NOT NULL DEFAULT '{}',
    call_key          TEXT,
    original_content  TEXT,                      -- the model's answer when a human edited it
    lang              TEXT,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    latency_ms        REAL,
    finish_reason     TEXT,
    warnings          TEXT NOT NULL DEFAULT '[]',
    created_at        TEXT NOT NULL
);
CREATE UNIQUE INDEX turns_active ON turns(dialogue_id, idx) WHERE state = 'active';
CREATE INDEX turns_dialogue ON turns(dialogue_id);

CREATE TABLE session_events (
    id          INTEGER PRIMARY KEY,
    annotator   TEXT NOT NULL,
    dialogue_id TEXT,
    spec_id     INTEGER,
    action      TEXT NOT NULL,
    turn_id     INTEGER,
    detail      TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL
);
CREATE INDEX session_events_annotator ON session_events(annotator);

CREATE TABLE llm_calls (
    key               TEXT PRIMARY KEY,          -- hash of model + messages + parameters
    role              TEXT NOT NULL,
    model             TEXT NOT NULL,
    base_url          TEXT,
    request           TEXT NOT NULL,             -- JSON body; never the API key
    status            TEXT NOT NULL CHECK (status IN ('pending','done','failed','batched')),
    batch_id          TEXT,
    response          TEXT,
    finish_reason     TEXT,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    cost_usd          REAL,
    latency_ms        REAL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    error             TEXT,
    created_at        TEXT NOT NULL,
    answered_at       TEXT
);
CREATE INDEX llm_calls_status ON llm_calls(status);

CREATE TABLE llm_runs (
    id                INTEGER PRIMARY KEY,
    command           TEXT NOT NULL,
    started_at        TEXT NOT NULL,
    finished_at       TEXT,
    sent              INTEGER NOT NULL DEFAULT 0,
    from_ledger       INTEGER NOT NULL DEFAULT 0,
    failed            INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd          REAL NOT NULL DEFAULT 0
);

CREATE TABLE batches (
    id             TEXT PRIMARY KEY,             -- local id, recorded before upload
    remote_id      TEXT,
    round          INTEGER NOT NULL,
    status         TEXT NOT NULL,
    input_file_id  TEXT,
    output_file_id TEXT,
    error_file_id  TEXT,
    n_requests     INTEGER NOT NULL DEFAULT 0,
    detail         TEXT NOT NULL DEFAULT '{}',
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE TABLE batch_items (
    batch_id TEXT NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    call_key TEXT NOT NULL,
    status   TEXT NOT NULL DEFAULT 'submitted',
    PRIMARY KEY (batch_id, call_key)
);

CREATE TABLE filter_runs (
    id         INTEGER PRIMARY KEY,
    thresholds TEXT NOT NULL,
    kept       INTEGER NOT NULL DEFAULT 0,
    dropped    INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE verdicts (
    dialogue_id TEXT PRIMARY KEY REFERENCES dialogues(id) ON DELETE CASCADE,
    run_id      INTEGER NOT NULL REFERENCES filter_runs(id),
    kept        INTEGER NOT NULL,
    reasons     TEXT NOT NULL DEFAULT '[]',
    cluster_id  TEXT,
    detail      TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE exports (
    id            INTEGER PRIMARY KEY,
    out_dir       TEXT NOT NULL,
    formats       TEXT NOT NULL,
    filter_run_id INTEGER,
    counts        TEXT NOT NULL DEFAULT '{}',
    created_at    TEXT NOT NULL
);
"""

# Migration (import/filter/export): import bookkeeping, detected language per turn (written by
# import and filter so re-running filter with other thresholds never re-detects), verdict runs.
_M_IMPORT_FILTER = """
CREATE TABLE import_runs (
    id          INTEGER PRIMARY KEY,
    path        TEXT NOT NULL,
    format      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    records     INTEGER NOT NULL DEFAULT 0,
    imported    INTEGER NOT NULL DEFAULT 0,
    duplicates  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE import_bad (
    run_id INTEGER NOT NULL REFERENCES import_runs(id) ON DELETE CASCADE,
    reason TEXT NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (run_id, reason)
);
ALTER TABLE turns ADD COLUMN detected_lang TEXT;
CREATE INDEX verdicts_run ON verdicts(run_id);
"""

# Migration 4: Batch API — find a call's batch items (attempt counts) without scanning them all.
_M_BATCH_ITEMS_KEY = """
CREATE INDEX batch_items_call_key ON batch_items(call_key, status);
"""

# Migration 5: filter — find the turns whose language was never detected without reading every
# turn of the corpus (a full scan of 1M turns took ~1 s of every filter run, though after the first
# run there is normally nothing to find). Partial: it only holds the undetected ones.
_M_UNDETECTED_TURNS = """
CREATE INDEX turns_undetected ON turns(id) WHERE detected_lang IS NULL;
"""

# Migration 6: people who work in the browser (`annotators add`, `session --web`): accounts with a
# role and the sha256 of their login token, the browser sessions a login opened (hashed too), and
# indexes on the action log for the engine's per-turn and per-dialogue look-ups.
_M_ACCOUNTS = """
CREATE TABLE accounts (
    name         TEXT PRIMARY KEY,
    role         TEXT NOT NULL CHECK (role IN ('annotator','reviewer','lead')),
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    revoked_at   TEXT,
    last_seen_at TEXT
);
CREATE TABLE web_sessions (
    sid_hash   TEXT PRIMARY KEY,
    name       TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
    csrf       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX web_sessions_name ON web_sessions(name);
-- The session engine asks "was this turn accepted?" and "this dialogue's actions" on every
-- screen it draws; with a team in the browser the action log grows fast, so look them up by index.
CREATE INDEX session_events_turn ON session_events(turn_id);
CREATE INDEX session_events_dialogue ON session_events(dialogue_id);
"""

# Migration 7: the LLM judge (`itcollect judge`). One judgement per answer turn (the latest; the
# ledger keeps every answer ever paid for). ``dialogues.turns_rev`` counts the writes to a
# dialogue's turns (a turn added, edited, undone, rejected); a judgement records the value it saw,
# so a dialogue edited or extended after judging is judged again, while a review verdict or a flag
# (which change the dialogue, not its turns) leave its judgements current.
_M_JUDGE = """
ALTER TABLE dialogues ADD COLUMN turns_rev INTEGER NOT NULL DEFAULT 0;
CREATE TABLE judgements (
    turn_id          INTEGER PRIMARY KEY REFERENCES turns(id) ON DELETE CASCADE,
    dialogue_id      TEXT NOT NULL REFERENCES dialogues(id) ON DELETE CASCADE,
    dialogue_rev     INTEGER NOT NULL,           -- dialogues.turns_rev it judged
    kind             TEXT NOT NULL CHECK (kind IN ('translation','rating')),
    interaction_type TEXT,                       -- the answer's type as judged (NULL: untyped import turn)
    judge_model      TEXT NOT NULL,
    template_name    TEXT NOT NULL,
    template_hash    TEXT NOT NULL,              -- of the judge's system and kind templates
    call_key         TEXT,                       -- ledger key of the answer parsed (or of the last try)
    generation       INTEGER NOT NULL DEFAULT 0, -- --rejudge rounds: the sample is 2 x generation (+1 re-ask)
    sample           INTEGER NOT NULL DEFAULT 0,
    status           TEXT NOT NULL CHECK (status IN ('judged','unparsed')),
    score            REAL,                       -- MQM: minus the weighted errors, floored (translations)
    n_critical       INTEGER NOT NULL DEFAULT 0,
    errors           TEXT NOT NULL DEFAULT '[]', -- JSON [{category, severity, span}]
    compliance       TEXT CHECK (compliance IN ('yes','partly','no')),
    reason           TEXT,
    rating           INTEGER,                    -- 1..5 (explanations, follow-ups)
    in_instruction_language INTEGER,
    raw              TEXT,                       -- the judge's text when it could not be parsed
    created_at       TEXT NOT NULL
);
CREATE INDEX judgements_dialogue ON judgements(dialogue_id);
"""

# Migration 8: quality control of human annotation (issue 16).
# * Overlap: a spec may be done by several annotators, each in a copy of their own (``copy`` 0, 1,
#   ...; ``specs.copies`` says how many, decided when a person first takes the spec; NULL: not
#   decided, one). One dialogue and one lease per copy, so the unique keys become (spec, copy).
# * Review: error spans that reviewers mark on answers (category and severity from the judge's
#   lists), and which copy of an overlapped spec a reviewer picked to keep.
_M_QUALITY = """
ALTER TABLE specs ADD COLUMN copies INTEGER;
CREATE INDEX specs_overlap ON specs(status, id) WHERE copies > 1;
ALTER TABLE dialogues ADD COLUMN copy INTEGER NOT NULL DEFAULT 0;
DROP INDEX dialogues_spec;
CREATE UNIQUE INDEX dialogues_spec ON dialogues(spec_id, copy) WHERE spec_id IS NOT NULL;
CREATE TABLE leases_by_copy (
    spec_id     INTEGER NOT NULL REFERENCES specs(id) ON DELETE CASCADE,
    copy        INTEGER NOT NULL DEFAULT 0,
    holder      TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    expires_at  REAL NOT NULL,                   -- unix time
    PRIMARY KEY (spec_id, copy)
);
INSERT INTO leases_by_copy(spec_id, copy, holder, acquired_at, expires_at)
    SELECT spec_id, 0, holder, acquired_at, expires_at FROM leases;
DROP TABLE leases;
ALTER TABLE leases_by_copy RENAME TO leases;
CREATE INDEX leases_holder ON leases(holder);
CREATE TABLE review_marks (
    id          INTEGER PRIMARY KEY,
    dialogue_id TEXT NOT NULL REFERENCES dialogues(id) ON DELETE CASCADE,
    turn_id     INTEGER NOT NULL REFERENCES turns(id) ON DELETE CASCADE,
    reviewer    TEXT NOT NULL,
    category    TEXT NOT NULL,
    severity    TEXT NOT NULL,
    start       INTEGER NOT NULL,                -- character offsets into the turn's content
    end         INTEGER NOT NULL,
    span        TEXT NOT NULL,                   -- the marked text (content[start:end])
    note        TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX review_marks_dialogue ON review_marks(dialogue_id);
CREATE TABLE overlap_picks (
    spec_id     INTEGER PRIMARY KEY REFERENCES specs(id) ON DELETE CASCADE,
    dialogue_id TEXT NOT NULL REFERENCES dialogues(id) ON DELETE CASCADE,
    reviewer    TEXT NOT NULL,
    note        TEXT,
    created_at  TEXT NOT NULL
);
"""

# Migration 9: the same CHECK constraints, cheaper. SQLite evaluates ``x IN ('a','b','c')`` (three
# or more constants) by building a temporary b-tree of the list, and a CHECK does that again for
# every row written (each row of an ``executemany`` is a new execution): ~2 us a constraint a row,
# measured 7.4 of the 18 s CPU that import spent writing 1.04M turns with their three such checks.
# ``x = 'a' OR x = 'b' OR x = 'c'`` accepts and rejects exactly the same values (NULL included)
# and costs nothing measurable. A CHECK's text does not touch any stored row, so the definitions
# are rewritten in place, by SQLite's documented procedure for changing a CHECK constraint
# (writable_schema, then a new schema cookie so every connection re-reads the tables); a build of
# SQLite that refuses it (SQLITE_DBCONFIG_DEFENSIVE) keeps the old, equivalent definitions.
_IN_LIST_CHECK = re.compile(r"CHECK \((\w+) IN \(([^()]*)\)\)")


def checks_as_comparisons(sql: str) -> str:
    """``sql`` (a CREATE TABLE) with every ``CHECK (col IN (v1, v2, ...))`` spelled as ``col = v1 OR ...``."""
    def spelled(m: re.Match[str]) -> str:
        column, values = m.group(1), [v.strip() for v in m.group(2).split(",")]
        return "CHECK (" + " OR ".join(f"{column} = {v}" for v in values) + ")"
    return _IN_LIST_CHECK.sub(spelled, sql)


def _m_checks_as_comparisons(conn: sqlite3.Connection) -> None:
    tables = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql IS NOT NULL").fetchall()
    rewritten = [(checks_as_comparisons(sql), sql, name) for name, sql in tables]
    changed = [(new, name) for new, sql, name in rewritten if new != sql]
    if not changed:
        return
    cookie = conn.execute("PRAGMA schema_version").fetchone()[0]
    try:
        conn.execute("PRAGMA writable_schema=ON")
        conn.executemany("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?", changed)
        conn.execute(f"PRAGMA schema_version={int(cookie) + 1}")
    except sqlite3.DatabaseError:  # a defensive build: nothing was changed, the old checks stay
        pass
    finally:
        conn.execute("PRAGMA writable_schema=OFF")


# Migration 10: one index over a dialogue's turns instead of two. ``turns_active`` (unique
# (dialogue, position) among active turns) and ``turns_dialogue`` (every turn of a dialogue) both
# began with the dialogue id, a hash, so every turn written went to a random place in each: import
# spent ~2.7 of its ~12 s of SQLite CPU for 1.04M turns on the second one. ``turns_position`` keys
# active turns by (dialogue, position, 0) and the others by (dialogue, position, turn id): the same
# uniqueness among active turns, in position order, and a dialogue's turns, all of them or the
# active ones, found by its first column as before.
_M_TURNS_POSITION = """
DROP INDEX turns_active;
DROP INDEX turns_dialogue;
CREATE UNIQUE INDEX turns_position ON turns(dialogue_id, idx, CASE WHEN state = 'active' THEN 0 ELSE id END);
"""

# Migration 11: comparisons of several systems per turn (issue 23). A compare run records the
# systems it compared; a dialogue keeps the systems it started with (a later run with another list
# continues it with its own); per compared turn, a comparison (the candidates' labels in the order
# shown, who chose, the decision and its reason, the tie flag, the assistant turn that continues)
# and every candidate with its provenance (system, model, endpoint, prompt hash, latency, tokens,
# ledger key) and, once judged, its judge scores. A candidate is never a turn: only the chosen
# answer (or the person's edit of it) becomes the dialogue's active answer at that position.
# ``specs.replay_of``: a spec that replays the spec of an exported dialogue (``plan --from-split``,
# to measure systems on sentences they never trained on): it does not count toward
# ``max_uses_per_source``, is no position of its seed's plan (its ``seq`` is negative), and its
# dialogue is never exported (evaluation data stays out of the training files).
_M_COMPARISONS = """
ALTER TABLE specs ADD COLUMN replay_of TEXT;
CREATE UNIQUE INDEX specs_replay ON specs(replay_of, seed) WHERE replay_of IS NOT NULL;
CREATE TABLE compare_runs (
    id          INTEGER PRIMARY KEY,
    command     TEXT NOT NULL,                   -- simulate | session
    chooser     TEXT NOT NULL CHECK (chooser = 'human' OR chooser = 'judge'),
    systems     TEXT NOT NULL,                   -- JSON [{name, model, base_url}] in the order given
    judge_model TEXT,
    seed        INTEGER,
    started_at  TEXT NOT NULL,
    finished_at TEXT
);
CREATE TABLE dialogue_systems (
    dialogue_id TEXT NOT NULL REFERENCES dialogues(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    name        TEXT NOT NULL,
    model       TEXT NOT NULL,
    base_url    TEXT,
    run_id      INTEGER REFERENCES compare_runs(id),
    PRIMARY KEY (dialogue_id, position),
    UNIQUE (dialogue_id, name)
);
CREATE TABLE comparisons (
    id          INTEGER PRIMARY KEY,
    dialogue_id TEXT NOT NULL REFERENCES dialogues(id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,                -- position of the answer turn in the dialogue
    run_id      INTEGER REFERENCES compare_runs(id),
    status      TEXT NOT NULL DEFAULT 'open'
                CHECK (status = 'open' OR status = 'decided' OR status = 'void' OR status = 'undone'),
    labels      TEXT NOT NULL DEFAULT '[]',      -- JSON: the systems in the order shown (label A first)
    chooser     TEXT CHECK (chooser = 'human' OR chooser = 'judge' OR chooser = 'human_edit'),
    decision    TEXT CHECK (decision = 'pick' OR decision = 'rank' OR decision = 'none'),
    ranking     TEXT,                            -- JSON tiers of systems, best first (decision rank)
    winner      TEXT,                            -- the system whose answer continues (NULL: none)
    tie         INTEGER NOT NULL DEFAULT 0,      -- the best were equal; the seed chose the winner
    reason      TEXT,
    annotator   TEXT,                            -- the person who chose (or the judge model)
    turn_id     INTEGER REFERENCES turns(id) ON DELETE SET NULL,  -- the answer that continues
    created_at  TEXT NOT NULL,
    decided_at  TEXT
);
-- one open or decided comparison per answer position (void ones: a retry of the turn may follow)
CREATE UNIQUE INDEX comparisons_position ON comparisons(dialogue_id, idx,
    CASE WHEN status = 'undone' OR status = 'void' THEN id ELSE 0 END);
CREATE INDEX comparisons_decided ON comparisons(status, dialogue_id);
CREATE TABLE candidates (
    id                INTEGER PRIMARY KEY,
    comparison_id     INTEGER NOT NULL REFERENCES comparisons(id) ON DELETE CASCADE,
    system            TEXT NOT NULL,
    model             TEXT NOT NULL,
    base_url          TEXT,
    status            TEXT NOT NULL CHECK (status = 'answered' OR status = 'rejected' OR status = 'failed'),
    content           TEXT,
    failure           TEXT,                      -- why it was rejected (a check) or failed (the call)
    prompt_hash       TEXT,
    call_key          TEXT,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    latency_ms        REAL,
    finish_reason     TEXT,
    warnings          TEXT NOT NULL DEFAULT '[]',
    judge_status      TEXT CHECK (judge_status = 'judged' OR judge_status = 'unparsed'),
    judge_model       TEXT,
    judge_call_key    TEXT,
    score             REAL,
    compliance        TEXT CHECK (compliance = 'yes' OR compliance = 'partly' OR compliance = 'no'),
    rating            INTEGER,
    created_at        TEXT NOT NULL,
    UNIQUE (comparison_id, system)
);
"""

# Issue 24 items 3 and 6: a dialogue finished before its planned turns keeps why
# (``dialogues.early_finish``, the annotator's reason; NULL = finished as planned or not finished),
# and an account keeps the interface language its person chose (``accounts.ui_lang``, en | zh;
# NULL = not chosen: the config's ``[web] language``, else the browser's).
_M_EARLY_FINISH_UI_LANG = """
ALTER TABLE dialogues ADD COLUMN early_finish TEXT;
ALTER TABLE accounts ADD COLUMN ui_lang TEXT;
"""

# Issue 24 item 11: the LLM judge's error spans as suggested marks on the review page; what a
# reviewer did with each (confirmed: a mark with the judge's category and severity; changed: a mark
# of the reviewer's own category or severity; dismissed), keyed by the answer and the judge's
# (category, span), so a suggestion is decided once and stats can put the judge against reviewers.
_M_REVIEW_SUGGESTIONS = """
CREATE TABLE review_suggestions (
    id          INTEGER PRIMARY KEY,
    dialogue_id TEXT NOT NULL REFERENCES dialogues(id) ON DELETE CASCADE,
    turn_id     INTEGER NOT NULL REFERENCES turns(id) ON DELETE CASCADE,
    category    TEXT NOT NULL,                   -- the judge's
    severity    TEXT NOT NULL,
    span        TEXT NOT NULL,
    decision    TEXT NOT NULL CHECK (decision = 'confirmed' OR decision = 'changed' OR decision = 'dismissed'),
    mark_id     INTEGER,                         -- review_marks.id of a confirmed or changed one
    reviewer    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (turn_id, category, span)
);
CREATE INDEX review_suggestions_dialogue ON review_suggestions(dialogue_id);
"""

# Issue 24 items 4 and 9: the web server's guards, in the store so that they hold across restarts (and across
# several servers on one database): failed logins per client (rate limiting), and the idempotency
# keys of the annotators' actions (an action the page sends again after an outage is applied once).
_M_WEB_GUARDS = """
CREATE TABLE web_login_failures (
    client TEXT NOT NULL,
    at     REAL NOT NULL
);
CREATE INDEX web_login_failures_client ON web_login_failures(client, at);
CREATE TABLE web_actions (
    account    TEXT NOT NULL,
    action_key TEXT NOT NULL,
    path       TEXT NOT NULL,
    at         REAL NOT NULL,
    PRIMARY KEY (account, action_key)
);
CREATE INDEX web_actions_at ON web_actions(at);
"""

#: A migration: a script run in one transaction, or a function given the connection inside one.
Migration = str | Callable[[sqlite3.Connection], None]

#: Append new migrations at the end; never edit or reorder a released one.
MIGRATIONS: list[Migration] = [
    _M1_SOURCES,
    _M2_DIALOGUES,
    _M_IMPORT_FILTER,
    _M_BATCH_ITEMS_KEY,
    _M_UNDETECTED_TURNS,
    _M_ACCOUNTS,
    _M_JUDGE,
    _M_QUALITY,
    _m_checks_as_comparisons,
    _M_TURNS_POSITION,
    _M_COMPARISONS,
    _M_EARLY_FINISH_UI_LANG,
    _M_REVIEW_SUGGESTIONS,
    _M_WEB_GUARDS,
]

SCHEMA_VERSION = len(MIGRATIONS)
