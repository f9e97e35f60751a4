"""Development speech and noise for testing and benchmarking a denoiser.

Speech comes from Debian packages (never downloaded):

* ``asterisk-core-sounds-en-g722``: one female English speaker, 16 kHz G.722, about 25 min.
  Decoded once with ffmpeg (``apt-get install ffmpeg``) into ``cache_dir("speech")``.
* ``asterisk-core-sounds-fr-wav`` (optional): another speaker, French, 8 kHz.

Files are split deterministically into ``"dev"`` and ``"test"`` by their prompt name (the path
under the speaker's folder, without extension), so a prompt is on the same side for every
speaker and no file is in both splits.  Files are cut at pauses and packed into utterances of a
few seconds.

Noise is synthesized deterministically from a seed at any sample rate (``SYNTH_NOISES``), or
read from Debian's ``sonic-pi-samples`` (CC0; ``REAL_NOISES``) when installed.

``noisy_set`` pairs them at given SNRs::

    for clean, noisy, noise, snr in noisy_set(snrs=(0, 5), n_utts=4, sample_rate=48000):
        ...

The sets reserved for independent evaluation (see shared/DATA.md: the Italian and Russian
asterisk sounds, asterisk-moh-opsound, Sonic Pi's vinyl_hiss, ...) are never read here.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
import shutil
import subprocess
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import signal

from rtengine.data import cache_dir
from rtengine.errors import ParameterError, RtEngineError

__all__ = [
    "DataUnavailableError", "NoisyItem", "NoisySet", "REAL_NOISES", "SPEAKERS", "SYNTH_NOISES",
    "Utterance", "available_noises", "babble", "fit_length", "make_noise", "mix_at_snr",
    "noise_at_snr", "noisy_set", "resample", "snr_db", "speech_files", "split_of", "utterances",
]

# Where Debian installs the sounds (module attributes so tests can point them elsewhere).
SOUNDS_ROOT = Path("/usr/share/asterisk/sounds")
SONIC_PI_ROOT = Path("/usr/share/sonic-pi/samples")


@dataclass(frozen=True)
class _Speaker:
    folder: str
    ext: str
    sample_rate: int
    package: str


SPEAKERS: dict[str, _Speaker] = {
    "en": _Speaker("en_US_f_Allison", ".g722", 16000, "asterisk-core-sounds-en-g722"),
    "fr": _Speaker("fr_CA_f_June", ".wav", 8000, "asterisk-core-sounds-fr-wav"),
}
# Prompts that are tones, jingles, animal noises or silence rather than speech.
_NOT_SPEECH = frozenset({"ascending-2tone", "descending-2tone", "beep", "beeperr",
                         "confbridge-join", "confbridge-leave", "tt-monkeys"})
TEST_FRACTION = 0.2

SYNTH_NOISES = ("white", "pink", "brown", "hum", "hvac", "crackle", "babble", "nonstationary")
# Real CC0 recordings from sonic-pi-samples; vinyl_hiss is reserved and never used.
REAL_NOISES = ("loop_3d_printer", "ambi_dark_woosh", "ambi_drone", "ambi_glass_hum",
               "ambi_glass_rub", "ambi_haunted_hum", "ambi_lunar_land", "ambi_sauna",
               "ambi_soft_buzz", "ambi_swoosh", "ambi_choir", "ambi_piano")
_RESERVED_NOISES = frozenset({"vinyl_hiss"})
NOISE_RMS = 0.1          # every noise from make_noise has this RMS (-20 dBFS)
SPEECH_RMS = 10 ** (-25 / 20)   # utterances are normalized to -25 dBFS RMS
_PEAK = 0.99


class DataUnavailableError(RtEngineError, RuntimeError):
    """A Debian package or program that the development data needs is not installed."""


def _apt_hint(*packages: str) -> str:
    return ("install it with: apt-get install -y --no-install-recommends " + " ".join(packages))


# --------------------------------------------------------------------------- helpers

def resample(x: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """``x`` (1-D) resampled from ``sr_from`` to ``sr_to`` Hz with scipy's polyphase resampler,
    as float32."""
    sr_from, sr_to = int(sr_from), int(sr_to)
    if sr_from <= 0 or sr_to <= 0:
        raise ParameterError(f"sample rates must be positive, got {sr_from} -> {sr_to}")
    x = np.asarray(x, dtype=np.float32)
    if sr_from == sr_to:
        return x.copy()
    g = math.gcd(sr_from, sr_to)
    return signal.resample_poly(x, sr_to // g, sr_from // g).astype(np.float32)


def fit_length(x: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """``x`` looped (from offset ``start``) or cut to exactly ``n`` samples."""
    x = np.asarray(x)
    if x.ndim != 1 or x.size == 0:
        raise ParameterError(f"need a non-empty 1-D signal, got shape {x.shape}")
    idx = (np.arange(n) + int(start)) % x.size
    return x[idx]


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    """SNR in dB of ``noisy`` against ``clean`` over the whole clip."""
    clean = np.asarray(clean, dtype=np.float64)
    noise = np.asarray(noisy, dtype=np.float64) - clean
    return float(10 * np.log10(np.sum(clean ** 2) / np.sum(noise ** 2)))


def noise_at_snr(speech: np.ndarray, noise: np.ndarray, snr: float) -> np.ndarray:
    """``noise`` looped or cut to the length of ``speech`` and scaled so that the SNR over the
    whole clip is ``snr`` dB (float64)."""
    s = np.asarray(speech, dtype=np.float64)
    if s.ndim != 1:
        raise ParameterError(f"speech must be mono (1-D), got shape {s.shape}")
    n = fit_length(np.asarray(noise, dtype=np.float64), s.size)
    ps, pn = np.sum(s ** 2), np.sum(n ** 2)
    if ps <= 0:
        raise ParameterError("speech is silent: an SNR is undefined")
    if pn <= 0:
        raise ParameterError("noise is silent over the length of the speech")
    return n * math.sqrt(ps / (pn * 10 ** (snr / 10)))


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech`` plus ``noise`` scaled so that the SNR over the whole clip is ``snr_db`` dB.

    The noise is looped or cut to the length of the speech.  The result has the speech's float
    type (float32 for integer input)."""
    speech = np.asarray(speech)
    dtype = speech.dtype if speech.dtype in (np.float32, np.float64) else np.float32
    return (speech.astype(np.float64) + noise_at_snr(speech, noise, snr_db)).astype(dtype)


