"""Helpers for the toxic-semantics tests (stdlib only, loopback only, port 0 everywhere).

Kept apart from harness.py (which stays untouched): purpose-built upstreams (a sink that
counts, a greeter that talks first and closes), timed round trips, "how did this socket
end", and a base TestCase with one faultline + one echo upstream per test.
"""
import socket
import threading
import time
import unittest

from harness import EchoServer, Faultline, recv_exactly, split_hostport


def connect(address, timeout=10):
    """harness.connect, but the socket is closed when connect() fails (an RST can beat it)."""
    host, port = split_hostport(address)
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


class _Server:
    """A threaded loopback TCP server on port 0; subclasses implement handle(conn)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def _serve(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        try:
            conn.settimeout(30)
            self.handle(conn)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def handle(self, conn):
        raise NotImplementedError

    def close(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SinkServer(_Server):
    """Reads until EOF and counts; then answers b"<count>\\n" and closes.
    `counts` gets each finished connection's total (also when it ended with an error)."""

    def __init__(self):
        self.counts = []
        self.lock = threading.Lock()
        super().__init__()

    def handle(self, conn):
        total = 0
        buf = bytearray(1 << 20)
        try:
            while True:
                n = conn.recv_into(buf)
                if n == 0:
                    break
                total += n
        finally:
            with self.lock:
                self.counts.append(total)
        conn.sendall(b"%d\n" % total)


class GreeterServer(_Server):
    """Sends `payload` as soon as a client is accepted, then closes at once."""

    def __init__(self, payload=b"hello"):
        self.payload = payload
        super().__init__()

    def handle(self, conn):
        conn.sendall(self.payload)


def round_trip(sock, payload=b"ping"):
    """Sends payload, reads it back; returns seconds taken (asserts the echo is intact)."""
    start = time.monotonic()
    sock.sendall(payload)
    got = recv_exactly(sock, len(payload))
    elapsed = time.monotonic() - start
    if got != payload:
        raise AssertionError(f"echo mismatch: sent {len(payload)} bytes, got {len(got)}: {got[:40]!r}")
    return elapsed


def wait_end(sock, timeout):
    """Reads until the socket ends. Returns (how, elapsed_s, data) where how is
    "eof", "reset" or "open" (still open after timeout)."""
    start = time.monotonic()
    data = bytearray()
    deadline = start + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "open", time.monotonic() - start, bytes(data)
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return "open", time.monotonic() - start, bytes(data)
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            return "reset", time.monotonic() - start, bytes(data)
        if not chunk:
            return "eof", time.monotonic() - start, bytes(data)
        data += chunk


class ToxicTestCase(unittest.TestCase):
    """One faultline (optionally with extra flags) and one echo upstream per test."""

    SERVE_ARGS = ()

    def setUp(self):
        self.echo = EchoServer()
        self.fl = Faultline(*self.SERVE_ARGS)
        self.proxy = self.fl.create_proxy("p", self.echo.address)
        self.listen = self.proxy["listen"]
        self.socks = []

    def tearDown(self):
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
        self.fl.__exit__(None, None, None)
        self.echo.close()

    def conn(self, address=None, timeout=10):
        s = connect(address or self.listen, timeout=timeout)
        self.socks.append(s)
        return s

    def add(self, body, proxy="p", status=200):
        code, resp, _ = self.fl.request("POST", f"/proxies/{proxy}/toxics", body)
        self.assertEqual(code, status, f"POST /proxies/{proxy}/toxics {body} -> {code} {resp}")
        return resp

    def remove(self, name, proxy="p"):
        code, resp, _ = self.fl.request("DELETE", f"/proxies/{proxy}/toxics/{name}")
        self.assertEqual(code, 204, f"DELETE toxic {name} -> {code} {resp}")

    def warm(self, sock):
        """One quick round trip so the upstream connection is surely set up."""
        round_trip(sock, b"w")
