/* The two ends of the DAW bridge (protocol.h holds the shared layout).
 *
 * client.c is the plugin's end: libc only, compiled into the VST3 plugin and
 * (for tests and the benchmark) into rtengine._runner.  server.c is the
 * engine's end: a native thread per lane that runs the lane's chain.
 *
 * Plain declarations only: cffi reads this header. */
#ifndef RTB_BRIDGE_H
#define RTB_BRIDGE_H
#include <stdint.h>
#include "protocol.h"

/* ---- the plugin's end -------------------------------------------------------- */
typedef struct rtb_client rtb_client;

/* Map the segment of server `name` (NULL: "default").  NULL and a message in
 * err when there is none, or it fails the checks (owner, mode 0600, magic,
 * version, sizes). */
rtb_client *rtb_client_open(const char *name, char *err, int32_t errlen);
void rtb_client_close(rtb_client *c);
/* Claim a free lane for this instance; returns its index or -1 (err says why). */
int32_t rtb_client_claim(rtb_client *c, double sample_rate, int32_t max_block,
                         int32_t channels, char *err, int32_t errlen);
void rtb_client_release(rtb_client *c);
/* Send chain text and wait (control thread, up to timeout_ms) for the server
 * to build it.  0 when running; otherwise the server's refusal is in err. */
int32_t rtb_client_configure(rtb_client *c, const char *chain, int32_t len, int32_t timeout_ms,
                             char *err, int32_t errlen);
/* Ask for the lane's chain text with every current value; returns its length
 * (copied to dst, at most cap bytes) or -1 on timeout. */
int32_t rtb_client_get_state(rtb_client *c, char *dst, int32_t cap, int32_t timeout_ms);
/* Control thread: restart the lane's processing from a clean state (the host
 * re-activated the plugin), with parameter values plain[0..n-1] in the lane's
 * table order.  0, or -1 when the server did not answer within timeout_ms. */
int32_t rtb_client_reset(rtb_client *c, const double *plain, int32_t n, int32_t timeout_ms);
/* The lane (NULL before a claim): its parameter table, latency and counters. */
rtb_lane *rtb_client_lane(rtb_client *c);
/* The mapped segment (for diagnostics). */
rtb_segment *rtb_client_segment(rtb_client *c);
/* 1 when the server is there and this lane is running a chain. */
int32_t rtb_client_ready(rtb_client *c);
/* Audio thread: process nframes (any count) of planar audio.  Waits for the
 * engine at most timeout_us per piece of RTB_MAX_FRAMES; when it does not
 * answer (or is gone), writes the dry input delayed by the lane's latency.
 * Returns the number of frames the engine processed. */
int32_t rtb_client_process(rtb_client *c, const float *const *in, float *const *out,
                           int32_t nframes, const rtb_change *changes, int32_t nchanges,
                           int32_t timeout_us);
/* The same with MIDI: midi[0..nmidi-1] at sample offsets in the block (sorted
 * or not), into the lane's MIDI ring with the piece that holds its offset; the
 * server takes them at its next request, so a piece the engine does not
 * answer in time loses none (a full ring drops and counts them). */
int32_t rtb_client_process_midi(rtb_client *c, const float *const *in, float *const *out,
                                int32_t nframes, const rtb_change *changes, int32_t nchanges,
                                const rtb_midi *midi, int32_t nmidi, int32_t timeout_us);

/* Benchmark: nblocks calls of rtb_client_process on the same buffers, the
 * duration of each in us[] (microseconds) and, when serve_us is not NULL, how
 * long the server worked on it (its lane's serve_ns; -1 for a block it did not
 * answer, or one split into several requests).  period_ns > 0 starts call b at
 * b * period_ns from the first, as a DAW's audio thread is paced; 0 makes the
 * calls back to back.  Returns frames the engine processed. */
int64_t rtb_client_time_blocks(rtb_client *c, const float *const *in, float *const *out,
                               int32_t nframes, int32_t nblocks, int32_t timeout_us,
                               int64_t period_ns, float *us, float *serve_us);

/* ---- the engine's end --------------------------------------------------------- */
typedef struct rtb_server rtb_server;

rtb_server *rtb_server_create(const char *name, char *err, int32_t errlen);
void rtb_server_destroy(rtb_server *s);
rtb_segment *rtb_server_segment(rtb_server *s);
void rtb_server_heartbeat(rtb_server *s);
/* Run `runner` for lane i from the next request on (crossfaded over fade
 * frames when a chain already runs).  par_index maps the lane's parameter
 * table to runner parameter indices; par_rt[k] is 1 when parameter k is
 * applied on the lane thread at its sample offset, 0 when the control side
 * applies it (rtb_server_take_changes).  Starts the lane thread.  0 or -1. */
int32_t rtb_server_attach(rtb_server *s, int32_t lane, void *runner, const int32_t *par_index,
                          const uint8_t *par_rt, int32_t nparams, int32_t fade);
uint32_t rtb_server_swaps_done(rtb_server *s, int32_t lane);
/* How long (us) before a request is due, one block period after the last, a
 * lane thread stops sleeping and waits for it awake (and how long after it
 * gives up), at most a quarter period; 0: always sleep.  Default below. */
#define RTB_SPIN_DEFAULT_US 200
void rtb_server_set_spin(rtb_server *s, int32_t us);
/* Stop the lane thread and free the lane. */
void rtb_server_detach(rtb_server *s, int32_t lane);
/* Changes to parameters the lane thread cannot apply itself (designed
 * coefficients): (index, value) pairs, up to max; returns how many. */
int32_t rtb_server_take_changes(rtb_server *s, int32_t lane, int32_t *index, double *value,
                                int32_t max);
/* The lane's MIDI from the DAW, for its MIDI map: up to max messages as 4
 * bytes each (size 1..3, then the message, zero-padded); returns how many. */
int32_t rtb_server_take_midi(rtb_server *s, int32_t lane, uint8_t *dst, int32_t max);
/* Control side: sleep (without the GIL) until a plugin asks for something or
 * timeout_ms passes; returns the request counter to pass next time. */
uint32_t rtb_server_wait(rtb_server *s, uint32_t last, int32_t timeout_ms);
/* Wake lane i's configuration waiter (after config_ack/state_ack were set). */
void rtb_server_wake(rtb_server *s, uint32_t *word);

#endif
