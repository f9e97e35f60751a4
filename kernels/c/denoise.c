/* Spectral denoiser (layout and method in rtk.h).
 *
 * Low delay with good frequency resolution: the analysis window is long (N)
 * and asymmetric, the synthesis window short (2H) and placed at the frame's
 * end, their product a Hann window of 2H (Mauler and Martin 2007), so the
 * latency is 2H while the spectrum resolves N/2 bins.
 *
 * The audio is cut at hop boundaries: within a hop the new input is appended
 * to each channel's frame buffer and the output is read from the last
 * frame's completed hop, so any block size gives the same samples.  At a hop
 * boundary one STFT frame is analysed, the noise estimate and the gains are
 * updated and the frame is resynthesised by overlap-add.  All arithmetic is in
 * double precision; FFTW executes plans made on the control thread. */
#include <fftw3.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "rtk.h"

#define EPS 1e-30
#define XI_MIN 0.0031622776601683794      /* a priori SNR floor, -25 dB */
#define LN10_20 0.11512925464970229
#define BIAS 8.0               /* cap on the noise estimate: BIAS x the tracked minimum */
#define LIFT 1.5               /* and its floor: LIFT x the minimum (a rise is followed) */
#define Q_ABSENT 0.2           /* a priori probability of speech absence (gain) */
#define XI_H1 31.622776601683793          /* SNR assumed where speech is present, 15 dB */
#define P_STUCK 0.99           /* presence above this for long is capped (never stuck) */

/* time constants (s): power smoothing for the minimum; the noise update and
 * the smoothed presence, from their published per-frame constants at a 16 ms
 * frame step (0.9, 0.9); decision-directed a priori SNR (chosen on the
 * development speech: faster than the classic 0.98 at 8 ms, it keeps more of
 * the speech's onsets: STOI +0.01; 0.15 s with the -25 dB default floor) */
#define TAU_S 0.05
#define TAU_N 0.15186
#define TAU_PB 0.15186
#define TAU_DD 0.15

typedef struct {
    double *win, *wsyn, *S, *Smin, *Stmp, *p, *lam, *a2, *g, *frame, *spec, *pw;
    int32_t n, h, k;
} dn_view;

static dn_view dn_regions(double *st)
{
    dn_view v;
    const int32_t nch = (int32_t)st[1];
    v.n = (int32_t)st[2];
    v.h = (int32_t)st[3];
    v.k = (int32_t)st[8];
    v.win = st + RTK_DN_HDR;
    v.wsyn = v.win + v.n;
    double *bins = v.wsyn + 2 * v.h + (int64_t)nch * (v.n + 3 * v.h);
    v.S = bins;
    v.Smin = bins + v.k;
    v.Stmp = bins + 2 * v.k;
    v.p = bins + 3 * v.k;
    v.lam = bins + 4 * v.k;
    v.a2 = bins + 5 * v.k;
    v.g = bins + 6 * v.k;
    v.frame = bins + 7 * v.k;
    v.spec = v.frame + v.n;
    v.pw = v.spec + (int64_t)nch * 2 * v.k;
    return v;
}

static inline double *chan_in(const dn_view *v, int32_t c)
{
    return v->wsyn + 2 * v->h + (int64_t)c * (v->n + 3 * v->h);
}

static inline void *plan_at(const double *slot)
{
    void *p;
    memcpy(&p, slot, sizeof p);
    return p;
}

/* Exponential integral E1(x), x > 0 (Abramowitz and Stegun 5.1.53, 5.1.56). */
static inline double expint_e1(double x)
{
    if (x < 1e-300) x = 1e-300;
    if (x <= 1.0)
        return -log(x) - 0.57721566 + x * (0.99999193 + x * (-0.24991055 + x * (0.05519968
               + x * (-0.00976004 + x * 0.00107857))));
    double num = x * x + 2.334733 * x + 0.250621;
    double den = x * x + 3.330657 * x + 1.681534;
    return num / (den * x) * exp(-x);
}

