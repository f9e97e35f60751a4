"""The numba versions of the kernels: same algorithms, same state layouts and
the same stage signature as kernels/c (see rtk.h), compiled as ``@cfunc`` so
the native runner calls them by address without Python or the GIL.

Each kernel is an ``@njit`` core over arrays (callable from Python in tests)
and a thin ``@cfunc`` wrapper that views the raw pointers as arrays.

Numba caches the compiled kernels keyed on this file alone: the constants
imported from layout.py are frozen into the cache, so after changing one of
them, touch this file (the C-versus-numba tests fail until you do).
"""
from __future__ import annotations

import math

import numpy as np
from numba import carray, cfunc, njit, types

from .layout import BQ_HDR, COMP_STATE, DELAY_HDR, LIM_HDR, LIM_TAPS

SIGNATURE = types.void(types.voidptr, types.CPointer(types.float32),
                       types.int32, types.int32, types.int32,
                       types.CPointer(types.float32), types.int32)

LN10_20 = 0.11512925464970229
DB_PER_NEPER = 8.685889638065035
QPI = 0.7853981633974483
SQRT2 = 1.4142135623730951


# ---- biquad cascade -------------------------------------------------------
@njit(cache=True, nogil=True)
def biquad_core(st, io, nch, stride, n):
    nsec = int(st[1])
    blob = BQ_HDR
    target = blob + 2
    cur = blob + 2 + 5 * nsec
    step = cur + 5 * nsec
    z = step + 5 * nsec
    if st[blob] != st[2]:
        st[2] = st[blob]
        rl = math.floor(st[blob + 1])
        if rl < 1.0:
            for k in range(5 * nsec):
                st[cur + k] = st[target + k]
            st[3] = 0.0
        else:
            for k in range(5 * nsec):
                st[step + k] = (st[target + k] - st[cur + k]) / rl
            st[3] = rl
    ramp = n if st[3] > n else int(st[3])
    ends = ramp > 0 and ramp == int(st[3])
    for s in range(nsec):
        c = cur + 5 * s
        d = step + 5 * s
        if (st[c] == 1.0 and st[c + 1] == 0.0 and st[c + 2] == 0.0 and st[c + 3] == 0.0
                and st[c + 4] == 0.0 and ramp == 0):
            for ch in range(nch):
                st[z + (ch * nsec + s) * 2] = 0.0
                st[z + (ch * nsec + s) * 2 + 1] = 0.0
            continue
        for ch in range(nch):
            zi = z + (ch * nsec + s) * 2
            z1 = st[zi]
            z2 = st[zi + 1]
            base = ch * stride
            for i in range(ramp):
                k = float(i + 1)
                b0 = st[c] + st[d] * k
                b1 = st[c + 1] + st[d + 1] * k
                b2 = st[c + 2] + st[d + 2] * k
                a1 = st[c + 3] + st[d + 3] * k
                a2 = st[c + 4] + st[d + 4] * k
                x = float(io[base + i])
                y = b0 * x + z1
                z1 = b1 * x - a1 * y + z2
                z2 = b2 * x - a2 * y
                io[base + i] = y
            if ends:
                t = target + 5 * s
                b0, b1, b2, a1, a2 = st[t], st[t + 1], st[t + 2], st[t + 3], st[t + 4]
            else:
                k = float(ramp)
                b0 = st[c] + st[d] * k
                b1 = st[c + 1] + st[d + 1] * k
                b2 = st[c + 2] + st[d + 2] * k
                a1 = st[c + 3] + st[d + 3] * k
                a2 = st[c + 4] + st[d + 4] * k
            for i in range(ramp, n):
                x = float(io[base + i])
                y = b0 * x + z1
                z1 = b1 * x - a1 * y + z2
                z2 = b2 * x - a2 * y
                io[base + i] = y
            if not (math.isfinite(z1) and math.isfinite(z2)):
                z1 = 0.0
                z2 = 0.0
            st[zi] = z1
            st[zi + 1] = z2
    if ramp > 0:
        if ends:
            for k in range(5 * nsec):
                st[cur + k] = st[target + k]
            st[3] = 0.0
        else:
            for k in range(5 * nsec):
                st[cur + k] += st[step + k] * float(ramp)
            st[3] -= float(ramp)


