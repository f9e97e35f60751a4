/* Loudness meter after ITU-R BS.1770-4 and EBU Tech 3341/3342 (layout in rtk.h).
 *
 * The audio is cut at the 10 ms sub-block grid; within a piece each channel is
 * K-weighted and squared (double precision) and scanned for its sample and
 * true peak.  At each sub-block boundary the momentary and short-term values
 * are summed afresh from the ring (no running sum that could drift), and every
 * tenth boundary feeds the gating histograms.  The histograms make the
 * integrated loudness and the loudness range available at any moment of an
 * unbounded live stream in fixed memory; 0.01 LU bins keep the quantisation far
 * below the meters' 0.1 LU tolerance. */
#include <math.h>
#include <string.h>
#include "rtk.h"

#define T RTK_LM_TP_TAPS
#define NB RTK_LM_BINS
#define M_SUBS 40            /* 400 ms */
#define S_SUBS 300           /* 3 s */
#define GATE_STEP 10         /* 100 ms */
#define ABS_GATE (-70.0)
#define OFFSET (-0.691)

static inline double lufs(double power)
{
    return power > 0.0 ? OFFSET + 10.0 * log10(power) : -INFINITY;
}

static inline int32_t bin_of(double l)
{
    double b = floor((l - ABS_GATE) * 100.0);
    return b < 0.0 ? 0 : (b >= NB ? NB - 1 : (int32_t)b);
}

/* First bin whose centre lies above the gate g. */
static inline int32_t first_bin_above(double g)
{
    double b = ceil((g - ABS_GATE) * 100.0 - 0.5);
    return b < 0.0 ? 0 : (b > NB ? NB : (int32_t)b);
}

static inline double bin_centre(int32_t b)
{
    return ABS_GATE + (b + 0.5) * 0.01;
}

typedef struct {
    double *w, *z, *ring, *taps, *hist, *hp, *hc, *sp, *sc;
    int32_t sub, hlen;
} lm_view;

static lm_view lm_regions(double *st)
{
    lm_view v;
    const int32_t nch = (int32_t)st[1];
    v.sub = (int32_t)st[2];
    v.hlen = T - 1 + v.sub;
    v.w = st + RTK_LM_HDR;
    v.z = v.w + nch;
    v.ring = v.z + 4 * nch;
    v.taps = v.ring + RTK_LM_RING;
    v.hist = v.taps + 3 * T;
    v.hp = v.hist + (int64_t)nch * v.hlen;
    v.hc = v.hp + NB;
    v.sp = v.hc + NB;
    v.sc = v.sp + NB;
    return v;
}

static void integrated(double *st, const lm_view *v)
{
    if (st[5] < 1.0) return;
    int32_t b0 = first_bin_above(lufs(st[6] / st[5]) - 10.0);
    double p = 0.0, n = 0.0;
    for (int32_t b = b0; b < NB; b++) { p += v->hp[b]; n += v->hc[b]; }
    st[10] = n > 0.0 ? lufs(p / n) : -INFINITY;
}

static void loudness_range(double *st, const lm_view *v)
{
    if (st[7] < 1.0) return;
    int32_t b0 = first_bin_above(lufs(st[16] / st[7]) - 20.0);
    double n = 0.0;
    for (int32_t b = b0; b < NB; b++) n += v->sc[b];
    if (n < 1.0) { st[11] = 0.0; return; }
    /* nearest-rank percentiles */
    double r10 = ceil(0.10 * n), r95 = ceil(0.95 * n), c = 0.0, lo = 0.0;
    int have_lo = 0;
    for (int32_t b = b0; b < NB; b++) {
        c += v->sc[b];
        if (!have_lo && c >= r10) { lo = bin_centre(b); have_lo = 1; }
        if (c >= r95) { st[11] = bin_centre(b) - lo; return; }
    }
}

/* A sub-block is complete: momentary and short-term, and every 100 ms the
 * gating histograms. */
