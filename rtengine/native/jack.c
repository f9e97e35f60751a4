/* JACK backend (see jack.h).  libjack is opened with dlopen; the few
 * declarations below restate the JACK API's types and entry points. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "runner.h"
#include "xfade.h"
#include "jack.h"
#include "meter.h"

/* ---- the part of the JACK API this file uses ------------------------------ */
typedef uint32_t jack_nframes_t;
typedef struct rt_jack_client jack_client_t;     /* opaque */
typedef struct rt_jack_port jack_port_t;         /* opaque */
typedef int jack_status_t;
typedef int jack_options_t;
typedef int jack_latency_mode_t;                 /* 0 capture, 1 playback */
typedef struct { jack_nframes_t min, max; } jack_latency_range_t;
typedef int (*JackProcessCallback)(jack_nframes_t nframes, void *arg);
typedef int (*JackXRunCallback)(void *arg);
typedef int (*JackNframesCallback)(jack_nframes_t nframes, void *arg);
typedef void (*JackShutdownCallback)(void *arg);
typedef void (*JackLatencyCallback)(jack_latency_mode_t mode, void *arg);
typedef struct { jack_nframes_t time; size_t size; uint8_t *buffer; } jack_midi_event_t;

enum { JackNoStartServer = 0x01, JackServerName = 0x04 };
enum { JackPortIsInput = 0x1, JackPortIsOutput = 0x2, JackPortIsPhysical = 0x4 };
enum { JackCaptureLatency = 0, JackPlaybackLatency = 1 };
#define JACK_AUDIO "32 bit float mono audio"
#define JACK_MIDI "8 bit raw midi"

static struct {
    void *lib;
    jack_client_t *(*client_open)(const char *, jack_options_t, jack_status_t *, ...);
    int (*client_close)(jack_client_t *);
    const char *(*get_client_name)(jack_client_t *);
    jack_port_t *(*port_register)(jack_client_t *, const char *, const char *, unsigned long,
                                  unsigned long);
    void *(*port_get_buffer)(jack_port_t *, jack_nframes_t);
    const char *(*port_name)(const jack_port_t *);
    int (*set_process_callback)(jack_client_t *, JackProcessCallback, void *);
    int (*set_xrun_callback)(jack_client_t *, JackXRunCallback, void *);
    int (*set_buffer_size_callback)(jack_client_t *, JackNframesCallback, void *);
    int (*set_sample_rate_callback)(jack_client_t *, JackNframesCallback, void *);
    int (*set_latency_callback)(jack_client_t *, JackLatencyCallback, void *);
    void (*on_shutdown)(jack_client_t *, JackShutdownCallback, void *);
    void (*port_get_latency_range)(jack_port_t *, jack_latency_mode_t, jack_latency_range_t *);
    void (*port_set_latency_range)(jack_port_t *, jack_latency_mode_t, jack_latency_range_t *);
    int (*recompute_total_latencies)(jack_client_t *);
    int (*activate)(jack_client_t *);
    int (*deactivate)(jack_client_t *);
    jack_nframes_t (*get_sample_rate)(jack_client_t *);
    jack_nframes_t (*get_buffer_size)(jack_client_t *);
    int (*connect)(jack_client_t *, const char *, const char *);
    const char **(*get_ports)(jack_client_t *, const char *, const char *, unsigned long);
    void (*free)(void *);
    jack_nframes_t (*last_frame_time)(const jack_client_t *);
    void (*set_error_function)(void (*)(const char *));
    void (*set_info_function)(void (*)(const char *));
    jack_port_t *(*port_by_name)(jack_client_t *, const char *);
    uint32_t (*midi_get_event_count)(void *);
    void (*midi_clear_buffer)(void *);
    int (*midi_event_get)(jack_midi_event_t *, void *, uint32_t);
    int (*midi_event_write)(void *, jack_nframes_t, const uint8_t *, size_t);
    size_t (*midi_max_event_size)(void *);
} J;

static void rt_jack_quiet(const char *msg) { (void)msg; }   /* errors are returned instead */

