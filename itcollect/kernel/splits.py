"""Train / validation / test: assigned per source sentence, stratified by pair and instruction
language, so no source sentence appears in two splits.

The one assignment of the export's splits (``export``) and of ``plan --from-split`` (which replays
a split's dialogues as new specs): both pass the store's kept dialogues
(the store's ``iter_kept_keys()``) to :func:`split_pass`, which reads only those rows.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable

from itcollect.kernel.checks import normalize_for_compare

#: A kept dialogue as :func:`split_pass` reads it: (rowid, dialogue id, source id, source text,
#: source language, target language, instruction language).
KeptKey = tuple[int, str, "str | None", "str | None", "str | None", "str | None", "str | None"]

SPLITS = ("train", "validation", "test")


def group_key_of(did: str, source_id: str | None, source_text: str | None) -> str:
    """The group a dialogue is split with: its source sentence (by id, else by its normalised
    text), else the dialogue alone."""
    if source_id:
        return "src:" + source_id
    if source_text:
        return "txt:" + hashlib.sha1(normalize_for_compare(source_text).encode("utf-8")).hexdigest()[:20]
    return "dlg:" + did


def stratum(src: str | None, tgt: str | None, instr: str | None) -> str:
    return f"{src or '?'}-{tgt or '?'}|{instr or '?'}"


def assign_splits(groups: dict[str, Counter | str], validation_share: float, test_share: float,
                  seed: int = 0) -> dict[str, str]:
    """group key -> split. Groups are visited in a seeded pseudo-random order; a group goes to
    validation (then test) while its main stratum is below that split's quota, else to train.

    A group's strata are counted in a ``Counter``, or given as the stratum itself when the group is
    one dialogue (nearly every group: no ``Counter`` to build and rank for each, ~1.5 s at 160K).
    """
    size: dict[str, int] = {}
    for strata in groups.values():
        if isinstance(strata, str):
            size[strata] = size.get(strata, 0) + 1
        else:
            for s, n in strata.items():
                size[s] = size.get(s, 0) + n
    quota = {s: {"validation": n * validation_share, "test": n * test_share} for s, n in size.items()}
    filled: dict[str, dict[str, int]] = {s: {"train": 0, "validation": 0, "test": 0} for s in size}
    prefix = f"{seed}:".encode()
    blake2b, from_bytes = hashlib.blake2b, int.from_bytes  # the loop runs once per group

    def order(key: str) -> float:  # a seeded hash of the key in [0, 1)
        return from_bytes(blake2b(prefix + key.encode(), digest_size=8).digest(), "big") / 2 ** 64

    out: dict[str, str] = {}
    for key in sorted(groups, key=order):
        strata = groups[key]
        if isinstance(strata, str):
            main, n = strata, 1
        else:
            main = strata.most_common(1)[0][0]
            n = sum(strata.values())
        split = "train"
        for cand in ("validation", "test"):
            if filled[main][cand] + n <= quota[main][cand] + 0.5:
                split = cand
                break
        filled[main][split] += n
        out[key] = split
    return out


def split_pass(kept: Iterable[KeptKey], validation_share: float, test_share: float,
               seed: int) -> tuple[dict[str, int], Counter]:
    """The split index of every kept dialogue (``kept``: the store's ``iter_kept_keys()``), by its
    source group, and the split sizes."""
    groups: dict[str, Counter | str] = {}  # a group of one dialogue holds its stratum, see assign_splits
    ids: list[str] = []
    keys: list[str] = []
    for _rowid, did, sid, stext, src, tgt, instr in kept:
        key = group_key_of(did, sid, stext)
        s = stratum(src, tgt, instr)
        have = groups.get(key)
        if have is None:
            groups[key] = s
        else:  # a second dialogue of the group
            if isinstance(have, str):
                have = groups[key] = Counter({have: 1})
            have[s] += 1
        ids.append(did)
        keys.append(key)
    split_of = assign_splits(groups, validation_share, test_share, seed)
    del groups
    index = {s: i for i, s in enumerate(SPLITS)}
    split_by_id = {did: index[split_of[key]] for did, key in zip(ids, keys)}
    return split_by_id, Counter(SPLITS[i] for i in split_by_id.values())