def _rng(seed: int, *keys: object) -> np.random.Generator:
    """A generator that depends only on ``seed`` and the (stable) ``keys``."""
    words = [int(seed) & 0xFFFFFFFF]
    for key in keys:
        words.append(zlib.crc32(str(key).encode()) if not isinstance(key, int) else key)
    return np.random.default_rng(words)


def _hash01(text: str) -> float:
    """A stable number in [0, 1) for ``text``."""
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64


def _rms_normalize(x: np.ndarray, rms: float) -> np.ndarray:
    cur = float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))
    if cur <= 0:
        return np.asarray(x, dtype=np.float32)
    return (x * (rms / cur)).astype(np.float32)


# --------------------------------------------------------------------------- speech files

def _speaker(name: str) -> _Speaker:
    try:
        return SPEAKERS[name]
    except KeyError:
        raise ParameterError(f"unknown speaker {name!r}; known: {sorted(SPEAKERS)}") from None


def _speaker_dir(name: str) -> Path:
    spk = _speaker(name)
    folder = SOUNDS_ROOT / spk.folder
    if not folder.is_dir() or not any(folder.rglob("*" + spk.ext)):
        raise DataUnavailableError(
            f"speaker {name!r} needs the Debian package {spk.package} ({folder} is missing); "
            + _apt_hint(spk.package) + (" ffmpeg" if spk.ext == ".g722" else ""))
    return folder


def split_of(key: str) -> str:
    """``"dev"`` or ``"test"`` for a prompt key (its path under the speaker folder, without
    extension, e.g. ``"digits/7"``): a fixed hash, the same for every speaker."""
    return "test" if _hash01("split:" + key) < TEST_FRACTION else "dev"


@functools.cache
def _all_keys(speaker: str) -> tuple[str, ...]:
    spk = _speaker(speaker)
    folder = _speaker_dir(speaker)
    keys = []
    for path in folder.rglob("*" + spk.ext):
        key = path.relative_to(folder).with_suffix("").as_posix()
        if key.split("/")[0] == "silence" or key in _NOT_SPEECH:
            continue
        keys.append(key)
    return tuple(sorted(keys))


