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
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.extending import intrinsic

from .layout import (BAL_HDR, BQ_HDR, COMP_STATE, DELAY_HDR, DN_HDR, DNL_FEATURE_FLOOR_DB, DNL_HDR,
                     LIM_HDR, LIM_TAPS, LM_BINS, LM_HDR, LM_RING, LM_TP_TAPS, MS_HDR, MS_LANES)

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


# ---- loudness meter ---------------------------------------------------------------
LM_T = LM_TP_TAPS
LM_NB = LM_BINS


@njit(cache=True, nogil=True)
def _lufs(power):
    return -0.691 + 10.0 * math.log10(power) if power > 0.0 else -math.inf


@njit(cache=True, nogil=True)
def _lm_bin(level):
    b = math.floor((level + 70.0) * 100.0)
    return 0 if b < 0.0 else (LM_NB - 1 if b >= LM_NB else int(b))


@njit(cache=True, nogil=True)
def _lm_first_above(gate):
    b = math.ceil((gate + 70.0) * 100.0 - 0.5)
    return 0 if b < 0.0 else (LM_NB if b > LM_NB else int(b))


@njit(cache=True, nogil=True)
def _lm_offsets(st):
    nch = int(st[1])
    sub = int(st[2])
    w = LM_HDR
    z = w + nch
    ring = z + 4 * nch
    taps = ring + LM_RING
    hist = taps + 3 * LM_T
    hlen = LM_T - 1 + sub
    hp = hist + nch * hlen
    return w, z, ring, taps, hist, hlen, hp, hp + LM_NB, hp + 2 * LM_NB, hp + 3 * LM_NB


@njit(cache=True, nogil=True)
def _lm_sub_done(st):
    w, z, ring, taps, hist, hlen, hp, hc, sp, sc = _lm_offsets(st)
    k = int(st[4])
    st[ring + k % LM_RING] = st[17]
    st[17] = 0.0
    done = k + 1
    st[4] = float(done)
    pm = 0.0
    ps = 0.0
    for j in range(300):
        idx = done - 1 - j
        if idx < 0:
            break
        e = st[ring + idx % LM_RING]
        ps += e
        if j < 40:
            pm += e
    pm /= 40.0 * st[2]
    ps /= 300.0 * st[2]
    m = _lufs(pm)
    s = _lufs(ps)
    st[8] = m
    st[9] = s
    if m > st[14]:
        st[14] = m
    if s > st[15]:
        st[15] = s
    if done % 10:
        return
    if done >= 40 and m > -70.0:
        b = _lm_bin(m)
        st[hp + b] += pm
        st[hc + b] += 1.0
        st[5] += 1.0
        st[6] += pm
        b0 = _lm_first_above(_lufs(st[6] / st[5]) - 10.0)
        p = 0.0
        cnt = 0.0
        for b in range(b0, LM_NB):
            p += st[hp + b]
            cnt += st[hc + b]
        st[10] = _lufs(p / cnt) if cnt > 0.0 else -math.inf
    if done >= 300 and s > -70.0:
        b = _lm_bin(s)
        st[sp + b] += ps
        st[sc + b] += 1.0
        st[7] += 1.0
        st[16] += ps
        b0 = _lm_first_above(_lufs(st[16] / st[7]) - 20.0)
        cnt = 0.0
        for b in range(b0, LM_NB):
            cnt += st[sc + b]
        if cnt < 1.0:
            st[11] = 0.0
            return
        r10 = math.ceil(0.10 * cnt)
        r95 = math.ceil(0.95 * cnt)
        c = 0.0
        lo = 0.0
        have_lo = False
        for b in range(b0, LM_NB):
            c += st[sc + b]
            if not have_lo and c >= r10:
                lo = -70.0 + (b + 0.5) * 0.01
                have_lo = True
            if c >= r95:
                st[11] = -70.0 + (b + 0.5) * 0.01 - lo
                return


