"""rtengine.data.music: seeded multitrack pieces rendered with FluidSynth (FluidR3 GM)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rtengine.data import music

ROOT = Path(__file__).resolve().parent.parent
SR = 22050


@pytest.fixture
def fluid():
    """Render tests need pyfluidsynth; a missing SoundFont is a failure, not a skip."""
    return pytest.importorskip("fluidsynth")


@pytest.fixture(scope="module")
def pieces():
    pytest.importorskip("fluidsynth")
    return {seed: music.render_piece(seed, 5.0, SR) for seed in range(5)}


def test_only_the_allowed_soundfonts():
    names = {Path(p).name for p in music.SOUNDFONT_PATHS}
    assert names == {"FluidR3_GM.sf2"}          # never default-GM.sf2 (may be TimGM6mb)
    every = {Path(p).name for paths, _ in music.SOUNDFONTS.values() for p in paths}
    assert every == {"FluidR3_GM.sf2", "MuseScore_General_Full.sf2"}
    assert music.SOUNDFONTS["fluidr3"][0] == music.SOUNDFONT_PATHS


def test_a_second_soundfont_plays_the_same_notes_with_other_samples(fluid, pieces, tmp_path):
    if not Path(music.SOUNDFONTS["musescore"][0][0]).is_file():
        pytest.skip("musescore-general-soundfont-lossless is not installed (training only)")
    other = music.render_piece(3, 5.0, SR, soundfont="musescore")
    total = other["vocals"] + other["drums"] + other["bass"] + other["other"]
    np.testing.assert_allclose(other["mix"], total, rtol=0, atol=1e-7)
    for name in music.STEMS:
        assert other[name].shape == pieces[3][name].shape
        assert np.abs(other[name]).max() > 1e-3, name
        assert not np.allclose(other[name], pieces[3][name], atol=1e-3), name
    sf = pytest.importorskip("soundfile")
    (path,) = music.render_set(1, 2.0, 16000, seed0=3, folder=tmp_path, soundfont="musescore")
    assert json.loads((path / "meta.json").read_text())["soundfont"] == \
        "MuseScore_General_Full.sf2"
    assert sf.info(str(path / "mix.wav")).samplerate == 16000
    assert music.default_folder(30, 44100, "train", "musescore").parent.name == \
        "v%d-44100hz-30s-musescore" % music.VERSION


def test_an_unknown_soundfont_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="fluidr3, musescore"):
        music.render_set(1, 1.0, SR, soundfont="timgm6mb")


def test_same_seed_gives_identical_audio(fluid, pieces):
    again = music.render_piece(3, 5.0, SR)
    for name in (*music.STEMS, "mix"):
        assert np.array_equal(pieces[3][name], again[name]), name


def test_different_seeds_differ(fluid, pieces):
    plans = [music.compose(seed, 20.0) for seed in range(12)]
    assert len({p.tempo for p in plans}) > 4
    assert len({p.style for p in plans}) > 2
    assert len({tuple(q.program for q in p.parts) for p in plans}) > 6
    mixes = [pieces[s]["mix"] for s in range(5)]
    for i in range(len(mixes)):
        for j in range(i + 1, len(mixes)):
            assert not np.allclose(mixes[i], mixes[j], atol=1e-3)


def test_mix_is_sum_of_stems_and_every_stem_sounds(fluid, pieces):
    frames = int(5.0 * SR)
    for seed, audio in pieces.items():
        assert set(audio) == {*music.STEMS, "mix"}
        for name, x in audio.items():
            assert x.dtype == np.float32 and x.shape == (2, frames), (seed, name)
            assert np.isfinite(x).all()
            assert np.abs(x).max() < 1.0, (seed, name)
        total = audio["vocals"] + audio["drums"] + audio["bass"] + audio["other"]
        np.testing.assert_allclose(audio["mix"], total, rtol=0, atol=1e-7)
        mix_rms = np.sqrt(np.mean(audio["mix"] ** 2))
        for name in music.STEMS:               # drums included: channel 10 must not be silent
            rms = np.sqrt(np.mean(audio[name] ** 2))
            assert rms > 0.01 * mix_rms and np.abs(audio[name]).max() > 1e-3, (seed, name)


def test_drums_hit_repeatedly(fluid, pieces):
    for seed, audio in pieces.items():
        env = np.abs(audio["drums"]).max(axis=0)
        blocks = env[: len(env) // 1024 * 1024].reshape(-1, 1024).max(axis=1)
        assert (blocks > 0.1 * blocks.max()).sum() > 10, seed


def test_pieces_vary_in_tempo_and_level():
    plans = [music.compose(seed, 20.0) for seed in range(60)]
    tempos = [p.tempo for p in plans]
    assert 70 <= min(tempos) and max(tempos) <= 160 and max(tempos) - min(tempos) > 50
    peaks_db = [20 * np.log10(p.peak) for p in plans]
    assert min(peaks_db) < -15 and max(peaks_db) > -4          # quiet ones and loud ones
    assert any(p.meter == 3 for p in plans)
    assert {q.program for p in plans for q in p.parts if q.stem == "vocals"} & {52, 53, 54}
    drums = [q for p in plans for q in p.parts if q.stem == "drums"]
    assert all(q.bank == 128 for q in drums)


def test_missing_soundfont_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(music.SOUNDFONTS, "fluidr3",
                        (("/nonexistent/FluidR3_GM.sf2",), "fluid-soundfont-gm"))
    with pytest.raises(RuntimeError, match="apt-get install fluid-soundfont-gm libfluidsynth3"):
        music.render_piece(0, 1.0, SR)
    monkeypatch.setitem(music.SOUNDFONTS, "musescore",
                        (("/nonexistent/MuseScore_General_Full.sf2",),
                         "musescore-general-soundfont-lossless"))
    with pytest.raises(RuntimeError, match="apt-get install musescore-general-soundfont-lossless"):
        music.render_piece(0, 1.0, SR, soundfont="musescore")


def test_missing_fluidsynth_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "fluidsynth", None)     # import fluidsynth fails
    monkeypatch.setattr(music, "find_soundfont", lambda name="fluidr3": Path("/x/FluidR3_GM.sf2"))
    with pytest.raises(RuntimeError, match="pip install pyfluidsynth"):
        music.render_piece(0, 1.0, SR)


def test_render_set_writes_folders_and_skips_done_pieces(fluid, tmp_path):
    sf = pytest.importorskip("soundfile")
    paths = music.render_set(2, 2.0, 16000, seed0=7, folder=tmp_path)
    assert [p.name for p in paths] == ["piece0000007", "piece0000008"]
    for p in paths:
        audio = {}
        for name in (*music.STEMS, "mix"):
            x, sr = sf.read(str(p / f"{name}.wav"), dtype="float32", always_2d=True)
            assert sr == 16000 and x.shape == (32000, 2)
            audio[name] = x
        total = audio["vocals"] + audio["drums"] + audio["bass"] + audio["other"]
        np.testing.assert_allclose(audio["mix"], total, rtol=0, atol=1e-7)
        meta = json.loads((p / "meta.json").read_text())
        assert meta["seed"] == int(p.name[5:]) and 70 <= meta["tempo"] <= 160
    stamp = (paths[0] / "mix.wav").stat().st_mtime_ns
    assert music.render_set(2, 2.0, 16000, seed0=7, folder=tmp_path) == paths
    assert (paths[0] / "mix.wav").stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob(".tmp-*"))


def test_command_line(fluid, tmp_path):
    r = subprocess.run([sys.executable, "-m", "rtengine.data.music", "--n", "1", "--seconds",
                        "1.5", "--sample-rate", "16000", "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "piece0000000" / "mix.wav").is_file()
    assert "piece0000000" in r.stdout


def test_splits_are_by_piece_and_held_out_instruments_stay_out_of_training():
    train, valid, test = (set(music.split_seeds(s, 200)) for s in ("train", "valid", "test"))
    assert not (train & valid) and not (train & test) and not (valid & test)
    assert {music.split_of(s) for s in train} == {"train"}
    assert {music.split_of(s) for s in test} == {"test"}

    def uses(seeds, held):
        n = 0
        for seed in seeds:
            for part in music.compose(seed, 20.0).parts:
                n += part.program in held[part.stem]
        return n
    for stem in music.STEMS:
        assert not music.HELD_OUT[stem] & music.VALID_HELD_OUT[stem]
    # every style composes training pieces without either set (200 seeds: all styles)
    assert uses(list(train)[:200], music.HELD_OUT) == 0
    assert uses(list(train)[:200], music.VALID_HELD_OUT) == 0
    assert uses(list(valid)[:50], music.HELD_OUT) == 0
    assert uses(list(valid)[:50], music.VALID_HELD_OUT) >= 20    # about 1 in 3 parts
    assert uses(list(test)[:50], music.HELD_OUT) >= 20
    with pytest.raises(ValueError, match="unknown split"):
        music.split_seeds("dev", 3)



def test_training_pieces_meet_more_timbres_and_only_they_do():
    """Version 4: a training piece's part may take an instrument of TRAIN_TIMBRES (a stem is
    its role), none of them held out in any stem; validation and test pieces keep their styles'
    instruments, so their pieces are those of version 3."""
    melodic_held = set().union(*(music.HELD_OUT[s] | music.VALID_HELD_OUT[s]
                                 for s in music.STEMS if s != "drums"))

    def styled(part, style) -> bool:
        cfg = music.STYLES[style]
        table = {"drums": cfg["kits"], "bass": cfg["bass"],
                 "other": tuple(c[0] for c in cfg["other"]),
                 "vocals": cfg["leads"] + music.VOICES}[part.stem]
        return part.program in table

    extra, parts, bass = 0, 0, set()
    for seed in music.split_seeds("train", 120):
        piece = music.compose(seed, 20.0)
        for part in piece.parts:
            parts += 1
            held = music.HELD_OUT[part.stem] | music.VALID_HELD_OUT[part.stem]
            assert part.program not in held, (seed, part.stem, part.program)
            if not styled(part, piece.style):
                assert part.program in music.TRAIN_TIMBRES[part.stem]
                assert part.program not in melodic_held     # not even in another stem
                extra += 1
            if part.stem == "bass":
                bass.add(part.program)
    assert 0.15 * parts < extra < 0.45 * parts
    assert len(bass) >= 10                  # the styles alone offer 6 training basses
    for split in ("valid", "test"):
        for seed in music.split_seeds(split, 40):
            piece = music.compose(seed, 20.0)
            assert all(styled(part, piece.style) for part in piece.parts), seed


def test_command_line_renders_a_split_by_hours_in_parallel(fluid, tmp_path):
    r = subprocess.run([sys.executable, "-m", "rtengine.data.music", "--split", "test",
                        "--hours", str(3.0 / 3600), "--seconds", "1.5", "--jobs", "2",
                        "--sample-rate", "16000", "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in tmp_path.glob("piece*"))
    assert names == ["piece2000000", "piece2000001"]
    meta = json.loads((tmp_path / names[0] / "meta.json").read_text())
    assert meta["split"] == "test"
