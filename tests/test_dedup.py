"""Exact and near-duplicate detection: signatures agree with datasketch, paraphrases cluster,
distinct dialogues do not, and the documented keep rule decides which one survives."""

from __future__ import annotations

import numpy as np
from datasketch import MinHash

from itcollect.filter import run_filter
from itcollect.filter.dedup import keep_key, lsh_params, near_duplicate_groups
from itcollect.kernel.minhash import MinHasher

from .test_filter import add_dialogue, en_dialogue, zh_dialogue


def test_signatures_are_datasketch_minhashes():
    hasher = MinHasher(64)
    texts = ["The central bank raised interest rates again on Tuesday.", "央行周二再次上调利率。", "hi", ""]
    sigs = hasher.signatures(texts)
    for text, sig in zip(texts, sigs):
        m = MinHash(num_perm=64, seed=1, scheme="affine32", hashfunc=int)
        m.update_batch(hasher.shingle_hashes(text).tolist())
        assert np.array_equal(m.hashvalues, sig)
    a, b = hasher.datasketch_minhash(sigs[0]), hasher.datasketch_minhash(sigs[1])
    assert a.jaccard(a) == 1.0 and a.jaccard(b) < 0.2
    bands, rows = lsh_params(0.8, 64)
    assert bands * rows <= 64


def _words(rng, n):
    vocab = [f"w{i}" for i in range(5000)]
    return [vocab[j] for j in rng.integers(0, len(vocab), n)]


def test_near_duplicate_groups_threshold():
    rng = np.random.default_rng(0)
    hasher = MinHasher(128)
    base = _words(rng, 300)
    near = list(base)
    near[150] = "changed"  # one word of 300: Jaccard of 3-gram shingles ~0.98
    far = base[:100] + _words(rng, 200)  # a third shared: Jaccard ~0.2
    other = _words(rng, 300)
    sigs = hasher.signatures([" ".join(x) for x in (base, near, far, other)])
    labels = near_duplicate_groups(sigs, 0.8)
    assert labels[0] == labels[1]
    assert len({labels[0], labels[2], labels[3]}) == 3


def test_near_duplicate_requests_cluster_and_distinct_do_not(workspace):
    store = workspace.store
    long_req = ("Please rewrite the translation in a more formal register, keep every number exactly as it is, "
                "use the official names of the institutions, and avoid any colloquial words or abbreviations "
                "so that it reads like a government press release published in a national newspaper.")
    a = en_dialogue(1)
    a["turns"][2] = ("user", long_req, "style")
    b = en_dialogue(1)  # the same requests, paraphrased by one word, different answers
    b["turns"][2] = ("user", long_req.replace("national newspaper", "national daily"), "style")
    b["turns"][1] = ("assistant", "市议会于周二批准了三百万欧元的公共住房预算。", "translate")
    b["turns"][3] = ("assistant", "市议会已于周二正式批准三百万欧元公共住房预算案。", "style")
    c = zh_dialogue(7)  # unrelated
    d = en_dialogue(9)  # same template, different city and number: distinct requests
    d["turns"][2] = ("user", long_req, "style")
    ida = add_dialogue(store, a, created_at_order=1)  # the earlier one is kept
    idb = add_dialogue(store, b, created_at_order=2)
    idc = add_dialogue(store, c)
    idd = add_dialogue(store, d)
    run_filter(store, workspace.config)
    va, vb, vc, vd = (store.get_verdict(x) for x in (ida, idb, idc, idd))
    assert va["kept"] and vc["kept"] and vd["kept"]
    assert not vb["kept"] and vb["reasons"] == ["near_duplicate_requests"]
    # the cluster id (the kept dialogue's id) is stored on both members
    assert vb["cluster_id"] == ida and va["cluster_id"] == ida
    assert vc["cluster_id"] is None
    totals = store.filter_totals()
    assert totals["reasons"] == {"near_duplicate_requests": 1}
    # with near-dup detection off, both stay
    run_filter(store, workspace.config, near_dup=False)
    assert store.get_verdict(idb)["kept"]


def test_exact_duplicates_keep_rule(workspace):
    store = workspace.store
    spec = zh_dialogue(3)
    shouty = dict(spec)
    shouty["turns"] = [(r, c.upper() + "  ", t) for r, c, t in spec["turns"]]  # same after normalisation
    imported = add_dialogue(store, spec, origin="imported")
    simulated = add_dialogue(store, shouty, origin="simulated")
    human = add_dialogue(store, spec, origin="human")
    run_filter(store, workspace.config)
    assert store.get_verdict(human)["kept"]
    for did in (imported, simulated):
        v = store.get_verdict(did)
        assert not v["kept"] and v["reasons"] == ["duplicate"] and v["detail"]["clusters"]["exact"] == human


def test_keep_rule_order():
    assert keep_key("human", 2, "2024", "b") < keep_key("simulated", 5, "2023", "a")
    assert keep_key("simulated", 5, "2024", "b") < keep_key("simulated", 3, "2023", "a")
    assert keep_key("simulated", 3, "2023", "b") < keep_key("simulated", 3, "2024", "a")
    assert keep_key("simulated", 3, "2024", "a") < keep_key("imported", 3, "2024", "a")


def test_a_dropped_copy_does_not_displace_a_good_one(workspace):
    store = workspace.store
    good = en_dialogue(4)
    broken = en_dialogue(4)
    broken["turns"][3] = ("assistant", "I'm sorry, but I can't help with that.", "style")
    id_broken = add_dialogue(store, broken, origin="human")  # preferred origin, but it fails a rule
    id_good = add_dialogue(store, good, origin="imported")
    run_filter(store, workspace.config)
    assert store.get_verdict(id_good)["kept"]
    reasons = store.get_verdict(id_broken)["reasons"]
    assert "refusal" in reasons and "duplicate" not in reasons


