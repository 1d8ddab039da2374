"""Counter-based random streams: every draw is a pure function of (key, counter), never of its
position in a shared stream.

A *key* is 64 bits derived from strings (a product id, a warehouse id) and the catalog seed; a
*word* names one stream and one counter (the demand of business minute ``m``, the promotions of
UTC day ``d``). The ``j``-th uniform of an element is

    unit(mix(key + mix(word + j * GOLDEN)))

with ``mix`` the splitmix64 finaliser and ``unit`` the top 53 bits as a float in [0, 1) — integer
arithmetic only (uint64 wraps the same everywhere), so a draw is the same on every platform,
whatever other elements are drawn beside it and in whatever order.

:func:`poisson` turns those uniforms into exact Poisson draws: inversion of the CDF for rates below
:data:`INVERSION_MAX_RATE` (one uniform, a few vectorised steps over a shrinking set, since demand
per minute is mostly far below 1), Hörmann's PTRS transformed rejection above it (the method of
numpy's ``Generator.poisson`` for rates >= 10; exact, two uniforms per attempt, about 1.1
attempts per draw), vectorised over the elements still rejecting.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["INVERSION_MAX_RATE", "mix64", "mix", "word", "string_keys", "uniforms", "poisson"]

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_UNIT = 2.0**-53
_LONG_ID = 64  # longer ids are hashed to 32 bytes first, so one long id never widens everybody's key work
#: Below this rate a draw inverts the CDF; at and above it PTRS (whose bound holds from 10 on).
INVERSION_MAX_RATE = 10.0
_MAX_INVERSION_STEPS = 256  # P(X >= 256 | rate < 10) < 1e-200: only a uniform within 2**-52 of 1 gets here


def mix64(x: int) -> int:
    """splitmix64's finaliser on one Python integer (mod 2**64)."""
    z = x & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array, in place; returns it."""
    z ^= z >> _S30
    z *= _M1
    z ^= z >> _S27
    z *= _M2
    z ^= z >> _S31
    return z


def word(stream: int, counter: int) -> int:
    """The word of one stream's counter (a business minute, a UTC day)."""
    return mix64(mix64(stream) + counter)