@cfunc(SIGNATURE, cache=True, nopython=True)
def biquad(stp, iop, nch, stride, n, parp, pstride):
    hdr = carray(stp, (BQ_HDR,), np.float64)
    nsec = int(hdr[1])
    st = carray(stp, (BQ_HDR + 2 + 10 * nsec + 5 * nsec + 2 * nch * nsec,), np.float64)
    io = carray(iop, ((nch - 1) * stride + n,))
    biquad_core(st, io, nch, stride, n)


# ---- gain / pan / width -----------------------------------------------------
@njit(cache=True, nogil=True)
def gain_core(st, io, nch, stride, n, par, ps):
    e = n - 1
    if (par[0] == par[e] and par[ps] == par[ps + e] and par[2 * ps] == par[2 * ps + e]
            and par[3 * ps] == par[3 * ps + e] and float(par[0]) == st[1]
            and float(par[ps]) == st[2]):
        g = st[4] * (1.0 - 2.0 * float(par[3 * ps]))
        width = float(par[2 * ps])
        gl = st[5]
        gr = st[6]
        if nch == 2:
            for i in range(n):
                l = float(io[i])
                r = float(io[stride + i])
                m = 0.5 * (l + r)
                s = 0.5 * (l - r) * width
                io[i] = (m + s) * g * gl
                io[stride + i] = (m - s) * g * gr
        else:
            for c in range(nch):
                for i in range(n):
                    io[c * stride + i] = float(io[c * stride + i]) * g
        return
    for i in range(n):
        gdb = float(par[i])
        pan = float(par[ps + i])
        width = float(par[2 * ps + i])
        inv = 1.0 - 2.0 * float(par[3 * ps + i])
        if gdb != st[1]:
            st[1] = gdb
            st[4] = math.exp(gdb * LN10_20)
        if pan != st[2]:
            st[2] = pan
            a = (pan + 1.0) * QPI
            st[5] = SQRT2 * math.cos(a)
            st[6] = SQRT2 * math.sin(a)
        g = st[4] * inv
        if nch == 2:
            l = float(io[i])
            r = float(io[stride + i])
            m = 0.5 * (l + r)
            s = 0.5 * (l - r) * width
            io[i] = (m + s) * g * st[5]
            io[stride + i] = (m - s) * g * st[6]
        else:
            for c in range(nch):
                io[c * stride + i] = float(io[c * stride + i]) * g


@cfunc(SIGNATURE, cache=True, nopython=True)
def gain(stp, iop, nch, stride, n, parp, pstride):
    st = carray(stp, (8,), np.float64)
    io = carray(iop, ((nch - 1) * stride + n,))
    par = carray(parp, (3 * pstride + n,))
    gain_core(st, io, nch, stride, n, par, pstride)


# ---- compressor ---------------------------------------------------------------
@njit(cache=True, nogil=True)
def _time_coef(ms, sr):
    m = ms * 0.001 * sr
    return 0.0 if m < 1e-3 else math.exp(-1.0 / m)


@njit(cache=True, nogil=True)
def _comp_reduction(xg, thr, inv_ratio_m1, knee, inv_2knee):
    over = xg - thr
    t = over + 0.5 * knee
    in_knee = inv_ratio_m1 * t * t * inv_2knee
    above = over * inv_ratio_m1
    if 2.0 * over < -knee:
        d = 0.0
    elif 2.0 * abs(over) <= knee:
        d = in_knee
    else:
        d = above
    return -d