static void sub_block_done(double *st, const lm_view *v)
{
    const int64_t k = (int64_t)st[4];
    v->ring[k % RTK_LM_RING] = st[17];
    st[17] = 0.0;
    st[4] = (double)(k + 1);
    const int64_t done = k + 1;
    double pm = 0.0, ps = 0.0;
    for (int32_t j = 0; j < S_SUBS; j++) {
        int64_t idx = done - 1 - j;
        if (idx < 0) break;
        double e = v->ring[idx % RTK_LM_RING];
        ps += e;
        if (j < M_SUBS) pm += e;
    }
    pm /= (double)M_SUBS * v->sub;
    ps /= (double)S_SUBS * v->sub;
    double m = lufs(pm), s = lufs(ps);
    st[8] = m;
    st[9] = s;
    if (m > st[14]) st[14] = m;
    if (s > st[15]) st[15] = s;
    if (done % GATE_STEP) return;
    if (done >= M_SUBS && m > ABS_GATE) {
        int32_t b = bin_of(m);
        v->hp[b] += pm;
        v->hc[b] += 1.0;
        st[5] += 1.0;
        st[6] += pm;
        integrated(st, v);
    }
    if (done >= S_SUBS && s > ABS_GATE) {
        int32_t b = bin_of(s);
        v->sp[b] += ps;
        v->sc[b] += 1.0;
        st[7] += 1.0;
        st[16] += ps;
        loudness_range(st, v);
    }
}

/* One piece that does not cross a sub-block boundary. */
static void feed_piece(double *st, const lm_view *v, const float *io, int32_t nch,
                       int32_t stride, int32_t n)
{
    const double *k = st + 18;
    double acc = 0.0, speak = st[13], tpeak = st[12];
    const int32_t fill = (int32_t)st[3];
    for (int32_t c = 0; c < nch; c++) {
        const float *x = io + (int64_t)c * stride;
        double *z = v->z + 4 * c;
        double z0 = z[0], z1 = z[1], z2 = z[2], z3 = z[3], sum = 0.0;
        for (int32_t i = 0; i < n; i++) {
            double in = x[i];
            double y = k[0] * in + z0;                       /* shelf, TDF-II */
            z0 = k[1] * in - k[3] * y + z1;
            z1 = k[2] * in - k[4] * y;
            double u = k[5] * y + z2;                        /* high pass */
            z2 = k[6] * y - k[8] * u + z3;
            z3 = k[7] * y - k[9] * u;
            sum += u * u;
        }
        if (!isfinite(z0 + z1 + z2 + z3)) z0 = z1 = z2 = z3 = 0.0, sum = 0.0;
        z[0] = z0; z[1] = z1; z[2] = z2; z[3] = z3;
        acc += v->w[c] * sum;
        /* peaks: the history holds T - 1 older frames, then this sub-block */
        double *h = v->hist + (int64_t)c * v->hlen;
        double *nw = h + T - 1 + fill;
        for (int32_t i = 0; i < n; i++) {
            double a = x[i];
            nw[i] = isfinite(a) ? a : 0.0;
            a = fabs(nw[i]);
            if (a > speak) speak = a;
        }
        for (int32_t i = 0; i < n; i++) {
            const double *w = h + fill + i;              /* window ending at the new frame */
            for (int32_t p = 0; p < 3; p++) {
                const double *f = v->taps + p * T;
                double s = 0.0;
                for (int32_t j = 0; j < T; j++) s += f[j] * w[j];
                s = fabs(s);
                if (s > tpeak) tpeak = s;
            }
        }
    }
    if (speak > tpeak) tpeak = speak;
    st[12] = tpeak;
    st[13] = speak;
    st[17] += isfinite(acc) ? acc : 0.0;
    st[3] = fill + n;
}

void rtk_lm_feed(double *st, const float *io, int32_t nch, int32_t stride, int32_t nframes)
{
    lm_view v = lm_regions(st);
    int32_t pos = 0;
    while (pos < nframes) {
        int32_t fill = (int32_t)st[3];
        int32_t m = v.sub - fill;
        if (m > nframes - pos) m = nframes - pos;
        feed_piece(st, &v, io + pos, nch, stride, m);
        pos += m;
        if ((int32_t)st[3] == v.sub) {
            sub_block_done(st, &v);
            /* keep the last T - 1 frames as the next sub-block's history */
            for (int32_t c = 0; c < nch; c++) {
                double *h = v.hist + (int64_t)c * v.hlen;
                memmove(h, h + v.sub, (T - 1) * sizeof(double));
            }
            st[3] = 0.0;
        }
    }
}

void rtk_loudness(double *st, float *io, int32_t nch, int32_t stride,
                  int32_t nframes, const float *par, int32_t pstride)
{
    (void)par; (void)pstride;
    rtk_lm_feed(st, io, nch, stride, nframes);
}
