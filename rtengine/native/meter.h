/* Callback timing shared by the live backends: counters in rt_jack_stats and
 * a ring of the most recent callback durations.  Written only by the audio
 * callback, read (lossily) by control threads. */
#ifndef RT_METER_H
#define RT_METER_H
#include <stdint.h>
#include <time.h>
#include "jack.h"

static inline uint64_t rt_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

typedef struct rt_meter {
    rt_jack_stats s;
    float times_us[RT_JACK_TIMES];
    uint32_t head;                      /* next slot; written by the callback only */
    int32_t raise_nice;                 /* ask for RT_JACK_NICE without real-time scheduling */
} rt_meter;

static inline void rt_meter_cycle(rt_meter *m, uint64_t t0, uint32_t n)
{
    uint64_t dt = rt_ns() - t0;
    uint32_t h = __atomic_load_n(&m->head, __ATOMIC_RELAXED);
    m->times_us[h % RT_JACK_TIMES] = (float)((double)dt * 1e-3);
    __atomic_store_n(&m->head, h + 1, __ATOMIC_RELEASE);
    uint32_t rate = __atomic_load_n(&m->s.sample_rate, __ATOMIC_RELAXED);
    if (rate && (double)dt * 1e-9 * rate > (double)n)
        __atomic_add_fetch(&m->s.deadline_misses, 1, __ATOMIC_RELAXED);
    if (dt > m->s.max_ns) __atomic_store_n(&m->s.max_ns, dt, __ATOMIC_RELAXED);
    __atomic_add_fetch(&m->s.frames, n, __ATOMIC_RELAXED);
    __atomic_add_fetch(&m->s.cycles, 1, __ATOMIC_RELEASE);
}

static inline int32_t rt_meter_recent(rt_meter *m, float *dst, int32_t max)
{
    uint32_t h = __atomic_load_n(&m->head, __ATOMIC_ACQUIRE);
    uint32_t n = h < RT_JACK_TIMES ? h : RT_JACK_TIMES;
    if ((uint32_t)max < n) n = (uint32_t)max;
    for (uint32_t i = 0; i < n; i++) dst[i] = m->times_us[(h - n + i) % RT_JACK_TIMES];
    return (int32_t)n;
}

#endif