@njit(cache=True, nogil=True)
def loudness_feed(st, io, off, nch, stride, n):
    """The meter over n frames of io starting at off (pass-through)."""
    w, z, ring, taps, hist, hlen, hp, hc, sp, sc = _lm_offsets(st)
    sub = int(st[2])
    pos = 0
    while pos < n:
        fill = int(st[3])
        m = min(sub - fill, n - pos)
        acc = 0.0
        speak = st[13]
        tpeak = st[12]
        for c in range(nch):
            base = off + c * stride + pos
            zc = z + 4 * c
            z0, z1, z2, z3 = st[zc], st[zc + 1], st[zc + 2], st[zc + 3]
            total = 0.0
            for i in range(m):
                x = float(io[base + i])
                y = st[18] * x + z0
                z0 = st[19] * x - st[21] * y + z1
                z1 = st[20] * x - st[22] * y
                u = st[23] * y + z2
                z2 = st[24] * y - st[26] * u + z3
                z3 = st[25] * y - st[27] * u
                total += u * u
            if not math.isfinite(z0 + z1 + z2 + z3):
                z0 = z1 = z2 = z3 = 0.0
                total = 0.0
            st[zc], st[zc + 1], st[zc + 2], st[zc + 3] = z0, z1, z2, z3
            acc += st[w + c] * total
            h = hist + c * hlen
            nw = h + LM_T - 1 + fill
            for i in range(m):
                a = float(io[base + i])
                if not math.isfinite(a):
                    a = 0.0
                st[nw + i] = a
                if abs(a) > speak:
                    speak = abs(a)
            for i in range(m):
                win = h + fill + i
                for p in range(3):
                    f = taps + p * LM_T
                    s = 0.0
                    for j in range(LM_T):
                        s += st[f + j] * st[win + j]
                    s = abs(s)
                    if s > tpeak:
                        tpeak = s
        if speak > tpeak:
            tpeak = speak
        st[12] = tpeak
        st[13] = speak
        st[17] += acc if math.isfinite(acc) else 0.0
        st[3] = float(fill + m)
        pos += m
        if fill + m == sub:
            _lm_sub_done(st)
            for c in range(nch):
                h = hist + c * hlen
                for j in range(LM_T - 1):
                    st[h + j] = st[h + sub + j]
            st[3] = 0.0


@njit(cache=True, nogil=True)
def loudness_size(st):
    nch = int(st[1])
    sub = int(st[2])
    return LM_HDR + 5 * nch + LM_RING + 3 * LM_T + nch * (LM_T - 1 + sub) + 4 * LM_NB


@cfunc(SIGNATURE, cache=True, nopython=True)
def loudness(stp, iop, nch, stride, n, parp, pstride):
    hdr = carray(stp, (LM_HDR,), np.float64)
    st = carray(stp, (loudness_size(hdr),), np.float64)
    io = carray(iop, ((nch - 1) * stride + n,))
    loudness_feed(st, io, 0, nch, stride, n)


# ---- FFTW from numba ------------------------------------------------------------
# The kernels that transform call FFTW's new-array execute functions through
# addresses stored in their state (layout.py writes them): a call through a
# runtime pointer, so the compiled kernels stay cacheable.
@intrinsic
def _call3(typingctx, fn, a, b, c):
    sig = types.void(types.intp, types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        ptr = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [ptr, ptr, ptr])
        f = builder.inttoptr(args[0], fnty.as_pointer())
        builder.call(f, [builder.inttoptr(x, ptr) for x in args[1:]])
        return context.get_dummy_value()
    return sig, codegen


# ---- spectral denoiser (kernels/c/denoise.c) -----------------------------------------
DN_TAU_S, DN_TAU_N, DN_TAU_PB, DN_TAU_DD = 0.05, 0.15186, 0.15186, 0.15
DN_EPS, DN_XI_MIN, DN_BIAS, DN_LIFT, DN_Q = 1e-30, 0.0031622776601683794, 8.0, 1.5, 0.2
DN_XI_H1, DN_P_STUCK = 31.622776601683793, 0.99


@njit(cache=True, nogil=True)
def _expint_e1(x):
    if x < 1e-300:
        x = 1e-300
    if x <= 1.0:
        return -math.log(x) - 0.57721566 + x * (0.99999193 + x * (-0.24991055 + x * (
            0.05519968 + x * (-0.00976004 + x * 0.00107857))))
    num = x * x + 2.334733 * x + 0.250621
    den = x * x + 3.330657 * x + 1.681534
    return num / (den * x) * math.exp(-x)


@njit(cache=True, nogil=True)
def _dn_offsets(st):
    nch = int(st[1])
    n = int(st[2])
    h = int(st[3])
    k = int(st[8])
    win = DN_HDR
    wsyn = win + n
    chan0 = wsyn + 2 * h
    bins = chan0 + nch * (n + 3 * h)
    frame = bins + 7 * k
    spec = frame + n
    pw = spec + nch * 2 * k
    return n, h, k, win, wsyn, chan0, bins, frame, spec, pw


DNL_FEAT_EPS, DNL_LN_GL_MIN = 1e-10, -13.815510557964274      # as in kernels/c/denoise.c


