"""``plan``: turn the ``[mix]`` config into concrete dialogue specs, deterministically for a seed.

How the proportions are kept exact: specs are planned in blocks of :data:`BLOCK` (100) positions. In each
block every dimension (pair, instruction language, number of turns; interaction types over the
block's follow-up slots; constrained first turns) gets integer quotas by largest-remainder
allocation *with the remainders carried into the next block*, so after any whole block each
category is within one item of its ideal count; the quota list is then shuffled with a seed derived
from (seed, dimension, block). Proportions are therefore exact to within a fraction of a percentage
point at any size of 1,000 or more, instead of drifting like independent sampling.

``plan --dialogues N --seed S`` makes the workspace hold N specs for seed S: the spec at position
``seq`` is a pure function of (config, seed, seq) and the sources, so a later, larger N *tops up*
with positions the earlier run did not reach and never changes an existing spec (they are kept in
the store as they are). Sources are assigned in position order from a per-language queue ordered
by (uses so far, a seeded hash of the source id): the least-used sentence goes next, none beyond
``max_uses_per_source`` (counted over every seed in the workspace).

``plan --from-split test`` (:func:`replay_split`) replays the specs of the dialogues an export puts
in one split, as new specs for comparing systems on them (not counted as uses, never exported).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from itcollect.config import Config, settings
from itcollect.config.schema import MixSection
from itcollect.kernel import checks as C
from itcollect.kernel.errors import ConfigError, InputError
from itcollect.kernel.taxonomy import (
    EXPLAIN_KINDS,
    FOLLOW_TYPES,
    FOLLOW_UP_KINDS,
    LENGTH_MODES,
    STYLE_REGISTERS,
)
from itcollect.store.interfaces import PlanStore

BLOCK = 100
#: Paraphrase variants of the first-turn templates a spec may pick (20 forms x 4 constraint forms).
FIRST_TURN_VARIANTS = 80

_HAN_CHUNK_SPLIT = re.compile(r"[\s，。、；：？！“”‘’（）《》「」『』,.;:?!()\"'0-9A-Za-z的了在是和与对将为把被也都而及并从向于以等这那个其之]+")
_LATIN_TERM = re.compile(r"[^\W\d_][\w’'-]*[^\W_]|\d{2,}")


@dataclass
class PlanResult:
    seed: int
    requested: int
    existing: int
    added: int
    counts: dict[str, Counter] = field(default_factory=dict)
    constrained: int = 0

    @property
    def total(self) -> int:
        return self.existing + self.added


def _normalised(weights: dict[str, float]) -> list[tuple[str, float]]:
    total = float(sum(weights.values()))
    return [(k, v / total) for k, v in weights.items() if v > 0]


class _Quota:
    """Largest-remainder allocation with carried remainders: call ``take(n)`` block after block."""

    def __init__(self, weights: dict[str, float]) -> None:
        self.shares = _normalised(weights)
        self.debt = dict.fromkeys((k for k, _ in self.shares), 0.0)

    def take(self, n: int) -> dict[str, int]:
        ideal = {k: n * p + self.debt[k] for k, p in self.shares}
        alloc = {k: max(0, int(v // 1)) for k, v in ideal.items()}
        left = n - sum(alloc.values())
        order = sorted(self.shares, key=lambda kp: (-(ideal[kp[0]] - alloc[kp[0]]), kp[0]))
        i = 0
        while left > 0:
            alloc[order[i % len(order)][0]] += 1
            left -= 1
            i += 1
        while left < 0:  # only when carried debts were negative everywhere; take back from the largest
            k = max(alloc, key=lambda x: (alloc[x] - ideal[x], x))
            alloc[k] -= 1
            left += 1
        for k in alloc:
            self.debt[k] = ideal[k] - alloc[k]
        return alloc


def _spread(quota: dict[str, int], rng: random.Random) -> list[str]:
    """The quota as a list in seeded random order in which every prefix keeps the proportions.

    Jittered strata: the j-th of a category's c items lands at a random point of [j/c, (j+1)/c),
    and the block is read in that order. A plan of 16 dialogues then holds each pair and
    instruction language within one of its share (a plain shuffle of the block's 100 positions
    was off by 2-6, which a first small plan shows), while each attribute's order is still drawn
    independently of the others' (no fixed cycle that would tie, say, a pair to an instruction
    language). Whole blocks hold exactly their quota, as before.
    """
    rand = rng.random
    keyed = [((j + rand()) / c, k) for k in sorted(quota) if (c := quota[k]) > 0 for j in range(c)]
    keyed.sort()
    return [k for _, k in keyed]


def _no_repeats(dealt: list[list[str]]) -> None:
    """Swap follow-up types between the block's dialogues so no dialogue asks for the same type twice
    in a row ("make it a headline" twice reads like a bug, and the second answer cannot differ).
    A permutation inside the block: the quotas are untouched. Deterministic, best effort."""

    def fits(lst: list[str], j: int, t: str) -> bool:
        return (j == 0 or lst[j - 1] != t) and (j + 1 >= len(lst) or lst[j + 1] != t)

    n = len(dealt)
    for di in range(n):
        lst = dealt[di]
        for j in range(1, len(lst)):
            if lst[j] != lst[j - 1]:
                continue
            done = False
            for step in range(1, n):
                other = dealt[(di + step) % n]
                for m, cand in enumerate(other):
                    if cand != lst[j] and fits(lst, j, cand) and fits(other, m, lst[j]):
                        other[m], lst[j] = lst[j], cand
                        done = True
                        break
                if done:
                    break


def _pick(seq: Sequence[Any], rand: Any) -> Any:
    return seq[int(rand() * len(seq))]


def _rng(*parts: Any) -> random.Random:
    return random.Random(":".join(str(p) for p in parts))


def _least_used_first(ranked: list[tuple[bytes, int, str]], max_uses: int) -> Iterator[str]:
    """Source ids least-used first, ties in seeded rank order, each up to ``max_uses`` uses in all:
    level L yields (in rank order) every source used at most L times before this plan."""
    levels = sorted({u for _, u, _ in ranked})
    if not levels:
        return
    for level in range(levels[0], max_uses):
        for _, u, sid in ranked:
            if u <= level:
                yield sid


def _hash_rank(seed: int, source_id: str) -> bytes:
    return hashlib.blake2b(f"{seed}:{source_id}".encode(), digest_size=8).digest()


def _validate_mix(mix: MixSection, languages: Sequence[str]) -> None:
    unknown = [t for t in mix.interaction_types if t not in FOLLOW_TYPES]
    if unknown:
        raise ConfigError(f"mix.interaction_types: unknown type(s) {', '.join(unknown)} (known: {', '.join(FOLLOW_TYPES)})")
    if mix.interaction_types.get("retarget", 0) > 0 and len(set(languages)) < 3:
        raise ConfigError("mix.interaction_types: retarget needs at least three workspace.languages")


def term_candidates(reference: str | None, source: str, src_lang: str, tgt_lang: str) -> list[str]:
    """Words a constrained first turn may require, in order of appearance.

    With a reference translation: its content words (Latin script: 4+ letters, no stopwords;
    Chinese: short chunks between punctuation and function characters). Without one: only what
    survives translation verbatim — numbers of 2+ digits, and (Latin to Latin script) capitalised
    names inside the sentence and acronyms.
    """
    out: list[str] = []
    if reference:
        if tgt_lang == "zh":
            out = [c for c in _HAN_CHUNK_SPLIT.split(reference) if 2 <= len(c) <= 4]
        else:
            stop = C._STOPWORDS.get(tgt_lang, set())
            out = [w for w in _LATIN_TERM.findall(reference)
                   if (len(w) >= 4 and w.casefold() not in stop) or (w.isdigit() and len(w) >= 2)]
    else:
        toks = _LATIN_TERM.findall(source) if src_lang != "zh" else re.findall(r"\d{2,}|[A-Z]{2,}", source)
        for i, w in enumerate(toks):
            if w.isdigit() and len(w) >= 2:
                out.append(w)
            elif src_lang != "zh" and tgt_lang != "zh" and i > 0 and w[:1].isupper() and len(w) >= 3:
                out.append(w)
    seen: list[str] = []
    for w in out:
        if w not in seen:
            seen.append(w)
    return seen


class _LazyRefs:
    """lang -> this source's reference, looked up only when a turn needs it."""

    __slots__ = ("_refs", "_sid")

    def __init__(self, refs: Any, sid: str) -> None:
        self._refs, self._sid = refs, sid

    def get(self, lang: str) -> str | None:
        return self._refs(lang).get(self._sid)


