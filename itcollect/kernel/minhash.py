"""MinHash signatures of token shingles, batched, in datasketch's ``affine32`` scheme exactly (its
permutations for the seed, its MurmurHash3 pre-mix), so ``datasketch.MinHash(hashvalues=sig,
permutations=...)`` reproduces them. Used by the filter's near-duplicate detection and by stats'
request diversity."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from itertools import chain

import numpy as np

from itcollect.kernel.text import tokenize

SHINGLE = 3
_PAD = ["\x00", "\x01", "\x02"]
_P1, _P2, _P3 = np.uint32(0x9E3779B1), np.uint32(0x85EBCA77), np.uint32(0xC2B2AE3D)


class _Vocab(dict):
    """token -> stable 32-bit hash (crc32), memoised."""

    def __missing__(self, key: str) -> int:
        v = zlib.crc32(key.encode("utf-8"))
        self[key] = v
        return v


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
