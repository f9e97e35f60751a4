/* The engine's end of the DAW bridge (bridge.h, protocol.h): the segment and
 * one native thread per lane.  A lane thread runs no Python and takes no lock:
 * it waits on the lane's request futex, runs the chain's runner (applying
 * parameter changes at their sample offsets) and answers. */
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include "bridge.h"
#include "shm.h"
#include "../native/runner.h"
#include "../native/xfade.h"

#define RTB_RING 4096                 /* control-side changes per lane (power of two) */
#define RTB_MIDI_RING 2048            /* MIDI messages per lane for the control side */

typedef struct rtb_map {
    int32_t n;
    int32_t index[RTB_MAX_PARAMS];    /* runner parameter index */
    uint8_t rt[RTB_MAX_PARAMS];       /* applied on the lane thread */
    double lo[RTB_MAX_PARAMS], hi[RTB_MAX_PARAMS];
    int32_t steps[RTB_MAX_PARAMS];
} rtb_map;

typedef struct rtb_lane_rt {
    rtb_server *srv;
    int32_t idx;
    pthread_t th;
    int32_t running;
    int32_t stop;
    int32_t realtime;                 /* 1 when the lane thread got SCHED_FIFO */
    uint32_t first_last;              /* req_seq when the thread was started */
    rt_xfade x;
    rtb_map maps[2];                  /* the playing chain's and the next one's */
    rtb_map *map;                     /* lane thread's */
    rtb_map *pending_map;             /* taken with the pending runner */
    int32_t next_map;
    struct { int32_t index; double value; } ring[RTB_RING];
    uint32_t head, tail;              /* lane thread produces, control side consumes */
    rtb_midi midi[RTB_MIDI_RING];     /* the DAW's MIDI, for the lane's MIDI map */
    uint32_t mhead, mtail;
    float io2[RTB_MAX_CH * RTB_MAX_FRAMES];
} rtb_lane_rt;

struct rtb_server {
    rtb_segment *seg;
    int fd;
    char path[256];
    pthread_t beat;
    int32_t beating, stop_beat;
    int64_t spin_ns;                  /* lanes wait awake this long before a request is due */
    rtb_lane_rt lanes[RTB_MAX_LANES];
};

/* The heartbeat comes from a native thread of its own: the control side (Python)
 * may spend seconds building a lane's chain (a model to load, a pyo server to
 * boot), and the other lanes' plugins must not take that for a dead server. */
