"""The ONNX contract of a stem separation model, its checker, and the STFT around it.

A model that follows this contract runs in the ``stems`` processor and in ``rtengine stems``;
``rtengine stems check MODEL.onnx`` validates one.  The contract (version ``rtengine.stems/1``):

Metadata (ONNX ``metadata_props``, all strings):

* ``rtengine.contract`` = ``rtengine.stems/1``
* ``rtengine.sample_rates``: the rates the model was trained for, comma-separated (``44100,48000``);
  the processor refuses any other rate.
* ``rtengine.n_fft``, ``rtengine.hop``: STFT frame and hop in samples; ``n_fft`` a multiple of
  ``hop`` and ``hop`` <= ``n_fft/2``.
* ``rtengine.window`` = ``sqrt_hann``: the periodic Hann window's square root, used for analysis
  and synthesis.
* ``rtengine.stems``: stem names, comma-separated (``vocals,drums,bass,other``).
* ``rtengine.lookahead`` = ``0``: frames of lookahead (this version supports 0 only: causal).

Inputs: ``mag``, float32 ``(batch, frames, bins)``, ``bins = n_fft/2 + 1``: magnitudes of the
unnormalised real FFT of the windowed frames of the mid signal (the mean of the channels),
frame ``k`` covering samples ``[k*hop, k*hop + n_fft)``; and any number of state inputs whose
names start with ``state_in``, float32, zeros at the start of a stream.
Outputs: ``masks``, float32 ``(batch, frames, stems, bins)``, non-negative; and one output
``state_out...`` per state input (same suffix, same shape), fed back as the next call's state.
Running ``frames`` frames in one call must equal running them one call per frame with the state
carried (within 1e-4): that is what lets the processor run frame by frame.

What the processor does with the masks: it divides each bin's masks by their sum (where the sum
is below 1e-6 the bin is split equally), so the stems always add up to the mixture; it applies
the masks to every channel's complex spectrum, and overlap-adds with the same window.  Latency:
``n_fft`` samples (one frame), of which ``n_fft - hop`` inside the model's framing.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtengine.errors import PluginError

CONTRACT = "rtengine.stems/1"
PREFIX = "rtengine."
WINDOWS = ("sqrt_hann",)
META_KEYS = ("contract", "sample_rates", "n_fft", "hop", "window", "stems", "lookahead")


class ModelError(PluginError):
    """A stem model that cannot be used: unreadable, or not following the contract."""


def analysis_window(n_fft: int) -> np.ndarray:
    """The square root of the periodic Hann window (float64)."""
    k = np.arange(n_fft)
    return np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * k / n_fft))


def ola_gain(n_fft: int, hop: int) -> float:
    """Sum of the squared window over overlapping frames (constant for periodic Hann)."""
    return n_fft / (2.0 * hop)


def metadata(sample_rates, n_fft: int, hop: int, stems, lookahead: int = 0,
             name: str = "") -> dict:
    """The metadata a model carries (what :func:`check_model` reads)."""
    meta = {"contract": CONTRACT, "sample_rates": ",".join(str(int(r)) for r in sample_rates),
            "n_fft": str(int(n_fft)), "hop": str(int(hop)), "window": "sqrt_hann",
            "stems": ",".join(stems), "lookahead": str(int(lookahead))}
    if name:
        meta["name"] = name
    return {PREFIX + k: v for k, v in meta.items()}


@dataclass
class ModelSpec:
    """What a checked model declares."""
    path: Path
    sample_rates: tuple
    n_fft: int
    hop: int
    stems: tuple
    lookahead: int
    states: list = field(default_factory=list)    # (input name, output name, shape)
    name: str = ""
    sha256: str = ""
    bytes: int = 0

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def latency(self) -> int:
        """Algorithmic latency in samples (one frame)."""
        return self.n_fft

    def zero_states(self) -> dict:
        return {i: np.zeros(shape, dtype=np.float32) for i, _, shape in self.states}

    def describe(self) -> dict:
        return {"path": str(self.path), "name": self.name, "sha256": self.sha256,
                "bytes": self.bytes, "sample_rates": list(self.sample_rates),
                "n_fft": self.n_fft, "hop": self.hop, "stems": list(self.stems),
                "lookahead": self.lookahead,
                "states": [{"input": i, "output": o, "shape": list(s)} for i, o, s in
                           self.states]}


def _fail(path, what: str) -> ModelError:
    return ModelError(f"stem model {path}: {what}")


def load_session(path, threads: int = 1):
    """An onnxruntime session on one thread by default (the processor's setting)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ModelError("the stems processor needs onnxruntime: pip install onnxruntime") \
            from exc
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "file not found; give the path of an .onnx model")
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, int(threads))
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=so,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:          # onnxruntime raises its own exception types
        msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise _fail(path, f"is not a readable ONNX model ({msg}); re-export or re-copy "
                          "the file") from exc


