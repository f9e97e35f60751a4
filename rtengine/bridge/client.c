/* The plugin's end of the DAW bridge (bridge.h, protocol.h).  libc only: it is
 * compiled into the VST3 plugin.  The audio-thread function never allocates,
 * never takes a lock and never waits longer than the timeout it is given;
 * without an answer it outputs the dry input delayed by the lane's latency. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include "bridge.h"
#include "shm.h"
#include "../native/pace.h"

#define RTB_MAX_LATENCY (1 << 20)
#define RTB_SPIN_MIN_NS 60000u        /* spin at least this long for an answer */

struct rtb_client {
    rtb_segment *seg;
    int fd;
    int32_t lane;
    uint32_t pid;
    uint64_t epoch;
    uint32_t config_seq;              /* the configuration this instance asked for */
    uint32_t req;
    int32_t channels;
    int32_t latency;                  /* of the dry fallback (the lane's, once running) */
    float *dly;                       /* RTB_MAX_CH x RTB_MAX_LATENCY ring for the dry fallback */
    int32_t dly_len, dly_pos;         /* audio thread's */
    char *chain;                      /* RTB_STATE_MAX: the chain text last sent, sent again
                                         on reconnect */
    int32_t chain_len;
    int64_t answer_ns;                /* how long answers take (moving average) */
    double rate;                      /* the sample rate claimed */
    float tmp[RTB_MAX_CH * RTB_MAX_FRAMES];
};

static void rtb_err(char *err, int32_t errlen, const char *msg)
{
    if (err && errlen > 0) snprintf(err, (size_t)errlen, "%s", msg);
}

rtb_client *rtb_client_open(const char *name, char *err, int32_t errlen)
{
    char path[256], msg[512];
    if (rtb_segment_name(name, path, sizeof path)) {
        rtb_err(err, errlen, "bridge name: use letters, digits, '-' and '_'");
        return NULL;
    }
    int fd = shm_open(path, O_RDWR, 0);
    if (fd < 0) {
        snprintf(msg, sizeof msg, "no rtengine bridge server %s (%s): start one with "
                 "'rtengine serve --chain FILE'", path, strerror(errno));
        rtb_err(err, errlen, msg);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) || st.st_uid != getuid() || (st.st_mode & 077)) {
        snprintf(msg, sizeof msg, "bridge segment %s is not private to this user (owner %u, "
                 "mode %o): refusing it", path, (unsigned)st.st_uid, (unsigned)st.st_mode & 0777);
        rtb_err(err, errlen, msg);
        close(fd);
        return NULL;
    }
    if ((size_t)st.st_size != sizeof(rtb_segment)) {
        snprintf(msg, sizeof msg, "bridge segment %s has %lld bytes, this plugin expects %zu: "
                 "plugin and engine versions differ", path, (long long)st.st_size,
                 sizeof(rtb_segment));
        rtb_err(err, errlen, msg);
        close(fd);
        return NULL;
    }
    void *p = mmap(NULL, sizeof(rtb_segment), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        rtb_err(err, errlen, "cannot map the bridge segment");
        close(fd);
        return NULL;
    }
    rtb_segment *seg = p;
    if (__atomic_load_n(&seg->h.magic, __ATOMIC_ACQUIRE) != RTB_MAGIC ||
        seg->h.version != RTB_VERSION || seg->h.lane_size != sizeof(rtb_lane) ||
        seg->h.nlanes != RTB_MAX_LANES || seg->h.size != sizeof(rtb_segment)) {
        snprintf(msg, sizeof msg, "bridge segment %s: bad header (magic %08x, version %u, "
                 "lane size %u; expected version %d, lane size %zu)", path, seg->h.magic,
                 seg->h.version, seg->h.lane_size, RTB_VERSION, sizeof(rtb_lane));
        rtb_err(err, errlen, msg);
        munmap(p, sizeof(rtb_segment));
        close(fd);
        return NULL;
    }
    rtb_client *c = calloc(1, sizeof *c);
    if (!c) {
        munmap(p, sizeof(rtb_segment));
        close(fd);
        return NULL;
    }
    c->dly = calloc((size_t)RTB_MAX_CH * RTB_MAX_LATENCY, sizeof(float));
    c->chain = calloc(RTB_STATE_MAX, 1);
    if (!c->dly || !c->chain) {
        free(c->dly);
        free(c->chain);
        free(c);
        munmap(p, sizeof(rtb_segment));
        close(fd);
        rtb_err(err, errlen, "out of memory");
        return NULL;
    }
    c->seg = seg;
    c->fd = fd;
    c->lane = -1;
    c->pid = (uint32_t)getpid();
    return c;
}

