/* Gain, constant-power pan (centre = unity) and stereo width (mid/side). */
#include <math.h>
#include "rtk.h"

#define RTK_LN10_20 0.11512925464970229   /* ln(10) / 20 */
#define RTK_QPI 0.7853981633974483        /* pi / 4 */
#define RTK_SQRT2 1.4142135623730951

void rtk_gain(double *st, float *io, int32_t nch, int32_t stride,
              int32_t nframes, const float *par, int32_t pstride)
{
    const float *p_gain = par, *p_pan = par + pstride;
    const float *p_width = par + 2 * (int64_t)pstride, *p_inv = par + 3 * (int64_t)pstride;
    const int32_t e = nframes - 1;
    /* Steady block (every lane constant, and gain and pan as cached): the same
     * arithmetic as below without the per-frame checks, so it vectorises.  A
     * ramp is monotone, so equal first and last values mean a constant lane. */
    if (p_gain[0] == p_gain[e] && p_pan[0] == p_pan[e] && p_width[0] == p_width[e] &&
        p_inv[0] == p_inv[e] && (double)p_gain[0] == st[1] && (double)p_pan[0] == st[2]) {
        const double g = st[4] * (1.0 - 2.0 * (double)p_inv[0]);
        const double width = p_width[0], gl = st[5], gr = st[6];
        if (nch == 2) {
            float *l = io, *r = io + stride;
            for (int32_t i = 0; i < nframes; i++) {
                double m = 0.5 * ((double)l[i] + (double)r[i]);
                double s = 0.5 * ((double)l[i] - (double)r[i]) * width;
                l[i] = (float)((m + s) * g * gl);
                r[i] = (float)((m - s) * g * gr);
            }
        } else {
            for (int32_t c = 0; c < nch; c++) {
                float *x = io + (int64_t)c * stride;
                for (int32_t i = 0; i < nframes; i++) x[i] = (float)((double)x[i] * g);
            }
        }
        return;
    }
    for (int32_t i = 0; i < nframes; i++) {
        double gdb = p_gain[i], pan = p_pan[i], width = p_width[i];
        double inv = 1.0 - 2.0 * (double)p_inv[i];   /* smooth polarity flip */
        if (gdb != st[1]) { st[1] = gdb; st[4] = exp(gdb * RTK_LN10_20); }
        if (pan != st[2]) {
            st[2] = pan;
            double a = (pan + 1.0) * RTK_QPI;
            st[5] = RTK_SQRT2 * cos(a);
            st[6] = RTK_SQRT2 * sin(a);
        }
        double g = st[4] * inv;
        if (nch == 2) {
            float *l = io, *r = io + stride;
            double m = 0.5 * ((double)l[i] + (double)r[i]);
            double s = 0.5 * ((double)l[i] - (double)r[i]) * width;
            l[i] = (float)((m + s) * g * st[5]);
            r[i] = (float)((m - s) * g * st[6]);
        } else {
            for (int32_t c = 0; c < nch; c++) {
                float *x = io + (int64_t)c * stride;
                x[i] = (float)((double)x[i] * g);
            }
        }
    }
}