def check_model(path, run: bool = True, session=None) -> ModelSpec:
    """Validate ``path`` against the contract; returns its :class:`ModelSpec` or raises
    :class:`ModelError` naming the file and the first mismatch.  With ``run`` it also runs a
    few frames (whole and frame by frame) and checks shapes, finiteness and agreement."""
    path = Path(path)
    sess = session or load_session(path)
    meta = dict(sess.get_modelmeta().custom_metadata_map)

    def need(key):
        full = PREFIX + key
        if full not in meta:
            keys = ", ".join(PREFIX + k for k in META_KEYS)
            raise _fail(path, f"metadata {full!r} is missing (the contract needs {keys})")
        return meta[full]

    if need("contract") != CONTRACT:
        raise _fail(path, f"declares contract {meta[PREFIX + 'contract']!r}; this rtengine "
                          f"reads {CONTRACT!r}")
    try:
        rates = tuple(int(r) for r in need("sample_rates").split(","))
        n_fft, hop, look = int(need("n_fft")), int(need("hop")), int(need("lookahead"))
    except ValueError as exc:
        raise _fail(path, f"metadata is not numeric where it must be ({exc})") from None
    stems = tuple(s.strip() for s in need("stems").split(",") if s.strip())
    if not rates or min(rates) < 8000:
        raise _fail(path, f"sample_rates {need('sample_rates')!r} are not audio rates")
    if n_fft < 16 or hop < 1 or n_fft % hop or hop > n_fft // 2:
        raise _fail(path, f"n_fft {n_fft} and hop {hop} do not overlap-add (n_fft must be a "
                          "multiple of hop and hop <= n_fft/2)")
    if need("window") not in WINDOWS:
        raise _fail(path, f"window {meta[PREFIX + 'window']!r} is not supported "
                          f"({', '.join(WINDOWS)})")
    if look != 0:
        raise _fail(path, f"lookahead {look} frames: this contract version runs causal "
                          "models only (lookahead 0)")
    if len(stems) < 2 or len(set(stems)) != len(stems):
        raise _fail(path, f"stems {need('stems')!r} must name two or more distinct stems")
    bins = n_fft // 2 + 1
    ins = {i.name: i for i in sess.get_inputs()}
    outs = {o.name: o for o in sess.get_outputs()}
    if "mag" not in ins:
        raise _fail(path, f"has no input 'mag' (inputs: {', '.join(ins)})")
    if "masks" not in outs:
        raise _fail(path, f"has no output 'masks' (outputs: {', '.join(outs)})")
    for name, obj, rank, last in (("input 'mag'", ins["mag"], 3, bins),
                                  ("output 'masks'", outs["masks"], 4, bins)):
        if obj.type != "tensor(float)":
            raise _fail(path, f"{name} is {obj.type}; the contract needs float32")
        if len(obj.shape) != rank:
            raise _fail(path, f"{name} has rank {len(obj.shape)} (shape {obj.shape}); the "
                              f"contract needs {rank}")
        if obj.shape[-1] != last:
            raise _fail(path, f"{name} has {obj.shape[-1]} bins; n_fft {n_fft} gives {bins}")
    if isinstance(outs["masks"].shape[2], int) and outs["masks"].shape[2] != len(stems):
        raise _fail(path, f"output 'masks' has {outs['masks'].shape[2]} stems; the metadata "
                          f"names {len(stems)} ({', '.join(stems)})")
    states = []
    for name, obj in ins.items():
        if name == "mag":
            continue
        if not name.startswith("state_in"):
            raise _fail(path, f"input {name!r} is neither 'mag' nor a state input "
                              "('state_in...')")
        oname = "state_out" + name[len("state_in"):]
        if oname not in outs:
            raise _fail(path, f"state input {name!r} has no matching output {oname!r}")
        if obj.type != "tensor(float)" or outs[oname].type != "tensor(float)":
            raise _fail(path, f"state {name!r} must be float32")
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in obj.shape]
        states.append((name, oname, tuple(shape)))
    extra = set(outs) - {"masks"} - {o for _, o, _ in states}
    if extra:
        raise _fail(path, f"outputs {', '.join(sorted(extra))} are not part of the contract")
    data = path.read_bytes()
    spec = ModelSpec(path, rates, n_fft, hop, stems, look, states,
                     meta.get(PREFIX + "name", path.stem), hashlib.sha256(data).hexdigest(),
                     len(data))
    if run:
        _smoke(spec, sess)
    return spec


def _smoke(spec: ModelSpec, sess) -> None:
    rng = np.random.default_rng(7)
    mag = np.abs(rng.normal(size=(1, 6, spec.bins))).astype(np.float32)
    feeds = {"mag": mag, **spec.zero_states()}
    try:
        whole = sess.run(None, feeds)
    except Exception as exc:
        raise _fail(spec.path, f"fails to run 6 frames with zero state "
                               f"({str(exc).splitlines()[0][:200]})") from exc
    names = [o.name for o in sess.get_outputs()]
    masks = whole[names.index("masks")]
    if masks.shape != (1, 6, len(spec.stems), spec.bins):
        raise _fail(spec.path, f"masks come out {masks.shape}, expected "
                               f"(1, 6, {len(spec.stems)}, {spec.bins})")
    if not np.all(np.isfinite(masks)) or masks.min() < 0:
        raise _fail(spec.path, "masks are negative or not finite")
    state = spec.zero_states()
    frames = []
    for t in range(6):
        res = dict(zip(names, sess.run(None, {"mag": mag[:, t:t + 1], **state})))
        frames.append(res["masks"])
        state = {i: res[o] for i, o, _ in spec.states}
    diff = float(np.abs(np.concatenate(frames, axis=1) - masks).max())
    if diff > 1e-4:
        raise _fail(spec.path, f"frame-by-frame output differs from the whole run by "
                               f"{diff:.2e} (> 1e-4): its state is not complete")


def default_model() -> Path:
    """The model shipped with rtengine."""
    return Path(__file__).resolve().parent.parent / "models" / "stems-gru.onnx"
