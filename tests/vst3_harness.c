/* A minimal VST3 host for tests/test_vst3.py: it drives the rtengine plugin
 * through calls real hosts make but pedalboard does not (a 0-sample flush with
 * no buffers, 64-bit requests, raw state blobs) and prints one line per check.
 * Usage: vst3_harness path/to/rtengine.so */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int32_t tresult;
typedef uint8_t TUID[16];

#define IID(a, b, c, d) {(uint8_t)((a) >> 24), (uint8_t)((a) >> 16), (uint8_t)((a) >> 8), \
    (uint8_t)(a), (uint8_t)((b) >> 24), (uint8_t)((b) >> 16), (uint8_t)((b) >> 8), (uint8_t)(b), \
    (uint8_t)((c) >> 24), (uint8_t)((c) >> 16), (uint8_t)((c) >> 8), (uint8_t)(c), \
    (uint8_t)((d) >> 24), (uint8_t)((d) >> 16), (uint8_t)((d) >> 8), (uint8_t)(d)}
static const TUID IID_IComponent = IID(0xE831FF31, 0xF2D54301, 0x928EBBEE, 0x25697802);
static const TUID IID_IAudioProcessor = IID(0x42043F99, 0xB7DA453C, 0xA569E79D, 0x9AAEC33D);
static const TUID IID_IEditController = IID(0xDCD7BBE3, 0x7742448D, 0xA874AACC, 0x979C759E);
static const TUID IID_IMidiMapping = IID(0xDF0FF9F7, 0x49B74669, 0xB63AB732, 0x7ADBF5E5);
#define PROXY_BASE 0x7FFF0000u                /* RTB_PROXY_BASE: controller parameters */

typedef struct { void *qi, *add, *rel; } Unk;
typedef struct { Unk u; void *info; int32_t (*count)(void *);
                 tresult (*class_info)(void *, int32_t, void *);
                 tresult (*create)(void *, const uint8_t *, const uint8_t *, void **); } FactoryV;
typedef struct { tresult (*qi)(void *, const uint8_t *, void **); uint32_t (*add)(void *);
                 uint32_t (*rel)(void *); tresult (*init)(void *, void *); tresult (*term)(void *);
                 void *cid, *io, *bus_count, *bus_info, *routing, *act_bus;
                 tresult (*set_active)(void *, uint8_t); tresult (*set_state)(void *, void *);
                 tresult (*get_state)(void *, void *); } ComponentV;
typedef struct { void *qi, *add, *rel, *set_arr, *get_arr;
                 tresult (*can_size)(void *, int32_t); uint32_t (*latency)(void *);
                 tresult (*setup)(void *, void *); tresult (*set_processing)(void *, uint8_t);
                 tresult (*process)(void *, void *); } ProcessorV;

typedef struct { int32_t mode, size, max_block; double rate; } ProcessSetup;
typedef struct { int32_t n; uint64_t silence; void **buffers; } Bus;
typedef struct { int32_t mode, size, n, nin, nout; Bus *in, *out; void *pin, *pout, *ein, *eout,
                 *ctx; } ProcessData;

/* a memory IBStream */
typedef struct Stream { const void *vt; uint8_t *data; int64_t len, pos, cap; } Stream;
static tresult s_qi(void *s, const uint8_t *iid, void **o) { (void)iid; *o = s; return 0; }
static uint32_t s_ref(void *s) { (void)s; return 1; }
static tresult s_read(void *p, void *dst, int32_t n, int32_t *got)
{
    Stream *s = p;
    int64_t k = s->len - s->pos < n ? s->len - s->pos : n;
    memcpy(dst, s->data + s->pos, (size_t)k);
    s->pos += k;
    if (got) *got = (int32_t)k;
    return 0;
}
static tresult s_write(void *p, void *src, int32_t n, int32_t *put)
{
    Stream *s = p;
    if (s->pos + n > s->cap) {
        s->cap = (s->pos + n) * 2;
        s->data = realloc(s->data, (size_t)s->cap);
    }
    memcpy(s->data + s->pos, src, (size_t)n);
    s->pos += n;
    if (s->pos > s->len) s->len = s->pos;
    if (put) *put = n;
    return 0;
}
static tresult s_seek(void *p, int64_t pos, int32_t mode, int64_t *res)
{
    Stream *s = p;
    s->pos = mode == 0 ? pos : mode == 1 ? s->pos + pos : s->len + pos;
    if (res) *res = s->pos;
    return 0;
}
static tresult s_tell(void *p, int64_t *pos) { *pos = ((Stream *)p)->pos; return 0; }
static const void *stream_vt[] = {(void *)s_qi, (void *)s_ref, (void *)s_ref, (void *)s_read,
                                  (void *)s_write, (void *)s_seek, (void *)s_tell};

