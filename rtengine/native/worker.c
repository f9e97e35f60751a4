/* Worker stages: the lock-free rings between the audio thread and a worker
 * thread (see worker.h). */
#include <errno.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "worker.h"

struct rt_worker {
    int32_t nch, hop, latency, inner, max_block, npar, fade, nslots;
    int64_t cap;              /* frames per channel in each ring: nslots * hop */
    int64_t dlen;             /* frames per channel of the dry line */
    float *in;                /* input ring, channel c at in + c * cap */
    float *out;               /* output ring, same layout */
    float *inpar;             /* nslots * npar parameter values, one row per chunk */
    float *dry;               /* dry line, channel c at dry + c * dlen */
    uint64_t *stamp;          /* per slot: index + 1 of the chunk whose output it holds */
    uint64_t wpos;            /* frames pushed: written by the audio thread only */
    uint64_t rpos;            /* next chunk start: read and written by the worker only */
    float mix;                /* audio thread: 1 = worker output, 0 = dry */
    rt_worker_counters c;     /* audio-thread fields and worker fields never overlap */
    sem_t wake;
};

static void *rt_calloc(size_t n, size_t size, int *ok)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) *ok = 0;
    return p;
}

rt_worker *rt_worker_new(int32_t nch, int32_t hop, int32_t latency, int32_t inner,
                         int32_t max_block, int32_t npar, int32_t fade, int *err)
{
    int dummy;
    if (!err) err = &dummy;
    *err = EINVAL;
    if (nch < 1 || nch > 64 || hop < 1 || max_block < 1 || npar < 0 || fade < 0 ||
        latency < hop + max_block || latency > (1 << 24) || hop > (1 << 20) ||
        inner < 0 || inner > (1 << 24))
        return NULL;
    rt_worker *w = calloc(1, sizeof *w);
    if (!w) { *err = ENOMEM; return NULL; }
    w->nch = nch;
    w->hop = hop;
    w->latency = latency;
    w->inner = inner;
    w->max_block = max_block;
    w->npar = npar;
    w->fade = fade;
    /* slots: everything between the oldest chunk the audio thread may still
     * read (latency + a block back) and the newest one the worker may write,
     * plus two spare */
    w->nslots = (int32_t)((latency + 2 * (int64_t)max_block + 2 * (int64_t)hop) / hop) + 2;
    w->cap = (int64_t)w->nslots * hop;
    w->dlen = (int64_t)latency + inner + max_block;
    int ok = 1;
    w->in = rt_calloc((size_t)(nch * w->cap), sizeof(float), &ok);
    w->out = rt_calloc((size_t)(nch * w->cap), sizeof(float), &ok);
    w->inpar = rt_calloc((size_t)w->nslots * (size_t)npar, sizeof(float), &ok);
    w->dry = rt_calloc((size_t)(nch * w->dlen), sizeof(float), &ok);
    w->stamp = rt_calloc((size_t)w->nslots, sizeof(uint64_t), &ok);
    if (!ok || sem_init(&w->wake, 0, 0) != 0) {
        *err = ok ? errno : ENOMEM;
        free(w->in); free(w->out); free(w->inpar); free(w->dry); free(w->stamp);
        free(w);
        return NULL;
    }
    w->mix = 1.0f;
    *err = 0;
    return w;
}

void rt_worker_free(rt_worker *w)
{
    if (!w) return;
    sem_destroy(&w->wake);
    free(w->in); free(w->out); free(w->inpar); free(w->dry); free(w->stamp);
    free(w);
}

void rt_worker_reset(rt_worker *w)
{
    if (!w) return;
    memset(w->in, 0, sizeof(float) * (size_t)(w->nch * w->cap));
    memset(w->out, 0, sizeof(float) * (size_t)(w->nch * w->cap));
    memset(w->inpar, 0, sizeof(float) * (size_t)w->nslots * (size_t)w->npar);
    memset(w->dry, 0, sizeof(float) * (size_t)(w->nch * w->dlen));
    for (int32_t s = 0; s < w->nslots; s++) __atomic_store_n(&w->stamp[s], 0, __ATOMIC_RELAXED);
    memset(&w->c, 0, sizeof w->c);
    w->rpos = 0;
    w->mix = 1.0f;
    __atomic_store_n(&w->wpos, 0, __ATOMIC_RELEASE);
    while (sem_trywait(&w->wake) == 0) {}
}

int32_t rt_worker_latency(const rt_worker *w) { return w ? w->latency + w->inner : 0; }

/* The dry input for the output sample whose ring position is s + j: the input
 * latency + inner frames back (silence before the first input). */
