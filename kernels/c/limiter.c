/* Lookahead true-peak limiter (layout in rtk.h).
 *
 * Frame n: the newest input enters the interpolation history; the detector
 * looks at audio sample a = n - TAPS/2 and its three 4x-interpolated
 * neighbours towards a + 1, refines each local maximum of the oversampled,
 * channel-linked magnitude with a parabola, and derives the required gain
 * r[a] = min(1, ceiling / peak).  The gain applied at frame n is the average
 * of the last L + 1 values of e, where e is the sliding minimum of r over
 * W = L + 5 detections with exponential release.  The audio is delayed by
 * D = L + TAPS/2 + 2, so every peak within two samples of the output sample
 * is already fully inside the averaging window: the applied gain never
 * exceeds what any of them requires. */
#include <math.h>
#include <string.h>
#include "rtk.h"

#define H RTK_LIM_TAPS
#define RTK_LN10_20 0.11512925464970229

/* 16 frames x 3 phases per pass: eight float vectors of accumulators.  GCC
 * lowers v8f to SSE2 (or NEON) pairs, and builds an AVX2 clone picked at load
 * time; each lane sums its taps in order, in float32, without fused
 * multiply-add, so every clone and the numba kernel give identical bits. */
typedef float v8f __attribute__((vector_size(32)));
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define RTK_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define RTK_CLONES
#endif

/* |interpolated value| of phases 1..3 between X[i + H/2 - 1] and X[i + H/2],
 * folded by maximum into the detection rows det[ph * mb + i] (float32).
 * f: 3 rows of H taps. */
RTK_CLONES
static void rtk_tp_detect(const float *X, const float *f, int32_t n, float *det, int32_t mb)
{
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        v8f acc[6] = {{0}};
        for (int32_t k = 0; k < H; k++) {
            v8f xa, xb;
            memcpy(&xa, X + i + k, sizeof xa);
            memcpy(&xb, X + i + k + 8, sizeof xb);
            const float f1 = f[k], f2 = f[H + k], f3 = f[2 * H + k];
            acc[0] += f1 * xa; acc[1] += f1 * xb;
            acc[2] += f2 * xa; acc[3] += f2 * xb;
            acc[4] += f3 * xa; acc[5] += f3 * xb;
        }
        float tmp[6][8];
        memcpy(tmp, acc, sizeof tmp);
        for (int32_t ph = 0; ph < 3; ph++) {
            float *d = det + (int64_t)(ph + 1) * mb + i;
            const float *t = tmp[2 * ph];            /* 16 consecutive frames */
            for (int32_t j = 0; j < 16; j++) {
                float a = fabsf(t[j]);
                d[j] = a > d[j] ? a : d[j];
            }
        }
    }
    for (; i < n; i++) {
        for (int32_t ph = 1; ph < 4; ph++) {
            float a = 0.0f;
            for (int32_t k = 0; k < H; k++) a += f[(ph - 1) * H + k] * X[i + k];
            a = fabsf(a);
            float *d = det + (int64_t)ph * mb + i;
            *d = a > *d ? a : *d;
        }
    }
}

/* One interpolated point (phase ph of frame i), the same sum as above. */
static double rtk_tp_point(const float *X, const float *f, int32_t i, int32_t ph)
{
    float a = 0.0f;
    for (int32_t k = 0; k < H; k++) a += f[(ph - 1) * H + k] * X[i + k];
    return fabs((double)a);
}