static void *rtb_beat_main(void *arg)
{
    rtb_server *s = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    while (!__atomic_load_n(&s->stop_beat, __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&s->seg->h.heartbeat_ns, rtb_now_ns(), __ATOMIC_RELEASE);
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static int rtb_pid_alive(uint32_t pid)
{
    return pid && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

rtb_server *rtb_server_create(const char *name, char *err, int32_t errlen)
{
    rtb_server *s = calloc(1, sizeof *s);
    if (!s) { snprintf(err, (size_t)errlen, "out of memory"); return NULL; }
    s->spin_ns = RTB_SPIN_DEFAULT_US * 1000;
    if (rtb_segment_name(name, s->path, sizeof s->path)) {
        snprintf(err, (size_t)errlen, "bridge name %s: use letters, digits, '-' and '_'", name);
        free(s);
        return NULL;
    }
    const size_t size = sizeof(rtb_segment);
    int fd = shm_open(s->path, O_RDWR, 0600);
    if (fd >= 0) {                    /* left by an earlier server: reuse it if it fits */
        struct stat st;
        rtb_header h;
        int fits = fstat(fd, &st) == 0 && st.st_uid == getuid() && (size_t)st.st_size == size &&
                   pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h && h.magic == RTB_MAGIC &&
                   h.version == RTB_VERSION && h.lane_size == sizeof(rtb_lane);
        if (fits && rtb_pid_alive(h.server_pid) &&
            !h.closing) {
            snprintf(err, (size_t)errlen, "a bridge server named %s already runs (pid %u); "
                     "stop it or give this one another --name", name && *name ? name : "default",
                     h.server_pid);
            close(fd);
            free(s);
            return NULL;
        }
        if (!fits) {
            close(fd);
            shm_unlink(s->path);
            fd = -1;
        }
    }
    int created = 0;
    if (fd < 0) {
        fd = shm_open(s->path, O_RDWR | O_CREAT | O_EXCL, 0600);
        created = 1;
    }
    if (fd < 0 || fchmod(fd, 0600) || (created && ftruncate(fd, (off_t)size))) {
        snprintf(err, (size_t)errlen, "cannot create the bridge segment %s: %s", s->path,
                 strerror(errno));
        if (fd >= 0) close(fd);
        free(s);
        return NULL;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        snprintf(err, (size_t)errlen, "cannot map the bridge segment: %s", strerror(errno));
        close(fd);
        free(s);
        return NULL;
    }
    s->fd = fd;
    s->seg = p;
    rtb_header *h = &s->seg->h;
    uint64_t epoch = created ? 1 : h->epoch + 1;
    if (created) memset(h, 0, sizeof *h);
    for (int i = 0; i < RTB_MAX_LANES; i++) {
        rtb_lane *l = &s->seg->lanes[i];
        s->lanes[i].srv = s;
        s->lanes[i].idx = i;
        if (created || !rtb_pid_alive(l->owner_pid)) {
            __atomic_store_n(&l->state, RTB_FREE, __ATOMIC_RELEASE);
            l->owner_pid = 0;
        } else if (l->state != RTB_FREE) {
            /* a plugin still owns it: it will send its chain again (new epoch) */
            __atomic_store_n(&l->state, RTB_CLAIMED, __ATOMIC_RELEASE);
            l->config_ack = l->config_seq;
        }
    }
    /* the new epoch is visible before the server looks alive, so a plugin never
     * mistakes the old lane state for a running chain */
    h->size = size;
    h->lane_size = sizeof(rtb_lane);
    h->nlanes = RTB_MAX_LANES;
    h->version = RTB_VERSION;
    __atomic_store_n(&h->epoch, epoch, __ATOMIC_RELEASE);
    __atomic_store_n(&h->magic, RTB_MAGIC, __ATOMIC_RELEASE);
    h->closing = 0;
    __atomic_store_n(&h->server_pid, (uint32_t)getpid(), __ATOMIC_RELEASE);
    __atomic_store_n(&h->heartbeat_ns, rtb_now_ns(), __ATOMIC_RELEASE);
    s->beating = pthread_create(&s->beat, NULL, rtb_beat_main, s) == 0;
    return s;
}

rtb_segment *rtb_server_segment(rtb_server *s) { return s ? s->seg : NULL; }

void rtb_server_heartbeat(rtb_server *s)
{
    if (s) __atomic_store_n(&s->seg->h.heartbeat_ns, rtb_now_ns(), __ATOMIC_RELEASE);
}

uint32_t rtb_server_wait(rtb_server *s, uint32_t last, int32_t timeout_ms)
{
    if (!s) return last;
    uint32_t now = __atomic_load_n(&s->seg->h.lanes_seq, __ATOMIC_ACQUIRE);
    if (now == last && timeout_ms > 0)
        rtb_wait(&s->seg->h.lanes_seq, last, (uint64_t)timeout_ms * 1000000u);
    return __atomic_load_n(&s->seg->h.lanes_seq, __ATOMIC_ACQUIRE);
}

void rtb_server_wake(rtb_server *s, uint32_t *word)
{
    (void)s;
    rtb_wake(word);
}

/* ---- the lane thread ------------------------------------------------------------ */

static void rtb_wake_control(rtb_lane_rt *lr)
{
    rtb_segment *seg = lr->srv->seg;                 /* never blocks */
    __atomic_add_fetch(&seg->h.lanes_seq, 1, __ATOMIC_RELEASE);
    rtb_wake(&seg->h.lanes_seq);
}

static void rtb_apply(rtb_lane_rt *lr, rtb_lane *l, const rtb_change *c, rt_runner *r)
{
    const rtb_map *m = lr->map;
    const uint32_t k = c->index & ~(uint32_t)RTB_CHANGE_JUMP;
    const int jump = (c->index & (uint32_t)RTB_CHANGE_JUMP) != 0;
    if (!m || k >= (uint32_t)m->n) { l->counters.rejected++; return; }
    double v = c->value;
    if (!isfinite(v)) { l->counters.rejected++; return; }
    if (v < m->lo[k]) v = m->lo[k];
    if (v > m->hi[k]) v = m->hi[k];
    if (m->steps[k] > 0) v = nearbyint(v);
    if (m->rt[k]) {
        const int32_t j = m->index[k];
        if (j < 0 || j >= r->npar) return;
        r->targets[j] = (float)v;             /* ramped by the runner from here */
        if (jump) {                           /* this thread runs the runner: settle it */
            r->cur[j] = r->last_target[j] = (float)v;
            r->remaining[j] = 0;
            r->lane_fill[j] = 0;
        }
        return;
    }
    uint32_t h = lr->head, t = __atomic_load_n(&lr->tail, __ATOMIC_ACQUIRE);
    if (h - t >= RTB_RING) { l->counters.rejected++; return; }
    lr->ring[h & (RTB_RING - 1)].index = (int32_t)k;
    lr->ring[h & (RTB_RING - 1)].value = v;
    __atomic_store_n(&lr->head, h + 1, __ATOMIC_RELEASE);
    rtb_wake_control(lr);
}

/* The plugin's MIDI to the control side (the lane's MIDI map runs there, as
 * the mapper of `rtengine run` does): every event up to the plugin's head,
 * including those of requests the plugin gave up on.  Each is checked (size,
 * a status byte first, data bytes after it); a bad one is counted as a
 * rejection and skipped, a head more than a ring ahead is refused whole. */
static void rtb_take_request_midi(rtb_lane_rt *lr, rtb_lane *l)
{
    const uint32_t head = __atomic_load_n(&l->midi_head, __ATOMIC_ACQUIRE);
    uint32_t t = l->midi_tail;
    if (head == t) return;
    if (head - t > RTB_MAX_MIDI) {                   /* corrupt: drop what is there */
        l->counters.rejected++;
        __atomic_store_n(&l->midi_tail, head, __ATOMIC_RELEASE);
        return;
    }
    uint32_t h = lr->mhead, ct = __atomic_load_n(&lr->mtail, __ATOMIC_ACQUIRE);
    int32_t put = 0;
    for (; t != head; t++) {
        rtb_midi e = l->midi[t % RTB_MAX_MIDI];      /* read once: the plugin owns it */
        int ok = e.size >= 1 && e.size <= 3 && e.data[0] >= 0x80;
        for (int32_t b = 1; ok && b < e.size; b++) ok = e.data[b] < 0x80;
        if (!ok || h - ct >= RTB_MIDI_RING) { l->counters.rejected++; continue; }
        lr->midi[h & (RTB_MIDI_RING - 1)] = e;
        h++;
        put++;
    }
    __atomic_store_n(&l->midi_tail, head, __ATOMIC_RELEASE);
    if (!put) return;
    __atomic_store_n(&lr->mhead, h, __ATOMIC_RELEASE);
    rtb_wake_control(lr);
}

static void rtb_serve_one(rtb_lane_rt *lr, rtb_lane *l)
{
    if (rt_xfade_begin(&lr->x))
        lr->map = __atomic_load_n(&lr->pending_map, __ATOMIC_ACQUIRE);
    rt_runner *r = rt_xfade_current(&lr->x);
    const int32_t n = l->nframes;
    const int32_t nch = l->channels;
    if (!r || n < 1 || n > RTB_MAX_FRAMES || nch < 1 || nch > RTB_MAX_CH || r->nch != nch) {
        l->counters.rejected++;
        for (int32_t c = 0; c < RTB_MAX_CH; c++)   /* answer with the input: never garbage */
            memcpy(l->out + c * RTB_MAX_FRAMES, l->in + c * RTB_MAX_FRAMES,
                   sizeof(float) * (n >= 1 && n <= RTB_MAX_FRAMES ? (size_t)n : 0));
        return;
    }
    for (int32_t c = 0; c < nch; c++)
        memcpy(l->out + c * RTB_MAX_FRAMES, l->in + c * RTB_MAX_FRAMES, sizeof(float) * (size_t)n);
    rtb_take_request_midi(lr, l);
    int32_t nchg = l->nchanges;
    if (nchg < 0 || nchg > RTB_MAX_CHANGES) { l->counters.rejected++; nchg = 0; }
    int32_t pos = 0, k = 0;
    while (pos < n) {
        while (k < nchg && l->changes[k].offset <= pos) rtb_apply(lr, l, &l->changes[k++], r);
        int32_t next = n;
        if (k < nchg) {
            int32_t off = l->changes[k].offset;
            next = off > pos && off < n ? off : n;
        }
        rt_xfade_process(&lr->x, l->out + pos, lr->io2 + pos, RTB_MAX_FRAMES, next - pos);
        pos = next;
    }
    while (k < nchg) rtb_apply(lr, l, &l->changes[k++], r);
    l->counters.requests++;
    l->counters.frames += (uint64_t)n;
}

/* The peak of how late a lane's timed sleeps end: raised by a later one, capped at a quarter
 * block (a longer host stall says nothing more: the lane never wakes earlier than that);
 * with `decay`, a sample below it lowers it by 1/64. */
static inline void rtb_note_wake(int64_t *peak, int64_t d, int64_t period, int decay)
{
    if (d > period / 4) d = period / 4;
    if (d > *peak) *peak = d;
    else if (decay) *peak -= *peak / 64;
}

static void *rtb_lane_main(void *arg)
{
    rtb_lane_rt *lr = arg;
    rtb_lane *l = &lr->srv->seg->lanes[lr->idx];
    /* requests from before the attach are not answered: their sender gave up
     * (read by rtb_server_attach, not here: a plugin told its chain runs may
     * post its first request before this thread gets to run) */
    uint32_t last = lr->first_last;
    uint64_t due = 0;                            /* when the next request is expected */
    int slept = 0;                               /* the last wait was in the kernel */
    uint64_t alarm = 0;                          /* when the last timed sleep was to end */
    int64_t wake_late = 0;                       /* how late such sleeps end here (peak) */
    int64_t period = 0;                          /* the last block's duration */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);      /* signals go to the control thread */
    /* real-time scheduling where the user may have it (audio group, rtprio):
     * the lane answers a DAW's audio thread, which runs real-time too */
    struct sched_param sp = {.sched_priority = 70};
    if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) != 0)
        __atomic_store_n(&lr->realtime, 0, __ATOMIC_RELAXED);
    else
        __atomic_store_n(&lr->realtime, 1, __ATOMIC_RELAXED);
    while (!__atomic_load_n(&lr->stop, __ATOMIC_ACQUIRE)) {
        uint32_t req = __atomic_load_n(&l->req_seq, __ATOMIC_ACQUIRE);
        if (req == last) {
            /* A DAW calls once per audio period.  Woken from the kernel, this
             * thread would start late by a wake-up (tens of us when its idle
             * CPU is halted, as on a VM); so it sleeps until `spin` before the
             * next request is due, on the cadence of the blocks (see below), and
             * waits for it awake, until 4 x `spin` after.  Requests off that cadence
             * (offline, stopped) just find it asleep, woken by the futex as ever.
             * A timed sleep itself ends late by the machine's wake-up (hundreds of
             * us on some VMs): the sleep ends earlier by the latest such delay
             * seen (a peak that decays), so the thread is awake in time. */
            const int64_t spin = __atomic_load_n(&lr->srv->spin_ns, __ATOMIC_RELAXED);
            const int64_t early = period / 4 < spin ? period / 4 : spin;
            const int64_t after = period / 2 < 4 * spin ? period / 2 : 4 * spin;
            if (early > 0) {
                const uint64_t now = rtb_now_ns();
                if (slept && alarm && now > alarm)              /* this sleep's delay */
                    rtb_note_wake(&wake_late, (int64_t)(now - alarm), period, 1);
                alarm = 0;
                int64_t lead = early + wake_late;
                if (lead > period / 4) lead = period / 4 > early ? period / 4 : early;
                int64_t to_due = (int64_t)(due - now);
                if (to_due > lead) {
                    alarm = now + (uint64_t)(to_due - lead);
                    rtb_wait(&l->req_seq, last, (uint64_t)(to_due - lead));
                    slept = 1;
                    continue;
                }
                if (to_due > -after) {
                    /* awake after the request was due too, for four times
                     * `spin` (at most half a block): one posted late (its
                     * sender woke late) still finds this thread awake, one on
                     * time costs nothing more, and a stopped stream has it
                     * wait that long once, then sleep.  A yield, not a bare
                     * spin: another lane's thread (same real-time priority)
                     * waiting for this CPU gets it */
                    sched_yield();
                    slept = 0;
                    continue;
                }
            }
            alarm = 0;
            rtb_wait(&l->req_seq, last, 100000000u);
            slept = 1;
            continue;
        }
        if (slept && alarm) {
            /* woken by this request before the timed sleep ended: that sleep
             * would have ended late by at least the time since its alarm */
            const uint64_t now = rtb_now_ns();
            if (now > alarm) rtb_note_wake(&wake_late, (int64_t)(now - alarm), period, 0);
        }
        alarm = 0;
        const uint64_t seen = rtb_now_ns();
        const int32_t nf = l->nframes;
        const double rate = l->sample_rate;
        const int64_t was = period;
        period = nf >= 1 && nf <= RTB_MAX_FRAMES && rate >= 1000 && rate <= 1e6
                     ? (int64_t)(1e9 * nf / rate) : 0;
        /* The next request is due one block after this one was posted (the
         * plugin's clock, not when this thread saw it: woken from the kernel it
         * sees it late, and timing the next from then would make it late for
         * that one too).  A request posted late (its sender woke late) leaves
         * the cadence where it was, moved by an eighth of the delay, so the
         * next one, on time, still finds this thread awake; one posted early,
         * or more than half a block late, or another block size, sets it anew
         * (a transport started, a phase that moved). */
        uint64_t posted = l->posted_ns;
        if (posted > seen || seen - posted > 1000000000u) posted = seen;   /* not trusted */
        const int64_t late = (int64_t)(posted - due);
        if (due == 0 || period != was || late < 0 || late > period / 2)
            due = posted + (uint64_t)period;
        else
            due += (uint64_t)(period + late / 8);
        if (slept) l->counters.woken++;
        rtb_serve_one(lr, l);
        const int64_t took = (int64_t)(rtb_now_ns() - seen);
        l->serve_ns = (int32_t)(took < 1000000000 ? took : 1000000000);
        last = req;
        __atomic_store_n(&l->resp_seq, req, __ATOMIC_RELEASE);
        rtb_wake(&l->resp_seq);
    }
    return NULL;
}