static inline float rt_dry(const rt_worker *w, int32_t c, uint64_t s, int32_t j)
{
    const uint64_t at = s + (uint64_t)j;
    if (at < (uint64_t)w->inner) return 0.0f;
    return w->dry[c * w->dlen + (int64_t)((at - (uint64_t)w->inner) % (uint64_t)w->dlen)];
}

void rt_worker_get_counters(const rt_worker *w, rt_worker_counters *out)
{
    if (!w || !out) return;
    out->frames = __atomic_load_n(&w->c.frames, __ATOMIC_RELAXED);
    out->chunks_in = __atomic_load_n(&w->c.chunks_in, __ATOMIC_RELAXED);
    out->chunks_done = __atomic_load_n(&w->c.chunks_done, __ATOMIC_RELAXED);
    out->chunks_skipped = __atomic_load_n(&w->c.chunks_skipped, __ATOMIC_RELAXED);
    out->miss_samples = __atomic_load_n(&w->c.miss_samples, __ATOMIC_RELAXED);
    out->miss_blocks = __atomic_load_n(&w->c.miss_blocks, __ATOMIC_RELAXED);
}

void rt_worker_bind(double *state, rt_worker *w) { memcpy(state, &w, sizeof w); }

/* ---- audio thread ------------------------------------------------------------ */

/* Push n <= max_block frames; returns the number of chunks completed. */
static int32_t rt_push(rt_worker *w, const float *io, int32_t nch, int32_t stride, int32_t n,
                       const float *par, int32_t pstride)
{
    const int32_t hop = w->hop;
    const uint64_t p0 = w->wpos;
    int32_t done = 0, i = 0;
    while (i < n) {
        const uint64_t p = p0 + (uint64_t)i;
        const int64_t off = (int64_t)(p % (uint64_t)w->cap);
        int32_t m = hop - (int32_t)(p % (uint64_t)hop);
        if (m > n - i) m = n - i;
        for (int32_t c = 0; c < w->nch; c++) {
            float *dst = w->in + c * w->cap + off;
            if (c < nch) memcpy(dst, io + (int64_t)c * stride + i, sizeof(float) * (size_t)m);
            else memset(dst, 0, sizeof(float) * (size_t)m);
        }
        i += m;
        if ((p + (uint64_t)m) % (uint64_t)hop == 0) {
            const uint64_t chunk = (p + (uint64_t)m) / (uint64_t)hop - 1;
            float *row = w->inpar + (int64_t)(chunk % (uint64_t)w->nslots) * w->npar;
            for (int32_t k = 0; k < w->npar; k++) row[k] = par[(int64_t)k * pstride + i - 1];
            done++;
        }
    }
    /* the dry line, for misses */
    i = 0;
    while (i < n) {
        const int64_t off = (int64_t)((p0 + (uint64_t)i) % (uint64_t)w->dlen);
        int32_t m = (int32_t)(w->dlen - off < n - i ? w->dlen - off : n - i);
        for (int32_t c = 0; c < nch && c < w->nch; c++)
            memcpy(w->dry + c * w->dlen + off, io + (int64_t)c * stride + i,
                   sizeof(float) * (size_t)m);
        i += m;
    }
    __atomic_store_n(&w->wpos, p0 + (uint64_t)n, __ATOMIC_RELEASE);
    return done;
}

/* Output n frames: the worker's result for the samples latency frames back. */
static void rt_pull(rt_worker *w, float *io, int32_t nch, int32_t stride, int32_t n, uint64_t p0)
{
    const int32_t hop = w->hop;
    const uint64_t L = (uint64_t)w->latency;
    const float step = w->fade > 0 ? 1.0f / (float)w->fade : 1.0f;
    if (nch > w->nch) nch = w->nch;
    int missed = 0;
    int32_t i = 0;
    while (i < n) {
        const uint64_t t = p0 + (uint64_t)i;
        if (t < L) {                                 /* before the first input: silence */
            int32_t m = (int32_t)(L - t < (uint64_t)(n - i) ? L - t : (uint64_t)(n - i));
            for (int32_t c = 0; c < nch; c++)
                memset(io + (int64_t)c * stride + i, 0, sizeof(float) * (size_t)m);
            i += m;
            continue;
        }
        const uint64_t s = t - L;
        const uint64_t chunk = s / (uint64_t)hop;
        int32_t m = hop - (int32_t)(s % (uint64_t)hop);
        if (m > n - i) m = n - i;
        const uint64_t have = __atomic_load_n(&w->stamp[chunk % (uint64_t)w->nslots],
                                              __ATOMIC_ACQUIRE);
        if (have == chunk + 1) {
            const int64_t off = (int64_t)(s % (uint64_t)w->cap);
            float mix = w->mix;
            for (int32_t c = 0; c < nch; c++) {
                const float *wet = w->out + c * w->cap + off;
                float *x = io + (int64_t)c * stride + i;
                if (mix >= 1.0f) {
                    memcpy(x, wet, sizeof(float) * (size_t)m);
                    continue;
                }
                float g = mix;
                for (int32_t j = 0; j < m; j++) {
                    float d = rt_dry(w, c, s, j);
                    g = g + step < 1.0f ? g + step : 1.0f;
                    x[j] = d + g * (wet[j] - d);
                }
            }
            if (mix < 1.0f) {
                mix += step * (float)m;
                w->mix = mix < 1.0f ? mix : 1.0f;
            }
        } else {
            for (int32_t c = 0; c < nch; c++) {
                float *x = io + (int64_t)c * stride + i;
                for (int32_t j = 0; j < m; j++) x[j] = rt_dry(w, c, s, j);
            }
            w->mix = 0.0f;
            w->c.miss_samples += (uint64_t)m;
            missed = 1;
        }
        i += m;
    }
    if (missed) w->c.miss_blocks++;
}