int rt_jack_load(const char *libpath, char *err, int32_t errlen)
{
    if (J.lib) return 0;
    const char *names[] = {libpath, "libjack.so.0", "libjack.so", NULL};
    void *lib = NULL;
    for (int i = libpath ? 0 : 1; names[i] && !lib; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(err, (size_t)errlen, "cannot load libjack (%s): install libjack-jackd2-0 "
                 "(JACK) or pipewire-jack and run under pw-jack", dlerror());
        return -1;
    }
#define SYM(field, name) \
    do { *(void **)(&J.field) = dlsym(lib, name); \
         if (!J.field) { snprintf(err, (size_t)errlen, "libjack lacks %s", name); \
                         dlclose(lib); memset(&J, 0, sizeof J); return -1; } } while (0)
    SYM(client_open, "jack_client_open");
    SYM(client_close, "jack_client_close");
    SYM(get_client_name, "jack_get_client_name");
    SYM(port_register, "jack_port_register");
    SYM(port_get_buffer, "jack_port_get_buffer");
    SYM(port_name, "jack_port_name");
    SYM(set_process_callback, "jack_set_process_callback");
    SYM(set_xrun_callback, "jack_set_xrun_callback");
    SYM(set_buffer_size_callback, "jack_set_buffer_size_callback");
    SYM(set_sample_rate_callback, "jack_set_sample_rate_callback");
    SYM(set_latency_callback, "jack_set_latency_callback");
    SYM(on_shutdown, "jack_on_shutdown");
    SYM(port_get_latency_range, "jack_port_get_latency_range");
    SYM(port_set_latency_range, "jack_port_set_latency_range");
    SYM(recompute_total_latencies, "jack_recompute_total_latencies");
    SYM(activate, "jack_activate");
    SYM(deactivate, "jack_deactivate");
    SYM(get_sample_rate, "jack_get_sample_rate");
    SYM(get_buffer_size, "jack_get_buffer_size");
    SYM(connect, "jack_connect");
    SYM(get_ports, "jack_get_ports");
    SYM(free, "jack_free");
    SYM(last_frame_time, "jack_last_frame_time");
    SYM(set_error_function, "jack_set_error_function");
    SYM(set_info_function, "jack_set_info_function");
    SYM(port_by_name, "jack_port_by_name");
    SYM(midi_get_event_count, "jack_midi_get_event_count");
    SYM(midi_clear_buffer, "jack_midi_clear_buffer");
    SYM(midi_event_get, "jack_midi_event_get");
    SYM(midi_event_write, "jack_midi_event_write");
    SYM(midi_max_event_size, "jack_midi_max_event_size");
#undef SYM
    J.lib = lib;
    J.set_error_function(rt_jack_quiet);
    J.set_info_function(rt_jack_quiet);
    return 0;
}

/* ---- MIDI rings: single producer, single consumer, lock-free --------------
 * Records are [u32 frame time][u16 size][size bytes]; a record is published
 * whole or not at all.  RT_MIDI_RING is a power of two. */
#define RT_MIDI_RING 65536u
#define RT_MIDI_PER_CYCLE 512           /* events written out per cycle at most */
#define RT_MIDI_TX_MAX 4096             /* longest message a control side may send */

typedef struct rt_ring {
    uint32_t head;                      /* written by the producer */
    uint32_t tail;                      /* written by the consumer */
    uint8_t data[RT_MIDI_RING];
} rt_ring;

static int rt_ring_put(rt_ring *r, uint32_t time, const uint8_t *msg, uint32_t size,
                       uint32_t max)
{
    uint32_t head = r->head, tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
    uint32_t need = 6 + size;
    if (size == 0 || size > max || RT_MIDI_RING - (head - tail) < need) return -1;
    uint8_t hdr[6] = {(uint8_t)time, (uint8_t)(time >> 8), (uint8_t)(time >> 16),
                      (uint8_t)(time >> 24), (uint8_t)size, (uint8_t)(size >> 8)};
    for (uint32_t i = 0; i < 6; i++) r->data[(head + i) & (RT_MIDI_RING - 1)] = hdr[i];
    for (uint32_t i = 0; i < size; i++) r->data[(head + 6 + i) & (RT_MIDI_RING - 1)] = msg[i];
    __atomic_store_n(&r->head, head + need, __ATOMIC_RELEASE);
    return 0;
}