int32_t rtk_dn_plan(double *st)
{
    dn_view v = dn_regions(st);
    unsigned flags = FFTW_ESTIMATE;            /* SIMD when the buffers are aligned */
    if (fftw_alignment_of(v.frame) || fftw_alignment_of(v.spec)) flags |= FFTW_UNALIGNED;
    fftw_plan f = fftw_plan_dft_r2c_1d(v.n, v.frame, (fftw_complex *)v.spec, flags);
    fftw_plan b = fftw_plan_dft_c2r_1d(v.n, (fftw_complex *)v.spec, v.frame, flags);
    if (!f || !b) {
        if (f) fftw_destroy_plan(f);
        if (b) fftw_destroy_plan(b);
        return -1;
    }
    memcpy(st + 6, &f, sizeof f);
    memcpy(st + 7, &b, sizeof b);
    return 0;
}

void rtk_dn_unplan(double *st)
{
    fftw_plan f = plan_at(st + 6), b = plan_at(st + 7);
    if (f) fftw_destroy_plan(f);
    if (b) fftw_destroy_plan(b);
    memset(st + 6, 0, 2 * sizeof(double));
}

/* The learned band gains (layout in rtk.h): per frame, features of the
 * statistical stage in bands up to 8 kHz go through a GRU whose sigmoid
 * outputs, times the model's largest gain, are band gains; interpolated
 * across the bins, they are combined with the statistical gain in the log
 * domain, with weights from the model file (above 8 kHz the statistical gain
 * alone).  The network's weights are in the state; it runs in place. */
typedef struct {
    int32_t nb, nf, hid, top, use;
    double mix_l, mix_s, gmax;
    const double *edges, *lo, *w, *mu, *sd, *w1, *b1, *wih, *bih, *whh, *bhh, *w2, *b2;
    double *h, *x, *gi, *gh, *feat, *gb, *lgs;
} dn_net;

#define FEAT_EPS 1e-10
#define LN_GL_MIN -13.815510557964274     /* log(1e-6) */

static int dn_net_view(double *st, int32_t k, dn_net *m)
{
    const int64_t r = (int64_t)st[11];
    if (r <= 0) return 0;
    double *p = st + r;
    m->nb = (int32_t)p[0];
    m->nf = (int32_t)p[1];
    m->hid = (int32_t)p[2];
    m->top = (int32_t)p[3];
    m->use = p[4] >= 0.5;
    m->mix_l = p[5];
    m->mix_s = p[6];
    m->gmax = p[7];
    const int64_t nb = m->nb, nf = m->nf, hid = m->hid;
    p += RTK_DNL_HDR;
    m->edges = p; p += nb + 1;
    m->lo = p; p += k;
    m->w = p; p += k;
    m->mu = p; p += nf;
    m->sd = p; p += nf;
    m->w1 = p; p += hid * nf;
    m->b1 = p; p += hid;
    m->wih = p; p += 3 * hid * hid;
    m->bih = p; p += 3 * hid;
    m->whh = p; p += 3 * hid * hid;
    m->bhh = p; p += 3 * hid;
    m->w2 = p; p += nb * hid;
    m->b2 = p; p += nb;
    m->h = p; p += hid;
    m->x = p; p += hid;
    m->gi = p; p += 3 * hid;
    m->gh = p; p += 3 * hid;
    m->feat = p; p += nf;
    m->gb = p; p += nb;
    m->lgs = p;
    return 1;
}

static inline double sigm(double x) { return 1.0 / (1.0 + exp(-x)); }

/* Features (per band: posterior SNR, input and noise shape in log10 power,
 * the mean statistical log gain lgf) into m->feat, then, when the network is
 * in use, one GRU step into m->gb. */
