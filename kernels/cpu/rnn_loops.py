"""The time loops of kernels/cpu/rnn.py, each one Numba-CPU function: per step the recurrent product
(BLAS sgemm/dgemm, see `gemm`) and the fused gate/state loops, so that a step costs no Python. Buffers
and their meaning: kernels/cpu/rnn.py.

A step is small (e.g. 16x64 @ 64x256), so the gate loops must vectorise: `tanh` below is branch-free
arithmetic (LLVM turns it into AVX code; a libm tanh call per element would cost more than the whole
step) and error_model="numpy" keeps divisions free of zero checks. Its error, at most about 1.4 ulp
over float32, is that of NumPy's own float32 np.tanh (also about 1.4 ulp), which the loops replace.
"""
import ctypes
import math
import os

import llvmlite.binding
import numpy as np
from numba import carray, cfunc, njit, types
from numba.core.errors import TypingError
from numba.extending import overload

OPTIONS = dict(cache=True, error_model="numpy", fastmath={"contract"})

# tanh(a) = a + a^3 P(a^2) on [0, SMALL]; above it 1 - 2e / (1 + e) with e = exp(-2a) = 2^n exp(r),
# |r| <= ln(2) / 2, exp(r) = 1 + r + r^2 Q(r), 2^n made from its bits. P and Q are Chebyshev fits
# (relative errors 4e-9 and 3e-9 for float32, 5e-17 and 2e-19 for float64); tanh(clamp) rounds to 1,
# so clamping keeps 2^n a normal number. ln 2 = LN2_HI + LN2_LO with few bits in LN2_HI: n * LN2_HI is
# exact (Cody-Waite reduction).
SMALL = 0.625
TANH_FLOAT32 = dict(
    P=(-0.33333282, 0.13331442, -0.05373972, 0.02063909, -0.00570499),
    Q=(0.49999993, 0.16666521, 0.04166839, 0.00836871, 0.00138146),
    ln2_hi=0.693359375, ln2_lo=-2.12194440e-4, clamp=10.0)
TANH_FLOAT64 = dict(
    P=(-0.3333333333333332, 0.13333333333326658, -0.05396825396139557, 0.021869488260559115,
       -0.008863229830925709, 0.0035920589774734554, -0.001455309297534642, 0.0005874372860094381,
       -0.00023077616269519857, 7.959955735264808e-05, -1.724487449484433e-05),
    Q=(0.5, 0.1666666666666667, 0.04166666666666667, 0.008333333333326141, 0.0013888888888883752,
       0.00019841269874800493, 2.4801587325533363e-05, 2.7557255425746435e-06, 2.7557273661348637e-07,
       2.510520637395701e-08, 2.0914679376583935e-09),
    ln2_hi=0.6931471804855391, ln2_lo=7.440617110012397e-11, clamp=20.0)


def _make_tanh(real, integer, mantissa_bits, exponent_bias, P, Q, ln2_hi, ln2_lo, clamp):
    """Scalar tanh in `real` arithmetic throughout (typed constants), for inlining into vector loops."""
    P, Q = tuple(real(c) for c in reversed(P)), tuple(real(c) for c in reversed(Q))  # Horner order
    P_top, P_rest, Q_top, Q_rest = P[0], P[1:], Q[0], Q[1:]
    ln2_hi, ln2_lo, clamp, small = real(ln2_hi), real(ln2_lo), real(clamp), real(SMALL)
    log2e, one, two, half = real(1.4426950408889634), real(1.0), real(2.0), real(0.5)

    def tanh_real(x):
        a = abs(x)
        s = a * a
        p = P_top
        for c in P_rest:
            p = p * s + c
        small_result = a + a * s * p
        a = clamp if a > clamp else a          # NaN stays NaN (the comparison is false)
        y = -two * a
        n = integer(y * log2e - half)          # round(y / ln 2) for y < 0
        nf = real(n)
        r = y - nf * ln2_hi - nf * ln2_lo
        q = Q_top
        for c in Q_rest:
            q = q * r + c
        e = (one + r + r * r * q) * integer((n + exponent_bias) << mantissa_bits).view(real)
        big_result = one - two * e / (one + e)
        return math.copysign(small_result if a < small else big_result, x)
    return tanh_real


_tanh32 = _make_tanh(np.float32, np.int32, 23, 127, **TANH_FLOAT32)
_tanh64 = _make_tanh(np.float64, np.int64, 52, 1023, **TANH_FLOAT64)


def tanh(x):
    """Scalar tanh for the loops below (Python fallback)."""
    return math.tanh(x)