/* Tell the server's control side that a lane asks for something. */
static void rtb_notify(rtb_client *c)
{
    __atomic_add_fetch(&c->seg->h.lanes_seq, 1, __ATOMIC_RELEASE);
    rtb_wake(&c->seg->h.lanes_seq);
}

static int rtb_server_alive(const rtb_client *c)
{
    const rtb_header *h = &c->seg->h;
    uint64_t hb = __atomic_load_n(&h->heartbeat_ns, __ATOMIC_ACQUIRE);
    return !__atomic_load_n(&h->closing, __ATOMIC_ACQUIRE) && __atomic_load_n(&h->server_pid,
           __ATOMIC_ACQUIRE) != 0 && rtb_now_ns() - hb < RTB_DEAD_NS;
}

rtb_segment *rtb_client_segment(rtb_client *c) { return c ? c->seg : NULL; }

rtb_lane *rtb_client_lane(rtb_client *c)
{
    return c && c->lane >= 0 ? &c->seg->lanes[c->lane] : NULL;
}

/* Control thread: the dry fallback follows the lane's latency.  The ring is
 * allocated once at open (pages are only touched up to the latency in use);
 * the audio thread notices the change and clears what it will use. */
static void rtb_set_latency(rtb_client *c, int32_t latency)
{
    if (latency < 0 || latency > RTB_MAX_LATENCY) latency = 0;
    __atomic_store_n(&c->latency, latency, __ATOMIC_RELEASE);
}

int32_t rtb_client_claim(rtb_client *c, double sample_rate, int32_t max_block,
                         int32_t channels, char *err, int32_t errlen)
{
    if (!c) return -1;
    if (channels < 1 || channels > RTB_MAX_CH || max_block < 1 || !(sample_rate > 0)) {
        rtb_err(err, errlen, "the bridge takes 1 or 2 channels, a block of at least 1 frame "
                "and a positive sample rate");
        return -1;
    }
    if (c->lane < 0) {
        for (int32_t i = 0; i < RTB_MAX_LANES; i++) {
            uint32_t expect = RTB_FREE;
            if (__atomic_compare_exchange_n(&c->seg->lanes[i].state, &expect, RTB_CLAIMED, 0,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                c->lane = i;
                break;
            }
        }
        if (c->lane < 0) {
            rtb_err(err, errlen, "every bridge lane is taken (128 plugin instances per server)");
            return -1;
        }
    }
    rtb_lane *l = &c->seg->lanes[c->lane];
    l->owner_pid = c->pid;
    l->epoch = __atomic_load_n(&c->seg->h.epoch, __ATOMIC_ACQUIRE);
    l->sample_rate = sample_rate;
    c->rate = sample_rate;
    l->max_block = max_block;
    l->channels = channels;
    c->channels = channels;
    c->epoch = l->epoch;
    c->req = __atomic_load_n(&l->req_seq, __ATOMIC_ACQUIRE);
    rtb_notify(c);
    return c->lane;
}

void rtb_client_release(rtb_client *c)
{
    if (!c || c->lane < 0) return;
    rtb_lane *l = &c->seg->lanes[c->lane];
    if (l->owner_pid == c->pid) {
        l->owner_pid = 0;
        __atomic_store_n(&l->state, RTB_FREE, __ATOMIC_RELEASE);
        rtb_notify(c);
    }
    c->lane = -1;
}

void rtb_client_close(rtb_client *c)
{
    if (!c) return;
    rtb_client_release(c);
    munmap(c->seg, sizeof(rtb_segment));
    close(c->fd);
    free(c->dly);
    free(c->chain);
    free(c);
}

/* Write the chain text and ask for a (re)configuration; does not wait. */
static int rtb_post_config(rtb_client *c, const char *chain, int32_t len)
{
    rtb_lane *l = &c->seg->lanes[c->lane];
    if (len < 0 || len >= RTB_STATE_MAX) return -1;
    memcpy(l->chain, chain, (size_t)len);
    l->chain[len] = 0;
    l->chain_len = (uint32_t)len;
    c->config_seq = __atomic_add_fetch(&l->config_seq, 1, __ATOMIC_ACQ_REL);
    rtb_notify(c);
    return 0;
}

int32_t rtb_client_configure(rtb_client *c, const char *chain, int32_t len, int32_t timeout_ms,
                             char *err, int32_t errlen)
{
    if (!c || c->lane < 0) { rtb_err(err, errlen, "no lane claimed"); return -1; }
    if (!chain || len < 0 || len >= RTB_STATE_MAX) {
        rtb_err(err, errlen, "chain text missing or longer than the bridge's state area");
        return -1;
    }
    if (chain != c->chain) memmove(c->chain, chain, (size_t)len);
    c->chain[len] = 0;
    __atomic_store_n(&c->chain_len, len, __ATOMIC_RELEASE);
    rtb_lane *l = &c->seg->lanes[c->lane];
    rtb_post_config(c, chain, len);
    uint64_t end = rtb_now_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        uint32_t ack = __atomic_load_n(&l->config_ack, __ATOMIC_ACQUIRE);
        if (ack == c->config_seq) break;
        uint64_t now = rtb_now_ns();
        if (now >= end) {
            rtb_err(err, errlen, rtb_server_alive(c) ? "the bridge server did not answer in "
                    "time" : "no bridge server is running ('rtengine serve')");
            return -1;
        }
        rtb_wait(&l->config_ack, ack, end - now < 20000000u ? end - now : 20000000u);
    }
    if (l->config_status != 0) {
        char msg[RTB_MSG + 1];
        memcpy(msg, l->msg, RTB_MSG);
        msg[RTB_MSG] = 0;
        rtb_err(err, errlen, msg);
        return l->config_status;
    }
    rtb_set_latency(c, l->latency);
    return 0;
}