def speech_files(split: str = "dev", speaker: str = "en") -> list[str]:
    """Sorted prompt keys of ``speaker`` in ``split`` (``"dev"``, ``"test"`` or ``"all"``)."""
    if split not in ("dev", "test", "all"):
        raise ParameterError(f"split must be 'dev', 'test' or 'all', got {split!r}")
    return [k for k in _all_keys(speaker) if split == "all" or split_of(k) == split]


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise DataUnavailableError("decoding the G.722 speech needs ffmpeg; " + _apt_hint("ffmpeg"))
    return exe


def _decode_batch(exe: str, jobs: list[tuple[Path, Path]]) -> None:
    args = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    for src, _ in jobs:
        args += ["-f", "g722", "-i", str(src)]
    tmps = []
    for i, (_, dst) in enumerate(jobs):
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.stem}.{os.getpid()}.tmp.wav")
        tmps.append(tmp)
        args += ["-map", f"{i}:a", "-ar", "16000", "-c:a", "pcm_s16le", str(tmp)]
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        raise DataUnavailableError(f"ffmpeg failed decoding G.722 speech: {proc.stderr.strip()}")
    for tmp, (_, dst) in zip(tmps, jobs):
        os.replace(tmp, dst)


@functools.cache
def _decoded_dir(speaker: str) -> Path:
    """The folder of 16-bit wav files for a G.722 speaker, decoding what is missing (once)."""
    spk = _speaker(speaker)
    src_dir = _speaker_dir(speaker)
    out_dir = cache_dir("speech", spk.folder)
    jobs = [(src_dir / (k + spk.ext), out_dir / (k + ".wav")) for k in _all_keys(speaker)]
    jobs = [(s, d) for s, d in jobs if not d.exists()]
    if jobs:
        exe = _ffmpeg()
        batches = [jobs[i:i + 48] for i in range(0, len(jobs), 48)]
        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
            list(pool.map(lambda b: _decode_batch(exe, b), batches))
    return out_dir


@functools.lru_cache(maxsize=2048)
def _load(speaker: str, key: str) -> np.ndarray:
    import soundfile as sf

    spk = _speaker(speaker)
    if spk.ext == ".g722":
        path = _decoded_dir(speaker) / (key + ".wav")
    else:
        path = _speaker_dir(speaker) / (key + spk.ext)
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    if sr != spk.sample_rate:
        raise DataUnavailableError(f"{path}: expected {spk.sample_rate} Hz, found {sr} Hz")
    x = x.mean(axis=1)
    x.setflags(write=False)
    return x


def _pieces(x: np.ndarray, sr: int, max_seconds: float) -> list[np.ndarray]:
    """Speech in ``x`` cut at pauses (>= 0.25 s below -40 dB of the loudest 10 ms) into pieces of
    at most ``max_seconds``, each with 50 ms of its surroundings."""
    hop = sr // 100
    nfr = x.size // hop
    if nfr == 0:
        return []
    frames = x[:nfr * hop].astype(np.float64).reshape(nfr, hop)
    db = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
    active = db > max(db.max() - 40.0, -70.0)
    if not active.any():
        return []
    margin, min_pause = 5, 25
    idx = np.flatnonzero(active)
    spans, start = [], idx[0]
    for a, b in zip(idx[:-1], idx[1:]):
        if b - a > min_pause:
            spans.append((start, a + 1))
            start = b
    spans.append((start, idx[-1] + 1))

    max_fr = max(int(max_seconds * 100), 50)

    def cut(lo: int, hi: int) -> list[tuple[int, int]]:
        if hi - lo <= max_fr:
            return [(lo, hi)]
        # Cut at the quietest frame of the middle half (a pause if there is one).
        q = (hi - lo) // 4
        mid = lo + q + int(np.argmin(db[lo + q:hi - q]))
        return cut(lo, mid) + cut(mid, hi)

    out = []
    for lo, hi in spans:
        for a, b in cut(max(0, lo - margin), min(nfr, hi + margin)):
            out.append(x[a * hop:b * hop])
    return out


