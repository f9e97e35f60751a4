/* Integer delay line for latency alignment. */
#include "rtk.h"

void rtk_delay(double *st, float *io, int32_t nch, int32_t stride,
               int32_t nframes, const float *par, int32_t pstride)
{
    (void)par; (void)pstride;
    const int32_t d = (int32_t)st[1];
    if (d <= 0) return;
    const int32_t pos0 = (int32_t)st[2];
    double *ring = st + RTK_DELAY_HDR;
    for (int32_t c = 0; c < nch; c++) {
        float *x = io + (int64_t)c * stride;
        double *r = ring + (int64_t)c * d;
        int32_t p = pos0;
        for (int32_t i = 0; i < nframes; i++) {
            double out = r[p];
            r[p] = x[i];
            x[i] = (float)out;
            if (++p == d) p = 0;
        }
    }
    st[2] = (double)((pos0 + (int64_t)nframes) % d);
}
