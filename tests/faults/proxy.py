"""A TCP proxy of the test harness in front of the test cluster's API server, with faults on demand.

Modes (switch at any time; new connections see the new mode, open ones the next chunk):
  pass     forward both ways
  slow     hold every chunk the API server sends for `delay` seconds (one response is one or two
           chunks: about `delay` per response)
  reset    accept, then close at once with a TCP reset (SO_LINGER 0)
  stopped  refuse connections (the listening socket is closed: connect() gets ECONNREFUSED)

TLS passes through untouched: the client still talks to the API server's own certificate.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time


class FaultProxy:
    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.mode = "pass"
        self.delay = 2.0
        self.port = 0
        self.connections = 0  # accepted since start (every mode)
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.listen()

    # ---- modes
    def set(self, mode: str, delay: float | None = None) -> None:
        assert mode in ("pass", "slow", "reset", "stopped"), mode
        if delay is not None:
            self.delay = delay
        if mode == "stopped":
            self._stop_listening()
            self.drop_open()
        elif self._listener is None:
            self.listen()
        self.mode = mode

    def drop_open(self) -> None:
        """Close every open connection (a server that goes away mid-response)."""
        with self._lock:
            for s in list(self._open):
                with contextlib.suppress(OSError):
                    s.close()
            self._open.clear()

    def close(self) -> None:
        self._closed = True
        self._stop_listening()
        self.drop_open()

    # ---- plumbing
    def listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed
            self.connections += 1
            if self.mode == "reset":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_server and self.mode == "slow":
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with self._lock:
                    self._open.discard(s)
                s.close()