@njit(cache=True, nogil=True)
def _dnl_offsets(st, k):
    """Offsets of the learned region's parts (see kernels/c/rtk.h); 0 when absent."""
    r = int(st[11])
    nb, nf, hid = int(st[r]), int(st[r + 1]), int(st[r + 2])
    edges = r + DNL_HDR
    lo = edges + nb + 1
    w = lo + k
    mu = w + k
    sd = mu + nf
    w1 = sd + nf
    b1 = w1 + hid * nf
    wih = b1 + hid
    bih = wih + 3 * hid * hid
    whh = bih + 3 * hid
    bhh = whh + 3 * hid * hid
    w2 = bhh + 3 * hid
    b2 = w2 + nb * hid
    hh = b2 + nb
    x = hh + hid
    gi = x + hid
    gh = gi + 3 * hid
    feat = gh + 3 * hid
    gb = feat + nf
    lgs = gb + nb
    return (nb, nf, hid, edges, lo, w, mu, sd, w1, b1, wih, bih, whh, bhh, w2, b2, hh, x, gi,
            gh, feat, gb, lgs)


@njit(cache=True, nogil=True)
def _sigm(x):
    return 1.0 / (1.0 + math.exp(-x))


@njit(cache=True, nogil=True)
def _dn_net_run(st, k, pw, lam, lgf, inv_nch):
    (nb, nf, hid, edges, lo, w, mu, sd, w1, b1, wih, bih, whh, bhh, w2, b2, hh, x, gi, gh,
     f, gb, lgs) = _dnl_offsets(st, k)
    gmax = st[int(st[11]) + 7]
    ma = 0.0
    mc = 0.0
    for b in range(nb):
        e0 = int(st[edges + b])
        e1 = int(st[edges + b + 1])
        ep = 0.0
        el = 0.0
        lg = 0.0
        for i in range(e0, e1):
            ep += st[pw + i]
            el += st[lam + i]
            lg += st[lgf + i]
        a = math.log10(ep * inv_nch + DNL_FEAT_EPS)
        c = math.log10(el * inv_nch + DNL_FEAT_EPS)
        st[f + b] = a - c
        st[f + nb + b] = a
        st[f + 2 * nb + b] = c
        st[f + 3 * nb + b] = lg / (e1 - e0)
        ma += a
        mc += c
    ma /= nb
    mc /= nb
    for b in range(nb):
        st[f + nb + b] -= ma
        st[f + 2 * nb + b] -= mc
    if not st[int(st[11]) + 4] >= 0.5:
        return
    for j in range(nf):
        st[gh + j] = (st[f + j] - st[mu + j]) / st[sd + j]
    for j in range(hid):
        s = st[b1 + j]
        row = w1 + j * nf
        for i in range(nf):
            s += st[row + i] * st[gh + i]
        st[x + j] = math.tanh(s)
    for j in range(3 * hid):
        si = st[bih + j]
        sh = st[bhh + j]
        ri = wih + j * hid
        rh = whh + j * hid
        for i in range(hid):
            si += st[ri + i] * st[x + i]
            sh += st[rh + i] * st[hh + i]
        st[gi + j] = si
        st[gh + j] = sh
    for j in range(hid):
        r = _sigm(st[gi + j] + st[gh + j])
        u = _sigm(st[gi + hid + j] + st[gh + hid + j])
        c = math.tanh(st[gi + 2 * hid + j] + r * st[gh + 2 * hid + j])
        hn = (1.0 - u) * c + u * st[hh + j]
        st[hh + j] = hn if math.isfinite(hn) else 0.0
    for b in range(nb):
        s = st[b2 + b]
        row = w2 + b * hid
        for i in range(hid):
            s += st[row + i] * st[hh + i]
        st[gb + b] = gmax * _sigm(s)


