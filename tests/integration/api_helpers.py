"""Extra helpers for the control-API integration tests (stdlib only).

Built on harness.py (which stays untouched): a richer API client that keeps the raw body,
raw-socket HTTP for requests http.client cannot express, socket-state checks, a Prometheus
text parser and a launcher for `faultline serve` with arbitrary flags.
"""
import decimal
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import BIN, EchoServer, Faultline, connect, split_hostport  # noqa: F401

PROXY_KEYS = ["name", "listen", "upstream", "enabled", "toxics"]
TOXIC_KEYS = ["attributes", "name", "type", "stream", "toxicity"]


class Response:
    def __init__(self, status, text, headers):
        self.status = status
        self.text = text
        self.headers = headers  # lower-cased names
        try:
            # Decimal keeps 0.2 as printed, so the test can see 0.200000003 if it is sent.
            self.json = json.loads(text, parse_float=decimal.Decimal) if text.strip() else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return f"<HTTP {self.status} {self.text[:300]!r}>"


def call(fl, method, path, body=None, raw=None, headers=None, timeout=10, user_agent="faultline-tests"):
    """One request on a fresh connection. `body` is JSON-encoded; `raw` is sent as is."""
    conn = http.client.HTTPConnection(fl.host, fl.port, timeout=timeout)
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    if isinstance(data, str):
        data = data.encode()
    hdrs = {}
    if user_agent is not None:
        hdrs["User-Agent"] = user_agent
    if headers:
        hdrs.update(headers)
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        text = resp.read().decode("utf-8", "replace")
        return Response(resp.status, text, {k.lower(): v for k, v in resp.getheaders()})
    finally:
        conn.close()


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


def ipv6_available():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def expect_closed(tc, sock, timeout=3.0, what="connection"):
    """Asserts the peer closes (EOF or RST) within `timeout`; echoed leftovers are skipped."""
    deadline = time.time() + timeout
    while True:
        left = deadline - time.time()
        if left <= 0:
            tc.fail(f"{what} still open after {timeout} s")
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            return
        except socket.timeout:
            tc.fail(f"{what} still open after {timeout} s")
        if not data:
            return


def expect_refused(tc, address, timeout=1.0):
    """Asserts that connecting to `address` is refused (within `timeout`, polling)."""
    deadline = time.time() + timeout
    last = None
    while True:
        host, port = split_hostport(address)
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect((host, port))
            last = "connect succeeded"
        except ConnectionRefusedError:
            return
        except OSError as e:
            last = e
        finally:
            s.close()
        if time.time() > deadline:
            tc.fail(f"connect to {address} was not refused: {last}")
        time.sleep(0.05)


def echo_roundtrip(tc, address, payload=b"hello faultline", timeout=5):
    s = connect(address, timeout=timeout)
    try:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            data = s.recv(65536)
            if not data:
                break
            got += data
        tc.assertEqual(got, payload, f"echo through {address}")
    finally:
        s.close()


class StallServer:
    """Accepts connections and never reads from them (a stalled upstream)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def _serve(self):
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            self.conns.append(c)

    def close(self):
        self._stop = True
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


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


_METRIC_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text format -> list of (name, {labels}, float value)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _METRIC_RE.match(line)
        if not m:
            continue
        labels = dict(_LABEL_RE.findall(m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def metric_value(samples, name, **labels):
    """The value of the one sample of `name` whose labels include `labels`, or None."""
    found = [v for n, l, v in samples if n == name and all(l.get(k) == w for k, w in labels.items())]
    if len(found) > 1:
        raise AssertionError(f"{len(found)} samples of {name} match {labels}")
    return found[0] if found else None


class Serve:
    """`faultline serve` with exactly the given flags (plus --port-file), same API as Faultline."""

    def __init__(self, args, env=None, port_file_flag="--port-file"):
        self.tmp = tempfile.mkdtemp(prefix="faultline-test-")
        self.port_file = os.path.join(self.tmp, "api.addr")
        full_env = dict(os.environ)
        full_env.setdefault("LOG_LEVEL", "warn")
        if env:
            full_env.update(env)
        self.log = open(os.path.join(self.tmp, "server.log"), "w+")
        self.proc = subprocess.Popen([BIN, "serve"] + list(args) + [port_file_flag, self.port_file],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=full_env)
        deadline = time.time() + 15
        while time.time() < deadline:
            if os.path.exists(self.port_file):
                with open(self.port_file) as f:
                    text = f.read().strip()
                if text:
                    self.host, self.port = split_hostport(text)
                    return
            if self.proc.poll() is not None:
                out = self.logs()
                self.__exit__()
                raise RuntimeError(f"faultline exited with {self.proc.returncode}: {out}")
            time.sleep(0.02)
        self.__exit__()
        raise RuntimeError("faultline did not write its port file within 15 s")

    logs = Faultline.logs
    request = Faultline.request
    create_proxy = Faultline.create_proxy
    stop = Faultline.stop
    url = Faultline.url

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def run_serve_expect_exit(args, config=None, timeout=10):
    """Runs `faultline serve --host 127.0.0.1 --port 0 --port-file F [--config C] ARGS`, expecting it
    to exit by itself. Returns (returncode or None on timeout, output, port_file_written, seconds)."""
    tmp = tempfile.mkdtemp(prefix="faultline-test-")
    try:
        port_file = os.path.join(tmp, "api.addr")
        cmd = [BIN, "serve", "--host", "127.0.0.1", "--port", "0", "--port-file", port_file]
        if config is not None:
            path = os.path.join(tmp, "config.json")
            with open(path, "w") as f:
                f.write(config if isinstance(config, str) else json.dumps(config))
            cmd += ["--config", path]
        env = dict(os.environ)
        env.setdefault("LOG_LEVEL", "warn")
        start = time.monotonic()
        proc = subprocess.Popen(cmd + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        try:
            out, _ = proc.communicate(timeout=timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            rc = None
        return rc, out.decode("utf-8", "replace"), os.path.exists(port_file), time.monotonic() - start
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
