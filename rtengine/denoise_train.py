"""Train the spectral denoiser's learned band gains (needs the ``train`` extra: PyTorch).

The network refines the statistical gains of kernels/c/denoise.c; it sees what that stage
computes, per 5 ms frame in 32 mel-spaced bands up to 8 kHz: the posterior band SNR
(input over tracked noise, log10), the input's and the noise's spectral shape (log10
band power minus its mean over the bands) and the band mean of the statistical log gain
(at a fixed -25 dB floor).  Input layer (tanh) -> GRU -> sigmoid band gains; the target
is the ideal band gain sqrt(Es / (Es + En)) of the clean speech and the noise in the same
STFT frame.  The features are taken from the real kernel (C), run hop by hop on noisy
development speech, so training sees exactly what the plugin computes.

Data: development speech (``rtengine.data.speech``, split "dev"; the three utterances of
the development evaluation are left out) mixed with every installed noise at SNRs of -5 to
20 dB and levels of -45 to -10 dBFS.  The held-out test split is never read.

Runs in the background with checkpoints and a log, and resumes::

    python -m rtengine.denoise_train data --out runs/denoise
    nohup python -m rtengine.denoise_train fit --out runs/denoise --minutes 30 > dn.out &
    python -m rtengine.denoise_train export runs/denoise/best.pt rtengine/models/denoise-gru.npz \
        --mix 0.6 0.6

The shipped weights came from five more stages (the model card has the figures): the loss
taken on the gain the plugin applies (``--joint``), with band gains up to 10 so the network
can undo the statistical stage's suppression, then more low-SNR examples, then three rounds
of more examples of the stationary noises (seeds 13, 21, 23), each from the last weights::

    nohup python -m rtengine.denoise_train fit --out runs/joint --minutes 16 --lr 1e-3 \
        --init STAGE1.npz --joint 1.0 0.6 --gain-max 10 > dn.out &
    python -m rtengine.denoise_train data --out runs/denoise --seed 12 --snr -10 5  # adds
    python -m rtengine.denoise_train data --out runs/denoise --seed 13 --snr -10 10 \
        --noises white pink brown hum hvac                                      # adds
    # then --seed 21 --snr -10 5 and --seed 23 --snr -10 10, the same noises
    python -m rtengine.denoise_train export ... --mix 0.8 0.7   # with the -35 dB default floor

To go on from the shipped weights on another machine (``runs/`` is not kept in git)::

    nohup python -m rtengine.denoise_train fit --out runs/more --minutes 30 --lr 3e-4 \
        --init rtengine/models/denoise-gru.npz --joint 1.0 0.6 --gain-max 10 > dn.out &
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from kernels import layout
from rtengine.data import speech

SR = 48000
BANDS = 32
TOP_HZ = 8000.0
HIDDEN = 128
MIX = (0.5, 0.5)   # weights of the learned and the statistical log gain in the applied one
EVAL_UTTS = dict(split="dev", n=3, seconds=4.0, seed=0)   # the development evaluation


def band_edges_hz(bands: int = BANDS, top: float = TOP_HZ) -> np.ndarray:
    """Mel-spaced band edges from 0 to ``top`` Hz, on the 50 Hz grid of the 20 ms frame."""
    mel = 2595.0 * np.log10(1.0 + top / 700.0)
    hz = 700.0 * (10.0 ** (np.linspace(0.0, mel, bands + 1) / 2595.0) - 1.0)
    return np.round(hz / 50.0) * 50.0


def _blank_model(bands: int = BANDS, hidden: int = HIDDEN) -> dict:
    """Weights of the right shapes (zeros, unit deviation): a state that computes the
    features only."""
    nf = 4 * bands
    return {"edges_hz": band_edges_hz(bands), "mu": np.zeros(nf), "sd": np.ones(nf),
            "w1": np.zeros((hidden, nf)), "b1": np.zeros(hidden),
            "wih": np.zeros((3 * hidden, hidden)), "bih": np.zeros(3 * hidden),
            "whh": np.zeros((3 * hidden, hidden)), "bhh": np.zeros(3 * hidden),
            "w2": np.zeros((bands, hidden)), "b2": np.zeros(bands),
            "mix_learned": MIX[0], "mix_statistical": MIX[1], "gain_max": 1.0}


def kernel_run(x: np.ndarray, model: dict, use: bool, sr: int = SR, floor_db: float = -25.0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the C kernel on mono ``x`` hop by hop: (output, features, band gains) per frame."""
    from kernels._ck import ffi, lib
    st = layout.denoise_state(1, sr, model)
    r = int(st[11])
    st[r + 4] = 1.0 if use else 0.0
    h = int(st[3])
    nb = int(st[r])
    feats, gb = layout.denoise_features(st), layout.denoise_band_gains(st)
    par = np.empty((4, h), dtype=np.float32)
    par[0], par[1], par[2], par[3] = 1.0, floor_db, 3.0, 0.0
    frames = len(x) // h
    io = np.ascontiguousarray(x[:frames * h], dtype=np.float32).copy()
    out_f, out_g = np.empty((frames, feats.size)), np.empty((frames, nb))
    sp = ffi.cast("double *", st.ctypes.data)
    pp = ffi.cast("float *", par.ctypes.data)
    for f in range(frames):
        lib.rtk_denoise(sp, ffi.cast("float *", io[f * h:].ctypes.data), 1, h, h, pp, h)
        out_f[f] = feats
        out_g[f] = gb
    return io, out_f, out_g


