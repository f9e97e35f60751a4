/* The native block runner (see runner.h and DESIGN.md, "The real-time rule"). */
#include <math.h>
#include <string.h>
#include <pthread.h>
#include <errno.h>
#include <time.h>
#include "runner.h"
#include "pace.h"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define RT_FTZ_DAZ 0x8040u
static inline unsigned rt_fp_enter(void)
{
    unsigned old = _mm_getcsr();
    _mm_setcsr(old | RT_FTZ_DAZ);
    return old;
}
static inline void rt_fp_leave(unsigned old) { _mm_setcsr(old); }
#elif defined(__aarch64__)
static inline unsigned long rt_fp_enter(void)
{
    unsigned long old;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(old));
    __asm__ __volatile__("msr fpcr, %0" : : "r"(old | (1UL << 24)));
    return old;
}
static inline void rt_fp_leave(unsigned long old) { __asm__ __volatile__("msr fpcr, %0" : : "r"(old)); }
#else
static inline unsigned rt_fp_enter(void) { return 0; }
static inline void rt_fp_leave(unsigned old) { (void)old; }
#endif

/* x - x is 0 for every finite x and NaN for NaN and +-Inf. */
static inline int rt_finite(float x) { return (x - x) == 0.0f; }

static uint64_t rt_sanitize(float *x, int32_t n)
{
    /* branch-free so it vectorises: x - x is NaN exactly for NaN and +-Inf */
    int32_t bad = 0;
    for (int32_t i = 0; i < n; i++) {
        float y = x[i];
        int32_t b = (y - y) != (y - y) ? 1 : 0;
        bad += b;
        x[i] = b ? 0.0f : y;
    }
    return (uint64_t)bad;
}

/* Fill the per-sample lanes of every parameter for n frames. */
static void rt_params_block(rt_runner *r, int32_t n)
{
    for (int32_t k = 0; k < r->npar; k++) {
        float tgt = *(volatile float *)&r->targets[k];
        if (!rt_finite(tgt)) tgt = r->last_target[k];   /* never ramp to garbage */
        if (tgt != r->last_target[k]) {
            r->last_target[k] = tgt;
            r->lane_fill[k] = 0;
            int32_t len = r->ramp_len[k];
            if (len <= 0) {
                r->cur[k] = tgt;
                r->remaining[k] = 0;
            } else {
                r->step[k] = (tgt - r->cur[k]) / (float)len;
                r->remaining[k] = len;
            }
        }
        if (!r->lane[k]) {
            /* kernels that smooth on their own (coefficient ramps) read the target */
            r->cur[k] = tgt;
            r->remaining[k] = 0;
            continue;
        }
        float *lane = r->lanes + (int64_t)k * r->max_block;
        float c = r->cur[k];
        int32_t rem = r->remaining[k];
        int32_t i = 0;
        if (rem > 0) {
            float st = r->step[k];
            for (; i < n && rem > 0; i++) {
                rem--;
                c = rem == 0 ? tgt : c + st;
                lane[i] = c;
            }
            r->remaining[k] = rem;
            r->lane_fill[k] = 0;
            for (; i < n; i++) lane[i] = c;
        } else {
            /* steady: the lane still holds c from earlier blocks */
            for (i = r->lane_fill[k]; i < n; i++) lane[i] = c;
            if (n > r->lane_fill[k]) r->lane_fill[k] = n;
        }
        r->cur[k] = c;
    }
}

static void rt_blob_take(rt_runner *r, rt_stage *s)
{
    (void)r;
    uint32_t s1 = __atomic_load_n(&s->blob_seq, __ATOMIC_ACQUIRE);
    if (s1 == s->blob_seen || (s1 & 1u)) return;
    memcpy(s->blob_scratch, s->blob_shared, sizeof(double) * (size_t)s->nblob);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    uint32_t s2 = __atomic_load_n(&s->blob_seq, __ATOMIC_RELAXED);
    if (s1 != s2) { r->counters.blob_retries++; return; }   /* torn: next block */
    memcpy(s->blob_dst, s->blob_scratch, sizeof(double) * (size_t)s->nblob);
    s->blob_seen = s1;
}