int32_t rtb_client_get_state(rtb_client *c, char *dst, int32_t cap, int32_t timeout_ms)
{
    if (!c || c->lane < 0 || !dst || cap <= 0) return -1;
    rtb_lane *l = &c->seg->lanes[c->lane];
    uint32_t want = __atomic_add_fetch(&l->state_seq, 1, __ATOMIC_ACQ_REL);
    rtb_notify(c);
    uint64_t end = rtb_now_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        uint32_t ack = __atomic_load_n(&l->state_ack, __ATOMIC_ACQUIRE);
        if (ack == want) break;
        uint64_t now = rtb_now_ns();
        if (now >= end || !rtb_server_alive(c)) return -1;
        rtb_wait(&l->state_ack, ack, end - now < 20000000u ? end - now : 20000000u);
    }
    uint32_t n = l->chain_len;
    if (n >= RTB_STATE_MAX || (int64_t)n >= cap) return -1;
    memcpy(dst, l->chain, n);
    dst[n] = 0;
    return (int32_t)n;
}

int32_t rtb_client_reset(rtb_client *c, const double *plain, int32_t n, int32_t timeout_ms)
{
    if (!c || c->lane < 0 || n < 0 || n > RTB_MAX_PARAMS || (n && !plain)) return -1;
    rtb_lane *l = &c->seg->lanes[c->lane];
    for (int32_t i = 0; i < n; i++) l->set_values[i] = plain[i];
    l->nset = n;
    uint32_t want = __atomic_add_fetch(&l->reset_seq, 1, __ATOMIC_ACQ_REL);
    rtb_notify(c);
    uint64_t end = rtb_now_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        uint32_t ack = __atomic_load_n(&l->reset_ack, __ATOMIC_ACQUIRE);
        if (ack == want) return 0;
        uint64_t now = rtb_now_ns();
        if (now >= end || !rtb_server_alive(c)) return -1;
        rtb_wait(&l->reset_ack, ack, end - now < 20000000u ? end - now : 20000000u);
    }
}

