/* rtengine DSP kernels: the one stage signature shared by the C and numba kernels.
 *
 * A kernel is a pure function over preallocated memory.  It runs on the audio
 * thread: it never allocates, never locks, never calls back into Python.
 *
 *   state    float64 array owned by the processor; its layout is documented per
 *            kernel below and mirrored in kernels/layout.py.  Slot 0 always
 *            holds the sample rate; coefficient design (off the audio thread)
 *            writes into a documented region of it.
 *   io       planar float32 audio, processed in place: channel c, frame i is
 *            io[c * stride + i].
 *   par      per-sample parameter lanes prepared by the runner: parameter k at
 *            frame i is par[k * pstride + i] (already smoothed).
 */
#ifndef RTK_H
#define RTK_H

#include <stdint.h>

typedef void (*rtk_fn)(double *state, float *io, int32_t nch, int32_t stride,
                       int32_t nframes, const float *par, int32_t pstride);

/* ---- biquad cascade (TDF-II, double state) --------------------------------
 * state: [0] sr, [1] nsec, [2] gen_seen, [3] ramp_left, [4] ramp_len_default,
 *        [5..7] reserved,
 *        [8 .. 8+BLOB)           published blob: gen, ramp_len, nsec*5 target coefs
 *        then cur coefs (nsec*5), step (nsec*5), z (nch*nsec*2)
 * coefs per section: b0 b1 b2 a1 a2 (a0 normalised to 1).
 * par: none.
 */
#define RTK_BQ_HDR 8
#define RTK_BQ_BLOB(nsec) (2 + 5 * (nsec))
void rtk_biquad(double *state, float *io, int32_t nch, int32_t stride,
                int32_t nframes, const float *par, int32_t pstride);

/* ---- gain / pan / width ---------------------------------------------------
 * state: [0] sr, [1] last_gain_db, [2] last_pan, [3] last_width,
 *        [4] g (linear), [5] gl, [6] gr
 * par: 0 gain_db, 1 pan (-1..1, constant power, centre = unity),
 *      2 width (0 mono .. 1 unchanged .. 2 wide; stereo only),
 *      3 invert (0 .. 1; the polarity factor is 1 - 2 * invert, so a ramp fades through 0)
 */
#define RTK_GAIN_STATE 8
void rtk_gain(double *state, float *io, int32_t nch, int32_t stride,
              int32_t nframes, const float *par, int32_t pstride);

/* ---- feed-forward compressor (log-domain gain computer, linked detector) ----
 * state: [0] sr, [1] env_db (smoothed gain reduction, >= 0),
 *        [2] last_attack_ms, [3] a_att, [4] last_release_ms, [5] a_rel,
 *        [6] max_block, [7] reserved, then max_block doubles of scratch
 * par: 0 threshold_db, 1 ratio, 2 knee_db, 3 attack_ms, 4 release_ms,
 *      5 makeup_db, 6 mix (0 dry .. 1 wet)
 */
#define RTK_COMP_STATE 8
void rtk_compressor(double *state, float *io, int32_t nch, int32_t stride,
                    int32_t nframes, const float *par, int32_t pstride);

/* ---- lookahead true-peak limiter ----------------------------------------
 * Detection: 4x polyphase interpolation (phase 0 is the sample itself; float32
 * sums) of each channel, linked by maximum, each local maximum refined by a
 * parabola.  Gain: sliding minimum over W = L+5 detections, exponential
 * release, then a box average over B = L+1 samples, so the gain has fully
 * reached the required value when the peak leaves the delay line.
 * Latency D = L + RTK_LIM_TAPS/2 + 2.
 * state header:
 *   [0] sr, [1] L, [2] frame counter, [3] env, [4] box_sum,
 *   [5] running prefix minimum, [6] last window minimum, [7] last release_ms,
 *   [8] release coefficient, [9] nch, [10] prev abs (oversampled),
 *   [11] prevprev abs, [12] max_block (frames per call at most),
 *   [13] last ceiling (dB), [14] input gain (linear), [15] input gain (dB),
 *   [16] frames of unity gain in a row, [17] bound on |interpolated| / max|x|,
 *   [18..19] reserved
 * then: taps (4 * TAPS doubles holding 3 rows of TAPS float32),
 *       history (nch * (TAPS + max_block) doubles holding as many float32:
 *       TAPS-1 old frames, then the block), delay line (nch * D doubles holding
 *       nch * D float32), box ring (B), current-run r (W), suffix minima (W),
 *       scratch (4 * max_block doubles: 4 rows of max_block float32
 *       detections, then max_block gains).
 * par: 0 ceiling_db, 1 release_ms, 2 input_gain_db
 */
#define RTK_LIM_TAPS 32
#define RTK_LIM_HDR 20
void rtk_limiter(double *state, float *io, int32_t nch, int32_t stride,
                 int32_t nframes, const float *par, int32_t pstride);

/* ---- delay line (latency alignment) -------------------------------------
 * state: [0] sr, [1] D (samples), [2] pos, [3] reserved, then nch * D ring.
 * par: none.
 */
#define RTK_DELAY_HDR 4
void rtk_delay(double *state, float *io, int32_t nch, int32_t stride,
               int32_t nframes, const float *par, int32_t pstride);

#endif
