"""`faultline export` (docs/export.md) against the real readers: tshark opens the pcapng with
checksum validation on and finds no malformed packet and no expert error, decodes HTTP and
RESP and shows the fault and redaction comments; the npm har-validator accepts the HAR; the
text timeline shows the requests. Exit codes and messages for bad input.

Most recordings are written here by a small journal writer that follows docs/journal.md,
so every case is exact: HTTP keep-alive with JSON, SSE and a large body, RESP with a
redacted AUTH and a reset, MCP over an https:// upstream, raw TCP, a gap. Then real curl
and redis-cli traffic (a bearer token, an AUTH password, an http_delay fault) is recorded
with `faultline serve --record DIR` and exported too.
Run standalone: python3 tests/integration/test_export.py
"""
import base64
import http.server
import json
import os
import pty
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN, Faultline, RedisServer, need  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WALL = "2025-06-01T12:00:00.000000000Z"
MS = 1_000_000
TIMEOUT = 60  # any one child process


# ---------------------------------------------------------------------------------------------
# A journal writer (the format of recorder/journal.hpp, version 1)

class JournalWriter:
    def __init__(self, recording="rec-export", redacted=True, version=1):
        self.lines = [self._line({"type": "journal", "version": version, "recording": recording, "file": 0,
                                  "started_wall": WALL, "started_mono_ns": 0, "redacted": redacted})]
        self.offs = {}
        self.streams = {}

    @staticmethod
    def _line(obj):
        return json.dumps(obj, separators=(",", ":"))

    def add(self, line_type, t, **fields):
        obj = {"type": line_type, "t": t}
        obj.update(fields)
        self.lines.append(self._line(obj))

    def open(self, t, conn, proxy, protocol, client, upstream):
        self.add("open", t, conn=conn, proxy=proxy, protocol=protocol, client=client, upstream=upstream)

    def data(self, t, conn, direction, payload):
        key = (conn, direction)
        off = self.offs.get(key, 0)
        self.add("data", t, conn=conn, dir=direction, off=off, len=len(payload),
                 b64=base64.b64encode(payload).decode())
        self.offs[key] = off + len(payload)
        self.streams[key] = self.streams.get(key, b"") + payload
        return off

    def msg(self, t, conn, direction, off, length, **fields):
        self.add("msg", t, conn=conn, dir=direction, off=off, len=length, **fields)

    def redaction(self, t, conn, direction, off, length, rule):
        self.add("redaction", t, conn=conn, dir=direction, off=off, len=length, rule=rule)

    def fault(self, t, conn, toxic, fault, what):
        self.add("fault", t, conn=conn, toxic=toxic, fault=fault, what=what)

    def end(self, t, conn, direction, how):
        self.add("end", t, conn=conn, dir=direction, how=how)

    def close(self, t, conn):
        self.add("close", t, conn=conn)

    def text(self):
        return "\n".join(self.lines) + "\n"

    def save(self, directory, tail=""):
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "journal-000000.jsonl"), "w") as f:
            f.write(self.text() + tail)
        with open(os.path.join(directory, "index.json"), "w") as f:
            json.dump({"version": 1, "id": "rec-export", "journals": ["journal-000000.jsonl"], "state": "stopped",
                       "started_wall": WALL, "redacted": True}, f)
        return directory


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


