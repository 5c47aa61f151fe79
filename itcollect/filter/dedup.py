"""Exact and near-duplicate detection (MinHash LSH) over user requests and whole dialogues.

Signatures follow datasketch's ``affine32`` MinHash scheme exactly (its permutations for the seed,
its MurmurHash3 pre-mix), so ``datasketch.MinHash(hashvalues=sig, permutations=...)`` reproduces
them and its Jaccard estimate is ours; the band/row split comes from datasketch's optimiser. What
is ours is the batching: shingle hashes of a thousand dialogues go through the permutations as one
numpy operation, and bands are bucketed with ``numpy.unique`` instead of datasketch's per-key
Python insert (13 s for 160K keys, measured, against well under a second here).

Shingles are token 3-grams; a token is a word (lower-cased letters/digits) or a single Han
character, so the same code serves Chinese and the Latin-script languages.

Which dialogue of a cluster survives (:func:`keep_key`): human over simulated over imported, then
more user turns, then earlier creation, then the smaller id (deterministic).
"""

from __future__ import annotations

import functools
import hashlib
import zlib
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any

import numpy as np

from .tokens import tokenize

_ORIGIN_RANK = {"human": 0, "simulated": 1, "imported": 2}
SHINGLE = 3
_PAD = ["\x00", "\x01", "\x02"]
_P1, _P2, _P3 = np.uint32(0x9E3779B1), np.uint32(0x85EBCA77), np.uint32(0xC2B2AE3D)


class _Vocab(dict):
    """token -> stable 32-bit hash (crc32), memoised."""

    def __missing__(self, key: str) -> int:
        v = zlib.crc32(key.encode("utf-8"))
        self[key] = v
        return v


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


def affine32_permutations(num_perm: int, seed: int) -> np.ndarray:
    """``datasketch.MinHash(num_perm, seed, scheme="affine32").permutations`` (odd ``a``, any ``b``,
    drawn the same way from the same generator), without importing datasketch: it imports scipy
    (~0.8 s), which the filter only needs for :func:`lsh_params`."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return np.array([a, b])


class MinHasher:
    """Batched MinHash signatures (datasketch ``affine32`` scheme) of token 3-gram shingles."""

    def __init__(self, num_perm: int = 64, seed: int = 1, shingle: int = SHINGLE) -> None:
        if shingle not in (1, 2, 3):
            raise ValueError("shingle must be 1, 2 or 3 tokens")
        self.shingle = shingle
        self.num_perm = num_perm
        self.seed = seed
        self.permutations = affine32_permutations(num_perm, seed)
        self.a = self.permutations[0][:, None]
        self.b = self.permutations[1][:, None]
        self.vocab = _Vocab()
        self._pad_ids = np.array([self.vocab[p] for p in _PAD[:shingle]], dtype=np.uint32)

    def _tokens(self, text: str) -> list[str]:
        toks = tokenize(text.lower())
        if len(toks) < self.shingle:  # pad short texts so every text has at least one shingle
            toks += _PAD[:self.shingle - len(toks)]
        return toks

    def shingle_hashes(self, text: str) -> np.ndarray:
        """uint32 hash of each token 3-gram of one text (the values :meth:`signatures` uses)."""
        ids = np.fromiter(map(self.vocab.__getitem__, self._tokens(text)), dtype=np.uint32)
        return self._combine(ids)

    def _combine(self, ids: np.ndarray) -> np.ndarray:
        """Hash of each run of ``shingle`` consecutive token hashes."""
        k = self.shingle
        with np.errstate(over="ignore"):
            if k == 1:
                return ids * _P1
            if k == 2:
                return ids[:-1] * _P1 + ids[1:] * _P2
            return ids[:-2] * _P1 + ids[1:-1] * _P2 + ids[2:] * _P3

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), num_perm) uint32 signatures, computed for the whole batch at once: all
        tokens are hashed in one pass, shingles that would straddle two texts are skipped."""
        return self.signatures_of_tokens([tokenize(t.lower()) for t in texts])

    def token_ids(self, tokens: Iterable[str], count: int) -> np.ndarray:
        """The 32-bit hash of each of ``count`` tokens (what shingles are made of)."""
        return np.fromiter(map(self.vocab.__getitem__, tokens), dtype=np.uint32, count=count)

    def signatures_of_tokens(self, token_lists: Sequence[list[str]]) -> np.ndarray:
        """:meth:`signatures` of texts already tokenised (lower-cased, by the same tokenizer)."""
        lens = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
        return self.signatures_of_ids(self.token_ids(chain.from_iterable(token_lists), int(lens.sum())), lens)

    def signatures_of_ids(self, ids: np.ndarray, lens: np.ndarray) -> np.ndarray:
        """:meth:`signatures_of_tokens` of texts given as :meth:`token_ids` of all their tokens, one
        text after the other, and the number of tokens of each (``lens``). The filter hashes each
        token of a page once and takes both the requests and the whole dialogues from that."""
        if not len(lens):
            return np.zeros((0, self.num_perm), dtype=np.uint32)
        k = self.shingle
        lens = np.asarray(lens, dtype=np.int64)
        short = np.flatnonzero(lens < k)
        if len(short):  # pad short texts as _tokens does, so every text has at least one shingle
            npad = k - lens[short]
            which = np.arange(int(npad.sum())) - np.repeat(np.cumsum(npad) - npad, npad)  # 0.. per text
            ids = np.insert(ids, np.repeat(np.cumsum(lens)[short], npad), self._pad_ids[which])
            lens = np.maximum(lens, k)
        sh = self._combine(ids)
        starts = np.zeros(len(lens), dtype=np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        counts = lens - (k - 1)
        seg = np.zeros(len(lens), dtype=np.int64)
        np.cumsum(counts[:-1], out=seg[1:])
        idx = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(seg, counts) + np.repeat(starts, counts)
        hv = _fmix32(sh[idx])
        out = np.empty((len(lens), self.num_perm), dtype=np.uint32)
        buf = np.empty_like(hv)
        # one permutation at a time: a vector that stays in cache instead of a (num_perm x shingles)
        # matrix that does not (measured 2.5x faster at 200K shingles)
        with np.errstate(over="ignore"):
            for p in range(self.num_perm):
                np.multiply(hv, self.a[p, 0], out=buf)
                buf += self.b[p, 0]  # wraps mod 2^32
                out[:, p] = np.minimum.reduceat(buf, seg)
        return out

    def datasketch_minhash(self, signature: np.ndarray):
        """The equivalent ``datasketch.MinHash`` (for checks and interoperability)."""
        from datasketch import MinHash

        return MinHash(num_perm=self.num_perm, hashvalues=signature, permutations=self.permutations,
                       scheme="affine32")


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h.astype(np.uint32, copy=True)
    with np.errstate(over="ignore"):
        h ^= h >> np.uint32(16)
        h *= np.uint32(0x85EBCA6B)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0xC2B2AE35)
        h ^= h >> np.uint32(16)
    return h


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


def exact_groups(keys: Iterable[str]) -> list[int]:
    """Label per row: the first row index with the same exact key."""
    first: dict[str, int] = {}
    return [first.setdefault(k, i) for i, k in enumerate(keys)]
