"""Catalogue-scale runs of ``rtengine render``, ``master`` and ``stems``: one job per input file.

Inputs are files and/or folders; a folder stands for the audio files in it (not in its
subfolders), sorted by name: the extensions in :data:`AUDIO_EXTS`, hidden files (``.name``)
left out.  With several inputs (or a folder) the output is a folder: ``render`` and ``master``
write ``OUTPUT/<input file name>``, ``stems`` writes ``OUTDIR/<input name>/<stem>.wav``.

Execution: ``--jobs N`` local processes (``ProcessPoolExecutor``, "spawn" context; ``N = 1`` runs
in this process), or ``--cluster ADDRESS``: the address of a running Dask distributed scheduler
(``tcp://host:port``).  The jobs are the module-level functions :func:`render_job`,
:func:`master_job` and :func:`stems_job`, pickled by name, so **every Dask worker needs rtengine
(the same version) installed and must see the input, chain, model and output files at the same
paths** (a shared folder mounted at the same place); the run checks both before it submits
anything.  The chains are deterministic, so a local run and a cluster run write the same
audio: byte-identical files (float files too: rtengine leaves out libsndfile's PEAK chunk,
which holds the time of writing).  Provenance sidecars differ by their date.

Failures: a failed job is retried ``--retries`` times (default 2); after the last attempt the
file is reported as failed with its error, the summary lists it, and the command exits 1.
Nothing is skipped silently.

Reruns: the coordinating process (the one that runs the command; never a worker) keeps a
manifest, ``OUTPUT/.rtengine-batch.json``.  After a job succeeds it records the job's key
(SHA-256 of the input file, the command, its settings with the chain file's, reference's or
model's content hash, and the rtengine version) and the size of every file the job wrote.  A
rerun skips a file when the manifest holds the same key and all its outputs exist with those
sizes; a changed input, chain or setting redoes it, and ``--force`` redoes everything.  Before
jobs start, their entries are removed from the manifest, and audio outputs are written to a
hidden temporary file and renamed into place, so a job that is killed half way never counts as
done.  The manifest is replaced atomically (temporary file + ``os.replace``), at most every
:data:`MANIFEST_INTERVAL` seconds while jobs finish and once at the end; a coordinator killed in
between only makes the next run redo the last few files.  Two commands writing into the same
output folder at the same time are not supported.
"""
from __future__ import annotations

import concurrent.futures as cf
import datetime as _dt
import hashlib
import json
import multiprocessing
import os
import sys
import time
import traceback
import uuid
from collections import deque
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from .errors import RtEngineError
from .provenance import sha256

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3")
MANIFEST = ".rtengine-batch.json"
MANIFEST_VERSION = 1
MANIFEST_INTERVAL = 1.0           # seconds between manifest writes while jobs finish
DEFAULT_RETRIES = 2
CONNECT_TIMEOUT = 10.0            # seconds; RTENGINE_CLUSTER_TIMEOUT overrides
WORKER_TIMEOUT = 30.0             # seconds to wait for a Dask worker to join
PROBE_FILES = 20                  # inputs each Dask worker is asked to see before a run


class BatchError(RtEngineError):
    """A batch that cannot start: a missing input, an empty folder, clashing outputs, an
    unreachable cluster."""


class JobError(RtEngineError):
    """One job failed; the message is the reason as the user should read it.  Raised in the
    worker (a plain message, so it crosses process and machine boundaries)."""


# ----------------------------------------------------------------------------- planning
@dataclass
class Job:
    """One input file and where its output goes (a file, or a folder for ``stems``)."""
    input: Path
    output: Path
    key: str = ""                                   # filled in by :func:`run`

    @property
    def name(self) -> str:
        return self.input.name


@dataclass
class Plan:
    """What a command will do: ``batch`` is False for the single-file behaviour (one input
    file, the output as given), True when ``out_dir`` is a folder of outputs."""
    jobs: list[Job]
    batch: bool
    out_dir: Path | None = None


