"""Helpers for the TCP data-path tests (stdlib only, loopback only).

Kept apart from harness.py: these are the pieces only the relay tests need (RST on close,
a seeded data stream, a SYN-dropping upstream, streaming clients).
"""
import errno
import random
import selectors
import socket
import struct
import time

from harness import try_connect


def set_linger_zero(sock):
    """close() will send RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# ---------------------------------------------------------------------------------------------
# Seeded data stream

def seeded_chunks(seed, total, chunk=1 << 20):
    """Yields `total` bytes of reproducible pseudo-random data, `chunk` bytes at a time."""
    rng = random.Random(seed)
    left = total
    while left > 0:
        n = min(chunk, left)
        yield rng.randbytes(n)
        left -= n


# ---------------------------------------------------------------------------------------------
# An upstream that never completes a handshake

class Blackhole:
    """A listen(0) socket that never accepts, with its accept queue filled, so further SYNs are
    dropped by the kernel and connects hang (until the client's own timeout)."""

    def __init__(self, host="127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(0)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(4):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect((host, self.port))
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                pass
            self.fillers.append(s)
        time.sleep(0.2)  # let the handshakes that can complete, complete

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def verify(self, timeout=1.0):
        """True when a direct connect indeed hangs (the trick works on this kernel)."""
        kind, s = try_connect(self.host, self.port, timeout=timeout)
        if s is not None:
            s.close()
        return kind == "timeout", kind

    def close(self):
        for s in self.fillers:
            s.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------------------------
# Many streaming clients driven from one thread

class StreamingClients:
    """N connections to an echo proxy, each writing continuously and reading what comes back,
    driven by one selector loop. Records, per connection, when it ended (EOF or error)."""

    def __init__(self, host, port, n, family=socket.AF_INET, chunk=16384):
        self.sel = selectors.DefaultSelector()
        self.payload = bytes(range(256)) * (chunk // 256)
        self.conns = []
        for _ in range(n):
            s = socket.socket(family, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect((host, port))
            s.setblocking(False)
            c = {"sock": s, "sent": 0, "received": 0, "end": None, "end_at": None,
                 "paused": False}
            self.conns.append(c)
            self.sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, c)

    def _finish(self, c, kind):
        if c["end"] is None:
            c["end"] = kind
            c["end_at"] = time.monotonic()
            try:
                self.sel.unregister(c["sock"])
            except (KeyError, ValueError):
                pass

    def run(self, seconds, stop_when_all_ended=False):
        """Pump for up to `seconds` (bounded)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if stop_when_all_ended and all(c["end"] for c in self.conns):
                return
            if not self.sel.get_map():
                time.sleep(min(0.01, max(0, deadline - time.monotonic())))
                continue
            for key, events in self.sel.select(timeout=min(0.05, max(0, deadline - time.monotonic()))):
                c = key.data
                s = c["sock"]
                if events & selectors.EVENT_READ and c["end"] is None:
                    try:
                        data = s.recv(65536)
                        if not data:
                            self._finish(c, "eof")
                            continue
                        c["received"] += len(data)
                        if c["paused"] and c["sent"] - c["received"] <= (1 << 19):
                            c["paused"] = False
                            self.sel.modify(s, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
                    except (BlockingIOError, InterruptedError):
                        pass
                    except ConnectionResetError:
                        self._finish(c, "reset")
                        continue
                    except OSError as e:
                        self._finish(c, f"error:{errno.errorcode.get(e.errno, e.errno)}")
                        continue
                if events & selectors.EVENT_WRITE and c["end"] is None:
                    # Keep the amount in flight bounded so the echo path never stalls on buffers.
                    if c["sent"] - c["received"] > (1 << 20):
                        c["paused"] = True
                        self.sel.modify(s, selectors.EVENT_READ, c)
                        continue
                    try:
                        c["sent"] += s.send(self.payload)
                    except (BlockingIOError, InterruptedError):
                        pass
                    except (BrokenPipeError, ConnectionResetError) as e:
                        self._finish(c, "reset" if isinstance(e, ConnectionResetError) else "epipe")
                    except OSError as e:
                        self._finish(c, f"error:{errno.errorcode.get(e.errno, e.errno)}")

    def close(self):
        for c in self.conns:
            try:
                self.sel.unregister(c["sock"])
            except (KeyError, ValueError):
                pass
            c["sock"].close()
        self.sel.close()
