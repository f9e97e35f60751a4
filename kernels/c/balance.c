/* Balance: measure the long-term third-octave spectrum, correct it toward a
 * target with a cascade of peaking filters (layout and method in rtk.h).
 *
 * The block is cut at hop boundaries.  Each piece is copied into the analysis
 * buffers (the input, before correction) and filtered with the current
 * cascade; at a boundary one analysis frame updates the measured spectrum and
 * publishes new coefficients into the cascade's blob, which rtk_biquad ramps
 * to over the next hop.  New coefficients therefore take effect on the same
 * sample whatever the host's block size.
 *
 * The analysis of a frame is spread over the hop that follows it, so no block
 * carries all of it: stage k runs at sample k * H/8 after the boundary (stage
 * 0 at the boundary itself): one stage per channel (or mid, side) for its FFT,
 * then one per stream to update the measurement and publish.  The input keeps
 * N + H samples per channel, so the frame stays intact while the next hop
 * arrives behind it.  Stage positions are cut points like the boundary. */
#include <fftw3.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "rtk.h"

#define GATE_MS 1e-7           /* mean square under -70 dBFS: silence, not measured */
#define REFINE 2

typedef struct {
    double *win, *in, *spec, *frame, *edges, *target, *ph, *binv, *meas, *corr, *cmd, *coef, *pw;
    double *casc_a, *casc_b;
    int32_t n, h, nb, k;
} bal_view;

static bal_view bal_regions(double *st)
{
    bal_view v;
    const int32_t nch = (int32_t)st[1];
    v.n = (int32_t)st[2];
    v.h = (int32_t)st[3];
    v.nb = (int32_t)st[7];
    v.k = v.n / 2 + 1;
    v.win = st + RTK_BAL_HDR;
    v.in = v.win + v.n;
    v.spec = v.in + (int64_t)nch * (v.n + v.h);
    v.frame = v.spec + 2 * v.k;
    v.edges = v.frame + v.n;
    v.target = v.edges + v.nb + 1;
    v.ph = v.target + v.nb;
    v.binv = v.ph + 4 * v.nb;
    v.meas = v.binv + (int64_t)v.nb * v.nb;
    v.corr = v.meas + 2 * v.nb;
    v.cmd = v.corr + 2 * v.nb;
    v.coef = v.cmd + 2 * v.nb;
    v.pw = v.coef + 5 * v.nb;
    v.casc_a = st + (int64_t)st[12];
    v.casc_b = st + (int64_t)st[13];
    return v;
}

static inline void *plan_at(const double *slot)
{
    void *p;
    memcpy(&p, slot, sizeof p);
    return p;
}

int32_t rtk_bal_plan(double *st)
{
    bal_view v = bal_regions(st);
    /* SIMD (twice as fast here) when the buffers are aligned, as numpy's
     * allocations and the even offsets of the layout make them */
    unsigned flags = FFTW_ESTIMATE;
    if (fftw_alignment_of(v.frame) || fftw_alignment_of(v.spec)) flags |= FFTW_UNALIGNED;
    fftw_plan f = fftw_plan_dft_r2c_1d(v.n, v.frame, (fftw_complex *)v.spec, flags);
    if (!f) return -1;
    memcpy(st + 6, &f, sizeof f);
    return 0;
}

void rtk_bal_unplan(double *st)
{
    fftw_plan f = plan_at(st + 6);
    if (f) fftw_destroy_plan(f);
    memset(st + 6, 0, sizeof(double));
}

/* Section of band b with gain g dB into c[0..4] (b0 b1 b2 a1 a2): a low shelf
 * at the lowest band, a high shelf at the highest (so a correction carries on
 * beyond the range), peaking filters between (RBJ cookbook forms). */
static void peak(const bal_view *v, double q, int32_t b, double g, double *c)
{
    const double cw = v->ph[4 * b], sw = v->ph[4 * b + 1];
    const double a = pow(10.0, g / 40.0);
    double n0, n1, n2, d0, d1, d2;
    if (b == 0 || b == v->nb - 1) {
        const double alpha = sw / (2.0 * RTK_BAL_SHELF_Q), sa = 2.0 * sqrt(a) * alpha;
        const double s = b == 0 ? 1.0 : -1.0;          /* low : high shelf */
        n0 = a * ((a + 1.0) - s * (a - 1.0) * cw + sa);
        n1 = s * 2.0 * a * ((a - 1.0) - s * (a + 1.0) * cw);
        n2 = a * ((a + 1.0) - s * (a - 1.0) * cw - sa);
        d0 = (a + 1.0) + s * (a - 1.0) * cw + sa;
        d1 = -s * 2.0 * ((a - 1.0) + s * (a + 1.0) * cw);
        d2 = (a + 1.0) + s * (a - 1.0) * cw - sa;
    } else {
        const double alpha = sw / (2.0 * q);
        n0 = 1.0 + alpha * a; n1 = -2.0 * cw; n2 = 1.0 - alpha * a;
        d0 = 1.0 + alpha / a; d1 = -2.0 * cw; d2 = 1.0 - alpha / a;
    }
    c[0] = n0 / d0;
    c[1] = n1 / d0;
    c[2] = n2 / d0;
    c[3] = d1 / d0;
    c[4] = d2 / d0;
}