@njit(cache=True, nogil=True)
def _dn_gains(st, amount, floor_db, adapt_s, learn):
    n, h, k, win, wsyn, chan0, bins, frame, spec, pw = _dn_offsets(st)
    S, Smin, Stmp, P, lam_, a2, g = (bins, bins + k, bins + 2 * k, bins + 3 * k, bins + 4 * k,
                                     bins + 5 * k, bins + 6 * k)
    hop_s = h / st[0]
    a_s = math.exp(-hop_s / DN_TAU_S)
    a_n = math.exp(-hop_s / DN_TAU_N)
    a_pb = math.exp(-hop_s / DN_TAU_PB)
    a_dd = math.exp(-hop_s / DN_TAU_DD)
    first = st[5] < n // h          # until the input has filled one frame (see the C kernel)
    half = int(0.5 * adapt_s / hop_s)
    if half < 4:
        half = 4
    st[10] = half
    new_window = False
    st[9] += 1.0
    if st[9] >= half:
        st[9] = 0.0
        new_window = True
    if learn:
        st[12] = 1.0 if first else st[12] + 1.0
    else:
        st[12] = 0.0
    for i in range(k):
        p = st[pw + i]
        if first:
            st[S + i] = p + DN_EPS
            st[Smin + i] = p + DN_EPS
            st[Stmp + i] = p + DN_EPS
            st[lam_ + i] = p + DN_EPS
            st[a2 + i] = 0.0
            st[P + i] = 0.0
            continue
        s = a_s * st[S + i] + (1.0 - a_s) * p
        st[S + i] = s
        if learn:
            st[Smin + i] = s
            st[Stmp + i] = s
            st[P + i] = 0.0
            st[lam_ + i] += (p - st[lam_ + i]) / st[12]
        else:
            if new_window:
                st[Smin + i] = st[Stmp + i] if st[Stmp + i] < s else s
                st[Stmp + i] = s
            else:
                if s < st[Smin + i]:
                    st[Smin + i] = s
                if s < st[Stmp + i]:
                    st[Stmp + i] = s
            r = p / st[lam_ + i] * (DN_XI_H1 / (1.0 + DN_XI_H1))
            post = 1.0 / (1.0 + (1.0 + DN_XI_H1) * math.exp(-(r if r < 500.0 else 500.0)))
            st[P + i] = a_pb * st[P + i] + (1.0 - a_pb) * post
            if st[P + i] > DN_P_STUCK and post > DN_P_STUCK:
                post = DN_P_STUCK
            lam = a_n * st[lam_ + i] + (1.0 - a_n) * ((1.0 - post) * p + post * st[lam_ + i])
            cap = DN_BIAS * st[Smin + i]
            lift = DN_LIFT * st[Smin + i]
            st[lam_ + i] = (lam if lam > lift else lift) if lam < cap else cap
        if not st[lam_ + i] > DN_EPS:
            st[lam_ + i] = DN_EPS
    for i in range(k):                        # smoothed estimate, in the frame buffer
        a = i - 2 if i - 2 > 0 else 0
        b = i + 2 if i + 2 < k else k - 1
        total = 0.0
        for j in range(i - 2, i + 3):
            jj = a if j < a else (b if j > b else j)
            total += st[lam_ + jj]
        st[frame + i] = 0.2 * total
    gmin = math.exp(floor_db * LN10_20)
    ln_gmin = floor_db * LN10_20
    q_ratio = DN_Q / (1.0 - DN_Q)
    net = int(st[11]) > 0
    lgs = _dnl_offsets(st, k)[22] if net else 0
    fmin = math.exp(DNL_FEATURE_FLOOR_DB * LN10_20)
    ln_fmin = DNL_FEATURE_FLOOR_DB * LN10_20
    for i in range(k):
        lam = st[frame + i]
        gamma = st[pw + i] / lam
        xi = a_dd * st[a2 + i] / lam + (1.0 - a_dd) * (gamma - 1.0 if gamma > 1.0 else 0.0)
        if xi < DN_XI_MIN:
            xi = DN_XI_MIN
        w = xi / (1.0 + xi)
        u = w * gamma
        gg = w * math.exp(0.5 * _expint_e1(u))
        if not gg < 1.0:
            gg = 1.0
        st[a2 + i] = gg * gg * st[pw + i]
        pr = 1.0 / (1.0 + q_ratio * (1.0 + xi) * math.exp(-(u if u < 500.0 else 500.0)))
        lg = pr * math.log(gg if gg > gmin else gmin) + (1.0 - pr) * ln_gmin
        if net:
            st[lgs + i] = lg
            st[g + i] = pr * math.log(gg if gg > fmin else fmin) + (1.0 - pr) * ln_fmin
        else:
            st[g + i] = math.exp(amount * lg)
    if not net:
        return
    _dn_net_run(st, k, pw, frame, g, 1.0 / st[1])
    r = int(st[11])
    use = st[r + 4] >= 0.5
    top = int(st[r + 3])
    mix_l, mix_s = st[r + 5], st[r + 6]
    o = _dnl_offsets(st, k)
    lo_, w_, gb = o[4], o[5], o[21]
    for i in range(k):
        lg = st[lgs + i]
        if use and i < top:
            lo = int(st[lo_ + i])
            gl = (1.0 - st[w_ + i]) * st[gb + lo] + st[w_ + i] * st[gb + lo + 1]
            lg = mix_s * lg + mix_l * (math.log(gl) if gl > 1e-6 else DNL_LN_GL_MIN)
            if lg < ln_gmin:
                lg = ln_gmin
            if lg > 0.0:
                lg = 0.0
        st[g + i] = math.exp(amount * lg)


