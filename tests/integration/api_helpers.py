"""Helpers for the control-API integration tests (stdlib only).

Built on harness.py: raw-socket HTTP for requests http.client cannot express, socket-state
assertions, a stalled upstream and the ApiTestCase base (one faultline per test).
"""
import decimal
import re
import socket
import time
import unittest

from harness import (EchoServer, Faultline, Response, ThreadedServer, call, connect_outcome,
                     echo_roundtrip, split_hostport, wait_end)

PROXY_KEYS = ["name", "listen", "upstream", "enabled", "toxics"]
TOXIC_KEYS = ["attributes", "name", "type", "stream", "toxicity"]


def raw_http(host, port, request, timeout=10):
    """Sends raw request bytes, reads one response (Content-Length, chunked or until EOF)."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        try:
            s.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer before reading everything; read what it said
        return read_http_response(s)
    finally:
        s.close()


def read_http_response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = s.recv(65536)
        if not data:
            raise AssertionError(f"connection closed before a full response header: {buf!r}")
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(rest) < n:
            data = s.recv(65536)
            if not data:
                break
            rest += data
        body = rest[:n]
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                data = s.recv(65536)
                if not data:
                    raise AssertionError("connection closed inside a chunked body")
                rest += data
            size_line, rest = rest.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                data = s.recv(65536)
                if not data:
                    raise AssertionError("connection closed inside a chunk")
                rest += data
            body += rest[:size]
            rest = rest[size + 2:]
            if size == 0:
                break
    elif status in (204, 304) or 100 <= status < 200:
        body = b""
    else:
        body = rest
        while True:
            data = s.recv(65536)
            if not data:
                break
            body += data
    return Response(status, body.decode("utf-8", "replace"), headers)


def to_plain(value):
    """Decimal -> float recursively (for equality checks against plain literals)."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value


def ipv6_loopback_missing():
    """None when a socket can bind [::1]:0, else why not (for the test's skip message: a test
    that needs IPv6 says it did not run, never passes silently)."""
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.bind(("::1", 0))
        finally:
            s.close()
        return None
    except OSError as e:
        return f"bind [::1]:0 failed: {e}"


def expect_closed(tc, sock, timeout=3.0, what="connection"):
    """Asserts the peer closes (EOF or RST) within `timeout`; echoed leftovers are skipped."""
    how, _, _ = wait_end(sock, timeout)
    if how == "open":
        tc.fail(f"{what} still open after {timeout} s")
    if how not in ("eof", "reset"):
        tc.fail(f"{what}: {how}")


def expect_refused(tc, address, timeout=1.0):
    """Asserts that connecting to `address` is refused (within `timeout`, polling)."""
    deadline = time.time() + timeout
    while True:
        host, port = split_hostport(address)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        kind = connect_outcome(host, port, timeout=2, family=family)
        if kind == "refused":
            return
        if time.time() > deadline:
            tc.fail(f"connect to {address} was not refused: {'connect succeeded' if kind == 'ok' else kind}")
        time.sleep(0.05)


def assert_echo(tc, address, payload=b"hello faultline", timeout=5):
    """Asserts that `payload` comes back whole through `address` (a new connection)."""
    got, _ = echo_roundtrip(address, payload, timeout=timeout)
    tc.assertEqual(got, payload, f"echo through {address}")


class StallServer(ThreadedServer):
    """Accepts connections and never reads from them (a stalled upstream)."""

    backlog = 64

    def __init__(self):
        self.conns = []
        super().__init__()

    def on_accept(self, conn):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.conns.append(conn)

    def close(self):
        self._stop = True
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        super().close()


def fill_until_blocked(sock, max_bytes=512 << 20, quiet=0.5, limit=15.0):
    """Writes into `sock` until no byte is accepted for `quiet` seconds. Returns bytes sent."""
    sock.setblocking(False)
    chunk = b"x" * 65536
    sent = 0
    last_progress = time.time()
    start = time.time()
    while sent < max_bytes and time.time() - start < limit:
        try:
            n = sock.send(chunk)
            sent += n
            last_progress = time.time()
        except BlockingIOError:
            if time.time() - last_progress > quiet:
                break
            time.sleep(0.01)
    sock.setblocking(True)
    return sent


class ApiTestCase(unittest.TestCase):
    """Each test gets its own fresh `faultline serve` (self.fl) and assertion helpers."""

    server_args = ()

    def setUp(self):
        self.fl = Faultline(*self.server_args)
        self.addCleanup(self.fl.__exit__)

    # --- requests -------------------------------------------------------------------------
    def api(self, method, path, body=None, **kw):
        return call(self.fl, method, path, body, **kw)

    def ok(self, method, path, body=None, status=200, **kw):
        r = self.api(method, path, body, **kw)
        self.assertEqual(r.status, status, f"{method} {path} {body!r}: {r!r}")
        return r

    def new_echo(self):
        echo = EchoServer()
        self.addCleanup(echo.close)
        return echo

    def make_proxy(self, name, upstream, listen="127.0.0.1:0", **extra):
        body = {"name": name, "listen": listen, "upstream": upstream}
        body.update(extra)
        return self.ok("POST", "/proxies", body, status=201).json

    # --- shape checks ---------------------------------------------------------------------
    def assert_error(self, r, status, message=None, prefix=None, contains=None):
        """An API error: `status`, body JSON with `error` (string) and `status` (== HTTP status)."""
        self.assertEqual(r.status, status, repr(r))
        self.assertIsInstance(r.json, dict, f"error body is not a JSON object: {r!r}")
        self.assertIsInstance(r.json.get("error"), str, repr(r))
        self.assertEqual(r.json.get("status"), status, repr(r))
        if message is not None:
            self.assertEqual(r.json["error"], message, repr(r))
        if prefix is not None:
            self.assertTrue(r.json["error"].startswith(prefix), f"error should start with {prefix!r}: {r!r}")
        if contains is not None:
            self.assertIn(contains, r.json["error"], repr(r))

    def assert_proxy_shape(self, p):
        self.assertIsInstance(p, dict, repr(p))
        for k in PROXY_KEYS:
            self.assertIn(k, p, f"proxy JSON lacks {k!r}: {p}")
        order = [k for k in p if k in PROXY_KEYS]
        self.assertEqual(order, PROXY_KEYS, f"proxy field order: {list(p)}")
        self.assertIsInstance(p["name"], str)
        self.assertIsInstance(p["listen"], str)
        self.assertIsInstance(p["upstream"], str)
        self.assertIsInstance(p["enabled"], bool)
        self.assertIsInstance(p["toxics"], list, f"toxics must be an array: {p}")
        for t in p["toxics"]:
            self.assert_toxic_shape(t)

    def assert_toxic_shape(self, t):
        self.assertIsInstance(t, dict, repr(t))
        for k in TOXIC_KEYS:
            self.assertIn(k, t, f"toxic JSON lacks {k!r}: {t}")
        self.assertIsInstance(t["attributes"], dict)
        self.assertIsInstance(t["name"], str)
        self.assertIsInstance(t["type"], str)
        self.assertIsInstance(t["stream"], str)
        self.assertIsInstance(t["toxicity"], (int, decimal.Decimal))
        self.assertNotIsInstance(t["toxicity"], bool)

    def assert_bound_loopback(self, listen):
        m = re.fullmatch(r"127\.0\.0\.1:(\d+)", listen)
        self.assertIsNotNone(m, f"expected 127.0.0.1:<port>, got {listen!r}")
        port = int(m.group(1))
        self.assertTrue(0 < port < 65536, listen)
        return port
