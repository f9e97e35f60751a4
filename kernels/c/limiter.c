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
#include "rtk.h"

#define H RTK_LIM_TAPS
#define RTK_LN10_20 0.11512925464970229

void rtk_limiter(double *st, float *io, int32_t nch, int32_t stride,
                 int32_t nframes, const float *par, int32_t pstride)
{
    const double sr = st[0];
    const int32_t L = (int32_t)st[1];
    const int32_t D = L + H / 2 + 2;
    const int32_t W = L + 5;
    const int32_t B = L + 1;
    const int64_t ps = pstride;
    double *fir = st + RTK_LIM_HDR;                 /* 3 * H */
    double *hist = fir + 3 * H;                     /* nch * 2H */
    double *dly = hist + (int64_t)nch * 2 * H;      /* nch * D */
    double *box = dly + (int64_t)nch * D;           /* B */
    double *dqv = box + B;                          /* W */
    double *dqi = dqv + W;                          /* W */

    double t = st[2], env = st[3], box_sum = st[4];
    int32_t head = (int32_t)st[5], count = (int32_t)st[6];
    double prev = st[10], prevprev = st[11];
    double gin = st[14], gin_db = st[15];

    for (int32_t i = 0; i < nframes; i++) {
        double ceil_lin = exp((double)par[i] * RTK_LN10_20);
        double rel_ms = par[ps + i];
        double in_db = par[2 * ps + i];
        if (rel_ms != st[7]) {
            st[7] = rel_ms;
            double nrel = rel_ms * 0.001 * sr;
            st[8] = nrel < 1e-3 ? 0.0 : exp(-1.0 / nrel);
        }
        if (in_db != gin_db) { gin_db = in_db; gin = exp(in_db * RTK_LN10_20); }
        const int64_t tt = (int64_t)t;
        const int32_t hp = (int32_t)(tt % H);
        /* push the input into the history and the delay line; detect */
        double v[4] = {0.0, 0.0, 0.0, 0.0};
        const int32_t dp = (int32_t)(tt % D);
        for (int32_t c = 0; c < nch; c++) {
            double x = (double)io[(int64_t)c * stride + i] * gin;
            double *h = hist + (int64_t)c * 2 * H;
            h[hp] = x;
            h[hp + H] = x;
            const double *w = h + hp + 1;           /* oldest .. newest */
            double a0 = fabs(w[H / 2 - 1]);
            if (a0 > v[0]) v[0] = a0;
            for (int32_t ph = 0; ph < 3; ph++) {
                const double *f = fir + ph * H;
                double acc = 0.0;
                for (int32_t k = 0; k < H; k++) acc += f[k] * w[k];
                acc = fabs(acc);
                if (acc > v[ph + 1]) v[ph + 1] = acc;
            }
            double *dl = dly + (int64_t)c * D;
            double out = dl[dp];
            dl[dp] = x;
            io[(int64_t)c * stride + i] = (float)out;   /* gain applied below */
        }
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
            int32_t back = (head + count - 1) % W;
            if (dqv[back] >= r) count--; else break;
        }
        {
            int32_t slot = (head + count) % W;
            dqv[slot] = r;
            dqi[slot] = t;
            count++;
        }
        while (count > 0 && dqi[head] <= t - (double)W) {
            head = (head + 1) % W;
            count--;
        }
        double m = dqv[head];
        double rel = 1.0 - (1.0 - env) * st[8];
        env = m < rel ? m : rel;
        /* box average over B values of env */
        const int32_t bp = (int32_t)(tt % B);
        box_sum += env - box[bp];
        box[bp] = env;
        double g = box_sum / (double)B;
        if (g > 1.0) g = 1.0;
        for (int32_t c = 0; c < nch; c++) {
            float *x = io + (int64_t)c * stride + i;
            *x = (float)((double)*x * g);
        }
        t += 1.0;
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
    st[14] = gin; st[15] = gin_db;
}