/* Copy whole records (up to cap bytes) out of the ring; returns bytes copied. */
static int32_t rt_ring_get(rt_ring *r, uint8_t *dst, int32_t cap)
{
    uint32_t tail = r->tail, head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
    int32_t got = 0;
    while (head - tail >= 6) {
        uint32_t size = r->data[(tail + 4) & (RT_MIDI_RING - 1)] |
                        (uint32_t)r->data[(tail + 5) & (RT_MIDI_RING - 1)] << 8;
        if (got + 6 + (int32_t)size > cap) break;
        for (uint32_t i = 0; i < 6 + size; i++) dst[got + i] = r->data[(tail + i) & (RT_MIDI_RING - 1)];
        got += 6 + (int32_t)size;
        tail += 6 + size;
    }
    __atomic_store_n(&r->tail, tail, __ATOMIC_RELEASE);
    return got;
}

/* Producer side for a control thread writing many records (serialised by
 * the caller): the same as rt_ring_put. */
static int32_t rt_ring_put_records(rt_ring *r, const uint8_t *src, int32_t len)
{
    int32_t off = 0;
    while (off + 6 <= len) {
        uint32_t size = src[off + 4] | (uint32_t)src[off + 5] << 8;
        if (off + 6 + (int32_t)size > len) return -1;
        uint32_t time = src[off] | (uint32_t)src[off + 1] << 8 | (uint32_t)src[off + 2] << 16 |
                        (uint32_t)src[off + 3] << 24;
        if (rt_ring_put(r, time, src + off + 6, size, RT_MIDI_TX_MAX)) return off;
        off += 6 + (int32_t)size;
    }
    return off;
}

/* Audio thread: port events into the ring (too long or no room: dropped). */
static void rt_midi_to_ring(void *port_buf, rt_ring *r, uint32_t base, uint64_t *events,
                            uint64_t *dropped)
{
    uint32_t cnt = J.midi_get_event_count(port_buf);
    for (uint32_t e = 0; e < cnt; e++) {
        jack_midi_event_t ev;
        if (J.midi_event_get(&ev, port_buf, e)) continue;
        if (rt_ring_put(r, base + ev.time, ev.buffer, (uint32_t)ev.size, RT_MIDI_MAX))
            __atomic_add_fetch(dropped, 1, __ATOMIC_RELAXED);
        else
            __atomic_add_fetch(events, 1, __ATOMIC_RELAXED);
    }
}

/* Audio thread: ring records out to a port at frame 0 of this cycle.  A
 * record that does not fit in what is left of this cycle's port buffer
 * stays first in the ring for the next cycle, so order is kept and nothing
 * small is lost behind a burst; only a record longer than an empty port
 * buffer can ever take is dropped (and counted). */
static void rt_ring_to_midi(rt_ring *r, void *port_buf, uint64_t *dropped)
{
    J.midi_clear_buffer(port_buf);
    size_t room = J.midi_max_event_size(port_buf);
    uint32_t tail = r->tail, head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
    uint8_t msg[RT_MIDI_TX_MAX];
    int wrote = 0;
    for (int k = 0; k < RT_MIDI_PER_CYCLE && head - tail >= 6; k++) {
        uint32_t size = r->data[(tail + 4) & (RT_MIDI_RING - 1)] |
                        (uint32_t)r->data[(tail + 5) & (RT_MIDI_RING - 1)] << 8;
        if (size > room) {
            __atomic_add_fetch(dropped, 1, __ATOMIC_RELAXED);
        } else {
            for (uint32_t i = 0; i < size; i++)
                msg[i] = r->data[(tail + 6 + i) & (RT_MIDI_RING - 1)];
            if (!J.midi_event_write(port_buf, 0, msg, size)) wrote++;
            else if (wrote) break;                      /* this cycle is full: the next */
            else __atomic_add_fetch(dropped, 1, __ATOMIC_RELAXED);     /* refused when empty */
        }
        tail += 6 + size;
    }
    __atomic_store_n(&r->tail, tail, __ATOMIC_RELEASE);
}

