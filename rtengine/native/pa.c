/* PortAudio backend (see pa.h).  The declarations below restate the parts of
 * PortAudio's API (v19) that this file uses. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "runner.h"
#include "xfade.h"
#include "pa.h"
#include "meter.h"

typedef int PaError;
typedef int PaDeviceIndex;
typedef int PaHostApiIndex;
typedef double PaTime;
typedef unsigned long PaSampleFormat;
typedef unsigned long PaStreamFlags;
typedef unsigned long PaStreamCallbackFlags;
typedef void PaStream;
typedef struct {
    int structVersion;
    const char *name;
    PaHostApiIndex hostApi;
    int maxInputChannels, maxOutputChannels;
    PaTime defaultLowInputLatency, defaultLowOutputLatency;
    PaTime defaultHighInputLatency, defaultHighOutputLatency;
    double defaultSampleRate;
} PaDeviceInfo;
typedef struct {
    int structVersion;
    int type;
    const char *name;
    int deviceCount;
    PaDeviceIndex defaultInputDevice, defaultOutputDevice;
} PaHostApiInfo;
typedef struct {
    PaDeviceIndex device;
    int channelCount;
    PaSampleFormat sampleFormat;
    PaTime suggestedLatency;
    void *hostApiSpecificStreamInfo;
} PaStreamParameters;
typedef struct {
    int structVersion;
    PaTime inputLatency, outputLatency;
    double sampleRate;
} PaStreamInfo;
typedef int PaStreamCallback(const void *input, void *output, unsigned long frames,
                             const void *time_info, PaStreamCallbackFlags flags, void *user);

#define paFloat32 0x00000001UL
#define paNonInterleaved 0x80000000UL
#define paClipOff 0x00000001UL
#define paDitherOff 0x00000002UL
#define paXrunFlags 0x0000000FUL          /* input/output under- and overflow */

static struct {
    void *lib;
    PaError (*Initialize)(void);
    const char *(*GetErrorText)(PaError);
    PaDeviceIndex (*GetDeviceCount)(void);
    const PaDeviceInfo *(*GetDeviceInfo)(PaDeviceIndex);
    const PaHostApiInfo *(*GetHostApiInfo)(PaHostApiIndex);
    PaError (*OpenStream)(PaStream **, const PaStreamParameters *, const PaStreamParameters *,
                          double, unsigned long, PaStreamFlags, PaStreamCallback *, void *);
    PaError (*StartStream)(PaStream *);
    PaError (*StopStream)(PaStream *);
    PaError (*CloseStream)(PaStream *);
    const PaStreamInfo *(*GetStreamInfo)(PaStream *);
} P;

int rt_pa_load(const char *libpath, char *err, int32_t errlen)
{
    if (P.lib) return 0;
    const char *names[] = {libpath, "libportaudio.so.2", "libportaudio.so", NULL};
    void *lib = NULL;
    for (int i = libpath ? 0 : 1; names[i] && !lib; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(err, (size_t)errlen, "cannot load PortAudio (%s): install libportaudio2",
                 dlerror());
        return -1;
    }
#define SYM(field, name) \
    do { *(void **)(&P.field) = dlsym(lib, name); \
         if (!P.field) { snprintf(err, (size_t)errlen, "libportaudio lacks %s", name); \
                         dlclose(lib); memset(&P, 0, sizeof P); return -1; } } while (0)
    SYM(Initialize, "Pa_Initialize");
    SYM(GetErrorText, "Pa_GetErrorText");
    SYM(GetDeviceCount, "Pa_GetDeviceCount");
    SYM(GetDeviceInfo, "Pa_GetDeviceInfo");
    SYM(GetHostApiInfo, "Pa_GetHostApiInfo");
    SYM(OpenStream, "Pa_OpenStream");
    SYM(StartStream, "Pa_StartStream");
    SYM(StopStream, "Pa_StopStream");
    SYM(CloseStream, "Pa_CloseStream");
    SYM(GetStreamInfo, "Pa_GetStreamInfo");
#undef SYM
    PaError e = P.Initialize();
    if (e) {
        snprintf(err, (size_t)errlen, "PortAudio failed to initialise: %s", P.GetErrorText(e));
        dlclose(lib);
        memset(&P, 0, sizeof P);
        return -1;
    }
    P.lib = lib;
    return 0;
}

int32_t rt_pa_devices(rt_pa_device *out, int32_t max, char *err, int32_t errlen)
{
    if (rt_pa_load(NULL, err, errlen)) return -1;
    int32_t n = P.GetDeviceCount(), k = 0;
    if (n < 0) {
        snprintf(err, (size_t)errlen, "PortAudio: %s", P.GetErrorText(n));
        return -1;
    }
    for (int32_t i = 0; i < n && k < max; i++) {
        const PaDeviceInfo *d = P.GetDeviceInfo(i);
        if (!d) continue;
        const PaHostApiInfo *h = P.GetHostApiInfo(d->hostApi);
        rt_pa_device *o = &out[k++];
        memset(o, 0, sizeof *o);
        o->index = i;
        o->max_in = d->maxInputChannels;
        o->max_out = d->maxOutputChannels;
        o->host_api_type = h ? h->type : -1;
        o->default_rate = d->defaultSampleRate;
        o->low_in_latency = d->defaultLowInputLatency;
        o->low_out_latency = d->defaultLowOutputLatency;
        snprintf(o->name, sizeof o->name, "%s", d->name ? d->name : "?");
        snprintf(o->host_api, sizeof o->host_api, "%s", h && h->name ? h->name : "?");
    }
    return k;
}