static void dn_net_run(dn_net *m, const double *pw, const double *lam, const double *lgf,
                       double inv_nch)
{
    const int32_t nb = m->nb, nf = m->nf, hid = m->hid;
    double *f = m->feat, ma = 0.0, mc = 0.0;
    for (int32_t b = 0; b < nb; b++) {
        const int32_t e0 = (int32_t)m->edges[b], e1 = (int32_t)m->edges[b + 1];
        double ep = 0.0, el = 0.0, lg = 0.0;
        for (int32_t i = e0; i < e1; i++) {
            ep += pw[i];
            el += lam[i];
            lg += lgf[i];
        }
        const double a = log10(ep * inv_nch + FEAT_EPS), c = log10(el * inv_nch + FEAT_EPS);
        f[b] = a - c;
        f[nb + b] = a;
        f[2 * nb + b] = c;
        f[3 * nb + b] = lg / (e1 - e0);
        ma += a;
        mc += c;
    }
    ma /= nb;
    mc /= nb;
    for (int32_t b = 0; b < nb; b++) {
        f[nb + b] -= ma;
        f[2 * nb + b] -= mc;
    }
    if (!m->use) return;
    double *z = m->gh;                         /* normalised features (scratch) */
    for (int32_t j = 0; j < nf; j++) z[j] = (f[j] - m->mu[j]) / m->sd[j];
    for (int32_t j = 0; j < hid; j++) {
        const double *row = m->w1 + (int64_t)j * nf;
        double s = m->b1[j];
        for (int32_t i = 0; i < nf; i++) s += row[i] * z[i];
        m->x[j] = tanh(s);
    }
    for (int32_t j = 0; j < 3 * hid; j++) {
        const double *ri = m->wih + (int64_t)j * hid, *rh = m->whh + (int64_t)j * hid;
        double si = m->bih[j], sh = m->bhh[j];
        for (int32_t i = 0; i < hid; i++) {
            si += ri[i] * m->x[i];
            sh += rh[i] * m->h[i];
        }
        m->gi[j] = si;
        m->gh[j] = sh;
    }
    for (int32_t j = 0; j < hid; j++) {         /* gates in PyTorch's order: r, z, n */
        const double r = sigm(m->gi[j] + m->gh[j]);
        const double u = sigm(m->gi[hid + j] + m->gh[hid + j]);
        const double c = tanh(m->gi[2 * hid + j] + r * m->gh[2 * hid + j]);
        double hn = (1.0 - u) * c + u * m->h[j];
        m->h[j] = isfinite(hn) ? hn : 0.0;
    }
    for (int32_t b = 0; b < nb; b++) {
        const double *row = m->w2 + (int64_t)b * hid;
        double s = m->b2[b];
        for (int32_t i = 0; i < hid; i++) s += row[i] * m->h[i];
        m->gb[b] = m->gmax * sigm(s);
    }
}