def test_parallel_pages_give_the_same_verdicts(workspace):
    store = workspace.store
    ids = [add_dialogue(store, en_dialogue(k)) for k in range(6)]
    ids += [add_dialogue(store, zh_dialogue(k)) for k in range(6)]
    ids.append(add_dialogue(store, en_dialogue(2)))  # an exact duplicate across pages
    one = run_filter(store, workspace.config, workers=1, page_size=4)
    first = {i: store.get_verdict(i)["reasons"] for i in ids}
    two = run_filter(store, workspace.config, workers=2, page_size=4)
    second = {i: store.get_verdict(i)["reasons"] for i in ids}
    assert first == second and one.kept == two.kept and one.reasons == two.reasons
    assert second[ids[-1]] == ["duplicate"]


def test_signatures_of_ids_equal_signatures_of_tokens_for_every_length():
    rng = np.random.default_rng(3)
    for shingle in (1, 2, 3):
        hasher = MinHasher(16, shingle=shingle)
        lists = [_words(rng, int(n)) for n in rng.integers(0, 6, 200)] + [[], ["a"], ["a", "b"]]
        expected = hasher.signatures_of_tokens(lists)
        # what the filter does: every token hashed once, texts one after the other
        flat = [w for x in lists for w in x]
        got = hasher.signatures_of_ids(hasher.token_ids(flat, len(flat)), np.array([len(x) for x in lists]))
        assert np.array_equal(got, expected)
        # padding makes a short text equal to itself, never to an empty one
        assert not np.array_equal(expected[-3], expected[-2])
    assert MinHasher(8).signatures_of_ids(np.zeros(0, np.uint32), np.zeros(0, np.int64)).shape == (0, 8)


def test_page_signatures_equal_those_of_concatenated_turns():
    from itcollect.filter.rules import thresholds
    from itcollect.filter.run import _Judge

    judge = _Judge(None, thresholds(), ("en", "zh"), "lingua")
    rng = np.random.default_rng(5)
    dialogues = []  # per dialogue: (tokens, is_user) of each non-system turn; some empty, some short
    for n_turns in [0, 1, 2, 4, 3, 0, 2]:
        dialogues.append([(_words(rng, int(rng.integers(0, 4))), k % 2 == 0) for k in range(n_turns)])
    req, dia = judge._signatures([t for d in dialogues for t, _ in d], [u for d in dialogues for _, u in d],
                                 [len(d) for d in dialogues])
    hasher = judge.hasher
    assert np.array_equal(req, hasher.signatures_of_tokens([[w for t, u in d if u for w in t] for d in dialogues]))
    assert np.array_equal(dia, hasher.signatures_of_tokens([[w for t, _ in d for w in t] for d in dialogues]))


def test_permutations_are_datasketchs_and_roots_are_finds():
    from itcollect.filter.dedup import _roots, _UnionFind
    from itcollect.kernel.minhash import affine32_permutations

    for num_perm, seed in ((64, 1), (128, 7), (1, 0)):
        expected = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
        got = affine32_permutations(num_perm, seed)
        assert got.dtype == expected.dtype and np.array_equal(got, expected)
    rng = np.random.default_rng(4)
    for n in (1, 2, 50, 500):
        uf = _UnionFind(n)
        for a, b in rng.integers(0, n, (n, 2)):
            uf.union(int(a), int(b))
        parent = uf.parent.copy()  # before any find compresses paths further
        assert _roots(parent).tolist() == [uf.find(i) for i in range(n)]


def _near_duplicate_groups_by_full_sort(signatures, threshold):
    """The previous implementation (every band's byte keys sorted), as the reference."""
    from itcollect.filter.dedup import _roots, _UnionFind, _verify_bucket

    n, num_perm = signatures.shape
    uf = _UnionFind(n)
    if n < 2:
        return uf.parent.copy()
    bands, rows = lsh_params(threshold, num_perm)
    for b in range(bands):
        block = np.ascontiguousarray(signatures[:, b * rows:(b + 1) * rows])
        keys = block.view(np.dtype((np.void, block.dtype.itemsize * rows))).ravel()
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        multi = np.flatnonzero(counts > 1)
        if not len(multi):
            continue
        idx = np.flatnonzero(np.isin(inverse, multi))
        idx = idx[np.argsort(inverse[idx], kind="stable")]
        for g in np.split(idx, np.flatnonzero(np.diff(inverse[idx])) + 1):
            _verify_bucket(g, signatures, threshold, uf)
    return _roots(uf.parent)


def test_near_duplicate_groups_equal_the_full_sort_of_every_band():
    from itcollect.filter.dedup import _shared_hash_rows

    rng = np.random.default_rng(6)
    for n, high, threshold in ((3000, 3, 0.8), (2000, 2, 0.5), (500, 1000, 0.8), (40, 2, 0.9), (1, 5, 0.8)):
        sigs = rng.integers(0, high, (n, 64)).astype(np.uint32)
        sigs[n // 2:] = sigs[:n - n // 2]  # exact copies, then some perturbed ones
        sigs[: n // 4, ::7] += 1
        expected = _near_duplicate_groups_by_full_sort(sigs, threshold)
        assert np.array_equal(near_duplicate_groups(sigs, threshold), expected)
    block = rng.integers(0, 4, (5000, 3)).astype(np.uint32)
    shared = set(_shared_hash_rows(block).tolist())
    _, inverse, counts = np.unique(block, axis=0, return_inverse=True, return_counts=True)
    assert {i for i, g in enumerate(inverse.ravel()) if counts[g] > 1} <= shared
