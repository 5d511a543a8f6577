"""`protocol: "http"` proxies with real peers: curl (the real binary) as the client and an
HTTP/1.1 server started here (python's ThreadingHTTPServer, keep-alive, chunked both ways,
100-continue, large streamed bodies). Checks what docs/protocols.md promises: bytes pass
unchanged without faults, and each http_* fault does what its table row says.

Run standalone: FAULTLINE_BIN=build/faultline python3 -u tests/integration/test_http_proxy.py
Needs curl on PATH. Loopback only, port 0 everywhere.
"""
import gzip
import hashlib
import http.server
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import EchoServer, Faultline, ThreadedServer, connect, metric, need, poll, recv_until  # noqa: E402

MIB = 1 << 20
BIG = 50 * MIB          # the streamed download
UPLOAD = 20 * MIB       # the uploads
# Deterministic, non-repeating bytes: a reordered or dropped piece changes the digest.
DATA = random.Random(20240607).randbytes(BIG)
JSON_DOC = {"a": 1, "b": {"c": 2}, "list": [1, 2]}
JSON_TEXT = json.dumps(JSON_DOC, separators=(",", ":")).encode()


def sha(data):
    return hashlib.sha256(data).hexdigest()


def sse_events(n, size=0):
    """The events /sse sends (without the final [DONE])."""
    out = []
    for i in range(n):
        text = json.dumps({"i": i, "pad": ""}, separators=(",", ":"))
        pad = "x" * max(0, size - len(text) - 8)
        out.append(b"data: " + json.dumps({"i": i, "pad": pad}, separators=(",", ":")).encode() + b"\n\n")
    return out


# ---------------------------------------------------------------------------------------------
# The upstream: an HTTP/1.1 server on 127.0.0.1:0 that records what reached it.