def _stft_power(x: np.ndarray, h: int, n: int) -> np.ndarray:
    wa, _ = layout.denoise_windows(h, n)
    padded = np.concatenate([np.zeros(n - h), x])
    frames = np.lib.stride_tricks.sliding_window_view(padded, n)[::h]
    return np.abs(np.fft.rfft(frames * wa, axis=1)) ** 2


def example(clean: np.ndarray, noise: np.ndarray, snr: float, level_db: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """(features, ideal band gains) per frame of one noisy utterance."""
    nz = speech.noise_at_snr(clean, noise, snr)
    mix = clean + nz
    gain = 10 ** (level_db / 20) / (np.sqrt(np.mean(mix ** 2)) + 1e-12)
    _, feats, _ = kernel_run(mix * gain, _blank_model(), use=False)
    h = layout.denoise_hop(SR)
    n = layout.DN_FRAME_HOPS * h
    edges = layout.denoise_band_edges(SR, band_edges_hz())
    ps = np.add.reduceat(_stft_power(clean, h, n)[:, :edges[-1]], edges[:-1], axis=1)
    pn = np.add.reduceat(_stft_power(nz, h, n)[:, :edges[-1]], edges[:-1], axis=1)
    target = np.sqrt(ps / (ps + pn + 1e-12))[:len(feats)]
    return feats.astype(np.float32), target.astype(np.float32)


def _job(args):
    clean, name, seed, snr, level = args
    noise = speech.make_noise(name, len(clean), SR, seed=seed).astype(np.float64)
    return example(clean, noise, snr, level)


def make_data(out: Path, n_utts: int, draws: int, seed: int, jobs: int,
              snr: tuple[float, float] = (-5.0, 20.0), noises=None) -> None:
    """Examples from development speech, each utterance with ``draws`` noises (drawn from
    ``noises``, by default every installed one) at an SNR uniform in ``snr``.  Examples
    already in OUT/data.npz are kept (more are added)."""
    from concurrent.futures import ProcessPoolExecutor
    held = {f for u in speech.utterances(EVAL_UTTS["split"], EVAL_UTTS["n"],
                                         EVAL_UTTS["seconds"], sample_rate=SR,
                                         seed=EVAL_UTTS["seed"]) for f in u.files}
    utts = [u for u in speech.utterances("dev", n_utts or None, 4.0, sample_rate=SR, seed=seed)
            if not held & set(u.files)]
    have = speech.available_noises()
    unknown = sorted(set(noises or ()) - set(have))
    if unknown:
        raise SystemExit(f"data --noises: no noise named {', '.join(unknown)}; there are "
                         f"{', '.join(have)}")
    noises = list(noises) if noises else list(have)
    rng = np.random.default_rng(seed)
    work = []
    for i, u in enumerate(utts):
        for d in range(draws):
            work.append((u.audio.astype(np.float64), noises[int(rng.integers(len(noises)))],
                         10000 + draws * i + d, float(rng.uniform(*snr)),
                         float(rng.uniform(-45, -10))))
    with ProcessPoolExecutor(jobs) as pool:
        got = list(pool.map(_job, work, chunksize=8))
    frames = min(len(f) for f, _ in got)
    F = np.stack([f[:frames] for f, _ in got])
    G = np.stack([g[:frames] for _, g in got])
    out.mkdir(parents=True, exist_ok=True)
    if (out / "data.npz").is_file():
        with np.load(out / "data.npz") as old:
            frames = min(frames, old["F"].shape[1])
            F = np.concatenate([old["F"][:, :frames], F[:, :frames]])
            G = np.concatenate([old["G"][:, :frames], G[:, :frames]])
    np.savez(out / "data.npz", F=F, G=G)
    print(f"{len(utts)} utterances x {draws} noises: {F.shape} -> {out / 'data.npz'}", flush=True)


def build(nf: int, bands: int = BANDS, hidden: int = HIDDEN, gain_max: float = 1.0):
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.gain_max = float(gain_max)
            self.inp = nn.Linear(nf, hidden)
            self.gru = nn.GRU(hidden, hidden, batch_first=True)
            self.out = nn.Linear(hidden, bands)

        def forward(self, x, h=None):
            y, h = self.gru(torch.tanh(self.inp(x)), h)
            return self.gain_max * torch.sigmoid(self.out(y)), h

    torch.manual_seed(0)
    return Net()


# the weights file's names of the network's PyTorch parameters
TORCH_NAMES = {"inp.weight": "w1", "inp.bias": "b1", "gru.weight_ih_l0": "wih",
               "gru.bias_ih_l0": "bih", "gru.weight_hh_l0": "whh", "gru.bias_hh_l0": "bhh",
               "out.weight": "w2", "out.bias": "b2"}


def net_from_weights(model: dict):
    """The PyTorch network of a weights file (as the plugin loads it)."""
    import torch
    net = build(len(model["mu"]), len(model["b2"]), len(model["b1"]),
                float(np.asarray(model.get("gain_max", 1.0))))
    net.load_state_dict({k: torch.from_numpy(np.array(model[v], dtype=np.float32))
                         for k, v in TORCH_NAMES.items()})
    return net


def fit(out: Path, minutes: float, batch: int, crop: int, lr: float, threads: int = 2,
        init: Path | None = None, joint: tuple[float, float] | None = None,
        gain_max: float = 1.0) -> None:
    """Train; with ``joint`` = (learned, statistical) mix weights the loss is taken on the
    gain the plugin applies (the band's statistical log gain and the network's mixed with
    those weights, at the floor), so the network learns to correct the statistical gain
    rather than to estimate the ideal gain alone.  ``gain_max`` (> 1) lets the network's
    band gains exceed 1, so they can undo the statistical stage's suppression."""
    import torch
    torch.set_num_threads(threads)
    d = np.load(out / "data.npz")
    F, G = d["F"], d["G"]
    n_val = max(1, len(F) // 10)
    Fv, Gv, F, G = F[:n_val], G[:n_val], F[n_val:], G[n_val:]
    mu = F.reshape(-1, F.shape[-1]).mean(0)
    sd = F.reshape(-1, F.shape[-1]).std(0) + 1e-3
    net = build(F.shape[-1], G.shape[-1], gain_max=gain_max)
    if init is not None and not (out / "last.pt").is_file():      # from a weights file
        with np.load(init, allow_pickle=False) as z:
            model = dict(z)
        net = net_from_weights(model)
        if net.gain_max != gain_max:          # small gains stay as they were
            with torch.no_grad():
                net.out.bias -= math.log(gain_max / net.gain_max)
            net.gain_max = gain_max
        mu, sd = model["mu"].astype(np.float64), model["sd"].astype(np.float64)
        print(f"starting from {init}", flush=True)
    opt = torch.optim.Adam(net.parameters(), lr)
    ck_path, best_path, log_path = out / "last.pt", out / "best.pt", out / "log.jsonl"
    step, best, spent = 0, math.inf, 0.0
    if ck_path.is_file():                                     # resume
        ck = torch.load(ck_path, weights_only=False)
        net.gain_max = ck.get("gain_max", 1.0)
        net.load_state_dict(ck["net"])
        opt.load_state_dict(ck["opt"])
        step, best, spent = ck["step"], ck["best"], ck["spent"]
        mu, sd = ck["mu"], ck["sd"]
        for group in opt.param_groups:                     # the rate given now
            group["lr"] = lr
        print(f"resumed at step {step}, learning rate {lr}", flush=True)
    norm = lambda a: torch.from_numpy(((a - mu) / sd).astype(np.float32))   # noqa: E731

    nb = G.shape[-1]
    ln_floor = layout.DNL_FEATURE_FLOOR_DB * math.log(10) / 20

    def applied(p, f):
        """The band gain the plugin applies for network gains p and raw features f."""
        if joint is None:
            return p
        lg = joint[0] * torch.log(p.clamp_min(1e-6)) + joint[1] * f[..., 3 * nb:4 * nb]
        return torch.exp(lg.clamp(ln_floor, 0.0))

    def loss_of(p, y, f):
        p = applied(p, f)
        return ((p.sqrt() - y.sqrt()) ** 2).mean() + 0.5 * ((p - y) ** 2).mean()

    rng = np.random.default_rng(step)
    t0 = time.time()
    while spent + time.time() - t0 < 60 * minutes:
        idx = rng.integers(0, len(F), batch)
        at = rng.integers(0, F.shape[1] - crop + 1, batch)
        x = np.stack([F[i, a:a + crop] for i, a in zip(idx, at)])
        y = np.stack([G[i, a:a + crop] for i, a in zip(idx, at)])
        p, _ = net(norm(x))
        loss = loss_of(p, torch.from_numpy(y), torch.from_numpy(x))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 100 == 0:
            with torch.no_grad():
                val = float(loss_of(net(norm(Fv))[0], torch.from_numpy(Gv), torch.from_numpy(Fv)))
            now = spent + time.time() - t0
            rec = {"step": step, "seconds": round(now), "train": loss.item(), "valid": val}
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            print(rec, flush=True)
            state = {"net": net.state_dict(), "opt": opt.state_dict(), "step": step,
                     "best": min(best, val), "spent": now, "mu": mu, "sd": sd,
                     "bands": G.shape[-1], "nf": F.shape[-1], "joint": joint,
                     "gain_max": net.gain_max}
            if val < best:
                best = val
                torch.save(state, best_path)
            torch.save(state, ck_path)


def export(checkpoint: Path, dest: Path, mix: tuple[float, float] | None = None) -> None:
    """Write the weights file the plugin loads, and check the kernel against PyTorch.  The
    mix weights default to those a joint training used, else to MIX."""
    import torch
    ck = torch.load(checkpoint, weights_only=False)
    mix = mix or ck.get("joint") or MIX
    net = build(ck["nf"], ck["bands"], gain_max=ck.get("gain_max", 1.0))
    net.load_state_dict(ck["net"])
    net.eval()
    model = {"edges_hz": band_edges_hz(ck["bands"]), "mu": ck["mu"], "sd": ck["sd"],
             "mix_learned": np.float64(mix[0]), "mix_statistical": np.float64(mix[1]),
             "gain_max": np.float64(net.gain_max)}
    model.update({TORCH_NAMES[k]: v.detach().numpy() for k, v in net.state_dict().items()})
    np.savez(dest, **{k: np.asarray(v, dtype=np.float32) for k, v in model.items()})
    stored = dict(np.load(dest))
    print(f"{dest}: {dest.stat().st_size / 1e6:.2f} MB; kernel against PyTorch: "
          f"{max_kernel_error(stored, net):.2e}")


def max_kernel_error(model: dict, net) -> float:
    """Largest difference between the kernel's band gains and the network's on noisy speech."""
    import torch
    u = speech.utterances("dev", 1, 2.0, sample_rate=SR, seed=5)[0].audio.astype(np.float64)
    noise = speech.make_noise("pink", len(u), SR, seed=5).astype(np.float64)
    mix = u + speech.noise_at_snr(u, noise, 5.0)
    _, feats, gains = kernel_run(mix, model, use=True)
    mu, sd = model["mu"].astype(np.float64), model["sd"].astype(np.float64)
    net = net.double()
    with torch.no_grad():
        ref = net(torch.from_numpy((feats - mu) / sd)[None])[0][0].numpy()
    return float(np.abs(ref - gains).max())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m rtengine.denoise_train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("data", help="make the training examples")
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--utts", type=int, default=0, help="utterances (0: all)")
    a.add_argument("--draws", type=int, default=6, help="noises per utterance")
    a.add_argument("--seed", type=int, default=11)
    a.add_argument("--jobs", type=int, default=2)
    a.add_argument("--snr", type=float, nargs=2, default=(-5.0, 20.0), metavar=("LO", "HI"),
                   help="SNR range in dB (default -5 20)")
    a.add_argument("--noises", nargs="+", default=None, metavar="NAME",
                   help="draw from these noises only (default: every installed one)")
    a = sub.add_parser("fit", help="train (resumes from OUT/last.pt)")
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--minutes", type=float, default=30.0)
    a.add_argument("--batch", type=int, default=32)
    a.add_argument("--crop", type=int, default=400)
    a.add_argument("--lr", type=float, default=2e-3, help="learning rate (also on resuming)")
    a.add_argument("--threads", type=int, default=2)
    a.add_argument("--init", type=Path, help="start from this weights file (e.g. the shipped "
                   "rtengine/models/denoise-gru.npz; its feature normalisation is kept)")
    a.add_argument("--joint", type=float, nargs=2, metavar=("LEARNED", "STAT"),
                   help="take the loss on the applied gain, mixed with these weights")
    a.add_argument("--gain-max", type=float, default=1.0,
                   help="largest band gain of the network (above 1 it can undo the "
                        "statistical suppression; with --joint)")
    a = sub.add_parser("export", help="write the plugin's weights file")
    a.add_argument("checkpoint", type=Path)
    a.add_argument("dest", type=Path)
    a.add_argument("--mix", type=float, nargs=2, metavar=("LEARNED", "STAT"),
                   help="weights of the learned and the statistical log gain (0..2 each; "
                        "default: those of --joint in training, else %s)" % (MIX,))
    args = ap.parse_args(argv)
    if args.cmd == "data":
        make_data(args.out, args.utts, args.draws, args.seed, args.jobs, tuple(args.snr),
                  args.noises)
    elif args.cmd == "fit":
        fit(args.out, args.minutes, args.batch, args.crop, args.lr, args.threads, args.init,
            tuple(args.joint) if args.joint else None, args.gain_max)
    else:
        export(args.checkpoint, args.dest, tuple(args.mix) if args.mix else None)


if __name__ == "__main__":
    main()