void rt_worker_kernel(double *state, float *io, int32_t nch, int32_t stride,
                      int32_t nframes, const float *par, int32_t pstride)
{
    rt_worker *w;
    memcpy(&w, state, sizeof w);
    if (!w || nframes <= 0) return;
    int32_t done = 0;
    while (done < nframes) {
        int32_t n = nframes - done;
        if (n > w->max_block) n = w->max_block;
        const uint64_t p0 = w->wpos;
        int32_t chunks = rt_push(w, io + done, nch, stride, n, par + done, pstride);
        if (chunks) {
            w->c.chunks_in += (uint64_t)chunks;
            sem_post(&w->wake);                     /* never blocks */
        }
        rt_pull(w, io + done, nch, stride, n, p0);
        w->c.frames += (uint64_t)n;
        done += n;
    }
}

/* ---- worker thread ------------------------------------------------------------- */

int rt_worker_wait(rt_worker *w, int32_t timeout_ms)
{
    if (!w) return 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    for (;;) {
        if (sem_timedwait(&w->wake, &ts) == 0) return 1;
        if (errno != EINTR) return 0;
    }
}

void rt_worker_wake(rt_worker *w)
{
    if (w) sem_post(&w->wake);
}

/* A chunk may be read while the producer cannot yet have reached its slot. */
static int rt_chunk_safe(const rt_worker *w, uint64_t r, uint64_t wp)
{
    return wp + (uint64_t)w->max_block <= r + (uint64_t)w->cap;
}

int rt_worker_take(rt_worker *w, float *dst, float *par, uint64_t *pos)
{
    if (!w || !dst || !pos) return 0;
    const uint64_t hop = (uint64_t)w->hop, L = (uint64_t)w->latency;
    for (;;) {
        uint64_t wp = __atomic_load_n(&w->wpos, __ATOMIC_ACQUIRE);
        uint64_t r = w->rpos;
        /* chunks whose every output sample is already past, or whose slot the
         * producer may be overwriting, are dropped: the stage output dry there */
        while (r + hop <= wp && (r + hop + L <= wp || !rt_chunk_safe(w, r, wp))) {
            r += hop;
            w->c.chunks_skipped++;
        }
        w->rpos = r;
        if (r + hop > wp) return 0;
        const int64_t off = (int64_t)(r % (uint64_t)w->cap);
        for (int32_t c = 0; c < w->nch; c++)
            memcpy(dst + (int64_t)c * w->hop, w->in + c * w->cap + off,
                   sizeof(float) * (size_t)w->hop);
        if (par && w->npar)
            memcpy(par, w->inpar + (int64_t)((r / hop) % (uint64_t)w->nslots) * w->npar,
                   sizeof(float) * (size_t)w->npar);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        wp = __atomic_load_n(&w->wpos, __ATOMIC_ACQUIRE);
        if (!rt_chunk_safe(w, r, wp)) {             /* overwritten while copying */
            w->rpos = r + hop;
            w->c.chunks_skipped++;
            continue;
        }
        *pos = r;
        w->rpos = r + hop;
        return 1;
    }
}

void rt_worker_give(rt_worker *w, uint64_t pos, const float *src)
{
    if (!w || !src || pos % (uint64_t)w->hop) return;
    const int64_t off = (int64_t)(pos % (uint64_t)w->cap);
    for (int32_t c = 0; c < w->nch; c++)
        memcpy(w->out + c * w->cap + off, src + (int64_t)c * w->hop,
               sizeof(float) * (size_t)w->hop);
    const uint64_t chunk = pos / (uint64_t)w->hop;
    __atomic_store_n(&w->stamp[chunk % (uint64_t)w->nslots], chunk + 1, __ATOMIC_RELEASE);
    w->c.chunks_done++;
}
