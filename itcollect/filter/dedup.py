"""Exact and near-duplicate detection (MinHash LSH) over user requests and whole dialogues.

Signatures are :mod:`itcollect.kernel.minhash`'s (datasketch's ``affine32`` scheme exactly, batched:
shingle hashes of a thousand dialogues go through the permutations as one numpy operation), so
datasketch's Jaccard estimate is ours; the band/row split comes from datasketch's optimiser. Bands
are bucketed with ``numpy.unique`` instead of datasketch's per-key Python insert (13 s for 160K
keys, measured, against well under a second here).

Shingles are token 3-grams; a token is a word (lower-cased letters/digits) or a single Han
character, so the same code serves Chinese and the Latin-script languages.

Which dialogue of a cluster survives (:func:`keep_key`): human over simulated over imported, then
more user turns, then earlier creation, then the smaller id (deterministic).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np

from itcollect.kernel.text import tokenize

_ORIGIN_RANK = {"human": 0, "simulated": 1, "imported": 2}


def keep_key(origin: str | None, n_user_turns: int, created_at: str | None, dialogue_id: str) -> tuple:
    """Sort key of the documented keep rule: the smallest key in a cluster is kept."""
    return (_ORIGIN_RANK.get(origin or "", 3), -n_user_turns, created_at or "", dialogue_id)


def exact_key(turns: Sequence[dict[str, Any]], tokens: Sequence[list[str]] | None = None) -> str:
    """Hash of the normalised dialogue: role and lower-cased word/Han-character tokens of each turn
    (so case, spacing and punctuation do not matter)."""
    if tokens is None:
        tokens = [tokenize(t["content"].lower()) for t in turns]
    # one update with the whole text hashes the same bytes as an update per piece, with fewer calls
    text = "".join([f"{t['role']}\x1f{' '.join(toks)}\x1e" for t, toks in zip(turns, tokens)])
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


@functools.lru_cache(maxsize=16)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) minimising weighted false positives/negatives (datasketch's optimiser; cached,
    so the filter can compute it while its workers judge pages)."""
    from datasketch.lsh import _optimal_param

    return _optimal_param(threshold, num_perm, 0.5, 0.5)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, x: int) -> int:
        p = self.parent
        root = x
        while p[root] != root:
            root = p[root]
        while p[x] != root:
            p[x], x = root, p[x]
        return int(root)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def near_duplicate_groups(signatures: np.ndarray, threshold: float) -> np.ndarray:
    """Cluster label per row (the smallest row index of its cluster); rows are similar when their
    estimated Jaccard (share of equal signature values) reaches ``threshold``.

    Candidates come from LSH banding; each candidate is verified against its bucket's members
    already confirmed, so a bucket of n rows costs O(n) comparisons, not O(n^2).
    """
    n, num_perm = signatures.shape
    uf = _UnionFind(n)
    if n < 2:
        return uf.parent.copy()
    bands, rows = lsh_params(threshold, num_perm)
    for b in range(bands):
        block = np.ascontiguousarray(signatures[:, b * rows:(b + 1) * rows])
        # only rows whose band shares a 64-bit hash with another row can share the band: sorting
        # their (few) byte keys instead of all n (a sort of n byte strings: 0.08 s a band at 160K)
        cand = _shared_hash_rows(block)
        if not len(cand):
            continue
        sub = np.ascontiguousarray(block[cand])
        keys = sub.view(np.dtype((np.void, sub.dtype.itemsize * rows))).ravel()
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        multi = np.flatnonzero(counts > 1)
        if not len(multi):
            continue
        member_mask = np.isin(inverse, multi)
        idx = np.flatnonzero(member_mask)
        order = np.argsort(inverse[idx], kind="stable")
        idx = idx[order]
        # buckets in byte-key order, members ascending: the order of the full sort it replaces
        groups = np.split(cand[idx], np.flatnonzero(np.diff(inverse[idx])) + 1)
        for g in groups:
            _verify_bucket(g, signatures, threshold, uf)
    return _roots(uf.parent)


def _shared_hash_rows(block: np.ndarray) -> np.ndarray:
    """Ascending indices of the rows whose hash (of all their values) another row has too: every
    row equal to another is among them (a collision only adds a row that then stays alone)."""
    h = np.zeros(len(block), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(block.shape[1]):
            h *= np.uint64(0x9E3779B97F4A7C15)
            h ^= block[:, j].astype(np.uint64)
            h ^= h >> np.uint64(29)
    order = np.argsort(h, kind="stable")
    same = h[order[1:]] == h[order[:-1]]
    shared = np.zeros(len(block), dtype=bool)
    shared[1:] |= same
    shared[:-1] |= same
    return np.sort(order[shared])


def _roots(parent: np.ndarray) -> np.ndarray:
    """The root of every element (what ``find`` gives), by pointer jumping over the whole array."""
    while True:
        up = parent[parent]
        if np.array_equal(up, parent):
            return up
        parent = up


def _verify_bucket(members: np.ndarray, sig: np.ndarray, threshold: float, uf: _UnionFind) -> None:
    reps: list[int] = []
    for m in members.tolist():
        for r in reps:
            if uf.find(r) == uf.find(m):
                break
            if np.mean(sig[r] == sig[m]) >= threshold:
                uf.union(r, m)
                break
        else:
            reps.append(m)
            if len(reps) > 32:  # a bucket of many distinct rows: keep verification linear
                reps.pop(0)


def pick_kept(labels: Sequence[int] | np.ndarray, keys: Sequence[tuple]) -> dict[int, int]:
    """For each row, the row kept of its cluster (by the smallest keep key)."""
    best: dict[int, int] = {}
    for i, lab in enumerate(labels):
        lab = int(lab)
        j = best.get(lab)
        if j is None or keys[i] < keys[j]:
            best[lab] = i
    return {i: best[int(lab)] for i, lab in enumerate(labels)}


def exact_groups(keys: Iterable[Hashable]) -> list[int]:
    """Label per row: the first row index with the same exact key."""
    first: dict[Hashable, int] = {}
    return [first.setdefault(k, i) for i, k in enumerate(keys)]