def sample_recording(directory):
    """A recording of four connections; returns the writer (its streams are the truth)."""
    j = JournalWriter()
    # conn 1: an LLM-style HTTP client on keep-alive.
    j.open(1 * MS, 1, "api", "http", "127.0.0.1:41000", "127.0.0.1:18080")
    get = b"GET /v1/models?limit=5 HTTP/1.1\r\nHost: api.local\r\nUser-Agent: curl/8\r\n\r\n"
    off = j.data(2 * MS, 1, "up", get)
    j.msg(2 * MS, 1, "up", off, len(get), kind="http_request", method="GET", target="/v1/models?limit=5",
          version="HTTP/1.1", headers=[], head_len=len(get))
    body = json.dumps({"data": [{"id": "m-1"}, {"id": "m-2"}]}).encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    off = j.data(5 * MS, 1, "down", head + body)
    j.msg(5 * MS, 1, "down", off, len(head), kind="http_response", status=200, reason="OK")
    payload = json.dumps({"model": "m-1", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    token = b"REDACTED-4f1c2a9b7e"
    post = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: api.local\r\nAuthorization: Bearer " + token +
            b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload)
    off = j.data(10 * MS, 1, "up", post)
    j.msg(10 * MS, 1, "up", off, len(post), kind="http_request", method="POST", target="/v1/chat/completions")
    j.redaction(10 * MS, 1, "up", off + post.index(token), len(token), "header:authorization")
    j.fault(11 * MS, 1, "slow-first-token", "latency", "delayed 250 ms")
    off = j.data(261 * MS, 1, "down", b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                      b"Transfer-Encoding: chunked\r\n\r\n")
    j.msg(261 * MS, 1, "down", off, 10, kind="http_response", status=200, reason="OK")
    for i, t in enumerate((262, 362, 462)):
        event = b'id: %d\ndata: {"delta":"w%d"}\n\n' % (i + 1, i)
        off = j.data(t * MS, 1, "down", chunk(event))
        j.msg(t * MS, 1, "down", off, len(event), kind="sse_event", id=str(i + 1), data_len=len(event))
    j.data(463 * MS, 1, "down", b"0\r\n\r\n")
    # A large body, delivered in 16 KiB reads: many segments, ACKs on the way.
    big = bytes(range(256)) * 800  # 204800 bytes, not UTF-8
    j.data(500 * MS, 1, "up", b"GET /big HTTP/1.1\r\nHost: api.local\r\n\r\n")
    data = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % len(big) + big
    for i in range(0, len(data), 16384):
        j.data(501 * MS + i * 1000, 1, "down", data[i:i + 16384])
    j.end(800 * MS, 1, "up", "half_close")
    j.close(801 * MS, 1)

    # conn 2: Redis with a redacted AUTH, then a reset fault.
    j.open(900 * MS, 2, "cache", "resp", "127.0.0.1:41001", "127.0.0.1:16379")
    auth = resp("AUTH", "REDACTED-99ab")
    off = j.data(901 * MS, 2, "up", auth)
    j.msg(901 * MS, 2, "up", off, len(auth), kind="resp_command", command="AUTH", argc=2)
    j.redaction(901 * MS, 2, "up", off + auth.index(b"REDACTED"), 13, "resp:auth")
    j.data(902 * MS, 2, "down", b"+OK\r\n")
    for i, (cmd, reply) in enumerate(((resp("SET", "greeting", "hello"), b"+OK\r\n"),
                                      (resp("GET", "greeting"), b"$5\r\nhello\r\n"))):
        j.data((903 + 2 * i) * MS, 2, "up", cmd)
        j.data((904 + 2 * i) * MS, 2, "down", reply)
    j.fault(910 * MS, 2, "cut", "reset_peer", "reset the connection after 3 replies")
    j.end(910 * MS, 2, "down", "reset")

    # conn 3: MCP (JSON-RPC over HTTP) through an https:// upstream, from an IPv6 client.
    j.open(1000 * MS, 3, "tools", "mcp", "[::1]:41002", "https://mcp.example.com")
    rpc = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "search"}}).encode()
    j.data(1001 * MS, 3, "up", b"POST /mcp HTTP/1.1\r\nHost: mcp.example.com\r\nContent-Type: application/json\r\n"
                               b"Content-Length: %d\r\n\r\n" % len(rpc) + rpc)
    answer = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"content": []}}).encode()
    j.data(1050 * MS, 3, "down", b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                                 % len(answer) + answer)
    j.close(1060 * MS, 3)

    # conn 4: raw TCP, binary.
    j.open(1100 * MS, 4, "raw", "tcp", "127.0.0.1:41003", "127.0.0.1:9000")
    j.data(1101 * MS, 4, "up", b"\x00\x01\x02binary\xff")
    j.data(1102 * MS, 4, "down", b"\x10\x20ok")
    j.close(1103 * MS, 4)

    j.add("gap", 1200 * MS, events=7, bytes=2048, since=1150 * MS, until=1200 * MS)
    j.save(directory)
    return j


def run(args, timeout=TIMEOUT, **kw):
    return subprocess.run([BIN] + args, capture_output=True, timeout=timeout, **kw)


def tshark(*args, timeout=TIMEOUT):
    """tshark with IPv4 and TCP checksum validation on (off by default in Wireshark)."""
    return subprocess.run([need("tshark", "tshark (apt package tshark)"), "-o", "tcp.check_checksum:TRUE",
                           "-o", "ip.check_checksum:TRUE"] + list(args),
                          capture_output=True, text=True, timeout=timeout)


def validate_har(path):
    need("node", "nodejs (apt package nodejs)")
    if not os.path.isdir(os.path.join(HERE, "node_modules", "har-validator")):
        raise RuntimeError("har-validator not found: run ./dev setup (it installs the npm packages of "
                           "tests/integration, har-validator among them)")
    return subprocess.run(["node", os.path.join(HERE, "validate_har.mjs"), path], capture_output=True, text=True,
                          timeout=TIMEOUT, cwd=HERE)