@overload(tanh, jit_options=dict(error_model="numpy", fastmath={"contract"}))
def _tanh_overload(x):
    if isinstance(x, types.Float):
        return _tanh32 if x.bitwidth == 32 else _tanh64


# The recurrent product calls NumPy's own BLAS (the OpenBLAS that np.matmul uses), found by its ILP64
# CBLAS name through NumPy's extension module and registered under a name of ours, which cached code
# links against. np.dot in nopython mode goes through SciPy's OpenBLAS build instead: 9 us against 6 us
# for 16x64 @ 64x256 float32 here, and it cannot accumulate (beta = 1). Where NumPy's BLAS has no such
# name (another BLAS vendor), our name is bound to a small np.dot callback instead; NUMBANET_RNN_BLAS=np.dot
# chooses the callback anywhere (tests run the loops through it this way).
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
BLAS_CHOICES = ("numpy", "np.dot")
_NAMES = {"s": "numbanet_cblas_sgemm", "d": "numbanet_cblas_dgemm"}


def _gemm_signature(real):
    pointer, index, flag = types.CPointer(real), types.int64, types.int32
    return types.void(flag, flag, flag, index, index, index, real, pointer, index, pointer, index, real, pointer,
                      index)


def _numpy_cblas(prefix):
    """Address of NumPy's ILP64 cblas_<prefix>gemm, or None."""
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # NumPy 1.x
        from numpy.core import _multiarray_umath as umath
    try:
        library = ctypes.CDLL(umath.__file__)
    except OSError:
        return None
    for name in (f"scipy_cblas_{prefix}gemm64_", f"cblas_{prefix}gemm64_"):
        function = getattr(library, name, None)
        if function is not None:
            return ctypes.cast(function, ctypes.c_void_p).value
    return None


def _fallback_gemm(real):
    """C = alpha A op(B) + beta C (row-major, A not transposed) through np.dot, as a C callback."""
    @cfunc(_gemm_signature(real), cache=True)
    def gemm(order, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc):
        a = carray(A, (M, K))
        product = np.dot(a, carray(B, (N, K)).T) if trans_b == TRANS else np.dot(a, carray(B, (K, N)))
        c = carray(C, (M, N))
        for i in range(M):
            for j in range(N):
                c[i, j] = alpha * product[i, j] + (beta * c[i, j] if beta != 0 else 0)
    return gemm


def _blas_choice():
    choice = os.environ.get("NUMBANET_RNN_BLAS") or "numpy"
    if choice not in BLAS_CHOICES:
        raise ValueError(f"NUMBANET_RNN_BLAS must be one of {BLAS_CHOICES} (or unset), got {choice!r}")
    return choice


BLAS_SOURCE = "numpy"
_FALLBACKS = []  # keeps the fallback callbacks alive
for _prefix, _real in (("s", types.float32), ("d", types.float64)):
    _address = _numpy_cblas(_prefix) if _blas_choice() == "numpy" else None
    if _address is None:
        BLAS_SOURCE = "np.dot fallback"
        _FALLBACKS.append(_fallback_gemm(_real))
        _address = _FALLBACKS[-1].address
    llvmlite.binding.add_symbol(_NAMES[_prefix], _address)
_SGEMM = types.ExternalFunction(_NAMES["s"], _gemm_signature(types.float32))
_DGEMM = types.ExternalFunction(_NAMES["d"], _gemm_signature(types.float64))


def gemm(a, b, c, trans_b, beta):
    """c = a @ (b.T if trans_b else b) + beta * c, for C-contiguous 2-d arrays of one dtype (Python fallback)."""
    c[...] = a @ (b.T if trans_b else b) + (beta * c if beta else 0)


@overload(gemm)
def _gemm_overload(a, b, c, trans_b, beta):
    if any(not isinstance(m, types.Array) or m.layout != "C" or m.ndim != 2 or m.dtype != c.dtype
           for m in (a, b, c)):
        raise TypingError(f"gemm: C-contiguous 2-d arrays of one dtype only (BLAS reads raw pointers), "
                          f"got {a}, {b}, {c}")
    blas = _SGEMM if c.dtype == types.float32 else _DGEMM

    def impl(a, b, c, trans_b, beta):
        M, K = a.shape
        N = c.shape[1]
        one = c.dtype.type(1.0)
        blas(ROW_MAJOR, NO_TRANS, TRANS if trans_b else NO_TRANS, M, N, K, one, a.ctypes, K, b.ctypes,
             K if trans_b else N, c.dtype.type(beta), c.ctypes, N)
    return impl


# The forward loops take W_hh transposed (w_hh_t): h @ W_hh^T as a plain, not transposed, product is
# faster in OpenBLAS at these shapes (float32 16x64 @ 64x256: 5.2 against 5.8 us with the Haswell kernels
# this machine's environment selects, 2.7 against 7.5 us with its SkylakeX ones).


