"""Train the shipped stem separation model (needs the ``train`` extra: PyTorch).

The network is a causal mask estimator on the STFT of the mono mid signal (the contract of
:mod:`rtengine.stems.contract`): per-bin normalised log magnitudes -> a linear encoder -> a
stack of GRUs -> a linear decoder that also sees the input features -> one mask per stem, a
softmax across stems (so the masks sum to one and the stems add up to the mixture).  Its only
state is the GRU's hidden state, an explicit input and output of the exported ONNX graph, so it
runs frame by frame.

Data: renders of :mod:`rtengine.data.music` (train split for training, valid split for picking
the checkpoint), remixed on the fly: each stem of a training example comes from a random piece
and offset with a random gain half of the time, or all from one piece otherwise.

Runs in the background with checkpoints and a log, and resumes::

    nohup python -m rtengine.stems.train fit --out runs/stems --minutes 80 > train.out &
    python -m rtengine.stems.train export runs/stems/best.pt rtengine/models/stems-gru.onnx \
        --weights training/stems-gru.weights.pt

To go on training the shipped model in a later session (the weights file is kept in git)::

    nohup python -m rtengine.stems.train fit --out runs/more --minutes 240 \
        --init training/stems-gru.weights.pt > train.out &
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rtengine.data import music
from rtengine.stems import contract

N_FFT = 1024
HOP = 256
BINS = N_FFT // 2 + 1
STEMS = music.STEMS


class LocalHead(nn.Module):
    """A correction of the decoder's logits from the spectrum's local shape: convolutions
    along frequency only (no state: each frame on its own), the same weights at every bin,
    so a harmonic comb, a formant or a drum's broadband onset is recognised wherever it lies
    (the linear decoder learns each bin on its own, and so each instrument's range).  It sees
    the features, the decoder's logits and a few channels of the GRU output (the context in
    time), and its last layer starts at zero: added to a trained network it starts from that
    network's masks."""

    def __init__(self, hidden: int, stems: int, channels: int):
        super().__init__()
        c = channels
        self.conv = nn.ModuleList([nn.Conv1d(1, c, 7, padding=3),
                                   nn.Conv1d(c, c, 7, padding=6, dilation=2),
                                   nn.Conv1d(c, c, 7, padding=12, dilation=4)])
        self.ctx = nn.Linear(hidden, c)
        self.mix = nn.Conv1d(c + stems + c, 2 * c, 1)
        self.out = nn.Conv1d(2 * c, stems, 5, padding=2)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """x (B, T, F) features, y (B, T, H) GRU output, logits (B, T, S, F) -> (B, T, S, F)."""
        b, t, f = x.shape
        z = x.reshape(b * t, 1, f)
        for conv in self.conv:
            z = torch.relu(conv(z))
        ctx = self.ctx(y).reshape(b * t, -1, 1).expand(-1, -1, f)
        z = torch.cat([z, logits.reshape(b * t, -1, f), ctx], dim=1)
        z = self.out(torch.relu(self.mix(z)))
        return logits + z.reshape(b, t, -1, f)


