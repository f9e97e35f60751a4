"""Varied short music pieces rendered as multitrack stems, the way Slakh was made.

A small seeded composer writes MIDI-like material (form, chord progression, drum groove, bass
line, accompaniment and a lead melody) in one of several styles; FluidSynth plays it through
the FluidR3 GM SoundFont one stem at a time, and the mixture is the exact sum of the stems.

Stems: ``vocals`` (lead melody on Choir Aahs / Voice Oohs / Synth Voice, or a lead instrument),
``drums`` (GM channel 10 kits), ``bass`` and ``other`` (chords and accompaniment).

Only allowed material is used: FluidR3_GM.sf2 from Debian's ``fluid-soundfont-gm`` (never
``default-GM.sf2``, which may point at a reserved SoundFont), for training also MuseScore
General (``musescore-general-soundfont-lossless``, ``--soundfont musescore``), and notes
written by this module.

Command line::

    python -m rtengine.data.music --n 4 --seconds 20 --out DIR
    python -m rtengine.data.music --split train --hours 20 --jobs 2   # tens of hours: fine

Splits are by piece (seed ranges, :data:`SPLITS`); test pieces also use instruments that
training and validation pieces never do (:data:`HELD_OUT`), and validation pieces ones that
training pieces never do (:data:`VALID_HELD_OUT`).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import cache_dir

__all__ = ["STEMS", "SPLITS", "HELD_OUT", "VALID_HELD_OUT", "Piece", "compose", "split_of",
           "split_seeds", "find_soundfont", "render_piece", "render_set", "default_folder", "main"]

STEMS = ("vocals", "drums", "bass", "other")

# Bump when the composer or the renderer changes what a seed sounds like (cache folders use it).
VERSION = 4
# The random streams' own version, in their seeds: version 3 changed only which instruments
# training and validation pieces may pick (VALID_HELD_OUT), version 4 only training pieces
# (TRAIN_TIMBRES), so a test piece is the same as in version 2 and test figures stay
# comparable across the three; a validation piece is the same as in version 3.
_STREAM = 2

# Splits by piece: a seed's split is fixed by its range, so a piece is never in two splits.
SPLITS = {"train": 0, "valid": 1_000_000, "test": 2_000_000}
SPLIT_SIZE = 1_000_000
# Instruments (GM programs; drums: kits of bank 128) that only test pieces use, so a held-out
# evaluation also meets sounds never heard in training.  Test pieces pick one of these with
# probability 1/2 wherever the style offers one.
HELD_OUT = {
    "vocals": frozenset({54, 71, 22}),          # Synth Voice, Clarinet, Harmonica
    "drums": frozenset({25, 17}),               # TR-808 and Power kits
    "bass": frozenset({35, 37}),                # Fretless, Slap Bass 2
    "other": frozenset({46, 26, 21, 28, 94}),   # Harp, Jazz Gt, Accordion, Muted Gt, Halo Pad
}
# Instruments that only validation pieces (and test pieces, which may pick anything) use, so
# that choosing a checkpoint on the validation split rewards what the held-out test measures:
# sounds never heard in training.  Validation pieces pick one of these with probability 1/2
# wherever the style offers one.  Disjoint from HELD_OUT.
VALID_HELD_OUT = {
    "vocals": frozenset({68, 81}),              # Oboe, Saw Lead
    "drums": frozenset({40}),                   # Brush kit
    "bass": frozenset({36, 39}),                # Slap Bass 1, Synth Bass 2
    "other": frozenset({25, 49, 95, 61, 23}),   # Steel Gt, Slow Strings, Sweep Pad, Brass,
}                                               # Tango Accordion
# More timbres for training pieces only: a part is a stem by its role in the piece (the lowest
# line is the bass, the tune over the chords the lead), not by its instrument, and a network
# that heard only the few GM basses of the styles learns the instruments instead of the roles.
# So a training piece's part takes, with probability TRAIN_TIMBRES_P, an instrument of this
# list instead of its style's (for ``other`` the style's pattern is kept; a lead sung on a
# vocal patch, VOICES, keeps it).  None of them is held out for validation or test in any
# stem, and none is a vocal patch.
TRAIN_TIMBRES_P = 0.4
TRAIN_TIMBRES = {
    "vocals": (40, 41, 56, 57, 60, 64, 65, 66, 69, 72, 73, 74, 75, 78, 79, 80, 82, 83, 84, 85,
               11, 13, 104, 105, 109, 110, 111),
    "bass": (32, 33, 34, 38, 42, 43, 58, 70, 67, 87, 0, 16, 19, 80, 84),
    "other": (0, 2, 3, 5, 6, 8, 9, 10, 12, 14, 16, 17, 18, 19, 20, 24, 27, 29, 30, 40, 41, 42,
              44, 45, 48, 50, 56, 57, 60, 62, 64, 65, 66, 69, 70, 73, 88, 89, 90, 91, 92, 104,
              105, 107),
}
_MELODIC_HELD = frozenset().union(*(HELD_OUT[s] | VALID_HELD_OUT[s] for s in STEMS
                                    if s != "drums"))
assert not _MELODIC_HELD & frozenset().union(*TRAIN_TIMBRES.values())

# FluidR3 GM (every split) and, for more timbres in training only, MuseScore General (a
# FluidR3Mono fork with new piano, strings and synths).  default-GM.sf2 is deliberately absent:
# on Debian it is an alternative that may point at TimGM6mb, which is reserved for independent
# evaluation.
SOUNDFONT_PATHS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
)
SOUNDFONTS = {
    "fluidr3": (SOUNDFONT_PATHS, "fluid-soundfont-gm"),
    "musescore": (("/usr/share/sounds/sf2/MuseScore_General_Full.sf2",),
                  "musescore-general-soundfont-lossless"),
}
INSTALL_HINT = ("install it with: apt-get install fluid-soundfont-gm libfluidsynth3 "
                "and pip install pyfluidsynth")

DRUM_CHANNEL = 9
_BLOCK = 64                     # FluidSynth renders in blocks of this many frames

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
}
# Progressions as scale degrees (0 = tonic), one entry per chord slot.
PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 4, 3), (1, 4, 0, 0),
              (0, 3, 0, 4), (0, 2, 3, 4), (0, 5, 1, 4), (3, 4, 2, 5), (0, 4, 3, 4)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2), (0, 5, 3, 4),
              (0, 6, 5, 4), (5, 6, 0, 0), (0, 3, 0, 4)),
    "dorian": ((0, 3), (0, 6, 3, 0), (0, 3, 0, 6), (0, 1, 3, 0)),
    "mixolydian": ((0, 6, 3, 0), (0, 3, 6, 3), (0, 6, 0, 3)),
}
BLUES = (0, 0, 0, 0, 3, 3, 0, 0, 4, 3, 0, 4)

VOICES = (52, 53, 54)           # Choir Aahs, Voice Oohs, Synth Voice
assert not frozenset(VOICES) & frozenset().union(*TRAIN_TIMBRES.values())
LEAD_CENTER = {52: 65, 53: 65, 54: 67, 11: 72, 22: 67, 29: 64, 30: 64, 40: 72, 56: 69,
               57: 58, 59: 69, 62: 67, 65: 67, 66: 60, 68: 72, 71: 67, 73: 76, 75: 74, 80: 72,
               81: 69, 82: 72, 83: 72, 85: 67, 110: 72}
VIBRATO = {52: 20, 53: 25, 54: 30, 40: 45, 56: 15, 65: 25, 66: 25, 68: 25, 71: 10, 73: 20,
           75: 15, 85: 30, 110: 45, 22: 20}
PIANOS = range(0, 8)

# Style table: everything the composer varies by genre.
STYLES = {
    "ballad": dict(
        weight=1.2, tempo=(70, 96), meter=4, modes=("major", "minor"), energy=(0.05, 0.4),
        swing=(0.0, 0.0), swing16=(0.0, 0.0), sevenths=0.3, blues=0.0, kits=(0, 8, 32, 40),
        drums=("ballad",), bass=(32, 33, 35, 43), bass_pat=("whole", "root5"),
        other=((0, "arp"), (0, "block"), (1, "arp"), (4, "block"), (4, "arp"), (24, "arp"),
               (46, "arp"), (48, "pad"), (49, "pad"), (89, "pad"), (88, "pad")),
        leads=(73, 71, 40, 68, 65, 11), voice_p=0.7, density=(0.1, 0.45), humanize=1.0),
    "pop": dict(
        weight=1.5, tempo=(88, 128), meter=4, modes=("major", "major", "minor"),
        energy=(0.3, 0.75), swing=(0.0, 0.0), swing16=(0.0, 0.03), sevenths=0.2, blues=0.0,
        kits=(0, 1, 2, 8, 9), drums=("rock", "rock16", "half"), bass=(33, 34, 37, 38),
        bass_pat=("kick", "root5", "eighths"),
        other=((0, "block"), (1, "block"), (4, "block"), (25, "strum"), (27, "strum"),
               (24, "strum"), (48, "pad"), (89, "pad"), (90, "block"), (0, "arp")),
        leads=(80, 81, 65, 56, 73, 22, 11), voice_p=0.6, density=(0.35, 0.7), humanize=1.0),
    "rock": dict(
        weight=1.2, tempo=(105, 160), meter=4, modes=("major", "minor", "mixolydian"),
        energy=(0.6, 1.0), swing=(0.0, 0.0), swing16=(0.0, 0.0), sevenths=0.0, blues=0.2,
        kits=(16, 17, 8, 0), drums=("rock", "rock16"), bass=(34, 33), bass_pat=("eighths", "kick"),
        other=((29, "power"), (30, "power"), (29, "strum"), (18, "pad"), (30, "sustain"),
               (1, "block")),
        leads=(29, 30, 81, 56, 66), voice_p=0.55, density=(0.4, 0.8), humanize=0.8),
    "funk": dict(
        weight=1.0, tempo=(88, 118), meter=4, modes=("dorian", "minor", "mixolydian"),
        energy=(0.45, 0.85), swing=(0.0, 0.0), swing16=(0.0, 0.06), sevenths=0.7, blues=0.2,
        kits=(0, 8, 1), drums=("funk",), bass=(36, 37, 33, 38), bass_pat=("funk",),
        other=((27, "stabs"), (28, "stabs"), (7, "stabs"), (4, "comp"), (61, "stabs"),
               (16, "pad"), (62, "stabs")),
        leads=(65, 66, 56, 80, 62), voice_p=0.5, density=(0.5, 0.85), humanize=0.8),
    "electronic": dict(
        weight=1.2, tempo=(110, 140), meter=4, modes=("minor", "minor", "major", "dorian"),
        energy=(0.5, 1.0), swing=(0.0, 0.0), swing16=(0.0, 0.0), sevenths=0.3, blues=0.0,
        kits=(24, 25), drums=("four", "half"), bass=(38, 39), bass_pat=("offbeat", "eighths",
                                                                        "kick"),
        other=((90, "stabs"), (89, "pad"), (50, "pad"), (81, "arp"), (80, "arp"), (94, "pad"),
               (95, "pad"), (62, "stabs"), (98, "arp")),
        leads=(80, 81, 82, 83), voice_p=0.55, density=(0.4, 0.85), humanize=0.0),
    "waltz": dict(
        weight=0.8, tempo=(84, 156), meter=3, modes=("major", "minor"), energy=(0.1, 0.55),
        swing=(0.0, 0.0), swing16=(0.0, 0.0), sevenths=0.1, blues=0.0, kits=(32, 40, 8),
        drums=("waltz",), bass=(32, 43, 33), bass_pat=("waltz",),
        other=((21, "oompah"), (0, "oompah"), (24, "arp"), (25, "strum"), (48, "pad"),
               (23, "oompah"), (46, "arp")),
        leads=(73, 40, 71, 68, 110, 75, 22), voice_p=0.5, density=(0.2, 0.6), humanize=1.0),
    "swing": dict(
        weight=0.9, tempo=(96, 160), meter=4, modes=("major", "minor"), energy=(0.25, 0.65),
        swing=(0.12, 0.17), swing16=(0.0, 0.0), sevenths=0.95, blues=0.3, kits=(32, 40, 33),
        drums=("jazz",), bass=(32,), bass_pat=("walking",),
        other=((0, "comp"), (26, "comp"), (11, "comp"), (16, "pad"), (4, "comp")),
        leads=(65, 66, 56, 59, 57, 71, 73), voice_p=0.45, density=(0.35, 0.7), humanize=1.2),
    "hiphop": dict(
        weight=0.9, tempo=(70, 96), meter=4, modes=("minor", "dorian", "major"),
        energy=(0.35, 0.8), swing=(0.0, 0.0), swing16=(0.0, 0.08), sevenths=0.6, blues=0.0,
        kits=(25, 0, 8, 24), drums=("half",), bass=(38, 39, 33), bass_pat=("kick", "whole"),
        other=((4, "block"), (0, "block"), (89, "pad"), (11, "arp"), (48, "pad"), (5, "comp")),
        leads=(80, 73, 65, 85), voice_p=0.6, density=(0.3, 0.7), humanize=1.0),
}

# GM percussion keys
KICK, STICK, SNARE, CLAP, CHH, PHH, OHH = 36, 37, 38, 39, 42, 44, 46
CRASH, RIDE, CRASH2 = 49, 51, 57
TOMS = (50, 48, 47, 45, 43, 41)


@dataclass
class Part:
    """One instrument: notes in seconds after :func:`compose` finishes."""
    stem: str
    program: int
    pattern: str
    bank: int = 0
    pan: int = 64
    init_cc: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)     # (start, dur, pitch, vel[, offset_s])
    ccs: list = field(default_factory=list)       # (time, controller, value)


@dataclass
class Section:
    kind: str
    bar: int
    bars: int
    dyn: float
    drums: str                  # "full", "light" or "off"
    active: set


@dataclass
class Chord:
    start: float                # beats
    dur: float
    root: int                   # pitch class
    pcs: tuple                  # pitch classes, root first


@dataclass
class Piece:
    """A composed piece (everything :func:`render_piece` needs, no audio yet)."""
    seed: int
    seconds: float
    style: str
    tempo: float
    key: int
    mode: str
    meter: int
    swing: float
    energy: float
    sections: list
    parts: list
    gain_db: dict
    peak: float
    reverb: dict

    def describe(self) -> dict:
        """A JSON-friendly summary (what ``meta.json`` holds)."""
        return {
            "seed": self.seed, "seconds": self.seconds, "style": self.style,
            "tempo": round(self.tempo, 2), "key": NOTE_NAMES[self.key], "mode": self.mode,
            "meter": self.meter, "swing": round(self.swing, 3), "energy": round(self.energy, 3),
            "sections": [[s.kind, s.bar, s.bars] for s in self.sections],
            "parts": [{"stem": p.stem, "program": p.program, "bank": p.bank,
                       "pattern": p.pattern, "notes": len(p.notes)} for p in self.parts],
            "gain_db": {k: round(v, 2) for k, v in self.gain_db.items()},
            "peak": round(self.peak, 4), "reverb": {k: round(v, 3) for k, v in
                                                    self.reverb.items()},
            "soundfont": "FluidR3_GM.sf2", "version": VERSION, "split": split_of(self.seed),
        }


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def split_of(seed: int) -> str:
    """The split a piece belongs to: ``train`` below 1e6, ``valid`` below 2e6, else ``test``."""
    for name, base in sorted(SPLITS.items(), key=lambda kv: -kv[1]):
        if seed >= base:
            return name
    raise ValueError(f"seed must be >= 0, got {seed}")


def split_seeds(split: str, n: int, start: int = 0) -> range:
    """Seeds of pieces ``start .. start+n-1`` of a split."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if start < 0 or n < 0 or start + n > SPLIT_SIZE:
        raise ValueError(f"a split holds pieces 0..{SPLIT_SIZE - 1}")
    base = SPLITS[split]
    return range(base + start, base + start + n)


