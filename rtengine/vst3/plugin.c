/* The rtengine VST3 plugin: a DAW track's audio goes through a chain running
 * in the rtengine engine process (`rtengine serve`), over the shared-memory
 * bridge (rtengine/bridge).  Written against the VST3 binary interface
 * directly (see ../shared/VST3.md for the facts used), with no SDK: one object
 * is the component, the audio processor and the edit controller.
 *
 * Threads: the host calls process() on its audio thread; the bridge client
 * never blocks it past a deadline and falls back to the dry input delayed by
 * the reported latency.  A small manager thread (re)connects to the engine
 * when it is missing.  Everything else runs on the host's control thread. */
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "../bridge/bridge.h"

#define EXPORT __attribute__((visibility("default")))
#define API

typedef int32_t tresult;
typedef uint16_t char16;
typedef char16 String128[128];
typedef uint8_t TUID[16];

enum { kNoInterface = -1, kResultOk = 0, kResultFalse = 1, kInvalidArgument = 2,
       kNotImplemented = 3, kInternalError = 4, kNotInitialized = 5 };

#define IID(a, b, c, d) {(uint8_t)((a) >> 24), (uint8_t)((a) >> 16), (uint8_t)((a) >> 8), \
    (uint8_t)(a), (uint8_t)((b) >> 24), (uint8_t)((b) >> 16), (uint8_t)((b) >> 8), (uint8_t)(b), \
    (uint8_t)((c) >> 24), (uint8_t)((c) >> 16), (uint8_t)((c) >> 8), (uint8_t)(c), \
    (uint8_t)((d) >> 24), (uint8_t)((d) >> 16), (uint8_t)((d) >> 8), (uint8_t)(d)}

static const TUID IID_FUnknown = IID(0x00000000, 0x00000000, 0xC0000000, 0x00000046);
static const TUID IID_IPluginBase = IID(0x22888DDB, 0x156E45AE, 0x8358B348, 0x08190625);
static const TUID IID_IPluginFactory = IID(0x7A4D811C, 0x52114A1F, 0xAED9D2EE, 0x0B43BF9F);
static const TUID IID_IPluginFactory2 = IID(0x0007B650, 0xF24B4C0B, 0xA464EDB9, 0xF00B2ABB);
static const TUID IID_IPluginFactory3 = IID(0x4555A2AB, 0xC1234E57, 0x9B122910, 0x36878931);
static const TUID IID_IComponent = IID(0xE831FF31, 0xF2D54301, 0x928EBBEE, 0x25697802);
static const TUID IID_IAudioProcessor = IID(0x42043F99, 0xB7DA453C, 0xA569E79D, 0x9AAEC33D);
static const TUID IID_IEditController = IID(0xDCD7BBE3, 0x7742448D, 0xA874AACC, 0x979C759E);
static const TUID IID_IMidiMapping = IID(0xDF0FF9F7, 0x49B74669, 0xB63AB732, 0x7ADBF5E5);
/* rtengine's class id ("rtengine bridge!" in ASCII) */
static const TUID CID_rtengine = {'r', 't', 'e', 'n', 'g', 'i', 'n', 'e', ' ', 'b', 'r', 'i',
                                  'd', 'g', 'e', '!'};

#define STATE_MAGIC 0x56455452u       /* "RTEV" little-endian */
#define STATE_VERSION 1u
#define kLatencyChanged (1 << 3)
#define kParamValuesChanged (1 << 2)
#define kParamTitlesChanged (1 << 4)
#define kMidiCCAssignmentChanged (1 << 5)
#define kIsHidden (1 << 4)               /* ParameterInfo flag */
#define NCTRL (16 * RTB_CTRLS)           /* MIDI controllers: 16 channels */
#define SPK_MONO (1ull << 19)
#define SPK_STEREO 3ull

/* ---- host-side interfaces we call ---------------------------------------------- */
typedef struct FUnknownVtbl {
    tresult (*queryInterface)(void *, const TUID, void **);
    uint32_t (*addRef)(void *);
    uint32_t (*release)(void *);
} FUnknownVtbl;
typedef struct { const FUnknownVtbl *v; } FUnknown;

typedef struct IBStreamVtbl {
    FUnknownVtbl u;
    tresult (*read)(void *, void *, int32_t, int32_t *);
    tresult (*write)(void *, void *, int32_t, int32_t *);
    tresult (*seek)(void *, int64_t, int32_t, int64_t *);
    tresult (*tell)(void *, int64_t *);
} IBStreamVtbl;
typedef struct { const IBStreamVtbl *v; } IBStream;

typedef struct IParamValueQueueVtbl {
    FUnknownVtbl u;
    uint32_t (*getParameterId)(void *);
    int32_t (*getPointCount)(void *);
    tresult (*getPoint)(void *, int32_t, int32_t *, double *);
    tresult (*addPoint)(void *, int32_t, double, int32_t *);
} IParamValueQueueVtbl;
typedef struct { const IParamValueQueueVtbl *v; } IParamValueQueue;

typedef struct IParameterChangesVtbl {
    FUnknownVtbl u;
    int32_t (*getParameterCount)(void *);
    IParamValueQueue *(*getParameterData)(void *, int32_t);
    IParamValueQueue *(*addParameterData)(void *, const uint32_t *, int32_t *);
} IParameterChangesVtbl;
typedef struct { const IParameterChangesVtbl *v; } IParameterChanges;

/* Event (ivstevents.h): natural alignment, the union at 24, 48 bytes */
typedef struct {
    int32_t busIndex, sampleOffset;
    double ppqPosition;
    uint16_t flags, type;
    union {
        struct { int16_t channel, pitch; float tuning, velocity; int32_t length, noteId; } on;
        struct { int16_t channel, pitch; float velocity; int32_t noteId; float tuning; } off;
        struct { int16_t channel, pitch; float pressure; int32_t noteId; } poly;
        struct { uint32_t size, type; const uint8_t *bytes; } data;   /* 8-aligned */
        uint8_t raw[24];
    } u;
} Event;
enum { kNoteOnEvent = 0, kNoteOffEvent = 1, kPolyPressureEvent = 3 };

typedef struct IEventListVtbl {
    FUnknownVtbl u;
    int32_t (*getEventCount)(void *);
    tresult (*getEvent)(void *, int32_t, Event *);
    tresult (*addEvent)(void *, Event *);
} IEventListVtbl;
typedef struct { const IEventListVtbl *v; } IEventList;

typedef struct IComponentHandlerVtbl {
    FUnknownVtbl u;
    tresult (*beginEdit)(void *, uint32_t);
    tresult (*performEdit)(void *, uint32_t, double);
    tresult (*endEdit)(void *, uint32_t);
    tresult (*restartComponent)(void *, int32_t);
} IComponentHandlerVtbl;
typedef struct { const IComponentHandlerVtbl *v; } IComponentHandler;

/* ---- structs of the interface -------------------------------------------------- */
typedef struct { int32_t processMode, symbolicSampleSize, maxSamplesPerBlock; double sampleRate; }
    ProcessSetup;
