"""A search: the minimum of Rosenbrock's function over a grid, and where it is.

i walks a SIDE x SIDE grid of [-2, 2]^2 row by row (x = column, y = row, steps of 1/1000 so that
1.0 is on the grid); ``reduce="min"`` gives the smallest cost and the smallest i that has it,
the same on every backend. The minimum, 0.0, is at (1, 1): i = 3000 * SIDE + 3000.

    partally compute 16008001 --workload examples.grid_search:rosenbrock
"""

import partally

SIDE = 4001  # grid points per axis: -2.000, -1.999, ..., 2.000


@partally.workload(reduce="min", returns=float)
def rosenbrock(i, seed):
    """Rosenbrock's (1 - x)**2 + 100 (y - x**2)**2 at grid point i"""
    x = (i % SIDE - 2000) / 1000.0
    y = (i // SIDE - 2000) / 1000.0
    return (1.0 - x) * (1.0 - x) + 100.0 * (y - x * x) * (y - x * x)


if __name__ == "__main__":
    best = partally.compute(SIDE * SIDE, workload=rosenbrock)
    print(best, divmod(best.index, SIDE))  # Extremum(value=0.0, index=12006000) (3000, 3000)