@njit(cache=True, nogil=True)
def _dn_frame(st, p_r2c, p_c2r, x_r2c, x_c2r, nch, par, ps, at):
    n, h, k, win, wsyn, chan0, bins, frame, spec, pw = _dn_offsets(st)
    base = st.ctypes.data
    for i in range(k):
        st[pw + i] = 0.0
    for c in range(nch):
        inp = chan0 + c * (n + 3 * h)
        sp = spec + c * 2 * k
        for i in range(n):
            st[frame + i] = st[win + i] * st[inp + i]
        _call3(x_r2c, p_r2c, base + 8 * frame, base + 8 * sp)
        for i in range(k):
            st[pw + i] += st[sp + 2 * i] ** 2 + st[sp + 2 * i + 1] ** 2
        for i in range(n - h):
            st[inp + i] = st[inp + h + i]
    amount = float(par[at])
    adapt = float(par[2 * ps + at])
    _dn_gains(st, amount if amount > 0.0 else 0.0, float(par[ps + at]),
              adapt if adapt > 0.05 else 0.05, par[3 * ps + at] >= 0.5)
    scale = 1.0 / n
    tail = n - 2 * h
    g = bins + 6 * k
    for c in range(nch):
        inp = chan0 + c * (n + 3 * h)
        acc = inp + n
        out = acc + 2 * h
        sp = spec + c * 2 * k
        for i in range(k):
            st[sp + 2 * i] *= st[g + i]
            st[sp + 2 * i + 1] *= st[g + i]
        _call3(x_c2r, p_c2r, base + 8 * sp, base + 8 * frame)
        for i in range(2 * h):
            st[acc + i] += st[wsyn + i] * st[frame + tail + i] * scale
        for i in range(h):
            v = st[acc + i]
            st[out + i] = v if math.isfinite(v) else 0.0
        for i in range(h):
            st[acc + i] = st[acc + h + i]
            st[acc + h + i] = 0.0
    st[5] += 1.0


@njit(cache=True, nogil=True)
def denoise_core(st, p_r2c, p_c2r, x_r2c, x_c2r, io, nch, stride, n, par, ps):
    """p_*: the FFTW plans, x_*: fftw_execute_dft_r2c / _c2r (addresses)."""
    if p_r2c == 0 or p_c2r == 0:
        return
    nn, h, k, win, wsyn, chan0, bins, frame, spec, pw = _dn_offsets(st)
    pos = 0
    while pos < n:
        fill = int(st[4])
        m = min(h - fill, n - pos)
        for c in range(nch):
            inp = chan0 + c * (nn + 3 * h)
            out = inp + nn + 2 * h
            for i in range(m):
                a = float(io[c * stride + pos + i])
                st[inp + nn - h + fill + i] = a if math.isfinite(a) else 0.0
                io[c * stride + pos + i] = st[out + fill + i]
        pos += m
        if fill + m < h:
            st[4] = float(fill + m)
            continue
        st[4] = 0.0
        _dn_frame(st, p_r2c, p_c2r, x_r2c, x_c2r, nch, par, ps, pos - 1)


@cfunc(SIGNATURE, cache=True, nopython=True)
def denoise(stp, iop, nch, stride, n, parp, pstride):
    hdr = carray(stp, (DN_HDR,), np.float64)
    ptrs = carray(stp, (DN_HDR,), np.int64)
    nn, h, k = int(hdr[2]), int(hdr[3]), int(hdr[8])
    size = DN_HDR + nn + 2 * h + nch * (nn + 3 * h) + 7 * k + nn + nch * 2 * k + k
    if hdr[11] > 0:                         # the learned region follows
        r = carray(stp, (size + 3,), np.float64)
        nb, nf, hid = int(r[size]), int(r[size + 1]), int(r[size + 2])
        size += (DNL_HDR + nb + 1 + 2 * k + 2 * nf + hid * nf + hid
                 + 2 * (3 * hid * hid + 3 * hid) + nb * hid + nb + 8 * hid + nf + nb + k)
    st = carray(stp, (size,), np.float64)
    io = carray(iop, ((nch - 1) * stride + n,))
    par = carray(parp, (3 * pstride + n,))
    denoise_core(st, ptrs[6], ptrs[7], ptrs[13], ptrs[14], io, nch, stride, n, par, pstride)


# ---- master (kernels/c/master.c) --------------------------------------------------------
@njit(cache=True, nogil=True)
def _ms_auto_update(st, mi, ring, par, ps, i):
    if mi[4] < 300.0:
        return
    sub = mi[2]
    norm = 0.0
    for j in range(300):
        norm += ring[j]
    s_in = mi[9]
    s_norm = _lufs(norm / (300.0 * sub))
    if not s_in > -70.0 or not math.isfinite(s_norm):
        return
    if st[13] >= 1.0 and s_in < _lufs(st[11]) - 20.0:
        return
    adapt = float(par[5 * ps + i])
    a = 0.1 / adapt if adapt > 0.1 else 1.0
    a_loss = 1.0 if 4.0 * a > 1.0 else 4.0 * a
    p_in = 10.0 ** ((s_in + 0.691) * 0.1)
    loss = s_in - s_norm
    if st[13] < 1.0:
        st[11] = p_in
        st[12] = loss
    else:
        st[11] += a * (p_in - st[11])
        st[12] += a_loss * (loss - st[12])
    st[13] += 1.0
    want = float(par[i]) - _lufs(st[11]) + st[12]
    lim = float(par[3 * ps + i])
    if not math.isfinite(want):
        return
    st[14] = lim if want > lim else (-lim if want < -lim else want)