typedef struct { int32_t numChannels; uint64_t silenceFlags; void **buffers; } AudioBusBuffers;
typedef struct {
    int32_t processMode, symbolicSampleSize, numSamples, numInputs, numOutputs;
    AudioBusBuffers *inputs, *outputs;
    IParameterChanges *inputParameterChanges, *outputParameterChanges;
    void *inputEvents, *outputEvents, *processContext;
} ProcessData;
typedef struct {
    int32_t mediaType, direction, channelCount;
    String128 name;
    int32_t busType;
    uint32_t flags;
} BusInfo;
typedef struct {
    uint32_t id;
    String128 title, shortTitle, units;
    int32_t stepCount;
    double defaultNormalizedValue;
    int32_t unitId;
    int32_t flags;
} ParameterInfo;
typedef struct { char vendor[64], url[256], email[128]; int32_t flags; } PFactoryInfo;
typedef struct { TUID cid; int32_t cardinality; char category[32], name[64]; } PClassInfo;
typedef struct {
    TUID cid; int32_t cardinality; char category[32], name[64];
    uint32_t classFlags; char subCategories[128], vendor[64], version[64], sdkVersion[64];
} PClassInfo2;
typedef struct {
    TUID cid; int32_t cardinality; char category[32]; char16 name[64];
    uint32_t classFlags; char subCategories[128]; char16 vendor[64], version[64], sdkVersion[64];
} PClassInfoW;

_Static_assert(sizeof(ProcessSetup) == 24, "ProcessSetup");
_Static_assert(sizeof(Event) == 48 && offsetof(Event, u) == 24, "Event");
_Static_assert(sizeof(AudioBusBuffers) == 24, "AudioBusBuffers");
_Static_assert(sizeof(ProcessData) == 80, "ProcessData");
_Static_assert(sizeof(BusInfo) == 276, "BusInfo");
_Static_assert(sizeof(ParameterInfo) == 792, "ParameterInfo");
_Static_assert(sizeof(PFactoryInfo) == 452, "PFactoryInfo");
_Static_assert(sizeof(PClassInfo) == 116, "PClassInfo");
_Static_assert(sizeof(PClassInfo2) == 440, "PClassInfo2");
_Static_assert(sizeof(PClassInfoW) == 696, "PClassInfoW");
_Static_assert(offsetof(PClassInfo2, category) == offsetof(PClassInfo, category) &&
               offsetof(PClassInfoW, category) == offsetof(PClassInfo, category),
               "class infos share their head");

/* ---- the plugin object ----------------------------------------------------------- */
typedef struct Plugin {
    const void *vt_component;         /* FUnknown, IPluginBase, IComponent */
    const void *vt_processor;         /* IAudioProcessor */
    const void *vt_controller;        /* IEditController */
    const void *vt_midimap;           /* IMidiMapping */
    uint32_t refs;
    int32_t inits;
    pthread_mutex_t lock;             /* control-thread state (never taken by process) */
    IComponentHandler *handler;
    rtb_client *volatile client;      /* published to the audio thread when connected */
    pthread_t manager;
    int32_t manager_running, stop;
    double sample_rate;
    int32_t max_block, channels, process_mode, active;
    int32_t fresh;                    /* activated since the last processed block */
    int32_t pending_restart;          /* restartComponent flags not yet announced */
    int32_t in_process;               /* process() calls running now */
    int32_t latency;                  /* reported to the host */
    int32_t nparams;
    rtb_param params[RTB_MAX_PARAMS]; /* the lane's table, copied on (re)configuration */
    double norm[RTB_MAX_PARAMS];      /* one value store: normalized values */
    uint32_t dirty[RTB_MAX_PARAMS];   /* set by setParamNormalized, sent by process */
    char chain[RTB_STATE_MAX];        /* the chain text this instance runs */
    int32_t chain_len;
    char bridge_name[64];
    rtb_change changes[RTB_MAX_CHANGES];
    rtb_midi midi[RTB_MAX_MIDI];      /* the block's MIDI for the engine's MIDI map */
    uint32_t values_seen;             /* the lane's values_seq last told to the host */
    /* MIDI controllers (CC, pitch bend) reach a VST3 plugin only as parameters
     * the host maps them to (IMidiMapping): one hidden parameter for each
     * controller the engine's MIDI map listens to, turned back into MIDI */
    uint32_t ctrl_bits[RTB_CTRL_WORDS];
    int32_t nproxy;
    uint16_t proxy[NCTRL];            /* their controller codes, ch * RTB_CTRLS + ctrl */
    double proxy_norm[NCTRL];         /* by code */
    uint32_t proxy_dirty[NCTRL];      /* set in a 0-sample block, sent with the next */
    rtb_midi cmidi[RTB_MAX_MIDI];     /* the block's controller MIDI */
} Plugin;

#define FROM(field, p) ((Plugin *)((char *)(p) - offsetof(Plugin, field)))

/* ---- helpers ------------------------------------------------------------------------ */
static int debug_on(void)
{
    static int on = -1;
    if (on < 0) on = getenv("RTENGINE_VST3_DEBUG") != NULL;
    return on;
}
#define DBG(...) do { if (debug_on()) fprintf(stderr, "rtengine VST3: " __VA_ARGS__); } while (0)

static void to16(char16 *dst, const char *src, int cap)
{
    int i = 0;
    for (; src && src[i] && i < cap - 1; i++) dst[i] = (unsigned char)src[i];
    dst[i] = 0;
}

static void from16(char *dst, const char16 *src, int cap)
{
    int i = 0;
    for (; src && src[i] && i < cap - 1; i++) dst[i] = src[i] < 128 ? (char)src[i] : '?';
    dst[i] = 0;
}

static double to_plain(const rtb_param *p, double x)
{
    if (x < 0) x = 0;
    if (x > 1) x = 1;
    double v = (p->flags & RTB_PARAM_LOG) && p->min > 0 ? p->min * pow(p->max / p->min, x)
                                                         : p->min + x * (p->max - p->min);
    if (p->steps > 0) v = nearbyint(v);
    return v;
}

static double to_norm(const rtb_param *p, double v)
{
    if (p->max == p->min) return 0.0;
    if (v < p->min) v = p->min;
    if (v > p->max) v = p->max;
    if ((p->flags & RTB_PARAM_LOG) && p->min > 0) return log(v / p->min) / log(p->max / p->min);
    return (v - p->min) / (p->max - p->min);
}

static int find_param(Plugin *pl, uint32_t id)
{
    for (int i = 0; i < pl->nparams; i++)
        if (pl->params[i].id == id) return i;
    return -1;
}

/* Copy the lane's parameter table and values (control thread).  With keep,
 * parameters that are still there keep this instance's values (a host may
 * have set them since they were last sent). */
static int take_table(Plugin *pl, rtb_lane *l, int keep)
{
    int n = l->nparams;
    if (n < 0 || n > RTB_MAX_PARAMS) n = 0;
    for (int i = 0; i < n; i++) {
        if (keep && i < pl->nparams && pl->params[i].id == l->params[i].id) {
            pl->params[i] = l->params[i];
            continue;
        }
        pl->params[i] = l->params[i];
        pl->params[i].key[RTB_TEXT - 1] = pl->params[i].name[RTB_TEXT - 1] = 0;
        pl->params[i].unit[RTB_TEXT - 1] = pl->params[i].choices[RTB_MSG - 1] = 0;
        pl->norm[i] = to_norm(&pl->params[i], l->values[i]);
        pl->dirty[i] = 0;
    }
    pl->nparams = n;
    pl->values_seen = __atomic_load_n(&l->values_seq, __ATOMIC_ACQUIRE);
    int changed = 0, m = 0;
    for (int w = 0; w < RTB_CTRL_WORDS; w++) {
        uint32_t b = l->midi_ctrl[w];
        if (w == RTB_CTRL_WORDS - 1) b &= (1u << (NCTRL - 32 * w)) - 1u;   /* no stray bits */
        if (b != pl->ctrl_bits[w]) changed = 1;
        pl->ctrl_bits[w] = b;
    }
    for (int code = 0; code < NCTRL; code++) {
        if (!((pl->ctrl_bits[code >> 5] >> (code & 31)) & 1u)) continue;
        pl->proxy[m++] = (uint16_t)code;
        if (changed) {
            pl->proxy_norm[code] = code % RTB_CTRLS == 129 ? 8192.0 / 16383.0 : 0.0;
            pl->proxy_dirty[code] = 0;
        }
    }
    pl->nproxy = m;
    return changed;
}