class Upstream(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        self.lock = threading.Lock()
        self.connections = 0
        self.requests = []      # dicts: method, path, headers (lower-cased), at, body_len, sha256
        self.release = threading.Event()  # /hold waits for it before its second chunk
        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def address(self):
        return f"127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)  # a client gone early is expected

    def reset(self):
        with self.lock:
            self.connections = 0
            self.requests = []
        self.release.clear()

    def seen(self, path_prefix="/"):
        with self.lock:
            return [r for r in self.requests if r["path"].startswith(path_prefix)]

    def close(self):
        self.release.set()
        self.shutdown()
        self.server_close()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and 100 Continue for Expect: 100-continue

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

    def read_body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            h, n = hashlib.sha256(), 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return h.hexdigest(), n, True
                left = size
                while left:
                    piece = self.rfile.read(min(left, 1 << 16))
                    if not piece:
                        raise ConnectionError("body ended early")
                    h.update(piece)
                    left -= len(piece)
                n += size
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        h, left = hashlib.sha256(), length
        while left:
            piece = self.rfile.read(min(left, 1 << 16))
            if not piece:
                raise ConnectionError("body ended early")
            h.update(piece)
            left -= len(piece)
        return h.hexdigest(), length, False

    def send_body(self, status, body, content_type="text/plain", extra=()):
        self.send_response(status)
        self.send_header("content-type", content_type)
        for name, value in extra:
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_chunked_head(self, status=200, content_type="application/octet-stream"):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def sse(self, q):
        """An event stream: `events` events (each `data: {"i":..,"pad":"xx.."}` padded to about
        `size` bytes), a comment block first with comment=1, each event in two chunks (the
        second one is its last 3 bytes, `}\n\n`) with split=1, `gap` ms apart, then
        `data: [DONE]`. With hold=1 the head goes first and the events wait for `release`."""
        self.send_chunked_head(200, "text/event-stream")
        if q.get("hold") == "1":
            self.wfile.flush()
            self.server.release.wait(15)
        if q.get("comment") == "1":
            self.chunk(b": keep-alive\n\n")
        for event in sse_events(int(q.get("events", 5)), int(q.get("size", 0))):
            if q.get("split") == "1":
                self.chunk(event[:-3])
                self.chunk(event[-3:])
            else:
                self.chunk(event)
            time.sleep(int(q.get("gap", 0)) / 1000)  # deliberate: the upstream's pace between events
        self.chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def echo_rest(self):
        """After a 101 or a CONNECT 200: echo raw bytes until EOF."""
        self.wfile.flush()
        self.close_connection = True
        while True:
            data = self.rfile.read1(65536)
            if not data:
                return
            self.wfile.write(data)

    def do_CONNECT(self):
        with self.server.lock:
            self.server.requests.append({"method": "CONNECT", "path": self.path, "at": time.monotonic(), "headers": {}})
        self.send_response(200, "Connection established")
        self.end_headers()
        self.echo_rest()

    def dispatch(self):
        if self.headers.get("upgrade", "").lower() == "websocket":
            with self.server.lock:
                self.server.requests.append({"method": self.command, "path": self.path, "at": time.monotonic(),
                                             "headers": {}})
            self.send_response(101, "Switching Protocols")
            self.send_header("upgrade", "websocket")
            self.send_header("connection", "Upgrade")
            self.end_headers()
            self.echo_rest()
            return
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        record = {"method": self.command, "path": url.path, "at": time.monotonic(),
                  "headers": {k.lower(): v for k, v in self.headers.items()}}
        body_sha, body_len, chunked = self.read_body()
        record.update(sha256=body_sha, body_len=body_len, chunked=chunked)
        with self.server.lock:
            self.server.requests.append(record)
        path = url.path
        if path == "/upload":
            out = json.dumps({"sha256": body_sha, "length": body_len, "chunked": chunked,
                              "expect": self.headers.get("expect")}).encode()
            self.send_body(200, out, "application/json")
        elif path == "/big":
            size = int(q.get("size", BIG))
            if q.get("chunked") == "1":
                self.send_chunked_head()
                for i in range(0, size, 1 << 16):
                    self.chunk(DATA[i:min(size, i + (1 << 16))])
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send_response(200)
                self.send_header("content-type", "application/octet-stream")
                self.send_header("content-length", str(size))
                self.end_headers()
                for i in range(0, size, 1 << 16):
                    self.wfile.write(DATA[i:min(size, i + (1 << 16))])
        elif path == "/json":
            self.send_body(200, JSON_TEXT, "application/json", [("x-upstream", "yes")])
        elif path == "/json-chunked":
            self.send_chunked_head(200, "application/json")
            self.chunk(JSON_TEXT[:7])
            self.chunk(JSON_TEXT[7:])
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/json-close":
            # No length: the body runs until the connection closes.
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("connection", "close")
            self.end_headers()
            self.wfile.write(JSON_TEXT)
            self.close_connection = True
        elif path == "/gzip-json":
            self.send_body(200, gzip.compress(JSON_TEXT, mtime=0), "application/json",
                           [("content-encoding", "gzip")])
        elif path == "/sse":
            self.sse(q)
        elif path == "/slow":
            time.sleep(int(q.get("ms", 300)) / 1000)  # deliberate: a slow upstream
            self.send_body(200, b"slow")
        elif path == "/hold":
            # The first chunk goes out, the second only once the test saw the first.
            self.send_chunked_head(200, "text/plain")
            self.chunk(b"first;")
            self.server.release.wait(15)
            self.chunk(b"second")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_body(200, f"hello {self.command} {path}".encode())
        self.wfile.flush()


# ---------------------------------------------------------------------------------------------
# Client side

class Curl:
    """Result of one curl run: rc, stdout (bytes), stderr (text), seconds taken."""

    def __init__(self, rc, out, err, seconds):
        self.rc, self.out, self.err, self.seconds = rc, out, err, seconds

    def __repr__(self):
        return f"<curl rc={self.rc} {self.seconds:.2f}s out={self.out[:200]!r} err={self.err[-600:]!r}>"


def read_response(f, head_request=False):
    """One HTTP/1.1 response from a buffered socket file: (status, {headers}, body, raw head)."""
    status_line = f.readline()
    if not status_line:
        raise ConnectionError("connection closed before a response")
    head = status_line
    headers = {}
    while True:
        line = f.readline()
        head += line
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    status = int(status_line.split()[1])
    if head_request or status in (204, 304) or 100 <= status < 200:
        return status, headers, b"", head
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int(f.readline().split(b";")[0].strip(), 16)
            if size == 0:
                f.readline()
                break
            body += f.read(size)
            f.readline()
    else:
        body = f.read(int(headers.get("content-length", 0)))
    return status, headers, body, head


def read_all(sock, timeout=10):
    """Reads until EOF or an error; returns (bytes, how) with how = "eof" or the exception name."""
    sock.settimeout(timeout)
    got = bytearray()
    while True:
        try:
            data = sock.recv(65536)
        except OSError as e:
            return bytes(got), type(e).__name__
        if not data:
            return bytes(got), "eof"
        got += data


class HttpProxyTest(unittest.TestCase):
    """One faultline and one upstream for the class; each test makes its own proxy."""

    @classmethod
    def setUpClass(cls):
        cls.curl_bin = need("curl", "curl (apt package curl)")
        cls.tmp = tempfile.mkdtemp(prefix="faultline-http-")
        cls.up = Upstream()
        cls.fl = Faultline("--seed", "11")
        cls.big_file = os.path.join(cls.tmp, "upload.bin")
        with open(cls.big_file, "wb") as f:
            f.write(DATA[:UPLOAD])

    @classmethod
    def tearDownClass(cls):
        cls.fl.__exit__(None, None, None)
        cls.up.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.up.reset()
        self.name = self.id().rsplit(".", 1)[-1]
        self.proxy = self.fl.create_proxy(self.name, self.up.address, protocol="http")
        self.listen = self.proxy["listen"]
        self.base = f"http://{self.listen}"

    def tearDown(self):
        self.fl.request("DELETE", f"/proxies/{self.name}")

    # -- helpers ----------------------------------------------------------------------------

    def curl(self, *args, timeout=60):
        cmd = [self.curl_bin, "-q", "--noproxy", "*", "-sS", *args]
        start = time.monotonic()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                           timeout=timeout)
        return Curl(p.returncode, p.stdout, p.stderr.decode("utf-8", "replace"), time.monotonic() - start)

    def curl_json(self, *args, **kw):
        r = self.curl(*args, **kw)
        self.assertEqual(r.rc, 0, r)
        return json.loads(r.out)

    def get(self, path, *args, **kw):
        """curl PATH: (status, headers, body, Curl)."""
        head_file = os.path.join(self.tmp, "head.txt")
        body_file = os.path.join(self.tmp, "body.bin")
        for f in (head_file, body_file):
            if os.path.exists(f):
                os.remove(f)
        r = self.curl("-D", head_file, "-o", body_file, "-w", "%{http_code}", *args, self.base + path, **kw)
        headers = {}
        if os.path.exists(head_file):
            with open(head_file, "rb") as f:
                for line in f.read().decode("latin-1").split("\r\n")[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
        body = b""
        if os.path.exists(body_file):
            with open(body_file, "rb") as f:
                body = f.read()
        status = int(r.out) if r.out.isdigit() else 0  # 0: no answer (see r.rc)
        return status, headers, body, r

    def add(self, body, status=200):
        code, resp, _ = self.fl.request("POST", f"/proxies/{self.name}/toxics", body)
        self.assertEqual(code, status, f"POST toxic {body} -> {code} {resp}")
        return resp

    def remove(self, toxic):
        code, resp, _ = self.fl.request("DELETE", f"/proxies/{self.name}/toxics/{toxic}")
        self.assertEqual(code, 204, f"DELETE toxic {toxic} -> {code} {resp}")

    def applied(self, toxic):
        return metric(self.fl, "faultline_toxic_messages_total", proxy=self.name, toxic=toxic)

    def raw(self, request, timeout=10, listen=None):
        s = connect(listen or self.listen, timeout=timeout)
        self.addCleanup(s.close)
        s.sendall(request)
        return s

    # -- passthrough ------------------------------------------------------------------------

    def test_download_50mib_content_length_byte_identical(self):
        status, headers, body, r = self.get(f"/big?size={BIG}")
        self.assertEqual(status, 200, r)
        self.assertEqual(headers.get("content-length"), str(BIG))
        self.assertEqual(len(body), BIG)
        self.assertEqual(sha(body), sha(DATA))

    def test_download_50mib_chunked_byte_identical(self):
        status, headers, body, r = self.get(f"/big?size={BIG}&chunked=1")
        self.assertEqual(status, 200, r)
        self.assertEqual(headers.get("transfer-encoding"), "chunked")
        self.assertEqual(len(body), BIG)
        self.assertEqual(sha(body), sha(DATA))

    def test_upload_20mib_content_length_and_chunked(self):
        want = sha(DATA[:UPLOAD])
        got = self.curl_json("--data-binary", "@" + self.big_file, "-H", "content-type: application/octet-stream",
                             "-H", "expect:", self.base + "/upload")
        self.assertEqual(got, {"sha256": want, "length": UPLOAD, "chunked": False, "expect": None})
        got = self.curl_json("--data-binary", "@" + self.big_file, "-H", "transfer-encoding: chunked",
                             "-H", "expect:", self.base + "/upload")
        self.assertEqual(got, {"sha256": want, "length": UPLOAD, "chunked": True, "expect": None})

    def test_upload_20mib_streams_while_a_body_match_fault_is_active(self):
        """A fault matching on the body holds a request up to 1 MiB; a bigger one is decided
        on its head and streamed, intact."""
        self.add({"type": "http_abort", "attributes": {"status": 429, "match": {"body": {"model": "glm"}}}})
        got = self.curl_json("--data-binary", "@" + self.big_file, "-H", "content-type: application/json",
                             "-H", "expect:", self.base + "/upload")
        self.assertEqual(got["length"], UPLOAD)
        self.assertEqual(got["sha256"], sha(DATA[:UPLOAD]))

    def test_keep_alive_two_urls_one_connection(self):
        r = self.curl("-v", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n",
                      self.base + "/one", self.base + "/json")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.out.decode().split("\n")[:2], ["200 1", "200 0"], r)
        self.assertIn("Re-using existing connection", r.err)
        self.assertEqual([x["path"] for x in self.up.seen()], ["/one", "/json"])
        self.assertEqual(self.up.connections, 1, "both requests on one upstream connection")
        self.assertEqual(metric(self.fl, "faultline_proxy_connections_total", proxy=self.name), 1)
        self.assertEqual(poll(lambda: metric(self.fl, "faultline_proxy_requests_total", proxy=self.name),
                              lambda v: v >= 2), 2)
        self.assertEqual(poll(lambda: metric(self.fl, "faultline_proxy_responses_total", proxy=self.name),
                              lambda v: v >= 2), 2)

    def test_pipelined_requests_answered_in_order(self):
        s = self.raw(b"GET /slow?ms=200 HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /p2 HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"POST /upload HTTP/1.1\r\nHost: x\r\ncontent-length: 3\r\n\r\nabc")
        f = s.makefile("rb")
        bodies = [read_response(f)[:3] for _ in range(3)]
        self.assertEqual([b[0] for b in bodies], [200, 200, 200])
        self.assertEqual(bodies[0][2], b"slow")
        self.assertEqual(bodies[1][2], b"hello GET /p2")
        self.assertEqual(json.loads(bodies[2][2])["sha256"], sha(b"abc"))

    def test_expect_100_continue(self):
        """curl waits up to --expect100-timeout for the 100; it comes from the upstream through
        faultline, well before that."""
        r = self.curl("-v", "--expect100-timeout", "20", "-H", "Expect: 100-continue",
                      "--data-binary", "@" + self.big_file, self.base + "/upload", timeout=60)
        self.assertEqual(r.rc, 0, r)
        self.assertIn("< HTTP/1.1 100 Continue", r.err)
        self.assertLess(r.seconds, 15, "the 100 came from the upstream, not curl's timeout")
        got = json.loads(r.out)
        self.assertEqual(got, {"sha256": sha(DATA[:UPLOAD]), "length": UPLOAD, "chunked": False,
                               "expect": "100-continue"})

    def test_expect_100_continue_while_a_body_match_fault_holds_the_request(self):
        """The request is held until its body is in, so the upstream cannot say 100: faultline
        does, and the client sends its body at once."""
        self.add({"name": "m", "type": "http_abort", "attributes": {"status": 429, "match": {"body": {"model": "x"}}}})
        small = os.path.join(self.tmp, "small.json")
        for model, status in (("x", 429), ("y", 200)):
            with open(small, "w") as f:
                json.dump({"model": model, "pad": "p" * 200000}, f)
            r = self.curl("-v", "--expect100-timeout", "20", "-H", "Expect: 100-continue", "-o", "/dev/null",
                          "-w", "%{http_code}", "--data-binary", "@" + small, self.base + "/upload")
            self.assertEqual(r.out, str(status).encode(), r)
            self.assertIn("< HTTP/1.1 100 Continue", r.err)
            self.assertLess(r.seconds, 15, "not after curl's 100 timeout")
        self.assertEqual(len(self.up.seen("/upload")), 1)
        self.assertEqual(self.applied("m"), 1)

    def test_expect_100_continue_on_raw_socket(self):
        s = self.raw(b"POST /upload HTTP/1.1\r\nHost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n")
        f = s.makefile("rb")
        self.assertEqual(f.readline(), b"HTTP/1.1 100 Continue\r\n")
        self.assertEqual(f.readline(), b"\r\n")
        s.sendall(b"hello")
        status, _, body, _ = read_response(f)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["sha256"], sha(b"hello"))

    def test_responses_stream_before_they_end(self):
        """The first chunk's data reaches the client while the upstream is still holding the
        rest (the upstream only sends more once the test has seen it)."""
        s = self.raw(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        got = recv_until(s, b"\r\n\r\n6\r\nfirst;", timeout=5)
        self.assertIn(b"transfer-encoding: chunked", got.lower())
        self.up.release.set()
        got += recv_until(s, b"0\r\n\r\n", timeout=5)
        self.assertTrue(got.endswith(b"\r\n\r\n6\r\nfirst;\r\n6\r\nsecond\r\n0\r\n\r\n"), got)

    def test_a_chunk_is_complete_before_the_next_one_comes(self):
        """A client that reads a chunk with its CRLF (urllib3/requests' iter_content does) gets
        the first chunk before the upstream sends the second."""
        s = self.raw(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            recv_until(s, b"\r\n\r\n6\r\nfirst;\r\n", timeout=2)
        finally:
            self.up.release.set()

    def test_non_http_client_passes_through_as_bytes(self):
        echo = EchoServer()
        self.addCleanup(echo.close)
        name = self.name + "_echo"
        p = self.fl.create_proxy(name, echo.address, protocol="http")
        self.addCleanup(self.fl.request, "DELETE", f"/proxies/{name}")
        before = metric(self.fl, "faultline_proxy_undecodable_streams_total", proxy=name)
        self.assertEqual(before, 0)
        # A TLS ClientHello-like start, then random binary, then text with CRLFs.
        payload = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + random.Random(3).randbytes(300000) + b"\r\n\r\nEND"
        s = connect(p["listen"])
        self.addCleanup(s.close)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got, how = read_all(s)
        self.assertEqual(how, "eof")
        self.assertEqual(len(got), len(payload))
        self.assertEqual(got, payload)
        self.assertGreaterEqual(
            poll(lambda: metric(self.fl, "faultline_proxy_undecodable_streams_total", proxy=name),
                 lambda v: v >= 1), 1)
        # A line that starts like a request but is not HTTP either.
        s2 = connect(p["listen"])
        self.addCleanup(s2.close)
        s2.sendall(b"HELLO there, this is not HTTP\r\n\x00\x01\x02\r\n\r\n")
        s2.shutdown(socket.SHUT_WR)
        got, how = read_all(s2)
        self.assertEqual(got, b"HELLO there, this is not HTTP\r\n\x00\x01\x02\r\n\r\n")
        self.assertGreaterEqual(
            poll(lambda: metric(self.fl, "faultline_proxy_undecodable_streams_total", proxy=name),
                 lambda v: v >= 2), 2)

    def test_non_http_answer_passes_through_as_bytes(self):
        class Garbage(ThreadedServer):
            def handle(self, conn):
                conn.recv(65536)
                conn.sendall(b"\x00\x01\x02 not an HTTP answer\r\n\r\n\xff")
                conn.shutdown(socket.SHUT_WR)
        g = Garbage()
        self.addCleanup(g.close)
        name = self.name + "_garbage"
        p = self.fl.create_proxy(name, g.address, protocol="http")
        self.addCleanup(self.fl.request, "DELETE", f"/proxies/{name}")
        got, how = read_all(self.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", listen=p["listen"]))
        self.assertEqual((got, how), (b"\x00\x01\x02 not an HTTP answer\r\n\r\n\xff", "eof"))
        self.assertEqual(poll(lambda: metric(self.fl, "faultline_proxy_undecodable_streams_total", proxy=name),
                              lambda v: v >= 1), 1)

    def test_websocket_upgrade_turns_the_connection_into_bytes(self):
        """After a 101 the bytes are another protocol: a fault matching HTTP requests does not
        see requests in them."""
        self.add({"name": "x", "type": "http_abort", "attributes": {"status": 429, "match": {"path": "/x"}}})
        self.assertEqual(self.get("/x")[0], 429, "the fault acts on HTTP requests")
        s = self.raw(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head = recv_until(s, b"\r\n\r\n", timeout=5)
        self.assertTrue(head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), head)
        payload = b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n\x81\x05hello" + bytes(range(256)) * 64 + b"--END--"
        s.sendall(payload)
        got = recv_until(s, b"--END--", timeout=5)
        self.assertEqual(got, payload)
        self.assertEqual(self.applied("x"), 1)

    def test_connect_tunnel_turns_the_connection_into_bytes(self):
        self.add({"name": "all", "type": "http_abort", "attributes": {"status": 429, "match": {"method": "GET"}}})
        s = self.raw(b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n")
        head = recv_until(s, b"\r\n\r\n", timeout=5)
        self.assertTrue(head.startswith(b"HTTP/1.1 200 Connection established\r\n"), head)
        payload = b"GET /inside HTTP/1.1\r\nHost: x\r\n\r\n" + random.Random(5).randbytes(100000)
        s.sendall(payload)
        self.assertEqual(recv_until(s, payload[-100:], timeout=5), payload)
        self.assertEqual(self.applied("all"), 0)

    # -- http_abort -------------------------------------------------------------------------

    def test_abort_429_with_retry_after_and_json_body(self):
        body = {"error": {"code": "1302", "message": "High concurrency usage of this API"}}
        self.add({"name": "busy", "type": "http_abort", "toxicity": 1,
                  "attributes": {"status": 429, "headers": {"Retry-After": "2"}, "body": body}})
        for _ in range(3):
            status, headers, got, r = self.get("/v1/chat/completions", "-d", '{"model":"x"}')
            self.assertEqual(status, 429, r)
            self.assertEqual(headers.get("retry-after"), "2")
            self.assertEqual(headers.get("content-type"), "application/json")
            self.assertEqual(got, json.dumps(body, separators=(",", ":")).encode())
            self.assertEqual(headers.get("content-length"), str(len(got)))
        self.assertEqual(self.up.seen(), [], "an aborted request is not forwarded")
        self.assertEqual(self.applied("busy"), 3)
        self.assertGreaterEqual(metric(self.fl, "faultline_proxy_requests_total", proxy=self.name), 3)

    def test_debug_log_names_each_action(self):
        fl = Faultline("--log-level", "debug")
        self.addCleanup(fl.__exit__, None, None, None)
        p = fl.create_proxy("logged", self.up.address, protocol="http")
        code, resp, _ = fl.request("POST", "/proxies/logged/toxics", {
            "name": "busy", "type": "http_abort", "attributes": {"status": 429}})
        self.assertEqual(code, 200, resp)
        r = self.curl("-o", "/dev/null", "-w", "%{http_code}", "-d", "{}", f"http://{p['listen']}/v1/chat/completions")
        self.assertEqual(r.out, b"429", r)
        logs = poll(fl.logs, lambda text: "answered 429" in text)
        self.assertIn("answered 429 to POST /v1/chat/completions", logs)

    def test_abort_defaults_and_string_body(self):
        self.add({"name": "a", "type": "http_abort", "attributes": {}})
        status, headers, body, r = self.get("/x")
        self.assertEqual((status, body, headers.get("content-length")), (503, b"", "0"), r)
        self.fl.request("POST", f"/proxies/{self.name}/toxics/a",
                        {"attributes": {"status": 500, "body": "plain words"}})
        status, headers, body, r = self.get("/x")
        self.assertEqual((status, body), (500, b"plain words"), r)
        self.assertTrue(headers.get("content-type", "").startswith("text/plain"), headers)

    def test_abort_match_method_path_header(self):
        self.add({"name": "m", "type": "http_abort", "attributes": {
            "status": 429, "match": {"method": "POST", "path": "/v1/chat/", "header": {"X-Tenant": "a"}}}})
        hit = ("-X", "POST", "-H", "x-tenant: a")
        self.assertEqual(self.get("/v1/chat/completions?stream=1", *hit)[0], 429)
        self.assertEqual(self.get("/v1/chat/completions", "-H", "x-tenant: a")[0], 200, "GET: method differs")
        self.assertEqual(self.get("/v1/embeddings", *hit)[0], 200, "path differs")
        self.assertEqual(self.get("/v1/chat/completions", "-X", "POST", "-H", "x-tenant: b")[0], 200, "header value differs")
        self.assertEqual(self.get("/v1/chat/completions", "-X", "POST")[0], 200, "header missing")
        self.assertEqual(self.get("/V1/chat/completions", *hit)[0], 200, "the path prefix is case-sensitive")
        self.assertEqual([(x["method"], x["path"]) for x in self.up.seen()],
                         [("GET", "/v1/chat/completions"), ("POST", "/v1/embeddings"),
                          ("POST", "/v1/chat/completions"), ("POST", "/v1/chat/completions"),
                          ("POST", "/V1/chat/completions")])
        self.assertEqual(self.applied("m"), 1)
        # "*": the header is present; a protocol fault's `stream` does not matter.
        self.add({"name": "star", "type": "http_abort", "stream": "upstream",
                  "attributes": {"status": 418, "match": {"header": {"authorization": "*"}}}})
        self.assertEqual(self.get("/any", "-H", "Authorization: Bearer xyz")[0], 418)
        self.assertEqual(self.get("/any")[0], 200)

    def test_abort_match_path_regex_and_body(self):
        self.add({"name": "re", "type": "http_abort", "attributes": {
            "status": 418, "match": {"path_regex": "/items/[0-9]+"}}})
        self.add({"name": "body", "type": "http_abort", "attributes": {
            "status": 429, "match": {"body": {"model": "glm-4.6", "messages.0.role": "user"}}}})
        self.assertEqual(self.get("/items/42")[0], 418)
        self.assertEqual(self.get("/items/42/x")[0], 200, "path_regex matches the whole path")
        hit = json.dumps({"model": "glm-4.6", "messages": [{"role": "user", "content": "hi"}]})
        miss = json.dumps({"model": "glm-4.5", "messages": [{"role": "user", "content": "hi"}]})
        self.assertEqual(self.get("/upload", "-H", "content-type: application/json", "--data-binary", hit)[0], 429)
        status, _, body, r = self.get("/upload", "-H", "content-type: application/json", "--data-binary", miss)
        self.assertEqual(status, 200, r)
        self.assertEqual(json.loads(body)["sha256"], sha(miss.encode()), "a held request is forwarded intact")
        self.assertEqual(self.applied("re"), 1)
        self.assertEqual(self.applied("body"), 1)

    def test_path_regex_is_re2_over_a_long_path_and_refusals_name_the_field(self):
        # RE2: linear time, no recursion; std::regex overflowed a worker's stack on a long match.
        self.add({"name": "re", "type": "http_abort", "attributes": {
            "status": 418, "match": {"path_regex": "/v1/[a-z]+"}}})
        long_path = "/v1/" + "a" * 60000  # near the 64 KiB head limit
        self.assertEqual(self.get(long_path)[0], 418)
        self.assertEqual(self.get(long_path + "/x")[0], 200, "still a match of the whole path")
        for pattern, why in (("/v1/(?!admin).*", "lookahead"), ("/(a)/\\1", "backreferences")):
            resp = self.add({"name": "bad", "type": "http_abort", "attributes": {
                "status": 418, "match": {"path_regex": pattern}}}, status=400)
            self.assertIn("attribute match.path_regex is not a valid regular expression", resp["error"], resp)
            self.assertIn(why, resp["error"], resp)

    def test_abort_toxicity_zero_leaves_requests_alone(self):
        self.add({"name": "never", "type": "http_abort", "toxicity": 0, "attributes": {"status": 429}})
        r = self.curl("-o", "/dev/null", "-w", "%{http_code}\n", self.base + "/t/[1-20]")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.out.decode().split(), ["200"] * 20)
        self.assertEqual(len(self.up.seen("/t/")), 20)
        self.assertEqual(self.applied("never"), 0)

    def test_abort_toxicity_rolls_per_request_from_the_seed(self):
        """toxicity 0.5 on one keep-alive connection: some requests fail and some pass, and a
        second server with the same --seed gives the same sequence."""
        patterns = []
        for fl in (self.fl, Faultline("--seed", "11")):
            try:
                fl.create_proxy("seeded", self.up.address, protocol="http")
                code, resp, _ = fl.request("POST", "/proxies/seeded/toxics",
                                           {"type": "http_abort", "toxicity": 0.5, "attributes": {"status": 429}})
                self.assertEqual(code, 200, resp)
                listen = fl.request("GET", "/proxies/seeded")[1]["listen"]
                r = self.curl("-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n", f"http://{listen}/s/[1-24]")
                self.assertEqual(r.rc, 0, r)
                lines = r.out.decode().split("\n")[:24]
                self.assertEqual(sum(int(x.split()[1]) for x in lines), 1, "one connection")
                patterns.append([x.split()[0] for x in lines])
            finally:
                fl.request("DELETE", "/proxies/seeded")
                if fl is not self.fl:
                    fl.__exit__(None, None, None)
        self.assertEqual(patterns[0], patterns[1])
        self.assertIn("429", patterns[0])
        self.assertIn("200", patterns[0])

    def test_abort_answers_in_order_behind_a_slow_upstream_answer(self):
        self.add({"type": "http_abort", "attributes": {"status": 429, "match": {"path": "/abort"}}})
        s = self.raw(b"GET /slow?ms=400 HTTP/1.1\r\nHost: x\r\n\r\nGET /abort HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        f = s.makefile("rb")
        got = [read_response(f) for _ in range(3)]
        self.assertEqual([(g[0], g[2]) for g in got], [(200, b"slow"), (429, b""), (200, b"hello GET /after")])

    def test_abort_with_expect_100_continue_answers_without_the_body(self):
        self.add({"type": "http_abort", "attributes": {"status": 429, "headers": {"Retry-After": "1"}}})
        r = self.curl("-v", "--expect100-timeout", "20", "-H", "Expect: 100-continue", "-o", "/dev/null",
                      "-w", "%{http_code}", "--data-binary", "@" + self.big_file, self.base + "/upload")
        self.assertEqual(r.out, b"429", r)
        self.assertLess(r.seconds, 15, "answered at once, not after curl's 100 timeout")
        self.assertNotIn("< HTTP/1.1 100", r.err)
        self.assertEqual(self.up.seen(), [])

    # -- http_delay -------------------------------------------------------------------------

    def test_delay_request_phase(self):
        self.add({"name": "slow", "type": "http_delay", "attributes": {"delay": 600, "phase": "request"}})
        start = time.monotonic()
        status, _, body, r = self.get("/d")
        self.assertEqual((status, body), (200, b"hello GET /d"), r)
        self.assertGreaterEqual(r.seconds, 0.58)
        self.assertLess(r.seconds, 5)
        (req,) = self.up.seen("/d")
        self.assertGreaterEqual(req["at"] - start, 0.58, "the upstream got the request late")
        self.assertEqual(self.applied("slow"), 1)

    def test_delay_response_phase(self):
        self.add({"name": "slow", "type": "http_delay", "attributes": {"delay": 600, "phase": "response"}})
        start = time.monotonic()
        status, _, body, r = self.get("/d")
        self.assertEqual((status, body), (200, b"hello GET /d"), r)
        self.assertGreaterEqual(r.seconds, 0.58)
        self.assertLess(r.seconds, 5)
        (req,) = self.up.seen("/d")
        self.assertLess(req["at"] - start, 0.5, "the request went on at once; the answer waited")
        self.assertEqual(self.applied("slow"), 1)

    def test_delay_300ms_default_phase_and_match(self):
        self.add({"type": "http_delay", "attributes": {"delay": 300, "match": {"path": "/slowme"}}})
        r = self.curl("-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} %{time_total}\n",
                      self.base + "/slowme", self.base + "/fast")
        self.assertEqual(r.rc, 0, r)
        (s1, t1), (s2, t2) = [line.split() for line in r.out.decode().split("\n")[:2]]
        self.assertEqual((s1, s2), ("200", "200"))
        self.assertGreaterEqual(float(t1), 0.28)
        self.assertLess(float(t1), 3)
        self.assertLess(float(t2), 0.28, "the unmatched request is not delayed")

    # -- http_reset -------------------------------------------------------------------------

    def test_reset_after_bytes_resets_the_connection(self):
        self.add({"name": "rst", "type": "http_reset", "attributes": {"after_bytes": 100000}})
        status, _, body, r = self.get("/json")
        self.assertEqual((status, body, r.rc), (200, JSON_TEXT, 0), "a shorter answer goes whole")
        self.assertEqual(self.applied("rst"), 0)
        s = self.raw(b"GET /big?size=1000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        got, how = read_all(s)
        self.assertEqual(how, "ConnectionResetError")
        self.assertEqual(len(got), 100000)
        self.assertTrue(got.startswith(b"HTTP/1.1 200 OK\r\n"))
        body = got[got.index(b"\r\n\r\n") + 4:]
        self.assertEqual(body, DATA[:len(body)])
        r = self.curl("-o", "/dev/null", "-w", "%{size_download}", self.base + "/big?size=1000000")
        self.assertEqual(r.rc, 56, r)  # CURLE_RECV_ERROR
        self.assertIn("reset", r.err.lower())
        self.assertLess(int(r.out), 1000000)
        self.assertEqual(self.applied("rst"), 2)
        self.assertGreaterEqual(metric(self.fl, "faultline_proxy_resets_sent_total", proxy=self.name), 2)

    def test_reset_mode_close_ends_the_answer_early(self):
        self.add({"type": "http_reset", "attributes": {"after_bytes": 5000, "mode": "close"}})
        s = self.raw(b"GET /big?size=1000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        got, how = read_all(s)
        self.assertEqual(how, "eof")
        self.assertEqual(len(got), 5000)
        head_len = got.index(b"\r\n\r\n") + 4
        r = self.curl("-o", "/dev/null", "-w", "%{size_download}", self.base + "/big?size=1000000")
        self.assertEqual(r.rc, 18, r)  # CURLE_PARTIAL_FILE
        self.assertIn(f"{1000000 - (5000 - head_len)} bytes remaining", r.err)
        self.assertEqual(int(r.out), 5000 - head_len)

    def test_reset_zero_bytes_and_inside_the_head(self):
        self.add({"name": "z", "type": "http_reset", "attributes": {"after_bytes": 0, "mode": "close"}})
        got, how = read_all(self.raw(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n"))
        self.assertEqual((got, how), (b"", "eof"))
        self.fl.request("POST", f"/proxies/{self.name}/toxics/z", {"attributes": {"after_bytes": 10}})
        got, how = read_all(self.raw(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n"))
        self.assertEqual((got, how), (b"HTTP/1.1 2", "eof"))
        r = self.curl("-o", "/dev/null", self.base + "/json")
        self.assertNotEqual(r.rc, 0, r)

    # -- http_replace / http_patch ----------------------------------------------------------

    def test_replace_status_headers_and_body(self):
        self.add({"name": "rep", "type": "http_replace", "attributes": {
            "status": 503, "headers": {"x-upstream": "replaced", "x-new": "1"}, "body": {"error": "overloaded"}}})
        status, headers, body, r = self.get("/json")
        self.assertEqual(status, 503, r)
        self.assertEqual(body, b'{"error":"overloaded"}')
        self.assertEqual(headers.get("content-length"), str(len(body)))
        self.assertEqual(headers.get("x-upstream"), "replaced")
        self.assertEqual(headers.get("x-new"), "1")
        # A chunked original: the new body gets a content-length and no transfer-encoding.
        status, headers, body, r = self.get("/json-chunked")
        self.assertEqual((status, body), (503, b'{"error":"overloaded"}'), r)
        self.assertEqual(headers.get("content-length"), str(len(body)))
        self.assertNotIn("transfer-encoding", headers)
        self.assertEqual(self.applied("rep"), 2)

    def test_replace_status_only_keeps_the_streamed_body(self):
        self.add({"type": "http_replace", "attributes": {"status": 500, "headers": {"x-faulted": "yes"}}})
        status, headers, body, r = self.get("/big?size=20000000&chunked=1")
        self.assertEqual(status, 500, r)
        self.assertEqual(headers.get("x-faulted"), "yes")
        self.assertEqual(headers.get("transfer-encoding"), "chunked")
        self.assertEqual(sha(body), sha(DATA[:20000000]))
        # ... and streams it: the first chunk arrives while the upstream holds the rest.
        s = self.raw(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        f = s.makefile("rb")
        self.assertEqual(f.readline(), b"HTTP/1.1 500 Internal Server Error\r\n")
        while f.readline() != b"\r\n":
            pass
        got = f.read(len(b"6\r\nfirst;"))
        self.up.release.set()
        self.assertEqual(got, b"6\r\nfirst;")

    def test_patch_merges_json_and_fixes_content_length(self):
        self.add({"name": "pt", "type": "http_patch", "attributes": {
            "patch": {"b": {"c": None, "d": "new"}, "e": [1], "list": None}, "headers": {"x-patched": "1"}}})
        want = {"a": 1, "b": {"d": "new"}, "e": [1]}
        for path in ("/json", "/json-chunked"):
            status, headers, body, r = self.get(path)
            self.assertEqual(status, 200, r)
            self.assertEqual(json.loads(body), want, path)
            self.assertEqual(headers.get("content-length"), str(len(body)), path)
            self.assertNotIn("transfer-encoding", headers, path)
            self.assertEqual(headers.get("x-patched"), "1")
        self.assertEqual(self.applied("pt"), 2)

    def test_patch_an_answer_that_runs_until_close(self):
        self.add({"type": "http_patch", "attributes": {"patch": {"a": 2}}})
        status, headers, body, r = self.get("/json-close")
        self.assertEqual((status, r.rc), (200, 0), r)
        self.assertEqual(json.loads(body), dict(JSON_DOC, a=2))
        self.assertEqual(headers.get("content-length"), str(len(body)))

    def test_patch_leaves_non_json_and_big_answers_as_they_came(self):
        self.add({"name": "pt", "type": "http_patch", "attributes": {"patch": {"a": 2}, "headers": {"x-p": "1"}}})
        status, headers, body, r = self.get("/big?size=100000&chunked=1")
        self.assertEqual((status, headers.get("transfer-encoding")), (200, "chunked"), r)
        self.assertNotIn("x-p", headers)
        self.assertEqual(body, DATA[:100000])
        status, headers, body, r = self.get("/big?size=20000000")  # more than patch holds (8 MiB)
        self.assertEqual((status, headers.get("content-length")), (200, "20000000"), r)
        self.assertEqual(sha(body), sha(DATA[:20000000]))
        self.assertEqual(self.applied("pt"), 0, "nothing was patched")
        # With a status-only http_replace too: the status changes, the bodies stay.
        self.add({"name": "rep", "type": "http_replace", "attributes": {"status": 500}})
        status, _, body, r = self.get("/big?size=20000000")
        self.assertEqual(status, 500, r)
        self.assertEqual(sha(body), sha(DATA[:20000000]))
        status, headers, body, r = self.get("/json")
        self.assertEqual(status, 500, r)
        self.assertEqual(json.loads(body), dict(JSON_DOC, a=2), "and a JSON body is patched")
        self.assertEqual(headers.get("x-p"), "1")
        self.assertEqual(self.applied("pt"), 1)

    def test_patch_leaves_compressed_bodies_alone(self):
        self.add({"type": "http_patch", "attributes": {"patch": {"a": 99}}})
        status, headers, body, r = self.get("/gzip-json")
        self.assertEqual(status, 200, r)
        self.assertEqual(headers.get("content-encoding"), "gzip")
        self.assertEqual(gzip.decompress(body), JSON_TEXT)

    # -- http_header_faults -----------------------------------------------------------------

    def test_header_faults_only_while_active(self):
        status, _, body, r = self.get("/h", "-H", "x-envoy-fault-abort-request: 503")
        self.assertEqual((status, body), (200, b"hello GET /h"), r)
        self.assertEqual(self.up.seen("/h")[0]["headers"].get("x-envoy-fault-abort-request"), "503")
        self.add({"name": "hf", "type": "http_header_faults"})
        status, _, _, r = self.get("/h2", "-H", "x-envoy-fault-abort-request: 503")
        self.assertEqual(status, 503, r)
        self.assertEqual(self.up.seen("/h2"), [])
        status, _, _, r = self.get("/h3")
        self.assertEqual(status, 200, r)
        status, _, _, r = self.get("/h4", "-H", "x-envoy-fault-delay-request: 400")
        self.assertEqual(status, 200, r)
        self.assertGreaterEqual(r.seconds, 0.38)
        self.assertLess(r.seconds, 5)
        self.assertEqual(self.applied("hf"), 2)
        self.remove("hf")
        status, _, _, r = self.get("/h5", "-H", "x-envoy-fault-abort-request: 503")
        self.assertEqual(status, 200, r)

    # -- answers without a body -------------------------------------------------------------

    def head_then_get(self, listen=None):
        """HEAD /json then GET /json pipelined on one connection: both responses, parsed."""
        s = connect(listen or self.listen)
        self.addCleanup(s.close)
        s.settimeout(5)
        s.sendall(b"HEAD /json HTTP/1.1\r\nHost: x\r\n\r\nGET /json HTTP/1.1\r\nHost: x\r\n\r\n")
        f = s.makefile("rb")
        return read_response(f, head_request=True), read_response(f)

    def test_head_request_passes_through_on_keep_alive(self):
        (st1, h1, _, _), (st2, h2, body, _) = self.head_then_get()
        self.assertEqual((st1, h1.get("content-length")), (200, str(len(JSON_TEXT))))
        self.assertEqual((st2, body), (200, JSON_TEXT))
        r = self.curl("-I", "-w", "%{http_code}\n", self.base + "/json", "--next", "-o", "/dev/null",
                      "-w", "%{http_code} %{num_connects}\n", self.base + "/json")
        self.assertEqual(r.rc, 0, r)
        self.assertTrue(r.out.decode().endswith("200\n200 0\n"), r)

    def test_faults_send_no_body_to_a_head_request(self):
        """A body after the head of a HEAD answer would be read as the next answer."""
        self.add({"name": "abort", "type": "http_abort", "attributes": {
            "status": 429, "body": {"error": "busy"}, "match": {"method": "HEAD"}}})
        (st1, h1, _, head), (st2, _, body, _) = self.head_then_get()
        self.assertEqual((st1, h1.get("content-length")), (429, str(len('{"error":"busy"}'))), head)
        self.assertEqual((st2, body), (200, JSON_TEXT), "the GET after it is intact")
        self.remove("abort")
        self.add({"name": "hf", "type": "http_header_faults"})
        s = self.raw(b"HEAD /x HTTP/1.1\r\nHost: x\r\nx-envoy-fault-abort-request: 500\r\n\r\n"
                     b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n")
        f = s.makefile("rb")
        self.assertEqual(read_response(f, head_request=True)[0], 500)
        self.assertEqual(read_response(f)[2], JSON_TEXT)
        self.remove("hf")
        self.add({"name": "rep", "type": "http_replace", "attributes": {"status": 503, "body": "replaced"}})
        (st1, h1, _, head), (st2, _, body, _) = self.head_then_get()
        self.assertEqual(st1, 503, head)
        self.assertEqual((st2, body), (503, b"replaced"))
        self.remove("rep")
        self.add({"name": "pt", "type": "http_patch", "attributes": {"patch": {"z": 1}}})
        (st1, h1, _, head), (st2, h2, body, _) = self.head_then_get()
        self.assertEqual((st1, h1.get("content-length")), (200, str(len(JSON_TEXT))), "HEAD: nothing to patch")
        self.assertEqual(json.loads(body), dict(JSON_DOC, z=1))
        self.assertEqual(h2.get("content-length"), str(len(body)))

    def test_abort_with_a_bodiless_status_sends_no_body(self):
        self.add({"type": "http_abort", "attributes": {"status": 204, "body": "ignored", "match": {"path": "/nc"}}})
        s = self.raw(b"GET /nc HTTP/1.1\r\nHost: x\r\n\r\nGET /json HTTP/1.1\r\nHost: x\r\n\r\n")
        f = s.makefile("rb")
        st, headers, _, head = read_response(f)
        self.assertEqual(st, 204)
        self.assertNotIn("content-length", headers, head)
        self.assertEqual(read_response(f)[2], JSON_TEXT)

    def test_replace_body_of_a_50mib_answer(self):
        """The upstream's body is not needed for a replaced one: any size works."""
        self.add({"type": "http_replace", "attributes": {"status": 502, "body": {"error": "bad gateway"}}})
        status, headers, body, r = self.get(f"/big?size={BIG}&chunked=1")
        self.assertEqual((status, body), (502, b'{"error":"bad gateway"}'), r)
        self.assertEqual(headers.get("content-length"), str(len(body)))
        self.assertEqual(self.get("/json")[0], 502, "the connection goes on")

    # -- SSE, byte level (the openai client's view is in node/http_clients.test.mjs) -----------

    def test_sse_untouched_without_faults(self):
        status, headers, body, r = self.get("/sse?events=5&split=1&comment=1")
        self.assertEqual(status, 200, r)
        self.assertEqual(body, b": keep-alive\n\n" + b"".join(sse_events(5)) + b"data: [DONE]\n\n")

    def test_sse_cut_counts_comment_blocks_and_zero_cuts_after_the_head(self):
        self.add({"name": "cut", "type": "sse_cut", "attributes": {"after_events": 2}})
        status, _, body, r = self.get("/sse?events=5&comment=1")
        self.assertEqual(status, 200, r)
        self.assertEqual(r.rc, 18, r)  # CURLE_PARTIAL_FILE: the chunked body never ended
        self.assertEqual(body, b": keep-alive\n\n" + sse_events(1)[0])
        self.fl.request("POST", f"/proxies/{self.name}/toxics/cut", {"attributes": {"after_events": 0}})
        status, headers, body, r = self.get("/sse?events=5")
        self.assertEqual((status, body, r.rc), (200, b"", 18), r)
        self.assertEqual(headers.get("content-type"), "text/event-stream")
        self.assertEqual(self.applied("cut"), 2)

    def test_sse_corrupt_an_event_split_across_chunks(self):
        """The event's second half is overwritten even when its end came in a chunk of its own;
        same length, and the chunked framing around it stays valid."""
        self.add({"name": "bad", "type": "sse_corrupt", "attributes": {"after_events": 1}})
        status, _, body, r = self.get("/sse?events=4&split=1&size=200")
        self.assertEqual((status, r.rc), (200, 0), r)
        events = sse_events(4, 200)
        want = b"".join(events) + b"data: [DONE]\n\n"
        self.assertEqual(len(body), len(want))
        self.assertEqual(body[:len(events[0])], events[0], "event 1 is intact")
        got = body[len(events[0]):len(events[0]) + len(events[1])]
        half = len(events[1]) // 2
        self.assertEqual(got[:half], events[1][:half], "the first half of event 2 is intact")
        self.assertEqual(got[half:], b"~" * (len(events[1]) - half - 2) + b"\n\n", got)
        self.assertEqual(body[len(events[0]) + len(events[1]):], want[len(events[0]) + len(events[1]):])
        self.assertEqual(self.applied("bad"), 1)

    def test_sse_corrupt_an_event_bigger_than_1mib(self):
        """An event too big to hold goes out as it comes; faultline keeps serving."""
        self.add({"type": "sse_corrupt", "attributes": {"after_events": 0}})
        for size in (1048576 - 200, 1048576 + 300, 1048576 + 5000, 3 * MIB):
            status, _, body, r = self.get(f"/sse?events=2&size={size}")
            self.assertEqual((status, r.rc), (200, 0), (size, r))
            events = sse_events(2, size)
            self.assertEqual(len(body), len(events[0]) + len(events[1]) + len(b"data: [DONE]\n\n"), size)
            first = body[:len(events[0])]
            self.assertTrue(first.startswith(b'data: {"i":0,"pad":"xxx') and first.endswith(b"~\n\n"),
                            f"size {size}: event 1 starts intact and ends overwritten")
            with self.assertRaises(ValueError, msg=f"size {size}: event 1 no longer parses"):
                json.loads(first[len(b"data: "):])
            self.assertTrue(body.endswith(events[1] + b"data: [DONE]\n\n"), f"size {size}: event 2 intact")
        self.assertEqual(self.get("/json")[2], JSON_TEXT)

    def test_sse_stall_forever_ends_when_the_toxic_is_removed(self):
        """api.md: removing a toxic takes effect on open connections (as removing a bandwidth
        of rate 0 does); a stream stalled `forever` should resume when the stall goes."""
        self.add({"name": "st", "type": "sse_stall", "attributes": {"after_events": 1, "duration": 0}})
        s = self.raw(b"GET /sse?events=3 HTTP/1.1\r\nHost: x\r\n\r\n")
        recv_until(s, b'"i":0', timeout=5)
        self.remove("st")
        recv_until(s, b"data: [DONE]\n\n", timeout=3)

    def test_sse_stall_forever_outlives_the_answer_it_stopped(self):
        """The upstream finishes the stream, and answers the next request on the connection,
        while the stall holds them: both wait, in order, until the stall is removed."""
        self.add({"name": "st", "type": "sse_stall", "attributes": {"after_events": 1, "duration": 0}})
        s = self.raw(b"GET /sse?events=3 HTTP/1.1\r\nHost: x\r\n\r\nGET /json HTTP/1.1\r\nHost: x\r\n\r\n")
        recv_until(s, b'"i":0', timeout=5)
        deadline = time.monotonic() + 5
        while len(self.up.seen("/json")) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)  # pacing of a bounded poll
        self.assertEqual(len(self.up.seen("/json")), 1, "the upstream answered both requests")
        # Kept: the answers' size on the wire is not known here, so their arrival in faultline
        # (/connections bytes_downstream) has no threshold to poll for; 0.2 s after the upstream
        # wrote them they are held, and the assertion below holds either way.
        time.sleep(0.2)
        s.settimeout(0.3)
        with self.assertRaises(TimeoutError, msg="nothing passes the stall while it is there"):
            s.recv(65536)
        self.remove("st")
        rest = recv_until(s, JSON_TEXT, timeout=3)
        self.assertIn(b"data: [DONE]\n\n", rest)
        self.assertLess(rest.index(b"data: [DONE]"), rest.index(JSON_TEXT), "the answers keep their order")

    def test_sse_head_goes_out_before_the_first_event(self):
        """With SSE faults active the client still gets the head while the upstream has not
        sent an event yet (it sends them once the test saw the head)."""
        self.add({"type": "sse_delay", "attributes": {"delay": 100}})
        self.add({"type": "sse_stall", "attributes": {"after_events": 0, "duration": 100}})
        s = self.raw(b"GET /sse?events=2&hold=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        head = recv_until(s, b"\r\n\r\n", timeout=5)
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"), head)
        self.up.release.set()
        rest = recv_until(s, b"0\r\n\r\n", timeout=10)
        self.assertIn(b"data: [DONE]\n\n", rest)

    # -- validation -------------------------------------------------------------------------

    def test_protocol_fault_on_tcp_proxy_is_400(self):
        name = self.name + "_tcp"
        self.fl.create_proxy(name, self.up.address)
        self.addCleanup(self.fl.request, "DELETE", f"/proxies/{name}")
        for kind in ("http_abort", "sse_cut", "http_header_faults"):
            code, resp, _ = self.fl.request("POST", f"/proxies/{name}/toxics", {"type": kind})
            self.assertEqual(code, 400, resp)
            self.assertIn("needs a proxy with protocol http", resp["error"])
            self.assertIn("tcp", resp["error"])
        code, resp, _ = self.fl.request("POST", "/proxies", {
            "name": name + "2", "upstream": self.up.address, "toxics": [{"type": "http_delay"}]})
        self.assertEqual(code, 400, resp)
        self.assertIn("needs a proxy with protocol http", resp["error"])
        self.assertEqual(self.fl.request("GET", f"/proxies/{name}2")[0], 404)
        # And a byte fault on an http proxy is fine.
        self.add({"type": "latency", "attributes": {"latency": 1}})
        self.assertEqual(self.get("/ok")[0], 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