@njit(cache=True, nogil=True)
def master_core(st, stf, io, nch, stride, n, par, ps):
    """``stf``: the state viewed as float32 (the limiter's and the lanes')."""
    sr = st[0]
    mb = int(st[2])
    o_comp, o_lim, o_in, o_out, o_lanes = int(st[3]), int(st[4]), int(st[5]), int(st[6]), \
        int(st[7])
    o_ring, o_lp = int(st[15]), int(st[16])
    comp = st[o_comp:o_lp]
    lp = st[o_lp:o_lim]
    lim = st[o_lim:o_in]
    limf = stf[2 * o_lim:2 * o_in]
    mi = st[o_in:o_out]
    mo = st[o_out:o_lanes]
    lanes = stf[2 * o_lanes:2 * o_lanes + 10 * mb]
    ring = st[o_ring:o_ring + 300]
    if n > mb:
        n = mb
    for i in range(n):
        lanes[i] = par[6 * ps + i]
        lanes[mb + i] = par[7 * ps + i]
        lanes[2 * mb + i] = np.float32(6.0)
        lanes[3 * mb + i] = par[8 * ps + i]
        lanes[4 * mb + i] = par[9 * ps + i]
        lanes[5 * mb + i] = np.float32(0.0)
        lanes[6 * mb + i] = par[10 * ps + i]
        lanes[7 * mb + i] = par[11 * ps + i] - np.float32(0.1)     # RTK_MS_MARGIN_DB
        lanes[8 * mb + i] = par[12 * ps + i]
        lanes[9 * mb + i] = np.float32(0.0)
    sub = int(mi[2])
    mo_ring = LM_HDR + 5 * nch
    pos = 0
    while pos < n:
        fill = int(st[9])
        m = min(sub - fill, n - pos)
        loudness_feed(mi, io, pos, nch, stride, m)
        g = st[8]
        lin = math.exp(g * LN10_20)
        for i in range(m):
            f = pos + i
            if par[ps + f] >= 0.5:
                want = st[14] if st[13] >= 1.0 else float(par[2 * ps + f])
                step = float(par[4 * ps + f]) / sr
                d = want - g
                want = g + (step if d > step else (-step if d < -step else d))
            else:
                want = float(par[2 * ps + f])
            if want != g:
                g = want
                lin = math.exp(g * LN10_20)
            for c in range(nch):
                io[c * stride + f] = float(io[c * stride + f]) * lin
        st[8] = g
        seg = io[pos:]
        compressor_core(comp, seg, nch, stride, m, lanes[pos:], mb)
        biquad_core(lp, seg, nch, stride, m)
        limiter_core(lim, limf, seg, nch, stride, m, lanes[7 * mb + pos:], mb)
        loudness_feed(mo, io, pos, nch, stride, m)
        pos += m
        if fill + m < sub:
            st[9] = float(fill + m)
            continue
        st[9] = 0.0
        k = int(st[10])
        e = mo[mo_ring + int(mo[4] - 1.0) % 300]
        ring[k % 300] = e / (lin * lin)
        st[10] = float(k + 1)
        if (k + 1) % 10 == 0:
            _ms_auto_update(st, mi, ring, par, ps, pos - 1)


@cfunc(SIGNATURE, cache=True, nopython=True)
def master(stp, iop, nch, stride, n, parp, pstride):
    hdr = carray(stp, (MS_HDR,), np.float64)
    mb = int(hdr[2])
    size = int(hdr[7]) + (MS_LANES * mb + 1) // 2
    st = carray(stp, (size,), np.float64)
    stf = carray(stp, (2 * size,), np.float32)
    io = carray(iop, ((nch - 1) * stride + n,))
    par = carray(parp, (12 * pstride + n,))
    master_core(st, stf, io, nch, stride, n, par, pstride)


# ---- balance (kernels/c/balance.c) -------------------------------------------------------
BAL_SHELF_Q_NB = 0.7071067811865476


@njit(cache=True, nogil=True)
def _bal_offsets(st):
    nch = int(st[1])
    n = int(st[2])
    nb = int(st[7])
    k = n // 2 + 1
    win = BAL_HDR
    inp = win + n
    spec = inp + nch * (n + int(st[3]))
    frame = spec + 2 * k
    edges = frame + n
    target = edges + nb + 1
    ph = target + nb
    binv = ph + 4 * nb
    meas = binv + nb * nb
    corr = meas + 2 * nb
    cmd = corr + 2 * nb
    coef = cmd + 2 * nb
    pw = coef + 5 * nb
    return n, nb, k, win, inp, spec, frame, edges, target, ph, binv, meas, corr, cmd, coef, pw