/* The controller code of a MIDI controller parameter the map listens to, else -1. */
static int proxy_code(const Plugin *pl, uint32_t id)
{
    if (id < RTB_PROXY_BASE || id >= (uint32_t)RTB_PROXY_BASE + NCTRL) return -1;
    uint32_t code = id - RTB_PROXY_BASE;
    return (pl->ctrl_bits[code >> 5] >> (code & 31)) & 1u ? (int)code : -1;
}

static int proxy_steps(int code) { return code % RTB_CTRLS == 129 ? 16383 : 127; }

/* A controller's normalized value as the MIDI message it stands for. */
static void proxy_midi(rtb_midi *o, int code, double x, int32_t offset)
{
    const int ch = code / RTB_CTRLS, ctrl = code % RTB_CTRLS;
    x = x < 0 ? 0 : x > 1 ? 1 : x;
    long v = lrint(x * proxy_steps(code));
    o->offset = offset;
    if (ctrl == 129) {                           /* pitch bend: 14 bits, LSB first */
        o->size = 3;
        o->data[0] = (uint8_t)(0xE0 | ch), o->data[1] = (uint8_t)(v & 0x7F);
        o->data[2] = (uint8_t)(v >> 7);
    } else if (ctrl == 128) {                    /* channel pressure */
        o->size = 2;
        o->data[0] = (uint8_t)(0xD0 | ch), o->data[1] = (uint8_t)v, o->data[2] = 0;
    } else {
        o->size = 3;
        o->data[0] = (uint8_t)(0xB0 | ch), o->data[1] = (uint8_t)ctrl, o->data[2] = (uint8_t)v;
    }
}

static void restart(Plugin *pl, int32_t flags)
{
    IComponentHandler *h = pl->handler;
    if (h) h->v->restartComponent(h, flags);
}

/* Connect (if needed), claim a lane for the current set-up and run the chain.
 * Control or manager thread, with pl->lock held.  0 on success. */
static int connect_and_configure(Plugin *pl, int keep, char *err, int errlen)
{
    rtb_client *c = pl->client;
    if (!c) {
        c = rtb_client_open(pl->bridge_name, err, errlen);
        if (!c) return -1;
    }
    if (rtb_client_claim(c, pl->sample_rate, pl->max_block, pl->channels, err, errlen) < 0 ||
        rtb_client_configure(c, pl->chain, pl->chain_len, 5000, err, errlen) != 0) {
        DBG("connect: %s\n", err);
        if (!pl->client) rtb_client_close(c);
        return -1;
    }
    rtb_lane *l = rtb_client_lane(c);
    int old_latency = pl->latency, old_n = pl->nparams + pl->nproxy;
    int ctrls = take_table(pl, l, keep);
    pl->latency = l->latency;
    __atomic_store_n(&pl->client, c, __ATOMIC_RELEASE);
    /* restartComponent is for the host's main thread: this runs in set-up calls
     * and on the manager thread, so the change is announced at the next state
     * call instead (hosts read the latency again after set-up anyway) */
    int flags = kParamValuesChanged;
    if (pl->latency != old_latency) flags |= kLatencyChanged;
    if (ctrls) flags |= kMidiCCAssignmentChanged | kParamTitlesChanged;
    if (old_n != pl->nparams + pl->nproxy || old_latency != pl->latency || ctrls)
        __atomic_or_fetch(&pl->pending_restart, flags, __ATOMIC_ACQ_REL);
    return 0;
}

static void *manager_main(void *arg)
{
    Plugin *pl = arg;
    while (!__atomic_load_n(&pl->stop, __ATOMIC_ACQUIRE)) {
        for (int i = 0; i < 10 && !__atomic_load_n(&pl->stop, __ATOMIC_ACQUIRE); i++)
            usleep(50000);
        if (__atomic_load_n(&pl->client, __ATOMIC_ACQUIRE)) continue;
        char err[256];
        pthread_mutex_lock(&pl->lock);
        if (!pl->client) connect_and_configure(pl, 1, err, sizeof err);
        pthread_mutex_unlock(&pl->lock);
    }
    return NULL;
}

/* ---- FUnknown (shared by the three interfaces) --------------------------------------- */
static tresult qi_plugin(Plugin *pl, const TUID iid, void **obj)
{
    if (!obj) return kInvalidArgument;
    void *r = NULL;
    if (!memcmp(iid, IID_FUnknown, 16) || !memcmp(iid, IID_IPluginBase, 16) ||
        !memcmp(iid, IID_IComponent, 16))
        r = &pl->vt_component;
    else if (!memcmp(iid, IID_IAudioProcessor, 16))
        r = &pl->vt_processor;
    else if (!memcmp(iid, IID_IEditController, 16))
        r = &pl->vt_controller;
    else if (!memcmp(iid, IID_IMidiMapping, 16))
        r = &pl->vt_midimap;
    *obj = r;
    if (!r) return kNoInterface;
    __atomic_add_fetch(&pl->refs, 1, __ATOMIC_ACQ_REL);
    return kResultOk;
}

static void plugin_free(Plugin *pl)
{
    if (pl->manager_running) {
        __atomic_store_n(&pl->stop, 1, __ATOMIC_RELEASE);
        pthread_join(pl->manager, NULL);
    }
    if (pl->client) rtb_client_close(pl->client);
    if (pl->handler) pl->handler->v->u.release(pl->handler);
    pthread_mutex_destroy(&pl->lock);
    free(pl);
}

static uint32_t release_plugin(Plugin *pl)
{
    uint32_t n = __atomic_sub_fetch(&pl->refs, 1, __ATOMIC_ACQ_REL);
    if (n == 0) plugin_free(pl);
    return n;
}

#define UNKNOWN(prefix, field) \
    static tresult API prefix##_qi(void *s, const TUID iid, void **o) \
    { return qi_plugin(FROM(field, s), iid, o); } \
    static uint32_t API prefix##_addref(void *s) \
    { return __atomic_add_fetch(&FROM(field, s)->refs, 1, __ATOMIC_ACQ_REL); } \
    static uint32_t API prefix##_release(void *s) { return release_plugin(FROM(field, s)); }

UNKNOWN(comp, vt_component)
UNKNOWN(proc, vt_processor)
UNKNOWN(ctrl, vt_controller)
UNKNOWN(mm, vt_midimap)

/* ---- IPluginBase (component and controller share it) --------------------------------- */
static tresult initialize_common(Plugin *pl)
{
    if (pl->inits++ > 0) return kResultOk;     /* hosts initialize a single component twice */
    pl->sample_rate = 48000;
    pl->max_block = 4096;
    pl->channels = 2;
    const char *name = getenv("RTENGINE_BRIDGE");
    snprintf(pl->bridge_name, sizeof pl->bridge_name, "%s", name && *name ? name : "default");
    char err[256];
    pthread_mutex_lock(&pl->lock);
    connect_and_configure(pl, 0, err, sizeof err);  /* no engine yet: the manager retries */
    pthread_mutex_unlock(&pl->lock);
    pl->stop = 0;
    if (pthread_create(&pl->manager, NULL, manager_main, pl) == 0) pl->manager_running = 1;
    return kResultOk;
}