class PcapChecks:
    """What every exported pcapng must satisfy in tshark."""

    def assert_clean(self, path):
        out = tshark("-r", path, "-V")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertNotIn("Malformed", out.stdout)
        self.assertNotIn("[Expert Info (Error", out.stdout)
        self.assertNotIn("Bad checksum", out.stdout)
        self.assertNotIn("[Checksum Status: Bad]", out.stdout)
        self.assertIn("[Checksum Status: Good]", out.stdout)
        return out.stdout

    def fields(self, path, display_filter, *fields):
        args = ["-r", path, "-Y", display_filter, "-T", "fields"]
        for f in fields:
            args += ["-e", f]
        out = tshark(*args)
        self.assertEqual(out.returncode, 0, out.stderr)
        return [line.split("\t") for line in out.stdout.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------

class ExportFromJournal(unittest.TestCase, PcapChecks):
    @classmethod
    def setUpClass(cls):
        need("tshark", "tshark (apt package tshark)")
        need("node", "nodejs (apt package nodejs)")
        cls.tmp = tempfile.mkdtemp(prefix="faultline-export-")
        cls.rec = os.path.join(cls.tmp, "rec")
        cls.journal = sample_recording(cls.rec)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def export(self, fmt, out=None, *extra):
        args = ["export", fmt, self.rec] + (["-o", out] if out else []) + list(extra)
        r = run(args)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return r

    def test_pcapng_opens_clean_in_tshark_with_http_resp_and_comments(self):
        path = os.path.join(self.tmp, "a.pcapng")
        r = self.export("pcapng", path)
        self.assertIn("packets from 4 connections", r.stderr.decode())
        self.assert_clean(path)

        requests = self.fields(path, "http.request", "http.request.method", "http.request.uri")
        self.assertEqual([tuple(x) for x in requests],
                         [("GET", "/v1/models?limit=5"), ("POST", "/v1/chat/completions"), ("GET", "/big"),
                          ("POST", "/mcp")])
        responses = self.fields(path, "http.response", "http.response.code")
        self.assertEqual(len(responses), 4)
        # The whole 200 KB body was reassembled from its segments.
        sizes = self.fields(path, "http.response and http.content_length == 204800", "frame.number")
        self.assertEqual(len(sizes), 1)

        commands = self.fields(path, "resp", "frame.number")
        self.assertGreaterEqual(len(commands), 6)  # 3 commands, 3 replies
        summary = tshark("-r", path, "-Y", "resp")
        self.assertIn("SET greeting hello", summary.stdout)

        comments = [c[0] for c in self.fields(path, "frame.comment", "frame.comment")]
        text = "\n".join(comments)
        self.assertIn("fault latency slow-first-token: delayed 250 ms", text)
        self.assertIn("fault reset_peer cut: reset the connection after 3 replies", text)
        self.assertIn("redacted: header:authorization", text)
        self.assertIn("redacted: resp:auth", text)
        self.assertIn("gap:", text)
        self.assertIn("upstream https://mcp.example.com shown as 10.0.1.1:80", text)
        # The RST the fault caused is there.
        self.assertTrue(self.fields(path, "tcp.flags.reset == 1", "frame.number"))

    def test_pcapng_streams_follow_the_recorded_bytes(self):
        path = os.path.join(self.tmp, "b.pcapng")
        self.export("pcapng", path)
        # Follow conn 2 (TCP stream 1) as tshark reassembles it: client lines, then server
        # lines indented by a tab, in hex.
        out = tshark("-r", path, "-q", "-z", "follow,tcp,raw,1")
        self.assertEqual(out.returncode, 0, out.stderr)
        sides = {False: b"", True: b""}
        for line in out.stdout.splitlines():
            hexed = line.strip()
            if hexed and all(c in "0123456789abcdef" for c in hexed):
                sides[line.startswith("\t")] += bytes.fromhex(hexed)
        self.assertEqual(sides[False], self.journal.streams[(2, "up")])
        self.assertEqual(sides[True], self.journal.streams[(2, "down")])

    def test_pcapng_to_a_pipe_and_never_to_a_terminal(self):
        r = run(["export", "pcapng", self.rec])
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertEqual(r.stdout[:4], b"\x0a\x0d\x0d\x0a")
        master, slave = pty.openpty()
        try:
            p = subprocess.run([BIN, "export", "pcapng", self.rec], stdout=slave, stderr=subprocess.PIPE,
                               timeout=TIMEOUT)
        finally:
            os.close(slave)
            os.close(master)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"-o FILE", p.stderr)

    def test_har_is_valid_and_keeps_sse_timing_and_faults(self):
        path = os.path.join(self.tmp, "a.har")
        r = self.export("har", path)
        err = r.stderr.decode()
        self.assertIn("skipped 2 connections without HTTP exchanges (resp: 1, tcp: 1)", err)
        v = validate_har(path)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        self.assertEqual(v.stdout.strip(), "valid")
        with open(path) as f:
            har = json.load(f)
        entries = har["log"]["entries"]
        self.assertEqual([e["request"]["url"] for e in entries],
                         ["http://127.0.0.1:18080/v1/models?limit=5", "http://127.0.0.1:18080/v1/chat/completions",
                          "http://127.0.0.1:18080/big", "https://mcp.example.com/mcp"])
        self.assertEqual(entries[0]["startedDateTime"], "2025-06-01T12:00:00.002Z")
        self.assertEqual(json.loads(entries[0]["response"]["content"]["text"])["data"][1]["id"], "m-2")
        chat = entries[1]
        self.assertEqual([(e["t_ms"], e["id"], e["data"]) for e in chat["response"]["_sse_events"]],
                         [(1, "1", '{"delta":"w0"}'), (101, "2", '{"delta":"w1"}'), (201, "3", '{"delta":"w2"}')])
        self.assertEqual(chat["_faults"][0]["fault"], "latency")
        self.assertEqual(chat["timings"]["wait"], 251)
        self.assertEqual(chat["_redactions"], [{"in": "request", "rule": "header:authorization", "length": 19}])
        big = entries[2]["response"]["content"]
        self.assertEqual(big["encoding"], "base64")
        self.assertEqual(base64.b64decode(big["text"]), bytes(range(256)) * 800)
        # Stdout works too.
        r = run(["export", "har", self.rec, "-o", "-"])
        self.assertEqual(json.loads(r.stdout)["log"]["entries"][3]["connection"], "3")

    def test_text_timeline(self):
        r = self.export("text")
        out = r.stdout.decode()
        self.assertNotIn("\x1b[", out)
        self.assertIn("+0.002000s conn 1 ▶ up   ", out)
        self.assertIn("B  GET /v1/models?limit=5\n", out)
        self.assertIn("B  POST /v1/chat/completions\n", out)
        self.assertIn("B  200 OK\n", out)
        self.assertIn("sse message id 2", out)
        self.assertIn("conn 1 ⚡ fault latency slow-first-token: delayed 250 ms", out)
        self.assertIn("redacted resp:auth", out)
        self.assertIn("AUTH (2 args)", out)
        self.assertIn("■ reset", out)
        self.assertIn("⚠ gap", out)
        one = run(["export", "text", self.rec, "--connection", "2"]).stdout.decode()
        self.assertIn("conn 2", one)
        self.assertNotIn("conn 1 ", one)
        colour = run(["export", "text", self.rec, "--color", "always"]).stdout.decode()
        self.assertIn("\x1b[", colour)