static int rt_on_xrun(void *arg)
{
    rt_meter *m = arg;
    __atomic_add_fetch(&m->s.xruns, 1, __ATOMIC_RELAXED);
    return 0;
}

static int rt_on_bufsize(jack_nframes_t n, void *arg)
{
    rt_meter *m = arg;
    __atomic_store_n(&m->s.period, n, __ATOMIC_RELAXED);
    return 0;
}

static int rt_on_rate(jack_nframes_t n, void *arg)
{
    rt_meter *m = arg;
    uint32_t old = __atomic_exchange_n(&m->s.sample_rate, n, __ATOMIC_RELAXED);
    if (old && old != n) __atomic_store_n(&m->s.rate_changed, 1, __ATOMIC_RELAXED);
    return 0;
}

static void rt_on_shutdown(void *arg)
{
    rt_meter *m = arg;
    __atomic_store_n(&m->s.shutdown, 1, __ATOMIC_RELEASE);
}

/* Server facts and the notifications every client of ours counts. */
static void rt_meter_attach(jack_client_t *c, rt_meter *m)
{
    m->s.sample_rate = J.get_sample_rate(c);
    m->s.period = J.get_buffer_size(c);
    J.set_xrun_callback(c, rt_on_xrun, m);
    J.set_buffer_size_callback(c, rt_on_bufsize, m);
    J.set_sample_rate_callback(c, rt_on_rate, m);
    J.on_shutdown(c, rt_on_shutdown, m);
    m->s.thread_policy = -1;
}

/* ---- the engine client -------------------------------------------------------- */
#define RT_SCRATCH 4096                 /* frames per runner call; longer periods loop */

struct rt_jack {
    rt_meter m;                         /* first member: callbacks take either */
    jack_client_t *client;
    int32_t nin, nout;
    jack_port_t *in[RT_JACK_MAX_PORTS], *out[RT_JACK_MAX_PORTS];
    jack_port_t *midi_in, *midi_out;
    rt_xfade x;                         /* the playing chain and chain changes */
    int32_t pending_latency;
    int32_t latency;
    int32_t active;
    rt_ring midi_rx, midi_tx;           /* in: callback -> control; out: control -> callback */
    float io[RT_JACK_MAX_PORTS * RT_SCRATCH];
    float io2[RT_JACK_MAX_PORTS * RT_SCRATCH];
};

static int rt_jack_process(jack_nframes_t n, void *arg)
{
    rt_jack *j = arg;
    if (j->m.s.thread_policy < 0) rt_note_thread(&j->m);   /* before timing the cycle */
    uint64_t t0 = rt_ns();
    if (rt_xfade_begin(&j->x))            /* a new chain: its latency from now on */
        __atomic_store_n(&j->latency, __atomic_load_n(&j->pending_latency, __ATOMIC_RELAXED),
                         __ATOMIC_RELAXED);
    rt_runner *r = rt_xfade_current(&j->x);
    const float *in[RT_JACK_MAX_PORTS];
    float *out[RT_JACK_MAX_PORTS];
    for (int32_t c = 0; c < j->nin; c++) in[c] = J.port_get_buffer(j->in[c], n);
    for (int32_t c = 0; c < j->nout; c++) out[c] = J.port_get_buffer(j->out[c], n);
    rt_midi_to_ring(J.port_get_buffer(j->midi_in, n), &j->midi_rx, J.last_frame_time(j->client),
                    &j->m.s.midi_in, &j->m.s.midi_dropped);
    rt_ring_to_midi(&j->midi_tx, J.port_get_buffer(j->midi_out, n), &j->m.s.midi_dropped);
    if (!r || r->nch != j->nin || j->nin != j->nout) {
        for (int32_t c = 0; c < j->nout; c++) {
            if (c < j->nin) memcpy(out[c], in[c], sizeof(float) * n);
            else memset(out[c], 0, sizeof(float) * n);
        }
    } else {
        for (jack_nframes_t done = 0; done < n;) {
            jack_nframes_t m = n - done < RT_SCRATCH ? n - done : RT_SCRATCH;
            for (int32_t c = 0; c < j->nin; c++)
                memcpy(j->io + (int64_t)c * RT_SCRATCH, in[c] + done, sizeof(float) * m);
            rt_xfade_process(&j->x, j->io, j->io2, RT_SCRATCH, (int32_t)m);
            for (int32_t c = 0; c < j->nout; c++)
                memcpy(out[c] + done, j->io + (int64_t)c * RT_SCRATCH, sizeof(float) * m);
            done += m;
        }
    }
    rt_meter_cycle(&j->m, t0, n);
    return 0;
}