static tresult terminate_common(Plugin *pl)
{
    if (pl->inits > 0 && --pl->inits > 0) return kResultOk;
    if (pl->manager_running) {
        __atomic_store_n(&pl->stop, 1, __ATOMIC_RELEASE);
        pthread_join(pl->manager, NULL);
        pl->manager_running = 0;
    }
    rtb_client *c = pl->client;
    __atomic_store_n(&pl->client, NULL, __ATOMIC_SEQ_CST);
    /* a host may still be inside process() on its audio thread: let it leave
     * before the client's memory goes (it finishes within its timeout) */
    for (int i = 0; i < 5000 && __atomic_load_n(&pl->in_process, __ATOMIC_SEQ_CST); i++)
        usleep(1000);
    if (c) rtb_client_close(c);
    /* as the SDK's controller does: the host's handler is released at terminate
     * (some hosts free it right after, before releasing the plugin) */
    IComponentHandler *h = pl->handler;
    pl->handler = NULL;
    if (h) h->v->u.release(h);
    return kResultOk;
}

static tresult API comp_initialize(void *s, FUnknown *ctx)
{ (void)ctx; return initialize_common(FROM(vt_component, s)); }
static tresult API comp_terminate(void *s) { return terminate_common(FROM(vt_component, s)); }
static tresult API ctrl_initialize(void *s, FUnknown *ctx)
{ (void)ctx; return initialize_common(FROM(vt_controller, s)); }
static tresult API ctrl_terminate(void *s) { return terminate_common(FROM(vt_controller, s)); }

/* ---- state ------------------------------------------------------------------------------ */
static int stream_read_all(IBStream *st, void *dst, int32_t n)
{
    int32_t got = 0;
    while (got < n) {
        int32_t r = 0;
        if (st->v->read(st, (char *)dst + got, n - got, &r) != kResultOk || r <= 0) return -1;
        got += r;
    }
    return 0;
}

static int stream_write_all(IBStream *st, const void *src, int32_t n)
{
    int32_t put = 0;
    while (put < n) {
        int32_t w = 0;
        if (st->v->write(st, (char *)src + put, n - put, &w) != kResultOk || w <= 0) return -1;
        put += w;
    }
    return 0;
}

/* The blob: magic, version, length, then the chain text (TOML with every value). */
static void announce(Plugin *pl, int32_t more)
{
    int32_t flags = __atomic_exchange_n(&pl->pending_restart, 0, __ATOMIC_ACQ_REL) | more;
    if (flags) restart(pl, flags);
}

static tresult get_state(Plugin *pl, IBStream *st)
{
    if (!st) return kInvalidArgument;
    announce(pl, 0);
    pthread_mutex_lock(&pl->lock);
    rtb_client *c = pl->client;
    if (c && rtb_client_ready(c)) {
        int32_t n = rtb_client_get_state(c, pl->chain, RTB_STATE_MAX, 2000);
        if (n >= 0) pl->chain_len = n;
    }
    uint32_t hdr[3] = {STATE_MAGIC, STATE_VERSION, (uint32_t)pl->chain_len};
    int bad = stream_write_all(st, hdr, sizeof hdr) || stream_write_all(st, pl->chain, pl->chain_len);
    pthread_mutex_unlock(&pl->lock);
    return bad ? kResultFalse : kResultOk;
}

static tresult set_state(Plugin *pl, IBStream *st)
{
    if (!st) return kInvalidArgument;
    uint32_t hdr[3];
    if (stream_read_all(st, hdr, sizeof hdr) || hdr[0] != STATE_MAGIC || hdr[1] != STATE_VERSION ||
        hdr[2] >= RTB_STATE_MAX) {
        fprintf(stderr, "rtengine VST3: refusing a state that is not rtengine's (bad magic, "
                "version or size)\n");
        return kResultFalse;
    }
    char *text = malloc(hdr[2] + 1);
    if (!text) return kResultFalse;
    if (hdr[2] && stream_read_all(st, text, (int32_t)hdr[2])) {
        fprintf(stderr, "rtengine VST3: refusing a truncated state\n");
        free(text);
        return kResultFalse;
    }
    text[hdr[2]] = 0;
    if (memchr(text, 0, hdr[2])) {
        fprintf(stderr, "rtengine VST3: refusing a state with binary data in its chain text\n");
        free(text);
        return kResultFalse;
    }
    pthread_mutex_lock(&pl->lock);
    tresult res = kResultOk;
    rtb_client *c = pl->client;
    if (c) {
        char err[RTB_MSG];
        if (rtb_client_configure(c, text, (int32_t)hdr[2], 5000, err, sizeof err) != 0) {
            fprintf(stderr, "rtengine VST3: the engine refused the saved chain: %s\n", err);
            /* the running chain stays; configure the lane back to it */
            rtb_client_configure(c, pl->chain, pl->chain_len, 5000, err, sizeof err);
            res = kResultFalse;
        }
    }
    if (res == kResultOk) {
        memcpy(pl->chain, text, hdr[2]);
        pl->chain[hdr[2]] = 0;
        pl->chain_len = (int32_t)hdr[2];
        if (c) {
            int old_latency = pl->latency;
            int ctrls = take_table(pl, rtb_client_lane(c), 0);
            pl->latency = rtb_client_lane(c)->latency;
            announce(pl, kParamValuesChanged | (old_latency != pl->latency ? kLatencyChanged : 0) |
                         (ctrls ? kMidiCCAssignmentChanged | kParamTitlesChanged : 0));
        }
    }
    pthread_mutex_unlock(&pl->lock);
    free(text);
    return res;
}

/* ---- IComponent ----------------------------------------------------------------------------- */
static tresult API comp_get_controller_cid(void *s, TUID cid)
{ (void)s; memcpy(cid, CID_rtengine, 16); return kResultOk; }
static tresult API comp_set_io_mode(void *s, int32_t m) { (void)s; (void)m; return kResultOk; }
/* one audio bus each way, and a MIDI input (16 channels) whose notes reach the
 * engine's MIDI map (rtengine serve --midi-map) */
static int32_t API comp_get_bus_count(void *s, int32_t type, int32_t dir)
{ (void)s; return type == 0 || (type == 1 && dir == 0) ? 1 : 0; }

static tresult API comp_get_bus_info(void *s, int32_t type, int32_t dir, int32_t i, BusInfo *b)
{
    Plugin *pl = FROM(vt_component, s);
    if (type == 1 && dir == 0 && i == 0 && b) {
        memset(b, 0, sizeof *b);
        b->mediaType = 1;
        b->direction = 0;
        b->channelCount = 16;
        to16(b->name, "MIDI In", 128);
        b->busType = 0;
        b->flags = 1;
        return kResultOk;
    }
    if (type != 0 || i != 0 || !b) return kInvalidArgument;
    memset(b, 0, sizeof *b);
    b->mediaType = 0;
    b->direction = dir;
    b->channelCount = pl->channels;
    to16(b->name, dir == 0 ? "Input" : "Output", 128);
    b->busType = 0;
    b->flags = 1;
    return kResultOk;
}

static tresult API comp_get_routing(void *s, void *a, void *b)
{ (void)s; (void)a; (void)b; return kNotImplemented; }
static tresult API comp_activate_bus(void *s, int32_t t, int32_t d, int32_t i, uint8_t on)
{ (void)s; (void)t; (void)d; (void)i; (void)on; return kResultOk; }

/* Activation starts processing from a clean state: the engine builds a fresh
 * chain with this instance's current values (hosts reset a plugin this way). */
