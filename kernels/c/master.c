/* Master: auto gain, glue compressor and true-peak limiter between an input
 * and an output loudness meter (layout in rtk.h).
 *
 * The block is cut at the meters' 10 ms grid and each piece runs through all
 * five parts in turn, so the gain decisions taken every 100 ms fall on the
 * same samples whatever the host's block size (chunking invariance).
 *
 * Auto gain is feed-forward: the output's loudness divided by the gain that
 * was applied (a ring of gain-normalised output sub-blocks) tells how loud the
 * output would be at unity gain, compressor and limiter included, so the gain
 * wanted is target minus that; no loop around a lagging meter, no hunting. */
#include <math.h>
#include "rtk.h"

#define RTK_LN10_20 0.11512925464970229
#define SUBS_S 300
#define ABS_GATE (-70.0)
/* The limiter aims this far under the ceiling: its detector interpolates with
 * 32 taps, and content right under Nyquist (hi-hats, the limiter's own
 * distortion) can put the band-limited peak a few hundredths of a dB above
 * what it sees. */
#define RTK_MS_MARGIN_DB 0.1f

static inline double lufs_of(double power)
{
    return power > 0.0 ? -0.691 + 10.0 * log10(power) : -INFINITY;
}

/* Every 100 ms: update the programme estimate and the wanted gain.  The
 * input's programme loudness is a slow average (adapt_s) of its gated
 * short-term power; the loss in the compressor and limiter is measured over
 * the last 3 s alone (input short-term against gain-normalised output
 * short-term: the same window, so the gain's history cancels) and smoothed
 * over a quarter of adapt_s, so a new gain's extra limiting is seen within
 * seconds and the gain converges quickly even where the limiter works hard. */
static void auto_update(double *st, const double *min, const double *ring, const float *par,
                        int64_t ps, int32_t i)
{
    if (min[4] < SUBS_S) return;                       /* 3 s of signal first */
    const double sub = min[2];
    double norm = 0.0;
    for (int32_t j = 0; j < SUBS_S; j++) norm += ring[j];
    double s_in = min[9], s_norm = lufs_of(norm / (SUBS_S * sub));
    if (!(s_in > ABS_GATE) || !isfinite(s_norm)) return;
    if (st[13] >= 1.0 && s_in < lufs_of(st[11]) - 20.0) return;    /* a pause */
    double adapt = par[5 * ps + i];
    double a = adapt > 0.1 ? 0.1 / adapt : 1.0;
    double a_loss = 4.0 * a > 1.0 ? 1.0 : 4.0 * a;
    double p_in = pow(10.0, (s_in + 0.691) * 0.1), loss = s_in - s_norm;
    if (st[13] < 1.0) {
        st[11] = p_in;
        st[12] = loss;
    } else {
        st[11] += a * (p_in - st[11]);
        st[12] += a_loss * (loss - st[12]);
    }
    st[13] += 1.0;
    double want = par[i] - lufs_of(st[11]) + st[12];
    double lim = par[3 * ps + i];
    if (!isfinite(want)) return;
    st[14] = want > lim ? lim : (want < -lim ? -lim : want);
}

void rtk_master(double *st, float *io, int32_t nch, int32_t stride,
                int32_t nframes, const float *par, int32_t pstride)
{
    const double sr = st[0];
    const int32_t mb = (int32_t)st[2];
    const int64_t ps = pstride;
    double *comp = st + (int64_t)st[3], *lim = st + (int64_t)st[4];
    double *min = st + (int64_t)st[5], *mout = st + (int64_t)st[6];
    float *lanes = (float *)(st + (int64_t)st[7]);
    double *ring = st + (int64_t)st[15], *guard = st + (int64_t)st[16];
    if (nframes > mb) nframes = mb;
    /* the compressor's 7 lanes, then the limiter's 3 */
    for (int32_t i = 0; i < nframes; i++) {
        lanes[i] = par[6 * ps + i];
        lanes[mb + i] = par[7 * ps + i];
        lanes[2 * mb + i] = 6.0f;                      /* knee dB */
        lanes[3 * mb + i] = par[8 * ps + i];
        lanes[4 * mb + i] = par[9 * ps + i];
        lanes[5 * mb + i] = 0.0f;                      /* makeup */
        lanes[6 * mb + i] = par[10 * ps + i];
        lanes[7 * mb + i] = par[11 * ps + i] - RTK_MS_MARGIN_DB;
        lanes[8 * mb + i] = par[12 * ps + i];
        lanes[9 * mb + i] = 0.0f;                      /* limiter input gain */
    }
    const int32_t sub = (int32_t)min[2];
    int32_t pos = 0;
    while (pos < nframes) {
        int32_t fill = (int32_t)st[9];
        int32_t m = sub - fill;
        if (m > nframes - pos) m = nframes - pos;
        float *seg = io + pos;
        rtk_lm_feed(min, seg, nch, stride, m);
        double g = st[8], lin = exp(g * RTK_LN10_20);
        for (int32_t i = 0; i < m; i++) {
            const int32_t f = pos + i;
            double want;
            if (par[ps + f] >= 0.5f) {                 /* auto */
                want = st[13] >= 1.0 ? st[14] : (double)par[2 * ps + f];
                double step = (double)par[4 * ps + f] / sr, d = want - g;
                want = g + (d > step ? step : (d < -step ? -step : d));
            } else {
                want = par[2 * ps + f];                /* already smoothed by the runner */
            }
            if (want != g) { g = want; lin = exp(g * RTK_LN10_20); }
            for (int32_t c = 0; c < nch; c++) {
                float *x = io + (int64_t)c * stride + f;
                *x = (float)((double)*x * lin);
            }
        }
        st[8] = g;
        rtk_compressor(comp, seg, nch, stride, m, lanes + pos, mb);
        rtk_biquad(guard, seg, nch, stride, m, lanes, mb);
        rtk_limiter(lim, seg, nch, stride, m, lanes + 7 * (int64_t)mb + pos, mb);
        rtk_lm_feed(mout, seg, nch, stride, m);
        pos += m;
        if (fill + m < sub) {
            st[9] = fill + m;
            continue;
        }
        st[9] = 0.0;
        /* the output meter has just completed the same sub-block */
        int64_t k = (int64_t)st[10];
        double e = mout[RTK_LM_HDR + 5 * (int64_t)nch + (int64_t)((mout[4] - 1.0)) % 300];
        ring[k % SUBS_S] = e / (lin * lin);
        st[10] = (double)(k + 1);
        if ((k + 1) % 10 == 0) auto_update(st, min, ring, par, ps, pos - 1);
    }
}