def expand_inputs(paths) -> list[Path]:
    """Files as given and folders expanded to their audio files (sorted, not recursive).
    BatchError names a path that does not exist or a folder that holds no audio file.  A file
    given twice (also through its folder) counts once."""
    files: list[Path] = []
    seen: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted((q for q in p.iterdir() if q.is_file() and not q.name.startswith(".")
                            and q.suffix.lower() in AUDIO_EXTS), key=lambda q: q.name)
            if not found:
                raise BatchError(f"folder {p} holds no audio files ({' '.join(AUDIO_EXTS)}); "
                                 "give a folder of audio files, or the files themselves")
        elif p.exists():
            found = [p]
        else:
            raise BatchError(f"input {p} does not exist")
        for q in found:
            r = q.resolve()
            if r not in seen:
                seen.add(r)
                files.append(q)
    return files


def plan(inputs, output, per_input_folder: bool = False) -> Plan:
    """Map inputs to outputs.  One input file and an ``output`` that is not an existing folder
    (for ``stems``, ``per_input_folder``: any ``output``) keep the single-file behaviour.
    Otherwise ``output`` is a folder (:func:`run` creates it): ``OUTPUT/<file name>``, or with
    ``per_input_folder`` ``OUTPUT/<file stem>/``.  BatchError when ``output`` is a file, when
    two inputs map to one output, or when an output would overwrite an input."""
    given = [Path(p) for p in inputs]
    out = Path(output)
    single = len(given) == 1 and not given[0].is_dir() and (per_input_folder or not out.is_dir())
    files = expand_inputs(given)
    if single:
        return Plan([Job(files[0], out)], batch=False)
    if out.exists() and not out.is_dir():
        raise BatchError(f"output {out} is a file; with {len(files)} input files "
                         f"({', '.join(map(str, given))}) the output must be a folder: give a "
                         "folder name (it is created if missing)")
    if not out.exists() and out.suffix.lower() in AUDIO_EXTS:
        raise BatchError(f"output {out} looks like a file name, but with {len(files)} input "
                         f"files ({', '.join(map(str, given))}) the output is a folder: give "
                         "a folder name, or one input file")
    jobs = [Job(f, out / (f.stem if per_input_folder else f.name)) for f in files]
    by_out: dict[str, list[Path]] = {}
    for j in jobs:
        by_out.setdefault(j.output.name, []).append(j.input)
    clash = {k: v for k, v in by_out.items() if len(v) > 1}
    if clash:
        raise BatchError("several inputs would write the same output in " + str(out) + ": " +
                         "; ".join(f"{out / k} <- {', '.join(map(str, v))}"
                                   for k, v in sorted(clash.items())) +
                         "; rename them, or run them into different output folders")
    if out.exists():
        for j in jobs:
            if j.output.exists() and j.output.resolve() == j.input.resolve():
                raise BatchError(f"{j.output}: the output would overwrite the input it is read "
                                 "from; choose another output folder")
    return Plan(jobs, batch=True, out_dir=out)


# ----------------------------------------------------------------------------- job keys
def chain_digest(path) -> str:
    """SHA-256 of a chain file's text and of every existing file its stages' options name (a
    curve, a patch, a model), so editing any of them redoes the files rendered with it."""
    from .chain import Chain
    path = Path(path)
    chain = Chain.load(path)                       # a bad chain fails here, before any job
    h = hashlib.sha256(path.read_bytes())
    for stage in chain.stages:
        for oid, value in sorted(stage.options.items()):
            if isinstance(value, str) and value:
                f = Path(value)
                if not f.is_absolute() and chain.base is not None:
                    f = chain.base / f
                if f.is_file():
                    h.update(f"{stage.name}.{oid}:{sha256(f)}".encode())
    return h.hexdigest()


def job_key(command: str, input_sha: str, settings: dict[str, Any]) -> str:
    from . import __version__
    doc = {"command": command, "input": input_sha, "settings": settings,
           "rtengine": __version__}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


