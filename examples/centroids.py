"""The point farthest from its nearest centroid (the worst-served point of a k-means fit): a max
over a 2-d array of points and a small one of centroids.

    partally compute 1e6 --workload examples.centroids:farthest -v
"""

import numpy as np

import partally


@partally.workload(reduce="max", returns=float)
def farthest(i, seed, points, centroids):
    """the squared distance from point i to its nearest centroid (max: its value and i)"""
    x = points[i, 0]
    y = points[i, 1]
    dx = x - centroids[0, 0]
    dy = y - centroids[0, 1]
    best = dx * dx + dy * dy
    for k in range(1, centroids.shape[0]):
        dx = x - centroids[k, 0]
        dy = y - centroids[k, 1]
        d = dx * dx + dy * dy
        if d < best:
            best = d
    return best


def data(n, seed):
    """n points normal around 8 centroids on a circle, and the centroids."""
    rng = np.random.default_rng(seed)
    angles = np.linspace(0.0, 2 * np.pi, 8, endpoint=False)
    centroids = np.stack([np.cos(angles), np.sin(angles)], axis=1) * 10.0
    points = centroids[rng.integers(0, 8, n)] + rng.normal(0.0, 1.0, (n, 2))
    return points, centroids