@functools.lru_cache(maxsize=4096)
def _file_pieces(speaker: str, key: str, max_seconds: float) -> tuple[np.ndarray, ...]:
    return tuple(_pieces(_load(speaker, key), _speaker(speaker).sample_rate, max_seconds))


@dataclass(frozen=True)
class Utterance:
    """A few seconds of one speaker's speech (float32 mono at ``sample_rate``, -25 dBFS RMS)
    and the prompt keys it was made of."""
    audio: np.ndarray
    sample_rate: int
    speaker: str
    split: str
    files: tuple[str, ...]


def _ordered_keys(speaker: str, split: str, seed: int) -> list[str]:
    keys = speech_files(split, speaker)
    return sorted(keys, key=lambda k: _hash01(f"order:{seed}:{k}"))


def _pack(speaker: str, keys: Sequence[str], seconds: float, rng: np.random.Generator
          ) -> Iterator[tuple[np.ndarray, tuple[str, ...]]]:
    """Pieces of ``keys`` (in order) joined by 0.15-0.4 s gaps into clips of at least
    ``seconds`` (at the speaker's rate)."""
    sr = _speaker(speaker).sample_rate
    parts: list[np.ndarray] = []
    used: list[str] = []
    total = 0
    for key in keys:
        for piece in _file_pieces(speaker, key, 1.5 * seconds):
            if parts:
                gap = np.zeros(int(rng.uniform(0.15, 0.4) * sr), np.float32)
                parts.append(gap)
                total += gap.size
            parts.append(piece)
            total += piece.size
            if key not in used:
                used.append(key)
            if total >= seconds * sr:
                yield np.concatenate(parts), tuple(used)
                parts, used, total = [], [], 0


def utterances(split: str = "dev", n: int | None = 10, seconds: float = 4.0,
               speakers: Sequence[str] = ("en",), sample_rate: int = 16000,
               seed: int = 0) -> list[Utterance]:
    """``n`` utterances (all when ``None``) of at least ``seconds`` from ``split``.

    Utterance ``i`` is spoken by ``speakers[i % len(speakers)]``; the files are visited in an
    order fixed by ``seed``.  Audio is float32 mono at ``sample_rate``, -25 dBFS RMS."""
    if split not in ("dev", "test"):
        raise ParameterError(f"split must be 'dev' or 'test', got {split!r}")
    if not speakers:
        raise ParameterError("need at least one speaker")
    if seconds <= 0:
        raise ParameterError(f"seconds must be positive, got {seconds}")
    streams = {s: _pack(s, _ordered_keys(s, split, seed), seconds, _rng(seed, "gaps", s, split))
               for s in dict.fromkeys(speakers)}
    out: list[Utterance] = []
    exhausted: set[str] = set()
    i = 0
    while (n is None or len(out) < n) and len(exhausted) < len(streams):
        spk = speakers[i % len(speakers)]
        i += 1
        if spk in exhausted:
            continue
        item = next(streams[spk], None)
        if item is None:
            exhausted.add(spk)
            continue
        audio, files = item
        audio = resample(audio, _speaker(spk).sample_rate, sample_rate)
        audio = _rms_normalize(audio, SPEECH_RMS)
        peak = float(np.max(np.abs(audio)))
        if peak > _PEAK:
            audio = (audio * (_PEAK / peak)).astype(np.float32)
        out.append(Utterance(audio, int(sample_rate), spk, split, files))
    if n is not None and len(out) < n:
        raise ParameterError(f"only {len(out)} utterances of {seconds} s in split {split!r} "
                             f"for speakers {tuple(speakers)}, asked for {n}")
    return out


# --------------------------------------------------------------------------- noise

def _colored(rng: np.random.Generator, n: int, sr: int, exponent: float,
             f_floor: float = 20.0) -> np.ndarray:
    """Gaussian noise whose power falls as 1/f**exponent (0 white, 1 pink, 2 brown), flat
    below ``f_floor`` Hz, no DC, unit RMS."""
    if n < 2:
        return rng.standard_normal(n)
    spec = np.fft.rfft(rng.standard_normal(n))
    if exponent:
        f = np.fft.rfftfreq(n, 1.0 / sr)
        spec *= np.maximum(f, f_floor) ** (-exponent / 2)
    spec[0] = 0
    x = np.fft.irfft(spec, n)
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-30)


