"""The Spectrum signal-to-noise score of one weight matrix, computed fast and checked.

Score, as published (Hartford et al., "Spectrum: Targeted Training on Signal to Noise Ratio"):
singular values S (descending), sigma = (q75(S) - q25(S)) / 1.349 with linearly interpolated
quantiles, beta = min(n,m) / max(n,m), eps = sigma * (1 + sqrt(beta)),
score = (sum of S > eps) / (sum of S <= eps) / S[0], the noise sum taken as 1 when no value is
<= eps (or when every such value is zero: values below the round-off floor
1000 * max(n,m) * 2^-52 * S[0] count as exact zeros, so a rank-deficient matrix gets a finite,
reproducible score). An all-zero matrix scores 0.

Speed: the singular values are the square roots of the eigenvalues of the smaller Gram matrix
(W W^T or W^T W) in float64; one matmul plus a symmetric eigensolve is several times cheaper than
an SVD, and on wide matrices (down_proj) far cheaper. Precision: eigenvalues of the Gram matrix
carry an absolute error of about max(n,m) * 2^-52 * S[0]^2, which is harmless for the large
singular values the sums are made of but not for tiny ones. After each Gram solve we bound the
error of every quantity the score uses (the two quantiles, eps, each value's side of eps, the two
sums) and recompute that one matrix with a float64 SVD when the bound exceeds 1e-7 relative
(a 10,000x margin on the 1e-3 agreement the tests demand).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EPS64 = 2.0**-52
IQR_TO_SIGMA = 1.349  # interquartile range of a standard normal
TRUST_REL = 1e-7  # largest tolerated bound on the score's relative error before falling back to SVD
# Singular values below ZERO_FLOOR * max(n,m) * eps * S[0] are round-off in any float64 method
# (two LAPACK SVDs disagree on them by their own size); they count as exact zeros so the score
# stays reproducible. The factor 1000 keeps values two SVDs place within 0.1% of each other apart.
ZERO_FLOOR = 1e3


@dataclass(frozen=True)
class MatrixScore:
    score: float
    method: str  # "gram" or "svd" (the fallback)
    s_max: float
    rank_cut: int  # how many singular values count as signal (> eps)


def _quantile(s_asc, q: float) -> tuple[float, int]:
    """Linear-interpolated quantile (numpy's default) of an ascending vector; also the upper index."""
    pos = q * (s_asc.shape[0] - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, s_asc.shape[0] - 1)
    a, b = float(s_asc[lo]), float(s_asc[hi])
    return a + (pos - lo) * (b - a), lo


def score_from_singular_values(s_desc, n: int, m: int, err=None) -> tuple[float, float, int]:
    """The score from descending singular values (float64 torch vector, any device).

    With `err` (per-value absolute error bounds, same order), also returns a bound on the score's
    relative error; infinity when some value may sit on the other side of eps.
    """
    import torch

    k = s_desc.shape[0]
    s1 = float(s_desc[0])
    if s1 <= 0.0:
        return 0.0, 0.0, 0
    floor = ZERO_FLOOR * max(n, m) * EPS64 * s1
    s_desc = torch.where(s_desc < floor, torch.zeros_like(s_desc), s_desc)
    s_asc = s_desc.flip(0)
    q75, i75 = _quantile(s_asc, 0.75)
    q25, i25 = _quantile(s_asc, 0.25)
    beta = min(n, m) / max(n, m)
    cut = (q75 - q25) / IQR_TO_SIGMA * (1.0 + math.sqrt(beta))
    signal_mask = s_desc > cut
    signal = float(s_desc[signal_mask].sum())
    noise = float(s_desc[~signal_mask].sum())
    n_signal = int(signal_mask.sum())
    noise_raw = noise
    if n_signal == k or noise == 0.0:
        noise = 1.0
    score = signal / noise / s1
    if err is None:
        return score, 0.0, n_signal
    # Sorted values move by at most the largest per-value error nearby (Weyl), and err grows as
    # values shrink, so the lower neighbour of each quantile bounds its error.
    e_asc = err.flip(0)
    e_cut = (float(e_asc[i75]) + float(e_asc[i25])) / IQR_TO_SIGMA * (1.0 + math.sqrt(beta))
    if bool(((s_desc - cut).abs() <= err + e_cut).any()):
        return score, math.inf, n_signal
    rel = float(err[0]) / s1 + (float(err[signal_mask].sum()) / signal if signal > 0.0 else 0.0)
    if n_signal < k:  # an all-zero noise part counts as "no noise" only if its zeros are exact
        e_noise = float(err[~signal_mask].sum())
        rel += e_noise / noise_raw if noise_raw > 0.0 else (math.inf if e_noise > 0.0 else 0.0)
    return score, rel, n_signal


def gram_singular_values(wd):
    """Descending singular values of a float64 matrix from its smaller Gram matrix, with error bounds.

    Returns `(s_desc, err)`: `err[i]` bounds |s_desc[i] - true value|.
    """
    import torch

    n, m = (int(x) for x in wd.shape)
    gram = wd @ wd.T if n <= m else wd.T @ wd
    lam = torch.linalg.eigvalsh(gram)  # ascending
    del gram
    lam_max = max(float(lam[-1]), 0.0)
    # Forming the Gram matrix (inner size max(n,m)) and the eigensolve each add about
    # size * eps * lam_max of absolute error to every eigenvalue; take the sum as the bound.
    tol = (max(n, m) + min(n, m)) * EPS64 * lam_max
    s_desc = lam.clamp_min(0.0).sqrt().flip(0)
    # |sqrt(a) - sqrt(b)| <= |a - b| / (sqrt(a) + sqrt(b)), and never more than sqrt(|a - b|).
    err = torch.minimum(torch.full_like(s_desc, math.sqrt(tol)), tol / s_desc.clamp_min(1e-300))
    return s_desc, err


def matrix_score(w, device: str = "cpu") -> MatrixScore:
    """Score one 2-D weight (any float dtype, any device); Gram-eigenvalue path, SVD when unsure.

    Raises ValueError for non-finite weights (the caller names the tensor).
    """
    import torch

    n, m = (int(x) for x in w.shape)
    wd = w.to(device=device).to(torch.float64)
    if not bool(torch.isfinite(wd).all()):
        raise ValueError("contains NaN or infinity")
    s_desc, err = gram_singular_values(wd)
    score, rel, n_signal = score_from_singular_values(s_desc, n, m, err)
    if rel <= TRUST_REL:
        return MatrixScore(score, "gram", float(s_desc[0]), n_signal)
    # LAPACK's SVD is fastest on tall matrices; singular values are the same for W and W^T.
    s_desc = torch.linalg.svdvals(wd if n >= m else wd.T)
    score, _, n_signal = score_from_singular_values(s_desc, n, m)
    return MatrixScore(score, "svd", float(s_desc[0]), n_signal)