static Stream *stream_of(const void *data, int64_t len)
{
    Stream *s = calloc(1, sizeof *s);
    s->vt = stream_vt;
    s->data = malloc((size_t)(len > 0 ? len : 1));
    memcpy(s->data, data, (size_t)len);
    s->len = s->cap = len;
    return s;
}

/* an IEventList with a few note events */
typedef struct {
    int32_t busIndex, sampleOffset;
    double ppq;
    uint16_t flags, type;
    union { struct { int16_t channel, pitch; float tuning, velocity; int32_t length, id; } on;
            void *align; uint8_t raw[24]; } u;
} Event;
typedef struct { const void *vt; Event ev[8]; int32_t n; } Events;
static int32_t ev_count(void *p) { return ((Events *)p)->n; }
static tresult ev_get(void *p, int32_t i, Event *e)
{
    Events *l = p;
    if (i < 0 || i >= l->n) return 2;
    *e = l->ev[i];
    return 0;
}
static tresult ev_add(void *p, Event *e) { (void)p; (void)e; return 1; }
static const void *events_vt[] = {(void *)s_qi, (void *)s_ref, (void *)s_ref, (void *)ev_count,
                                  (void *)ev_get, (void *)ev_add};

/* output parameter changes: every point the plugin adds is printed and kept */
typedef struct { const void *vt; uint32_t id; double last; int32_t points, off; } Queue;
typedef struct { const void *vt; Queue q[64]; int32_t n; } Changes;
static uint32_t q_id(void *p) { return ((Queue *)p)->id; }
static int32_t q_count(void *p) { return ((Queue *)p)->points; }
static tresult q_get(void *p, int32_t i, int32_t *off, double *v)
{ (void)i; *off = ((Queue *)p)->off; *v = ((Queue *)p)->last; return 0; }
static tresult q_add(void *p, int32_t off, double v, int32_t *i)
{
    Queue *q = p;
    printf("output change %u at %d = %g\n", q->id, off, v);
    q->last = v;
    *i = q->points++;
    return 0;
}
static const void *queue_vt[] = {(void *)s_qi, (void *)s_ref, (void *)s_ref, (void *)q_id,
                                 (void *)q_count, (void *)q_get, (void *)q_add};
static int32_t ch_count(void *p) { return ((Changes *)p)->n; }
static void *ch_get(void *p, int32_t i) { return &((Changes *)p)->q[i]; }
static void *ch_add(void *p, const uint32_t *id, int32_t *i)
{
    Changes *c = p;
    for (int k = 0; k < c->n; k++)
        if (c->q[k].id == *id) { *i = k; return &c->q[k]; }
    if (c->n == 64) return NULL;
    Queue *q = &c->q[c->n];
    q->vt = queue_vt;
    q->id = *id;
    q->points = 0;
    *i = c->n++;
    return q;
}
static const void *changes_vt[] = {(void *)s_qi, (void *)s_ref, (void *)s_ref, (void *)ch_count,
                                   (void *)ch_get, (void *)ch_add};

static int failures;
static void check(const char *what, int ok)
{
    printf("%s %s\n", ok ? "ok" : "FAIL", what);
    if (!ok) failures++;
}

/* The plugin's state blob: "RTEV", version 1, length, chain text; its length. */
static uint32_t state_blob(const char *chain, uint8_t *out)
{
    uint32_t n = (uint32_t)strlen(chain);
    uint32_t hdr[3] = {0x56455452u, 1u, n};
    memcpy(out, hdr, 12);
    memcpy(out + 12, chain, n);
    return 12 + n;
}

