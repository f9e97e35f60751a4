"""Batches of files: ``rtengine render`` / ``master`` on many files or a folder, in local
processes and on a real two-worker Dask cluster; failures retried and reported, reruns skip
what is done."""
import json
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import rtengine
from rtengine import batch
from rtengine.cli import main
from rtengine.loudness import measure
from rtengine.provenance import SUFFIX

SR = 44100
CHAIN = """
[[stage]]
plugin = "gain"
params = {{ gain_db = {gain} }}

[[stage]]
plugin = "eq"
[stage.params]
lowcut_on = true
lowcut_freq = 80.0
band1_on = true
band1_type = "peak"
band1_freq = 1000.0
band1_gain_db = 4.0
"""


def tone(seconds: float, freq: float, seed: int) -> np.ndarray:
    """(frames, 2) float32: a tone plus a little noise, different per file."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * freq * t)[:, None] + 0.05 * rng.standard_normal((t.size, 2))
    return x.astype(np.float32)


@pytest.fixture
def folder(tmp_path):
    """3 good 1-2 s stereo WAVs (24-bit and float) and one corrupt one, plus a chain file."""
    d = tmp_path / "in"
    d.mkdir()
    for i, (secs, freq) in enumerate([(1.0, 220.0), (1.5, 440.0), (2.0, 660.0)]):
        # a float file too: its output must be byte-identical across runs (no PEAK chunk)
        sf.write(d / f"take{i}.wav", tone(secs, freq, i), SR,
                 subtype="FLOAT" if i == 2 else "PCM_24")
    (d / "corrupt.wav").write_bytes(np.random.default_rng(9).bytes(4000))
    (d / "notes.txt").write_text("not audio: left out of the folder")
    chain = tmp_path / "chain.toml"
    chain.write_text(CHAIN.format(gain=-3.0))
    return d, chain


def outputs(out: Path) -> dict[str, bytes]:
    """Audio outputs by name (provenance sidecars hold a date: left out)."""
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.wav"))}


def mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(out.glob("*.wav"))}


def test_render_batch_fails_retries_reruns_and_redoes_on_chain_change(folder, tmp_path, capsys):
    src, chain = folder
    out = tmp_path / "out"
    rc = main(["render", str(src), str(out), "--chain", str(chain), "--jobs", "2"])
    r = capsys.readouterr()
    assert rc == 1, r.out + r.err
    assert "4 files: 3 done, 0 skipped (already done), 1 failed" in r.out, r.out
    assert "failed: " in r.out and "corrupt.wav after 3 attempts" in r.out, r.out
    assert "cannot read audio" in r.out, r.out                  # the reason, not just a name
    assert "corrupt.wav: attempt 1 of 3 failed" in r.err        # retries happened
    assert "corrupt.wav: attempt 2 of 3 failed" in r.err
    assert "2 local processes" in r.err
    assert sorted(outputs(out)) == ["take0.wav", "take1.wav", "take2.wav"]
    assert not (out / "corrupt.wav").exists()
    # no temporary files left; every output has its provenance sidecar
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [batch.MANIFEST]
    for name in outputs(out):
        side = json.loads((out / (name + SUFFIX)).read_text())
        assert side["inputs"][0]["sha256"] == batch.sha256(src / name)
    # the outputs are the chain's render of each input (the API's, same length and rate)
    for i in range(3):
        x, _ = sf.read(src / f"take{i}.wav", dtype="float32", always_2d=True)
        y, sr = sf.read(out / f"take{i}.wav", dtype="float32", always_2d=True)
        ref = rtengine.Engine(str(chain), sample_rate=SR, block_size=512, channels=2).render(
            np.ascontiguousarray(x.T))
        assert sr == SR and y.shape == x.shape, f"take{i}: {y.shape} vs {x.shape}"
        np.testing.assert_allclose(y.T, ref, atol=2 ** -23, err_msg=f"take{i}")

    # rerun: the good files are skipped (untouched), the corrupt one is tried again
    before = mtimes(out)
    rc = main(["render", str(src), str(out), "--chain", str(chain), "--jobs", "2"])
    r = capsys.readouterr()
    assert rc == 1
    assert "4 files: 0 done, 3 skipped (already done), 1 failed" in r.out, r.out
    assert "corrupt.wav after 3 attempts" in r.out
    assert mtimes(out) == before

    # a truncated output (say a copy cut short) is not done: that file alone is redone
    data = (out / "take1.wav").read_bytes()
    (out / "take1.wav").write_bytes(data[:1000])
    rc = main(["render", str(src / "take0.wav"), str(src / "take1.wav"), str(out),
               "--chain", str(chain), "--jobs", "1"])
    r = capsys.readouterr()
    assert rc == 0, r.out + r.err
    assert "2 files: 1 done, 1 skipped (already done), 0 failed" in r.out, r.out
    assert (out / "take1.wav").read_bytes() == data
    assert (out / "take0.wav").stat().st_mtime_ns == before["take0.wav"]

    # another chain redoes every file; --force redoes them with the same chain
    chain.write_text(CHAIN.format(gain=-9.0))
    old = outputs(out)
    rc = main(["render", str(src), str(out), "--chain", str(chain), "--jobs", "2",
               "--retries", "0"])
    r = capsys.readouterr()
    assert rc == 1
    assert "4 files: 3 done, 0 skipped (already done), 1 failed" in r.out, r.out
    assert "corrupt.wav after 1 attempt:" in r.out, r.out
    new = outputs(out)
    assert all(new[k] != old[k] for k in old), "a changed chain must redo every file"
    rc = main(["render", str(src / "take2.wav"), str(out), "--chain", str(chain), "--force",
               "--jobs", "1"])
    r = capsys.readouterr()
    assert rc == 0 and "1 file: 1 done, 0 skipped" in r.out, r.out
    assert outputs(out)["take2.wav"] == new["take2.wav"]             # deterministic


def test_batch_output_equals_the_single_file_render(folder, tmp_path, capsys):
    src, chain = folder
    single = tmp_path / "single.wav"
    assert main(["render", str(src / "take1.wav"), str(single), "--chain", str(chain)]) == 0
    out = tmp_path / "out"
    out.mkdir()                 # one file into an existing folder: a batch of one
    assert main(["render", str(src / "take1.wav"), str(out), "--chain", str(chain)]) == 0
    r = capsys.readouterr()
    assert "1 file: 1 done" in r.out, r.out
    assert (out / "take1.wav").read_bytes() == single.read_bytes()
    again = tmp_path / "again.wav"                  # the output may also follow the options
    assert main(["render", str(src / "take1.wav"), "--chain", str(chain), str(again)]) == 0
    assert again.read_bytes() == single.read_bytes()


def test_batch_inputs_and_outputs_are_checked_before_anything_runs(folder, tmp_path, capsys):
    src, chain = folder
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no audio here")
    out = tmp_path / "out"

    def run(*args) -> tuple[int, str]:
        rc = main(["render", *map(str, args), "--chain", str(chain)])
        return rc, capsys.readouterr().err

    rc, err = run(empty, out)
    assert rc == 1 and f"folder {empty} holds no audio files (.wav .flac" in err, err
    rc, err = run(src / "take0.wav", tmp_path / "nope.wav", out)
    assert rc == 1 and "nope.wav does not exist" in err, err
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(src / "take0.wav", other / "take0.wav")
    rc, err = run(src, other / "take0.wav", out)
    assert rc == 1 and "several inputs would write the same output" in err, err
    assert str(src / "take0.wav") in err and str(other / "take0.wav") in err, err
    afile = tmp_path / "afile.wav"
    afile.write_bytes(b"")
    rc, err = run(src / "take0.wav", src / "take1.wav", afile)
    assert rc == 1 and f"output {afile} is a file" in err and "must be a folder" in err, err
    rc, err = run(src / "take0.wav", src / "take1.wav", tmp_path / "both.wav")
    assert rc == 1 and "looks like a file name" in err, err
    rc, err = run(src, src)
    assert rc == 1 and "would overwrite the input" in err, err
    assert not out.exists()                                  # nothing was started
    with pytest.raises(SystemExit) as exc:
        main(["render", str(src), str(out), "--chain", str(chain), "--jobs", "0"])
    assert exc.value.code == 2 and "--jobs: must be at least 1" in capsys.readouterr().err
    rc, err = run(src, out, "--jobs", "2", "--cluster", "tcp://127.0.0.1:1")
    assert rc == 2 and "give one or the other" in err


def crash_on_take1(in_path: str, out_path: str, settings: dict) -> dict:
    """A job whose worker process dies on take1.wav (as a crash in native code would)."""
    if Path(in_path).name == "take1.wav":
        os._exit(3)
    time.sleep(0.3)                        # still running when take1's worker dies
    shutil.copyfile(in_path, out_path)
    return {"outputs": [out_path], "line": "copied"}


def test_a_dying_worker_costs_only_its_own_file(folder, tmp_path):
    """take1 kills its worker, which breaks the pool under the other files too; they are run
    again alone and succeed, take1 fails after its attempts."""
    src, _ = folder
    plan = batch.plan([src / "take0.wav", src / "take1.wav", src / "take2.wav"],
                      tmp_path / "out")
    res = batch.run("copy", plan, crash_on_take1, {}, {}, jobs=2, retries=1)
    got = {o.job.name: (o.status, o.attempts) for o in res}
    assert got == {"take0.wav": ("done", 1), "take1.wav": ("failed", 2),
                   "take2.wav": ("done", 1)}, got
    assert "worker process died" in res[1].error


def test_master_batch_of_two_files(tmp_path, capsys):
    src = tmp_path / "mixes"
    src.mkdir()
    for i, (secs, freq) in enumerate([(2.0, 330.0), (2.5, 550.0)]):
        sf.write(src / f"mix{i}.wav", 0.3 * tone(secs, freq, 10 + i), SR, subtype="FLOAT")
    out = tmp_path / "masters"
    args = ["master", str(src / "mix0.wav"), str(src / "mix1.wav"), str(out), "--target", "-16"]
    rc = main(args)
    r = capsys.readouterr()
    assert rc == 0, r.out + r.err
    assert "2 files: 2 done, 0 skipped (already done), 0 failed" in r.out, r.out
    for i in range(2):
        y, sr = sf.read(out / f"mix{i}.wav", dtype="float32", always_2d=True)
        x, _ = sf.read(src / f"mix{i}.wav", dtype="float32", always_2d=True)
        assert sr == SR and y.shape == x.shape
        got = measure(y.T, sr).integrated
        assert abs(got - -16.0) < 0.5, f"mix{i}: {got:.2f} LUFS, target -16"
        side = json.loads((out / f"mix{i}.wav{SUFFIX}").read_text())
        assert side["command"] == "rtengine master"
    assert main(args) == 0
    assert "0 done, 2 skipped (already done)" in capsys.readouterr().out
    assert main(args[:-2] + ["--target", "-18", "--jobs", "1"]) == 0  # a new target redoes
    assert "2 done, 0 skipped" in capsys.readouterr().out
    assert main(args + ["--plot", str(tmp_path / "p.png")]) == 2
    assert "--plot writes one PNG" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_cluster_is_named(folder, tmp_path, capsys, monkeypatch):
    pytest.importorskip("distributed", reason="Dask distributed is not installed "
                                              "(pip install distributed)")
    src, chain = folder
    monkeypatch.setenv("RTENGINE_CLUSTER_TIMEOUT", "1")
    addr = f"tcp://127.0.0.1:{free_port()}"
    rc = main(["render", str(src), str(tmp_path / "out"), "--chain", str(chain),
               "--cluster", addr])
    err = capsys.readouterr().err
    assert rc == 1 and f"no Dask scheduler answers at {addr}" in err, err
    assert "dask scheduler" in err and f"dask worker {addr}" in err


def test_dask_cluster_gives_the_local_run_s_outputs(folder, tmp_path, capsys):
    pytest.importorskip("distributed", reason="Dask distributed is not installed "
                                              "(pip install distributed)")
    from distributed import LocalCluster
    src, chain = folder
    local, remote = tmp_path / "local", tmp_path / "remote"
    assert main(["render", str(src), str(local), "--chain", str(chain), "--jobs", "1",
                 "--retries", "0"]) == 1
    capsys.readouterr()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        addr = cluster.scheduler_address
        rc = main(["render", str(src), str(remote), "--chain", str(chain), "--cluster", addr])
        r = capsys.readouterr()
        assert rc == 1, r.out + r.err
        assert f"the Dask cluster at {addr} (2 workers)" in r.err, r.err
        assert "4 files: 3 done, 0 skipped (already done), 1 failed" in r.out, r.out
        assert "corrupt.wav after 3 attempts" in r.out and "cannot read audio" in r.out
        got, want = outputs(remote), outputs(local)
        assert sorted(got) == sorted(want) == ["take0.wav", "take1.wav", "take2.wav"]
        assert got == want, "the cluster's outputs differ from the local run's"
        # a rerun on the cluster skips what the cluster did
        rc = main(["render", str(src), str(remote), "--chain", str(chain), "--cluster", addr,
                   "--retries", "0"])
        r = capsys.readouterr()
        assert rc == 1 and "0 done, 3 skipped (already done), 1 failed" in r.out, r.out