/* Response (dB) of the cascade of peaks with gains cmd at every band centre. */
static void response(const bal_view *v, double q, const double *cmd, double *out)
{
    for (int32_t b = 0; b < v->nb; b++) peak(v, q, b, cmd[b], v->coef + 5 * b);
    for (int32_t i = 0; i < v->nb; i++) {
        const double c1 = v->ph[4 * i], s1 = v->ph[4 * i + 1];
        const double c2 = v->ph[4 * i + 2], s2 = v->ph[4 * i + 3];
        double db = 0.0;
        for (int32_t b = 0; b < v->nb; b++) {
            const double *c = v->coef + 5 * b;
            double nr = c[0] + c[1] * c1 + c[2] * c2, ni = -(c[1] * s1 + c[2] * s2);
            double dr = 1.0 + c[3] * c1 + c[4] * c2, di = -(c[3] * s1 + c[4] * s2);
            db += 10.0 * log10((nr * nr + ni * ni) / (dr * dr + di * di));
        }
        out[i] = db;
    }
}

/* Command gains for the wanted correction d (dB per band), published into a
 * cascade's blob with a ramp of one hop. */
static void publish(double *st, const bal_view *v, const double *d, double *cmd, double *casc)
{
    const int32_t nb = v->nb;
    const double q = st[8];
    double resp[64], err[64];
    for (int32_t i = 0; i < nb; i++) {
        double s = 0.0;
        for (int32_t j = 0; j < nb; j++) s += v->binv[(int64_t)i * nb + j] * d[j];
        cmd[i] = s;
    }
    for (int32_t r = 0; r < REFINE; r++) {
        response(v, q, cmd, resp);
        for (int32_t j = 0; j < nb; j++) err[j] = d[j] - resp[j];
        for (int32_t i = 0; i < nb; i++) {
            double s = 0.0;
            for (int32_t j = 0; j < nb; j++) s += v->binv[(int64_t)i * nb + j] * err[j];
            cmd[i] += s;
            if (cmd[i] > 30.0) cmd[i] = 30.0;
            if (cmd[i] < -30.0) cmd[i] = -30.0;
        }
    }
    double *blob = casc + RTK_BQ_HDR;
    for (int32_t b = 0; b < nb; b++) peak(v, q, b, cmd[b], blob + 2 + 5 * b);
    blob[1] = v->h;
    st[11] += 1.0;
    blob[0] = st[11];
}

/* One analysis frame for stream s (0 linked or mid, 1 side) of the power
 * spectrum in v->frame[0..k): update the measurement and the correction. */
static void update(double *st, const bal_view *v, int32_t s, const double *pw, double mean_sq,
                   const float *par, int64_t ps, int32_t at)
{
    const int32_t nb = v->nb;
    double *meas = v->meas + s * nb, *corr = v->corr + s * nb, *cmd = v->cmd + s * nb;
    double *count = st + 9 + s;
    if (mean_sq < GATE_MS) return;
    double speed = par[3 * ps + at];
    double a = 1.0 - exp(-v->h / (st[0] * (speed > 0.05 ? speed : 0.05)));
    for (int32_t b = 0; b < nb; b++) {
        double p = 0.0;
        for (int32_t i = (int32_t)v->edges[b]; i < (int32_t)v->edges[b + 1]; i++) p += pw[i];
        meas[b] = *count < 1.0 ? p : meas[b] + a * (p - meas[b]);
    }
    *count += 1.0;
    double amount = par[at], boost = par[ps + at], cut = par[2 * ps + at];
    double mean = 0.0;
    for (int32_t b = 0; b < nb; b++) {            /* the frame buffer as scratch */
        v->frame[b] = v->target[b] - 10.0 * log10(meas[b] + 1e-30);
        mean += v->frame[b];
    }
    mean /= nb;
    /* the correction applied moves toward the one wanted with the same time
     * constant as the measurement: slowly from the first frame on */
    for (int32_t b = 0; b < nb; b++) {
        double c = amount * (v->frame[b] - mean);
        c = c > boost ? boost : (c < -cut ? -cut : c);
        corr[b] += a * (c - corr[b]);
    }
    publish(st, v, corr, cmd, s == 0 ? v->casc_a : v->casc_b);
}