@njit(cache=True, nogil=True)
def compressor_core(st, io, nch, stride, n, par, ps):
    sr = st[0]
    mb = int(st[6])
    lvl = COMP_STATE
    if n > mb:
        n = mb
    e = n - 1
    steady = True
    for k in range(7):
        steady = steady and par[k * ps] == par[k * ps + e]
    steady = steady and float(par[3 * ps]) == st[2] and float(par[4 * ps]) == st[4]
    for i in range(n):
        level = 0.0
        for c in range(nch):
            a = abs(float(io[c * stride + i]))
            level = a if a > level else level
        st[lvl + i] = DB_PER_NEPER * math.log(level if level > 1e-10 else 1e-10)
    env = st[1]
    thr = float(par[0])
    knee = float(par[2 * ps])
    makeup = float(par[5 * ps])
    ratio = float(par[ps])
    inv_ratio_m1 = 1.0 / (1.0 if ratio < 1.0 else ratio) - 1.0
    inv_2knee = 0.5 / knee if knee > 0.0 else 0.0
    for i in range(n):
        if not steady:
            thr = float(par[i])
            knee = float(par[2 * ps + i])
            makeup = float(par[5 * ps + i])
            ratio = float(par[ps + i])
            inv_ratio_m1 = 1.0 / (1.0 if ratio < 1.0 else ratio) - 1.0
            inv_2knee = 0.5 / knee if knee > 0.0 else 0.0
            att = float(par[3 * ps + i])
            rel = float(par[4 * ps + i])
            if att != st[2]:
                st[2] = att
                st[3] = _time_coef(att, sr)
            if rel != st[4]:
                st[4] = rel
                st[5] = _time_coef(rel, sr)
        xl = _comp_reduction(st[lvl + i], thr, inv_ratio_m1, knee, inv_2knee)
        a = st[3] if xl > env else st[5]
        env = a * env + (1.0 - a) * xl
        st[lvl + i] = makeup - env
    if not math.isfinite(env):
        env = 0.0
    st[1] = env
    for i in range(n):
        mix = float(par[6 * ps + i])
        st[lvl + i] = 1.0 - mix + mix * math.exp(st[lvl + i] * LN10_20)
    for c in range(nch):
        for i in range(n):
            io[c * stride + i] = float(io[c * stride + i]) * st[lvl + i]


@cfunc(SIGNATURE, cache=True, nopython=True)
def compressor(stp, iop, nch, stride, n, parp, pstride):
    hdr = carray(stp, (COMP_STATE,), np.float64)
    st = carray(stp, (COMP_STATE + int(hdr[6]),), np.float64)
    io = carray(iop, ((nch - 1) * stride + n,))
    par = carray(parp, (6 * pstride + n,))
    compressor_core(st, io, nch, stride, n, par, pstride)


# ---- limiter -------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _tp_point(stf, firf, X, i, ph, H):
    """|phase ph interpolation at frame i|: float32 sum over the taps in order."""
    a = np.float32(0.0)
    for k in range(H):
        a += stf[firf + (ph - 1) * H + k] * stf[X + i + k]
    return abs(a)