/* Noise tracking and gains for the summed power spectrum in v->pw. */
static void dn_gains(double *st, const dn_view *v, double amount, double floor_db,
                     double adapt_s, int learn)
{
    const int32_t k = v->k;
    const double hop_s = v->h / st[0];
    const double a_s = exp(-hop_s / TAU_S), a_n = exp(-hop_s / TAU_N);
    const double a_pb = exp(-hop_s / TAU_PB), a_dd = exp(-hop_s / TAU_DD);
    const double *pw = v->pw;
    /* the estimates start over on every frame until the input has filled one
     * whole frame: earlier frames hold the zeros the buffer started with, and
     * a minimum taken from them would hold the noise estimate down for a
     * whole search window (seconds of noise let through after a start) */
    const int first = st[5] < (double)(v->n / v->h);
    /* the minimum is searched over adapt_s: two half windows */
    int32_t half = (int32_t)(0.5 * adapt_s / hop_s);
    if (half < 4) half = 4;
    st[10] = half;
    int new_window = 0;
    st[9] += 1.0;
    if (st[9] >= half) { st[9] = 0.0; new_window = 1; }
    if (learn) st[12] = first ? 1.0 : st[12] + 1.0;     /* the frames the mean holds */
    else st[12] = 0.0;
    for (int32_t i = 0; i < k; i++) {
        if (first) {
            v->S[i] = v->Smin[i] = v->Stmp[i] = pw[i] + EPS;
            v->lam[i] = pw[i] + EPS;
            v->a2[i] = 0.0;
            v->p[i] = 0.0;
            continue;
        }
        double s = a_s * v->S[i] + (1.0 - a_s) * pw[i];
        v->S[i] = s;
        if (learn) {                       /* every frame is noise: the running mean */
            v->Smin[i] = v->Stmp[i] = s;
            v->p[i] = 0.0;
            v->lam[i] += (pw[i] - v->lam[i]) / st[12];
        } else {
            if (new_window) {
                v->Smin[i] = v->Stmp[i] < s ? v->Stmp[i] : s;
                v->Stmp[i] = s;
            } else {
                if (s < v->Smin[i]) v->Smin[i] = s;
                if (s < v->Stmp[i]) v->Stmp[i] = s;
            }
            /* speech presence probability given the last estimate, at a fixed
             * a priori SNR where present; the noise power expected under it
             * updates the estimate (Gerkmann and Hendriks 2012) */
            double r = pw[i] / v->lam[i] * (XI_H1 / (1.0 + XI_H1));
            double post = 1.0 / (1.0 + (1.0 + XI_H1) * exp(-(r < 500.0 ? r : 500.0)));
            v->p[i] = a_pb * v->p[i] + (1.0 - a_pb) * post;
            if (v->p[i] > P_STUCK && post > P_STUCK) post = P_STUCK;
            double expect = (1.0 - post) * pw[i] + post * v->lam[i];
            double lam = a_n * v->lam[i] + (1.0 - a_n) * expect;
            double cap = BIAS * v->Smin[i], lift = LIFT * v->Smin[i];
            v->lam[i] = lam < cap ? (lam > lift ? lam : lift) : cap;
        }
        if (!(v->lam[i] > EPS)) v->lam[i] = EPS;
    }
    /* the estimate the gains use: smoothed over 5 bins */
    double *lam = v->frame;
    for (int32_t i = 0; i < k; i++) {
        int32_t a = i - 2 < 0 ? 0 : i - 2, b = i + 2 >= k ? k - 1 : i + 2;
        double sum = 0.0;
        for (int32_t j = i - 2; j <= i + 2; j++) sum += v->lam[j < a ? a : (j > b ? b : j)];
        lam[i] = 0.2 * sum;
    }
    const double gmin = exp(floor_db * LN10_20), ln_gmin = floor_db * LN10_20;
    const double q_ratio = Q_ABSENT / (1.0 - Q_ABSENT);
    dn_net m;
    const int net = dn_net_view(st, k, &m);
    const double fmin = exp(RTK_DNL_FEATURE_FLOOR_DB * LN10_20);
    const double ln_fmin = RTK_DNL_FEATURE_FLOOR_DB * LN10_20;
    for (int32_t i = 0; i < k; i++) {
        double gamma = pw[i] / lam[i];
        double xi = a_dd * v->a2[i] / lam[i] + (1.0 - a_dd) * (gamma > 1.0 ? gamma - 1.0 : 0.0);
        if (xi < XI_MIN) xi = XI_MIN;
        double w = xi / (1.0 + xi), u = w * gamma;
        double g = w * exp(0.5 * expint_e1(u));
        if (!(g < 1.0)) g = 1.0;
        v->a2[i] = g * g * pw[i];
        /* speech presence probability (OM-LSA): gain g where speech is present,
         * the floor where it is absent, mixed in the log domain */
        double pr = 1.0 / (1.0 + q_ratio * (1.0 + xi) * exp(-(u < 500.0 ? u : 500.0)));
        double lg = pr * log(g > gmin ? g : gmin) + (1.0 - pr) * ln_gmin;
        if (net) {                  /* for the network: lg at a fixed floor, in g for now */
            m.lgs[i] = lg;
            v->g[i] = pr * log(g > fmin ? g : fmin) + (1.0 - pr) * ln_fmin;
        } else {
            v->g[i] = exp(amount * lg);
        }
    }
    if (!net) return;
    dn_net_run(&m, pw, lam, v->g, 1.0 / st[1]);
    for (int32_t i = 0; i < k; i++) {
        double lg = m.lgs[i];
        if (m.use && i < m.top) {
            const int32_t lo = (int32_t)m.lo[i];
            const double gl = (1.0 - m.w[i]) * m.gb[lo] + m.w[i] * m.gb[lo + 1];
            lg = m.mix_s * lg + m.mix_l * (gl > 1e-6 ? log(gl) : LN_GL_MIN);
            if (lg < ln_gmin) lg = ln_gmin;
            if (lg > 0.0) lg = 0.0;
        }
        v->g[i] = exp(amount * lg);
    }
}