@njit(cache=True, nogil=True)
def _bal_section(st, ph, nb, q, b, g, out, o):
    cw = st[ph + 4 * b]
    sw = st[ph + 4 * b + 1]
    a = 10.0 ** (g / 40.0)
    if b == 0 or b == nb - 1:
        alpha = sw / (2.0 * BAL_SHELF_Q_NB)
        sa = 2.0 * math.sqrt(a) * alpha
        s = 1.0 if b == 0 else -1.0
        n0 = a * ((a + 1.0) - s * (a - 1.0) * cw + sa)
        n1 = s * 2.0 * a * ((a - 1.0) - s * (a + 1.0) * cw)
        n2 = a * ((a + 1.0) - s * (a - 1.0) * cw - sa)
        d0 = (a + 1.0) + s * (a - 1.0) * cw + sa
        d1 = -s * 2.0 * ((a - 1.0) + s * (a + 1.0) * cw)
        d2 = (a + 1.0) + s * (a - 1.0) * cw - sa
    else:
        alpha = sw / (2.0 * q)
        n0 = 1.0 + alpha * a
        n1 = -2.0 * cw
        n2 = 1.0 - alpha * a
        d0 = 1.0 + alpha / a
        d1 = -2.0 * cw
        d2 = 1.0 - alpha / a
    out[o] = n0 / d0
    out[o + 1] = n1 / d0
    out[o + 2] = n2 / d0
    out[o + 3] = d1 / d0
    out[o + 4] = d2 / d0


@njit(cache=True, nogil=True)
def _bal_publish(st, s, casc):
    n, nb, k, win, inp, spec, frame, edges, target, ph, binv, meas, corr, cmd, coef, pw = \
        _bal_offsets(st)
    q = st[8]
    d = corr + s * nb
    cm = cmd + s * nb
    for i in range(nb):
        acc = 0.0
        for j in range(nb):
            acc += st[binv + i * nb + j] * st[d + j]
        st[cm + i] = acc
    for _ in range(2):
        for b in range(nb):
            _bal_section(st, ph, nb, q, b, st[cm + b], st, coef + 5 * b)
        for i in range(nb):                 # response at centre i, into the frame scratch
            c1 = st[ph + 4 * i]
            s1 = st[ph + 4 * i + 1]
            c2 = st[ph + 4 * i + 2]
            s2 = st[ph + 4 * i + 3]
            db = 0.0
            for b in range(nb):
                c = coef + 5 * b
                nr = st[c] + st[c + 1] * c1 + st[c + 2] * c2
                ni = -(st[c + 1] * s1 + st[c + 2] * s2)
                dr = 1.0 + st[c + 3] * c1 + st[c + 4] * c2
                di = -(st[c + 3] * s1 + st[c + 4] * s2)
                db += 10.0 * math.log10((nr * nr + ni * ni) / (dr * dr + di * di))
            st[frame + 64 + i] = st[d + i] - db
        for i in range(nb):
            acc = 0.0
            for j in range(nb):
                acc += st[binv + i * nb + j] * st[frame + 64 + j]
            v = st[cm + i] + acc
            st[cm + i] = 30.0 if v > 30.0 else (-30.0 if v < -30.0 else v)
    blob = casc + BQ_HDR
    for b in range(nb):
        _bal_section(st, ph, nb, q, b, st[cm + b], st, blob + 2 + 5 * b)
    st[blob + 1] = float(int(st[3]))
    st[11] += 1.0
    st[blob] = st[11]


@njit(cache=True, nogil=True)
def _bal_update(st, s, pws, mean_sq, par, ps, at):
    n, nb, k, win, inp, spec, frame, edges, target, ph, binv, meas, corr, cmd, coef, pw = \
        _bal_offsets(st)
    if mean_sq < 1e-7:
        return
    me = meas + s * nb
    co = corr + s * nb
    speed = float(par[3 * ps + at])
    a = 1.0 - math.exp(-st[3] / (st[0] * (speed if speed > 0.05 else 0.05)))
    for b in range(nb):
        p = 0.0
        for i in range(int(st[edges + b]), int(st[edges + b + 1])):
            p += st[pws + i]
        st[me + b] = p if st[9 + s] < 1.0 else st[me + b] + a * (p - st[me + b])
    st[9 + s] += 1.0
    amount = float(par[at])
    boost = float(par[ps + at])
    cut = float(par[2 * ps + at])
    mean = 0.0
    for b in range(nb):
        st[frame + b] = st[target + b] - 10.0 * math.log10(st[me + b] + 1e-30)
        mean += st[frame + b]
    mean /= nb
    for b in range(nb):
        c = amount * (st[frame + b] - mean)
        c = boost if c > boost else (-cut if c < -cut else c)
        st[co + b] += a * (c - st[co + b])
    _bal_publish(st, s, int(st[12]) if s == 0 else int(st[13]))