#define RT_PA_SCRATCH 4096

struct rt_pa {
    rt_meter m;
    PaStream *stream;
    int32_t nch, has_in, has_out;
    rt_xfade x;                                 /* the playing chain and chain changes */
    float io[RT_JACK_MAX_PORTS * RT_PA_SCRATCH];
    float io2[RT_JACK_MAX_PORTS * RT_PA_SCRATCH];
};

static int rt_pa_callback(const void *input, void *output, unsigned long n,
                          const void *time_info, PaStreamCallbackFlags flags, void *user)
{
    (void)time_info;
    rt_pa *s = user;
    if (s->m.s.thread_policy < 0) rt_note_thread(&s->m);   /* before timing the callback */
    uint64_t t0 = rt_ns();
    const float *const *in = input;
    float *const *out = output;
    rt_xfade_begin(&s->x);
    rt_runner *r = rt_xfade_current(&s->x);
    if (flags & paXrunFlags) __atomic_add_fetch(&s->m.s.xruns, 1, __ATOMIC_RELAXED);
    for (unsigned long done = 0; done < n;) {
        unsigned long m = n - done < RT_PA_SCRATCH ? n - done : RT_PA_SCRATCH;
        for (int32_t c = 0; c < s->nch; c++) {
            float *dst = s->io + (int64_t)c * RT_PA_SCRATCH;
            if (s->has_in && in && in[c]) memcpy(dst, in[c] + done, sizeof(float) * m);
            else memset(dst, 0, sizeof(float) * m);
        }
        if (r && r->nch == s->nch)
            rt_xfade_process(&s->x, s->io, s->io2, RT_PA_SCRATCH, (int32_t)m);
        if (s->has_out && out)
            for (int32_t c = 0; c < s->nch; c++)
                if (out[c]) memcpy(out[c] + done, s->io + (int64_t)c * RT_PA_SCRATCH,
                                   sizeof(float) * m);
        done += m;
    }
    rt_meter_cycle(&s->m, t0, (uint32_t)n);
    return 0;                                   /* paContinue */
}

rt_pa *rt_pa_open(int32_t in_dev, int32_t out_dev, int32_t nch, double rate,
                  int32_t frames, double latency_s, char *err, int32_t errlen)
{
    if (rt_pa_load(NULL, err, errlen)) return NULL;
    if (nch < 1 || nch > RT_JACK_MAX_PORTS || (in_dev < 0 && out_dev < 0)) {
        snprintf(err, (size_t)errlen, "need 1..%d channels and an input or output device",
                 RT_JACK_MAX_PORTS);
        return NULL;
    }
    rt_pa *s = calloc(1, sizeof *s);
    if (!s) { snprintf(err, (size_t)errlen, "out of memory"); return NULL; }
    s->m.s.thread_policy = -1;              /* noted on the first callback */
    s->nch = nch;
    s->has_in = in_dev >= 0;
    s->has_out = out_dev >= 0;
    PaStreamParameters ip = {in_dev, nch, paFloat32 | paNonInterleaved, latency_s, NULL};
    PaStreamParameters op = {out_dev, nch, paFloat32 | paNonInterleaved, latency_s, NULL};
    PaError e = P.OpenStream(&s->stream, s->has_in ? &ip : NULL, s->has_out ? &op : NULL, rate,
                             (unsigned long)(frames > 0 ? frames : 0), paClipOff | paDitherOff,
                             rt_pa_callback, s);
    if (e) {
        snprintf(err, (size_t)errlen, "PortAudio cannot open the stream: %s", P.GetErrorText(e));
        free(s);
        return NULL;
    }
    s->m.s.sample_rate = (uint32_t)rate;
    s->m.s.period = (uint32_t)(frames > 0 ? frames : 0);
    return s;
}

void rt_pa_set_runner(rt_pa *s, void *runner)
{
    rt_xfade_set(&s->x, runner);
    __atomic_store_n(&s->m.s.running, runner ? 1 : 0, __ATOMIC_RELAXED);
}

void rt_pa_swap_runner(rt_pa *s, void *runner, int32_t fade_frames)
{
    rt_xfade_post(&s->x, runner, fade_frames);
}

uint32_t rt_pa_swaps_done(rt_pa *s)
{
    return rt_xfade_done(&s->x);
}

int rt_pa_start(rt_pa *s, char *err, int32_t errlen)
{
    PaError e = P.StartStream(s->stream);
    if (e) snprintf(err, (size_t)errlen, "PortAudio cannot start the stream: %s",
                    P.GetErrorText(e));
    return e ? -1 : 0;
}

void rt_pa_latency(rt_pa *s, double *in_s, double *out_s)
{
    const PaStreamInfo *i = P.GetStreamInfo(s->stream);
    *in_s = i ? i->inputLatency : 0.0;
    *out_s = i ? i->outputLatency : 0.0;
}

void rt_pa_get_stats(rt_pa *s, rt_jack_stats *out)
{
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    *out = s->m.s;
}

int32_t rt_pa_recent_times(rt_pa *s, float *dst, int32_t max)
{
    return rt_meter_recent(&s->m, dst, max);
}

void rt_pa_close(rt_pa *s)
{
    if (!s) return;
    P.StopStream(s->stream);                   /* waits for the callback to return */
    P.CloseStream(s->stream);
    free(s);
}
