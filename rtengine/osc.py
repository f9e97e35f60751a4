"""OSC control (python-osc), for tablet controllers and scripts.

``/rtengine/<stage>/<param> <value>`` sets a parameter to a value in its own
units (choice names and true/false work too); the same address with no
argument asks for the value, answered to the sender as
``/rtengine/<stage>/<param> <value>``.  Addresses mapped in a map file
(``osc = "/1/fader1"``) take a 0..1 control position, shaped like a MIDI
control.  Errors are answered as ``/rtengine/error "<message>"``.  The server
runs on its own thread (a control thread); it never touches the audio thread.
"""
from __future__ import annotations

import threading
from typing import Callable

from .errors import RtEngineError

PREFIX = "/rtengine/"


class OscControl:
    def __init__(self, engine: Callable[[], object], port: int, host: str = "127.0.0.1",
                 mapper: Callable[[], object] | None = None):
        """``engine()`` and ``mapper()`` return the current engine and MIDI/OSC
        mapper (they change when the chain is swapped)."""
        from pythonosc.dispatcher import Dispatcher
        from pythonosc.osc_server import ThreadingOSCUDPServer
        self._engine, self._mapper = engine, mapper
        d = Dispatcher()
        d.set_default_handler(self._handle, needs_reply_address=True)
        try:
            self.server = ThreadingOSCUDPServer((host, port), d)
        except OSError as exc:
            raise RtEngineError(f"cannot listen for OSC on {host}:{port}: {exc}; choose "
                                "another --osc-port") from None
        self.port = self.server.server_address[1]
        self.errors = 0
        self._thread = threading.Thread(target=self.server.serve_forever, name="rtengine-osc",
                                        daemon=True)

    def _reply(self, client, address, *values) -> None:
        from pythonosc.udp_client import SimpleUDPClient
        try:
            SimpleUDPClient(client[0], client[1]).send_message(address, list(values))
        except OSError:
            pass

    def _handle(self, client, address, *args) -> None:
        try:
            if address.startswith(PREFIX):
                stage, _, param = address[len(PREFIX):].partition("/")
                key = f"{stage}.{param}"
                engine = self._engine()
                if args:
                    engine.set(key, args[0])
                self._reply(client, address, float(engine.get(key)))
                return
            mapper = self._mapper() if self._mapper else None
            if mapper is not None and args and mapper.handle_osc(address, float(args[0])):
                return
            raise RtEngineError(f"no OSC address {address}: use {PREFIX}<stage>/<param> or map "
                                "it in the map file (osc = \"...\")")
        except (RtEngineError, ValueError, TypeError) as exc:
            self.errors += 1
            self._reply(client, "/rtengine/error", str(exc))

    def start(self) -> "OscControl":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