/* A stage that delays by L: capture latency of our outputs is that of our
 * inputs plus L; playback latency of our inputs is that of our outputs plus L. */
static void rt_jack_latency(jack_latency_mode_t mode, void *arg)
{
    rt_jack *j = arg;
    jack_nframes_t L = (jack_nframes_t)__atomic_load_n(&j->latency, __ATOMIC_RELAXED);
    jack_latency_range_t range = {UINT32_MAX, 0}, rr;
    jack_port_t **from = mode == JackCaptureLatency ? j->in : j->out;
    jack_port_t **to = mode == JackCaptureLatency ? j->out : j->in;
    int32_t nfrom = mode == JackCaptureLatency ? j->nin : j->nout;
    int32_t nto = mode == JackCaptureLatency ? j->nout : j->nin;
    for (int32_t c = 0; c < nfrom; c++) {
        J.port_get_latency_range(from[c], mode, &rr);
        if (rr.min < range.min) range.min = rr.min;
        if (rr.max > range.max) range.max = rr.max;
    }
    if (range.min > range.max) range.min = range.max = 0;
    range.min += L;
    range.max += L;
    for (int32_t c = 0; c < nto; c++) J.port_set_latency_range(to[c], mode, &range);
}

static jack_client_t *rt_open_client(const char *name, const char *server, char *err,
                                     int32_t errlen)
{
    if (rt_jack_load(NULL, err, errlen)) return NULL;
    jack_status_t status = 0;
    jack_client_t *c = server && *server
        ? J.client_open(name, JackNoStartServer | JackServerName, &status, server)
        : J.client_open(name, JackNoStartServer, &status);
    if (!c)
        snprintf(err, (size_t)errlen, "cannot connect to the JACK server%s%s (status 0x%x): "
                 "is it running? start one with 'jackd -d dummy' (or -d alsa), or use "
                 "PipeWire's pw-jack", server && *server ? " " : "",
                 server && *server ? server : "", (unsigned)status);
    return c;
}

static int rt_register(jack_client_t *c, jack_port_t **dst, const char *fmt, int32_t n,
                       const char *type, unsigned long flags, char *err, int32_t errlen)
{
    char name[64];
    for (int32_t i = 0; i < n; i++) {
        snprintf(name, sizeof name, fmt, i + 1);
        dst[i] = J.port_register(c, name, type, flags, 0);
        if (!dst[i]) {
            snprintf(err, (size_t)errlen, "JACK refused to register port %s", name);
            return -1;
        }
    }
    return 0;
}

