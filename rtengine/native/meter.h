/* Callback timing shared by the live backends: counters in rt_jack_stats and
 * a ring of the most recent callback durations.  Written only by the audio
 * callback, read (lossily) by control threads. */
#ifndef RT_METER_H
#define RT_METER_H
#include <sched.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
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

/* Audio thread, first cycle only (a few syscalls, none of which waits):
 * record the scheduling the host API gave the thread, and, where raise_nice
 * is set, without real-time scheduling ask for a larger CPU share
 * (RT_JACK_NICE, see jack.h).  For JACK this is done here, not in a
 * thread-init callback, because libjack calls that in its other threads of
 * the client too. */
static inline void rt_note_thread(rt_meter *m)
{
    int policy = sched_getscheduler(0);
    int32_t prio = 0;
    if (policy == SCHED_FIFO || policy == SCHED_RR) {
        struct sched_param sp;
        if (sched_getparam(0, &sp) == 0) prio = sp.sched_priority;
    } else {
        id_t tid = (id_t)syscall(SYS_gettid);
        int nice_now = getpriority(PRIO_PROCESS, tid);
        if (m->raise_nice && nice_now > RT_JACK_NICE &&
            setpriority(PRIO_PROCESS, tid, RT_JACK_NICE) == 0)
            nice_now = RT_JACK_NICE;
        prio = nice_now;
        policy = SCHED_OTHER;
    }
    __atomic_store_n(&m->s.thread_priority, prio, __ATOMIC_RELAXED);
    __atomic_store_n(&m->s.thread_policy, policy, __ATOMIC_RELEASE);
}

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