def string_keys(seed: int, tag: int, texts: Sequence[str]) -> np.ndarray:
    """A 64-bit key of every text, uint64 [N]: a function of (seed, tag, that text) alone."""
    encoded = [t.encode("utf-8") for t in texts]
    encoded = [b if len(b) <= _LONG_ID else b"\xff" + hashlib.blake2b(b, digest_size=32).digest() for b in encoded]
    lengths = np.array([len(b) for b in encoded], dtype=np.uint64)
    width = max(8, -(-int(lengths.max(initial=0)) // 8) * 8)
    words = np.frombuffer(b"".join(b.ljust(width, b"\0") for b in encoded), dtype="<u8").reshape(len(encoded), -1)
    used = (lengths + np.uint64(7)) // np.uint64(8)  # words of each text: the padding never enters a key
    keys = mix(np.full(len(encoded), mix64(mix64(seed) + tag), dtype=np.uint64) ^ lengths)
    for j in range(words.shape[1]):
        live = np.flatnonzero(used > j)
        keys[live] = mix(keys[live] ^ words[live, j])
    return keys


def uniforms(keys: np.ndarray, words: np.ndarray, j: int) -> np.ndarray:
    """The ``j``-th uniform in [0, 1) of every (key, word) pair (broadcast)."""
    inner = mix(np.atleast_1d(np.asarray(words, dtype=np.uint64)) + np.uint64((j * _GOLDEN) & _MASK))
    z = mix(keys + inner)
    return (z >> _S11).astype(np.float64) * _UNIT


def poisson(rates: np.ndarray, keys: np.ndarray, words: np.ndarray) -> np.ndarray:
    """Exact Poisson draws [M, N] of ``rates`` [M, N] (finite, >= 0); row ``m``, column ``n`` draws
    from the stream (``keys[n]``, ``words[m]``) alone."""
    rates = np.asarray(rates, dtype=np.float64)
    rows, cols = rates.shape
    keys = np.asarray(keys, dtype=np.uint64)
    words = np.asarray(words, dtype=np.uint64)
    lam = rates.reshape(-1)
    u = uniforms(keys[None, :], words[:, None], 0).reshape(-1)
    counts = np.zeros(lam.size, dtype=np.int64)
    p = np.exp(-lam)  # P(X = 0)
    large = np.flatnonzero(lam >= INVERSION_MAX_RATE) if lam.size and lam.max() >= INVERSION_MAX_RATE else None
    if large is not None:
        p[large] = 2.0  # never "above the CDF": drawn by PTRS below
    _invert(lam, u, p, counts)
    if large is not None:
        counts[large] = _ptrs(lam[large], keys[large % cols], words[large // cols])
    return counts.reshape(rows, cols)


def _invert(lam: np.ndarray, u: np.ndarray, p: np.ndarray, counts: np.ndarray) -> None:
    """Inversion: the draw is the least k with u < F(k); only the elements above F(k) go on."""
    active = np.flatnonzero(u >= p)
    if not active.size:
        return
    lam_a, u_a, p_a = lam[active], u[active], p[active]
    cdf = p_a.copy()
    k = 0
    while active.size and k < _MAX_INVERSION_STEPS:
        k += 1
        counts[active] = k
        p_a *= lam_a
        p_a /= k
        cdf += p_a
        more = u_a >= cdf
        if not more.all():
            active, lam_a, u_a, p_a, cdf = active[more], lam_a[more], u_a[more], p_a[more], cdf[more]


def _log_factorial(k: np.ndarray) -> np.ndarray:
    """log(k!) for integral k >= 0 (float64): a table below 7, the Stirling series above (as numpy's
    ``random_loggam``: accurate to a few ulps)."""
    x = k + 1.0
    small = x < 8.0
    x0 = np.where(small, 8.0, x)
    x2 = 1.0 / (x0 * x0)
    series = np.full_like(x2, _STIRLING[-1])
    for c in _STIRLING[-2::-1]:
        series = series * x2 + c
    big = series / x0 + 0.5 * math.log(2 * math.pi) + (x0 - 0.5) * np.log(x0) - x0
    return np.where(small, _LOG_FACTORIAL[np.minimum(k, 6.0).astype(np.int64)], big)


_STIRLING = (
    8.333333333333333e-02,
    -2.777777777777778e-03,
    7.936507936507937e-04,
    -5.952380952380952e-04,
    8.417508417508418e-04,
    -1.917526917526918e-03,
    6.410256410256410e-03,
    -2.955065359477124e-02,
    1.796443723688307e-01,
    -1.39243221690590e00,
)
_LOG_FACTORIAL = np.array([math.lgamma(n + 1.0) for n in range(7)])


def _ptrs(lam: np.ndarray, keys: np.ndarray, words: np.ndarray) -> np.ndarray:
    """Hörmann (1993), "The transformed rejection method for generating Poisson random variables":
    attempt ``t`` of an element uses its uniforms ``2t + 1`` and ``2t + 2``."""
    out = np.empty(lam.size, dtype=np.int64)
    slam, loglam = np.sqrt(lam), np.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    log_invalpha = np.log(1.1239 + 1.1328 / (b - 3.4))
    vr = 0.9277 - 3.6224 / (b - 2)
    active = np.arange(lam.size)
    attempt = 0
    while active.size:
        uu = uniforms(keys[active], words[active], 2 * attempt + 1) - 0.5
        v = uniforms(keys[active], words[active], 2 * attempt + 2)
        attempt += 1
        aa, bb, ll = a[active], b[active], lam[active]
        us = 0.5 - np.abs(uu)
        with np.errstate(divide="ignore"):  # us == 0 only when uu == -0.5: k is then -inf, rejected
            k = np.floor((2 * aa / us + bb) * uu + ll + 0.43)
            log_v = np.log(v)
            accept = (us >= 0.07) & (v <= vr[active])
            test = (k >= 0) & ~((us < 0.013) & (v > us)) & ~accept
            idx = np.flatnonzero(test)
            kk = k[idx]
            accept[idx] = log_v[idx] + log_invalpha[active[idx]] - np.log(aa[idx] / (us[idx] * us[idx]) + bb[idx]) <= -ll[
                idx
            ] + kk * loglam[active[idx]] - _log_factorial(kk)
        out[active[accept]] = k[accept].astype(np.int64)
        active = active[~accept]
    return out
