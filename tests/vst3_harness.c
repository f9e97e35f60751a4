/* A minimal VST3 host for tests/test_vst3.py: it drives the rtengine plugin
 * through calls real hosts make but pedalboard does not (a 0-sample flush with
 * no buffers, 64-bit requests, raw state blobs) and prints one line per check.
 * Usage: vst3_harness path/to/rtengine.so */
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int32_t tresult;
typedef uint8_t TUID[16];

#define IID(a, b, c, d) {(uint8_t)((a) >> 24), (uint8_t)((a) >> 16), (uint8_t)((a) >> 8), \
    (uint8_t)(a), (uint8_t)((b) >> 24), (uint8_t)((b) >> 16), (uint8_t)((b) >> 8), (uint8_t)(b), \
    (uint8_t)((c) >> 24), (uint8_t)((c) >> 16), (uint8_t)((c) >> 8), (uint8_t)(c), \
    (uint8_t)((d) >> 24), (uint8_t)((d) >> 16), (uint8_t)((d) >> 8), (uint8_t)(d)}
static const TUID IID_IComponent = IID(0xE831FF31, 0xF2D54301, 0x928EBBEE, 0x25697802);
static const TUID IID_IAudioProcessor = IID(0x42043F99, 0xB7DA453C, 0xA569E79D, 0x9AAEC33D);

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

static int failures;
static void check(const char *what, int ok)
{
    printf("%s %s\n", ok ? "ok" : "FAIL", what);
    if (!ok) failures++;
}

int main(int argc, char **argv)
{
    if (argc != 2) return 2;
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
    uint32_t n = (uint32_t)strlen(chain);
    uint8_t good[256];
    uint32_t hdr[3] = {0x56455452u, 1u, n};
    memcpy(good, hdr, 12);
    memcpy(good + 12, chain, n);
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