def _estimate_length(source: str, src_lang: str, tgt_lang: str, reference: str | None) -> int:
    if reference:
        return C.text_length(reference, tgt_lang)
    n = C.text_length(source, src_lang)
    if src_lang != "zh" and tgt_lang == "zh":
        return int(n * 1.6)
    if src_lang == "zh" and tgt_lang != "zh":
        return int(n / 1.6)
    return n


def _turn_params(types: list[str], rng: random.Random, *, src_lang: str, tgt_lang: str,
                 languages: Sequence[str]) -> list[dict[str, Any]]:
    """Planned parameters of each user turn (draws depend only on the position, never on sources)."""
    out: list[dict[str, Any]] = [{}]
    current = tgt_lang
    rand = rng.random
    used: set[str] = set()
    for t in types[1:]:
        p: dict[str, Any] = {}
        if t == "style":  # a register not asked for earlier in the dialogue
            p["register"] = _pick([r for r in STYLE_REGISTERS if r not in used] or STYLE_REGISTERS, rand)
            used.add(p["register"])
        elif t == "length":
            p["mode"] = _pick(LENGTH_MODES, rand)
            if p["mode"] == "max":
                p["unit"] = C.length_unit(current)
                p["_lang"] = current  # the bound itself needs the source: filled in later
        elif t == "retarget":
            choices = [lang for lang in languages if lang not in (src_lang, current)]
            p["lang"] = _pick(choices, rand)
            current = p["lang"]
        elif t == "explain":
            p["kind"] = _pick(EXPLAIN_KINDS, rand)
        elif t == "follow_up":
            p["kind"] = _pick(FOLLOW_UP_KINDS, rand)
        out.append(p)
    return out