static tresult API comp_set_active(void *s, uint8_t on)
{
    Plugin *pl = FROM(vt_component, s);
    pl->active = on;
    DBG("setActive(%d) ready %d\n", on, pl->client ? rtb_client_ready(pl->client) : -1);
    if (!on) return kResultOk;
    pthread_mutex_lock(&pl->lock);
    rtb_client *c = pl->client;
    if (c && rtb_client_ready(c)) {
        double plain[RTB_MAX_PARAMS];
        for (int i = 0; i < pl->nparams; i++) {
            plain[i] = to_plain(&pl->params[i], pl->norm[i]);
            __atomic_store_n(&pl->dirty[i], 0, __ATOMIC_RELEASE);
        }
        int rr = rtb_client_reset(c, plain, pl->nparams, 2000);
        __atomic_store_n(&pl->fresh, 1, __ATOMIC_RELEASE);
        DBG("reset -> %d (n %d; p47 %g p48 %g)\n", rr, pl->nparams,
            pl->nparams > 48 ? plain[47] : 0.0, pl->nparams > 48 ? plain[48] : 0.0);
    }
    pthread_mutex_unlock(&pl->lock);
    return kResultOk;
}

static tresult API comp_set_state(void *s, IBStream *st) { return set_state(FROM(vt_component, s), st); }
static tresult API comp_get_state(void *s, IBStream *st) { return get_state(FROM(vt_component, s), st); }

/* ---- IAudioProcessor --------------------------------------------------------------------------- */
static tresult API proc_set_arrangements(void *s, uint64_t *in, int32_t nin, uint64_t *out,
                                         int32_t nout)
{
    Plugin *pl = FROM(vt_processor, s);
    if (nin != 1 || nout != 1 || !in || !out || in[0] != out[0]) return kResultFalse;
    int ch = in[0] == SPK_STEREO ? 2 : in[0] == SPK_MONO ? 1 : 0;
    if (!ch) return kResultFalse;
    if (ch != pl->channels) {
        pthread_mutex_lock(&pl->lock);
        pl->channels = ch;
        if (pl->client) {
            char err[256];
            connect_and_configure(pl, 1, err, sizeof err);
        }
        pthread_mutex_unlock(&pl->lock);
    }
    return kResultOk;
}

static tresult API proc_get_arrangement(void *s, int32_t dir, int32_t i, uint64_t *arr)
{
    Plugin *pl = FROM(vt_processor, s);
    (void)dir;
    if (i != 0 || !arr) return kInvalidArgument;
    *arr = pl->channels == 1 ? SPK_MONO : SPK_STEREO;
    return kResultOk;
}

static tresult API proc_can_sample_size(void *s, int32_t size)
{ (void)s; return size == 0 ? kResultOk : kResultFalse; }     /* 32-bit float only */
static uint32_t API proc_get_latency(void *s) { return (uint32_t)FROM(vt_processor, s)->latency; }

static tresult API proc_setup(void *s, ProcessSetup *setup)
{
    Plugin *pl = FROM(vt_processor, s);
    if (!setup || setup->symbolicSampleSize != 0 || !(setup->sampleRate > 0)) return kResultFalse;
    DBG("setupProcessing(%g Hz, %d frames, mode %d)\n", setup->sampleRate,
        setup->maxSamplesPerBlock, setup->processMode);
    pthread_mutex_lock(&pl->lock);
    int changed = setup->sampleRate != pl->sample_rate || setup->maxSamplesPerBlock != pl->max_block;
    pl->sample_rate = setup->sampleRate;
    pl->max_block = setup->maxSamplesPerBlock > 0 ? setup->maxSamplesPerBlock : 4096;
    pl->process_mode = setup->processMode;
    if (!pl->client) {                          /* no engine at initialize: try again */
        char err[256];
        connect_and_configure(pl, 1, err, sizeof err);
    } else if (changed) {
        char err[256];
        rtb_client *c = pl->client;
        if (rtb_client_ready(c)) {
            int32_t n = rtb_client_get_state(c, pl->chain, RTB_STATE_MAX, 2000);
            if (n >= 0) pl->chain_len = n;      /* keep the current values */
        }
        connect_and_configure(pl, 1, err, sizeof err);
    }
    pthread_mutex_unlock(&pl->lock);
    return kResultOk;
}

static tresult API proc_set_processing(void *s, uint8_t on) { (void)s; (void)on; return kResultOk; }

static int cmp_change(const void *a, const void *b)
{
    return ((const rtb_change *)a)->offset - ((const rtb_change *)b)->offset;
}

static tresult process_block(Plugin *pl, ProcessData *d);

static tresult API proc_process(void *s, ProcessData *d)
{
    Plugin *pl = FROM(vt_processor, s);
    __atomic_add_fetch(&pl->in_process, 1, __ATOMIC_SEQ_CST);
    tresult r = process_block(pl, d);
    __atomic_sub_fetch(&pl->in_process, 1, __ATOMIC_SEQ_CST);
    return r;
}

/* The host's note events as MIDI bytes at their sample offsets (VST3 gives
 * controllers to plugins as parameters, not events). */
static int32_t take_events(Plugin *pl, ProcessData *d, int32_t n)
{
    IEventList *ev = d->inputEvents;
    if (!ev || n <= 0) return 0;
    int32_t count = ev->v->getEventCount(ev), m = 0;
    for (int32_t i = 0; i < count && m < RTB_MAX_MIDI; i++) {
        Event e;
        memset(&e, 0, sizeof e);
        if (ev->v->getEvent(ev, i, &e) != kResultOk || e.busIndex != 0) continue;
        int ch, key, status;
        float amount;
        if (e.type == kNoteOnEvent) {
            ch = e.u.on.channel, key = e.u.on.pitch, amount = e.u.on.velocity, status = 0x90;
        } else if (e.type == kNoteOffEvent) {
            ch = e.u.off.channel, key = e.u.off.pitch, amount = e.u.off.velocity, status = 0x80;
        } else if (e.type == kPolyPressureEvent) {
            ch = e.u.poly.channel, key = e.u.poly.pitch, amount = e.u.poly.pressure, status = 0xA0;
        } else {
            continue;
        }
        if (ch < 0 || ch > 15 || key < 0 || key > 127 || !isfinite(amount)) continue;
        int v = (int)lrintf((amount < 0 ? 0 : amount > 1 ? 1 : amount) * 127.0f);
        if (status == 0x90 && v == 0) v = 1;          /* velocity 0 would mean note off */
        rtb_midi *o = &pl->midi[m++];
        o->offset = e.sampleOffset < 0 ? 0 : e.sampleOffset >= n ? n - 1 : e.sampleOffset;
        o->size = 3;
        o->data[0] = (uint8_t)(status | ch);
        o->data[1] = (uint8_t)key;
        o->data[2] = (uint8_t)v;
    }
    return m;
}

/* Values the engine's MIDI map moved: into this instance's value store and out
 * to the host as parameter changes, so its automation lanes and knobs follow. */
static void values_to_host(Plugin *pl, rtb_client *c, ProcessData *d)
{
    rtb_lane *l = rtb_client_lane(c);
    if (!l) return;
    uint32_t seq = __atomic_load_n(&l->values_seq, __ATOMIC_ACQUIRE);
    uint32_t since = seq - pl->values_seen;
    if (!since) return;
    IParameterChanges *oc = d->outputParameterChanges;
    int n = l->nparams < pl->nparams ? l->nparams : pl->nparams;
    if (n < 0) n = 0;
    for (int k = 0; k < n; k++) {
        if (seq - l->moved[k] >= since) continue;     /* not moved since last time */
        double v = to_norm(&pl->params[k], l->values[k]);
        if (!isfinite(v)) continue;
        pl->norm[k] = v;
        if (!oc) continue;
        int32_t qi = 0, pi = 0;
        IParamValueQueue *q = oc->v->addParameterData(oc, &pl->params[k].id, &qi);
        if (q) q->v->addPoint(q, 0, v, &pi);
    }
    pl->values_seen = seq;
}

