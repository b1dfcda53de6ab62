"""The exact mean squared error of two float arrays: your function over your data.

    partally compute 1e6 --workload examples.mse:sq_err -v
    partally bench --workload examples.mse:sq_err --sizes 1e4,1e6
"""

import numpy as np

import partally


@partally.workload(reduce="mean", returns=float)
def sq_err(i, seed, pred, truth):
    """the squared error (pred[i] - truth[i])**2, averaged exactly"""
    d = pred[i] - truth[i]
    return d * d


def data(n, seed):
    """Predictions and the truth for n points: the truth uniform in [0, 1), the predictions
    off by a normal error of 0.1."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n)
    return truth + rng.normal(0.0, 0.1, n), truth