class _Position(NamedTuple):
    """What the mix fixes for one spec position, before a source is assigned."""

    seq: int
    pair: str
    instr: str
    n_turns: int
    types: list[str]
    constrained: bool
    variant: int
    n_terms: int
    term_seed: int
    turn_params: list[dict[str, Any]]


def plan_specs(store: PlanStore, config: Config, n_dialogues: int, seed: int = 0, *,
               progress: Any = None) -> PlanResult:
    """Make the store hold ``n_dialogues`` specs for ``seed`` (adds the missing positions)."""
    if n_dialogues < 0:
        raise InputError("--dialogues must be zero or more")
    typed = settings(config)
    mix, languages = typed.mix, list(typed.workspace.languages)
    _validate_mix(mix, languages)
    existing = store.spec_count_for_seed(seed)
    start = store.max_spec_seq(seed) + 1
    result = PlanResult(seed=seed, requested=n_dialogues, existing=existing, added=0)
    if n_dialogues <= existing or n_dialogues <= start:
        return result
    rows = _positions(mix, languages, seed, start, n_dialogues)
    if not rows:
        return result
    max_uses = mix.max_uses_per_source
    queues, texts = _source_queues(store, Counter(r.pair.split("-")[0] for r in rows), seed, max_uses)
    specs = _assign_sources(store, rows, seed, queues, texts, result, progress)
    result.added = store.insert_specs(specs)
    result.counts = _mix_counts(specs)
    return result