def _near(pc: int, target: float, lo: int, hi: int) -> int:
    """The pitch of pitch class ``pc`` in [lo, hi] closest to ``target``."""
    cands = [p for p in range(lo, hi + 1) if p % 12 == pc % 12]
    return min(cands, key=lambda p: (abs(p - target), p))


class _Composer:
    def __init__(self, seed: int, seconds: float, attempt: int = 0):
        self.seed = int(seed)
        self.seconds = float(seconds)
        self.rng = np.random.default_rng([_STREAM, 0x6D75, self.seed, attempt])
        self.split = split_of(self.seed)
        rng = self.rng
        names = sorted(STYLES)
        w = np.array([STYLES[n]["weight"] for n in names])
        self.style = names[int(rng.choice(len(names), p=w / w.sum()))]
        self.cfg = cfg = STYLES[self.style]
        self.tempo = float(round(rng.uniform(*cfg["tempo"])))
        self.meter = cfg["meter"]
        self.key = int(rng.integers(12))
        self.mode = _pick(rng, cfg["modes"])
        self.scale = SCALES[self.mode]
        self.energy = float(rng.uniform(*cfg["energy"]))
        self.dynamic = self.energy < 0.45 or rng.random() < 0.2
        self.swing = float(rng.uniform(*cfg["swing"]))
        self.swing16 = float(rng.uniform(*cfg["swing16"]))
        self.density = float(rng.uniform(*cfg["density"]))
        self.spb = 60.0 / self.tempo
        self.bar_beats = self.meter
        self.n_bars = int(math.ceil(self.seconds / (self.spb * self.meter))) + 1

    # ---------------------------------------------------------------- form and harmony
    def form(self):
        rng, n = self.rng, self.n_bars
        sec_len = 4 if n >= 8 else 2
        if n >= 20 and rng.random() < 0.5:
            sec_len = 8
        kinds = []
        if n >= 4 and rng.random() < 0.45:
            kinds.append(("intro", 2 if n >= 8 else 1))
        order = ("verse", "chorus") if rng.random() < 0.7 else ("chorus", "verse")
        i = 0
        while sum(b for _, b in kinds) < n:
            if i >= 2 and n >= 12 and rng.random() < 0.2 and kinds[-1][0] != "break":
                kinds.append(("break", 2))
            kinds.append((order[i % 2], sec_len))
            i += 1
        spread = 1.0 + (0.6 if self.dynamic else 0.0)
        base = {"intro": 0.75, "verse": 0.88, "chorus": 1.05, "break": 0.75}
        sections, bar = [], 0
        for kind, bars in kinds:
            dyn = 1.0 + (base[kind] - 1.0) * spread + rng.normal(0, 0.04)
            active = set(STEMS)
            drums = "full"
            if kind == "intro":
                active.discard("vocals")
                r = rng.random()
                drums = "off" if r < 0.35 - 0.2 * self.energy else ("light" if r < 0.75 else "full")
                if rng.random() < 0.4:
                    active.discard("bass")
            elif kind == "break":
                drums = "off" if rng.random() < 0.6 else "light"
                if rng.random() < 0.5:
                    active.discard("bass")
            elif kind == "verse" and self.energy < 0.4 and rng.random() < 0.4:
                drums = "light"
            if drums == "off":
                active.discard("drums")
            sections.append(Section(kind, bar, bars, float(np.clip(dyn, 0.3, 1.3)), drums,
                                    active))
            bar += bars
        self.sections = sections

    def _chord(self, degree: int, seventh: bool) -> tuple:
        sc, k = self.scale, self.key
        pcs = [(k + sc[(degree + 2 * j) % 7]) % 12 for j in range(4 if seventh else 3)]
        if self.mode == "minor" and degree == 4 and self.rng.random() < 0.6:
            pcs[1] = (pcs[0] + 4) % 12          # harmonic-minor dominant
        return tuple(pcs)

    def harmony(self):
        rng, cfg = self.rng, self.cfg
        per_bar = 1.0
        if self.meter == 4 and self.tempo < 92 and rng.random() < 0.35:
            per_bar = 2.0
        elif self.tempo > 130 and rng.random() < 0.5:
            per_bar = 0.5
        blues = rng.random() < cfg["blues"] and self.mode in ("major", "mixolydian", "dorian")
        progs = PROGRESSIONS[self.mode]
        by_kind = {}
        for kind in ("intro", "verse", "chorus", "break"):
            if blues:
                by_kind[kind] = BLUES
            elif kind in ("intro", "break") and "verse" in by_kind and rng.random() < 0.6:
                by_kind[kind] = by_kind["verse"]
            else:
                by_kind[kind] = _pick(rng, progs)
            if kind == "chorus" and by_kind[kind] == by_kind.get("verse") and rng.random() < 0.7:
                by_kind[kind] = _pick(rng, progs)
        seventh = rng.random() < cfg["sevenths"]
        chords = []
        dur = self.bar_beats / per_bar
        for s in self.sections:
            prog = by_kind[s.kind]
            beat, end, j = s.bar * self.bar_beats, (s.bar + s.bars) * self.bar_beats, 0
            while beat < end - 1e-6:
                deg = prog[j % len(prog)]
                d = min(dur, end - beat)
                if blues:
                    r = (self.key + (0, 2, 4, 5, 7, 9, 10)[deg]) % 12
                    pcs = (r, (r + 4) % 12, (r + 7) % 12, (r + 10) % 12)
                    if self.style == "rock":
                        pcs = pcs[:3]
                else:
                    pcs = self._chord(deg, seventh or (self.style == "swing"))
                chords.append(Chord(beat, d, pcs[0], pcs))
                beat += d
                j += 1
        self.chords = chords

    def chord_at(self, beat: float) -> Chord:
        for c in self.chords:
            if c.start - 1e-6 <= beat < c.start + c.dur - 1e-6:
                return c
        return self.chords[-1]

    def next_chord(self, c: Chord) -> Chord:
        i = self.chords.index(c)
        return self.chords[min(i + 1, len(self.chords) - 1)]

    def vel(self, nominal: float, dyn: float, sd: float = 5.0) -> int:
        v = nominal * (0.42 + 0.58 * min(self.energy * dyn + 0.1, 1.15))
        return int(np.clip(round(v + self.rng.normal(0, sd)), 1, 127))

    def bars_of(self, stem: str):
        """(section, absolute bar start beat) for every bar where ``stem`` plays."""
        for s in self.sections:
            if stem in s.active:
                for b in range(s.bars):
                    yield s, (s.bar + b) * self.bar_beats

    # ---------------------------------------------------------------- drums
    def _groove(self, family: str, kind: str, light: bool) -> list:
        rng, e, m = self.rng, self.energy, self.meter
        hot = kind == "chorus"
        ev = []
        if family in ("rock", "rock16"):
            kicks = [0.0, 2.0] + [p for p in (1.5, 2.5, 3.5, 0.75, 3.25)
                                  if rng.random() < 0.15 + 0.3 * e]
            ev += [(p, KICK, 100 if p in (0.0, 2.0) else 85) for p in kicks]
            ev += [(p, SNARE, 105) for p in (1.0, 3.0)]
            step = 0.25 if family == "rock16" and rng.random() < 0.7 else 0.5
            cym = RIDE if hot and e > 0.55 and rng.random() < 0.5 else CHH
            for i in range(int(m / step)):
                p = i * step
                ev.append((p, cym, 85 if p % 1 == 0 else 62))
            if rng.random() < 0.35:
                ev = [x for x in ev if not (x[0] == m - 0.5 and x[1] == CHH)]
                ev.append((m - 0.5, OHH, 75))
        elif family == "half":
            kicks = [0.0] + sorted(set(_pick(rng, (0.75, 1.5, 2.25, 2.5, 2.75, 3.25))
                                       for _ in range(1 + int(rng.integers(3)))))
            ev += [(p, KICK, 105) for p in kicks]
            ev.append((2.0, _pick(rng, (SNARE, SNARE, CLAP)), 105))
            step = _pick(rng, (0.5, 0.25, 0.25))
            for i in range(int(m / step)):
                p = i * step
                ev.append((p, CHH, 80 if p % 1 == 0 else 58))
        elif family == "four":
            ev += [(float(p), KICK, 110) for p in range(m)]
            ev += [(p, _pick(rng, (CLAP, SNARE, 40)), 100) for p in (1.0, 3.0)]
            if rng.random() < 0.6 or hot:
                ev += [(p + 0.5, OHH, 80) for p in range(m)]
            if rng.random() < 0.6:
                ev += [(i * 0.25, CHH, 60 if i % 2 else 75) for i in range(4 * m) if i % 4 != 2]
        elif family == "funk":
            extra = sorted(set(_pick(rng, (0.75, 1.5, 1.75, 2.5, 2.75, 3.25))
                               for _ in range(2 + int(rng.integers(2)))))
            ev += [(p, KICK, 100) for p in [0.0] + extra]
            ev += [(p, SNARE, 105) for p in (1.0, 3.0)]
            for i in range(4 * m):
                p = i * 0.25
                if p not in (1.0, 3.0) and i % 2 and rng.random() < 0.25:
                    ev.append((p, SNARE, 32))
            op = _pick(rng, (1.5, 3.5, None))
            for i in range(4 * m):
                p = i * 0.25
                ev.append((p, OHH if p == op else CHH, 82 if i % 2 == 0 else 55))
        elif family == "ballad":
            ev.append((0.0, KICK, 85))
            if rng.random() < 0.6:
                ev.append((2.5, KICK, 70))
            back = SNARE if hot or self.cfg["kits"] == (32, 40) else _pick(rng, (STICK, SNARE))
            ev += [(p, back, 80) for p in (1.0, 3.0)]
            if rng.random() < 0.5:
                ev += [(i * 0.5, CHH, 55 if i % 2 else 65) for i in range(2 * m)]
            else:
                ev += [(float(i), RIDE, 60) for i in range(m)]
        elif family == "waltz":
            ev.append((0.0, KICK, 90))
            back = _pick(rng, (STICK, SNARE))
            ev += [(1.0, back, 70), (2.0, back, 65)]
            if rng.random() < 0.5:
                ev += [(i * 0.5, CHH, 60 if i % 2 else 70) for i in range(2 * m)]
            else:
                ev += [(float(i), RIDE, 65) for i in range(m)]
        elif family == "jazz":
            ride = (0.0, 1.0, 1 + 2 / 3, 2.0, 3.0, 3 + 2 / 3)
            ev += [(p, RIDE, 80 if p % 1 == 0 else 60) for p in ride]
            ev += [(1.0, PHH, 55), (3.0, PHH, 55)]
            if rng.random() < 0.5:
                ev += [(float(p), KICK, 35) for p in range(m)]
        if light:
            ev = [x for x in ev if x[1] in (KICK, CHH, RIDE, STICK, PHH)]
            ev = [(p, n, v * 0.75) for p, n, v in ev]
        return ev

    def choose(self, stem: str, seq):
        """An instrument for ``stem`` from ``seq`` (programs or (program, pattern) pairs):
        training pieces get neither a test nor a validation held-out one; validation pieces
        prefer their own held-out ones and never get a test one; test pieces prefer theirs."""
        prog = (lambda c: c[0]) if isinstance(seq[0], tuple) else (lambda c: c)
        if self.split == "test":
            new = [c for c in seq if prog(c) in HELD_OUT[stem]]
            if new and self.rng.random() < 0.5:
                return _pick(self.rng, new)
            return _pick(self.rng, seq)
        held = HELD_OUT[stem] | VALID_HELD_OUT[stem]
        if self.split == "valid":
            new = [c for c in seq if prog(c) in VALID_HELD_OUT[stem]]
            if new and self.rng.random() < 0.5:
                return _pick(self.rng, new)
        kept = [c for c in seq if prog(c) not in held]
        if not kept:
            raise AssertionError(f"every {stem} choice {seq} is held out")
        choice = _pick(self.rng, kept)
        if self.split == "train" and stem in TRAIN_TIMBRES and seq is not VOICES and \
                self.rng.random() < TRAIN_TIMBRES_P:
            extra = _pick(self.rng, TRAIN_TIMBRES[stem])
            choice = (extra, choice[1]) if isinstance(choice, tuple) else extra
        return choice

    def drums(self) -> Part:
        rng, cfg = self.rng, self.cfg
        family = _pick(rng, cfg["drums"])
        kit = self.choose("drums", cfg["kits"])
        part = Part("drums", kit, family, bank=128)
        grooves, self.kicks = {}, {}
        for s in self.sections:
            key = (s.kind, s.drums)
            if key not in grooves and s.drums != "off":
                grooves[key] = self._groove(family, s.kind, s.drums == "light")
            self.kicks[s.kind] = sorted({p for p, n, _ in grooves.get(key, ()) if n == KICK})
        fill_p = 0.35 + 0.5 * self.energy
        for si, s in enumerate(self.sections):
            if s.drums == "off":
                continue
            groove = grooves[(s.kind, s.drums)]
            for b in range(s.bars):
                start = (s.bar + b) * self.bar_beats
                last = b == s.bars - 1 and si + 1 < len(self.sections)
                fill_from = self.bar_beats
                if last and s.drums == "full" and rng.random() < fill_p:
                    fill_from = self.bar_beats - (2 if self.energy > 0.7 and rng.random() < 0.5
                                                  else 1)
                for p, n, v in groove:
                    if p >= fill_from:
                        continue
                    if n == KICK and p > 0 and rng.random() < 0.05:
                        continue
                    part.notes.append((start + p, 0.25, n, self.vel(v, s.dyn, 6)))
                if b == 0 and s.drums == "full" and (si > 0 or rng.random() < 0.3):
                    part.notes.append((start, 1.0, _pick(rng, (CRASH, CRASH2)),
                                       self.vel(105, s.dyn)))
                if fill_from < self.bar_beats:
                    step = 0.25 if self.energy > 0.35 else 0.5
                    hits = int((self.bar_beats - fill_from) / step)
                    toms = rng.random() < 0.6
                    for i in range(hits):
                        n = TOMS[min(i * len(TOMS) // hits, 5)] if toms else SNARE
                        part.notes.append((start + fill_from + i * step, 0.25, n,
                                           self.vel(70 + 40 * i / hits, s.dyn)))
        return part

    # ---------------------------------------------------------------- bass
    def bass(self) -> Part:
        rng, cfg = self.rng, self.cfg
        pat = _pick(rng, cfg["bass_pat"])
        part = Part("bass", self.choose("bass", cfg["bass"]), pat)
        prev_root = 38.0
        funk_bars = {}
        for s, start in self.bars_of("bass"):
            for c in [c for c in self.chords if start - 1e-6 <= c.start < start + self.meter]:
                root = _near(c.root, prev_root, 28, 45)
                prev_root = root
                nxt = self.next_chord(c)
                nroot = _near(nxt.root, root, 28, 45)
                fifth = root + 7
                dyn = s.dyn

                def v(nom, dyn=dyn):
                    return self.vel(nom, dyn)

                t0, d = c.start, c.dur
                if pat == "whole":
                    part.notes.append((t0, d * 0.95, root, v(90)))
                elif pat == "root5":
                    half = d / 2 if d >= 2 else d
                    part.notes.append((t0, half * 0.9, root, v(95)))
                    if d >= 2:
                        low5 = fifth - 12 if fifth - 12 >= 28 else fifth
                        p = _pick(rng, (fifth, root + 12, low5))
                        part.notes.append((t0 + half, half * 0.9, p, v(85)))
                elif pat == "eighths":
                    for i in range(int(d * 2)):
                        p = root + 12 if (i % 4 == 3 and rng.random() < 0.3) else root
                        part.notes.append((t0 + i * 0.5, 0.45, p, v(95 if i % 2 == 0 else 82)))
                elif pat == "offbeat":
                    for i in range(int(d)):
                        part.notes.append((t0 + i + 0.5, 0.4, root, v(100)))
                        if self.energy > 0.7:
                            part.notes.append((t0 + i, 0.2, root + 12, v(60)))
                elif pat == "kick":
                    bar0 = math.floor(t0 / self.meter + 1e-9) * self.meter
                    groove = self.kicks.get(s.kind) or [0.0, self.meter - 1.5]
                    hits = [b + k for b in np.arange(bar0, t0 + d, self.meter) for k in groove]
                    hits = [h for h in hits if t0 - 1e-6 <= h < t0 + d - 1e-6] or [t0]
                    if hits[0] > t0 + 1e-6:
                        hits.insert(0, t0)
                    for i, h in enumerate(hits):
                        end = hits[i + 1] if i + 1 < len(hits) else t0 + d
                        p = root
                        if i == len(hits) - 1 and i > 0 and nxt.root != c.root:
                            p = _pick(rng, (fifth, root + 12, nroot + 2 if nroot + 2 <= 47
                                            else nroot - 1))
                        part.notes.append((h, min(end - h, 2.0) * 0.85, p, v(95)))
                elif pat == "walking":
                    beats = int(round(d))
                    for i in range(beats):
                        if i == 0:
                            p = root
                        elif i == beats - 1:
                            p = nroot + _pick(rng, (-1, 1, -2, 2))
                        else:
                            p = _near(_pick(rng, c.pcs[1:] + (c.root,)), root + 4 * i, 28, 50)
                        part.notes.append((t0 + i, 0.92, p, v(88 if i % 2 == 0 else 80)))
                elif pat == "funk":
                    key = (s.kind, int(round(d * 4)))
                    if key not in funk_bars:
                        steps = [0] + [i for i in range(1, int(d * 4)) if rng.random() < 0.3]
                        funk_bars[key] = [(i, _pick(rng, (0, 0, 0, 12, 12, 7, 10, "x")))
                                          for i in steps]
                    for i, off in funk_bars[key]:
                        if off == "x":
                            part.notes.append((t0 + i / 4, 0.1, root, v(40)))
                        else:
                            part.notes.append((t0 + i / 4, 0.45 if i == 0 else 0.2,
                                               root + off, v(100 if i % 4 == 0 else 85)))
                elif pat == "waltz":
                    part.notes.append((t0, 0.9, root, v(92)))
                    if d >= 3:
                        part.notes.append((t0 + 3, 0.9, fifth if fifth <= 47 else fifth - 12,
                                           v(85)))
        return part

    # ---------------------------------------------------------------- accompaniment
    def _voicing(self, pcs, center: float, n: int, spread: bool = False) -> list:
        best, best_score = None, 1e9
        for inv in range(len(pcs)):
            order = list(pcs[inv:] + pcs[:inv])
            for octave in range(2, 8):
                notes, prev = [], -1
                for j in range(n):
                    pc = order[(j * (2 if spread else 1)) % len(order)]
                    p = octave * 12 + pc
                    while p <= prev:
                        p += 12
                    notes.append(p)
                    prev = p
                if notes[0] < 36 or notes[-1] > 96:
                    continue
                score = abs(float(np.mean(notes)) - center)
                if score < best_score:
                    best, best_score = notes, score
        return best

    def other(self, program: int, pat: str, sections: set) -> Part:
        rng = self.rng
        part = Part("other", program, pat)
        center = {"pad": 62, "block": 62, "arp": 66, "strum": 58, "power": 47, "sustain": 50,
                  "stabs": 67, "comp": 62, "oompah": 63}[pat] + rng.integers(-3, 4)
        m = self.meter
        if m == 4:
            block = _pick(rng, ((0, 1, 2, 3), (0, 2), (0, 1.5, 2.5), (0, 1.5, 3), (0, 2, 2.5)))
            strum = _pick(rng, (((0, 1), (1, 1), (1.5, 0), (2.5, 0), (3, 1), (3.5, 0)),
                                ((0, 1), (1, 1), (2, 1), (3, 1)),
                                ((0, 1), (2, 1), (2.5, 0), (3.5, 0)),
                                ((0, 1), (0.5, 0), (1, 1), (1.5, 0), (2, 1), (2.5, 0), (3, 1),
                                 (3.5, 0))))
            stabs = _pick(rng, ((0.5, 1.5, 2.5, 3.5), (1, 3), (0, 0.75, 1.5, 2.5, 3.25),
                                (0.5, 1.75, 2.5, 3.75)))
        else:
            block = _pick(rng, ((0, 1, 2), (0,), (0, 2)))
            strum = _pick(rng, (((0, 1), (1, 1), (2, 1)), ((0, 1), (1, 1), (1.5, 0), (2, 1),
                                                             (2.5, 0))))
            stabs = (1, 2)
        arp_step = 0.25 if self.density > 0.6 and self.tempo < 130 else 0.5
        arp_order = _pick(rng, ("up", "down", "updown", "alberti"))
        pedal = program in PIANOS and pat in ("arp", "block") and self.energy < 0.6
        strum_gap = float(rng.uniform(0.008, 0.02))
        cache = {}
        for s, start in self.bars_of("other"):
            if s.kind not in sections:
                continue
            bar_chords = [c for c in self.chords if start - 1e-6 <= c.start < start + m]
            dyn = s.dyn

            def v(nom, dyn=dyn):
                return self.vel(nom, dyn)

            def voicing(c, n=4, spread=False, ctr=center):
                key = (c.pcs, n, spread, ctr)
                if key not in cache:
                    cache[key] = self._voicing(c.pcs, ctr, n, spread)
                return cache[key]

            if pedal:
                for c in bar_chords:
                    part.ccs.append((c.start, 64, 0))
                    part.ccs.append((c.start + 0.1, 64, 127))
            if pat in ("pad", "sustain"):
                for c in bar_chords:
                    notes = ([c.root + 12 * (center // 12), c.root + 12 * (center // 12) + 7]
                             if pat == "sustain" else voicing(c))
                    for p in notes:
                        part.notes.append((c.start, c.dur * 0.98, p, v(80)))
                continue
            if pat == "comp":
                spots = tuple(x for x in (0, 0.5, 1.5, 2, 2.5, 3.5, 1, 3) if x < m)
                hits = sorted(set(_pick(rng, spots) for _ in range(1 + int(rng.integers(3)))))
                for h in hits:
                    c = self.chord_at(start + h)
                    shell = [c.pcs[1], c.pcs[-1]] + ([(c.root + 2) % 12] if len(c.pcs) > 3
                                                     else [c.pcs[2]])
                    for p in self._voicing(tuple(shell), center, 3):
                        part.notes.append((start + h, _pick(rng, (0.4, 0.7, 1.0)), p, v(75)))
                continue
            if pat == "arp":
                notes_per_bar = int(m / arp_step)
                for i in range(notes_per_bar):
                    t = start + i * arp_step
                    c = self.chord_at(t)
                    vo = voicing(c, 5, True)
                    k = len(vo)
                    if arp_order == "up":
                        idx = i % k
                    elif arp_order == "down":
                        idx = k - 1 - i % k
                    elif arp_order == "updown":
                        cyc = list(range(k)) + list(range(k - 2, 0, -1))
                        idx = cyc[i % len(cyc)]
                    else:
                        idx = (0, k - 1, 1, k - 1)[i % 4]
                    part.notes.append((t, arp_step * 1.8, vo[idx], v(78 if i % 2 == 0 else 66)))
                continue
            if pat == "power":
                step = 0.5 if self.energy > 0.5 else 1.0
                for i in range(int(m / step)):
                    t = start + i * step
                    c = self.chord_at(t)
                    r = _near(c.root, center, 36, 58)
                    for p in (r, r + 7, r + 12):
                        part.notes.append((t, step * 0.85, p, v(100 if i % 2 == 0 else 88)))
                continue
            if pat == "strum":
                for pos, down in strum:
                    t = start + pos
                    c = self.chord_at(t)
                    vo = voicing(c, 6, True, 58)
                    if not down:
                        vo = vo[::-1][:4]
                    nxt = [p for p, _ in strum if p > pos]
                    dur = (nxt[0] if nxt else m) - pos
                    for j, p in enumerate(vo):
                        part.notes.append((t, dur * 0.95, p, v(88 if down else 68),
                                           j * strum_gap))
                continue
            rhythm = {"block": block, "stabs": stabs, "oompah": (1, 2) if m == 3 else (1, 3)}[pat]
            for i, pos in enumerate(rhythm):
                t = start + pos
                c = self.chord_at(t)
                nxt = rhythm[i + 1] if i + 1 < len(rhythm) else m
                dur = {"block": (nxt - pos) * 0.9, "stabs": 0.2, "oompah": 0.45}[pat]
                for p in voicing(c):
                    part.notes.append((t, dur, p, v(85 if pos % 1 == 0 else 75)))
        return part

    # ---------------------------------------------------------------- melody
    def _rhythm(self, length: float, density: float) -> list:
        rng = self.rng
        cells = (((4.0,), (3.0, 1.0), (2.0, 2.0), (2.0, 1.0, 1.0), (1.5, 0.5, 2.0), (2.0,)),
                 ((1.0, 1.0), (1.5, 0.5), (0.5, 0.5, 1.0), (2.0,), (1.0, 0.5, 0.5),
                  (0.75, 0.25, 1.0)),
                 ((0.5, 0.5), (0.25, 0.25, 0.5), (0.5, 0.25, 0.25), (0.75, 0.25), (1.0,),
                  (0.25, 0.25, 0.25, 0.25)))
        d = density
        p = np.array([(1 - d) ** 2, 2 * d * (1 - d), d * d])
        out, pos = [], 0.0
        if rng.random() < 0.3:
            pos = _pick(rng, (0.5, 1.0))
        end = length - _pick(rng, (0.5, 1.0, 1.0, 2.0))
        while pos < end - 0.2:
            cell = _pick(rng, cells[int(rng.choice(3, p=p / p.sum()))])
            for du in cell:
                du = min(du, end - pos)
                if du < 0.25:
                    pos = end
                    break
                if not (out and rng.random() < 0.08):
                    out.append((pos, du))
                pos += du
        return out or [(0.0, min(2.0, length))]

    def lead(self) -> Part:
        rng, cfg = self.rng, self.cfg
        voice = rng.random() < cfg["voice_p"]
        program = self.choose("vocals", VOICES if voice else cfg["leads"])
        part = Part("vocals", program, "voice" if voice else "lead",
                    pan=int(64 + rng.integers(-8, 9)))
        if program in VIBRATO:
            part.init_cc[1] = int(VIBRATO[program] + rng.integers(-8, 9))
        density = self.density * (0.75 if voice else 1.0)
        center = LEAD_CENTER.get(program, 67) + int(rng.integers(-2, 3))
        lo, hi = center - 9, center + 9
        pitches = [p for p in range(lo - 12, hi + 13) if (p - self.key) % 12 in self.scale]
        ci = int(np.argmin([abs(p - center) for p in pitches]))
        cur = ci
        phrase = 2 * self.meter if self.tempo < 120 else 4 * self.meter
        legato = float(rng.uniform(0.88, 1.0)) if voice else float(rng.uniform(0.6, 0.95))
        steps = np.array([-4, -3, -2, -1, 0, 1, 2, 3, 4])
        sp = np.array([0.03, 0.05, 0.14, 0.27, 0.08, 0.27, 0.1, 0.04, 0.02])
        motif = {}
        for s in self.sections:
            if "vocals" not in s.active:
                continue
            lift = 2 if s.kind == "chorus" else 0
            t, end = s.bar * self.meter, (s.bar + s.bars) * self.meter
            while t < end - 1e-6:
                length = min(phrase, end - t)
                key = (s.kind, length)
                if key not in motif or rng.random() < 0.4:
                    motif[key] = self._rhythm(length, density)
                rhythm = motif[key]
                for i, (on, du) in enumerate(rhythm):
                    b = t + on
                    c = self.chord_at(b)
                    step = int(rng.choice(steps, p=sp))
                    target = ci + lift
                    if (cur - target) * step > 0 and abs(cur - target) > 3 and rng.random() < 0.6:
                        step = -step
                    cur = int(np.clip(cur + step, 0, len(pitches) - 1))
                    strong = on % 1 == 0 and (on % 2 == 0 or du >= 1)
                    if strong or i == len(rhythm) - 1:
                        for off in (0, 1, -1, 2, -2, 3, -3):
                            j = cur + off
                            if 0 <= j < len(pitches) and pitches[j] % 12 in c.pcs:
                                cur = j
                                break
                    accent = 8 if on % 1 == 0 else 0
                    part.notes.append((b, du * legato, pitches[cur],
                                       self.vel(88 + accent, s.dyn, 6)))
                t += length
        return part

    # ---------------------------------------------------------------- dynamics
    def swells(self, parts):
        """Expression (CC 11) ramps per section for dynamic pieces (same curve on every part)."""
        if not self.dynamic:
            return
        rng, curve = self.rng, []
        for s in self.sections:
            a = int(np.clip(70 + 50 * (s.dyn - 0.7) + rng.normal(0, 8), 40, 127))
            b = int(np.clip(a + rng.choice((-25, -10, 15, 30)), 35, 127))
            beats = s.bars * self.meter
            last = None
            for i in range(int(beats * 2) + 1):
                val = int(round(a + (b - a) * i / (beats * 2)))
                if val != last:
                    curve.append((s.bar * self.meter + i * 0.5, 11, val))
                    last = val
        for p in parts:
            if p.stem != "drums":
                p.ccs.extend(curve)

    # ---------------------------------------------------------------- to seconds
    def _time(self, beat: float) -> float:
        whole = math.floor(beat + 1e-9)
        frac = beat - whole
        if abs(frac - 0.5) < 1e-6:
            frac += self.swing
        elif abs(frac - 0.25) < 1e-6 or abs(frac - 0.75) < 1e-6:
            frac += self.swing16
        return (whole + frac) * self.spb

    def finalize(self, part: Part):
        sd = {"drums": 0.004, "bass": 0.006, "other": 0.008, "vocals": 0.01}[part.stem]
        sd *= self.cfg["humanize"]
        rng = self.rng
        notes = []
        for n in part.notes:
            b, d, p, v = n[:4]
            off = n[4] if len(n) > 4 else 0.0
            t0 = max(0.0, self._time(b) + off + (rng.normal(0, sd) if sd else 0.0))
            t1 = max(t0 + 0.03, self._time(b + d) + off)
            if t0 < self.seconds and 0 <= p <= 127:
                notes.append((t0, t1 - t0, int(p), int(v)))
        # no overlapping notes of one pitch (a note-off would cut the next note)
        notes.sort(key=lambda x: (x[2], x[0]))
        for i in range(len(notes) - 1):
            a, b = notes[i], notes[i + 1]
            if a[2] == b[2] and a[0] + a[1] > b[0] - 0.002:
                notes[i] = (a[0], max(0.005, b[0] - 0.002 - a[0]), a[2], a[3])
        notes.sort()
        part.notes = notes
        part.ccs = sorted((self._time(b), cc, int(v)) for b, cc, v in part.ccs
                          if self._time(b) < self.seconds)

    def compose(self) -> Piece:
        rng = self.rng
        self.form()
        self.harmony()
        parts = [self.drums(), self.bass()]
        choices = self.cfg["other"]
        prog, pat = self.choose("other", choices)
        parts.append(self.other(prog, pat, {"intro", "verse", "chorus", "break"}))
        if rng.random() < 0.25 + 0.5 * self.energy:
            rest = [c for c in choices if c[1] != pat] or list(choices)
            prog2, pat2 = self.choose("other", rest)
            where = {"chorus"} if rng.random() < 0.5 else {"verse", "chorus", "break"}
            parts.append(self.other(prog2, pat2, where))
        parts.append(self.lead())
        self.swells(parts)
        pans = [int(rng.integers(28, 100))]
        for p in parts:
            if p.stem == "other":
                p.pan = pans[-1]
                pans.append(128 - pans[-1])
        for p in parts:
            self.finalize(p)
        # every stem must sound in the rendered span
        for stem in STEMS:
            if not any(n[0] < self.seconds - 0.3 for p in parts if p.stem == stem
                       for n in p.notes):
                raise _Retry(stem)
        gain_db = {"vocals": rng.uniform(-3, 4), "drums": rng.uniform(-6, 2),
                   "bass": rng.uniform(-6, 1), "other": rng.uniform(-7, 1)}
        peak_db = float(np.clip(-26 + 26 * self.energy + rng.normal(0, 2.5), -30, -0.6))
        reverb = {"rt60": float(rng.uniform(0.3, 2.4)), "predelay": float(rng.uniform(0.005,
                                                                                      0.04)),
                  "damp": float(rng.uniform(0.2, 0.8)),
                  "vocals": float(rng.uniform(0.12, 0.5)), "drums": float(rng.uniform(0.03, 0.25)),
                  "bass": float(rng.uniform(0.0, 0.06)), "other": float(rng.uniform(0.1, 0.45))}
        if self.style == "electronic" and rng.random() < 0.5:
            reverb["drums"] *= 0.3
        return Piece(self.seed, self.seconds, self.style, self.tempo, self.key, self.mode,
                     self.meter, self.swing, self.energy, self.sections, parts, gain_db,
                     10 ** (peak_db / 20), reverb)


class _Retry(Exception):
    pass


def compose(seed: int, seconds: float = 20.0) -> Piece:
    """The piece for ``seed`` (notes, instruments, levels); deterministic and cheap."""
    for attempt in range(8):
        try:
            return _Composer(seed, seconds, attempt).compose()
        except _Retry:
            continue
    raise RuntimeError(f"could not compose a piece with every stem in {seconds} s")


# ==================================================================== rendering
_ANCHORS: dict = {}
_LOCK = threading.Lock()


def find_soundfont(name: str = "fluidr3") -> Path:
    """The SoundFont of :data:`SOUNDFONTS` called ``name`` (default FluidR3 GM), or an error
    saying how to install it."""
    if name not in SOUNDFONTS:
        raise ValueError(f"unknown SoundFont {name!r}: choose one of {', '.join(SOUNDFONTS)}")
    paths, package = SOUNDFONTS[name]
    for p in paths:
        if Path(p).is_file():
            return Path(p)
    raise RuntimeError(f"the {name} SoundFont ({Path(paths[0]).name}) is missing: install it "
                       f"with: apt-get install {package} libfluidsynth3 and pip install "
                       "pyfluidsynth")


def _import_fluidsynth():
    try:
        import fluidsynth
    except (ImportError, OSError) as exc:
        raise RuntimeError(f"FluidSynth is not available ({exc}): {INSTALL_HINT}") from exc
    if not hasattr(fluidsynth, "Synth") or getattr(fluidsynth._fl, "fluid_synth_write_float",
                                                    None) is None:
        raise RuntimeError("this fluidsynth module is not pyfluidsynth: " + INSTALL_HINT)
    return fluidsynth


class _Synth:
    """One FluidSynth instance (SoundFont loaded once), rendering float stereo offline."""

    def __init__(self, fs, sf2: Path, sample_rate: int):
        self.fs = fs
        self.synth = fs.Synth(gain=1.0, samplerate=float(sample_rate), **{
            "synth.reverb.active": 0, "synth.chorus.active": 0, "synth.polyphony": 512})
        self.sfid = self.synth.sfload(str(sf2), update_midi_preset=1)
        if self.sfid < 0:
            raise RuntimeError(f"FluidSynth could not load {sf2}: " + INSTALL_HINT)
        wf = fs._fl.fluid_synth_write_float
        wf.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                       ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        wf.restype = ctypes.c_int
        self.write = wf
        self.rendered = 0
        self.scratch = np.zeros((2, 4 * _BLOCK), np.float32)

    def close(self):
        if self.synth is not None:
            self.synth.delete()
            self.synth = None

    def _run(self, out: np.ndarray, start: int, stop: int):
        n = stop - start
        if n > 0:
            base = out.ctypes.data
            stride = out.shape[1] * 4
            self.write(self.synth.synth, n, base, start, 1, base + stride, start, 1)
            self.rendered += n

    def _clean(self):
        """Silence everything and align to a block boundary, so a stem rendered on a reused
        synth is bit-identical to one rendered on a fresh synth."""
        s = self.synth
        s.system_reset()
        s.all_sounds_off(-1)    # system_reset leaves voices sounding (and revives killed ones)
        pad = (-self.rendered) % _BLOCK + 2 * _BLOCK
        self._run(self.scratch, 0, pad)

    def render(self, parts, frames: int, sample_rate: int) -> np.ndarray:
        self._clean()
        s, sfid = self.synth, self.sfid
        events = []
        melodic = 0
        for part in parts:
            if part.stem == "drums":
                ch = DRUM_CHANNEL
            else:
                ch = melodic
                melodic += 1
            s.program_select(ch, sfid, part.bank, part.program)
            s.cc(ch, 7, 100)
            s.cc(ch, 10, int(part.pan))
            for cc, val in part.init_cc.items():
                s.cc(ch, int(cc), int(val))
            for t, d, p, v in part.notes:
                a = int(round(t * sample_rate))
                if a >= frames:
                    continue
                events.append((a, 2, ch, p, v))
                b = int(round((t + d) * sample_rate))
                if b < frames:
                    events.append((b, 0, ch, p, 0))
            for t, cc, val in part.ccs:
                a = int(round(t * sample_rate))
                if a < frames:
                    events.append((a, 1, ch, cc, val))
        events.sort()
        out = np.zeros((2, frames), np.float32)
        pos = 0
        for a, kind, ch, x, y in events:
            if a > pos:
                self._run(out, pos, a)
                pos = a
            if kind == 2:
                s.noteon(ch, x, y)
            elif kind == 0:
                s.noteoff(ch, x)
            else:
                s.cc(ch, x, y)
        self._run(out, pos, frames)
        return out


def _new_synth(sample_rate: int, soundfont: str = "fluidr3") -> _Synth:
    """A fresh synth per piece: the output of a seed never depends on what was rendered
    before.  One anchor synth stays loaded so FluidSynth's sample cache keeps the SoundFont's
    samples in memory and a fresh synth loads in about 40 ms instead of reading 148 MB."""
    sf2 = find_soundfont(soundfont)
    fs = _import_fluidsynth()
    with _LOCK:
        if str(sf2) not in _ANCHORS:
            _ANCHORS[str(sf2)] = _Synth(fs, sf2, int(sample_rate))
    return _Synth(fs, sf2, int(sample_rate))


def _reverb_ir(piece: Piece, sample_rate: int) -> np.ndarray:
    """A seeded stereo room response (exponentially decaying, darker as it decays)."""
    rv = piece.reverb
    rng = np.random.default_rng([_STREAM, 0x7276, piece.seed])
    n = int(min(rv["rt60"] * 1.1, 3.0) * sample_rate)
    pre = int(rv["predelay"] * sample_rate)
    t = np.arange(n) / sample_rate
    noise = rng.standard_normal((2, n))
    a = 0.3 + 0.6 * rv["damp"]
    w = np.fft.rfftfreq(n) * 2 * np.pi          # one-pole low-pass, applied in frequency
    dark = np.fft.irfft(np.fft.rfft(noise, axis=-1) * ((1 - a) / (1 - a * np.exp(-1j * w))),
                        n=n, axis=-1)
    fast = np.exp(-6.91 * t / (rv["rt60"] * 0.45))
    slow = np.exp(-6.91 * t / rv["rt60"])
    ir = noise * fast + 1.5 * dark * slow
    ir[:, : int(0.002 * sample_rate)] *= np.linspace(0, 1, int(0.002 * sample_rate))
    ir /= np.sqrt(np.sum(ir ** 2, axis=-1, keepdims=True))
    return np.concatenate([np.zeros((2, pre)), ir], axis=1).astype(np.float32)


def _add_reverb(dry: np.ndarray, piece: Piece, sample_rate: int) -> np.ndarray:
    """Each stem plus its own send into one shared (linear) room, then its level."""
    import scipy.fft as sfft
    ir = _reverb_ir(piece, sample_rate)
    frames = dry.shape[-1]
    n = sfft.next_fast_len(frames + ir.shape[-1] - 1, real=True)
    sends = np.array([piece.reverb[s] for s in STEMS], np.float32)
    gains = np.array([10 ** (piece.gain_db[s] / 20) for s in STEMS], np.float32)
    spec = sfft.rfft(dry, n=n, axis=-1) * (sfft.rfft(ir, n=n, axis=-1) * sends[:, None, None])
    wet = sfft.irfft(spec, n=n, axis=-1)[..., :frames]
    wet += dry
    wet *= gains[:, None, None]
    return wet.astype(np.float32, copy=False)


def render_piece(seed: int, seconds: float = 20.0, sample_rate: int = 44100,
                 soundfont: str = "fluidr3") -> dict:
    """Render one piece: {"vocals", "drums", "bass", "other", "mix"} float32 (2, frames).

    ``soundfont`` names the instruments' samples (:data:`SOUNDFONTS`); the notes, programs,
    levels and room depend on the seed only.

    The mix is the exact float32 sum of the four stems; peaks stay below 1.0.  Raises
    RuntimeError (naming the packages to install) when FluidSynth or the SoundFont is missing.
    """
    frames = int(round(seconds * sample_rate))
    if frames <= 0:
        raise ValueError("seconds must be positive")
    piece = compose(seed, seconds)
    synth = _new_synth(sample_rate, soundfont)
    try:
        dry = np.stack([synth.render([p for p in piece.parts if p.stem == stem], frames,
                                     sample_rate) for stem in STEMS])
    finally:
        synth.close()
    stems = _add_reverb(dry, piece, sample_rate)
    fade = min(frames, int(0.02 * sample_rate))
    stems[..., frames - fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    mix = stems.sum(axis=0)
    top = max(float(np.abs(mix).max()), float(np.abs(stems).max()), 1e-9)
    stems = (stems * np.float32(min(piece.peak, 0.97) / top)).astype(np.float32)
    out = {s: np.ascontiguousarray(stems[i]) for i, s in enumerate(STEMS)}
    out["mix"] = out["vocals"] + out["drums"] + out["bass"] + out["other"]
    return out


def _complete(folder: Path) -> bool:
    return (folder / "meta.json").is_file() and all(
        (folder / f"{n}.wav").is_file() for n in (*STEMS, "mix"))


def _render_to(dest: Path, seed: int, seconds: float, sample_rate: int,
               soundfont: str = "fluidr3") -> Path:
    import soundfile as sf
    if _complete(dest):
        return dest
    audio = render_piece(seed, seconds, sample_rate, soundfont)
    tmp = dest.parent / f".tmp-{dest.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, x in audio.items():
        sf.write(str(tmp / f"{name}.wav"), x.T, int(sample_rate), subtype="FLOAT")
    meta = compose(seed, seconds).describe()
    meta["soundfont"] = find_soundfont(soundfont).name
    meta["sample_rate"] = int(sample_rate)
    meta["peaks"] = {k: round(float(np.abs(v).max()), 5) for k, v in audio.items()}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest


def default_folder(seconds: float, sample_rate: int, split: str | None = None,
                   soundfont: str = "fluidr3") -> Path:
    """Where :func:`render_set` puts pieces by default (under the rtengine cache)."""
    sf = "" if soundfont == "fluidr3" else f"-{soundfont}"
    parts = ["music", f"v{VERSION}-{int(sample_rate)}hz-{seconds:g}s{sf}"]
    return cache_dir(*parts, split) if split else cache_dir(*parts)


def render_set(n: int, seconds: float, sample_rate: int, seed0: int = 0,
               folder=None, split: str | None = None, jobs: int = 1,
               progress: bool = False, soundfont: str = "fluidr3") -> list:
    """Render pieces as folders of float WAVs (the four stems, mix.wav and meta.json);
    pieces already on disk are skipped, so an interrupted run resumes.

    Without ``split`` the pieces are seeds ``seed0 .. seed0+n-1``; with ``split`` ("train",
    "valid" or "test") they are that split's pieces ``seed0 .. seed0+n-1`` (see
    :func:`split_seeds`).  ``jobs`` > 1 renders in that many processes; ``soundfont`` picks
    the samples (:data:`SOUNDFONTS`).  Returns the folders."""
    find_soundfont(soundfont)                    # a clear error before any work
    seeds = split_seeds(split, n, seed0) if split else range(seed0, seed0 + n)
    root = (Path(folder) if folder is not None
            else default_folder(seconds, sample_rate, split, soundfont))
    root.mkdir(parents=True, exist_ok=True)
    dests = [root / f"piece{seed:07d}" for seed in seeds]
    todo = [(d, s) for d, s in zip(dests, seeds) if not _complete(d)]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), unit="piece", desc=f"rendering {split or 'pieces'}")
    if jobs <= 1 or len(todo) <= 1:
        for d, s in todo:
            _render_to(d, s, seconds, sample_rate, soundfont)
            if bar is not None:
                bar.update()
    else:
        from concurrent.futures import ProcessPoolExecutor
        import multiprocessing as mp
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            futs = [pool.submit(_render_to, d, s, seconds, sample_rate, soundfont) for d, s in todo]
            for f in futs:
                f.result()
                if bar is not None:
                    bar.update()
    if bar is not None:
        bar.close()
    return dests


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rtengine.data.music",
                                 description="Render varied multitrack music pieces "
                                             "(FluidSynth + FluidR3 GM).")
    ap.add_argument("--n", type=int, default=None, help="number of pieces (default 4)")
    ap.add_argument("--hours", type=float, default=None,
                    help="render this many hours instead of --n pieces")
    ap.add_argument("--split", choices=tuple(SPLITS), default=None,
                    help="render that split's pieces (train/valid/test; validation and test "
                         "pieces also use instruments of their own, never in training)")
    ap.add_argument("--jobs", type=int, default=1, help="render in this many processes")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each piece")
    ap.add_argument("--sample-rate", "--sr", type=int, default=44100)
    ap.add_argument("--seed0", type=int, default=0,
                    help="seed of the first piece (with --split: index within the split)")
    ap.add_argument("--soundfont", choices=tuple(SOUNDFONTS), default="fluidr3",
                    help="instrument samples (default fluidr3; musescore: MuseScore General, "
                         "more timbres for training)")
    ap.add_argument("--out", default=None, help="output folder (default: the rtengine cache)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.n is not None and args.hours is not None:
        ap.error("give --n or --hours, not both")
    n = (int(math.ceil(args.hours * 3600 / args.seconds)) if args.hours is not None
         else args.n if args.n is not None else 4)
    try:
        paths = render_set(n, args.seconds, args.sample_rate, args.seed0, args.out,
                           split=args.split, jobs=max(1, args.jobs), progress=n > 8,
                           soundfont=args.soundfont)
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for p in paths:
        try:
            meta = json.loads((p / "meta.json").read_text())
            print(f"{p}  {meta['style']:10s} {meta['tempo']:5.0f} bpm  {meta['key']} "
                  f"{meta['mode']}")
        except (OSError, ValueError, KeyError):
            print(p)
    print(f"{len(paths)} pieces in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