# ----------------------------------------------------------------------------- the jobs
def _temp_path(out: Path) -> Path:
    """A hidden file next to ``out`` with its extension (the audio format follows it)."""
    return out.with_name(f".{out.stem}.{uuid.uuid4().hex[:12]}.tmp{out.suffix or '.wav'}")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RtEngineError):
        return str(exc)
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno} in {tb[-1].name})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _render(in_path: str, out_path: str, settings: dict) -> dict:
    from . import provenance
    from .audio import open_input, render_file
    from .chain import Chain
    from .engine import Engine
    chain = Chain.load(settings["chain"])
    with open_input(in_path) as f:
        sr, ch = f.samplerate, f.channels
    engine = Engine(chain, sample_rate=sr, block_size=settings["block_size"], channels=ch)
    out = Path(out_path)
    tmp = _temp_path(out)
    try:
        report = render_file(engine, in_path, tmp, subtype=settings["subtype"])
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    side = provenance.write(out, command="rtengine render",
                            inputs=[("input", in_path), ("chain", settings["chain"])],
                            chains={"render": engine})
    line = (f"{report['frames']} frames, {ch} ch, {sr} Hz; latency {report['latency']} samples "
            "compensated")
    if report["nonfinite_in"]:
        line += f"; warning: {report['nonfinite_in']} NaN or infinite input samples rendered " \
                "as silence"
    return {"outputs": [str(out), str(side)], "line": line}


def _master(in_path: str, out_path: str, settings: dict) -> dict:
    from .mastering import master_file
    r = master_file(in_path, out_path, target=settings["target"], ceiling=settings["ceiling"],
                    reference=settings["reference"], subtype=settings["subtype"],
                    balance=settings["balance"])
    outputs = [r["output"], r["provenance"]]
    if settings["reference"] is not None:
        outputs.append(str(Path(out_path).with_name(Path(out_path).name + ".curve.toml")))
    b, a = r["before"], r["after"]
    line = (f"{b['integrated']:.2f} -> {a['integrated']:.2f} LUFS (target "
            f"{r['target_lufs']:.1f}), true peak {a['true_peak_db']:.2f} dBTP, gain "
            f"{r['gain_db']:+.2f} dB in {r['passes']} passes")
    return {"outputs": outputs, "line": line}


_MODELS: dict[tuple, Any] = {}                      # per worker process: loaded stem models


def _stems(in_path: str, out_dir: str, settings: dict) -> dict:
    from .stems.offline import separate_file
    from .stems.separate import Model
    path = Path(settings["model"])
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, settings["threads"])
    if key not in _MODELS:
        _MODELS.clear()
        _MODELS[key] = Model(path, threads=settings["threads"])
    r = separate_file(in_path, out_dir, model=_MODELS[key], subtype=settings["subtype"])
    res = r["sum_residual"]
    line = (f"{len(r['stems'])} stems ({', '.join(r['stems'])}); sum residual "
            + (f"{res:.2e}" if res is not None else
               f"not measured (separated at {r['model_rate']} Hz)"))
    return {"outputs": r["outputs"] + [r["provenance"]], "line": line}


def render_job(in_path: str, out_path: str, settings: dict) -> dict:
    """Render ``in_path`` through the chain file ``settings["chain"]`` into ``out_path`` (block
    size and subtype from ``settings``): written to a hidden temporary file and renamed into
    place, then its provenance sidecar.  Runs in a worker; returns the files written and a line
    for the log.  Any failure raises JobError with a readable reason."""
    try:
        return _render(in_path, out_path, settings)
    except Exception as exc:
        raise JobError(_reason(exc)) from None


def master_job(in_path: str, out_path: str, settings: dict) -> dict:
    """``rtengine master`` of one file (settings: target, ceiling, reference, subtype,
    balance).  Runs in a worker; JobError on failure."""
    try:
        return _master(in_path, out_path, settings)
    except Exception as exc:
        raise JobError(_reason(exc)) from None


def stems_job(in_path: str, out_dir: str, settings: dict) -> dict:
    """``rtengine stems`` of one file into the folder ``out_dir`` (settings: model path,
    threads, subtype); the model is loaded once per worker process.  JobError on failure."""
    try:
        return _stems(in_path, out_dir, settings)
    except Exception as exc:
        raise JobError(_reason(exc)) from None


def probe(paths: list[str], out_dir: str) -> dict:
    """Run on each Dask worker before a batch: its rtengine version, which of ``paths`` it
    cannot see and whether it sees the output folder."""
    from . import __version__
    return {"rtengine": __version__, "missing": [p for p in paths if not Path(p).exists()],
            "out_dir": Path(out_dir).is_dir()}