static int midi_checks(ComponentV *cv, void **comp, ProcessorV *pv, void **proc);
static int controller_checks(ComponentV *cv, void **comp, ProcessorV *pv, void **proc,
                             ProcessData *block, const float *ol);

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 3) return 2;
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) { printf("FAIL dlopen %s\n", dlerror()); return 1; }
    void *(*get)(void) = (void *(*)(void))dlsym(lib, "GetPluginFactory");
    void **fac = get();
    FactoryV *fv = (FactoryV *)*fac;
    uint8_t info[116];
    check("one class", fv->count(fac) == 1 && fv->class_info(fac, 0, info) == 0);
    void **comp = NULL;
    check("create", fv->create(fac, info, IID_IComponent, (void **)&comp) == 0 && comp);
    ComponentV *cv = (ComponentV *)*comp;
    check("initialize", cv->init(comp, NULL) == 0);
    void **proc = NULL;
    check("audio processor", cv->qi(comp, IID_IAudioProcessor, (void **)&proc) == 0 && proc);
    ProcessorV *pv = (ProcessorV *)*proc;
    check("32-bit accepted", pv->can_size(proc, 0) == 0);
    check("64-bit refused", pv->can_size(proc, 1) != 0);
    ProcessSetup s64 = {0, 1, 512, 48000.0};
    check("64-bit set-up refused", pv->setup(proc, &s64) != 0);
    ProcessSetup s32 = {0, 0, 512, 48000.0};
    check("32-bit set-up", pv->setup(proc, &s32) == 0);
    check("activate", cv->set_active(comp, 1) == 0);
    if (argc == 3) {                      /* "midi": the MIDI input bus, against a --midi-map */
        midi_checks(cv, comp, pv, proc);
        printf("%s\n", failures ? "FAILED" : "ALL OK");
        return failures ? 1 : 0;
    }
    pv->set_processing(proc, 1);
    ProcessData flush = {0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    check("0-sample flush without buffers", pv->process(proc, &flush) == 0);
    static float l[512], r[512], ol[512], orr[512];
    for (int i = 0; i < 512; i++) l[i] = r[i] = 0.25f * sinf(0.05f * (float)i);
    void *ins[2] = {l, r}, *outs[2] = {ol, orr};
    Bus in = {2, 0, ins}, out = {2, 0, outs};
    ProcessData block = {0, 0, 512, 1, 1, &in, &out, NULL, NULL, NULL, NULL, NULL};
    int finite = 1;
    for (int k = 0; k < 20; k++) {
        if (pv->process(proc, &block) != 0) finite = 0;
        for (int i = 0; i < 512; i++) finite &= isfinite(ol[i]) && isfinite(orr[i]);
    }
    check("blocks processed, finite", finite);
    ProcessData outputs_only = {0, 0, 512, 0, 1, NULL, &out, NULL, NULL, NULL, NULL, NULL};
    check("no input bus", pv->process(proc, &outputs_only) == 0);

    /* state blobs: "RTEV", version 1, length, chain text */
    const char *chain = "[[stage]]\nplugin = \"gain\"\n[stage.params]\ngain_db = -6.0\n";
    uint8_t good[256];
    uint32_t n = state_blob(chain, good) - 12;
    Stream *st = stream_of(good, 12 + 10);                     /* truncated */
    check("truncated state refused", cv->set_state(comp, st) != 0);
    uint8_t bad[256];
    memcpy(bad, good, 12 + n);
    bad[4] = 9;                                                /* version 9 */
    check("other version refused", cv->set_state(comp, stream_of(bad, 12 + n)) != 0);
    memcpy(bad, "JUNK", 4);
    check("foreign state refused", cv->set_state(comp, stream_of(bad, 12 + n)) != 0);
    check("empty state refused", cv->set_state(comp, stream_of(good, 0)) != 0);
    check("good state restored", cv->set_state(comp, stream_of(good, 12 + n)) == 0);
    Stream *saved = stream_of("", 0);
    check("state saved", cv->get_state(comp, saved) == 0 && saved->len > 12 &&
                         memcmp(saved->data, "RTEV", 4) == 0 &&
                         memmem(saved->data, (size_t)saved->len, "gain_db = -6.0", 14));
    for (int k = 0; k < 5; k++) pv->process(proc, &block);
    float peak = 0;
    for (int i = 0; i < 512; i++) peak = fabsf(ol[i]) > peak ? fabsf(ol[i]) : peak;
    check("restored chain runs (-6 dB)", fabsf(peak - 0.25f * 0.501187f) < 0.01f);
    check("deactivate", cv->set_active(comp, 0) == 0);
    ((uint32_t (*)(void *))((void **)*proc)[2])(proc);
    check("terminate", cv->term(comp) == 0);
    cv->rel(comp);
    printf("%s\n", failures ? "FAILED" : "ALL OK");
    return failures ? 1 : 0;
}