rt_jack *rt_jack_open(const char *client_name, const char *server_name, int32_t nin,
                      int32_t nout, char *err, int32_t errlen)
{
    if (nin < 0 || nout < 0 || nin > RT_JACK_MAX_PORTS || nout > RT_JACK_MAX_PORTS) {
        snprintf(err, (size_t)errlen, "port counts must be 0..%d", RT_JACK_MAX_PORTS);
        return NULL;
    }
    rt_jack *j = calloc(1, sizeof *j);
    if (!j) { snprintf(err, (size_t)errlen, "out of memory"); return NULL; }
    j->client = rt_open_client(client_name, server_name, err, errlen);
    if (!j->client) { free(j); return NULL; }
    j->nin = nin;
    j->nout = nout;
    if (rt_register(j->client, j->in, "in_%d", nin, JACK_AUDIO, JackPortIsInput, err, errlen) ||
        rt_register(j->client, j->out, "out_%d", nout, JACK_AUDIO, JackPortIsOutput, err, errlen) ||
        rt_register(j->client, &j->midi_in, "midi_in", 1, JACK_MIDI, JackPortIsInput, err, errlen) ||
        rt_register(j->client, &j->midi_out, "midi_out", 1, JACK_MIDI, JackPortIsOutput, err,
                    errlen)) {
        J.client_close(j->client);
        free(j);
        return NULL;
    }
    j->m.raise_nice = 1;
    rt_meter_attach(j->client, &j->m);
    J.set_process_callback(j->client, rt_jack_process, j);
    J.set_latency_callback(j->client, rt_jack_latency, j);
    return j;
}

void rt_jack_set_runner(rt_jack *j, void *runner, int32_t latency)
{
    __atomic_store_n(&j->latency, latency, __ATOMIC_RELAXED);
    rt_xfade_set(&j->x, runner);
    __atomic_store_n(&j->m.s.running, runner ? 1 : 0, __ATOMIC_RELAXED);
}

int32_t rt_jack_midi_read(rt_jack *j, uint8_t *dst, int32_t cap)
{
    return rt_ring_get(&j->midi_rx, dst, cap);
}

int32_t rt_jack_midi_send(rt_jack *j, const uint8_t *records, int32_t len)
{
    return rt_ring_put_records(&j->midi_tx, records, len);
}

void rt_jack_swap_runner(rt_jack *j, void *runner, int32_t latency, int32_t fade_frames)
{
    __atomic_store_n(&j->pending_latency, latency, __ATOMIC_RELAXED);
    rt_xfade_post(&j->x, runner, fade_frames);
}

uint32_t rt_jack_swaps_done(rt_jack *j)
{
    return rt_xfade_done(&j->x);
}

int rt_jack_activate(rt_jack *j)
{
    int e = J.activate(j->client);
    if (!e) j->active = 1;
    return e;
}

int rt_jack_connect(rt_jack *j, const char *source, const char *destination)
{
    return J.connect(j->client, source, destination);
}

const char *rt_jack_port_name(rt_jack *j, int32_t kind, int32_t idx)
{
    switch (kind) {
    case 0: return idx >= 0 && idx < j->nin ? J.port_name(j->in[idx]) : NULL;
    case 1: return idx >= 0 && idx < j->nout ? J.port_name(j->out[idx]) : NULL;
    case 2: return J.port_name(j->midi_in);
    case 3: return J.port_name(j->midi_out);
    default: return NULL;
    }
}

const char *rt_jack_client_name(rt_jack *j) { return J.get_client_name(j->client); }

int32_t rt_jack_physical_ports(rt_jack *j, int32_t flags, char *buf, int32_t max)
{
    unsigned long f = JackPortIsPhysical | (flags == 1 ? JackPortIsInput : JackPortIsOutput);
    const char **ports = J.get_ports(j->client, NULL, JACK_AUDIO, f);
    int32_t n = 0;
    if (!ports) return 0;
    for (; ports[n] && n < max; n++) {
        strncpy(buf + (int64_t)n * 256, ports[n], 255);
        buf[(int64_t)n * 256 + 255] = 0;
    }
    J.free(ports);
    return n;
}

int rt_jack_port_latency(rt_jack *j, const char *port, int32_t playback, uint32_t *min,
                         uint32_t *max)
{
    jack_port_t *p = J.port_by_name(j->client, port);
    if (!p) return -1;
    jack_latency_range_t r;
    J.port_get_latency_range(p, playback ? JackPlaybackLatency : JackCaptureLatency, &r);
    *min = r.min;
    *max = r.max;
    return 0;
}