@njit(cache=True, nogil=True)
def limiter_core(st, stf, io, nch, stride, n, par, ps):
    """``stf`` is the same state viewed as float32 (taps, history, delay line,
    detections); see kernels/c/limiter.c, which this mirrors operation for
    operation."""
    H = LIM_TAPS
    sr = st[0]
    L = int(st[1])
    D = L + H // 2 + 2
    W = L + 5
    B = L + 1
    mb = int(st[12])
    firf = 2 * LIM_HDR
    histf = 2 * (LIM_HDR + 4 * H)
    dlyd = LIM_HDR + 4 * H + nch * (H + mb)
    dlyf = 2 * dlyd
    box = dlyd + nch * D
    mcur = box + B
    msuf = mcur + W
    detf = 2 * (msuf + W)
    gain = msuf + W + 2 * mb
    if n > mb:
        n = mb
    t = st[2]
    env = st[3]
    box_sum = st[4]
    pref = st[5]
    mlast = st[6]
    prev = st[10]
    prevprev = st[11]
    t0 = int(t)
    dp0 = t0 % D
    bp0 = t0 % B
    wp0 = t0 % W

    # pass 1: input gain into the history, delay line
    gin = st[14]
    gin_db = st[15]
    maxabs = np.float32(0.0)
    for c in range(nch):
        X = histf + c * (H + mb)
        base = c * stride
        gin = st[14]
        gin_db = st[15]
        for i in range(n):
            in_db = float(par[2 * ps + i])
            if in_db != gin_db:
                gin_db = in_db
                gin = math.exp(in_db * LN10_20)
            stf[X + H - 1 + i] = float(io[base + i]) * gin
        dl = dlyf + c * D
        dp = dp0
        for i in range(n):
            out = stf[dl + dp]
            stf[dl + dp] = stf[X + H - 1 + i]
            io[base + i] = out
            dp += 1
            if dp == D:
                dp = 0
        for k in range(n + H - 1):
            a = abs(stf[X + k])
            maxabs = a if a > maxabs else maxabs
    st[14] = gin
    st[15] = gin_db

    # quiet block: exactly unity gain (see the C kernel)
    cmin = float(par[0]) if par[0] < par[n - 1] else float(par[n - 1])
    ceil_min = math.exp(cmin * LN10_20)
    bound = float(maxabs) * st[17]
    if prev > bound:
        bound = prev
    if prevprev > bound:
        bound = prevprev
    if bound * 1.25 <= ceil_min and env == 1.0 and st[16] >= float(B) and mlast >= 1.0:
        p2 = 0.0
        p3 = 0.0
        i = n - 1
        for c in range(nch):
            X = histf + c * (H + mb)
            a2 = float(_tp_point(stf, firf, X, i, 2, H))
            a3 = float(_tp_point(stf, firf, X, i, 3, H))
            if a2 > p2:
                p2 = a2
            if a3 > p3:
                p3 = a3
        for c in range(nch):
            X = histf + c * (H + mb)
            for k in range(H - 1):
                stf[X + k] = stf[X + n + k]
        rel_ms = float(par[ps + n - 1])
        if rel_ms != st[7]:
            st[7] = rel_ms
            nrel = rel_ms * 0.001 * sr
            st[8] = 0.0 if nrel < 1e-3 else math.exp(-1.0 / nrel)
        st[13] = float(par[n - 1])
        st[2] = t + float(n)
        st[4] = float(B)
        for k in range(W):
            st[mcur + k] = 1.0
            st[msuf + k] = 1.0
        st[5] = 1.0
        st[6] = 1.0
        st[10] = p3
        st[11] = p2
        st[16] += float(n)
        return

    # the 4x detection, channel-linked, into float rows
    for k in range(4 * mb):
        if k % mb < n:
            stf[detf + k] = 0.0
    for c in range(nch):
        X = histf + c * (H + mb)
        for i in range(n):
            a = abs(stf[X + i + H // 2 - 1])
            if a > stf[detf + i]:
                stf[detf + i] = a
        for i in range(n):
            for ph in range(1, 4):
                a = _tp_point(stf, firf, X, i, ph, H)
                if a > stf[detf + ph * mb + i]:
                    stf[detf + ph * mb + i] = a
        for k in range(H - 1):
            stf[X + k] = stf[X + n + k]

    # pass 2, linked
    bp = bp0
    wp = wp0
    inv_b = 1.0 / float(B)
    ceil_lin = math.exp(st[13] * LN10_20)
    run1 = st[16]
    a_rel = st[8]
    for i in range(n):
        if float(par[i]) != st[13]:
            st[13] = float(par[i])
            ceil_lin = math.exp(st[13] * LN10_20)
        rel_ms = float(par[ps + i])
        if rel_ms != st[7]:
            st[7] = rel_ms
            nrel = rel_ms * 0.001 * sr
            a_rel = 0.0 if nrel < 1e-3 else math.exp(-1.0 / nrel)
            st[8] = a_rel
        peak = 0.0
        refine_above = 0.8 * ceil_lin
        for k in range(4):
            cur = float(stf[detf + k * mb + i])
            peak = cur if cur > peak else peak
            if prev > refine_above and prev >= prevprev and prev >= cur:
                den = prevprev - 2.0 * prev + cur
                if den < 0.0:
                    q = prevprev - cur
                    est = prev - 0.125 * q * q / den
                    peak = est if est > peak else peak
            prevprev = prev
            prev = cur
        r = ceil_lin / peak if peak > ceil_lin else 1.0
        st[mcur + wp] = r
        if wp == 0:
            pref = r
        elif r < pref:
            pref = r
        m = pref
        if wp == W - 1:
            sfx = 1.0
            for k in range(W - 1, -1, -1):
                if st[mcur + k] < sfx:
                    sfx = st[mcur + k]
                st[msuf + k] = sfx
            wp = 0
        else:
            if st[msuf + wp + 1] < m:
                m = st[msuf + wp + 1]
            wp += 1
        mlast = m
        rel = 1.0 - (1.0 - env) * a_rel
        env = m if m < rel else rel
        box_sum += env - st[box + bp]
        st[box + bp] = env
        run1 = run1 + 1.0 if env == 1.0 else 0.0
        bp += 1
        if bp == B:
            bp = 0
        g = box_sum * inv_b
        st[gain + i] = 1.0 if g > 1.0 else g
        t += 1.0
    for c in range(nch):
        base = c * stride
        for i in range(n):
            io[base + i] = float(io[base + i]) * st[gain + i]
    if (int(t) & 0xFFFF) < n:
        s = 0.0
        for k in range(B):
            s += st[box + k]
        box_sum = s
    st[2] = t
    st[3] = env
    st[4] = box_sum
    st[5] = pref
    st[6] = mlast
    st[10] = prev
    st[11] = prevprev
    st[16] = run1


@cfunc(SIGNATURE, cache=True, nopython=True)
def limiter(stp, iop, nch, stride, n, parp, pstride):
    hdr = carray(stp, (LIM_HDR,), np.float64)
    L = int(hdr[1])
    mb = int(hdr[12])
    size = LIM_HDR + 4 * LIM_TAPS + nch * (LIM_TAPS + mb) + nch * (L + LIM_TAPS // 2 + 2) \
        + (L + 1) + 2 * (L + 5) + 4 * mb
    st = carray(stp, (size,), np.float64)
    stf = carray(stp, (2 * size,), np.float32)
    io = carray(iop, ((nch - 1) * stride + n,))
    par = carray(parp, (2 * pstride + n,))
    limiter_core(st, stf, io, nch, stride, n, par, pstride)


# ---- delay ----------------------------------------------------------------------
@njit(cache=True, nogil=True)
def delay_core(st, io, nch, stride, n):
    d = int(st[1])
    if d <= 0:
        return
    pos0 = int(st[2])
    for c in range(nch):
        r = DELAY_HDR + c * d
        p = pos0
        base = c * stride
        for i in range(n):
            out = st[r + p]
            st[r + p] = float(io[base + i])
            io[base + i] = out
            p += 1
            if p == d:
                p = 0
    st[2] = float((pos0 + n) % d)


@cfunc(SIGNATURE, cache=True, nopython=True)
def delay(stp, iop, nch, stride, n, parp, pstride):
    hdr = carray(stp, (DELAY_HDR,), np.float64)
    d = int(hdr[1])
    st = carray(stp, (DELAY_HDR + nch * (d if d > 0 else 0),), np.float64)
    io = carray(iop, ((nch - 1) * stride + n,))
    delay_core(st, io, nch, stride, n)
