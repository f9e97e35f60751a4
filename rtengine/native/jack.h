/* The JACK backend: a JACK client whose process callback (C, on JACK's
 * real-time thread) runs the native runner.  libjack is loaded at run time
 * (dlopen), so the package builds without JACK headers and works with
 * jackd2's libjack or PipeWire's (pw-jack).  Also a small C peer client
 * (player, recorder, pass-through) for tests and benchmarks.
 *
 * Read by cffi (rtengine/native/_runner_build.py): declarations only. */
#ifndef RT_JACK_H
#define RT_JACK_H
#include <stdint.h>

#define RT_JACK_MAX_PORTS 32
#define RT_JACK_TIMES 8192          /* callback durations kept for statistics */
#define RT_MIDI_MAX 256             /* longer MIDI messages (SysEx) are dropped, counted */

typedef struct rt_jack_stats {
    uint64_t cycles;                /* process callbacks run */
    uint64_t frames;
    uint64_t xruns;                 /* reported by the server */
    uint64_t deadline_misses;       /* callbacks that took longer than one period */
    uint64_t max_ns;                /* longest callback */
    uint32_t sample_rate;
    uint32_t period;                /* frames per callback */
    int32_t shutdown;               /* 1 once the server has gone away */
    int32_t rate_changed;           /* 1 when the server's sample rate changed */
    int32_t latency;                /* samples published on the ports */
    int32_t running;                /* 1 while a runner is attached */
    uint64_t midi_in;               /* MIDI events passed to the control side */
    uint64_t midi_dropped;          /* too long, or no room in a ring */
    int32_t thread_policy;          /* audio thread: -1 before the first cycle, 0 SCHED_OTHER,
                                       1 SCHED_FIFO, 2 SCHED_RR */
    int32_t thread_priority;        /* its real-time priority, or its nice value under
                                       SCHED_OTHER (RT_JACK_NICE when raising it was allowed) */
} rt_jack_stats;

/* Without real-time scheduling (jackd --no-realtime, no rtprio rights) the
 * engine's audio thread asks for this nice value, as desktop sound servers
 * do, so ordinary threads of the process (a busy Python thread) do not take
 * its CPU mid-callback.  Needs CAP_SYS_NICE or an RLIMIT_NICE that allows it;
 * refused, the thread keeps its nice value. */
#define RT_JACK_NICE (-11)

typedef struct rt_jack rt_jack;

/* Load libjack (path or NULL for the default soname).  0 or -1 with a message. */
int rt_jack_load(const char *libpath, char *err, int32_t errlen);

/* Open a client with nin/nout audio ports and a MIDI in and out port.  Ports are
 * named in_1.., out_1.., midi_in, midi_out.  server may be NULL.  Returns NULL
 * with a message in err when the server is not there or refuses the client. */
rt_jack *rt_jack_open(const char *client_name, const char *server_name, int32_t nin,
                      int32_t nout, char *err, int32_t errlen);

/* Attach the runner (or NULL to pass audio through) and the chain latency; the
 * callback picks it up at its next cycle.  Control thread. */
void rt_jack_set_runner(rt_jack *j, void *runner, int32_t latency);

/* MIDI, control side.  Records are [u32 frame time LE][u16 size LE][bytes].
 * read: copies whole records received on midi_in (up to cap bytes), returns
 * the bytes copied.  send: queues records for midi_out (sent at the next
 * cycle), returns the bytes accepted (a full ring accepts fewer). */
int32_t rt_jack_midi_read(rt_jack *j, uint8_t *dst, int32_t cap);
int32_t rt_jack_midi_send(rt_jack *j, const uint8_t *records, int32_t len);

/* Hand the callback a new runner (control thread): at its next cycle it runs
 * both chains and crossfades linearly over fade_frames (0: switch at once),
 * then drops the old one and bumps the count rt_jack_swaps_done returns.
 * One swap at a time: wait for the count before the next. */
void rt_jack_swap_runner(rt_jack *j, void *runner, int32_t latency, int32_t fade_frames);
uint32_t rt_jack_swaps_done(rt_jack *j);


int rt_jack_activate(rt_jack *j);
int rt_jack_connect(rt_jack *j, const char *source, const char *destination);
/* Full name of port idx: kind 0 audio in, 1 audio out, 2 midi in, 3 midi out. */
const char *rt_jack_port_name(rt_jack *j, int32_t kind, int32_t idx);
const char *rt_jack_client_name(rt_jack *j);
/* Physical ports of the server: flags 1 = inputs (playback), 2 = outputs (capture);
 * writes up to max names (each up to 256 bytes, NUL-terminated) into buf. */
int32_t rt_jack_physical_ports(rt_jack *j, int32_t flags, char *buf, int32_t max);
/* Latency range of any port of the server (playback 1 or capture 0); 0 or -1. */
int rt_jack_port_latency(rt_jack *j, const char *port, int32_t playback, uint32_t *min,
                         uint32_t *max);
/* Ports of the server: midi 1 for MIDI ports (else audio); flags 1 inputs,
 * 2 outputs, 0 both; names as in rt_jack_physical_ports. */
int32_t rt_jack_list_ports(rt_jack *j, int32_t midi, int32_t flags, char *buf, int32_t max);
void rt_jack_get_stats(rt_jack *j, rt_jack_stats *out);
/* The most recent callback durations in microseconds, oldest first. */
int32_t rt_jack_recent_times(rt_jack *j, float *dst, int32_t max);
/* Publish a new latency on the ports (control thread). */
void rt_jack_recompute_latency(rt_jack *j);
/* Deactivate and close; the runner is never called after this returns. */
void rt_jack_close(rt_jack *j);

/* ---- peer client for tests and benchmarks --------------------------------
 * mode 0 player: out_1..N play buf (planar, stride frames) once it is armed;
 * mode 1 recorder: in_1..N record into buf from its first cycle;
 * mode 2 pass-through: in_k copied to out_k (a baseline client);
 * mode 3 MIDI: midi_out sends what rt_peer_midi_send queued, midi_in is read
 * with rt_peer_midi_read (records as for the engine). */
typedef struct rt_peer rt_peer;
rt_peer *rt_peer_open(const char *client_name, const char *server_name, int32_t mode,
                      int32_t nports, float *buf, int64_t stride, char *err, int32_t errlen);
int rt_peer_activate(rt_peer *p);
int rt_peer_connect(rt_peer *p, const char *source, const char *destination);
void rt_peer_arm(rt_peer *p);
/* frame time of buffer position 0 (-1 before the first frame), frames done */
int64_t rt_peer_start_time(rt_peer *p);
int64_t rt_peer_frames(rt_peer *p);
const char *rt_peer_port_name(rt_peer *p, int32_t is_output, int32_t idx);
int32_t rt_peer_list_ports(rt_peer *p, int32_t midi, int32_t flags, char *buf, int32_t max);
int32_t rt_peer_midi_read(rt_peer *p, uint8_t *dst, int32_t cap);
int32_t rt_peer_midi_send(rt_peer *p, const uint8_t *records, int32_t len);
void rt_peer_get_stats(rt_peer *p, rt_jack_stats *out);
int32_t rt_peer_recent_times(rt_peer *p, float *dst, int32_t max);
void rt_peer_close(rt_peer *p);

#endif