class ExportErrors(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="faultline-export-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_usage_errors(self):
        sample_recording(os.path.join(self.tmp, "rec"))
        r = run(["export", "pcap", os.path.join(self.tmp, "rec")])
        self.assertEqual(r.returncode, 2)
        self.assertIn(b'unknown format "pcap" (har, pcapng or text)', r.stderr)
        r = run(["export", "har"])
        self.assertEqual(r.returncode, 2)
        r = run(["--help"])
        self.assertIn(b"export", r.stdout)
        r = run(["export", "--help"])
        self.assertEqual(r.returncode, 0)
        self.assertIn(b"--connection", r.stdout)

    def test_unreadable_recording(self):
        missing = os.path.join(self.tmp, "nope")
        r = run(["export", "text", missing])
        self.assertEqual(r.returncode, 1)
        self.assertIn(missing.encode() + b": No such file or directory", r.stderr)
        out = os.path.join(self.tmp, "x.har")
        r = run(["export", "har", missing, "-o", out])
        self.assertEqual(r.returncode, 1)
        self.assertFalse(os.path.exists(out), "a failed export leaves no file")
        self.assertEqual([f for f in os.listdir(self.tmp)], [])

    def test_unknown_version(self):
        j = JournalWriter(version=2)
        j.open(1, 1, "p", "tcp", "127.0.0.1:1", "127.0.0.1:2")
        d = j.save(os.path.join(self.tmp, "rec"))
        r = run(["export", "har", d])
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"journal-000000.jsonl: journal version 2 is newer than this faultline understands (1)",
                      r.stderr)

    def test_truncated_journal_is_a_warning(self):
        j = JournalWriter()
        j.open(1 * MS, 1, "cache", "resp", "127.0.0.1:5000", "127.0.0.1:6379")
        j.data(2 * MS, 1, "up", resp("PING"))
        d = j.save(os.path.join(self.tmp, "rec"), tail='{"type":"data","t":3000000,"conn":1,"dir":"do')
        out = os.path.join(self.tmp, "t.pcapng")
        r = run(["export", "pcapng", d, "-o", out])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"journal-000000.jsonl: line 4 is incomplete (a crash?); exported everything before it",
                      r.stderr)
        self.assertTrue(os.path.getsize(out) > 0)