@njit(inline="always")
def _step(step, T, reverse):
    """(time, read index, write index) of processing step `step` (0 first): forward reads states[t] and
    writes states[t + 1], reverse runs from t = T - 1 down, reading states[t + 1] and writing states[t]."""
    if reverse:
        t = T - 1 - step
        return t, t + 1, t
    return step, step, step + 1


# The loops below index each step's (B, n) blocks in 2-d rather than take per-sample row views: a view
# costs reference counting, which at these sizes is a visible part of a step.

@njit(**OPTIONS)
def lstm_forward(gates, w_hh_t, states, cells, aux, y, lengths, reverse):
    """gates (T, B, 4H) hold the scaled input projections; become i, f, g, o. w_hh_t: W_hh scaled and
    transposed, C-contiguous (H, 4H): the plain product is the faster one (note above _step)."""
    T, B, G = gates.shape
    H = G // 4
    half = gates.dtype.type(0.5)
    for step in range(T):
        t, read, write = _step(step, T, reverse)
        g, c_prev, c_new, tanh_c = gates[t], cells[read], cells[write], aux[t]
        h_prev, h_new, out = states[read], states[write], y[t]
        gemm(h_prev, w_hh_t, g, False, 1.0)
        flat = g.reshape(B * G)
        for k in range(B * G):
            flat[k] = tanh(flat[k])
        for b in range(B):
            active = t < lengths[b]
            for j in range(H):      # i, f, o: sigmoid from the tanh of the halved pre-activation
                i = half * g[b, j] + half
                f = half * g[b, H + j] + half
                g[b, j] = i
                g[b, H + j] = f
                g[b, 3 * H + j] = half * g[b, 3 * H + j] + half
                c_new[b, j] = f * c_prev[b, j] + i * g[b, 2 * H + j] if active else c_prev[b, j]
        c_flat, tanh_flat = c_new.reshape(B * H), tanh_c.reshape(B * H)
        for k in range(B * H):
            tanh_flat[k] = tanh(c_flat[k])
        for b in range(B):
            active = t < lengths[b]
            for j in range(H):
                h = g[b, 3 * H + j] * tanh_c[b, j]
                h_new[b, j] = h if active else h_prev[b, j]
                out[b, j] = h if active else 0.0


@njit(**OPTIONS)
def gru_forward(gates, w_hh_t, b_hn, states, aux, y, lengths, reverse):
    """gates (T, B, 3H): scaled input projections (no b_hn); become r, z, n. aux gets W_hn h + b_hn.
    w_hh_t: as in lstm_forward, (H, 3H)."""
    T, B, G = gates.shape
    H = G // 3
    half = gates.dtype.type(0.5)
    recurrent = np.empty((B, G), gates.dtype)
    for step in range(T):
        t, read, write = _step(step, T, reverse)
        g, hidden_n, h_prev, h_new, out = gates[t], aux[t], states[read], states[write], y[t]
        gemm(h_prev, w_hh_t, recurrent, False, 0.0)
        for b in range(B):
            for j in range(2 * H):
                g[b, j] = half * tanh(g[b, j] + recurrent[b, j]) + half
            for j in range(H):
                hidden_n[b, j] = recurrent[b, 2 * H + j] + b_hn[j]
            for j in range(H):
                g[b, 2 * H + j] = tanh(g[b, 2 * H + j] + g[b, j] * hidden_n[b, j])
            active = t < lengths[b]
            for j in range(H):
                n = g[b, 2 * H + j]
                h = n + g[b, H + j] * (h_prev[b, j] - n)
                h_new[b, j] = h if active else h_prev[b, j]
                out[b, j] = h if active else 0.0


@njit(**OPTIONS)
def rnn_forward(gates, w_hh_t, relu, states, y, lengths, reverse):
    """gates (T, B, H): input projections; become the new states (tanh or relu). w_hh_t: W_hh^T (H, H)."""
    T, B, H = gates.shape
    zero = gates.dtype.type(0.0)
    for step in range(T):
        t, read, write = _step(step, T, reverse)
        g, h_prev, h_new, out = gates[t], states[read], states[write], y[t]
        gemm(h_prev, w_hh_t, g, False, 1.0)
        flat = g.reshape(B * H)
        if relu:
            for k in range(B * H):
                flat[k] = zero if flat[k] < zero else flat[k]   # NaN passes, as np.maximum
        else:
            for k in range(B * H):
                flat[k] = tanh(flat[k])
        for b in range(B):
            active = t < lengths[b]
            for j in range(H):
                h_new[b, j] = g[b, j] if active else h_prev[b, j]
                out[b, j] = g[b, j] if active else zero


