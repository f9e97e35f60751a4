/* The native block runner: one call processes one block through every stage of
 * a chain.  Everything it touches is allocated by Python before the first
 * call; rt_runner_process never allocates, locks or calls into Python, and may
 * be called from any thread, with or without the GIL.
 *
 * This header is read by cffi (rtengine/native/_runner_build.py), so it holds
 * plain declarations only. */
#ifndef RT_RUNNER_H
#define RT_RUNNER_H
#include <stdint.h>

typedef void (*rt_kernel_fn)(double *state, float *io, int32_t nch, int32_t stride,
                             int32_t nframes, const float *par, int32_t pstride);

typedef struct rt_stage {
    rt_kernel_fn fn;           /* the stage's kernel (C or numba @cfunc) */
    double *state;             /* kernel state, owned by the processor */
    int32_t par_off;           /* first parameter of the stage in the chain arrays */
    int32_t npar;
    int32_t bypass_idx;        /* chain parameter index of this stage's bypass lane */
    int32_t latency;           /* samples; the alignment delay has this length */
    rt_kernel_fn align_fn;     /* delay kernel keeping the dry path aligned */
    double *align_state;
    /* control blob: designed off the audio thread, handed over by a seqlock */
    double *blob_shared;       /* written by rt_blob_publish */
    double *blob_scratch;      /* audio-thread copy, checked before use */
    double *blob_dst;          /* where the kernel reads it (inside state) */
    int32_t nblob;
    uint32_t blob_seq;         /* odd while a writer is inside */
    uint32_t blob_seen;
} rt_stage;

typedef struct rt_counters {
    uint64_t blocks;           /* runner calls */
    uint64_t frames;
    uint64_t nonfinite_in;     /* NaN/Inf input samples replaced by 0 */
    uint64_t nonfinite_stage;  /* NaN/Inf samples a stage produced, replaced by 0 */
    uint64_t blob_retries;     /* blob copies discarded because a writer was inside */
} rt_counters;

typedef struct rt_runner {
    int32_t nstages;
    int32_t nch;
    int32_t max_block;
    int32_t npar;
    rt_stage *stages;
    float *targets;            /* parameter targets: plain stores from control threads */
    float *cur;                /* smoothed value at the end of the last block */
    float *last_target;
    float *step;
    int32_t *remaining;        /* samples left in the current ramp */
    int32_t *ramp_len;         /* smoothing length in samples, per parameter */
    uint8_t *lane;             /* 1: the kernel reads a per-sample lane */
    int32_t *lane_fill;        /* leading lane entries already equal to cur (no ramp) */
    float *lanes;              /* npar * max_block */
    float *dry;                /* nch * max_block scratch for the bypass path */
    rt_counters counters;
} rt_runner;

/* Process nframes (any count; split internally into max_block pieces) of
 * planar audio in place: channel c at io + c * stride.  Audio thread. */
void rt_runner_process(rt_runner *r, float *io, int32_t stride, int32_t nframes);

/* Copy in (in_stride between channels) to out, then process out in place. */
void rt_runner_process_io(rt_runner *r, const float *in, int32_t in_stride,
                          float *out, int32_t out_stride, int32_t nframes);

/* Jump every parameter to its target (no ramp).  Not concurrent with process. */
void rt_runner_settle(rt_runner *r);

/* Publish a control blob for stage idx (seqlock writer).  Control threads
 * only; callers serialise writers among themselves.  Returns 0, or -1 for a
 * bad index or size. */
int rt_blob_publish(rt_runner *r, int32_t idx, const double *src, int32_t n);

/* Test helper: run the runner nblocks times on a new native thread (no GIL,
 * no Python in that thread); the frames advance through io by nframes each
 * block.  *elapsed_ns (if not NULL) receives the thread's processing time.
 * Returns 0 or an errno. */
int rt_runner_run_on_thread(rt_runner *r, float *io, int32_t stride,
                            int32_t nframes, int32_t nblocks, uint64_t *elapsed_ns);

/* Benchmark: run nblocks blocks of nframes in place on io (the same frames each
 * time), the duration of each in us[] (microseconds).  period_ns > 0 starts
 * block b at b * period_ns from the first, as an audio callback is paced;
 * 0 runs them back to back. */
void rt_runner_time_blocks(rt_runner *r, float *io, int32_t stride, int32_t nframes,
                           int32_t nblocks, int64_t period_ns, float *us);

#endif