int32_t rtb_server_attach(rtb_server *s, int32_t lane, void *runner, const int32_t *par_index,
                          const uint8_t *par_rt, int32_t nparams, int32_t fade)
{
    if (!s || lane < 0 || lane >= RTB_MAX_LANES || !runner || nparams < 0 ||
        nparams > RTB_MAX_PARAMS)
        return -1;
    rtb_lane_rt *lr = &s->lanes[lane];
    rtb_lane *l = &s->seg->lanes[lane];
    rtb_map *m = &lr->maps[lr->next_map];
    lr->next_map ^= 1;
    m->n = nparams;
    for (int32_t k = 0; k < nparams; k++) {
        m->index[k] = par_index[k];
        m->rt[k] = par_rt[k];
        m->lo[k] = l->params[k].min;          /* just written by this process */
        m->hi[k] = l->params[k].max;
        m->steps[k] = l->params[k].steps;
    }
    if (!lr->running) {
        lr->first_last = __atomic_load_n(&l->req_seq, __ATOMIC_ACQUIRE);
        l->midi_tail = __atomic_load_n(&l->midi_head, __ATOMIC_ACQUIRE);   /* meant for before */
        lr->map = m;
        rt_xfade_set(&lr->x, runner);
        lr->stop = 0;
        if (pthread_create(&lr->th, NULL, rtb_lane_main, lr)) return -1;
        lr->running = 1;
        return 0;
    }
    __atomic_store_n(&lr->pending_map, m, __ATOMIC_RELEASE);
    rt_xfade_post(&lr->x, runner, fade);
    return 0;
}

