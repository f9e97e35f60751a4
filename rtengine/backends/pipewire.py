"""The engine as a virtual audio device on PipeWire.

``rtengine run --virtual-device`` creates two PipeWire nodes, a sink
"<name> input" (desktop applications play into it) and a virtual source
"<name> output" (applications record from it like a microphone), and runs the
engine as a JACK client through PipeWire's libjack between them:

    app -> "<name> input" (sink) -> monitor ports -> engine -> "<name> output" (source) -> app

The nodes belong to a ``pw-cli`` process that rtengine keeps open: they are
removed when rtengine exits, and also when it is killed (the kernel ends
pw-cli with its parent, and PipeWire drops a dead client's nodes).
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from ..errors import RtEngineError

PW_LIBJACK_DIRS = ("/usr/lib/x86_64-linux-gnu/pipewire-0.3/jack",
                   "/usr/lib/aarch64-linux-gnu/pipewire-0.3/jack",
                   "/usr/lib64/pipewire-0.3/jack", "/usr/lib/pipewire-0.3/jack")
PR_SET_PDEATHSIG = 1


class PipeWireError(RtEngineError):
    """PipeWire is missing, not running, or refused a virtual device."""


def positions(channels: int) -> list[str]:
    """PipeWire channel positions for a channel count (and the port suffixes)."""
    if channels == 1:
        return ["MONO"]
    if channels == 2:
        return ["FL", "FR"]
    return [f"AUX{i}" for i in range(channels)]


def pipewire_libjack() -> str:
    """Path of PipeWire's libjack (what pw-jack puts first on the library path)."""
    for d in PW_LIBJACK_DIRS:
        p = Path(d) / "libjack.so.0"
        if p.exists():
            return str(p)
    raise PipeWireError("PipeWire's JACK library is not installed (libjack.so.0 under "
                        "pipewire-0.3/jack); install it: apt-get install pipewire-jack")


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def check_running() -> None:
    if shutil.which("pw-cli") is None:
        raise PipeWireError("pw-cli is not installed; --virtual-device needs PipeWire: "
                            "apt-get install pipewire pipewire-bin pipewire-jack wireplumber")
    r = subprocess.run(["pw-cli", "info", "0"], capture_output=True, text=True, timeout=10)
    if r.returncode != 0 or "Core" not in r.stdout:
        runtime = os.environ.get("XDG_RUNTIME_DIR", "(unset)")
        raise PipeWireError(f"no PipeWire daemon answers for this user (XDG_RUNTIME_DIR="
                            f"{runtime}): start it (systemctl --user start pipewire "
                            "wireplumber pipewire-pulse), or run without --virtual-device "
                            "and use the engine's JACK ports")


class VirtualDevice:
    """The sink and source nodes; ``close()`` (or exit) removes them."""

    def __init__(self, name: str, channels: int, rate: int = 48000):
        check_running()
        self.name = name
        self.channels = channels
        self.positions = positions(channels)
        self.sink = f"{name} input"
        self.source = f"{name} output"
        pos = " ".join(self.positions)
        base = name.replace(" ", "_")
        self.sink_node = f"{base}_input"
        self.source_node = f"{base}_output"
        # pw-cli stays open: the nodes live exactly as long as it does
        self._cli = subprocess.Popen(["pw-cli"], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     text=True, preexec_fn=_die_with_parent)
        for node, desc, cls in ((self.sink_node, self.sink, "Audio/Sink"),
                                (self.source_node, self.source, "Audio/Source/Virtual")):
            self._send(f'create-node adapter {{ factory.name=support.null-audio-sink '
                       f'node.name={node} node.description="{desc}" media.class={cls} '
                       f'audio.position=[{pos}] audio.rate={int(rate)} '
                       f'monitor.channel-volumes=false }}')
        self._wait_nodes()

    def _wait_until(self, ready, timeout: float, hint: str = "") -> None:
        """Poll ready() until true; if pw-cli dies or time runs out, remove the
        device and raise."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if ready():
                return
            if self._cli.poll() is not None:
                break
            time.sleep(0.05)
        self.close()
        raise PipeWireError(f"PipeWire did not create the virtual device '{self.sink}' / "
                            f"'{self.source}' within {timeout:g} s{hint}")

    def _wait_nodes(self, timeout: float = 10.0) -> None:
        """Wait until PipeWire lists both nodes, then let the session manager
        settle (it moves its fallback sink away when a new one appears; a JACK
        client opened during that change fails)."""
        def listed() -> bool:
            r = subprocess.run(["pw-cli", "ls", "Node"], capture_output=True, text=True,
                               timeout=10)
            return (f'node.name = "{self.sink_node}"' in r.stdout
                    and f'node.name = "{self.source_node}"' in r.stdout)
        self._wait_until(listed, timeout)
        time.sleep(0.3)

    def _send(self, line: str) -> None:
        try:
            self._cli.stdin.write(line + "\n")
            self._cli.stdin.flush()
        except (BrokenPipeError, OSError):
            raise PipeWireError("pw-cli exited while creating the virtual device; is the "
                                "PipeWire daemon running?") from None

    @property
    def capture_ports(self) -> list[str]:
        """JACK names of the sink's monitor ports (what applications play)."""
        return [f"{self.sink}:monitor_{p}" for p in self.positions]

    @property
    def playback_ports(self) -> list[str]:
        """JACK names of the virtual source's inputs (what applications record)."""
        return [f"{self.source}:input_{p}" for p in self.positions]

    def wait_ports(self, list_ports, timeout: float = 10.0) -> None:
        """Wait until both nodes' ports are visible through JACK."""
        want = set(self.capture_ports) | set(self.playback_ports)
        self._wait_until(lambda: want <= set(list_ports()), timeout,
                         " (is wireplumber running?)")

    def close(self) -> None:
        if self._cli.poll() is None:
            try:
                self._cli.stdin.write("quit\n")
                self._cli.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
            try:
                self._cli.wait(2)
            except subprocess.TimeoutExpired:
                self._cli.terminate()
                self._cli.wait(5)
