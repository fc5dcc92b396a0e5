#!/usr/bin/env python
"""Per-dimension EER of the campplus Matryoshka head, by speaker-disjoint cross-validation on
../shared/data/speech-dev (63 speakers, 293 files).

    python bench/mrl_head_eer.py [--data DIR] [--folds 2,3] [--seeds 0,1,2,3,4] [--reps 3]

For every split of the speakers into K folds (K in --folds, one split per seed), each method is
fitted on the other folds' speakers only (their files and degraded clips, babble taken from
those speakers too) and scored on the held-out fold's speakers:

* degraded: enrollment = a clean whole file; test = a 1 s crop of another file mixed with the
  babble of 3 other held-out speakers at 5 dB SNR (``train_campplus_head.degrade_test``,
  --reps crops per file, seeded); all ordered target pairs, all ordered non-target pairs.
* clean: whole file against whole file, all unordered pairs.
* strict: target pairs whose files come from one original recording (manifest ``source``
  before `` [split``) are left out; non-targets unchanged.

EER is exact (sorted scores, interpolated at the crossing), computed per fold; the table gives
the mean and standard deviation over all folds and seeds, the ratio of the mean to CAM++'s own
192-D EER, and the range of the per-fold (paired) ratios. Methods:

  CAM++ first-k   CAM++'s embedding itself; at 192 the reference, at 64/128 naive truncation
  PCA centred     PCA of the unit clean training embeddings, mean removed (sklearn-style)
  PCA             the same, uncentred (a rotation: 192-D equals CAM++)
  LDA-rotation    rotation ordered by nested trace ratio of between/within-speaker scatter
  shipped         ``fit_head``: speaker-weighted PCA rotation of clean + degraded clips,
                  mean direction last; 256 = 192 (what head.npz holds, refitted per fold)
  +null extras    shipped 192 + 64 dims from the null space of CAM++'s dense layer (LDA,
                  0.2 relative norm): the 256-D alternative that was not shipped

CAM++ statistics are cached per batch (--cache, default <speakerdb cache>/mrl-bench, ~200 MB
for the defaults), so a rerun takes about a minute; a cold run pushes ~14 h of audio through
CAM++ (~15-20 min on 2 CPU cores). --folds 6 --seeds 0,1,2 gives the learning-curve point with
~52 fitting speakers.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from speakerdb.eval.metrics import eer  # noqa: E402
from speakerdb.model.campplus.fit import eig_desc, fix_sign, fit_head, ordered_rotation, unit  # noqa: E402,E501

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "speech-dev"
DIMS = (64, 128, 192, 256)


def _trainer():
    spec = importlib.util.spec_from_file_location(
        "train_campplus_head", ROOT / "scripts" / "train_campplus_head.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


T = None  # the trainer module, loaded in main()


# ------------------------------------------------------------------------------- alternatives
# (evaluated here, not shipped)


def lda_rotation(x: np.ndarray, labels, blocks=(64, 64, 64)) -> np.ndarray:
    """Alternative evaluated in the benchmark (not shipped): a rotation whose first 64, 128
    columns solve the trace-ratio problem max tr(U'SbU)/tr(U'SwU) (between- vs within-speaker
    scatter of the unit rows) in the complement of the columns before them."""
    x = unit(x)
    labels = np.asarray(labels)
    classes = sorted(set(labels.tolist()))
    means = np.array([x[labels == k].mean(0) for k in classes])
    sw = sum(np.cov(x[labels == k].T, bias=True) for k in classes) / len(classes)
    db = means - means.mean(0)
    sb = db.T @ db / len(classes)
    d = x.shape[1]
    basis, cols = np.eye(d), []
    for k in blocks:
        b, w = basis.T @ sb @ basis, basis.T @ sw @ basis
        k = min(k, basis.shape[1])
        lam = 0.0
        for _ in range(100):           # Wang et al. (2007) trace-ratio iteration
            u = eig_desc(b - lam * w)[1][:, :k]
            new = float(np.trace(u.T @ b @ u) / np.trace(u.T @ w @ u))
            if abs(new - lam) <= 1e-12 * max(1.0, abs(new)):
                break
            lam = new
        cols.append(basis @ u)
        full = np.concatenate(cols, axis=1)
        basis = eig_desc(np.eye(d) - full @ full.T)[1][:, : d - full.shape[1]]
    if basis.shape[1]:
        cols.append(basis)
    return fix_sign(np.concatenate(cols, axis=1))


def null_extras(stats: np.ndarray, labels, dense_w: np.ndarray, emb_rms: float,
                alpha: float = 0.2, k: int = 64, reg: float = 0.1):
    """Alternative evaluated in the benchmark (not shipped): ``k`` LDA directions of the part
    of the 1024-D statistics in the null space of CAM++'s dense layer, scaled so their RMS
    norm is ``alpha`` times ``emb_rms``. Returns f(stats) -> (N, k)."""
    s = np.asarray(stats, np.float64)
    p = np.eye(s.shape[1]) - np.linalg.pinv(dense_w) @ dense_w
    r = s @ p.T
    mu = r.mean(0)
    r = r - mu
    labels = np.asarray(labels)
    classes = sorted(set(labels.tolist()))
    means = np.array([r[labels == c].mean(0) for c in classes])
    sw = sum(np.cov(r[labels == c].T, bias=True) for c in classes) / len(classes)
    sw = sw + reg * np.trace(sw) / len(sw) * np.eye(len(sw))
    db = means - means.mean(0)
    sb = db.T @ db / len(classes)
    lw, vw = np.linalg.eigh(sw)
    white = vw / np.sqrt(lw)
    a = white @ eig_desc(white.T @ sb @ white)[1][:, :k]
    scale = alpha * emb_rms / np.sqrt(np.mean(np.sum((r @ a) ** 2, axis=1)))
    return lambda st: scale * ((np.asarray(st, np.float64) @ p.T - mu) @ a)



def prefix(x: np.ndarray, d: int) -> np.ndarray:
    return unit(x[..., :d])


# ------------------------------------------------------------------------------- methods
# each: fit(fit_data) -> apply(stats (N,1024), emb (N,192)) -> (N, D) raw vectors


def m_campp(fd):
    return lambda s, e: e


def m_pca_centred(fd):
    x = unit(fd["clean_emb"])
    mu = x.mean(0)
    r = eig_desc(np.cov(x.T))[1]
    return lambda s, e: (unit(e) - mu) @ r


def m_pca(fd):
    r = ordered_rotation(fd["clean_emb"], fd["clean_spk"], None, weighting="row")
    return lambda s, e: e @ r


def m_lda(fd):
    x = np.concatenate([fd["clean_emb"], fd["aug_emb"]])
    r = lda_rotation(x, np.concatenate([fd["clean_spk"], fd["aug_spk"]]))
    return lambda s, e: e @ r


def m_shipped(fd):
    w = fit_head(fd["clean_emb"], fd["clean_spk"], fd["aug_emb"], fd["aug_spk"])
    w = w.astype(np.float32).astype(np.float64)
    return lambda s, e: e @ w.T


def m_null(fd):
    w = fit_head(fd["clean_emb"], fd["clean_spk"], fd["aug_emb"], fd["aug_spk"])[:192]
    stats = np.concatenate([fd["clean_stats"], fd["aug_stats"]])
    emb = np.concatenate([fd["clean_emb"], fd["aug_emb"]])
    rms = float(np.sqrt(np.mean(np.sum(emb.astype(np.float64) ** 2, axis=1))))
    extra = null_extras(stats, np.concatenate([fd["clean_spk"], fd["aug_spk"]]),
                          fd["dense_w"], rms, alpha=0.2)
    return lambda s, e: np.concatenate([e @ w.T, extra(s)], axis=1)


METHODS = {  # name: (fit, dims reported)
    "CAM++ first-k": (m_campp, (64, 128, 192)),
    "PCA centred": (m_pca_centred, (64, 128, 192)),
    "PCA": (m_pca, (64, 128, 192)),
    "LDA-rotation": (m_lda, (64, 128, 192)),
    "shipped": (m_shipped, DIMS),
    "+null extras": (m_null, (256,)),
}


# ------------------------------------------------------------------------------- scoring


def fold_eers(enr, tst, clean, spk, rec, d):
    """(deg all, deg strict, clean all, clean strict) EERs at dimension d."""
    same = spk[:, None] == spk[None, :]
    srec = rec[:, None] == rec[None, :]
    n = len(spk)
    off = ~np.eye(n, dtype=bool)
    a = prefix(enr, d)
    tg, tgs, nt = [], [], []
    for r in range(tst.shape[0]):
        s = a @ prefix(tst[r], d).T
        tg.append(s[off & same])
        tgs.append(s[off & same & ~srec])
        nt.append(s[off & ~same])
    tg, tgs, nt = (np.concatenate(v) for v in (tg, tgs, nt))
    c = prefix(clean, d)
    s = c @ c.T
    up = np.triu(np.ones((n, n), bool), 1)
    ct, cts, cn = s[up & same], s[up & same & ~srec], s[up & ~same]
    out = (eer(tg, nt), eer(tgs, nt), eer(ct, cn), eer(cts, cn))
    counts = (len(tg), len(tgs), len(nt), len(ct), len(cts), len(cn))
    return out, counts


def main(argv=None) -> int:
    global T
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--folds", default="2,3", help="fold counts K, comma-separated")
    ap.add_argument("--seeds", default="0,1,2,3,4", help="one speaker split per seed and K")
    ap.add_argument("--reps", type=int, default=3, help="degraded test crops per file")
    ap.add_argument("--cache", help="CAM++ statistics cache (default <speakerdb cache>/"
                                    "mrl-bench)")
    args = ap.parse_args(argv)
    if not (args.data / "manifest.csv").is_file():
        print(f"SKIP: speech-dev not found at {args.data} (needs manifest.csv); "
              "pass --data DIR")
        return 0
    T = _trainer()
    from speakerdb.model.campplus.weights import WeightsUnavailable, cache_dir

    t0 = time.perf_counter()
    cache = Path(args.cache) if args.cache else cache_dir() / "mrl-bench"
    try:
        campp = T.Campp(cache=cache)
    except WeightsUnavailable as e:
        print(f"SKIP: CAM++ weights unavailable: {e}")
        return 0
    items = T.read_corpus(args.data)
    waves = [T.load_wave(it.path) for it in items]
    spk = np.array([it.speaker for it in items])
    rec = np.array([it.recording for it in items])
    n_max = int(T.MAX_SECONDS * T.SR)
    clean_stats = campp.pooled([w[:n_max] for w in waves]).astype(np.float64)
    clean_emb = campp.embed(clean_stats).astype(np.float64)
    dense_w, _ = campp.dense_affine()
    ks = [int(k) for k in args.folds.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"speech-dev: {len(items)} files, {len(set(spk))} speakers; folds K={ks}, "
          f"seeds {seeds}, {args.reps} degraded crops per test file; cache {cache}")

    res: dict[tuple[int, str, int], list] = {}
    counts: dict[int, list] = {}
    for k in ks:
        for seed in seeds:
            folds = T.speaker_folds(items, k, seed)
            for f in range(k):
                test = [i for i, it in enumerate(items) if folds[it.speaker] == f]
                train = [i for i, it in enumerate(items) if folds[it.speaker] != f]
                deg = np.stack([campp.pooled([T.degrade_test(i, items, waves, test, seed, rep=r)
                                              for i in test]) for r in range(args.reps)])
                clips, src = T.fit_clips(items, waves, train, seed)
                aug_stats = campp.pooled(clips).astype(np.float64)
                fd = {"clean_emb": clean_emb[train], "clean_stats": clean_stats[train],
                      "clean_spk": spk[train], "aug_stats": aug_stats,
                      "aug_emb": campp.embed(aug_stats).astype(np.float64),
                      "aug_spk": spk[src], "dense_w": dense_w}
                deg_emb = np.stack([campp.embed(x) for x in deg]).astype(np.float64)
                for name, (fit, dims) in METHODS.items():
                    apply = fit(fd)
                    enr = apply(clean_stats[test], clean_emb[test])
                    tst = np.stack([apply(deg[r].astype(np.float64), deg_emb[r])
                                    for r in range(args.reps)])
                    for d in dims:
                        e, cnt = fold_eers(enr, tst, enr, spk[test], rec[test], d)
                        res.setdefault((k, name, d), []).append(e)
                        if name == "CAM++ first-k" and d == 192:
                            counts.setdefault(k, []).append(cnt)
            print(f"  K={k} seed {seed} done ({time.perf_counter() - t0:.0f} s)", flush=True)

    for k in ks:
        c = np.array(counts[k])
        print(f"\n== K={k}: {len(seeds)} seeds x {k} folds; fitted on ~{63 * (k - 1) // k} "
              f"speakers, tested on ~{63 // k}. Trials per fold (mean): degraded "
              f"{c[:, 0].mean():.0f} target ({c[:, 1].mean():.0f} strict) / "
              f"{c[:, 2].mean():.0f} non-target; clean {c[:, 3].mean():.0f} "
              f"({c[:, 4].mean():.0f}) / {c[:, 5].mean():.0f}")
        ref = np.array(res[(k, "CAM++ first-k", 192)])
        print(f"{'method':14s} {'dim':>3s} | {'degraded all':>12s} {'strict':>12s} | "
              f"{'clean all':>10s} {'strict':>10s} | ratio to CAM++ 192 (degraded): "
              "all [fold range], strict [fold range]")
        for name, (_, dims) in METHODS.items():
            for d in dims:
                v = np.array(res[(k, name, d)])
                m, s = v.mean(0) * 100, v.std(0) * 100
                with np.errstate(divide="ignore", invalid="ignore"):
                    r = v / ref
                print(f"{name:14s} {d:3d} | {m[0]:5.2f} ±{s[0]:4.2f}  {m[1]:5.2f} ±{s[1]:4.2f} | "
                      f"{m[2]:4.2f} ±{s[2]:4.2f} {m[3]:4.2f} ±{s[3]:4.2f} | "
                      f"{m[0] / (ref[:, 0].mean() * 100):.3f} [{r[:, 0].min():.2f}-"
                      f"{r[:, 0].max():.2f}]  {m[1] / (ref[:, 1].mean() * 100):.3f} "
                      f"[{r[:, 1].min():.2f}-{r[:, 1].max():.2f}]")
        ship = {d: np.array(res[(k, "shipped", d)])[:, :2].mean(0) for d in DIMS}
        base = ref[:, :2].mean(0)
        print(f"bar (degraded, all/strict): 256-D / CAM++ 192 = {ship[256][0] / base[0]:.3f} / "
              f"{ship[256][1] / base[1]:.3f} (need <= 1); 64-D / CAM++ 192 = "
              f"{ship[64][0] / base[0]:.3f} / {ship[64][1] / base[1]:.3f} (need <= 1.25)")
    print(f"\n{time.perf_counter() - t0:.0f} s (CAM++ {campp.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