int32_t rtb_client_ready(rtb_client *c)
{
    if (!c || c->lane < 0 || !rtb_server_alive(c)) return 0;
    rtb_lane *l = &c->seg->lanes[c->lane];
    return __atomic_load_n(&c->seg->h.epoch, __ATOMIC_ACQUIRE) == c->epoch &&
           __atomic_load_n(&l->state, __ATOMIC_ACQUIRE) == RTB_READY && l->owner_pid == c->pid && __atomic_load_n(&l->config_ack, __ATOMIC_ACQUIRE) ==
           c->config_seq && c->config_seq != 0 && l->config_status == 0;
}

/* Audio thread: one piece of at most RTB_MAX_FRAMES. */
static int32_t rtb_piece(rtb_client *c, const float *const *in, float *const *out, int32_t off,
                         int32_t n, const rtb_change *changes, int32_t nchanges,
                         const rtb_midi *midi, int32_t nmidi, int32_t timeout_us)
{
    const int32_t nch = c->channels;
    const int32_t want = __atomic_load_n(&c->latency, __ATOMIC_ACQUIRE);
    if (want != c->dly_len) {                 /* a new latency: start its line silent */
        for (int32_t ch = 0; ch < RTB_MAX_CH; ch++)
            memset(c->dly + (int64_t)ch * RTB_MAX_LATENCY, 0, sizeof(float) * (size_t)want);
        c->dly_len = want;
        c->dly_pos = 0;
    }
    /* the dry fallback, delayed by the latency; fed on every call so it stays aligned */
    for (int32_t ch = 0; ch < nch; ch++) {
        const float *x = in[ch] + off;
        float *t = c->tmp + ch * RTB_MAX_FRAMES;
        if (c->dly_len == 0) {
            memcpy(t, x, sizeof(float) * (size_t)n);
            continue;
        }
        float *d = c->dly + (int64_t)ch * RTB_MAX_LATENCY;
        int32_t p = c->dly_pos;
        for (int32_t i = 0; i < n; i++) {
            t[i] = d[p];
            d[p] = x[i];
            if (++p == c->dly_len) p = 0;
        }
    }
    if (c->dly_len) c->dly_pos = (int32_t)(((int64_t)c->dly_pos + n) % c->dly_len);
    int answered = 0;
    if (c->lane >= 0 && rtb_server_alive(c)) {
        rtb_lane *l = &c->seg->lanes[c->lane];
        uint64_t epoch = __atomic_load_n(&c->seg->h.epoch, __ATOMIC_ACQUIRE);
        if (epoch != c->epoch && l->owner_pid == c->pid && c->config_seq != 0) {
            /* a new server: send the chain again; dry until it runs */
            c->epoch = epoch;
            l->epoch = epoch;
            l->counters.reconnects++;
            rtb_post_config(c, c->chain, c->chain_len);
        } else if (rtb_client_ready(c)) {
            int32_t lat = l->latency;
            if (lat != c->latency) rtb_set_latency(c, lat);   /* e.g. after a reconnect */
            for (int32_t ch = 0; ch < nch; ch++)
                memcpy(l->in + ch * RTB_MAX_FRAMES, in[ch] + off, sizeof(float) * (size_t)n);
            int32_t k = 0;
            for (int32_t i = 0; i < nchanges && k < RTB_MAX_CHANGES; i++) {
                int32_t o = changes[i].offset - off;
                if (o < 0 || o >= n) continue;
                l->changes[k] = changes[i];
                l->changes[k].offset = o;
                k++;
            }
            l->nchanges = k;
            uint32_t mh = l->midi_head;
            const uint32_t mt = __atomic_load_n(&l->midi_tail, __ATOMIC_ACQUIRE);
            for (int32_t i = 0; i < nmidi; i++) {
                int32_t o = midi[i].offset - off;
                if (o < 0 || o >= n || midi[i].size < 1 || midi[i].size > 3) continue;
                if (mh - mt >= RTB_MAX_MIDI) { l->counters.midi_dropped++; continue; }
                rtb_midi *e = &l->midi[mh % RTB_MAX_MIDI];
                *e = midi[i];
                e->offset = o;
                mh++;
            }
            __atomic_store_n(&l->midi_head, mh, __ATOMIC_RELEASE);
            l->nframes = n;
            l->channels = nch;
            l->posted_ns = rtb_now_ns();
            uint32_t req = __atomic_add_fetch(&l->req_seq, 1, __ATOMIC_ACQ_REL);
            rtb_wake(&l->req_seq);
            const uint64_t start = rtb_now_ns();
            const uint64_t end = start + (uint64_t)timeout_us * 1000u;
            /* a sleep costs a wake-up (tens of us on a VM) on top: wait awake
             * twice as long as answers take on average, then sleep; but not
             * past a quarter of the block's duration, when spinning would
             * take the CPU the engine needs */
            int64_t spin = 2 * c->answer_ns + 20000;
            const int64_t quarter = c->rate >= 1000 ? (int64_t)(n * 250000000.0 / c->rate) : 0;
            if (spin > quarter) spin = quarter;
            if (spin < (int64_t)RTB_SPIN_MIN_NS) spin = RTB_SPIN_MIN_NS;
            for (;;) {
                uint32_t resp = __atomic_load_n(&l->resp_seq, __ATOMIC_ACQUIRE);
                if (resp == req) { answered = 1; break; }
                uint64_t now = rtb_now_ns();
                if (now >= end) break;
                if ((int64_t)(now - start) < spin) {
                    rtb_pause();
                    continue;
                }
                rtb_wait(&l->resp_seq, resp, end - now);
            }
            if (answered) {
                const int64_t took = (int64_t)(rtb_now_ns() - start);
                c->answer_ns += (took - c->answer_ns) / 16;
                for (int32_t ch = 0; ch < nch; ch++)
                    memcpy(out[ch] + off, l->out + ch * RTB_MAX_FRAMES, sizeof(float) * (size_t)n);
                return n;
            }
            l->counters.late++;
        }
        l->counters.fallback_frames += (uint64_t)n;
    }
    for (int32_t ch = 0; ch < nch; ch++)
        memcpy(out[ch] + off, c->tmp + ch * RTB_MAX_FRAMES, sizeof(float) * (size_t)n);
    return 0;
}