void rtb_server_set_spin(rtb_server *s, int32_t us)
{
    if (s) __atomic_store_n(&s->spin_ns, (int64_t)(us < 0 ? 0 : us) * 1000, __ATOMIC_RELAXED);
}

uint32_t rtb_server_swaps_done(rtb_server *s, int32_t lane)
{
    if (!s || lane < 0 || lane >= RTB_MAX_LANES) return 0;
    return rt_xfade_done(&s->lanes[lane].x);
}

void rtb_server_detach(rtb_server *s, int32_t lane)
{
    if (!s || lane < 0 || lane >= RTB_MAX_LANES) return;
    rtb_lane_rt *lr = &s->lanes[lane];
    if (lr->running) {
        __atomic_store_n(&lr->stop, 1, __ATOMIC_RELEASE);
        rtb_wake(&s->seg->lanes[lane].req_seq);
        pthread_join(lr->th, NULL);
        lr->running = 0;
    }
    memset(&lr->x, 0, sizeof lr->x);
    lr->map = lr->pending_map = NULL;
    lr->head = lr->tail = 0;
    lr->mhead = lr->mtail = 0;
    rtb_lane *l = &s->seg->lanes[lane];
    l->owner_pid = 0;
    __atomic_store_n(&l->state, RTB_FREE, __ATOMIC_RELEASE);
}