/* Stage k of the frame in v->in[0..N) of each channel (see the top). */
static void stage(double *st, const bal_view *v, int32_t nch, int32_t k, const float *par,
                  int64_t ps, int32_t at)
{
    const int32_t n = v->n, kb = v->k, stride = n + v->h;
    const int ms = st[17] != 0.0;
    const int32_t chans = ms ? 2 : nch, streams = ms ? 2 : 1;
    if (k < chans) {                               /* the FFT of one channel (or mid, side) */
        fftw_plan f = plan_at(st + 6);
        const int32_t s = ms ? k : 0;
        const double *l = v->in, *r = v->in + stride, *x = v->in + (int64_t)k * stride;
        double msq = 0.0;
        for (int32_t i = 0; i < n; i++) {
            double u = ms ? (k == 0 ? 0.5 * (l[i] + r[i]) : 0.5 * (l[i] - r[i])) : x[i];
            msq += u * u;
            v->frame[i] = v->win[i] * u;
        }
        st[18 + s] += msq;
        fftw_execute_dft_r2c(f, v->frame, (fftw_complex *)v->spec);
        double *pw = v->pw + (int64_t)s * kb;
        for (int32_t i = 0; i < kb; i++)
            pw[i] += v->spec[2 * i] * v->spec[2 * i] + v->spec[2 * i + 1] * v->spec[2 * i + 1];
    } else if (k < chans + streams) {             /* one stream's measurement and filters */
        const int32_t s = k - chans;
        if (par[4 * ps + at] < 0.5f)               /* not frozen */
            update(st, v, s, v->pw + (int64_t)s * kb,
                   st[18 + s] / ((double)n * (ms ? 1 : nch)), par, ps, at);
    }
    if (k + 1 < chans + streams) {
        st[16] = k + 2;                            /* stage k + 1 pending */
    } else {
        st[16] = 0.0;
        st[5] += 1.0;
    }
}

void rtk_balance(double *st, float *io, int32_t nch, int32_t stride,
                 int32_t nframes, const float *par, int32_t pstride)
{
    if (!plan_at(st + 6)) return;
    bal_view v = bal_regions(st);
    const int32_t n = v.n, h = v.h, gap = v.h / 8, cs = n + h;
    const int64_t ps = pstride;
    int32_t pos = 0;
    while (pos < nframes) {
        int32_t fill = (int32_t)st[4];
        const int32_t pending = (int32_t)st[16] - 1;           /* stage waiting, or -1 */
        int32_t until = pending >= 0 && pending * gap < h ? pending * gap : h;
        int32_t m = until - fill;
        if (m > nframes - pos) m = nframes - pos;
        const int ms = nch == 2 && par[5 * ps + pos] >= 0.5f;
        if ((double)ms != st[14]) {         /* mode switched: measure afresh */
            st[14] = ms;
            st[9] = st[10] = 0.0;
            st[16] = 0.0;                   /* the frame under way was the other mode's */
        }
        for (int32_t c = 0; c < nch; c++) {
            double *in = v.in + (int64_t)c * cs;
            const float *x = io + (int64_t)c * stride + pos;
            for (int32_t i = 0; i < m; i++) {
                double a = x[i];
                in[n + fill + i] = isfinite(a) ? a : 0.0;
            }
        }
        if (ms) {
            float *l = io + pos, *r = io + stride + pos;
            for (int32_t i = 0; i < m; i++) {
                float mid = 0.5f * (l[i] + r[i]), side = 0.5f * (l[i] - r[i]);
                l[i] = mid;
                r[i] = side;
            }
            rtk_biquad(v.casc_a, l, 1, stride, m, par, pstride);
            rtk_biquad(v.casc_b, r, 1, stride, m, par, pstride);
            for (int32_t i = 0; i < m; i++) {
                float mid = l[i], side = r[i];
                l[i] = mid + side;
                r[i] = mid - side;
            }
        } else {
            rtk_biquad(v.casc_a, io + pos, nch, stride, m, par, pstride);
        }
        pos += m;
        fill += m;
        if ((int32_t)st[16] - 1 == pending && pending >= 0 && fill == pending * gap)
            stage(st, &v, nch, pending, par, ps, pos - 1);
        if (fill < h) {
            st[4] = fill;
            continue;
        }
        /* a boundary: the last N samples are the new frame; its stage 0 now */
        st[4] = 0.0;
        for (int32_t c = 0; c < nch; c++) {
            double *in = v.in + (int64_t)c * cs;
            memmove(in, in + h, (size_t)n * sizeof(double));
        }
        memset(v.pw, 0, sizeof(double) * 2 * (size_t)v.k);
        st[17] = ms;
        st[18] = st[19] = 0.0;
        stage(st, &v, nch, 0, par, ps, pos - 1);
    }
}