int32_t rtb_client_process_midi(rtb_client *c, const float *const *in, float *const *out,
                                int32_t nframes, const rtb_change *changes, int32_t nchanges,
                                const rtb_midi *midi, int32_t nmidi, int32_t timeout_us)
{
    if (!c || nframes <= 0 || !in || !out) return 0;
    if (!midi) nmidi = 0;
    int32_t done = 0, engine = 0;
    while (done < nframes) {
        int32_t n = nframes - done < RTB_MAX_FRAMES ? nframes - done : RTB_MAX_FRAMES;
        engine += rtb_piece(c, in, out, done, n, changes, nchanges, midi, nmidi, timeout_us);
        done += n;
    }
    return engine;
}

int32_t rtb_client_process(rtb_client *c, const float *const *in, float *const *out,
                           int32_t nframes, const rtb_change *changes, int32_t nchanges,
                           int32_t timeout_us)
{
    return rtb_client_process_midi(c, in, out, nframes, changes, nchanges, NULL, 0, timeout_us);
}

int64_t rtb_client_time_blocks(rtb_client *c, const float *const *in, float *const *out,
                               int32_t nframes, int32_t nblocks, int32_t timeout_us,
                               int64_t period_ns, float *us, float *serve_us)
{
    int64_t engine = 0;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (int32_t b = 0; b < nblocks; b++) {
        rt_pace(&start, b, period_ns);
        uint64_t t0 = rtb_now_ns();
        int32_t got = rtb_client_process(c, in, out, nframes, NULL, 0, timeout_us);
        us[b] = (float)((double)(rtb_now_ns() - t0) * 1e-3);
        engine += got;
        if (serve_us) {
            /* read after the answer's acquire in rtb_client_process */
            const rtb_lane *l = rtb_client_lane(c);
            const int32_t ns = l ? l->serve_ns : -1;
            serve_us[b] = got == nframes && nframes <= RTB_MAX_FRAMES && ns >= 0
                              ? (float)(ns * 1e-3) : -1.0f;
        }
    }
    return engine;
}
