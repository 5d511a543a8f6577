"""Helpers for the toxic-semantics tests (stdlib only, loopback only, port 0 everywhere).

Built on harness.py: purpose-built upstreams (a sink that counts, a greeter that talks first
and closes), timed round trips and a base TestCase with one faultline + one echo upstream
per test.
"""
import threading
import time
import unittest

from harness import EchoServer, Faultline, ThreadedServer, connect, recv_exactly


class _Server(ThreadedServer):
    """A threaded loopback TCP server on port 0; subclasses implement handle(conn)."""

    backlog = 256
    conn_timeout = 30


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