static int32_t rt_list_ports(jack_client_t *c, int32_t midi, int32_t flags, char *buf,
                             int32_t max)
{
    unsigned long f = flags == 1 ? JackPortIsInput : flags == 2 ? JackPortIsOutput : 0;
    const char **ports = J.get_ports(c, NULL, midi ? JACK_MIDI : JACK_AUDIO, f);
    int32_t n = 0;
    if (!ports) return 0;
    for (; ports[n] && n < max; n++) {
        strncpy(buf + (int64_t)n * 256, ports[n], 255);
        buf[(int64_t)n * 256 + 255] = 0;
    }
    J.free(ports);
    return n;
}

int32_t rt_jack_list_ports(rt_jack *j, int32_t midi, int32_t flags, char *buf, int32_t max)
{
    return rt_list_ports(j->client, midi, flags, buf, max);
}

void rt_jack_get_stats(rt_jack *j, rt_jack_stats *out)
{
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    *out = j->m.s;
    out->latency = __atomic_load_n(&j->latency, __ATOMIC_RELAXED);
}

int32_t rt_jack_recent_times(rt_jack *j, float *dst, int32_t max)
{
    return rt_meter_recent(&j->m, dst, max);
}

void rt_jack_recompute_latency(rt_jack *j)
{
    if (!__atomic_load_n(&j->m.s.shutdown, __ATOMIC_ACQUIRE))
        J.recompute_total_latencies(j->client);
}

void rt_jack_close(rt_jack *j)
{
    if (!j) return;
    /* after a server shutdown the client only needs closing */
    if (j->active && !__atomic_load_n(&j->m.s.shutdown, __ATOMIC_ACQUIRE))
        J.deactivate(j->client);
    J.client_close(j->client);
    free(j);
}

/* ---- peer client ----------------------------------------------------------------- */
struct rt_peer {
    rt_meter m;
    jack_client_t *client;
    int32_t mode, nports;
    jack_port_t *in[RT_JACK_MAX_PORTS], *out[RT_JACK_MAX_PORTS];
    rt_ring midi_rx, midi_tx;
    float *buf;
    int64_t stride;
    int64_t pos;                        /* frames played or recorded */
    int64_t start;                      /* frame time of the first such frame, -1 before */
    int32_t armed;
};

static int rt_peer_process(jack_nframes_t n, void *arg)
{
    rt_peer *p = arg;
    if (p->m.s.thread_policy < 0) rt_note_thread(&p->m);   /* before timing the cycle */
    uint64_t t0 = rt_ns();
    if (p->mode == 3) {
        rt_midi_to_ring(J.port_get_buffer(p->in[0], n), &p->midi_rx, J.last_frame_time(p->client),
                        &p->m.s.midi_in, &p->m.s.midi_dropped);
        rt_ring_to_midi(&p->midi_tx, J.port_get_buffer(p->out[0], n), &p->m.s.midi_dropped);
    } else if (p->mode == 2) {
        for (int32_t c = 0; c < p->nports; c++)
            memcpy(J.port_get_buffer(p->out[c], n), J.port_get_buffer(p->in[c], n),
                   sizeof(float) * n);
    } else {
        int go = p->mode == 1 || __atomic_load_n(&p->armed, __ATOMIC_ACQUIRE);
        int64_t pos = p->pos;
        int64_t m = go ? (p->stride - pos < (int64_t)n ? p->stride - pos : (int64_t)n) : 0;
        /* frame time of buffer position 0, renewed every cycle: the first
         * cycle after activation can report the previous cycle's time */
        if (m > 0)
            __atomic_store_n(&p->start, (int64_t)J.last_frame_time(p->client) - pos,
                             __ATOMIC_RELEASE);
        for (int32_t c = 0; c < p->nports; c++) {
            float *b = p->buf + (int64_t)c * p->stride + pos;
            if (p->mode == 0) {
                float *o = J.port_get_buffer(p->out[c], n);
                if (m > 0) memcpy(o, b, sizeof(float) * (size_t)m);
                int64_t k = m > 0 ? m : 0;
                if ((int64_t)n > k) memset(o + k, 0, sizeof(float) * (size_t)((int64_t)n - k));
            } else if (m > 0) {
                memcpy(b, J.port_get_buffer(p->in[c], n), sizeof(float) * (size_t)m);
            }
        }
        if (m > 0) __atomic_store_n(&p->pos, pos + m, __ATOMIC_RELEASE);
    }
    rt_meter_cycle(&p->m, t0, n);
    return 0;
}