/* Point k of a host's queue for a block of n samples: 0 if unreadable or not
 * finite, else 1 with the value clamped to [0, 1] and the offset into the block. */
static int queue_point(IParamValueQueue *vq, int32_t k, int32_t n, int32_t *off, double *v)
{
    if (vq->v->getPoint(vq, k, off, v) != kResultOk || !isfinite(*v)) return 0;
    *v = *v < 0 ? 0 : *v > 1 ? 1 : *v;
    *off = *off < 0 || n <= 0 ? 0 : *off >= n ? n - 1 : *off;
    return 1;
}

/* A MIDI controller's points from the host as MIDI messages at their offsets
 * (in a 0-sample block its last value waits for the next block). */
static int32_t take_controller(Plugin *pl, IParamValueQueue *vq, int code, int32_t n, int32_t m)
{
    int32_t np = vq->v->getPointCount(vq);
    for (int32_t k = 0; k < np; k++) {
        int32_t off = 0;
        double v = 0;
        if (!queue_point(vq, k, n, &off, &v)) continue;
        pl->proxy_norm[code] = v;
        pl->proxy_dirty[code] = n <= 0;
        if (n > 0 && m < RTB_MAX_MIDI) proxy_midi(&pl->cmidi[m++], code, v, off);
    }
    return m;
}

/* The block's note events and controller messages in one list, in time order
 * (stable: at one offset, notes first, controllers in the host's order). */
static int32_t merge_midi(Plugin *pl, int32_t nnotes, int32_t ncm)
{
    int32_t m = nnotes;
    for (int32_t i = 0; i < ncm && m < RTB_MAX_MIDI; i++) {
        rtb_midi e = pl->cmidi[i];
        int32_t j = m++;
        while (j > 0 && pl->midi[j - 1].offset > e.offset) { pl->midi[j] = pl->midi[j - 1]; j--; }
        pl->midi[j] = e;
    }
    return m;
}

static tresult process_block(Plugin *pl, ProcessData *d)
{
    if (!d) return kInvalidArgument;
    const int32_t n = d->numSamples;
    int nchg = 0;
    int32_t ncm = 0;                             /* controller MIDI in pl->cmidi */
    /* controller values a 0-sample block brought: now, at offset 0 */
    for (int32_t i = 0; i < pl->nproxy && n > 0; i++) {
        int code = pl->proxy[i];
        if (pl->proxy_dirty[code] && ncm < RTB_MAX_MIDI) {
            pl->proxy_dirty[code] = 0;
            proxy_midi(&pl->cmidi[ncm++], code, pl->proxy_norm[code], 0);
        }
    }
    /* parameter changes from the host, at their sample offsets */
    IParameterChanges *pc = d->inputParameterChanges;
    if (pc) {
        int32_t nq = pc->v->getParameterCount(pc);
        for (int32_t q = 0; q < nq; q++) {
            IParamValueQueue *vq = pc->v->getParameterData(pc, q);
            if (!vq) continue;
            uint32_t pid = vq->v->getParameterId(vq);
            int idx = find_param(pl, pid);
            if (idx < 0) {
                int code = proxy_code(pl, pid);
                if (code >= 0) ncm = take_controller(pl, vq, code, n, ncm);
                continue;
            }
            int32_t np = vq->v->getPointCount(vq);
            for (int32_t k = 0; k < np; k++) {
                int32_t off = 0;
                double v = 0;
                if (!queue_point(vq, k, n, &off, &v)) continue;
                pl->norm[idx] = v;
                pl->dirty[idx] = n <= 0;              /* a flush: sent with the next block */
                if (nchg < RTB_MAX_CHANGES && n > 0) {
                    pl->changes[nchg].index = (uint32_t)idx;
                    pl->changes[nchg].offset = off;
                    pl->changes[nchg].value = to_plain(&pl->params[idx], v);
                    nchg++;
                }
            }
        }
    }
    /* values set through setParamNormalized only (no queue): sent at offset 0 */
    for (int i = 0; i < pl->nparams && nchg < RTB_MAX_CHANGES && n > 0; i++) {
        if (!__atomic_exchange_n(&pl->dirty[i], 0, __ATOMIC_ACQ_REL)) continue;
        pl->changes[nchg].index = (uint32_t)i;
        pl->changes[nchg].offset = 0;
        pl->changes[nchg].value = to_plain(&pl->params[i], pl->norm[i]);
        nchg++;
    }
    if (debug_on() && nchg) DBG("process(%d): %d changes, first %u at %d = %g\n", n, nchg,
                                 pl->changes[0].index, pl->changes[0].offset,
                                 pl->changes[0].value);
    if (n <= 0) return kResultOk;               /* a flush: nothing to process */
    if (nchg > 1) qsort(pl->changes, (size_t)nchg, sizeof pl->changes[0], cmp_change);
    /* the first block after activation: values at its start are where playback
     * starts, not a move to ramp to (the engine's state is fresh) */
    if (__atomic_exchange_n(&pl->fresh, 0, __ATOMIC_ACQ_REL))
        for (int i = 0; i < nchg && pl->changes[i].offset == 0; i++)
            pl->changes[i].index |= (uint32_t)RTB_CHANGE_JUMP;
    if (d->numOutputs < 1 || !d->outputs || !d->outputs[0].buffers) return kResultOk;
    float **out = (float **)d->outputs[0].buffers;
    int32_t och = d->outputs[0].numChannels;
    const float *in[RTB_MAX_CH];
    float *o[RTB_MAX_CH];
    int have_in = d->numInputs >= 1 && d->inputs && d->inputs[0].buffers &&
                  d->inputs[0].numChannels >= 1;
    int ch = pl->channels;
    if (och < ch) ch = och;
    if (ch < 1) return kResultOk;
    for (int c = 0; c < ch; c++) {
        o[c] = out[c];
        if (have_in) {
            int ic = c < d->inputs[0].numChannels ? c : d->inputs[0].numChannels - 1;
            in[c] = ((float **)d->inputs[0].buffers)[ic];
        } else {
            memset(out[c], 0, sizeof(float) * (size_t)n);     /* no input: silence in */
            in[c] = out[c];
        }
    }
    rtb_client *c = __atomic_load_n(&pl->client, __ATOMIC_ACQUIRE);
    if (!c || pl->channels != ch) {
        /* no engine (or a bus the lane does not match): the input, unprocessed
         * (the reported latency is then 0 or the last chain's; see README) */
        for (int k = 0; k < ch; k++)
            if (o[k] != in[k]) memmove(o[k], in[k], sizeof(float) * (size_t)n);
        return kResultOk;
    }
    int32_t timeout_us;
    if (d->processMode == 2)                    /* offline: no deadline but the engine's */
        timeout_us = 2000000;
    else {
        double block_us = 1e6 * (double)n / (pl->sample_rate > 0 ? pl->sample_rate : 48000);
        timeout_us = (int32_t)(0.5 * block_us) + 200;
    }
    int32_t nmidi = merge_midi(pl, take_events(pl, d, n), ncm);
    rtb_client_process_midi(c, in, o, n, pl->changes, nchg, pl->midi, nmidi, timeout_us);
    values_to_host(pl, c, d);
    for (int k = ch; k < och; k++) memcpy(out[k], out[0], sizeof(float) * (size_t)n);
    return kResultOk;
}

static uint32_t API proc_get_tail(void *s) { (void)s; return 0; }

/* ---- IEditController ------------------------------------------------------------------------------- */
/* A host that runs the controller as its own instance hands it the component's
 * state so its parameter values follow: the same blob, the same restore. */