# ----------------------------------------------------------------------------- runners
class LocalRunner:
    """``workers`` processes (spawned) or, with one worker, this process.

    A worker that dies (a crash in native code, the OOM killer) breaks the whole process pool,
    failing every job that was in it; which job caused it is unknown.  Those jobs are then run
    again one at a time in a separate process (``solo``), where a crash can only be the running
    job's, so one bad file cannot use up the attempts of the files running beside it."""

    def __init__(self, workers: int):
        self.workers = max(1, int(workers))
        self.pools: dict[bool, cf.ProcessPoolExecutor] = {}
        self.where = (f"{self.workers} local processes" if self.workers > 1
                      else "this process")

    @property
    def isolates(self) -> bool:
        return self.workers > 1

    def submit(self, fn, *args, solo: bool = False):
        if self.workers == 1:
            fut: cf.Future = cf.Future()
            try:
                fut.set_result(fn(*args))
            except Exception as exc:
                fut.set_exception(exc)
            return fut
        pool = self.pools.get(solo)
        if pool is not None:
            try:
                return pool.submit(fn, *args)
            except BrokenProcessPool:                # a worker died: start a fresh pool
                pool.shutdown(wait=False, cancel_futures=True)
        pool = self.pools[solo] = cf.ProcessPoolExecutor(
            max_workers=1 if solo else self.workers,
            mp_context=multiprocessing.get_context("spawn"))
        return pool.submit(fn, *args)

    def wait(self, futures) -> set:
        return cf.wait(futures, return_when=cf.FIRST_COMPLETED).done

    def close(self, wait: bool = True) -> None:
        for pool in self.pools.values():
            pool.shutdown(wait=wait, cancel_futures=True)
        self.pools.clear()


class DaskRunner:
    """Jobs on the workers of a running Dask distributed scheduler at ``address``."""

    def __init__(self, address: str):
        try:
            import distributed
        except ImportError:
            raise BatchError("--cluster needs Dask distributed: pip install distributed (on "
                             "this machine, and with rtengine on every worker)") from None
        self._distributed = distributed
        timeout = float(os.environ.get("RTENGINE_CLUSTER_TIMEOUT", CONNECT_TIMEOUT))
        try:
            self.client = distributed.Client(address, timeout=timeout, set_as_default=False)
        except Exception as exc:
            raise BatchError(f"no Dask scheduler answers at {address} ({exc}): start "
                             f"one with `dask scheduler` and workers with `dask worker "
                             f"{address}`, or check the address") from None
        self.address = address
        self.where = f"the Dask cluster at {address}"
        self._finished = None                   # distributed.as_completed of the submitted

    def check(self, paths: list[str], out_dir: str, warn: Callable[[str], None]) -> None:
        """BatchError unless the workers run rtengine and see ``paths`` and ``out_dir``."""
        from . import __version__
        try:
            self.client.wait_for_workers(1, timeout=WORKER_TIMEOUT)
        except Exception:
            self.close()
            raise BatchError(f"the Dask scheduler at {self.address} has no workers: start "
                             f"them with `dask worker {self.address}` on machines that have "
                             "rtengine installed and see the same files") from None
        try:
            seen = self.client.run(probe, paths, out_dir)
        except Exception as exc:
            self.close()
            raise BatchError(f"the Dask workers at {self.address} cannot run rtengine jobs "
                             f"({_reason(exc)}): install rtengine ({__version__}) on every "
                             "worker") from None
        self.where = f"the Dask cluster at {self.address} ({len(seen)} workers)"
        for worker, info in sorted(seen.items()):
            if info["missing"] or not info["out_dir"]:
                self.close()
                what = ", ".join(info["missing"][:3]) or f"the output folder {out_dir}"
                raise BatchError(f"Dask worker {worker} does not see {what}: workers need the "
                                 "same file paths as this machine (a shared folder mounted at "
                                 "the same place)")
            if info["rtengine"] != __version__:
                warn(f"warning: Dask worker {worker} runs rtengine {info['rtengine']}, this "
                     f"machine {__version__}: outputs may differ")

    isolates = False                  # the scheduler deals with workers that die

    def submit(self, fn, *args, solo: bool = False):
        fut = self.client.submit(fn, *args, pure=False)
        if self._finished is None:
            self._finished = self._distributed.as_completed(
                [fut], loop=self.client.loop, raise_errors=False)
        else:
            self._finished.add(fut)
        return fut

    def wait(self, futures) -> set:
        """The next finished future (every running one was submitted here)."""
        return {next(self._finished)}

    def close(self, wait: bool = True) -> None:
        self.client.close()


