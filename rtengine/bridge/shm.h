/* Helpers both ends of the bridge use: futexes on the shared segment and the
 * segment's name.  Internal (not read by cffi). */
#ifndef RTB_SHM_H
#define RTB_SHM_H
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "protocol.h"

static inline uint64_t rtb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A spin-wait hint to the CPU. */
static inline void rtb_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Sleep while *word == expect, at most timeout_ns (shared futex: works across
 * processes).  Returns when woken, on timeout or on a spurious wake-up. */
static inline void rtb_wait(uint32_t *word, uint32_t expect, uint64_t timeout_ns)
{
    struct timespec ts = {(time_t)(timeout_ns / 1000000000u), (long)(timeout_ns % 1000000000u)};
    syscall(SYS_futex, word, FUTEX_WAIT, expect, &ts, NULL, 0);
}

static inline void rtb_wake(uint32_t *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* "/rtengine-<uid>-<name>"; the name is letters, digits, '-', '_' only. */
static inline int rtb_segment_name(const char *name, char *dst, size_t cap)
{
    if (!name || !*name) name = "default";
    for (const char *p = name; *p; p++) {
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_'))
            return -1;
    }
    int n = snprintf(dst, cap, "/rtengine-%u-%s", (unsigned)getuid(), name);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

#define RTB_DEAD_NS 1000000000u       /* a heartbeat older than this: no server */

#endif