static tresult API ctrl_set_component_state(void *s, IBStream *st)
{
    return set_state(FROM(vt_controller, s), st);
}
static tresult API ctrl_set_state(void *s, IBStream *st) { (void)s; (void)st; return kResultOk; }
static tresult API ctrl_get_state(void *s, IBStream *st) { (void)s; (void)st; return kResultOk; }
static int32_t API ctrl_param_count(void *s)
{
    Plugin *pl = FROM(vt_controller, s);
    return pl->nparams + pl->nproxy;
}

static void proxy_info(int code, ParameterInfo *info)
{
    const int ch = code / RTB_CTRLS + 1, ctrl = code % RTB_CTRLS;
    char title[96], short_title[32];
    if (ctrl == 129) {
        snprintf(title, sizeof title, "MIDI pitch bend (channel %d)", ch);
        snprintf(short_title, sizeof short_title, "PB ch%d", ch);
    } else if (ctrl == 128) {
        snprintf(title, sizeof title, "MIDI channel pressure (channel %d)", ch);
        snprintf(short_title, sizeof short_title, "AT ch%d", ch);
    } else {
        snprintf(title, sizeof title, "MIDI CC %d (channel %d)", ctrl, ch);
        snprintf(short_title, sizeof short_title, "CC%d ch%d", ctrl, ch);
    }
    memset(info, 0, sizeof *info);
    info->id = (uint32_t)RTB_PROXY_BASE + (uint32_t)code;
    to16(info->title, title, 128);
    to16(info->shortTitle, short_title, 128);
    info->stepCount = proxy_steps(code);
    info->defaultNormalizedValue = ctrl == 129 ? 8192.0 / 16383.0 : 0.0;
    info->flags = kIsHidden;                    /* MIDI input, not automation */
}

static tresult API ctrl_param_info(void *s, int32_t i, ParameterInfo *info)
{
    Plugin *pl = FROM(vt_controller, s);
    if (info && i >= pl->nparams && i < pl->nparams + pl->nproxy) {
        proxy_info(pl->proxy[i - pl->nparams], info);
        return kResultOk;
    }
    if (i < 0 || i >= pl->nparams || !info) return kInvalidArgument;
    const rtb_param *p = &pl->params[i];
    memset(info, 0, sizeof *info);
    info->id = p->id;
    to16(info->title, p->name, 128);
    to16(info->shortTitle, p->key, 128);
    to16(info->units, p->unit, 128);
    info->stepCount = p->steps;
    info->defaultNormalizedValue = to_norm(p, p->default_value);
    info->unitId = 0;
    info->flags = 1;                            /* kCanAutomate */
    return kResultOk;
}

static void format_value(const rtb_param *p, double v, char *dst, int cap)
{
    if (p->flags & RTB_PARAM_CHOICE) {
        int k = (int)nearbyint(v), i = 0;
        const char *q = p->choices;
        while (i < k && q && *q) { q = strchr(q, '\n'); if (q) q++; i++; }
        int len = 0;
        while (q && q[len] && q[len] != '\n' && len < cap - 1) len++;
        snprintf(dst, (size_t)cap, "%.*s", len, q ? q : "");
        return;
    }
    if (p->flags & RTB_PARAM_TOGGLE) { snprintf(dst, (size_t)cap, "%s", v >= 0.5 ? "On" : "Off"); return; }
    snprintf(dst, (size_t)cap, "%.6g", v);      /* the unit is ParameterInfo.units */
}

static tresult API ctrl_string_by_value(void *s, uint32_t id, double x, String128 out)
{
    Plugin *pl = FROM(vt_controller, s);
    int i = find_param(pl, id), code = i < 0 ? proxy_code(pl, id) : -1;
    if (code >= 0 && out && isfinite(x)) {
        char num[16];
        snprintf(num, sizeof num, "%ld", lrint((x < 0 ? 0 : x > 1 ? 1 : x) * proxy_steps(code)));
        to16(out, num, 128);
        return kResultOk;
    }
    if (i < 0 || !out) return kInvalidArgument;
    char buf[160];
    format_value(&pl->params[i], to_plain(&pl->params[i], x), buf, sizeof buf);
    to16(out, buf, 128);
    return kResultOk;
}

static tresult API ctrl_value_by_string(void *s, uint32_t id, char16 *text, double *x)
{
    Plugin *pl = FROM(vt_controller, s);
    int i = find_param(pl, id), code = i < 0 ? proxy_code(pl, id) : -1;
    if (code >= 0 && text && x) {
        char num[32], *end = NULL;
        from16(num, text, sizeof num);
        long v = strtol(num, &end, 10);
        if (end == num || v < 0 || v > proxy_steps(code)) return kResultFalse;
        *x = (double)v / proxy_steps(code);
        return kResultOk;
    }
    if (i < 0 || !text || !x) return kInvalidArgument;
    const rtb_param *p = &pl->params[i];
    char buf[160];
    from16(buf, text, sizeof buf);
    if (p->flags & RTB_PARAM_TOGGLE) {
        if (!strcasecmp(buf, "on") || !strcmp(buf, "1")) { *x = 1; return kResultOk; }
        if (!strcasecmp(buf, "off") || !strcmp(buf, "0")) { *x = 0; return kResultOk; }
    }
    if (p->flags & RTB_PARAM_CHOICE) {
        const char *q = p->choices;
        for (int k = 0; q && *q; k++) {
            const char *e = strchr(q, '\n');
            size_t len = e ? (size_t)(e - q) : strlen(q);
            if (len == strlen(buf) && !strncmp(q, buf, len)) { *x = to_norm(p, k); return kResultOk; }
            q = e ? e + 1 : NULL;
        }
    }
    char *end = NULL;
    double v = strtod(buf, &end);
    if (end == buf || !isfinite(v)) return kResultFalse;
    *x = to_norm(p, v);
    return kResultOk;
}

static double API ctrl_norm_to_plain(void *s, uint32_t id, double x)
{
    Plugin *pl = FROM(vt_controller, s);
    int i = find_param(pl, id), code = i < 0 ? proxy_code(pl, id) : -1;
    if (code >= 0) return x * proxy_steps(code);
    return i < 0 ? x : to_plain(&pl->params[i], x);
}

static double API ctrl_plain_to_norm(void *s, uint32_t id, double v)
{
    Plugin *pl = FROM(vt_controller, s);
    int i = find_param(pl, id), code = i < 0 ? proxy_code(pl, id) : -1;
    if (code >= 0) return v / proxy_steps(code);
    return i < 0 ? v : to_norm(&pl->params[i], v);
}

static double API ctrl_get_norm(void *s, uint32_t id)
{
    Plugin *pl = FROM(vt_controller, s);
    int i = find_param(pl, id), code = i < 0 ? proxy_code(pl, id) : -1;
    if (code >= 0) return pl->proxy_norm[code];
    return i < 0 ? 0.0 : pl->norm[i];
}

static tresult API ctrl_set_norm(void *s, uint32_t id, double x)
{
    Plugin *pl = FROM(vt_controller, s);
    int i = find_param(pl, id), code = i < 0 ? proxy_code(pl, id) : -1;
    DBG("setParamNormalized(%u -> %d, %g)\n", id, i, x);
    if (code >= 0 && isfinite(x)) {             /* the host's display: MIDI comes in process */
        pl->proxy_norm[code] = x < 0 ? 0 : x > 1 ? 1 : x;
        return kResultOk;
    }
    if (i < 0 || !isfinite(x)) return kInvalidArgument;
    pl->norm[i] = x < 0 ? 0 : x > 1 ? 1 : x;
    __atomic_store_n(&pl->dirty[i], 1, __ATOMIC_RELEASE);
    return kResultOk;
}

