/* Feed-forward compressor after Giannoulis, Massberg and Reiss (JAES 2012):
 * channel-linked peak level in dB, soft-knee gain computer, smoothed
 * branching attack/release on the gain reduction in the dB domain.
 *
 * Four passes over the block: levels (independent log calls), the gain
 * computer and smoothing (the only recursion, branch-free), gains
 * (independent exp calls), and their application.  A block whose lanes are
 * all constant skips the per-frame parameter checks. */
#include <math.h>
#include "rtk.h"

#define RTK_DB_PER_NEPER 8.685889638065035   /* 20 / ln(10) */
#define RTK_LN10_20 0.11512925464970229
#define RTK_FLOOR 1e-10                       /* -200 dBFS */

static double rtk_time_coef(double ms, double sr)
{
    double n = ms * 0.001 * sr;
    return n < 1e-3 ? 0.0 : exp(-1.0 / n);
}

/* Gain reduction wanted (dB, >= 0) for a level of xg dB. */
static inline double rtk_comp_reduction(double xg, double thr, double inv_ratio_m1,
                                        double knee, double inv_2knee)
{
    double over = xg - thr;
    double t = over + 0.5 * knee;
    double in_knee = inv_ratio_m1 * t * t * inv_2knee;     /* yg - xg inside the knee */
    double above = over * inv_ratio_m1;                   /* yg - xg above it */
    double d = 2.0 * over < -knee ? 0.0 : (2.0 * fabs(over) <= knee ? in_knee : above);
    return -d;
}

void rtk_compressor(double *st, float *io, int32_t nch, int32_t stride,
                    int32_t nframes, const float *par, int32_t pstride)
{
    const double sr = st[0];
    const int32_t mb = (int32_t)st[6];
    double *lvl = st + RTK_COMP_STATE;             /* mb: level (dB), then gain factor */
    if (nframes > mb) nframes = mb;                 /* the runner never asks for more */
    const int64_t ps = pstride;
    const int32_t e = nframes - 1;
    int steady = 1;
    for (int32_t k = 0; k < 7; k++) steady &= par[k * ps] == par[k * ps + e];
    steady &= (double)par[3 * ps] == st[2] && (double)par[4 * ps] == st[4];

    /* pass 1: linked peak level in dB.  The log calls are independent of one
     * another here, so they overlap; inside the recursion they would not. */
    for (int32_t i = 0; i < nframes; i++) {
        double level = 0.0;
        for (int32_t c = 0; c < nch; c++) {
            double a = fabs((double)io[(int64_t)c * stride + i]);
            level = a > level ? a : level;
        }
        lvl[i] = RTK_DB_PER_NEPER * log(level > RTK_FLOOR ? level : RTK_FLOOR);
    }
    /* pass 2: gain computer and attack/release smoothing (the recursion);
     * leaves the gain in dB in lvl */
    double env = st[1];
    double thr = par[0], knee = par[2 * ps], makeup = par[5 * ps];
    double inv_ratio_m1 = 1.0 / (par[ps] < 1.0f ? 1.0 : (double)par[ps]) - 1.0;
    double inv_2knee = knee > 0.0 ? 0.5 / knee : 0.0;
    for (int32_t i = 0; i < nframes; i++) {
        if (!steady) {
            thr = par[i]; knee = par[2 * ps + i]; makeup = par[5 * ps + i];
            double ratio = par[ps + i];
            inv_ratio_m1 = 1.0 / (ratio < 1.0 ? 1.0 : ratio) - 1.0;
            inv_2knee = knee > 0.0 ? 0.5 / knee : 0.0;
            double att = par[3 * ps + i], rel = par[4 * ps + i];
            if (att != st[2]) { st[2] = att; st[3] = rtk_time_coef(att, sr); }
            if (rel != st[4]) { st[4] = rel; st[5] = rtk_time_coef(rel, sr); }
        }
        double xl = rtk_comp_reduction(lvl[i], thr, inv_ratio_m1, knee, inv_2knee);
        double a = xl > env ? st[3] : st[5];
        env = a * env + (1.0 - a) * xl;
        lvl[i] = makeup - env;
    }
    if (!isfinite(env)) env = 0.0;
    st[1] = env;
    /* pass 3: gain factor with dry/wet mix; pass 4: apply */
    const float *p_mix = par + 6 * ps;
    for (int32_t i = 0; i < nframes; i++) {
        double mix = p_mix[i];
        lvl[i] = 1.0 - mix + mix * exp(lvl[i] * RTK_LN10_20);
    }
    for (int32_t c = 0; c < nch; c++) {
        float *x = io + (int64_t)c * stride;
        for (int32_t i = 0; i < nframes; i++) x[i] = (float)((double)x[i] * lvl[i]);
    }
}