@njit(cache=True, nogil=True)
def _bal_stage(st, p_r2c, x_r2c, nch, k, par, ps, at):
    n, nb, kb, win, inp, spec, frame, edges, target, ph, binv, meas, corr, cmd, coef, pw = \
        _bal_offsets(st)
    base = st.ctypes.data
    cs = n + int(st[3])
    ms = st[17] != 0.0
    chans = 2 if ms else nch
    streams = 2 if ms else 1
    if k < chans:
        s = k if ms else 0
        msq = 0.0
        for i in range(n):
            if ms:
                lv = st[inp + i]
                rv = st[inp + cs + i]
                u = 0.5 * (lv + rv) if k == 0 else 0.5 * (lv - rv)
            else:
                u = st[inp + k * cs + i]
            msq += u * u
            st[frame + i] = st[win + i] * u
        st[18 + s] += msq
        _call3(x_r2c, p_r2c, base + 8 * frame, base + 8 * spec)
        for i in range(kb):
            st[pw + s * kb + i] += st[spec + 2 * i] ** 2 + st[spec + 2 * i + 1] ** 2
    elif k < chans + streams:
        s = k - chans
        if par[4 * ps + at] < 0.5:
            div = float(n) * (1 if ms else nch)
            _bal_update(st, s, pw + s * kb, st[18 + s] / div, par, ps, at)
    if k + 1 < chans + streams:
        st[16] = float(k + 2)
    else:
        st[16] = 0.0
        st[5] += 1.0


@njit(cache=True, nogil=True)
def balance_core(st, p_r2c, x_r2c, io, nch, stride, n, par, ps):
    if p_r2c == 0:
        return
    nn = int(st[2])
    h = int(st[3])
    gap = h // 8
    cs = nn + h
    kb = nn // 2 + 1
    ca = st[int(st[12]):int(st[13])]
    cb = st[int(st[13]):]
    inp = BAL_HDR + nn
    pw = _bal_offsets(st)[15]
    pos = 0
    while pos < n:
        fill = int(st[4])
        pending = int(st[16]) - 1
        until = pending * gap if pending >= 0 and pending * gap < h else h
        m = min(until - fill, n - pos)
        ms = nch == 2 and par[5 * ps + pos] >= 0.5
        msf = 1.0 if ms else 0.0
        if msf != st[14]:
            st[14] = msf
            st[9] = 0.0
            st[10] = 0.0
            st[16] = 0.0
        for c in range(nch):
            for i in range(m):
                a = float(io[c * stride + pos + i])
                st[inp + c * cs + nn + fill + i] = a if math.isfinite(a) else 0.0
        if ms:
            for i in range(m):
                lv = io[pos + i]
                rv = io[stride + pos + i]
                io[pos + i] = np.float32(0.5) * (lv + rv)
                io[stride + pos + i] = np.float32(0.5) * (lv - rv)
            biquad_core(ca, io[pos:], 1, stride, m)
            biquad_core(cb, io[stride + pos:], 1, stride, m)
            for i in range(m):
                mid = io[pos + i]
                side = io[stride + pos + i]
                io[pos + i] = mid + side
                io[stride + pos + i] = mid - side
        else:
            biquad_core(ca, io[pos:], nch, stride, m)
        pos += m
        fill += m
        if int(st[16]) - 1 == pending and pending >= 0 and fill == pending * gap:
            _bal_stage(st, p_r2c, x_r2c, nch, pending, par, ps, pos - 1)
        if fill < h:
            st[4] = float(fill)
            continue
        st[4] = 0.0
        for c in range(nch):
            for i in range(nn):
                st[inp + c * cs + i] = st[inp + c * cs + h + i]
        for i in range(2 * kb):
            st[pw + i] = 0.0
        st[17] = msf
        st[18] = 0.0
        st[19] = 0.0
        _bal_stage(st, p_r2c, x_r2c, nch, 0, par, ps, pos - 1)


@cfunc(SIGNATURE, cache=True, nopython=True)
def balance(stp, iop, nch, stride, n, parp, pstride):
    hdr = carray(stp, (BAL_HDR,), np.float64)
    ptrs = carray(stp, (BAL_HDR,), np.int64)
    off_b = int(hdr[13])
    nb = int(hdr[7])
    size = off_b + BQ_HDR + 2 + 5 * nb + 10 * nb + 2 * nb
    st = carray(stp, (size,), np.float64)
    io = carray(iop, ((nch - 1) * stride + n,))
    par = carray(parp, (5 * pstride + n,))
    balance_core(st, ptrs[6], ptrs[15], io, nch, stride, n, par, pstride)
