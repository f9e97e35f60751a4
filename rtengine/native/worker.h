/* Worker stages (DESIGN.md): a stage whose processing must run Python (a pyo
 * patch, onnxruntime, a hosted VST3 through pedalboard) runs on a worker
 * thread.  The audio thread never waits for it:
 *
 *   - rt_worker_kernel is the stage's kernel.  It pushes the block into the
 *     input ring (single producer), wakes the worker (sem_post, never blocks)
 *     and outputs the worker's result for the samples `latency` frames older.
 *     A sample whose chunk the worker has not delivered in time is replaced by
 *     the dry input of the same instant (time-aligned) and counted as a miss;
 *     when the worker's output comes back it fades in over `fade` samples.
 *   - The worker thread (single consumer) takes whole chunks of `hop` frames
 *     with rt_worker_take, processes them and hands them back with
 *     rt_worker_give.  A worker that falls more than the ring behind skips
 *     to the newest chunk (counted); it never sees torn input.
 *
 * The latency is fixed at creation: latency >= hop + max_block, so a worker
 * that finishes each chunk within one block period never misses.  All memory
 * is allocated by rt_worker_new on a control thread.
 *
 * Plain declarations only: cffi reads this header. */
#ifndef RT_WORKER_H
#define RT_WORKER_H
#include <stdint.h>

typedef struct rt_worker rt_worker;

typedef struct rt_worker_counters {
    uint64_t frames;          /* frames pushed by the audio thread */
    uint64_t chunks_in;       /* chunks completed by the audio thread */
    uint64_t chunks_done;     /* chunks the worker delivered */
    uint64_t chunks_skipped;  /* chunks the worker dropped because it was too late */
    uint64_t miss_samples;    /* output samples that fell back to the dry signal */
    uint64_t miss_blocks;     /* audio blocks with at least one missed sample */
} rt_worker_counters;

/* Control thread.  Returns NULL (and an errno in *err) on bad sizes or no memory.
 * inner: frames by which the worker's own algorithm delays its output (a
 * model's lookahead); the dry fallback is delayed by latency + inner so it
 * stays aligned with the worker's output, and rt_worker_latency reports the
 * sum. */
rt_worker *rt_worker_new(int32_t nch, int32_t hop, int32_t latency, int32_t inner,
                         int32_t max_block, int32_t npar, int32_t fade, int *err);
void rt_worker_free(rt_worker *w);
/* Forget all audio (positions, rings, dry line, counters).  Audio stopped. */
void rt_worker_reset(rt_worker *w);
int32_t rt_worker_latency(const rt_worker *w);
void rt_worker_get_counters(const rt_worker *w, rt_worker_counters *out);

/* The stage kernel (rt_kernel_fn).  state[0] holds the rt_worker pointer
 * (written with rt_worker_bind).  par holds the stage's npar parameter lanes. */
void rt_worker_kernel(double *state, float *io, int32_t nch, int32_t stride,
                      int32_t nframes, const float *par, int32_t pstride);
void rt_worker_bind(double *state, rt_worker *w);

/* Worker thread.  rt_worker_wait sleeps until the audio thread pushed a chunk
 * or timeout_ms passed (returns 1 if woken, 0 on timeout).  rt_worker_take
 * copies the next chunk (planar: nch rows of hop floats) and the parameter
 * values at its last frame into dst/par and its first frame into *pos;
 * returns 1, or 0 when no whole chunk is waiting.  rt_worker_give stores the
 * processed chunk that started at pos (planar, nch rows of hop). */
int rt_worker_wait(rt_worker *w, int32_t timeout_ms);
int rt_worker_take(rt_worker *w, float *dst, float *par, uint64_t *pos);
void rt_worker_give(rt_worker *w, uint64_t pos, const float *src);
/* Wake a waiting worker (used to stop it). */
void rt_worker_wake(rt_worker *w);

#endif