# ----------------------------------------------------------------------------- manifest
class Manifest:
    """``OUT_DIR/.rtengine-batch.json``: which outputs are done, under which job key.  Read and
    written by the coordinating process only."""

    def __init__(self, out_dir: Path, warn: Callable[[str], None]):
        self.dir = Path(out_dir).resolve()
        self.path = self.dir / MANIFEST
        self.entries: dict[str, dict] = {}
        self.dirty = False
        self.last_write = 0.0
        if self.path.exists():
            try:
                doc = json.loads(self.path.read_text(encoding="utf-8"))
                if doc.get("version") == MANIFEST_VERSION:
                    self.entries = dict(doc["files"])
                else:
                    warn(f"warning: {self.path} has another format; every file is redone")
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                warn(f"warning: {self.path} cannot be read ({exc}); every file is redone")

    def done(self, job: Job) -> bool:
        e = self.entries.get(job.output.name)
        if not e or e.get("key") != job.key:
            return False
        for rel, size in e.get("outputs", {}).items():
            p = self.dir / rel
            if not p.is_file() or p.stat().st_size != size:
                return False
        return True

    def forget(self, jobs: list[Job]) -> None:
        for j in jobs:
            if self.entries.pop(j.output.name, None) is not None:
                self.dirty = True
        self.write()

    def record(self, job: Job, command: str, outputs: list[str]) -> None:
        files = {}
        for o in outputs:
            p = Path(o)
            try:
                rel = p.relative_to(self.dir).as_posix()
            except ValueError:
                rel = os.path.relpath(p, self.dir)
            files[rel] = p.stat().st_size
        self.entries[job.output.name] = {
            "input": str(job.input.resolve()), "command": command, "key": job.key,
            "outputs": files,
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        self.dirty = True
        if time.monotonic() - self.last_write >= MANIFEST_INTERVAL:
            self.write()

    def write(self) -> None:
        if not self.dirty:
            return
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": MANIFEST_VERSION, "files": self.entries},
                                  indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)
        self.dirty = False
        self.last_write = time.monotonic()


# ----------------------------------------------------------------------------- running
@dataclass
class Outcome:
    job: Job
    status: str                                     # "done", "skipped" or "failed"
    attempts: int = 0
    error: str = ""
    line: str = ""
    outputs: list[str] = field(default_factory=list)


def _failure(exc: BaseException) -> str:
    if isinstance(exc, BrokenProcessPool):
        return "a worker process died (it crashed or was killed) while this file was in its pool"
    return _reason(exc)