def _positions(mix: MixSection, languages: Sequence[str], seed: int, start: int, end: int) -> list[_Position]:
    """The attributes of positions [start, end): those of every position of [0, end) are drawn,
    block after block with carried remainders, so a position never depends on the plan's size."""
    pairs_q, instr_q, turns_q = _Quota(mix.pairs), _Quota(mix.instruction_langs), _Quota(mix.turns)
    types_q, constr_q = _Quota(mix.interaction_types), _Quota({"yes": mix.must_include_share,
                                                               "no": 1 - mix.must_include_share})
    rows: list[_Position] = []
    for block_start in range(0, end, BLOCK):
        size = BLOCK
        pairs = _spread(pairs_q.take(size), _rng(seed, "pairs", block_start))
        instr = _spread(instr_q.take(size), _rng(seed, "instr", block_start))
        turns = [int(t) for t in _spread(turns_q.take(size), _rng(seed, "turns", block_start))]
        slots = sum(t - 1 for t in turns)
        types = _spread(types_q.take(slots), _rng(seed, "types", block_start))
        constrained = _spread(constr_q.take(size), _rng(seed, "constr", block_start))
        rng = _rng(seed, "spec", block_start)
        dealt, pos = [], 0
        for i in range(size):
            dealt.append(types[pos:pos + turns[i] - 1])
            pos += turns[i] - 1
        _no_repeats(dealt)
        for i in range(size):
            seq = block_start + i
            ts = ["translate", *dealt[i]]
            src, tgt = pairs[i].split("-")
            # The same draws for every position, used or not, so a position never depends on another.
            variant, n_terms, term_seed = int(rng.random() * FIRST_TURN_VARIANTS), \
                _pick((1, 1, 2, 2, 3), rng.random), rng.getrandbits(32)
            tparams = _turn_params(ts, rng, src_lang=src, tgt_lang=tgt, languages=languages)
            if start <= seq < end:
                rows.append(_Position(seq, pairs[i], instr[i], turns[i], ts, constrained[i] == "yes", variant,
                                      n_terms, term_seed, tparams))
    return rows


def _source_queues(store: PlanStore, need: Counter[str], seed: int, max_uses: int
                   ) -> tuple[dict[str, Iterator[str]], dict[str, str]]:
    """Per source language, the queue of source ids to assign (least used first), and the text of
    every source in them; refuses, before anything is written, when a language has too few uses left."""
    uses = store.source_use_counts()
    queues: dict[str, Iterator[str]] = {}
    texts: dict[str, str] = {}
    problems = []
    for lang in sorted(need):
        srcs = store.planning_sources(lang)
        ranked = []
        capacity = 0
        for sid, text in srcs:
            u = uses.get(sid, 0)
            if u < max_uses:
                ranked.append((_hash_rank(seed, sid), u, sid))
                capacity += max_uses - u
                texts[sid] = text
        if capacity < need[lang]:
            problems.append(f"{lang} needs {need[lang]} uses, {capacity} available ({len(srcs)} sentences x "
                            f"max_uses_per_source {max_uses}, minus uses by existing specs)")
        ranked.sort()
        queues[lang] = _least_used_first(ranked, max_uses)
    if problems:
        raise InputError("not enough source sentences: " + "; ".join(problems)
                         + ". Ingest more sources in that language or raise mix.max_uses_per_source")
    return queues, texts


def _assign_sources(store: PlanStore, rows: list[_Position], seed: int, queues: dict[str, Iterator[str]],
                    texts: dict[str, str], result: PlanResult, progress: Any) -> list[dict[str, Any]]:
    """The specs of ``rows``: each takes the next source of its language's queue, its required terms
    (a constrained first turn) and the length bounds of its turns from that source (counted in
    ``result.constrained``)."""
    refs_by_lang: dict[str, dict[str, str]] = {}

    def refs(lang: str) -> dict[str, str]:
        if lang not in refs_by_lang:
            refs_by_lang[lang] = store.reference_texts(lang)
        return refs_by_lang[lang]

    specs = []
    pending_constraint = 0  # constrained slots whose source offered no terms: moved to the next spec that can
    for seq, pair, instr, n_turns, types, constrained, variant, n_terms, term_seed, tparams in rows:
        src, tgt = pair.split("-")
        sid = next(queues[src])
        source = texts[sid]
        ref_map = _LazyRefs(refs, sid)
        params: dict[str, Any] = {"variant": variant}
        want = constrained or pending_constraint > 0
        if want:
            cands = term_candidates(ref_map.get(tgt), source, src, tgt)
            if cands:
                k = min(len(cands), n_terms)
                picked = sorted(random.Random(term_seed).sample(range(len(cands)), k))
                params["must_include"] = [cands[i] for i in picked]
                result.constrained += 1
                if not constrained:
                    pending_constraint -= 1
            elif constrained:
                pending_constraint += 1
        for p in tparams:
            if "_lang" in p:
                lang = p.pop("_lang")
                p["n"] = max(3, int(_estimate_length(source, src, lang, ref_map.get(lang)) * 0.6))
        params["turns"] = tparams
        specs.append({"seed": seed, "seq": seq, "source_id": sid, "src_lang": src, "tgt_lang": tgt,
                      "instruction_lang": instr, "n_turns": n_turns, "interaction_types": types, "params": params})
        if progress is not None and len(specs) % 1000 == 0:
            progress.update(1000)
    return specs