void rtk_limiter(double *st, float *io, int32_t nch, int32_t stride,
                 int32_t nframes, const float *par, int32_t pstride)
{
    const double sr = st[0];
    const int32_t L = (int32_t)st[1];
    const int32_t D = L + H / 2 + 2;
    const int32_t W = L + 5;
    const int32_t B = L + 1;
    const int64_t ps = pstride;
    const float *fir = (const float *)(st + RTK_LIM_HDR);  /* 3 rows of H float taps */
    const int32_t mb = (int32_t)st[12];
    float *hist = (float *)(st + RTK_LIM_HDR + 4 * H);     /* nch * (H + mb) floats */
    double *dlyd = st + RTK_LIM_HDR + 4 * H + (int64_t)nch * (H + mb);  /* nch * D */
    float *dly = (float *)dlyd;                     /* used as nch * D floats */
    double *box = dlyd + (int64_t)nch * D;          /* B */
    double *mcur = box + B;                         /* W: r of the current W-run */
    double *msuf = mcur + W;                        /* W: suffix minima of the last run */
    float *det = (float *)(msuf + W);               /* 4 rows of mb detections (float) */
    double *gain = msuf + W + 2 * (int64_t)mb;      /* mb gains */
    if (nframes > mb) nframes = mb;                 /* the runner never asks for more */

    double t = st[2], env = st[3], box_sum = st[4];
    double pref = st[5], mlast = st[6];             /* running prefix minimum, last m */
    double prev = st[10], prevprev = st[11];
    const int64_t t0 = (int64_t)t;
    /* ring positions advance by one per frame: no divisions in the loops */
    const int32_t dp0 = (int32_t)(t0 % D), bp0 = (int32_t)(t0 % B), wp0 = (int32_t)(t0 % W);

    /* pass 1, per channel: input gain into the detector history, and the
     * delay line (which holds the same float values) */
    double gin = st[14], gin_db = st[15];
    float maxabs = 0.0f;
    const float *p_in = par + 2 * ps;
    const int gin_steady = p_in[0] == p_in[nframes - 1] && (double)p_in[0] == gin_db;
    for (int32_t c = 0; c < nch; c++) {
        float *X = hist + (int64_t)c * (H + mb);
        float *x = io + (int64_t)c * stride;
        if (gin_steady) {           /* a ramp is monotone: equal ends = constant */
            for (int32_t i = 0; i < nframes; i++) X[H - 1 + i] = (float)((double)x[i] * gin);
        } else {
            gin = st[14]; gin_db = st[15];
            for (int32_t i = 0; i < nframes; i++) {
                double in_db = p_in[i];
                if (in_db != gin_db) { gin_db = in_db; gin = exp(in_db * RTK_LN10_20); }
                X[H - 1 + i] = (float)((double)x[i] * gin);
            }
        }
        /* delay by D: two contiguous runs around the ring's end */
        float *dl = dly + (int64_t)c * D;
        int32_t i = 0, dp = dp0;
        while (i < nframes) {
            int32_t run = D - dp < nframes - i ? D - dp : nframes - i;
            for (int32_t k = 0; k < run; k++) {
                float out = dl[dp + k];
                dl[dp + k] = X[H - 1 + i + k];
                x[i + k] = out;
            }
            i += run;
            dp += run;
            if (dp == D) dp = 0;
        }
        for (int32_t k = 0; k < nframes + H - 1; k++) {
            float a = fabsf(X[k]);
            maxabs = a > maxabs ? a : maxabs;
        }
    }
    st[14] = gin; st[15] = gin_db;

    /* Quiet block: no interpolated value can reach the ceiling (|FIR| <= L1 *
     * max|x|, and a parabola through three points lies below 1.25 times the
     * largest), and no gain reduction is in flight.  The gain is then exactly
     * 1 throughout, so the slow path below would produce the same samples. */
    double cmin = par[0] < par[nframes - 1] ? par[0] : par[nframes - 1];
    const double ceil_min = exp(cmin * RTK_LN10_20);
    double bound = (double)maxabs * st[17];
    if (prev > bound) bound = prev;
    if (prevprev > bound) bound = prevprev;
    if (bound * 1.25 <= ceil_min && env == 1.0 && st[16] >= (double)B &&
        mlast >= 1.0) {
        /* carry the last two oversampled points (phases 2 and 3 of the last frame) */
        double p2 = 0.0, p3 = 0.0;
        const int32_t i = nframes - 1;
        for (int32_t c = 0; c < nch; c++) {
            const float *X = hist + (int64_t)c * (H + mb);
            double a2 = rtk_tp_point(X, fir, i, 2), a3 = rtk_tp_point(X, fir, i, 3);
            if (a2 > p2) p2 = a2;
            if (a3 > p3) p3 = a3;
        }
        for (int32_t c = 0; c < nch; c++) {
            float *X = hist + (int64_t)c * (H + mb);
            memmove(X, X + nframes, sizeof(float) * (H - 1));
        }
        double rel_ms = par[ps + nframes - 1];
        if (rel_ms != st[7]) {
            st[7] = rel_ms;
            double nrel = rel_ms * 0.001 * sr;
            st[8] = nrel < 1e-3 ? 0.0 : exp(-1.0 / nrel);
        }
        st[13] = par[nframes - 1];
        st[2] = t + (double)nframes;
        st[4] = (double)B;
        /* every r in the window was 1 and stays 1: so are all minima */
        for (int32_t k = 0; k < W; k++) { mcur[k] = 1.0; msuf[k] = 1.0; }
        st[5] = 1.0; st[6] = 1.0;
        st[10] = p3; st[11] = p2;
        st[16] += (double)nframes;
        return;
    }

    /* the 4x detection, channel-linked */
    for (int32_t ph = 0; ph < 4; ph++)
        for (int32_t i = 0; i < nframes; i++) det[(int64_t)ph * mb + i] = 0.0f;
    for (int32_t c = 0; c < nch; c++) {
        float *X = hist + (int64_t)c * (H + mb);
        for (int32_t i = 0; i < nframes; i++) {
            float a = fabsf(X[i + H / 2 - 1]);
            det[i] = a > det[i] ? a : det[i];
        }
        rtk_tp_detect(X, fir, nframes, det, mb);
        memmove(X, X + nframes, sizeof(float) * (H - 1));
    }

    /* pass 2, linked: peak refinement, required gain, minimum, release, box */
    int32_t bp = bp0, wp = wp0;
    const double inv_b = 1.0 / (double)B;
    double ceil_lin = exp(st[13] * RTK_LN10_20);
    double run1 = st[16], a_rel = st[8];
    const int steady = par[0] == par[nframes - 1] && (double)par[0] == st[13] &&
                       par[ps] == par[ps + nframes - 1] && (double)par[ps] == st[7];
    for (int32_t i = 0; i < nframes; i++) {
        if (!steady) {
            if ((double)par[i] != st[13]) { st[13] = par[i]; ceil_lin = exp(st[13] * RTK_LN10_20); }
            double rel_ms = par[ps + i];
            if (rel_ms != st[7]) {
                st[7] = rel_ms;
                double nrel = rel_ms * 0.001 * sr;
                st[8] = a_rel = nrel < 1e-3 ? 0.0 : exp(-1.0 / nrel);
            }
        }
        /* peak of the four oversampled points, each local maximum refined by
         * the parabola through it and its neighbours.  The vertex is at most
         * 1.25 times the maximum point, so below 0.8 * ceiling it cannot
         * change r and is not computed. */
        double peak = 0.0;
        const double refine_above = 0.8 * ceil_lin;
        for (int32_t k = 0; k < 4; k++) {
            double cur = det[(int64_t)k * mb + i];
            peak = cur > peak ? cur : peak;
            if (prev > refine_above && prev >= prevprev && prev >= cur) {
                double den = prevprev - 2.0 * prev + cur;
                if (den < 0.0) {
                    double q = prevprev - cur;
                    double est = prev - 0.125 * q * q / den;
                    peak = est > peak ? est : peak;
                }
            }
            prevprev = prev;
            prev = cur;
        }
        /* required gain: ceiling / peak, or exactly 1 below the ceiling */
        double r = peak > ceil_lin ? ceil_lin / peak : 1.0;
        /* sliding minimum over W detections (van Herk / Gil-Werman): the
         * window is a suffix of the previous W-run plus a prefix of this one */
        mcur[wp] = r;
        pref = wp == 0 ? r : (r < pref ? r : pref);
        double m = pref;
        if (wp == W - 1) {
            double sfx = 1.0;
            for (int32_t k = W - 1; k >= 0; k--) {
                sfx = mcur[k] < sfx ? mcur[k] : sfx;
                msuf[k] = sfx;
            }
            wp = 0;
        } else {
            m = msuf[wp + 1] < m ? msuf[wp + 1] : m;
            wp++;
        }
        mlast = m;
        double rel = 1.0 - (1.0 - env) * a_rel;
        env = m < rel ? m : rel;
        /* box average over B values of env */
        box_sum += env - box[bp];
        box[bp] = env;
        run1 = env == 1.0 ? run1 + 1.0 : 0.0;       /* run of unity gain */
        if (++bp == B) bp = 0;
        double g = box_sum * inv_b;
        gain[i] = g > 1.0 ? 1.0 : g;
        t += 1.0;
    }
    /* pass 3: apply the gain to the delayed audio */
    for (int32_t c = 0; c < nch; c++) {
        float *x = io + (int64_t)c * stride;
        for (int32_t i = 0; i < nframes; i++)
            x[i] = (float)((double)x[i] * gain[i]);
    }
    /* re-sum the box now and then so rounding cannot drift */
    if (((int64_t)t & 0xFFFF) < nframes) {
        double s = 0.0;
        for (int32_t k = 0; k < B; k++) s += box[k];
        box_sum = s;
    }
    st[2] = t; st[3] = env; st[4] = box_sum;
    st[5] = pref; st[6] = mlast;
    st[10] = prev; st[11] = prevprev;
    st[16] = run1;
}
