"""MIDI control: a map file (TOML) turns MIDI messages into parameter targets.

    [[map]]
    cc = 7                    # 7-bit control change
    channel = 1               # 1..16; omit for any channel
    target = "gain.gain_db"   # stage name . parameter id
    min = -60.0               # default: the parameter's range
    max = 0.0
    curve = "linear"          # auto (the parameter's own scale), linear, log, exp
    invert = false
    takeover = "pickup"       # none, pickup, scale
    feedback = true           # send the value back (motor faders, LED rings)

Other sources, one per entry: ``cc14 = N`` (MSB on N, LSB on N + 32),
``nrpn = N`` / ``rpn = N`` (data entry 6/38, increment 96, decrement 97),
``pitchbend = true``, ``note = N`` with ``mode = "toggle"`` or ``"momentary"``,
``osc = "/1/fader1"`` (an OSC address sending 0..1, see rtengine.osc),
``cc = N`` with ``relative = "twos_complement" | "binary_offset" |
"sign_magnitude"`` (and ``step``, the fraction of the range per tick,
``acceleration``), and ``program = true`` with ``presets = [chain files]``.

The mapper runs on a control thread: it calls ``engine.set`` (plain stores
the runner ramps) and never touches the audio thread.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import RtEngineError

SOURCES = ("cc", "cc14", "nrpn", "rpn", "pitchbend", "note", "program", "osc")
CURVES = ("auto", "linear", "log", "exp")
TAKEOVERS = ("none", "pickup", "scale")
RELATIVE = ("twos_complement", "binary_offset", "sign_magnitude")
KEYS = {"cc", "cc14", "nrpn", "rpn", "pitchbend", "note", "program", "osc", "channel", "target",
        "min",
        "max", "curve", "invert", "takeover", "feedback", "mode", "relative", "step",
        "acceleration", "presets"}
PICKUP_WINDOW = 0.03           # a control "meets" the value within 3 % of its travel


class MidiMapError(RtEngineError):
    """A MIDI map file is malformed or names something the engine lacks."""


@dataclass
class Mapping:
    source: str
    number: int = 0
    channel: int | None = None             # 0..15
    target: str = ""
    lo: float = 0.0
    hi: float = 1.0
    curve: str = "auto"
    invert: bool = False
    takeover: str = "none"
    feedback: bool = False
    mode: str = "toggle"
    relative: str | None = None
    step: float = 1.0 / 127.0
    acceleration: float = 0.0
    presets: list[str] = field(default_factory=list)
    address: str = ""                      # OSC address (source "osc")
    param: object = None                   # rtengine.params.Param of the target
    # state
    last_x: float | None = None            # last control position (0..1)
    picked: bool = False
    set_value: float | None = None         # what this mapping last set
    sent: tuple | None = None              # last feedback sent


# ---- value shaping -------------------------------------------------------------------
def _shape(m: Mapping, x: float) -> float:
    """Control position 0..1 to a parameter value."""
    x = min(max(x, 0.0), 1.0)
    if m.invert:
        x = 1.0 - x
    p = m.param
    curve = m.curve
    if curve == "auto":
        curve = "geometric" if p.scale == "log" and m.lo > 0 else "linear"
    if curve == "log":                     # fast at the start
        x = math.log10(1.0 + 9.0 * x)
    elif curve == "exp":                   # slow at the start
        x = (10.0 ** x - 1.0) / 9.0
    if curve == "geometric":
        v = m.lo * (m.hi / m.lo) ** x
    else:
        v = m.lo + x * (m.hi - m.lo)
    if p.discrete:
        v = float(round(v))
    return min(max(v, p.min), p.max)


def _unshape(m: Mapping, v: float) -> float:
    """Parameter value back to a control position 0..1 (for feedback and takeover)."""
    p = m.param
    curve = m.curve
    if curve == "auto":
        curve = "geometric" if p.scale == "log" and m.lo > 0 else "linear"
    if m.hi == m.lo:
        x = 0.0
    elif curve == "geometric":
        x = math.log(max(v, 1e-30) / m.lo) / math.log(m.hi / m.lo)
    else:
        x = (v - m.lo) / (m.hi - m.lo)
    x = min(max(x, 0.0), 1.0)
    if curve == "log":
        x = (10.0 ** x - 1.0) / 9.0
    elif curve == "exp":
        x = math.log10(1.0 + 9.0 * x)
    return 1.0 - x if m.invert else x


def decode_relative(mode: str, v: int) -> int:
    """Signed ticks of a relative encoder message value (0..127)."""
    if mode == "twos_complement":
        return v - 128 if v >= 64 else v
    if mode == "binary_offset":
        return v - 64
    return -(v & 63) if v & 64 else (v & 63)      # sign_magnitude


# ---- the map file ---------------------------------------------------------------------
def read_map(path) -> list[dict]:
    """The [[map]] entries of a MIDI map file (syntax only; load_map checks them
    against an engine)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MidiMapError(f"MIDI map {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MidiMapError(f"MIDI map {path}: {exc}") from None
    entries = data.get("map")
    if not isinstance(entries, list) or not entries:
        raise MidiMapError(f"MIDI map {path}: no [[map]] entries")
    return entries


def load_map(path, engine) -> list[Mapping]:
    path = Path(path)
    return [_entry(e, i, path, engine) for i, e in enumerate(read_map(path), 1)]


def _entry(e: dict, i: int, path: Path, engine) -> Mapping:
    where = f"MIDI map {path}: entry {i}"
    if not isinstance(e, dict):
        raise MidiMapError(f"{where}: expected a table")
    unknown = set(e) - KEYS
    if unknown:
        raise MidiMapError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    sources = [s for s in SOURCES if s in e]
    if len(sources) != 1:
        raise MidiMapError(f"{where}: give exactly one of {', '.join(SOURCES)}")
    src = sources[0]
    m = Mapping(src)
    if src in ("cc", "cc14", "nrpn", "rpn", "note"):
        hi_num = {"cc": 127, "cc14": 31, "nrpn": 16383, "rpn": 16383, "note": 127}[src]
        num = e[src]
        if isinstance(num, bool) or not isinstance(num, int) or not 0 <= num <= hi_num:
            raise MidiMapError(f"{where}: {src} must be a number 0..{hi_num}, got {num!r}")
        m.number = num
    if src == "osc":
        addr = e["osc"]
        if not isinstance(addr, str) or not addr.startswith("/"):
            raise MidiMapError(f"{where}: osc must be an address like \"/1/fader1\"")
        m.address = addr
    if "channel" in e:
        ch = e["channel"]
        if isinstance(ch, bool) or not isinstance(ch, int) or not 1 <= ch <= 16:
            raise MidiMapError(f"{where}: channel must be 1..16, got {ch!r}")
        m.channel = ch - 1
    if src == "program":
        presets = e.get("presets")
        if not isinstance(presets, list) or not presets:
            raise MidiMapError(f"{where}: program needs presets = [\"chain.toml\", ...]")
        m.presets = [str((path.parent / p).resolve()) for p in presets]
        for p in m.presets:
            if not Path(p).exists():
                raise MidiMapError(f"{where}: preset {p} does not exist")
        return m
    target = e.get("target")
    if not isinstance(target, str):
        raise MidiMapError(f"{where}: missing target = \"stage.param_id\"")
    try:
        engine.get(target)
        _, param, _ = engine._lookup(target)
    except RtEngineError as exc:
        raise MidiMapError(f"{where}: {exc}") from None
    m.target, m.param = target, param
    m.lo = float(e.get("min", param.min))
    m.hi = float(e.get("max", param.max))
    for name, v in (("min", m.lo), ("max", m.hi)):
        if not param.min <= v <= param.max:
            raise MidiMapError(f"{where}: {name} = {v:g} is outside {target}'s range "
                               f"[{param.min:g}, {param.max:g}]")
    m.curve = e.get("curve", "auto")
    if m.curve not in CURVES:
        raise MidiMapError(f"{where}: curve must be one of {', '.join(CURVES)}")
    if m.curve == "auto" and param.scale == "log" and m.lo <= 0:
        m.curve = "linear"
    m.takeover = e.get("takeover", "none")
    if m.takeover not in TAKEOVERS:
        raise MidiMapError(f"{where}: takeover must be one of {', '.join(TAKEOVERS)}")
    m.invert = bool(e.get("invert", False))
    m.feedback = bool(e.get("feedback", False))
    if src == "note":
        m.mode = e.get("mode", "toggle")
        if m.mode not in ("toggle", "momentary"):
            raise MidiMapError(f"{where}: mode must be toggle or momentary")
    if "relative" in e:
        if src != "cc":
            raise MidiMapError(f"{where}: relative works with cc only")
        m.relative = e["relative"]
        if m.relative not in RELATIVE:
            raise MidiMapError(f"{where}: relative must be one of {', '.join(RELATIVE)}")
        m.step = float(e.get("step", 1.0 / 127.0))
        m.acceleration = float(e.get("acceleration", 0.0))
        if not 0 < m.step <= 1 or m.acceleration < 0:
            raise MidiMapError(f"{where}: step must be in (0, 1] and acceleration >= 0")
    return m


# VST3 numbers a channel's controllers 0..127 (CCs), 128 (channel pressure), 129 (pitch bend)
PITCH_BEND = 129


def controllers(mappings) -> set[tuple[int, int]]:
    """The (channel 0..15, controller) pairs ``mappings`` listen to, numbered as VST3 does
    (0..127 a CC, 129 pitch bend): what a DAW must hand on for the map to work.  A 14-bit
    CC is its MSB and LSB, an NRPN or RPN its selection and data-entry controllers; notes
    and program changes are not controllers."""
    out: set[tuple[int, int]] = set()
    for m in mappings:
        if m.source == "cc":
            nums: tuple[int, ...] = (m.number,)
        elif m.source == "cc14":
            nums = (m.number, m.number + 32)
        elif m.source == "nrpn":
            nums = (99, 98, 6, 38, 96, 97)
        elif m.source == "rpn":
            nums = (101, 100, 6, 38, 96, 97)
        elif m.source == "pitchbend":
            nums = (PITCH_BEND,)
        else:
            continue
        chans = range(16) if m.channel is None else (m.channel,)
        out.update((c, n) for c in chans for n in nums)
    return out


# ---- the mapper ------------------------------------------------------------------------
class Mapper:
    """Turns MIDI messages into ``engine.set`` calls and produces feedback.

    ``on_program(path)`` is called for a program change mapped to a preset.
    Control thread only.
    """

    def __init__(self, engine, mappings: list[Mapping],
                 on_program: Callable[[str], None] | None = None):
        self.engine = engine
        self.mappings = mappings
        self.on_program = on_program
        self._msb = {}                      # (channel, cc) -> last MSB of 14-bit pairs
        self._lsb = {}
        self._sel = {}                      # channel -> ("nrpn"|"rpn", number) or None
        self._sel_parts = {}                # channel -> [nrpn msb, lsb, rpn msb, lsb]
        self._data = {}                     # (channel, kind, number) -> 14-bit value
        self.errors = 0                     # malformed messages seen

    @classmethod
    def from_file(cls, path, engine, on_program=None) -> "Mapper":
        return cls(engine, load_map(path, engine), on_program)

    # -- applying ---------------------------------------------------------------------
    def _set(self, m: Mapping, value: float) -> None:
        self.engine.set(m.target, value)

    def _absolute(self, m: Mapping, pos: float) -> None:
        """A control at position pos (0..1) moved."""
        current = self.engine.get(m.target)
        if m.set_value is not None and abs(current - m.set_value) > 1e-6 * (1 + abs(current)):
            m.picked = False                  # changed elsewhere (preset, OSC, DAW)
        x = pos
        if m.takeover == "pickup" and not m.picked:
            here = _unshape(m, current)
            crossed = m.last_x is not None and (m.last_x - here) * (pos - here) <= 0
            m.last_x = pos
            if abs(pos - here) > PICKUP_WINDOW and not crossed:
                return                        # not yet at the parameter's value
            m.picked = True
        elif m.takeover == "scale" and m.last_x is not None and pos != m.last_x:
            # move the rest of the way in proportion, so control and value meet
            # at the end of the control's travel
            here = _unshape(m, current)
            edge = 1.0 if pos > m.last_x else 0.0
            x = here + (pos - m.last_x) * (edge - here) / (edge - m.last_x)
        m.last_x = pos
        value = _shape(m, x)
        self._set(m, value)
        m.set_value = self.engine.get(m.target)

    def _relative(self, m: Mapping, v: int) -> None:
        ticks = decode_relative(m.relative, v)
        if ticks == 0:
            return
        eff = ticks * (1.0 + m.acceleration * (abs(ticks) - 1))
        x = _unshape(m, self.engine.get(m.target)) + eff * m.step
        self._set(m, _shape(m, x))

    def handle(self, msg: bytes) -> None:
        """One complete MIDI message."""
        if not msg or msg[0] < 0x80:
            self.errors += 1                # malformed: ignore, count
            return
        if msg[0] >= 0xF0:
            return                          # system messages (SysEx, clock): not mapped
        if any(b >= 0x80 for b in msg[1:]):
            self.errors += 1
            return
        status, ch = msg[0] & 0xF0, msg[0] & 0x0F
        need = 2 if status in (0xC0, 0xD0) else 3
        if len(msg) < need:
            self.errors += 1
            return
        if status == 0xB0:
            self._cc(ch, msg[1], msg[2])
        elif status == 0xE0:
            value = msg[1] | msg[2] << 7
            for m in self._matching("pitchbend", ch):
                self._absolute(m, value / 16383.0)
        elif status in (0x90, 0x80):
            on = status == 0x90 and msg[2] > 0
            for m in self._matching("note", ch, msg[1]):
                if m.mode == "momentary":
                    self._set(m, m.hi if on else m.lo)
                elif on:
                    cur = self.engine.get(m.target)
                    mid = 0.5 * (m.lo + m.hi)
                    self._set(m, m.lo if cur > mid else m.hi)
        elif status == 0xC0:
            for m in self._matching("program", ch):
                if msg[1] < len(m.presets) and self.on_program is not None:
                    self.on_program(m.presets[msg[1]])

    def _matching(self, source, ch, number=None):
        for m in self.mappings:
            if m.source == source and (m.channel is None or m.channel == ch) and \
                    (number is None or m.number == number):
                yield m

    def _cc(self, ch: int, cc: int, v: int) -> None:
        # parameter-number selection and data entry (NRPN / RPN)
        if cc in (99, 98, 101, 100):
            parts = self._sel_parts.setdefault(ch, [None, None, None, None])
            parts[{99: 0, 98: 1, 101: 2, 100: 3}[cc]] = v
            if cc in (99, 98) and parts[0] is not None and parts[1] is not None:
                self._sel[ch] = ("nrpn", parts[0] << 7 | parts[1])
            elif cc in (101, 100) and parts[2] is not None and parts[3] is not None:
                num = parts[2] << 7 | parts[3]
                self._sel[ch] = None if num == 16383 else ("rpn", num)   # RPN null
            return
        if cc in (6, 38, 96, 97) and self._sel.get(ch):
            kind, num = self._sel[ch]
            key = (ch, kind, num)
            val = self._data.get(key, 0)
            if cc == 6:
                val = v << 7
            elif cc == 38:
                val = (val & ~0x7F) | v
            elif cc == 96:
                val = min(val + 128, 16383)
            else:
                val = max(val - 128, 0)
            self._data[key] = val
            for m in self._matching(kind, ch, num):
                self._absolute(m, val / 16383.0)
            return
        # 14-bit pairs
        if cc < 32:
            self._msb[(ch, cc)] = v
            lsb = self._lsb.get((ch, cc), 0)
            for m in self._matching("cc14", ch, cc):
                self._absolute(m, (v << 7 | lsb) / 16383.0)
        elif cc < 64:
            self._lsb[(ch, cc - 32)] = v
            msb = self._msb.get((ch, cc - 32))
            if msb is not None:
                for m in self._matching("cc14", ch, cc - 32):
                    self._absolute(m, (msb << 7 | v) / 16383.0)
        for m in self._matching("cc", ch, cc):
            if m.relative:
                self._relative(m, v)
            else:
                self._absolute(m, v / 127.0)

    def handle_osc(self, address: str, value: float) -> bool:
        """An OSC message for a mapped address (value 0..1, a control position);
        returns whether a mapping took it."""
        took = False
        for m in self.mappings:
            if m.source == "osc" and m.address == address:
                self._absolute(m, float(value))
                took = True
        return took

    # -- feedback ---------------------------------------------------------------------
    def feedback(self) -> list[bytes]:
        """Messages that bring the controller's faders and LEDs to the current
        values (only what changed since the last call)."""
        out = []
        for m in self.mappings:
            if not m.feedback or m.source in ("program", "osc"):
                continue
            x = _unshape(m, self.engine.get(m.target))
            ch = m.channel or 0
            if m.source == "cc":
                msgs = (bytes([0xB0 | ch, m.number, round(x * 127)]),)
            elif m.source == "cc14":
                v = round(x * 16383)
                msgs = (bytes([0xB0 | ch, m.number, v >> 7]),
                        bytes([0xB0 | ch, m.number + 32, v & 0x7F]))
            elif m.source in ("nrpn", "rpn"):
                v = round(x * 16383)
                sel = (99, 98) if m.source == "nrpn" else (101, 100)
                msgs = (bytes([0xB0 | ch, sel[0], m.number >> 7]),
                        bytes([0xB0 | ch, sel[1], m.number & 0x7F]),
                        bytes([0xB0 | ch, 6, v >> 7]), bytes([0xB0 | ch, 38, v & 0x7F]))
            elif m.source == "pitchbend":
                v = round(x * 16383)
                msgs = (bytes([0xE0 | ch, v & 0x7F, v >> 7]),)
            else:                                             # note: LED on or off
                on = x >= 0.5
                msgs = (bytes([(0x90 if on else 0x80) | ch, m.number, 127 if on else 0]),)
            if msgs != m.sent:
                m.sent = msgs
                out.extend(msgs)
        return out


# ---- MIDI learn ------------------------------------------------------------------------
def learn(messages, target: str) -> dict | None:
    """The map entry for the first control found in ``messages`` (complete
    MIDI messages in arrival order), or None.  A CC below 32 followed by its
    LSB (CC + 32) is a 14-bit pair; NRPN/RPN selection followed by data entry
    is an NRPN/RPN; a note is a toggle; pitch bend is pitch bend."""
    sel: dict[int, dict[int, int]] = {}
    msgs = [bytes(m) for m in messages if m and m[0] >= 0x80 and m[0] < 0xF0]
    for i, m in enumerate(msgs):
        status, ch = m[0] & 0xF0, m[0] & 0x0F
        entry = {"channel": ch + 1, "target": target}
        if status == 0xE0 and len(m) >= 3:
            return {"pitchbend": True, **entry}
        if status == 0x90 and len(m) >= 3 and m[2] > 0:
            return {"note": m[1], "mode": "toggle", **entry}
        if status != 0xB0 or len(m) < 3:
            continue
        cc = m[1]
        if cc in (99, 98, 101, 100):
            sel.setdefault(ch, {})[cc] = m[2]
            continue
        if cc in (6, 38) and ch in sel:
            s = sel[ch]
            if 99 in s and 98 in s:
                return {"nrpn": s[99] << 7 | s[98], **entry}
            if 101 in s and 100 in s:
                return {"rpn": s[101] << 7 | s[100], **entry}
        if cc < 32 and any(n[0] == m[0] and n[1] == cc + 32 for n in msgs[i + 1:i + 4]
                           if len(n) >= 3):
            return {"cc14": cc, **entry}
        if 32 <= cc < 64 and any(n[0] == m[0] and n[1] == cc - 32 for n in msgs[max(0, i - 3):i]):
            return {"cc14": cc - 32, **entry}
        return {"cc": cc, **entry}
    return None


def entry_toml(entry: dict) -> str:
    """One [[map]] table as TOML text."""
    import tomli_w
    return tomli_w.dumps({"map": [entry]})
