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
 * folded into det[4 i + ph] by maximum.  f: 3 rows of H taps. */
RTK_CLONES
static void rtk_tp_detect(const float *X, const float *f, int32_t n, double *det)
{
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        v8f a1 = {0}, b1 = {0}, a2 = {0}, b2 = {0}, a3 = {0}, b3 = {0};
        for (int32_t k = 0; k < H; k++) {
            v8f xa, xb;
            memcpy(&xa, X + i + k, sizeof xa);
            memcpy(&xb, X + i + k + 8, sizeof xb);
            const float f1 = f[k], f2 = f[H + k], f3 = f[2 * H + k];
            a1 += f1 * xa; b1 += f1 * xb;
            a2 += f2 * xa; b2 += f2 * xb;
            a3 += f3 * xa; b3 += f3 * xb;
        }
        for (int32_t j = 0; j < 8; j++) {
            double *d = det + 4 * (i + j);
            double v;
            v = fabs((double)a1[j]); if (v > d[1]) d[1] = v;
            v = fabs((double)a2[j]); if (v > d[2]) d[2] = v;
            v = fabs((double)a3[j]); if (v > d[3]) d[3] = v;
            d += 32;
            v = fabs((double)b1[j]); if (v > d[1]) d[1] = v;
            v = fabs((double)b2[j]); if (v > d[2]) d[2] = v;
            v = fabs((double)b3[j]); if (v > d[3]) d[3] = v;
        }
    }
    for (; i < n; i++) {
        for (int32_t ph = 1; ph < 4; ph++) {
            float a = 0.0f;
            for (int32_t k = 0; k < H; k++) a += f[(ph - 1) * H + k] * X[i + k];
            double v = fabs((double)a);
            if (v > det[4 * i + ph]) det[4 * i + ph] = v;
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
    double *dly = st + RTK_LIM_HDR + 4 * H + (int64_t)nch * (H + mb);   /* nch * D */
    double *box = dly + (int64_t)nch * D;           /* B */
    double *dqv = box + B;                          /* W */
    double *dqi = dqv + W;                          /* W */

    double *scr = dqi + W;                          /* 4 * mb detections */
    if (nframes > mb) nframes = mb;                 /* the runner never asks for more */

    double t = st[2], env = st[3], box_sum = st[4];
    int32_t head = (int32_t)st[5], count = (int32_t)st[6];
    double prev = st[10], prevprev = st[11];
    const int64_t t0 = (int64_t)t;
    /* ring positions advance by one per frame: no divisions in the loops */
    const int32_t dp0 = (int32_t)(t0 % D), bp0 = (int32_t)(t0 % B);

    /* pass 1, per channel: input gain, history, delay line */
    double gin = st[14], gin_db = st[15], maxabs = 0.0;
    for (int32_t c = 0; c < nch; c++) {
        float *X = hist + (int64_t)c * (H + mb);
        double *dl = dly + (int64_t)c * D;
        float *x = io + (int64_t)c * stride;
        gin = st[14]; gin_db = st[15];
        int32_t dp = dp0;
        for (int32_t i = 0; i < nframes; i++) {
            double in_db = par[2 * ps + i];
            if (in_db != gin_db) { gin_db = in_db; gin = exp(in_db * RTK_LN10_20); }
            double xv = (double)x[i] * gin;
            X[H - 1 + i] = (float)xv;
            double out = dl[dp];
            dl[dp] = xv;
            x[i] = (float)out;
            if (++dp == D) dp = 0;
        }
        for (int32_t i = 0; i < nframes + H - 1; i++) {
            double a = fabs(X[i]);
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
    double bound = maxabs * st[17];
    if (prev > bound) bound = prev;
    if (prevprev > bound) bound = prevprev;
    if (bound * 1.25 <= ceil_min && env == 1.0 && st[16] >= (double)B &&
        (count == 0 || dqv[head] >= 1.0)) {
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
        st[5] = 0.0; st[6] = 1.0;
        dqv[0] = 1.0; dqi[0] = t + (double)(nframes - 1);
        st[10] = p3; st[11] = p2;
        st[16] += (double)nframes;
        return;
    }

    /* the 4x detection, channel-linked */
    for (int32_t i = 0; i < 4 * nframes; i++) scr[i] = 0.0;
    for (int32_t c = 0; c < nch; c++) {
        float *X = hist + (int64_t)c * (H + mb);
        for (int32_t i = 0; i < nframes; i++) {
            double a = fabs((double)X[i + H / 2 - 1]);
            if (a > scr[4 * i]) scr[4 * i] = a;
        }
        rtk_tp_detect(X, fir, nframes, scr);
        memmove(X, X + nframes, sizeof(float) * (H - 1));
    }

    /* pass 2, linked: peak refinement, required gain, minimum, release, box */
    int32_t bp = bp0;
    double ceil_lin = exp(st[13] * RTK_LN10_20);
    for (int32_t i = 0; i < nframes; i++) {
        if ((double)par[i] != st[13]) { st[13] = par[i]; ceil_lin = exp(st[13] * RTK_LN10_20); }
        double rel_ms = par[ps + i];
        if (rel_ms != st[7]) {
            st[7] = rel_ms;
            double nrel = rel_ms * 0.001 * sr;
            st[8] = nrel < 1e-3 ? 0.0 : exp(-1.0 / nrel);
        }
        const double *v = scr + 4 * i;
        double peak = 0.0;
        for (int32_t k = 0; k < 4; k++) {
            double cur = v[k];
            if (cur > peak) peak = cur;
            if (prev >= prevprev && prev >= cur) {
                double den = prevprev - 2.0 * prev + cur;
                if (den < 0.0) {
                    double p = 0.5 * (prevprev - cur) / den;
                    double est = prev - 0.25 * (prevprev - cur) * p;
                    if (est > peak) peak = est;
                }
            }
            prevprev = prev;
            prev = cur;
        }
        double r = peak > ceil_lin ? ceil_lin / peak : 1.0;
        /* sliding minimum over W detections (monotonic deque) */
        while (count > 0) {
            int32_t back = head + count - 1;
            if (back >= W) back -= W;
            if (dqv[back] >= r) count--; else break;
        }
        {
            int32_t slot = head + count;
            if (slot >= W) slot -= W;
            dqv[slot] = r;
            dqi[slot] = t;
            count++;
        }
        while (count > 0 && dqi[head] <= t - (double)W) {
            if (++head == W) head = 0;
            count--;
        }
        double m = dqv[head];
        double rel = 1.0 - (1.0 - env) * st[8];
        env = m < rel ? m : rel;
        /* box average over B values of env */
        box_sum += env - box[bp];
        box[bp] = env;
        st[16] = env == 1.0 ? st[16] + 1.0 : 0.0;   /* run of unity gain */
        if (++bp == B) bp = 0;
        double g = box_sum / (double)B;
        scr[4 * i] = g > 1.0 ? 1.0 : g;
        t += 1.0;
    }
    /* pass 3: apply the gain to the delayed audio */
    for (int32_t c = 0; c < nch; c++) {
        float *x = io + (int64_t)c * stride;
        for (int32_t i = 0; i < nframes; i++)
            x[i] = (float)((double)x[i] * scr[4 * i]);
    }
    /* re-sum the box now and then so rounding cannot drift */
    if (((int64_t)t & 0xFFFF) < nframes) {
        double s = 0.0;
        for (int32_t k = 0; k < B; k++) s += box[k];
        box_sum = s;
    }
    st[2] = t; st[3] = env; st[4] = box_sum;
    st[5] = (double)head; st[6] = (double)count;
    st[10] = prev; st[11] = prevprev;
}
