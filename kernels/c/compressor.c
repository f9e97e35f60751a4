/* Feed-forward compressor after Giannoulis, Massberg and Reiss (JAES 2012):
 * channel-linked peak level in dB, soft-knee gain computer, smoothed
 * branching attack/release on the gain reduction in the dB domain. */
#include <math.h>
#include "rtk.h"

#define RTK_DB_PER_NEPER 8.685889638065035   /* 20 / ln(10) */
#define RTK_LN10_20 0.11512925464970229

static double rtk_time_coef(double ms, double sr)
{
    double n = ms * 0.001 * sr;
    return n < 1e-3 ? 0.0 : exp(-1.0 / n);
}

void rtk_compressor(double *st, float *io, int32_t nch, int32_t stride,
                    int32_t nframes, const float *par, int32_t pstride)
{
    const double sr = st[0];
    const int64_t ps = pstride;
    double env = st[1];
    for (int32_t i = 0; i < nframes; i++) {
        double thr = par[i], ratio = par[ps + i], knee = par[2 * ps + i];
        double att = par[3 * ps + i], rel = par[4 * ps + i];
        double makeup = par[5 * ps + i], mix = par[6 * ps + i];
        if (att != st[2]) { st[2] = att; st[3] = rtk_time_coef(att, sr); }
        if (rel != st[4]) { st[4] = rel; st[5] = rtk_time_coef(rel, sr); }
        double level = 0.0;
        for (int32_t c = 0; c < nch; c++) {
            double a = fabs((double)io[(int64_t)c * stride + i]);
            if (a > level) level = a;
        }
        double xg = level > 1e-10 ? RTK_DB_PER_NEPER * log(level) : -200.0;
        double over = xg - thr, yg;
        if (ratio < 1.0) ratio = 1.0;
        if (2.0 * over < -knee) {
            yg = xg;
        } else if (knee > 0.0 && 2.0 * fabs(over) <= knee) {
            double t = over + 0.5 * knee;
            yg = xg + (1.0 / ratio - 1.0) * t * t / (2.0 * knee);
        } else {
            yg = thr + over / ratio;
        }
        double xl = xg - yg;                        /* wanted reduction, dB */
        double a = xl > env ? st[3] : st[5];
        env = a * env + (1.0 - a) * xl;
        double g = exp((makeup - env) * RTK_LN10_20);
        double k = 1.0 - mix + mix * g;
        for (int32_t c = 0; c < nch; c++) {
            float *x = io + (int64_t)c * stride;
            x[i] = (float)((double)x[i] * k);
        }
    }
    if (!isfinite(env)) env = 0.0;
    st[1] = env;
}
