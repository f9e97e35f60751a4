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
