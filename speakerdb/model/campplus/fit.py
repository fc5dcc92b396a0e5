"""Fitting the campplus Matryoshka head: an ordered rotation of CAM++'s 192-D embedding
(``scripts/train_campplus_head.py`` runs it on a labelled corpus; ``head.py`` applies the
result)."""

from __future__ import annotations

import numpy as np


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float64)."""
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def fix_sign(v: np.ndarray) -> np.ndarray:
    """Deterministic column signs: the largest-magnitude entry of each column positive."""
    idx = np.argmax(np.abs(v), axis=0)
    s = np.sign(v[idx, np.arange(v.shape[1])])
    s[s == 0] = 1
    return v * s


def eig_desc(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues of the symmetric part of ``a``, largest first, and their eigenvectors as
    columns (signs by ``fix_sign``)."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    order = np.argsort(-w, kind="stable")
    return w[order], fix_sign(v[:, order])


def second_moment(x: np.ndarray, labels, weighting: str = "speaker") -> np.ndarray:
    """E[x x'] of the rows of ``x``: every row equal (``"row"``) or every class equal
    (``"speaker"``: the mean over classes of each class's own mean of x x')."""
    x = np.asarray(x, np.float64)
    if weighting == "row":
        return x.T @ x / len(x)
    labels = np.asarray(labels)
    classes = sorted(set(labels.tolist()))
    c = np.zeros((x.shape[1],) * 2)
    for k in classes:
        xk = x[labels == k]
        c += xk.T @ xk / len(xk)
    return c / len(classes)


def ordered_rotation(x: np.ndarray, labels, mean_dir: np.ndarray | None,
                     weighting: str = "speaker") -> np.ndarray:
    """(192, 192) orthogonal R whose columns are the eigenvectors of the second moment of the
    unit rows ``x`` (weighted per ``weighting``), largest first, within the complement of
    ``mean_dir``; ``mean_dir`` (normalised) is the last column. ``mean_dir=None``: plain
    uncentred PCA ordering."""
    x = unit(x)
    d = x.shape[1]
    c = second_moment(x, labels, weighting)
    if mean_dir is None:
        return eig_desc(c)[1]
    q = unit(mean_dir)[:, None]
    basis, _ = np.linalg.qr(np.concatenate([q, np.eye(d)], axis=1))
    b = basis[:, 1:d]                                 # orthonormal basis of q's complement
    _, v = eig_desc(b.T @ c @ b)
    sign = 1.0 if q.sum() >= 0 else -1.0
    return np.concatenate([fix_sign(b @ v), sign * q], axis=1)


def fit_head(clean_emb: np.ndarray, clean_labels, aug_emb: np.ndarray, aug_labels
             ) -> np.ndarray:
    """The shipped head: (256, 192) float64 weight with raw = weight @ e.

    * Rows 0..191: R' with R = ``ordered_rotation`` of the unit CAM++ embeddings of the clean
      files and of their degraded clips (``fit_clips``), every speaker weighted equally, with
      the direction of the clean files' mean last. Short prefixes keep the directions along
      which speakers (and their degraded queries) vary most; the common mean direction is a
      near-constant offset to every cosine, so it is left to the full 192-D.
    * Rows 192..255: zero, so the 256-D prefix equals the 192-D one, i.e. CAM++'s own cosine.
      (Extra dimensions fitted on the 1024-D statistics CAM++'s dense layer discards gained
      ~2-3 % EER on average in cross-validation but were worse than CAM++ on some folds;
      see bench/mrl_head_eer.py.)
    """
    clean = unit(clean_emb)
    x = np.concatenate([clean, unit(aug_emb)])
    labels = np.concatenate([np.asarray(clean_labels), np.asarray(aug_labels)])
    r = ordered_rotation(x, labels, mean_dir=clean.mean(0), weighting="speaker")
    return np.concatenate([r.T, np.zeros((256 - r.shape[1], r.shape[0]))])
