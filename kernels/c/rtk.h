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

/* ---- loudness meter (ITU-R BS.1770-4, EBU R 128 / Tech 3341 and 3342) -----
 * Pass-through: the audio is read, never changed.  K-weighting (two biquads
 * designed for the sample rate), channel weights, 10 ms sub-blocks of summed
 * weighted squares; momentary (last 40 sub-blocks) and short-term (last 300)
 * at every sub-block; every 100 ms a 400 ms gating block enters a histogram
 * (0.01 LU bins from -70 LUFS: absolute gate) from which the integrated
 * loudness (relative gate -10 LU) follows, and a 3 s short-term value enters a
 * second histogram for the loudness range (relative gate -20 LU, 10th to 95th
 * percentile).  True peak: 4x oversampling (RTK_LM_TP_TAPS taps per phase).
 * state header:
 *   [0] sr, [1] nch, [2] samples per sub-block, [3] samples in the current
 *   sub-block, [4] sub-blocks done, [5] abs-gated 400 ms blocks,
 *   [6] their summed power, [7] abs-gated 3 s values,
 *   [8] momentary LUFS, [9] short-term LUFS, [10] integrated LUFS,
 *   [11] loudness range LU, [12] true-peak maximum (linear),
 *   [13] sample-peak maximum (linear), [14] momentary maximum LUFS,
 *   [15] short-term maximum LUFS, [16] summed power of the 3 s values,
 *   [17] weighted squares of the current sub-block,
 *   [18..27] K-weighting: shelf b0 b1 b2 a1 a2, high pass b0 b1 b2 a1 a2,
 *   [28..31] reserved
 * then: channel weights (nch), filter memory (4 nch), sub-block ring (300),
 *       true-peak taps (3 rows of TAPS), true-peak history per channel
 *       (TAPS - 1 + sub), histograms: 400 ms power, 400 ms count, 3 s power,
 *       3 s count (RTK_LM_BINS each).
 * Values in LUFS are -inf until defined.  par: none. */
#define RTK_LM_HDR 32
#define RTK_LM_RING 300
#define RTK_LM_TP_TAPS 48
#define RTK_LM_BINS 10000
void rtk_loudness(double *state, float *io, int32_t nch, int32_t stride,
                  int32_t nframes, const float *par, int32_t pstride);
/* The meter of rtk_loudness over any number of frames (for kernels that embed
 * a meter, and offline measurement). */
void rtk_lm_feed(double *state, const float *io, int32_t nch, int32_t stride,
                 int32_t nframes);

/* ---- master: auto gain, glue compressor, true-peak limiter, two meters ----
 * Per 10 ms segment: input meter, gain, compressor (rtk_compressor), guard
 * low pass (rtk_biquad: 8th-order elliptic at 19.5 kHz, so nothing is left
 * right under Nyquist where a 4x true-peak detector reads low), limiter
 * (rtk_limiter), output meter.  With auto gain on, every 100 ms the input's
 * programme loudness (short-term values gated at -70 LUFS and 20 LU under the
 * estimate, averaged in power with the time constant adapt_s) and the loss
 * in compressor and limiter over the last 3 s give the gain that brings the
 * output to the target; the applied gain slews toward it at speed dB/s
 * within [-max_gain_db, max_gain_db].
 * Auto gain waits for 3 s of signal; until then, and with auto off, the gain
 * is gain_db.
 * state header:
 *   [0] sr, [1] nch, [2] max_block, [3] offset of the compressor state,
 *   [4] of the limiter state, [5] of the input meter, [6] of the output
 *   meter, [7] of the scratch lanes (10 rows of max_block float32),
 *   [8] applied gain dB, [9] samples into the 10 ms grid, [10] sub-blocks,
 *   [11] input programme power, [12] loss in compressor and limiter (dB),
 *   [13] programme values seen, [14] wanted gain dB, [15] offset of the ring
 *   of output sub-block powers divided by the gain's power (300), [16] offset
 *   of the guard low pass (a biquad cascade state), [17..23] reserved
 * par: 0 target_lufs, 1 auto (0/1), 2 gain_db, 3 max_gain_db, 4 speed_db_s,
 *      5 adapt_s, 6 glue_threshold_db, 7 glue_ratio, 8 glue_attack_ms,
 *      9 glue_release_ms, 10 glue_mix, 11 ceiling_db, 12 release_ms */
#define RTK_MS_HDR 24
#define RTK_MS_LANES 10
void rtk_master(double *state, float *io, int32_t nch, int32_t stride,
                int32_t nframes, const float *par, int32_t pstride);

