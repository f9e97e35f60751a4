/* Chain changes on a running backend (JACK, PortAudio): a control thread
 * posts a new runner; the audio callback takes it at a block boundary and runs
 * both chains on the same input for fade_len frames, fading linearly from the
 * old output to the new one (the two chains hear the same input, so their
 * outputs are correlated and a linear fade keeps the level).  Lock-free: the
 * control side only stores pointers and reads a counter.
 *
 * Internal to the backends (not read by cffi). */
#ifndef RT_XFADE_H
#define RT_XFADE_H
#include <stdint.h>
#include <string.h>
#include "runner.h"

typedef struct rt_xfade {
    void *runner;               /* rt_runner *: the chain that is playing */
    void *pending;              /* posted by the control side, taken by the callback */
    void *fading;               /* the previous chain while it fades out (callback only) */
    int32_t fade_len, fade_pos; /* callback only */
    int32_t pending_fade;
    uint32_t swaps_done;        /* bumped once the previous chain is no longer used */
} rt_xfade;

/* Control thread: play runner from the next block on, without a fade. */
static inline void rt_xfade_set(rt_xfade *x, void *runner)
{
    __atomic_store_n(&x->runner, runner, __ATOMIC_RELEASE);
}

/* Control thread: fade to runner over fade_frames, starting at the next block. */
static inline void rt_xfade_post(rt_xfade *x, void *runner, int32_t fade_frames)
{
    __atomic_store_n(&x->pending_fade, fade_frames, __ATOMIC_RELAXED);
    __atomic_store_n(&x->pending, runner, __ATOMIC_RELEASE);
}

static inline uint32_t rt_xfade_done(rt_xfade *x)
{
    return __atomic_load_n(&x->swaps_done, __ATOMIC_ACQUIRE);
}

/* Audio thread, once per callback: take a posted runner.  Returns 1 if it did. */
static inline int rt_xfade_begin(rt_xfade *x)
{
    rt_runner *pend = __atomic_exchange_n((rt_runner **)&x->pending, NULL, __ATOMIC_ACQ_REL);
    if (!pend) return 0;
    rt_runner *cur = __atomic_load_n((rt_runner **)&x->runner, __ATOMIC_ACQUIRE);
    int32_t len = __atomic_load_n(&x->pending_fade, __ATOMIC_RELAXED);
    if (cur && len > 0 && cur->nch == pend->nch && !x->fading) {
        x->fading = cur;
        x->fade_len = len;
        x->fade_pos = 0;
    }
    __atomic_store_n((rt_runner **)&x->runner, pend, __ATOMIC_RELEASE);
    if (!x->fading) __atomic_add_fetch(&x->swaps_done, 1, __ATOMIC_RELEASE);
    return 1;
}

static inline rt_runner *rt_xfade_current(rt_xfade *x)
{
    return __atomic_load_n((rt_runner **)&x->runner, __ATOMIC_ACQUIRE);
}

/* Audio thread: process m frames of planar io (stride between channels) in
 * place through the playing chain, crossfading from the previous one; io2 is
 * scratch of the same layout for the previous chain. */
static inline void rt_xfade_process(rt_xfade *x, float *io, float *io2, int32_t stride,
                                    int32_t m)
{
    rt_runner *r = rt_xfade_current(x);
    rt_runner *old = x->fading;
    if (!r) return;
    if (old)
        for (int32_t c = 0; c < r->nch; c++)
            memcpy(io2 + (int64_t)c * stride, io + (int64_t)c * stride, sizeof(float) * (size_t)m);
    rt_runner_process(r, io, stride, m);
    if (!old) return;
    rt_runner_process(old, io2, stride, m);
    const float inv = 1.0f / (float)x->fade_len;
    for (int32_t c = 0; c < r->nch; c++) {
        const float *a = io2 + (int64_t)c * stride;
        float *b = io + (int64_t)c * stride;
        for (int32_t i = 0; i < m; i++) {
            int32_t k = x->fade_pos + i + 1;
            float g = k >= x->fade_len ? 1.0f : (float)k * inv;
            b[i] = a[i] + g * (b[i] - a[i]);
        }
    }
    x->fade_pos += m;
    if (x->fade_pos >= x->fade_len) {
        x->fading = NULL;
        __atomic_add_fetch(&x->swaps_done, 1, __ATOMIC_RELEASE);
    }
}

#endif
