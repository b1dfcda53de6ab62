"""A Monte Carlo price: the mean payoff of a call option over hashed normal draws.

In the Bachelier model the price at expiry is SPOT + VOL * Z with Z standard normal; here Z is
the sum of 12 hashed uniforms minus 6 (Irwin-Hall: mean 0, variance 1, close to normal). Only
+, -, * and / on floats, so every backend computes the same element values, and the mean
(exact sum / n, rounded once) is the same to the last bit on every backend and any workers.

    partally compute 1e7 --workload examples.option_price:call_payoff --seed 1
"""

import partally

MASK32 = 0xFFFFFFFF
MIX = 0x45D9F3B
SPOT, STRIKE, VOL = 100.0, 105.0, 20.0
DRAWS = 12  # uniforms per normal draw


@partally.workload(reduce="mean", returns=float)
def call_payoff(i, seed):
    """the payoff max(S - K, 0) of a call option, S = SPOT + VOL * Z for a hashed normal Z"""
    z = -6.0
    for k in range(DRAWS):
        j = i * DRAWS + k
        x = (j ^ (j >> 32) ^ seed) & MASK32
        x = (((x >> 16) ^ x) * MIX) & MASK32
        x = (((x >> 16) ^ x) * MIX) & MASK32
        x = (x >> 16) ^ x
        z += (x + 0.5) / 4294967296.0  # a uniform in (0, 1)
    price = SPOT + VOL * z
    return price - STRIKE if price > STRIKE else 0.0


if __name__ == "__main__":
    print(partally.compute(10**6, workload=call_payoff, seed=1))  # the Bachelier price is 5.727