int32_t rtb_server_take_changes(rtb_server *s, int32_t lane, int32_t *index, double *value,
                                int32_t max)
{
    if (!s || lane < 0 || lane >= RTB_MAX_LANES) return 0;
    rtb_lane_rt *lr = &s->lanes[lane];
    uint32_t t = lr->tail, h = __atomic_load_n(&lr->head, __ATOMIC_ACQUIRE);
    int32_t got = 0;
    while (t != h && got < max) {
        index[got] = lr->ring[t & (RTB_RING - 1)].index;
        value[got] = lr->ring[t & (RTB_RING - 1)].value;
        got++;
        t++;
    }
    __atomic_store_n(&lr->tail, t, __ATOMIC_RELEASE);
    return got;
}

int32_t rtb_server_take_midi(rtb_server *s, int32_t lane, uint8_t *dst, int32_t max)
{
    if (!s || lane < 0 || lane >= RTB_MAX_LANES || !dst) return 0;
    rtb_lane_rt *lr = &s->lanes[lane];
    uint32_t t = lr->mtail, h = __atomic_load_n(&lr->mhead, __ATOMIC_ACQUIRE);
    int32_t got = 0;
    while (t != h && got < max) {
        const rtb_midi *e = &lr->midi[t & (RTB_MIDI_RING - 1)];
        uint8_t *d = dst + 4 * got;
        d[0] = e->size;
        memcpy(d + 1, e->data, 3);
        got++;
        t++;
    }
    __atomic_store_n(&lr->mtail, t, __ATOMIC_RELEASE);
    return got;
}

void rtb_server_destroy(rtb_server *s)
{
    if (!s) return;
    __atomic_store_n(&s->seg->h.closing, 1, __ATOMIC_RELEASE);
    if (s->beating) {
        __atomic_store_n(&s->stop_beat, 1, __ATOMIC_RELEASE);
        pthread_join(s->beat, NULL);
    }
    for (int i = 0; i < RTB_MAX_LANES; i++) {
        rtb_lane_rt *lr = &s->lanes[i];
        if (lr->running) {
            __atomic_store_n(&lr->stop, 1, __ATOMIC_RELEASE);
            rtb_wake(&s->seg->lanes[i].req_seq);
            pthread_join(lr->th, NULL);
            lr->running = 0;
        }
    }
    __atomic_store_n(&s->seg->h.server_pid, 0, __ATOMIC_RELEASE);
    munmap(s->seg, sizeof(rtb_segment));
    close(s->fd);
    /* the segment stays: plugins keep their lanes and reconnect to the next server */
    free(s);
}
