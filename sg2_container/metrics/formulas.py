"""The metric formulas on feature arrays (rows = images). Pure numpy/scipy, except the
nearest-neighbour search of precision/recall, which runs blocked in torch on any device."""
from __future__ import annotations

import numpy as np
import scipy.linalg

from sg2_container.options.metric_specs import (
    IS_SPLITS,
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    PR_NEIGHBOURS,
)


def mean_and_covariance(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and biased covariance (divided by n, as the reference), in float64."""
    x = np.asarray(features, dtype=np.float64)
    mu = x.mean(axis=0)
    sigma = x.T @ x / len(x) - np.outer(mu, mu)
    return mu, sigma


def frechet_distance(mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray,
                     sigma_b: np.ndarray) -> float:
    """Fréchet distance between two Gaussians: squared mean gap plus Tr(Sa + Sb - 2 (Sa Sb)^1/2).

    Sa Sb is similar to the symmetric PSD matrix Sa^1/2 Sb Sa^1/2, so the trace of its root is
    the sum of the square roots of that matrix's eigenvalues: two symmetric eigen-solves, far
    faster than a general matrix root at 2048 dimensions, and stable for the rank-deficient
    covariances of small sets (tiny negative eigenvalues from rounding count as 0).
    """
    values, vectors = scipy.linalg.eigh(sigma_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    inner = root_a @ sigma_b @ root_a
    trace_root = np.sqrt(np.clip(scipy.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    gap = mu_a - mu_b
    return float(gap @ gap + np.trace(sigma_a) + np.trace(sigma_b) - 2 * trace_root)


def fid(gen: np.ndarray, real: np.ndarray) -> float:
    """FID of two feature sets. With fewer images than dimensions the covariance term is
    computed in image space: with centred rows A, B, Sa Sb = A^T A B^T B / (na nb) has the same
    non-zero eigenvalues as M M^T for M = A B^T / sqrt(na nb), so Tr (Sa Sb)^1/2 is the sum of
    M's singular values (exact, and small: na x nb instead of d x d)."""
    a = np.asarray(gen, dtype=np.float64)
    b = np.asarray(real, dtype=np.float64)
    if min(len(a), len(b)) >= a.shape[1]:
        return frechet_distance(*mean_and_covariance(a), *mean_and_covariance(b))
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    a, b = a - mu_a, b - mu_b
    cross = a @ b.T / np.sqrt(len(a) * len(b))
    trace_root = scipy.linalg.svdvals(cross).sum()
    gap = mu_a - mu_b
    return float(gap @ gap + (a * a).sum() / len(a) + (b * b).sum() / len(b) - 2 * trace_root)


def kid(gen: np.ndarray, real: np.ndarray, *, subsets: int = KID_SUBSETS,
        subset_size: int = KID_SUBSET_SIZE, seed: int = 0) -> float:
    """Kernel Inception distance: the unbiased squared MMD under the cubic polynomial kernel
    (x.y/d + 1)^3, averaged over random equal-size subsets (drawn without replacement)."""
    gen = np.asarray(gen, dtype=np.float64)
    real = np.asarray(real, dtype=np.float64)
    dim = gen.shape[1]
    m = min(len(gen), len(real), subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 images per set, got {len(gen)} and {len(real)}")
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(subsets):
        x = gen[rng.choice(len(gen), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        k_xx = (x @ x.T / dim + 1) ** 3
        k_yy = (y @ y.T / dim + 1) ** 3
        k_xy = (x @ y.T / dim + 1) ** 3
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m - 1)
        total += within - 2 * k_xy.sum() / m
    return float(total / subsets / m)


def _kth_neighbour_radii(points, k: int, block: int):
    """Distance from each point to its k-th nearest other point of the same set."""
    import torch

    radii = []
    rows = max(1, block * block // len(points))  # about block^2 distances in memory at once
    for chunk in points.split(rows):
        dist = torch.cdist(chunk, points)
        # The point itself is at distance 0 and comes first: the k-th other one is at k+1.
        radii.append(dist.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def _covered(queries, points, radii, block: int):
    """For each query: is it inside the ball of at least one point (distance <= its radius)?"""
    import torch

    result = []
    for chunk in queries.split(block):
        inside = torch.zeros(len(chunk), dtype=torch.bool, device=chunk.device)
        for start in range(0, len(points), block):
            dist = torch.cdist(chunk, points[start:start + block])
            inside |= (dist <= radii[start:start + block].unsqueeze(0)).any(dim=1)
        result.append(inside)
    return torch.cat(result)


def precision_recall(gen: np.ndarray, real: np.ndarray, *, k: int = PR_NEIGHBOURS,
                     device="cpu", block: int = 4096) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the
    union of balls reaching every point's k-th nearest neighbour; precision is the share of
    generated points inside the real manifold, recall the share of reals inside the generated
    one. Distances are computed in blocks so that 50k x 200k sets fit in memory."""
    import torch

    if min(len(gen), len(real)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} images per set, got "
                         f"{len(gen)} and {len(real)}")
    g = torch.as_tensor(np.asarray(gen, dtype=np.float32), device=device)
    r = torch.as_tensor(np.asarray(real, dtype=np.float32), device=device)
    precision = _covered(g, r, _kth_neighbour_radii(r, k, block), block).float().mean()
    recall = _covered(r, g, _kth_neighbour_radii(g, k, block), block).float().mean()
    return float(precision), float(recall)


def inception_score(logits: np.ndarray, *, splits: int = IS_SPLITS) -> tuple[float, float]:
    """exp(E[KL(p(y|x) || p(y))]) per split of the images; mean and std over the splits."""
    logits = np.asarray(logits, dtype=np.float64)
    logits = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    scores = []
    for part in np.array_split(probs, min(splits, len(probs))):
        marginal = part.mean(axis=0, keepdims=True)
        kl = (part * (np.log(part + 1e-30) - np.log(marginal + 1e-30))).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def path_length(distances: np.ndarray) -> float:
    """Perceptual path length from per-sample distances / eps^2: the mean of the values that lie
    between the 1st percentile (rounded down to a sample) and the 99th (rounded up), which
    drops the rare huge steps across a sharp change of image."""
    values = np.asarray(distances, dtype=np.float64)
    low = np.percentile(values, 1, method="lower")
    high = np.percentile(values, 99, method="higher")
    return float(values[(values >= low) & (values <= high)].mean())