def _mix_counts(specs: Sequence[dict[str, Any]]) -> dict[str, Counter]:
    """How many of ``specs`` fall in each category of each mix dimension."""
    counts: dict[str, Counter] = {"pairs": Counter(), "instruction_langs": Counter(), "turns": Counter(),
                                  "interaction_types": Counter()}
    counts["pairs"].update(f"{s['src_lang']}-{s['tgt_lang']}" for s in specs)
    counts["instruction_langs"].update(s["instruction_lang"] for s in specs)
    counts["turns"].update(str(s["n_turns"]) for s in specs)
    counts["interaction_types"].update(t for s in specs for t in s["interaction_types"][1:])
    return counts


@dataclass
class ReplayResult:
    """What :func:`replay_split` did: the split's dialogues, the specs added, those already there,
    and the dialogues without a spec to replay (imported ones)."""

    split: str
    seed: int
    dialogues: int
    added: int
    existing: int
    without_spec: int


def replay_split(store: PlanStore, config: dict[str, Any], split: str = "test", seed: int = 0) -> ReplayResult:
    """``plan --from-split SPLIT``: a new pending spec for every dialogue that an export (with the
    config's split shares and seed) puts in ``split``, replaying its spec (source, languages,
    turns, interaction types and their parameters), so systems are compared (``simulate
    --compare``) on sentences no tuned model trained on. Replays do not count toward
    ``max_uses_per_source`` (reusing those sources is the point), are keyed by the dialogue they
    replay and ``seed`` (a re-run adds nothing twice; another seed replays again), and their
    dialogues are never exported."""
    from itcollect.kernel.splits import SPLITS, split_pass
    from itcollect.settings import settings

    if split not in SPLITS:
        raise InputError(f"unknown split {split!r} (one of {', '.join(SPLITS)})")
    if store.latest_filter_run() is None:
        raise InputError("no filter verdicts yet: the splits are the export's, over the dialogues the filter "
                         "kept; run 'itcollect filter' first")
    ecfg = settings(config).export
    split_by_id, _ = split_pass(store.iter_kept_keys(), ecfg.validation_share, ecfg.test_share, ecfg.split_seed)
    want = SPLITS.index(split)
    ids = sorted(did for did, k in split_by_id.items() if k == want)
    specs = store.specs_of_dialogues(ids)
    rows = []
    for did in ids:
        spec = specs.get(did)
        if spec is None:
            continue
        params = dict(spec["params"])
        params["replay"] = {"split": split, "dialogue": did, "spec": spec["id"]}
        rows.append({"seed": seed, "source_id": spec["source_id"], "src_lang": spec["src_lang"],
                     "tgt_lang": spec["tgt_lang"], "instruction_lang": spec["instruction_lang"],
                     "n_turns": spec["n_turns"], "interaction_types": spec["interaction_types"], "params": params,
                     "replay_of": did})
    added = store.add_replay_specs(rows)
    return ReplayResult(split, seed, len(ids), added, len(rows) - added, len(ids) - len(rows))


def realised_mix(specs: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Shares of each mix dimension over ``specs`` (for checks and stats)."""
    dims = _mix_counts(specs)
    constrained = sum(bool(s["params"].get("must_include")) for s in specs)
    out = {k: {c: n / max(1, sum(v.values())) for c, n in v.items()} for k, v in dims.items()}
    out["must_include_share"] = {"yes": constrained / max(1, len(specs))}
    return out


__all__ = ["plan_specs", "PlanResult", "realised_mix", "term_candidates", "BLOCK", "FIRST_TURN_VARIANTS"]
