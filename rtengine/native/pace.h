/* Pacing for the timing benchmarks: sleep until block b of a run that started
 * at *start is due, one block every period_ns (an audio callback's cadence).
 * Internal (not read by cffi). */
#ifndef RT_PACE_H
#define RT_PACE_H
#include <errno.h>
#include <stdint.h>
#include <time.h>

static inline void rt_pace(const struct timespec *start, int32_t b, int64_t period_ns)
{
    if (period_ns <= 0) return;
    int64_t at = (int64_t)start->tv_nsec + (int64_t)b * period_ns;
    struct timespec due = {start->tv_sec + (time_t)(at / 1000000000), (long)(at % 1000000000)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL) == EINTR) {
    }
}

#endif