static tresult API ctrl_set_handler(void *s, IComponentHandler *h)
{
    Plugin *pl = FROM(vt_controller, s);
    if (h) h->v->u.addRef(h);
    if (pl->handler) pl->handler->v->u.release(pl->handler);
    pl->handler = h;
    return kResultOk;
}

static void *API ctrl_create_view(void *s, const char *name) { (void)s; (void)name; return NULL; }

/* ---- IMidiMapping ------------------------------------------------------------------------ */
static tresult API mm_assignment(void *s, int32_t bus, int16_t channel, int16_t ctrl, uint32_t *id)
{
    Plugin *pl = FROM(vt_midimap, s);
    if (!id || bus != 0 || channel < 0 || channel > 15 || ctrl < 0 || ctrl >= RTB_CTRLS)
        return kResultFalse;
    uint32_t pid = (uint32_t)RTB_PROXY_BASE + (uint32_t)(channel * RTB_CTRLS + ctrl);
    if (proxy_code(pl, pid) < 0) return kResultFalse;
    *id = pid;
    return kResultOk;
}

/* ---- vtables -------------------------------------------------------------------------------------- */
static const void *component_vtbl[] = {
    (void *)comp_qi, (void *)comp_addref, (void *)comp_release,
    (void *)comp_initialize, (void *)comp_terminate,
    (void *)comp_get_controller_cid, (void *)comp_set_io_mode, (void *)comp_get_bus_count,
    (void *)comp_get_bus_info, (void *)comp_get_routing, (void *)comp_activate_bus,
    (void *)comp_set_active, (void *)comp_set_state, (void *)comp_get_state,
};
static const void *processor_vtbl[] = {
    (void *)proc_qi, (void *)proc_addref, (void *)proc_release,
    (void *)proc_set_arrangements, (void *)proc_get_arrangement, (void *)proc_can_sample_size,
    (void *)proc_get_latency, (void *)proc_setup, (void *)proc_set_processing,
    (void *)proc_process, (void *)proc_get_tail,
};
static const void *controller_vtbl[] = {
    (void *)ctrl_qi, (void *)ctrl_addref, (void *)ctrl_release,
    (void *)ctrl_initialize, (void *)ctrl_terminate,
    (void *)ctrl_set_component_state, (void *)ctrl_set_state, (void *)ctrl_get_state,
    (void *)ctrl_param_count, (void *)ctrl_param_info, (void *)ctrl_string_by_value,
    (void *)ctrl_value_by_string, (void *)ctrl_norm_to_plain, (void *)ctrl_plain_to_norm,
    (void *)ctrl_get_norm, (void *)ctrl_set_norm, (void *)ctrl_set_handler,
    (void *)ctrl_create_view,
};

static const void *midimap_vtbl[] = {
    (void *)mm_qi, (void *)mm_addref, (void *)mm_release, (void *)mm_assignment,
};

static Plugin *plugin_new(void)
{
    Plugin *pl = calloc(1, sizeof *pl);
    if (!pl) return NULL;
    pl->vt_component = component_vtbl;
    pl->vt_processor = processor_vtbl;
    pl->vt_controller = controller_vtbl;
    pl->vt_midimap = midimap_vtbl;
    pl->refs = 1;
    pl->channels = 2;
    pthread_mutex_init(&pl->lock, NULL);
    return pl;
}

/* ---- the factory ------------------------------------------------------------------------------------- */
typedef struct { const void *vtbl; } Factory;

static tresult API fac_qi(void *s, const TUID iid, void **o)
{
    if (!o) return kInvalidArgument;
    if (!memcmp(iid, IID_FUnknown, 16) || !memcmp(iid, IID_IPluginFactory, 16) ||
        !memcmp(iid, IID_IPluginFactory2, 16) || !memcmp(iid, IID_IPluginFactory3, 16)) {
        *o = s;
        return kResultOk;
    }
    *o = NULL;
    return kNoInterface;
}
static uint32_t API fac_addref(void *s) { (void)s; return 1; }
static uint32_t API fac_release(void *s) { (void)s; return 1; }

static tresult API fac_info(void *s, PFactoryInfo *i)
{
    (void)s;
    if (!i) return kInvalidArgument;
    memset(i, 0, sizeof *i);
    snprintf(i->vendor, sizeof i->vendor, "rtengine");
    snprintf(i->url, sizeof i->url, "https://example.invalid/rtengine");
    i->flags = 16;                              /* kUnicode */
    return kResultOk;
}
static int32_t API fac_count(void *s) { (void)s; return 1; }

#define VENDOR "rtengine"
#define VERSION "0.1.0"
#define SDK_VERSION "VST 3.7.0"

/* The fields every version of the class info starts with (the v2 and
 * Unicode structs begin with the same cid, cardinality and category). */
static void class_head(void *info, size_t size)
{
    PClassInfo *i = info;
    memset(info, 0, size);
    memcpy(i->cid, CID_rtengine, 16);
    i->cardinality = 0x7FFFFFFF;
    snprintf(i->category, sizeof i->category, "Audio Module Class");
}

static tresult API fac_class_info(void *s, int32_t idx, PClassInfo *i)
{
    (void)s;
    if (idx != 0 || !i) return kInvalidArgument;
    class_head(i, sizeof *i);
    snprintf(i->name, sizeof i->name, "rtengine");
    return kResultOk;
}

static tresult API fac_create(void *s, const TUID cid, const TUID iid, void **o)
{
    (void)s;
    if (!o) return kInvalidArgument;
    *o = NULL;
    if (memcmp(cid, CID_rtengine, 16)) return kNoInterface;
    Plugin *pl = plugin_new();
    if (!pl) return kInternalError;
    tresult r = qi_plugin(pl, iid, o);
    release_plugin(pl);                         /* the host holds the QI reference */
    return r;
}

static tresult API fac_class_info2(void *s, int32_t idx, PClassInfo2 *i)
{
    (void)s;
    if (idx != 0 || !i) return kInvalidArgument;
    class_head(i, sizeof *i);
    snprintf(i->name, sizeof i->name, "rtengine");
    snprintf(i->subCategories, sizeof i->subCategories, "Fx");
    snprintf(i->vendor, sizeof i->vendor, VENDOR);
    snprintf(i->version, sizeof i->version, VERSION);
    snprintf(i->sdkVersion, sizeof i->sdkVersion, SDK_VERSION);
    return kResultOk;
}

static tresult API fac_class_info_w(void *s, int32_t idx, PClassInfoW *i)
{
    (void)s;
    if (idx != 0 || !i) return kInvalidArgument;
    class_head(i, sizeof *i);
    to16(i->name, "rtengine", 64);
    snprintf(i->subCategories, sizeof i->subCategories, "Fx");
    to16(i->vendor, VENDOR, 64);
    to16(i->version, VERSION, 64);
    to16(i->sdkVersion, SDK_VERSION, 64);
    return kResultOk;
}

static tresult API fac_set_host_context(void *s, FUnknown *c) { (void)s; (void)c; return kResultOk; }

static const void *factory_vtbl[] = {
    (void *)fac_qi, (void *)fac_addref, (void *)fac_release,
    (void *)fac_info, (void *)fac_count, (void *)fac_class_info, (void *)fac_create,
    (void *)fac_class_info2, (void *)fac_class_info_w, (void *)fac_set_host_context,
};

static Factory factory = {factory_vtbl};

EXPORT void *GetPluginFactory(void) { return &factory; }
EXPORT _Bool ModuleEntry(void *handle) { (void)handle; return 1; }
EXPORT _Bool ModuleExit(void) { return 1; }