static void dn_frame(double *st, const dn_view *v, int32_t nch, const float *par, int64_t ps,
                     int32_t at)
{
    fftw_plan f = plan_at(st + 6), b = plan_at(st + 7);
    const int32_t n = v->n, h = v->h, k = v->k;
    memset(v->pw, 0, k * sizeof(double));
    for (int32_t c = 0; c < nch; c++) {
        double *in = chan_in(v, c);
        double *spec = v->spec + (int64_t)c * 2 * k;
        for (int32_t i = 0; i < n; i++) v->frame[i] = v->win[i] * in[i];
        fftw_execute_dft_r2c(f, v->frame, (fftw_complex *)spec);
        for (int32_t i = 0; i < k; i++)
            v->pw[i] += spec[2 * i] * spec[2 * i] + spec[2 * i + 1] * spec[2 * i + 1];
        memmove(in, in + h, (size_t)(n - h) * sizeof(double));
    }
    double amount = par[at], floor_db = par[ps + at], adapt = par[2 * ps + at];
    int learn = par[3 * ps + at] >= 0.5f;
    dn_gains(st, v, amount < 0.0 ? 0.0 : amount, floor_db, adapt > 0.05 ? adapt : 0.05, learn);
    const double scale = 1.0 / n;
    const int32_t tail = n - 2 * h;              /* the synthesis window covers the last 2H */
    for (int32_t c = 0; c < nch; c++) {
        double *in = chan_in(v, c);
        double *acc = in + n, *out = acc + 2 * h;
        double *spec = v->spec + (int64_t)c * 2 * k;
        for (int32_t i = 0; i < k; i++) {
            spec[2 * i] *= v->g[i];
            spec[2 * i + 1] *= v->g[i];
        }
        fftw_execute_dft_c2r(b, (fftw_complex *)spec, v->frame);
        for (int32_t i = 0; i < 2 * h; i++) acc[i] += v->wsyn[i] * v->frame[tail + i] * scale;
        memcpy(out, acc, (size_t)h * sizeof(double));
        memmove(acc, acc + h, (size_t)h * sizeof(double));
        memset(acc + h, 0, (size_t)h * sizeof(double));
        for (int32_t i = 0; i < h; i++) if (!isfinite(out[i])) out[i] = 0.0;
    }
    st[5] += 1.0;
}

void rtk_denoise(double *st, float *io, int32_t nch, int32_t stride,
                 int32_t nframes, const float *par, int32_t pstride)
{
    if (!plan_at(st + 6) || !plan_at(st + 7)) return;        /* not planned: pass through */
    dn_view v = dn_regions(st);
    const int32_t n = v.n, h = v.h;
    int32_t pos = 0;
    while (pos < nframes) {
        int32_t fill = (int32_t)st[4];
        int32_t m = h - fill;
        if (m > nframes - pos) m = nframes - pos;
        for (int32_t c = 0; c < nch; c++) {
            double *in = chan_in(&v, c), *out = in + n + 2 * h;
            float *x = io + (int64_t)c * stride + pos;
            for (int32_t i = 0; i < m; i++) {
                double a = x[i];
                in[n - h + fill + i] = isfinite(a) ? a : 0.0;
                x[i] = (float)out[fill + i];
            }
        }
        pos += m;
        if (fill + m < h) {
            st[4] = fill + m;
            continue;
        }
        st[4] = 0.0;
        dn_frame(st, &v, nch, par, pstride, pos - 1);
    }
}