@njit(**OPTIONS)
def lstm_backward(gates, cells, aux, grad_y, has_grad_y, w_hh, lengths, reverse, grad_h, grad_c, grad_gates):
    """Gate gradients (T, B, 4H) into grad_gates; grad_h, grad_c (B, H) enter as those of the final
    states and leave as those of the initial ones (idle samples' gate gradients are zero: theirs pass)."""
    T, B, G = gates.shape
    H = G // 4
    one, zero = gates.dtype.type(1.0), gates.dtype.type(0.0)
    for step in range(T - 1, -1, -1):
        t, read, _ = _step(step, T, reverse)
        g, c_prev, tanh_c, dg = gates[t], cells[read], aux[t], grad_gates[t]
        for b in range(B):
            if t >= lengths[b]:
                for j in range(G):
                    dg[b, j] = zero
                continue
            if has_grad_y:
                for j in range(H):
                    grad_h[b, j] += grad_y[t, b, j]
            for j in range(H):      # two loops of few arrays each: LLVM vectorises them (one it did not)
                dh = grad_h[b, j]
                o, tc = g[b, 3 * H + j], tanh_c[b, j]
                grad_c[b, j] += dh * o * (one - tc * tc)
                dg[b, 3 * H + j] = dh * tc * o * (one - o)
                grad_h[b, j] = zero
            for j in range(H):
                dc = grad_c[b, j]
                i, f, gg = g[b, j], g[b, H + j], g[b, 2 * H + j]
                dg[b, j] = dc * gg * i * (one - i)
                dg[b, H + j] = dc * c_prev[b, j] * f * (one - f)
                dg[b, 2 * H + j] = dc * i * (one - gg * gg)
                grad_c[b, j] = dc * f
        gemm(dg, w_hh, grad_h, False, 1.0)


@njit(**OPTIONS)
def gru_backward(gates, aux, states, grad_y, has_grad_y, w_hh, lengths, reverse, grad_h, grad_gates, grad_hidden):
    """Input- and hidden-side gate gradients (T, B, 3H) (they differ in n: dn and r * dn); grad_h as in
    lstm_backward."""
    T, B, G = gates.shape
    H = G // 3
    one, zero = gates.dtype.type(1.0), gates.dtype.type(0.0)
    for step in range(T - 1, -1, -1):
        t, read, _ = _step(step, T, reverse)
        g, hidden_n, h_prev, dg, dhid = gates[t], aux[t], states[read], grad_gates[t], grad_hidden[t]
        for b in range(B):
            if t >= lengths[b]:
                for j in range(G):
                    dg[b, j] = zero
                    dhid[b, j] = zero
                continue
            if has_grad_y:
                for j in range(H):
                    grad_h[b, j] += grad_y[t, b, j]
            for j in range(H):      # split as in lstm_backward
                dh = grad_h[b, j]
                z, n = g[b, H + j], g[b, 2 * H + j]
                dg[b, H + j] = dh * (h_prev[b, j] - n) * z * (one - z)
                dg[b, 2 * H + j] = dh * (one - z) * (one - n * n)
                grad_h[b, j] = dh * z
            for j in range(H):
                r, dn = g[b, j], dg[b, 2 * H + j]
                dr = dn * hidden_n[b, j] * r * (one - r)
                dg[b, j] = dr
                dhid[b, j] = dr
                dhid[b, H + j] = dg[b, H + j]
                dhid[b, 2 * H + j] = dn * r
        gemm(dhid, w_hh, grad_h, False, 1.0)


@njit(**OPTIONS)
def rnn_backward(gates, relu, grad_y, has_grad_y, w_hh, lengths, reverse, grad_h, grad_gates):
    """Pre-activation gradients (T, B, H) into grad_gates; grad_h as in lstm_backward."""
    T, B, H = gates.shape
    one, zero = gates.dtype.type(1.0), gates.dtype.type(0.0)
    for step in range(T - 1, -1, -1):
        t, _, _ = _step(step, T, reverse)
        h_new, dg = gates[t], grad_gates[t]
        for b in range(B):
            if t >= lengths[b]:
                for j in range(H):
                    dg[b, j] = zero
                continue
            if has_grad_y:
                for j in range(H):
                    grad_h[b, j] += grad_y[t, b, j]
            for j in range(H):
                dh = grad_h[b, j]
                h = h_new[b, j]
                if relu:
                    dg[b, j] = zero if h <= zero else dh   # NaN h: dh, as torch
                else:
                    dg[b, j] = dh * (one - h * h)
                grad_h[b, j] = zero
        gemm(dg, w_hh, grad_h, False, 1.0)
