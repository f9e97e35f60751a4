/* The DAW bridge: the one definition of the shared-memory layout between the
 * rtengine VST3 plugin (C, in the DAW's process) and the engine's bridge server
 * (`rtengine serve`).  The plugin's C code includes this file; cffi reads the
 * same declarations (rtengine/native/_runner_build.py).
 *
 * One segment per user and server name, a POSIX shared-memory object
 * "/rtengine-<uid>-<name>" created by the server with mode 0600 (the plugin
 * refuses one owned by another user or readable by others).  It holds a
 * header and RTB_MAX_LANES lanes; a plugin instance claims a free lane.
 *
 * Wake-ups are futexes on 32-bit sequence words in the segment (shared, not
 * process-private), so neither side needs the GIL or a lock:
 *   - plugin: write input, parameter changes and MIDI (a ring of its own),
 *     then bump req_seq and wake it; wait on resp_seq with a timeout (the
 *     host's deadline);
 *   - server: a native thread per lane waits on req_seq, runs the lane's chain
 *     through the native runner, writes the output, bumps resp_seq, wakes it.
 * Every count and offset read from the segment is bounds-checked by the side
 * that reads it.
 *
 * Plain declarations and integer constants only: cffi reads this header. */
#ifndef RTB_PROTOCOL_H
#define RTB_PROTOCOL_H
#include <stdint.h>