class ExportRealTraffic(unittest.TestCase, PcapChecks):
    """Records curl and redis-cli through faultline (`serve --record DIR`), then exports."""

    @classmethod
    def setUpClass(cls):
        cls.curl = need("curl", "curl (apt package curl)")
        cls.cli = need("redis-cli", "redis-tools (apt package redis-tools / redis-server)")
        need("tshark", "tshark (apt package tshark)")

    def test_record_then_export(self):
        tmp = tempfile.mkdtemp(prefix="faultline-export-")
        self.addCleanup(shutil.rmtree, tmp, True)
        rec = os.path.join(tmp, "rec")
        bearer = "sk-live-export-test-0123456789"
        password = "pw-export-secret-42"

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                body = json.dumps({"path": self.path}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=web.serve_forever, daemon=True).start()
        self.addCleanup(web.server_close)
        self.addCleanup(web.shutdown)
        with RedisServer("--requirepass", password) as redis, Faultline("--record", rec) as fl:
            api = fl.create_proxy("api", f"127.0.0.1:{web.server_address[1]}", protocol="http")
            cache = fl.create_proxy("cache", redis.address, protocol="resp")
            status, body, _ = fl.request("POST", "/proxies/api/toxics",
                                         {"name": "slow", "type": "http_delay", "attributes": {"delay": 30}})
            self.assertEqual(status, 200, body)
            api_port = int(api["listen"].rsplit(":", 1)[1])
            cache_port = int(cache["listen"].rsplit(":", 1)[1])
            for path in ("/one", "/two?x=1"):
                r = subprocess.run([self.curl, "-sS", "--max-time", "10", "-H", f"Authorization: Bearer {bearer}",
                                    f"http://127.0.0.1:{api_port}{path}"], capture_output=True, timeout=TIMEOUT)
                self.assertEqual(r.returncode, 0, r.stderr)
            r = subprocess.run([self.cli, "-h", "127.0.0.1", "-p", str(cache_port), "--no-auth-warning",
                                "-a", password, "SET", "k", "v"], capture_output=True, timeout=TIMEOUT)
            self.assertEqual(r.stdout.strip(), b"OK", r.stderr)
            fl.stop()  # finalizes the recording
        outputs = b""
        path = os.path.join(tmp, "real.pcapng")
        r = run(["export", "pcapng", rec, "-o", path])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_clean(path)
        uris = [x[0] for x in self.fields(path, "http.request", "http.request.uri")]
        self.assertEqual(uris, ["/one", "/two?x=1"])
        self.assertIn("Request: SET k", tshark("-r", path, "-Y", "resp").stdout)
        comments = "\n".join(c[0] for c in self.fields(path, "frame.comment", "frame.comment"))
        self.assertIn("redacted: ", comments)
        self.assertIn("fault http_delay slow: ", comments)
        with open(path, "rb") as f:
            outputs += f.read()
        har = os.path.join(tmp, "real.har")
        r = run(["export", "har", rec, "-o", har])
        self.assertEqual(r.returncode, 0, r.stderr)
        v = validate_har(har)
        self.assertEqual(v.stdout.strip(), "valid", v.stdout + v.stderr)
        with open(har, "rb") as f:
            data = f.read()
        outputs += data
        entries = json.loads(data)["log"]["entries"]
        self.assertEqual([e["response"]["status"] for e in entries], [200, 200])
        self.assertEqual(json.loads(entries[1]["response"]["content"]["text"]), {"path": "/two?x=1"})
        self.assertTrue(entries[0].get("_faults"), entries[0])
        text = run(["export", "text", rec]).stdout
        outputs += text
        self.assertIn(b"GET /one", text)
        self.assertIn(b"SET k (3 args)", text)
        self.assertNotIn(bearer.encode(), outputs)
        self.assertNotIn(password.encode(), outputs)


if __name__ == "__main__":
    unittest.main(verbosity=2)
