"""``rtengine stems IN OUTDIR``: separate a file into one audio file per stem."""
from __future__ import annotations

import os
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

from rtengine.errors import AudioFormatError

from .separate import Model, default_threads, separate


def _resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    from scipy.signal import resample_poly
    g = gcd(int(src), int(dst))
    return resample_poly(x, dst // g, src // g, axis=-1).astype(np.float32)


def stem_paths(out_dir, stems, ext: str = ".wav") -> list[Path]:
    out = Path(out_dir)
    return [out / f"{s}{ext}" for s in stems]


def separate_file(in_path, out_dir, model=None, threads: int | None = None,
                  subtype: str | None = None, progress=None) -> dict:
    """Separate ``in_path`` into ``out_dir/<stem>.wav`` (one file per stem, the input's length,
    channels and rate) and write ``out_dir/stems.provenance.json``.  A rate the model was not
    trained for is resampled to the nearest one and back.  NaN or infinite input samples are
    separated as silence (counted in the report).  Returns a report."""
    from rtengine import provenance
    from rtengine.audio import open_input, write_audio
    src = Path(in_path)
    if not isinstance(model, Model):
        model = Model(model, threads=threads or default_threads())
    with open_input(src) as f:
        rate, subtype_in = f.samplerate, f.subtype
        x = f.read(dtype="float32", always_2d=True).T
    if x.shape[1] == 0:
        raise AudioFormatError(f"{src}: the file holds no audio frames")
    bad = ~np.isfinite(x)
    nonfinite = int(bad.sum())
    if nonfinite:
        x = np.where(bad, np.float32(0.0), x)
    rates = model.spec.sample_rates
    work_rate = rate if rate in rates else min(rates, key=lambda r: abs(r - rate))
    y_in = x if work_rate == rate else _resample(x, rate, work_rate)
    stems = separate(model, y_in, progress=progress)
    if work_rate != rate:
        stems = _resample(stems, work_rate, rate)[..., :x.shape[1]]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if subtype is None:
        subtype = subtype_in if sf.check_format("WAV", subtype_in) else "FLOAT"
    paths = stem_paths(out, model.spec.stems)
    for i, p in enumerate(paths):
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp.wav")
        write_audio(tmp, stems[i], rate, subtype=subtype)
        os.replace(tmp, p)
    residual = float(np.abs(stems.sum(axis=0) - x).max()) if work_rate == rate else None
    report = {"input": str(src), "frames": int(x.shape[1]), "sample_rate": int(rate),
              "channels": int(x.shape[0]), "model_rate": int(work_rate),
              "stems": list(model.spec.stems), "latency_samples": 0,
              "nonfinite_in": nonfinite,
              "peaks": {s: float(np.abs(stems[i]).max()) for i, s in
                        enumerate(model.spec.stems)},
              "sum_residual": residual}
    side = provenance.write(paths[0], command="rtengine stems", inputs=[("input", src)],
                            chains={}, models=[model.path], report=report,
                            more_outputs=paths[1:], sidecar=out / "stems.provenance.json")
    report["provenance"] = str(side)
    report["outputs"] = [str(p) for p in paths]
    return report