class StemNet(nn.Module):
    """Causal mask network; ``forward(mag, h) -> (masks, h_out)``.

    mag: (batch, frames, bins) STFT magnitudes; h: (layers, batch, hidden) GRU state.
    masks: (batch, frames, stems, bins), each bin's masks sum to one.  The decoder sees the
    GRU output and the input features (all bins: fine spectral detail and harmonic patterns).
    (A cheaper decoder with only a per-bin skip of the input learnt far slower: 1.4 dB
    validation SDR after 670 steps against 2.8 dB after 470.)  With ``local`` > 0 a
    :class:`LocalHead` of that many channels corrects the decoder's logits."""

    def __init__(self, bins: int = BINS, hidden: int = 320, layers: int = 2,
                 stems: int = len(STEMS), local: int = 0):
        super().__init__()
        self.bins, self.hidden, self.layers, self.stems = bins, hidden, layers, stems
        self.register_buffer("mean", torch.zeros(bins))
        self.register_buffer("inv_std", torch.ones(bins))
        self.enc = nn.Linear(bins, hidden)
        self.gru = nn.GRU(hidden, hidden, layers, batch_first=True)
        self.dec = nn.Linear(hidden + bins, stems * bins)
        self.local = LocalHead(hidden, stems, local) if local > 0 else None

    def features(self, mag: torch.Tensor) -> torch.Tensor:
        return (torch.log(mag * mag + 1e-10) - self.mean) * self.inv_std

    def base(self, mag: torch.Tensor, h: torch.Tensor):
        """The network without its local head: (features, GRU output, logits (B, T, S, F),
        h_out)."""
        x = self.features(mag)
        e = torch.relu(self.enc(x))
        y, h_out = self.gru(e, h)
        logits = self.dec(torch.cat([y, x], dim=-1))
        b, t = mag.shape[0], mag.shape[1]
        return x, y, logits.view(b, t, self.stems, self.bins), h_out

    def forward(self, mag: torch.Tensor, h: torch.Tensor):
        x, y, logits, h_out = self.base(mag, h)
        if self.local is not None:
            logits = self.local(x, y, logits)
        masks = torch.softmax(logits, dim=2)
        return masks, h_out

    def base_parameters(self):
        """The parameters of the network without its local head."""
        return [p for n, p in self.named_parameters() if not n.startswith("local.")]

    def zero_state(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(self.layers, batch, self.hidden)


def window() -> torch.Tensor:
    return torch.from_numpy(contract.analysis_window(N_FFT).astype(np.float32))


def stft(x: torch.Tensor) -> torch.Tensor:
    """(batch, samples) -> complex (batch, frames, bins), frames at k*HOP (no padding)."""
    spec = torch.stft(x, N_FFT, HOP, window=window(), center=False, return_complex=True)
    return spec.transpose(1, 2)


# ----------------------------------------------------------------------------- data
class Pieces:
    """Every piece of a rendered split in memory as float32 mono (mid) stems, by rate."""

    def __init__(self, folders):
        import soundfile as sf
        self.by_rate: dict[int, list[np.ndarray]] = {}
        for folder in folders:
            for piece in sorted(Path(folder).glob("piece*")):
                if not (piece / "meta.json").is_file():
                    continue
                stems = []
                rate = None
                for s in STEMS:
                    x, rate = sf.read(str(piece / f"{s}.wav"), dtype="float32", always_2d=True)
                    stems.append(x.mean(axis=1))
                # float16 halves the memory (4 h of renders: 5 GB); a stem's quantisation
                # is 66 dB below it, and the mixture is summed from the same values
                self.by_rate.setdefault(int(rate), []).append(np.stack(stems).astype(np.float16))
        if not self.by_rate:
            raise FileNotFoundError(f"no rendered pieces under {', '.join(map(str, folders))}; "
                                    "render them with python -m rtengine.data.music --split ...")

    def __len__(self):
        return sum(len(v) for v in self.by_rate.values())

    def seconds(self) -> float:
        return sum(p.shape[1] / r for r, v in self.by_rate.items() for p in v)

    def batch(self, rng: np.random.Generator, batch: int, frames: int, remix: float = 0.5,
              eq: float = 0.0, eq_db: float = 6.0, shift: float = 0.0,
              shift_st: float = 3.0):
        """(mix (B, L), stems (B, S, L)) with L = HOP * (frames - 1) + N_FFT.

        With ``eq`` > 0, that share of the stems goes through a random smooth equaliser (up
        to +-``eq_db`` at eight octave-spaced points), so the network meets more timbres
        than the SoundFonts have.  With ``shift`` > 0, that share of the examples is played
        faster or slower (up to +-``shift_st`` semitones: pitch, formants and tempo move
        together, so an instrument sounds like another of its size), the whole example when
        its stems come from one piece, each stem on its own otherwise.  The mixture is
        always the exact sum of the stems."""
        rates = sorted(self.by_rate)
        sizes = np.array([len(self.by_rate[r]) for r in rates], dtype=float)
        rate = rates[int(rng.choice(len(rates), p=sizes / sizes.sum()))]
        pool = self.by_rate[rate]
        n = HOP * (frames - 1) + N_FFT
        out = np.zeros((batch, len(STEMS), n), dtype=np.float32)
        for b in range(batch):
            same = rng.random() >= remix
            base = int(rng.integers(len(pool)))
            start = None
            ratio = _speed(rng, shift, shift_st)
            for s in range(len(STEMS)):
                piece = pool[base] if same else pool[int(rng.integers(len(pool)))]
                if not same:
                    ratio = _speed(rng, shift, shift_st)
                span = n if ratio == 1.0 else int(math.ceil((n - 1) * ratio)) + 1
                if start is None or not same:
                    start = int(rng.integers(max(1, piece.shape[1] - span)))
                seg = piece[s, start:start + span].astype(np.float32)
                if ratio != 1.0:
                    seg = np.interp(np.arange(n) * ratio, np.arange(seg.size), seg,
                                    right=0.0).astype(np.float32)
                gain = 1.0 if same else 10 ** (rng.uniform(-8, 4) / 20)
                if not same and rng.random() < 0.08:
                    gain = 0.0                   # a stem that is silent for a while
                out[b, s, :len(seg)] = seg * gain
                if eq > 0.0 and gain > 0.0 and rng.random() < eq:
                    out[b, s] = random_eq(out[b, s], rate, rng, eq_db)
            level = 10 ** (rng.uniform(-12, 6) / 20)
            out[b] *= level
        stems = torch.from_numpy(out)
        return stems.sum(dim=1), stems


def _speed(rng: np.random.Generator, share: float, semitones: float) -> float:
    """A playback speed ratio: 1 or, with probability ``share``, up to +-``semitones``."""
    if share <= 0.0 or rng.random() >= share:
        return 1.0
    return float(2.0 ** (rng.uniform(-semitones, semitones) / 12.0))


EQ_POINTS_HZ = 62.5 * 2.0 ** np.arange(8)          # 62.5 Hz .. 8 kHz, an octave apart


def random_eq(x: np.ndarray, rate: int, rng: np.random.Generator, max_db: float) -> np.ndarray:
    """``x`` through a zero-phase equaliser whose gain (dB) is drawn at :data:`EQ_POINTS_HZ`
    and interpolated in log frequency (held flat beyond the ends)."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(x.size, 1.0 / rate)
    db = np.interp(np.log2(np.maximum(f, 1.0)), np.log2(EQ_POINTS_HZ),
                   rng.uniform(-max_db, max_db, EQ_POINTS_HZ.size))
    return np.fft.irfft(spec * 10.0 ** (db / 20.0), n=x.size).astype(np.float32)


def fit_normaliser(model: StemNet, data: Pieces, rng) -> None:
    mix, _ = data.batch(rng, 32, 256)
    with torch.no_grad():
        f = torch.log(stft(mix).abs() ** 2 + 1e-10).reshape(-1, BINS)
        model.mean.copy_(f.mean(dim=0))
        model.inv_std.copy_(1.0 / (f.std(dim=0) + 1e-3))


def loss_fn(model: StemNet, mix: torch.Tensor, stems: torch.Tensor,
            frames: np.ndarray | None = None) -> torch.Tensor:
    """With ``frames`` (indices), the loss of those frames only, the network's base run
    without gradients: for training a local head alone, which works frame by frame, so a
    share of the frames gives the same expected gradient for a share of the cost."""
    b, s, n = stems.shape
    X = stft(mix)                                           # (B, T, F)
    S = stft(stems.reshape(b * s, n)).reshape(b, s, X.shape[1], BINS).transpose(1, 2)
    if frames is None:
        masks, _ = model(X.abs(), model.zero_state(b))      # (B, T, S, F)
    else:
        idx = torch.from_numpy(np.asarray(frames, dtype=np.int64))
        with torch.no_grad():
            x, y, logits, _ = model.base(X.abs(), model.zero_state(b))
        X, S = X[:, idx], S[:, idx]
        masks = torch.softmax(model.local(x[:, idx], y[:, idx], logits[:, idx]), dim=2)
    est = masks * X.abs().unsqueeze(2)
    c = 0.3
    mag = (est + 1e-8) ** c - (S.abs() + 1e-8) ** c
    # complex term: the masked mixture against the true stem spectrum (compressed)
    Xc = X.unsqueeze(2)
    comp = masks * Xc * ((X.abs().unsqueeze(2) + 1e-8) ** (c - 1))
    Sc = S * ((S.abs() + 1e-8) ** (c - 1))
    return mag.abs().mean() + 0.5 * (comp - Sc).abs().mean()


# ----------------------------------------------------------------------------- evaluation
def separate_np(model: StemNet, mix: np.ndarray) -> np.ndarray:
    """Whole-signal separation of a mono float32 signal with the torch model: (S, n)."""
    with torch.no_grad():
        x = torch.from_numpy(np.asarray(mix, dtype=np.float32))[None]
        pad = N_FFT - HOP
        xp = torch.nn.functional.pad(x, (pad, pad))
        X = stft(xp)
        masks, _ = model(X.abs(), model.zero_state(1))
        Y = masks[0].permute(1, 0, 2) * X[0][None]             # (S, T, F)
        frames = torch.fft.irfft(Y, n=N_FFT) * window()
        T = frames.shape[1]
        out = torch.zeros(len(STEMS), HOP * (T - 1) + N_FFT)
        for t in range(T):
            out[:, t * HOP:t * HOP + N_FFT] += frames[:, t]
        out /= contract.ola_gain(N_FFT, HOP)
        return out[:, pad:pad + x.shape[1]].numpy()


def sdr(est: np.ndarray, ref: np.ndarray) -> float:
    num = float(np.sum(ref.astype(np.float64) ** 2))
    den = float(np.sum((ref.astype(np.float64) - est) ** 2))
    return 10 * math.log10((num + 1e-9) / (den + 1e-9))


def validate(model: StemNet, data: Pieces, seconds: float = 12.0) -> dict:
    model.eval()
    scores = {s: [] for s in STEMS}
    for rate, pieces in data.by_rate.items():
        for p in pieces:
            n = min(p.shape[1], int(seconds * rate))
            seg = p[:, :n].astype(np.float32)
            est = separate_np(model, seg.sum(axis=0))
            for i, s in enumerate(STEMS):
                if np.sum(seg[i] ** 2) > 1e-6:
                    scores[s].append(sdr(est[i], seg[i]))
    model.train()
    out = {s: float(np.mean(v)) for s, v in scores.items()}
    out["mean"] = float(np.mean([out[s] for s in STEMS]))
    return out


# ----------------------------------------------------------------------------- training
def fit(out: Path, minutes: float, train_dirs, valid_dirs, hidden: int, threads: int,
        batch: int, frames: int, lr: float, seed: int, init: Path | None = None,
        eq: float = 0.0, eq_db: float = 6.0, shift: float = 0.0,
        shift_st: float = 3.0, local: int = 0, freeze_base: bool = False,
        head_frames: int = 64, only_stem: str | None = None) -> int:
    """Train until ``minutes`` of training time (counted over resumes) have passed.  Resumes
    from OUT/last.pt; otherwise starts from the weights file ``init`` (see :func:`export`:
    the shipped model's weights, so a new session goes on where the last one stopped; the
    budget then counts from the weights' own training time) or from scratch.  ``local`` >
    0 adds a :class:`LocalHead` of that many channels (new, when the weights have none: the
    budget then counts from zero); ``freeze_base`` trains that head alone, on
    ``head_frames`` random frames of each example (see :func:`loss_fn`).  ``only_stem``
    trains the decoder's outputs for that stem alone (its rows of the last layer; everything
    else fixed): the other stems' masks then change only where that stem's logits do."""
    if only_stem is not None and only_stem not in STEMS:
        raise ValueError(f"--only-stem {only_stem}: not one of {', '.join(STEMS)}")
    if freeze_base and not local and not (init and torch.load(init, weights_only=False)
                                          ["state"].get("local", 0)):
        raise ValueError("--freeze-base trains the local head alone: give --local C")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    log = open(out / "train.log", "a", buffering=1)

    def say(msg: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}"
        print(line, file=log)
        print(line, flush=True)

    train, valid = Pieces(train_dirs), Pieces(valid_dirs)
    say(f"train: {len(train)} pieces, {train.seconds() / 3600:.2f} h at "
        f"{sorted(train.by_rate)} Hz from {', '.join(map(str, train_dirs))}; valid: "
        f"{len(valid)} pieces; equaliser on {eq:.0%} of the stems (+-{eq_db:g} dB); "
        f"speed changed on {shift:.0%} of the examples (+-{shift_st:g} semitones)")

    def optimiser(model: StemNet) -> torch.optim.Optimizer:
        for p in model.base_parameters():
            p.requires_grad_(not freeze_base)
        if only_stem is not None:
            for p in model.parameters():
                p.requires_grad_(False)
            model.dec.weight.requires_grad_(True)
            model.dec.bias.requires_grad_(True)
        return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)

    model = StemNet(hidden=hidden, local=local)
    state = {"step": 0, "elapsed": 0.0, "best": -1e9, "seed": seed, "hidden": hidden,
             "local": local, "history": []}
    last = out / "last.pt"
    if last.is_file():
        ck = torch.load(last, weights_only=False)
        state = ck["state"]
        model = StemNet(hidden=state["hidden"], local=state.get("local", 0))
        model.load_state_dict(ck["model"])
        opt = optimiser(model)
        opt.load_state_dict(ck["opt"])
        say(f"resumed at step {state['step']} ({state['elapsed'] / 60:.1f} min)")
    elif init is not None:
        ck = torch.load(init, weights_only=False)
        had = ck["state"].get("local", 0)
        model = StemNet(hidden=ck["state"]["hidden"], local=local or had)
        missing, unexpected = model.load_state_dict(ck["model"], strict=False)
        if unexpected or any(not k.startswith("local.") for k in missing) or (
                missing and had):
            raise ValueError(f"{init}: its weights do not fit the network (missing "
                             f"{missing}, unexpected {unexpected})")
        opt = optimiser(model)
        state = dict(ck["state"], best=-1e9, local=local or had)
        state.setdefault("history", [])
        if missing:                       # a new head: its own time budget from zero
            state["base_elapsed"], state["elapsed"] = state.get("elapsed", 0.0), 0.0
        say(f"started from {init}: step {state.get('step', 0)} "
            f"({ck['state'].get('elapsed', 0.0) / 60:.1f} min)"
            + (f"; a new local head of {local} channels" if missing else ""))
    else:
        fit_normaliser(model, train, np.random.default_rng(seed + 1))
        opt = optimiser(model)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if only_stem is not None:
        trained //= model.stems                  # one stem's rows of the decoder
    say(f"{trained} parameters trained of {sum(p.numel() for p in model.parameters())}"
        + (f" (the decoder's {only_stem} outputs)" if only_stem else ""))
    rng = np.random.default_rng([seed, state["step"]])
    budget = minutes * 60.0
    t_start, elapsed0 = time.perf_counter(), state["elapsed"]
    last_save = time.perf_counter()
    run_loss = None
    while True:
        elapsed = elapsed0 + time.perf_counter() - t_start
        if elapsed >= budget:
            break
        frac = elapsed / budget
        cur = lr * (1.0 if frac < 0.6 else 0.5 * (1 + math.cos(math.pi * (frac - 0.6) / 0.4))
                    * 0.97 + 0.03)
        for g in opt.param_groups:
            g["lr"] = cur
        mix, stems = train.batch(rng, batch, frames, eq=eq, eq_db=eq_db, shift=shift,
                                 shift_st=shift_st)
        pick = None
        if freeze_base and model.local is not None and 0 < head_frames < frames:
            pick = np.sort(rng.choice(frames, head_frames, replace=False))
        loss = loss_fn(model, mix, stems, pick)
        opt.zero_grad()
        loss.backward()
        if only_stem is not None:            # the other stems' rows: no gradient, no step
            keep = STEMS.index(only_stem)
            for g in (model.dec.weight.grad, model.dec.bias.grad):
                rows = g.view(model.stems, model.bins, -1)
                rows[[k for k in range(model.stems) if k != keep]] = 0.0
        nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 5.0)
        opt.step()
        state["step"] += 1
        value = loss.item()
        run_loss = value if run_loss is None else 0.98 * run_loss + 0.02 * value
        if state["step"] % 50 == 0:
            _threads_from_file(out / "threads")
            say(f"step {state['step']} loss {run_loss:.4f} lr {cur:.2e} "
                f"{elapsed / 60:.1f} min")
        if time.perf_counter() - last_save > 300 or state["step"] % 1000 == 0:
            state["elapsed"] = elapsed0 + time.perf_counter() - t_start
            _checkpoint(model, opt, state, valid, out, say)
            last_save = time.perf_counter()
    state["elapsed"] = elapsed0 + time.perf_counter() - t_start
    _checkpoint(model, opt, state, valid, out, say)
    say(f"done: {state['step']} steps, best valid mean SDR {state['best']:.2f} dB")
    return 0


def _threads_from_file(path: Path) -> None:
    """A running job's thread count can be changed by writing a number to OUT/threads."""
    try:
        n = int(path.read_text().strip())
    except (OSError, ValueError):
        return
    if n >= 1 and n != torch.get_num_threads():
        torch.set_num_threads(n)


def _checkpoint(model, opt, state, valid, out: Path, say) -> None:
    scores = validate(model, valid)
    state["history"].append({"step": state["step"], "minutes": state["elapsed"] / 60,
                             **{k: round(v, 3) for k, v in scores.items()}})
    say("valid SDR " + " ".join(f"{k} {v:.2f}" for k, v in scores.items()))
    ck = {"model": model.state_dict(), "opt": opt.state_dict(), "state": state}
    torch.save(ck, out / "last.tmp")
    (out / "last.tmp").replace(out / "last.pt")
    if scores["mean"] > state["best"]:
        state["best"] = scores["mean"]
        torch.save({"model": model.state_dict(), "state": state}, out / "best.pt")
        say(f"new best {scores['mean']:.2f} dB at step {state['step']}")


# ----------------------------------------------------------------------------- export
def load(ckpt: Path) -> StemNet:
    ck = torch.load(ckpt, weights_only=False)
    model = StemNet(hidden=ck["state"]["hidden"], local=ck["state"].get("local", 0))
    model.load_state_dict(ck["model"])
    return model.eval()


def export(ckpt: Path, dest: Path, rates=(44100, 48000), weights: Path | None = None) -> dict:
    """Export to ONNX with the contract's metadata; check onnxruntime against PyTorch
    (whole sequence and frame by frame, within 1e-4).  With ``weights`` also save the model's
    weights and training state (no optimiser) for ``fit --init``.  Returns the check
    figures."""
    import onnx
    import onnxruntime as ort
    model = load(ckpt)
    if weights is not None:
        ck = torch.load(ckpt, weights_only=False)
        keep = {k: v for k, v in ck["state"].items() if k != "best"}
        weights.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model.state_dict(), "state": keep}, weights)
    rng = np.random.default_rng(0)
    mag = torch.from_numpy(np.abs(rng.normal(size=(1, 40, BINS))).astype(np.float32) * 3)
    h = model.zero_state(1)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp.onnx")
    torch.onnx.export(model, (mag, h), str(tmp), input_names=["mag", "state_in"],
                      output_names=["masks", "state_out"], opset_version=17, dynamo=False,
                      dynamic_axes={"mag": {0: "batch", 1: "frames"},
                                    "state_in": {1: "batch"},
                                    "masks": {0: "batch", 1: "frames"},
                                    "state_out": {1: "batch"}})
    m = onnx.load(str(tmp))
    meta = contract.metadata(sample_rates=rates, n_fft=N_FFT, hop=HOP, stems=STEMS,
                             lookahead=0, name=dest.stem)
    del m.metadata_props[:]
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    m.doc_string = ("rtengine stem separation: causal GRU mask network on the STFT "
                    "(GPL-3.0-or-later)")
    onnx.save(m, str(dest))
    tmp.unlink()
    # parity: whole sequence and frame by frame
    sess = ort.InferenceSession(str(dest), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref, ref_h = model(mag, h)
    whole = sess.run(None, {"mag": mag.numpy(), "state_in": h.numpy()})
    st = h.numpy()
    frames = []
    for t in range(mag.shape[1]):
        o, st = sess.run(None, {"mag": mag[:, t:t + 1].numpy(), "state_in": st})
        frames.append(o)
    stream = np.concatenate(frames, axis=1)
    figures = {"whole_vs_torch": float(np.abs(whole[0] - ref.numpy()).max()),
               "stream_vs_torch": float(np.abs(stream - ref.numpy()).max()),
               "state_vs_torch": float(np.abs(st - ref_h.numpy()).max()),
               "parameters": int(sum(p.numel() for p in model.parameters())),
               "bytes": dest.stat().st_size}
    worst = max(figures["whole_vs_torch"], figures["stream_vs_torch"], figures["state_vs_torch"])
    if worst > 1e-4:
        raise RuntimeError(f"onnxruntime differs from PyTorch by {worst:.2e} (> 1e-4)")
    return figures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rtengine.stems.train")
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="train (resumes from OUT/last.pt)")
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--minutes", type=float, default=60.0, help="training time budget")
    f.add_argument("--train", type=Path, nargs="*", default=None,
                   help="rendered train folders (default: the cache's FluidR3 train renders)")
    f.add_argument("--valid", type=Path, nargs="*", default=None)
    f.add_argument("--hidden", type=int, default=320)
    f.add_argument("--threads", type=int, default=2)
    f.add_argument("--batch", type=int, default=12)
    f.add_argument("--frames", type=int, default=256)
    f.add_argument("--lr", type=float, default=1e-3)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--eq", type=float, default=0.0,
                   help="share of training stems through a random equaliser (default 0)")
    f.add_argument("--eq-db", type=float, default=6.0, help="its largest boost or cut (dB)")
    f.add_argument("--shift", type=float, default=0.0,
                   help="share of training examples played faster or slower (default 0)")
    f.add_argument("--shift-st", type=float, default=3.0,
                   help="their largest change of pitch (semitones)")
    f.add_argument("--init", type=Path, default=None,
                   help="start from this weights file (export --weights), e.g. "
                        "training/stems-gru.weights.pt")
    f.add_argument("--local", type=int, default=0,
                   help="channels of a local head (convolutions along frequency) on the "
                        "decoder (default 0: none; new when the --init weights have none)")
    f.add_argument("--freeze-base", action="store_true",
                   help="train the local head alone, the rest of the network fixed")
    f.add_argument("--head-frames", type=int, default=64,
                   help="with --freeze-base: frames of each example the head learns from "
                        "(default 64)")
    f.add_argument("--only-stem", choices=STEMS, default=None,
                   help="train only the decoder's outputs for this stem")
    e = sub.add_parser("export", help="checkpoint -> ONNX (checked against PyTorch)")
    e.add_argument("ckpt", type=Path)
    e.add_argument("dest", type=Path)
    e.add_argument("--weights", type=Path, default=None,
                   help="also save the weights for a later fit --init")
    args = ap.parse_args(argv)
    if args.cmd == "fit":
        root = music.cache_dir("music")
        # by default the FluidR3 renders (what the shipped model learnt from); renders
        # with another SoundFont are taken when named with --train
        others = tuple(f"-{name}" for name in music.SOUNDFONTS if name != "fluidr3")
        train = args.train or sorted(p for p in root.glob(f"v{music.VERSION}-*/train")
                                     if not p.parent.name.endswith(others))
        valid = args.valid or sorted(root.glob(f"v{music.VERSION}-*/valid"))
        return fit(args.out, args.minutes, train, valid, args.hidden, args.threads,
                   args.batch, args.frames, args.lr, args.seed, args.init, args.eq,
                   args.eq_db, args.shift, args.shift_st, args.local, args.freeze_base,
                   args.head_frames, args.only_stem)
    print(json.dumps(export(args.ckpt, args.dest, weights=args.weights), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