def run(command: str, plan: Plan, job_fn: Callable[..., dict], settings: dict[str, Any],
        key_settings: dict[str, Any], *, jobs: int | None = None, cluster: str | None = None,
        retries: int = DEFAULT_RETRIES, force: bool = False, out: TextIO | None = None,
        err: TextIO | None = None) -> list[Outcome]:
    """Run ``job_fn(input, output, settings)`` for every job of a batch ``plan`` and print a
    summary.  ``key_settings`` is what the job key holds besides the input's SHA-256 and the
    command (hashes rather than paths).  Returns one Outcome per input, in input order.
    Coordinator only: call it from the main thread of the process that owns the manifest."""
    from tqdm import tqdm
    out = out or sys.stdout
    err = err or sys.stderr
    assert plan.batch and plan.out_dir is not None

    def say(msg: str) -> None:
        tqdm.write(msg, file=err)

    plan.out_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(plan.out_dir, say)
    outcomes: dict[int, Outcome] = {}
    todo: list[int] = []
    for i, job in enumerate(plan.jobs):
        try:
            job.key = job_key(command, sha256(job.input), key_settings)
        except OSError as exc:
            outcomes[i] = Outcome(job, "failed", 0, f"{job.input} cannot be read ({exc})")
            continue
        if not force and manifest.done(job):
            outcomes[i] = Outcome(job, "skipped")
        else:
            todo.append(i)
    n = len(plan.jobs)
    runner: LocalRunner | DaskRunner | None = None
    if todo and cluster:
        runner = DaskRunner(cluster)
        runner.check([str(plan.jobs[i].input.resolve()) for i in todo[:PROBE_FILES]]
                     + [v for v in settings.values() if isinstance(v, str) and os.path.isabs(v)],
                     str(plan.out_dir.resolve()), say)
    elif todo:
        runner = LocalRunner(min(jobs or os.cpu_count() or 1, len(todo)))
    bar = tqdm(total=n, initial=n - len(todo), unit="file", desc=command, file=err,
               dynamic_ncols=True, mininterval=0.2)
    finished = False
    try:
        manifest.forget([plan.jobs[i] for i in todo])
        if runner is not None:
            say(f"rtengine {command}: {len(todo)} of {n} files to do on {runner.where}"
                + (f" ({n - len(todo)} already done)" if len(todo) < n else ""))
            attempts = dict.fromkeys(todo, 0)
            running: dict[Any, int] = {}
            solo: set[int] = set()                  # run alone after a worker died
            solo_queue: deque[int] = deque()

            def submit(i: int) -> None:
                job = plan.jobs[i]
                attempts[i] += 1
                fut = runner.submit(job_fn, str(job.input.resolve()),
                                    str(job.output.resolve()), settings, solo=i in solo)
                running[fut] = i

            for i in todo:
                submit(i)
            while running or solo_queue:
                if solo_queue and not any(j in solo for j in running.values()):
                    submit(solo_queue.popleft())
                for fut in runner.wait(running.keys()):
                    i = running.pop(fut)
                    job = plan.jobs[i]
                    try:
                        res = fut.result()
                    except Exception as exc:
                        reason = _failure(exc)
                        if (isinstance(exc, BrokenProcessPool) and runner.isolates
                                and i not in solo):
                            attempts[i] -= 1         # maybe not its fault: find out alone
                            solo.add(i)
                            solo_queue.append(i)
                            say(f"{job.name}: {reason}; running it again on its own")
                            continue
                        if attempts[i] <= retries:
                            say(f"{job.name}: attempt {attempts[i]} of {retries + 1} failed: "
                                f"{reason}; retrying")
                            if i in solo:
                                solo_queue.append(i)
                            else:
                                submit(i)
                            continue
                        outcomes[i] = Outcome(job, "failed", attempts[i], reason)
                        say(f"{job.name}: FAILED after {attempts[i]} attempts: {reason}")
                    else:
                        manifest.record(job, command, res["outputs"])
                        outcomes[i] = Outcome(job, "done", attempts[i], line=res["line"],
                                              outputs=res["outputs"])
                        say(f"{job.name} -> {job.output}: {res['line']}")
                    bar.update(1)
                    failed = sum(o.status == "failed" for o in outcomes.values())
                    if failed:
                        bar.set_postfix_str(f"{failed} failed", refresh=False)
        finished = True
    finally:
        bar.close()
        manifest.write()
        if runner is not None:
            runner.close(wait=finished)
    result = [outcomes[i] for i in range(n)]
    summary(command, result, manifest.path, out)
    return result


def summary(command: str, outcomes: list[Outcome], manifest: Path, out: TextIO) -> None:
    """Print what was done, skipped and failed (with each failure's attempts and reason)."""
    done = [o for o in outcomes if o.status == "done"]
    skipped = [o for o in outcomes if o.status == "skipped"]
    failed = [o for o in outcomes if o.status == "failed"]
    n = len(outcomes)
    print(f"rtengine {command}: {n} file{'s' if n != 1 else ''}: {len(done)} done, {len(skipped)} "
          f"skipped (already done), {len(failed)} failed", file=out)
    if skipped:
        print(f"  skipped {len(skipped)}: same input and settings as recorded in {manifest} "
              f"and their outputs are there (--force redoes them): "
              + ", ".join(o.job.name for o in skipped[:10])
              + (f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""), file=out)
    for o in failed:
        tries = (f"after {o.attempts} attempt{'s' if o.attempts != 1 else ''}" if o.attempts
                 else "not started")
        print(f"  failed: {o.job.input} {tries}: {o.error}", file=out)