#define RTB_MAGIC 1381253703          /* 'RTBG' */
#define RTB_VERSION 4
#define RTB_MAX_LANES 128
#define RTB_MAX_CH 2                  /* mono or stereo lanes */
#define RTB_MAX_FRAMES 4096           /* per request; the plugin splits longer blocks */
#define RTB_MAX_PARAMS 512
#define RTB_MAX_CHANGES 2048          /* parameter points per request */
#define RTB_MAX_MIDI 512              /* short MIDI messages per request */
#define RTB_STATE_MAX 262144          /* chain text (TOML, with every value) */
#define RTB_TEXT 128                  /* names and units, UTF-8, NUL-terminated */
#define RTB_MSG 1024                  /* a refusal, readable by the user */
#define RTB_CTRLS 130                 /* per channel: CC 0..127, 128 channel pressure,
                                         129 pitch bend (VST3's ControllerNumbers) */
#define RTB_CTRL_WORDS 65             /* bits for 16 channels x RTB_CTRLS */
#define RTB_PROXY_BASE 2147418112     /* 0x7FFF0000: ParamIDs of the plugin's MIDI
                                         controller parameters (base + ch * RTB_CTRLS +
                                         ctrl); a chain's parameter ids stay below */

/* lane states (rtb_lane.state) */
#define RTB_FREE 0
#define RTB_CLAIMED 1                 /* a plugin owns it; no chain yet */
#define RTB_READY 2                   /* the server runs a chain for it */

/* parameter flags (rtb_param.flags) */
#define RTB_PARAM_LOG 1
#define RTB_PARAM_TOGGLE 2
#define RTB_PARAM_CHOICE 4
#define RTB_PARAM_BYPASS 8

typedef struct rtb_param {
    uint32_t id;                      /* stable VST3 ParamID (hash of "stage.param") */
    uint32_t flags;
    int32_t steps;                    /* 0 continuous; choices - 1; 1 for a toggle */
    int32_t reserved;
    double min, max, default_value;   /* plain values */
    char key[RTB_TEXT];               /* "stage.param_id" */
    char name[RTB_TEXT];              /* what a host shows */
    char unit[RTB_TEXT];
    char choices[RTB_MSG];            /* choice names separated by '\n' */
} rtb_param;

#define RTB_CHANGE_JUMP 2147483648    /* index flag: set the value without a ramp */

typedef struct rtb_change {
    uint32_t index;                   /* into the lane's parameter table (| RTB_CHANGE_JUMP) */
    int32_t offset;                   /* sample offset in the request, 0..nframes-1 */
    double value;                     /* plain value */
} rtb_change;

typedef struct rtb_midi {
    int32_t offset;
    uint8_t size;                     /* 1..3 */
    uint8_t data[3];
} rtb_midi;

typedef struct rtb_counters {
    uint64_t requests;                /* answered by the server */
    uint64_t frames;
    uint64_t rejected;                /* requests refused by the server's checks */
    uint64_t late;                    /* plugin: timed out, output its dry fallback */
    uint64_t fallback_frames;         /* plugin: frames of dry fallback */
    uint64_t reconnects;              /* plugin: lanes claimed again after a server restart */
    uint64_t midi_dropped;            /* plugin: MIDI events with no room in the ring */
    uint64_t woken;                   /* server: requests that found the lane thread asleep
                                         (it paid a wake-up: off the blocks' cadence) */
} rtb_counters;

typedef struct rtb_lane {
    /* ownership */
    uint32_t state;                   /* RTB_FREE / RTB_CLAIMED / RTB_READY */
    uint32_t owner_pid;
    uint64_t epoch;                   /* the server epoch the lane was claimed in */
    /* set-up, written by the plugin before a configure request */
    double sample_rate;
    int32_t max_block;
    int32_t channels;                 /* 1 or 2 */
    uint32_t config_seq;              /* futex: plugin bumps to ask for (re)configuration */
    uint32_t config_ack;              /* futex: server sets to config_seq when done */
    int32_t config_status;            /* 0 ok, else a refusal explained in msg */
    int32_t latency;                  /* samples, valid when config_status == 0 */
    int32_t nparams;
    int32_t reserved0;
    char msg[RTB_MSG];
    /* the MIDI controllers the lane's MIDI map listens to, bit ch * RTB_CTRLS +
     * ctrl; written by the server before it acknowledges a configuration.  The
     * plugin offers exactly these to its host (IMidiMapping) and sends what
     * the host gives it for them as MIDI, with the notes. */
    uint32_t midi_ctrl[RTB_CTRL_WORDS];
    uint32_t reserved3;
    rtb_param params[RTB_MAX_PARAMS];
    double values[RTB_MAX_PARAMS];    /* current plain values, written by the server */
    uint32_t values_seq;              /* bumped when values changed outside the DAW */
    uint32_t moved[RTB_MAX_PARAMS];   /* values_seq at which each was last changed so (MIDI) */
    uint32_t chain_len;
    char chain[RTB_STATE_MAX];        /* chain text: in from the plugin, out from the server */
    uint32_t state_seq;               /* plugin bumps to ask for the current chain text */
    uint32_t state_ack;
    /* reset (the host re-activates the plugin): a fresh engine with these values */
    uint32_t reset_seq;               /* futex: plugin bumps after writing set_values */
    uint32_t reset_ack;
    int32_t nset;                     /* entries of set_values to apply (0..nparams) */
    int32_t reserved1;
    double set_values[RTB_MAX_PARAMS];
    /* processing */
    uint32_t req_seq;                 /* futex: plugin bumps once a request is written */
    uint32_t resp_seq;                /* futex: server sets to req_seq when answered */
    int32_t nframes;
    int32_t nchanges;
    int32_t serve_ns;                 /* server: how long its work on the last answered
                                         request took (ns, capped at 1 s), written
                                         before resp_seq */
    int32_t process_mode;             /* VST3 kRealtime 0, kPrefetch 1, kOffline 2 */
    uint64_t posted_ns;               /* plugin: CLOCK_MONOTONIC when it posted the request
                                         (the server keeps the blocks' cadence by it) */
    rtb_change changes[RTB_MAX_CHANGES];
    /* MIDI: a ring apart from the requests, so a request the plugin gave up on
     * loses none; the plugin writes at midi_head, the server takes up to it */
    uint32_t midi_head;               /* plugin: bumped after the events are written */
    uint32_t midi_tail;               /* server: events before it are taken */
    rtb_midi midi[RTB_MAX_MIDI];      /* slot = sequence number % RTB_MAX_MIDI */
    rtb_counters counters;
    float in[RTB_MAX_CH * RTB_MAX_FRAMES];     /* planar: channel c at c * RTB_MAX_FRAMES */
    float out[RTB_MAX_CH * RTB_MAX_FRAMES];
} rtb_lane;

typedef struct rtb_header {
    uint32_t magic;
    uint32_t version;
    uint64_t size;                    /* bytes of the whole segment */
    uint32_t lane_size;               /* sizeof(rtb_lane): both sides must agree */
    uint32_t nlanes;
    uint32_t server_pid;
    uint32_t lanes_seq;               /* futex: a plugin bumps it after claiming a lane */
    uint64_t epoch;                   /* bumped each time a server (re)starts on the segment */
    uint64_t heartbeat_ns;            /* CLOCK_MONOTONIC of the server's last sign of life */
    uint32_t closing;                 /* 1 while the server shuts down */
    uint32_t reserved[15];
} rtb_header;

typedef struct rtb_segment {
    rtb_header h;
    rtb_lane lanes[RTB_MAX_LANES];
} rtb_segment;

#endif