/* A note on the MIDI input bus toggles the bypass through the server's MIDI map
 * (note 60, channel 1); the plugin then reports the moved value to the host as
 * an output parameter change and the audio comes through unprocessed. */
static int midi_checks(ComponentV *cv, void **comp, ProcessorV *pv, void **proc)
{
    typedef int32_t (*BusCount)(void *, int32_t, int32_t);
    typedef tresult (*BusInfoFn)(void *, int32_t, int32_t, int32_t, void *);
    check("one MIDI input bus", ((BusCount)cv->bus_count)(comp, 1, 0) == 1 &&
                                ((BusCount)cv->bus_count)(comp, 1, 1) == 0);
    uint8_t info[276];
    int32_t media = -1, channels = -1;
    if (((BusInfoFn)cv->bus_info)(comp, 1, 0, 0, info) == 0) {
        memcpy(&media, info, 4);
        memcpy(&channels, info + 8, 4);
    }
    check("MIDI bus: event media, 16 channels", media == 1 && channels == 16);
    uint8_t blob[256];
    uint32_t len = state_blob("[[stage]]\nplugin = \"gain\"\n[stage.params]\ngain_db = -6.0\n",
                              blob);
    check("chain restored", cv->set_state(comp, stream_of(blob, len)) == 0);
    static float l[512], r[512], ol[512], orr[512];
    for (int i = 0; i < 512; i++) l[i] = r[i] = 0.25f;
    void *ins[2] = {l, r}, *outs[2] = {ol, orr};
    Bus in = {2, 0, ins}, out = {2, 0, outs};
    Events none = {events_vt, {{0}}, 0};
    Events note = {events_vt, {{0}}, 1};
    note.ev[0].sampleOffset = 100;
    note.ev[0].type = 0;                                  /* note on */
    note.ev[0].u.on.channel = 0;
    note.ev[0].u.on.pitch = 60;
    note.ev[0].u.on.velocity = 0.8f;
    note.ev[0].u.on.id = -1;
    Changes changes = {changes_vt, {{0}}, 0};
    ProcessData block = {0, 0, 512, 1, 1, &in, &out, NULL, &changes, &none, NULL, NULL};
    int running = 0;
    for (int k = 0; k < 1000 && !running; k++) {           /* the manager thread connects */
        pv->process(proc, &block);
        running = fabsf(ol[511] - 0.25f * 0.501187f) < 1e-3f;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    check("processed at -6 dB", running);
    changes.n = 0;
    block.ein = &note;
    pv->process(proc, &block);
    block.ein = &none;
    int reported = 0;
    for (int k = 0; k < 1000; k++) {      /* the map runs a few ms behind (or at once) */
        for (int q = 0; q < changes.n; q++)
            if (changes.q[q].points && changes.q[q].last == 1.0) reported = 1;
        if (reported) break;
        changes.n = 0;
        pv->process(proc, &block);
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    check("the moved bypass is reported to the host", reported);
    for (int k = 0; k < 10; k++) pv->process(proc, &block);
    check("bypassed: the input comes through", fabsf(ol[511] - 0.25f) < 1e-6f);
    block.ein = &note;                                    /* the same note: bypass off */
    pv->process(proc, &block);
    block.ein = &none;
    return controller_checks(cv, comp, pv, proc, &block, ol);
}

/* MIDI controllers: the host asks IMidiMapping which parameter stands for a
 * controller, and sends the controller's moves as that parameter's changes;
 * the plugin hands them to the engine as MIDI.  The map (see the test): CC 7
 * on channel 1 -> gain.gain_db (-60..0 dB), pitch bend on channel 2 -> gain.pan. */
static int controller_checks(ComponentV *cv, void **comp, ProcessorV *pv, void **proc,
                             ProcessData *block, const float *ol)
{
    typedef struct { void *qi, *add, *rel;
                     tresult (*assign)(void *, int32_t, int16_t, int16_t, uint32_t *); } MapV;
    void **mm = NULL;
    check("IMidiMapping", cv->qi(comp, IID_IMidiMapping, (void **)&mm) == 0 && mm);
    if (!mm) return 0;
    MapV *mv = (MapV *)*mm;
    uint32_t id = 0, pb = 0;
    check("CC 7 on channel 1 is a parameter",
          mv->assign(mm, 0, 0, 7, &id) == 0 && id == PROXY_BASE + 7);
    check("pitch bend on channel 2 is a parameter",
          mv->assign(mm, 0, 1, 129, &pb) == 0 && pb == PROXY_BASE + 130 + 129);
    uint32_t junk;
    check("unmapped controllers are not",
          mv->assign(mm, 0, 0, 8, &junk) != 0 && mv->assign(mm, 0, 1, 7, &junk) != 0 &&
          mv->assign(mm, 0, 0, 129, &junk) != 0 && mv->assign(mm, 1, 0, 7, &junk) != 0 &&
          mv->assign(mm, 0, 16, 7, &junk) != 0 && mv->assign(mm, 0, 0, 130, &junk) != 0);
    void **ec = NULL;
    check("edit controller", cv->qi(comp, IID_IEditController, (void **)&ec) == 0 && ec);
    void **ev = (void **)*ec;
    int32_t count = ((int32_t (*)(void *))ev[8])(ec);
    check("5 gain parameters and 2 controller parameters", count == 7);
    uint8_t info[792];
    int found = 0;
    for (int32_t i = 0; i < count; i++) {
        if (((tresult (*)(void *, int32_t, void *))ev[9])(ec, i, info) != 0) continue;
        uint32_t pid, flags;
        int32_t steps;
        memcpy(&pid, info, 4);
        memcpy(&steps, info + 772, 4);
        memcpy(&flags, info + 788, 4);
        char title[64];
        for (int k = 0; k < 63; k++) title[k] = (char)info[4 + 2 * k];
        title[63] = 0;
        if (pid == id && steps == 127 && flags == 16 && !strcmp(title, "MIDI CC 7 (channel 1)"))
            found++;
        if (pid == pb && steps == 16383 && flags == 16 &&
            !strcmp(title, "MIDI pitch bend (channel 2)"))
            found++;
    }
    check("controller parameters: hidden, titled, 128 or 16384 steps", found == 2);
    uint16_t text[128];
    char shown[16] = {0};
    if (((tresult (*)(void *, uint32_t, double, uint16_t *))ev[10])(ec, pb, 0.5, text) == 0)
        for (int k = 0; k < 15 && text[k]; k++) shown[k] = (char)text[k];
    check("pitch bend centre reads 8192", !strcmp(shown, "8192"));
    ((uint32_t (*)(void *))ev[2])(ec);
    ((uint32_t (*)(void *))((void **)*mm)[2])(mm);
    /* CC 7 = 64 in a 0-sample block: sent with the next block; -60 + 64/127*60 dB */
    Changes cc = {changes_vt, {{0}}, 1};
    cc.q[0].vt = queue_vt;
    cc.q[0].id = id;
    cc.q[0].points = 1;
    cc.q[0].last = 64.0 / 127.0;
    ProcessData flush = {0, 0, 0, 0, 0, NULL, NULL, &cc, NULL, NULL, NULL, NULL};
    check("a controller in a 0-sample block", pv->process(proc, &flush) == 0);
    const float want = 0.25f * powf(10.0f, (-60.0f + 64.0f / 127.0f * 60.0f) / 20.0f);
    int moved = 0;
    for (int k = 0; k < 1000 && !moved; k++) {
        pv->process(proc, block);
        moved = fabsf(ol[511] - want) < 1e-4f;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    printf("level after CC 7 = 64: %g (want %g)\n", ol[511], want);
    check("CC 7 = 64 moved the gain to -29.8 dB", moved);
    /* CC 7 = 127 at offset 200 of a block: 0 dB */
    cc.q[0].last = 1.0;
    cc.q[0].off = 200;
    block->pin = &cc;
    pv->process(proc, block);
    block->pin = NULL;
    moved = 0;
    for (int k = 0; k < 1000 && !moved; k++) {
        pv->process(proc, block);
        moved = fabsf(ol[511] - 0.25f) < 1e-4f;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    check("CC 7 = 127 in mid block moved the gain to 0 dB", moved);
    return 0;
}