rt_peer *rt_peer_open(const char *client_name, const char *server_name, int32_t mode,
                      int32_t nports, float *buf, int64_t stride, char *err, int32_t errlen)
{
    if (mode < 0 || mode > 3 || nports < 1 || nports > RT_JACK_MAX_PORTS ||
        (mode < 2 && (!buf || stride < 1))) {
        snprintf(err, (size_t)errlen, "bad peer arguments");
        return NULL;
    }
    rt_peer *p = calloc(1, sizeof *p);
    if (!p) { snprintf(err, (size_t)errlen, "out of memory"); return NULL; }
    p->client = rt_open_client(client_name, server_name, err, errlen);
    if (!p->client) { free(p); return NULL; }
    p->mode = mode;
    p->nports = nports;
    p->buf = buf;
    p->stride = stride;
    p->start = -1;
    const char *type = mode == 3 ? JACK_MIDI : JACK_AUDIO;
    if (mode == 3) nports = p->nports = 1;
    if ((mode != 0 && rt_register(p->client, p->in, mode == 3 ? "midi_in" : "in_%d", nports,
                                  type, JackPortIsInput, err, errlen)) ||
        (mode != 1 && rt_register(p->client, p->out, mode == 3 ? "midi_out" : "out_%d",
                                  nports, type, JackPortIsOutput, err, errlen))) {
        J.client_close(p->client);
        free(p);
        return NULL;
    }
    rt_meter_attach(p->client, &p->m);
    J.set_process_callback(p->client, rt_peer_process, p);
    return p;
}

int rt_peer_activate(rt_peer *p) { return J.activate(p->client); }
int rt_peer_connect(rt_peer *p, const char *source, const char *destination)
{
    return J.connect(p->client, source, destination);
}
void rt_peer_arm(rt_peer *p) { __atomic_store_n(&p->armed, 1, __ATOMIC_RELEASE); }
int64_t rt_peer_start_time(rt_peer *p) { return __atomic_load_n(&p->start, __ATOMIC_ACQUIRE); }
int64_t rt_peer_frames(rt_peer *p) { return __atomic_load_n(&p->pos, __ATOMIC_ACQUIRE); }

const char *rt_peer_port_name(rt_peer *p, int32_t is_output, int32_t idx)
{
    if (idx < 0 || idx >= p->nports) return NULL;
    jack_port_t *port = is_output ? p->out[idx] : p->in[idx];
    return port ? J.port_name(port) : NULL;
}

int32_t rt_peer_list_ports(rt_peer *p, int32_t midi, int32_t flags, char *buf, int32_t max)
{
    return rt_list_ports(p->client, midi, flags, buf, max);
}

int32_t rt_peer_midi_read(rt_peer *p, uint8_t *dst, int32_t cap)
{
    return rt_ring_get(&p->midi_rx, dst, cap);
}

int32_t rt_peer_midi_send(rt_peer *p, const uint8_t *records, int32_t len)
{
    return rt_ring_put_records(&p->midi_tx, records, len);
}

void rt_peer_get_stats(rt_peer *p, rt_jack_stats *out)
{
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    *out = p->m.s;
}

int32_t rt_peer_recent_times(rt_peer *p, float *dst, int32_t max)
{
    return rt_meter_recent(&p->m, dst, max);
}

void rt_peer_close(rt_peer *p)
{
    if (!p) return;
    if (!__atomic_load_n(&p->m.s.shutdown, __ATOMIC_ACQUIRE))
        J.deactivate(p->client);
    J.client_close(p->client);
    free(p);
}