def _smooth_random(rng: np.random.Generator, n: int, sr: int, period: float,
                   lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    """A slow random control signal: uniform knots in [lo, hi] every ``period`` seconds joined by
    raised-cosine segments."""
    step = max(1, int(period * sr))
    knots = rng.uniform(lo, hi, n // step + 2)
    pos = np.arange(n) / step
    i = pos.astype(np.int64)
    frac = pos - i
    w = 0.5 - 0.5 * np.cos(np.pi * frac)
    return knots[i] * (1 - w) + knots[i + 1] * w


def _sos(kind: str, freq, sr: int, order: int = 2) -> np.ndarray:
    nyq = sr / 2
    if np.ndim(freq):
        lo, hi = (min(max(f, 1.0), 0.95 * nyq) for f in freq)
        freq = [min(lo, hi / 2), hi]
    else:
        freq = min(max(freq, 1.0), 0.95 * nyq)
    return signal.butter(order, freq, btype=kind, fs=sr, output="sos")


def _hum(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    f0 = float(rng.choice([50.0, 60.0]))
    drift = 1 + 0.003 * _smooth_random(rng, n, sr, period=rng.uniform(2, 5))
    phase = 2 * np.pi * np.cumsum(f0 * drift) / sr
    x = np.zeros(n)
    for k in range(1, 25):
        if k * f0 * 1.01 >= 0.45 * sr:
            break
        amp = rng.uniform(0.4, 1.0) / k ** 0.8 * (1.6 if k % 2 else 1.0)
        wobble = 1 + 0.15 * _smooth_random(rng, n, sr, period=rng.uniform(1.5, 4))
        x += amp * wobble * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    return x


def _hvac(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    rumble = signal.sosfilt(_sos("lowpass", rng.uniform(250, 600), sr),
                            _colored(rng, n, sr, 1.0))
    air = signal.sosfilt(_sos("bandpass", (rng.uniform(800, 1200), rng.uniform(2500, 4000)), sr),
                         _colored(rng, n, sr, 0.0))
    blade = rng.uniform(80, 160)
    phase = 2 * np.pi * np.cumsum(blade * (1 + 0.01 * _smooth_random(rng, n, sr, 3.0))) / sr
    x = (rumble / (np.std(rumble) + 1e-30) + 0.3 * air / (np.std(air) + 1e-30)
         + 0.15 * np.sin(phase))
    return x * (1 + 0.3 * _smooth_random(rng, n, sr, period=rng.uniform(2, 4)))


def _crackle(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    seconds = n / sr
    # Dense fine crackle: signed impulses with heavy-tailed sizes, high-passed into clicks.
    dense = np.zeros(n)
    k = rng.poisson(150 * seconds)
    np.add.at(dense, rng.integers(0, n, k), rng.laplace(0, 1, k))
    dense = signal.sosfilt(_sos("highpass", 1500, sr), dense)
    # Sparse loud clicks: damped oscillations of 1-3 ms.
    pops = np.zeros(n)
    k = rng.poisson(3 * seconds)
    for pos in rng.integers(0, n, k):
        length = int(rng.uniform(0.001, 0.003) * sr) + 2
        t = np.arange(min(length, n - pos)) / sr
        f = rng.uniform(600, 3000)
        pops[pos:pos + t.size] += (rng.choice([-1, 1]) * rng.uniform(5, 15)
                                   * np.exp(-t * 3000) * np.cos(2 * np.pi * f * t))
    hiss = 0.02 * _colored(rng, n, sr, 0.0)
    return dense + pops + hiss


def _nonstationary(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    layers = [_colored(rng, n, sr, e) for e in (0.0, 1.0, 2.0)]
    colour = _smooth_random(rng, n, sr, period=1.5, lo=0.0, hi=2.0)   # 0 white .. 2 brown
    w_pink = 1 - np.abs(colour - 1)
    w_white = np.clip(1 - colour, 0, 1)
    w_brown = np.clip(colour - 1, 0, 1)
    x = w_white * layers[0] + w_pink * layers[1] + w_brown * layers[2]
    level_db = _smooth_random(rng, n, sr, period=1.0, lo=-25.0, hi=0.0)
    return x * 10 ** (level_db / 20)


def babble(n: int, sample_rate: int = 48000, seed: int = 0, talkers: int = 6,
           exclude: Sequence[str] = ()) -> np.ndarray:
    """``n`` samples of babble: ``talkers`` streams of development speech (English, "dev"
    split, files in ``exclude`` left out), each at its own speed (+-15 %, so its own pitch),
    summed at equal level (float64, unit RMS)."""
    rng = _rng(seed, "babble")
    keys = [k for k in speech_files("dev", "en") if k not in set(exclude)]
    speeds = [(1, 1), (8, 7), (7, 8), (9, 8), (8, 9), (7, 6), (6, 7), (10, 9), (9, 10)]
    sr = SPEAKERS["en"].sample_rate
    out = np.zeros(n)
    for _ in range(talkers):
        up, down = speeds[int(rng.integers(len(speeds)))]
        order = [keys[i] for i in rng.permutation(len(keys))]
        need = int(n * sr / sample_rate * up / down) + sr
        chunks, have = [], 0
        for clip, _ in _pack("en", order, 1.0, rng):
            chunks.append(clip)
            have += clip.size
            if have >= need:
                break
        stream = np.concatenate(chunks)
        stream = signal.resample_poly(stream, sample_rate * down // math.gcd(sample_rate * down,
                                                                            sr * up),
                                      sr * up // math.gcd(sample_rate * down, sr * up))
        stream = fit_length(stream, n, start=int(rng.integers(0, max(1, stream.size - n))))
        out += stream / (np.sqrt(np.mean(stream ** 2)) + 1e-30)
    return out / (np.sqrt(np.mean(out ** 2)) + 1e-30)


@functools.lru_cache(maxsize=16)
def _real_noise(name: str, sample_rate: int) -> np.ndarray:
    import soundfile as sf

    path = SONIC_PI_ROOT / f"{name}.flac"
    if not path.is_file():
        raise DataUnavailableError(f"noise {name!r} needs the Debian package sonic-pi-samples "
                                   f"({path} is missing); " + _apt_hint("sonic-pi-samples"))
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    x = resample(x.mean(axis=1), sr, sample_rate)
    x.setflags(write=False)
    return x


def available_noises() -> tuple[str, ...]:
    """The synthetic noises and the real recordings that are installed."""
    return SYNTH_NOISES + tuple(n for n in REAL_NOISES
                                if (SONIC_PI_ROOT / f"{n}.flac").is_file())


def make_noise(name: str, n: int, sample_rate: int = 48000, seed: int = 0,
               exclude: Sequence[str] = ()) -> np.ndarray:
    """``n`` samples of noise ``name`` (see ``available_noises()``) at ``sample_rate``, float32 at
    RMS ``NOISE_RMS``; the same ``(name, n, sample_rate, seed)`` gives the same samples.

    Synthetic: ``white``, ``pink`` (-3 dB/octave), ``brown`` (-6 dB/octave), ``hum`` (50 or
    60 Hz mains with harmonics, slowly drifting in pitch and level), ``hvac`` (low-passed rumble,
    air hiss and a fan tone under a slow modulation), ``crackle`` (dense crackle and loud
    clicks), ``babble`` (summed development speech; ``exclude`` lists prompt keys to leave out),
    ``nonstationary`` (level and colour wandering over seconds).  Real: the Sonic Pi recordings in
    ``REAL_NOISES``, looped from a seeded offset."""
    n, sample_rate = int(n), int(sample_rate)
    if n <= 0 or sample_rate <= 0:
        raise ParameterError(f"need n > 0 and sample_rate > 0, got n={n}, "
                             f"sample_rate={sample_rate}")
    if name in _RESERVED_NOISES:
        raise ParameterError(f"noise {name!r} is reserved for independent evaluation; "
                             "it is never used for development")
    rng = _rng(seed, "noise", name, sample_rate)
    if name == "white":
        x = _colored(rng, n, sample_rate, 0.0)
    elif name == "pink":
        x = _colored(rng, n, sample_rate, 1.0)
    elif name == "brown":
        x = _colored(rng, n, sample_rate, 2.0)
    elif name == "hum":
        x = _hum(rng, n, sample_rate)
    elif name == "hvac":
        x = _hvac(rng, n, sample_rate)
    elif name == "crackle":
        x = _crackle(rng, n, sample_rate)
    elif name == "nonstationary":
        x = _nonstationary(rng, n, sample_rate)
    elif name == "babble":
        x = babble(n, sample_rate, seed=int(rng.integers(2 ** 31)), exclude=exclude)
    elif name in REAL_NOISES:
        src = _real_noise(name, sample_rate)
        x = fit_length(src, n, start=int(rng.integers(src.size)))
    else:
        raise ParameterError(f"unknown noise {name!r}; known: {', '.join(available_noises())}")
    return _rms_normalize(np.asarray(x, dtype=np.float64), NOISE_RMS)


# --------------------------------------------------------------------------- noisy sets

class NoisyItem(NamedTuple):
    """One mixture: ``noisy = clean + noise`` at ``snr`` dB over the whole clip."""
    clean: np.ndarray
    noisy: np.ndarray
    noise: str
    snr: float


class NoisySet(Sequence):
    """Mixtures of ``utterances`` with every noise at every SNR, made when indexed (so a large set
    costs little memory).  Item ``i`` is utterance ``i // (len(noises) * len(snrs))``, noise and
    SNR varying fastest; the noise waveform is the same at every SNR of one utterance.  If a
    mixture would peak above 0.99 both clean and noisy are scaled down together (the SNR is
    unchanged)."""

    def __init__(self, utts: Sequence[Utterance], noises: Sequence[str], snrs: Sequence[float],
                 sample_rate: int, seed: int):
        self.utterances = tuple(utts)
        self.noises = tuple(noises)
        self.snrs = tuple(float(s) for s in snrs)
        self.sample_rate = int(sample_rate)
        self.seed = int(seed)
        self._noise = functools.lru_cache(maxsize=max(1, len(self.noises)))(self._make_noise)

    def _make_noise(self, u: int, name: str) -> np.ndarray:
        utt = self.utterances[u]
        seed = int(_rng(self.seed, "item", u, name).integers(2 ** 31))
        return make_noise(name, utt.audio.size, self.sample_rate, seed=seed, exclude=utt.files)

    def __len__(self) -> int:
        return len(self.utterances) * len(self.noises) * len(self.snrs)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        u, rest = divmod(i, len(self.noises) * len(self.snrs))
        k, s = divmod(rest, len(self.snrs))
        clean = self.utterances[u].audio.astype(np.float64)
        noise = noise_at_snr(clean, self._noise(u, self.noises[k]), self.snrs[s])
        noisy = clean + noise
        peak = float(np.max(np.abs(noisy)))
        if peak > _PEAK:
            clean, noisy = clean * (_PEAK / peak), noisy * (_PEAK / peak)
        return NoisyItem(clean.astype(np.float32), noisy.astype(np.float32), self.noises[k],
                         self.snrs[s])


def noisy_set(snrs: Sequence[float] = (-5, 0, 5, 10, 15),
              noises: Sequence[str] = SYNTH_NOISES, n_utts: int = 8,
              sample_rate: int = 48000, split: str = "dev", seed: int = 0,
              seconds: float = 4.0, speakers: Sequence[str] = ("en",)) -> NoisySet:
    """``n_utts`` utterances of ``split`` (see ``utterances``) mixed with each of ``noises`` at
    each of ``snrs`` dB, resampled to ``sample_rate``: a sequence of
    ``NoisyItem(clean, noisy, noise, snr)`` (float32 mono).  Deterministic in ``seed``."""
    for name in noises:
        if name not in SYNTH_NOISES and name not in REAL_NOISES:
            if name in _RESERVED_NOISES:
                raise ParameterError(f"noise {name!r} is reserved for independent evaluation")
            raise ParameterError(f"unknown noise {name!r}; known: "
                                 f"{', '.join(SYNTH_NOISES + REAL_NOISES)}")
        if name in REAL_NOISES:
            _real_noise(name, int(sample_rate))      # fails early with the package to install
    utts = utterances(split, n_utts, seconds=seconds, speakers=speakers,
                      sample_rate=sample_rate, seed=seed)
    return NoisySet(utts, noises, snrs, sample_rate, seed)
