/* The PortAudio backend: a duplex PortAudio stream whose callback (C, on
 * PortAudio's audio thread) runs the native runner.  libportaudio is loaded at
 * run time (dlopen).  Read by cffi: declarations only. */
#ifndef RT_PA_H
#define RT_PA_H
#include <stdint.h>
#include "jack.h"

typedef struct rt_pa rt_pa;

typedef struct rt_pa_device {
    int32_t index;
    int32_t max_in;
    int32_t max_out;
    int32_t host_api_type;          /* PortAudio's PaHostApiTypeId: 8 ALSA, 12 JACK, ... */
    double default_rate;
    double low_in_latency;          /* seconds */
    double low_out_latency;
    char name[256];
    char host_api[64];
} rt_pa_device;

/* Load libportaudio and initialise it.  0, or -1 with a message. */
int rt_pa_load(const char *libpath, char *err, int32_t errlen);
/* Devices: fills up to max entries, returns the count (or -1 and a message). */
int32_t rt_pa_devices(rt_pa_device *out, int32_t max, char *err, int32_t errlen);
/* Open a duplex stream (in_dev / out_dev: device indices; -1 for none) with
 * nch channels each way, non-interleaved float32, frames per buffer (0 lets
 * PortAudio choose).  NULL with a message on failure. */
rt_pa *rt_pa_open(int32_t in_dev, int32_t out_dev, int32_t nch, double rate,
                  int32_t frames, double latency_s, char *err, int32_t errlen);
void rt_pa_set_runner(rt_pa *s, void *runner);
/* Fade to another runner over fade_frames from the next callback on (as on
 * JACK); rt_pa_swaps_done moves once the previous runner is no longer used. */
void rt_pa_swap_runner(rt_pa *s, void *runner, int32_t fade_frames);
uint32_t rt_pa_swaps_done(rt_pa *s);
int rt_pa_start(rt_pa *s, char *err, int32_t errlen);
/* Stream latencies as PortAudio reports them (seconds). */
void rt_pa_latency(rt_pa *s, double *in_s, double *out_s);
void rt_pa_get_stats(rt_pa *s, rt_jack_stats *out);
int32_t rt_pa_recent_times(rt_pa *s, float *dst, int32_t max);
void rt_pa_close(rt_pa *s);

#endif
