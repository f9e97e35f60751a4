/* Biquad cascade, transposed direct form II with float64 state.
 * Coefficients are designed off the audio thread (kernels/design.py) and
 * published into the blob region of the state; a new generation starts a
 * linear ramp in coefficient space.  Linear interpolation between two stable
 * (a1, a2) pairs stays inside the stability triangle (it is convex), so every
 * intermediate section is stable. */
#include <math.h>
#include <string.h>
#include "rtk.h"

void rtk_biquad(double *st, float *io, int32_t nch, int32_t stride,
                int32_t nframes, const float *par, int32_t pstride)
{
    (void)par; (void)pstride;
    const int32_t nsec = (int32_t)st[1];
    double *blob = st + RTK_BQ_HDR;
    double *target = blob + 2;
    double *cur = blob + RTK_BQ_BLOB(nsec);
    double *step = cur + 5 * nsec;
    double *z = step + 5 * nsec;

    if (blob[0] != st[2]) {                 /* new coefficients published */
        st[2] = blob[0];
        double rl = floor(blob[1]);
        if (rl < 1.0) {
            memcpy(cur, target, sizeof(double) * 5 * nsec);
            st[3] = 0.0;
        } else {
            for (int32_t k = 0; k < 5 * nsec; k++)
                step[k] = (target[k] - cur[k]) / rl;
            st[3] = rl;
        }
    }
    const int32_t ramp = st[3] > (double)nframes ? nframes : (int32_t)st[3];

    for (int32_t s = 0; s < nsec; s++) {
        double *c = cur + 5 * s;
        double *d = step + 5 * s;
        int identity = c[0] == 1.0 && c[1] == 0.0 && c[2] == 0.0 &&
                       c[3] == 0.0 && c[4] == 0.0;
        if (identity && ramp == 0) {
            for (int32_t ch = 0; ch < nch; ch++) {
                z[(ch * nsec + s) * 2] = 0.0;
                z[(ch * nsec + s) * 2 + 1] = 0.0;
            }
            continue;
        }
        if (nch == 2 && ramp == 0) {
            /* stereo, steady coefficients: the two recursions interleaved, so
             * one channel's multiply-adds fill the other's latency */
            float *x0 = io, *x1 = io + stride;
            double *za = z + s * 2, *zb = z + (nsec + s) * 2;
            double a1z = za[0], a2z = za[1], b1z = zb[0], b2z = zb[1];
            const double b0 = c[0], b1 = c[1], b2 = c[2], a1 = c[3], a2 = c[4];
            for (int32_t i = 0; i < nframes; i++) {
                double u = x0[i], v = x1[i];
                double yu = b0 * u + a1z, yv = b0 * v + b1z;
                a1z = b1 * u - a1 * yu + a2z;
                b1z = b1 * v - a1 * yv + b2z;
                a2z = b2 * u - a2 * yu;
                b2z = b2 * v - a2 * yv;
                x0[i] = (float)yu;
                x1[i] = (float)yv;
            }
            if (!isfinite(a1z) || !isfinite(a2z)) { a1z = 0.0; a2z = 0.0; }
            if (!isfinite(b1z) || !isfinite(b2z)) { b1z = 0.0; b2z = 0.0; }
            za[0] = a1z; za[1] = a2z; zb[0] = b1z; zb[1] = b2z;
            continue;
        }
        for (int32_t ch = 0; ch < nch; ch++) {
            float *x = io + (int64_t)ch * stride;
            double *zz = z + (ch * nsec + s) * 2;
            double z1 = zz[0], z2 = zz[1];
            int32_t i = 0;
            for (; i < ramp; i++) {
                double k = (double)(i + 1);
                double b0 = c[0] + d[0] * k, b1 = c[1] + d[1] * k, b2 = c[2] + d[2] * k;
                double a1 = c[3] + d[3] * k, a2 = c[4] + d[4] * k;
                double in = x[i];
                double y = b0 * in + z1;
                z1 = b1 * in - a1 * y + z2;
                z2 = b2 * in - a2 * y;
                x[i] = (float)y;
            }
            double b0, b1, b2, a1, a2;
            if (ramp > 0 && ramp == (int32_t)st[3]) {   /* ramp ends in this block */
                double *t = target + 5 * s;
                b0 = t[0]; b1 = t[1]; b2 = t[2]; a1 = t[3]; a2 = t[4];
            } else {
                double k = (double)ramp;
                b0 = c[0] + d[0] * k; b1 = c[1] + d[1] * k; b2 = c[2] + d[2] * k;
                a1 = c[3] + d[3] * k; a2 = c[4] + d[4] * k;
            }
            for (; i < nframes; i++) {
                double in = x[i];
                double y = b0 * in + z1;
                z1 = b1 * in - a1 * y + z2;
                z2 = b2 * in - a2 * y;
                x[i] = (float)y;
            }
            if (!isfinite(z1) || !isfinite(z2)) { z1 = 0.0; z2 = 0.0; }
            zz[0] = z1; zz[1] = z2;
        }
    }
    /* advance the ramp */
    if (ramp > 0) {
        if (ramp == (int32_t)st[3]) {
            memcpy(cur, target, sizeof(double) * 5 * nsec);
            st[3] = 0.0;
        } else {
            for (int32_t k = 0; k < 5 * nsec; k++)
                cur[k] += step[k] * (double)ramp;
            st[3] -= (double)ramp;
        }
    }
}