int rt_blob_publish(rt_runner *r, int32_t idx, const double *src, int32_t n)
{
    if (!r || idx < 0 || idx >= r->nstages || !src) return -1;
    rt_stage *s = &r->stages[idx];
    if (n != s->nblob || !s->blob_shared) return -1;
    uint32_t q = __atomic_load_n(&s->blob_seq, __ATOMIC_RELAXED);
    __atomic_store_n(&s->blob_seq, q + 1u, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    memcpy(s->blob_shared, src, sizeof(double) * (size_t)n);
    __atomic_store_n(&s->blob_seq, q + 2u, __ATOMIC_RELEASE);
    return 0;
}

static void rt_run_piece(rt_runner *r, float *io, int32_t stride, int32_t n)
{
    const int32_t nch = r->nch;
    const int32_t mb = r->max_block;
    for (int32_t c = 0; c < nch; c++)
        r->counters.nonfinite_in += rt_sanitize(io + (int64_t)c * stride, n);
    rt_params_block(r, n);
    for (int32_t k = 0; k < r->nstages; k++) {
        rt_stage *s = &r->stages[k];
        if (s->nblob > 0) rt_blob_take(r, s);
        const float *b = r->lanes + (int64_t)s->bypass_idx * mb;
        const int bypass_any = b[0] != 0.0f || b[n - 1] != 0.0f;
        const int need_dry = bypass_any || s->latency > 0;
        if (need_dry) {
            for (int32_t c = 0; c < nch; c++)
                memcpy(r->dry + (int64_t)c * mb, io + (int64_t)c * stride, sizeof(float) * (size_t)n);
            if (s->latency > 0 && s->align_fn)
                s->align_fn(s->align_state, r->dry, nch, mb, n, 0, 0);
        }
        s->fn(s->state, io, nch, stride, n, r->lanes + (int64_t)s->par_off * mb, mb);
        if (bypass_any) {
            for (int32_t c = 0; c < nch; c++) {
                float *x = io + (int64_t)c * stride;
                const float *d = r->dry + (int64_t)c * mb;
                for (int32_t i = 0; i < n; i++) {
                    float w = b[i];
                    x[i] = w >= 1.0f ? d[i] : x[i] + w * (d[i] - x[i]);
                }
            }
        }
        for (int32_t c = 0; c < nch; c++)
            r->counters.nonfinite_stage += rt_sanitize(io + (int64_t)c * stride, n);
    }
}

void rt_runner_process(rt_runner *r, float *io, int32_t stride, int32_t nframes)
{
    if (!r || !io || nframes <= 0 || stride < nframes) return;
    __typeof__(rt_fp_enter()) fp = rt_fp_enter();
    int32_t done = 0;
    while (done < nframes) {
        int32_t n = nframes - done;
        if (n > r->max_block) n = r->max_block;
        rt_run_piece(r, io + done, stride, n);
        done += n;
    }
    r->counters.blocks++;
    r->counters.frames += (uint64_t)nframes;
    rt_fp_leave(fp);
}

void rt_runner_process_io(rt_runner *r, const float *in, int32_t in_stride,
                          float *out, int32_t out_stride, int32_t nframes)
{
    if (!r || !in || !out || nframes <= 0 || in_stride < nframes || out_stride < nframes)
        return;
    if (in != out)
        for (int32_t c = 0; c < r->nch; c++)
            memmove(out + (int64_t)c * out_stride, in + (int64_t)c * in_stride,
                    sizeof(float) * (size_t)nframes);
    rt_runner_process(r, out, out_stride, nframes);
}

void rt_runner_settle(rt_runner *r)
{
    for (int32_t k = 0; k < r->npar; k++) {
        float t = r->targets[k];
        if (!rt_finite(t)) continue;
        r->cur[k] = t;
        r->last_target[k] = t;
        r->remaining[k] = 0;
        r->step[k] = 0.0f;
        r->lane_fill[k] = 0;
    }
}

typedef struct rt_thread_job {
    rt_runner *r;
    float *io;
    int32_t stride, nframes, nblocks;
    uint64_t elapsed_ns;
} rt_thread_job;

static uint64_t rt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *rt_thread_main(void *arg)
{
    rt_thread_job *j = (rt_thread_job *)arg;
    uint64_t t0 = rt_now_ns();
    for (int32_t b = 0; b < j->nblocks; b++)
        rt_runner_process(j->r, j->io + (int64_t)b * j->nframes, j->stride, j->nframes);
    j->elapsed_ns = rt_now_ns() - t0;
    return NULL;
}

int rt_runner_run_on_thread(rt_runner *r, float *io, int32_t stride,
                            int32_t nframes, int32_t nblocks, uint64_t *elapsed_ns)
{
    if (!r || !io || nframes <= 0 || nblocks < 0 || (int64_t)nframes * nblocks > stride)
        return EINVAL;
    rt_thread_job job = {r, io, stride, nframes, nblocks, 0};
    pthread_t th;
    int err = pthread_create(&th, NULL, rt_thread_main, &job);
    if (err) return err;
    err = pthread_join(th, NULL);
    if (elapsed_ns) *elapsed_ns = job.elapsed_ns;
    return err;
}

void rt_runner_time_blocks(rt_runner *r, float *io, int32_t stride, int32_t nframes,
                           int32_t nblocks, int64_t period_ns, float *us)
{
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (int32_t b = 0; b < nblocks; b++) {
        rt_pace(&start, b, period_ns);
        uint64_t t0 = rt_now_ns();
        rt_runner_process(r, io, stride, nframes);
        us[b] = (float)((double)(rt_now_ns() - t0) * 1e-3);
    }
}