/* ---- spectral denoiser (streaming STFT, SPP noise tracking, MMSE-LSA) ----
 * Hops of H samples (5 ms), analysis frames of N = 4 H samples under an
 * asymmetric window, synthesis over the frame's last 2 H samples (the two
 * windows multiply to a Hann window of 2 H), so the latency is 2 H (10 ms);
 * FFTW r2c / c2r (plans made off the audio thread by rtk_dn_plan, executed
 * here with the new-array interface).
 * Per frame: the channels' power spectra are summed; the noise is tracked
 * by speech presence probability (Gerkmann and Hendriks 2012: the
 * probability that a bin holds speech at an assumed 15 dB SNR, given the last
 * estimate, weights the update of the estimate, with a guard against staying
 * stuck on "speech"), held between 1.5 and 8 times the minimum of the
 * smoothed power over a window of adapt_s (minimum statistics, two half
 * windows): speech cannot pull the estimate far up, and a noise that rises
 * by more than the presence test lets through is followed within adapt_s.  The a priori
 * SNR is decision-directed (time constant 0.15 s), the gain MMSE
 * log-spectral amplitude (Ephraim and Malah 1985) weighted by speech
 * presence (OM-LSA, Cohen), raised to `amount` in dB and held above the
 * floor; the noise estimate the gains use is smoothed over five bins; one
 * gain for every channel.  The estimates start from the first frame the
 * input fills (those before it still hold the buffer's initial zeros).
 * While `learn` is on every frame counts as noise (a noise print is taken
 * quickly; tracking goes on from it when released).
 * state header:
 *   [0] sr, [1] nch, [2] N, [3] H, [4] samples into the hop, [5] frames,
 *   [6] r2c plan, [7] c2r plan (pointers stored bitwise), [8] K = N/2 + 1,
 *   [9] frames into the minimum window, [10] half window (frames),
 *   [11] learned region (below), [12] frames learnt so far, [13] [14] addresses of
 *   fftw_execute_dft_r2c and _c2r (for the numba twin), [15] reserved
 * then: analysis window (N), synthesis window (2 H), per channel: input (N),
 *       overlap-add (2 H), output (H);
 *       per bin: S, Smin, Stmp, smoothed presence, noise, previous
 *       |gain * X|^2, gain (7 K);
 *       scratch: frame (N), spectra (nch * 2 K), power (K).
 * par: 0 amount (0..1), 1 floor_db, 2 adapt_s, 3 learn (0/1) */
#define RTK_DN_HDR 16
/* Learned band gains (optional; kernels/layout.py writes them): header [11]
 * holds the offset of a region (0: none) of
 *   [0] bands NB, [1] features NF = 4 NB, [2] GRU units HID, [3] first bin above
 *   the top band, [4] in use (0: the features are computed, not applied),
 *   [5] [6] weights of the learned and the statistical log gain in the applied
 *   one (which never exceeds 0: no bin is amplified), [7] the network's largest band
 *   gain (its sigmoid outputs scaled: above 1 it can undo the statistical stage's
 *   suppression); band edges in bins (NB + 1); per bin the band centre at or
 *   below it and the next one's weight (2 K); feature mean and deviation
 *   (2 NF); input layer HID x NF, HID; GRU input and recurrent weights
 *   (3 HID x HID each, then their biases 3 HID, gates r z n); output layer
 *   NB x HID, NB; state: hidden (HID), scratch (7 HID: input layer, gates); features (NF), band
 *   gains (NB), statistical log gain per bin (K).  The network sees the
 *   statistical log gain at a fixed floor of RTK_DNL_FEATURE_FLOOR_DB. */
#define RTK_DNL_HDR 8
#define RTK_DNL_FEATURE_FLOOR_DB (-25.0)
void rtk_denoise(double *state, float *io, int32_t nch, int32_t stride,
                 int32_t nframes, const float *par, int32_t pstride);
/* Make (destroy) the FFTW plans of a denoiser state.  Control thread, one at
 * a time (the FFTW planner is not thread-safe).  0 on success. */
int32_t rtk_dn_plan(double *state);
void rtk_dn_unplan(double *state);

/* ---- balance: real-time EQ balancing toward a target spectrum ------------
 * Analysis (FFTW r2c, Hann window of N samples, about 0.34 s, every H = N/4)
 * of the input's long-term spectrum in 27 third-octave bands (40 Hz..16 kHz;
 * bands above 0.45 fs stay flat): band powers averaged in power with the time
 * constant speed_s, skipped while the input is silent or `freeze` is on.  The
 * correction per band is target minus measured (its mean over the bands
 * removed: the overall level is left alone), times `amount`, clamped to
 * [-max_cut_db, max_boost_db]; a cascade of filters at the band centres
 * realises it (proportional-Q peaks; shelves at the two end bands, so a
 * correction carries on beyond the range) (command gains from the inverse interaction
 * matrix plus two refinements against the cascade's exact response), and
 * ramps to new coefficients over one hop (no zipper noise).  Zero latency.
 * With `mid_side` on (stereo), mid and side are measured and corrected apart.
 * state header:
 *   [0] sr, [1] nch, [2] N, [3] H, [4] samples into the hop, [5] frames,
 *   [6] r2c plan (pointer stored bitwise), [7] bands, [8] Q,
 *   [9] frames averaged (mid / linked), [10] frames averaged (side),
 *   [11] generation, [12] offset of cascade A (linked or mid),
 *   [13] offset of cascade B (side), [14] mid/side of the last frame,
 *   [15] address of fftw_execute_dft_r2c (for the numba twin), [16] analysis
 *   stage pending + 1 (0: none), [17] mid/side of the frame under analysis,
 *   [18] [19] its mean-square sums (linked or mid, side)
 * then: window (N), input per channel (N + H each), spectrum (2 (N/2 + 1)),
 *       frame (N), band edges in bins (bands + 1), target dB (bands),
 *       centre phasors cos w, sin w, cos 2w, sin 2w (4 bands),
 *       inverse interaction matrix (bands^2), measured power (2 bands),
 *       correction dB (2 bands), command gains dB (2 bands), peaking
 *       coefficients (5 bands), power spectra (2 (N/2 + 1)), then the two
 *       cascades (rtk_biquad states: A for nch channels, B for one).
 * par: 0 amount (0..1), 1 max_boost_db, 2 max_cut_db, 3 speed_s, 4 freeze,
 *      5 mid_side */
#define RTK_BAL_HDR 20
#define RTK_BAL_SHELF_Q 0.7071067811865476
void rtk_balance(double *state, float *io, int32_t nch, int32_t stride,
                 int32_t nframes, const float *par, int32_t pstride);
int32_t rtk_bal_plan(double *state);
void rtk_bal_unplan(double *state);

#endif
