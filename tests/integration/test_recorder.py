"""The recorder (docs/journal.md) against real traffic: `faultline serve --record`, the
/recordings API, profiles with "record": true. The journal is read here by a small reader
that follows docs/journal.md (not faultline's own), and what it holds is checked against an
independent capture: a TCP tee between faultline and the upstream keeps every byte of both
directions of every connection.

- redis-benchmark through a `resp` proxy and an HTTP session (curl keep-alive, a chunked
  POST, an SSE answer) through an `http` proxy: every byte, in order, offsets contiguous, `t`
  never decreasing, decoded messages as the clients sent them; index.json and the API's
  counts agree with the files.
- A recording started through the API picks up a connection that is already open; DELETE
  finalizes; 404/400 answers name what is wrong.
- kill -9 mid-stream: every complete line parses, the data covers all but the last few
  milliseconds, `faultline export text` reports a partial last line and exports the rest.
- A full disk (a small tmpfs, mounted when run as root: ENOSPC from the kernel on a blob)
  and a file size limit (RLIMIT_FSIZE: EFBIG on the journal itself): the recording fails
  with the path and the reason, in the API, the metrics and the log (once); traffic goes on.
  (One expected failure documents a known bug: after a failed write, `bytes` in the status
  counts payload that never reached the journal.)
- Unwritable directories (ENOTDIR, /proc): 400 from the API, exit 2 from `serve --record`.
- Redaction: an Authorization header, JSON secrets, a secret echoed in a response, Redis AUTH
  and HELLO AUTH passwords appear in no journal, blob or export; tokens are stable and keep
  the secret's length; `--no-redact` keeps them and warns.
- Rotation by size; a profile recording one proxy of two.

Run standalone: python3 tests/integration/test_recorder.py
"""
import base64
import ctypes
import ctypes.util
import glob
import hashlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BIN, EchoServer, Faultline, RedisServer, ThreadedServer, connect, metric,  # noqa: E402
                     need, poll, recv_exactly, run_serve_expect_exit, split_hostport,
                     wait_connections_closed, wait_for)

TIMEOUT = 60  # any one child process


class _XXH128(ctypes.Structure):
    _fields_ = [("low64", ctypes.c_uint64), ("high64", ctypes.c_uint64)]


_libxxhash = ctypes.CDLL(ctypes.util.find_library("xxhash") or "libxxhash.so.0")
_libxxhash.XXH3_128bits.restype = _XXH128
_libxxhash.XXH3_128bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def blob_name(data):
    """A blob's name per docs/journal.md: XXH3-128 of its bytes in canonical (big-endian) hex,
    computed by the system's libxxhash, not by faultline."""
    h = _libxxhash.XXH3_128bits(data, len(data))
    return "%016x%016x" % (h.high64, h.low64)


# ---------------------------------------------------------------------------------------------
# A journal reader (docs/journal.md, version 1), independent of faultline's JournalReader

class Journal:
    """A recording directory: index.json, then every journal it lists, in order. Every line but
    the last of the last journal must be complete JSON; a partial last line is kept in
    `truncated` (file, 1-based line number, text). Data lines are decoded (b64 or the blob,
    whose name must be the SHA-256 of its bytes) into `bytes`."""

    def __init__(self, directory, allow_truncated=False):
        self.dir = directory
        with open(os.path.join(directory, "index.json")) as f:
            self.index = json.load(f)
        assert self.index["version"] == 1, self.index
        self.events = []      # (file name, line number, parsed object), in file order
        self.headers = []
        self.truncated = None
        self.raw = {}         # file name -> bytes as on disk
        names = self.index["journals"]
        for fi, name in enumerate(names):
            with open(os.path.join(directory, name), "rb") as f:
                raw = f.read()
            self.raw[name] = raw
            lines = raw.split(b"\n")
            tail = lines.pop()  # b"" when the file ends in \n
            if tail:
                if not (allow_truncated and fi == len(names) - 1):
                    raise AssertionError(f"{name}: last line has no newline: {tail[:200]!r}")
                self.truncated = (name, len(lines) + 1, tail)
            for no, text in enumerate(lines, 1):
                try:
                    obj = json.loads(text)
                except ValueError as e:
                    raise AssertionError(f"{name}:{no}: not JSON ({e}): {text[:200]!r}")
                if no == 1:
                    assert obj["type"] == "journal", f"{name}: first line is not a header: {obj}"
                    assert obj["version"] == 1 and obj["file"] == int(name[8:14]), (name, obj)
                    assert obj["recording"] == self.index["id"], (name, obj)
                    self.headers.append(obj)
                    continue
                assert obj["type"] != "journal", f"{name}:{no}: a header in the middle"
                if obj["type"] == "data":
                    obj["bytes"] = self._payload(name, no, obj)
                self.events.append((name, no, obj))
        for h in self.headers[1:]:
            for k in ("started_wall", "started_mono_ns", "redacted"):
                assert h[k] == self.headers[0][k], (k, h, self.headers[0])

    def _payload(self, name, no, obj):
        if "b64" in obj:
            data = base64.b64decode(obj["b64"], validate=True)
        else:
            path = os.path.join(self.dir, "blobs", obj["blob"])
            with open(path, "rb") as f:
                data = f.read()
            assert blob_name(data) == obj["blob"], f"{path}: content does not match its name"
        assert len(data) == obj["len"], f"{name}:{no}: len {obj['len']} but {len(data)} bytes"
        return data

    @property
    def header(self):
        return self.headers[0]

    def of(self, type_, **fields):
        return [o for _, _, o in self.events if o["type"] == type_ and all(o.get(k) == v for k, v in fields.items())]

    def msgs(self, kind, **fields):
        return self.of("msg", kind=kind, **fields)

    def conns(self):
        return [o["conn"] for o in self.of("open")]

    def stream(self, conn, direction):
        """The bytes of one direction of one connection: data lines in file order, each `off`
        where the previous ended, `t` never decreasing."""
        out = bytearray()
        last_t = -1
        for name, no, o in self.events:
            if o["type"] != "data" or o["conn"] != conn or o["dir"] != direction:
                continue
            assert o["off"] == len(out), f"{name}:{no}: off {o['off']}, expected {len(out)} (conn {conn} {direction})"
            assert o["t"] >= last_t, f"{name}:{no}: t {o['t']} < {last_t} (conn {conn} {direction})"
            last_t = o["t"]
            out += o["bytes"]
        return bytes(out)

    def check_connection_order(self, conn):
        """open first, close (if any) last; `t` of every line of the connection within them;
        every line after the header has `t`."""
        lines = [(name, no, o) for name, no, o in self.events if o.get("conn") == conn]
        assert lines and lines[0][2]["type"] == "open", f"conn {conn}: first line {lines[:1]}"
        t_open = lines[0][2]["t"]
        closes = [o for _, _, o in lines if o["type"] == "close"]
        assert len(closes) <= 1
        if closes:
            assert lines[-1][2]["type"] == "close", f"conn {conn}: lines after its close: {lines[-1]}"
        for name, no, o in lines:
            assert isinstance(o["t"], int) and o["t"] >= t_open, f"{name}:{no}: t before the open line"
            if closes:
                assert o["t"] <= closes[0]["t"], f"{name}:{no}: t after the close line"

    def all_payload(self):
        return b"".join(o["bytes"] for o in self.of("data"))

    def files_on_disk(self):
        """Every file of the recording directory (journals, blobs, index) as bytes."""
        out = {}
        for path in glob.glob(os.path.join(self.dir, "**"), recursive=True):
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    out[path] = f.read()
        return out

    def journal_bytes(self):
        blobs = sum(os.path.getsize(p) for p in glob.glob(os.path.join(self.dir, "blobs", "*")))
        return sum(len(r) for r in self.raw.values()) + blobs


def base64_forms(secret):
    """The base64 text a secret always produces inside a longer base64 string, for each of its
    three alignments (the characters that also depend on neighbouring bytes are cut off)."""
    forms = []
    for pad in range(3):
        enc = base64.b64encode(b"\0" * pad + secret + b"\0\0\0").decode()
        start = (pad * 8 + 5) // 6 + 1  # first character made only of the secret's bits
        end = ((pad + len(secret)) * 8) // 6 - 1
        if end - start >= 8:
            forms.append(enc[start:end].encode())
    return forms


# ---------------------------------------------------------------------------------------------
# Peers

class Tee(ThreadedServer):
    """Sits between faultline and the real upstream: forwards every connection and keeps both
    directions' bytes (`up`: towards the upstream, `down`: back), the independent capture the
    journal is compared with."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.captures = []
        self.lock = threading.Lock()
        super().__init__()

    def handle(self, conn):
        cap = {"up": bytearray(), "down": bytearray(), "done": threading.Event()}
        with self.lock:
            self.captures.append(cap)
        up = connect(self.upstream)

        def pump(src, dst, buf):
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    buf += data
                    dst.sendall(data)
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        t = threading.Thread(target=pump, args=(up, conn, cap["down"]), daemon=True)
        t.start()
        pump(conn, up, cap["up"])
        t.join(TIMEOUT)
        up.close()
        cap["done"].set()

    def wait_done(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                caps = list(self.captures)
            if len(caps) >= n and all(c["done"].is_set() for c in caps):
                return caps
            time.sleep(0.02)  # pacing of a bounded poll
        raise AssertionError(f"the tee saw {len(self.captures)} connections, not all finished in {timeout} s")


class Sink(ThreadedServer):
    """Reads and discards, counting bytes."""

    def __init__(self):
        self.received = bytearray()
        super().__init__()

    def handle(self, conn):
        while True:
            data = conn.recv(65536)
            if not data:
                return
            self.received += data


def parse_resp(buf, pos=0):
    """One RESP value at buf[pos:] -> (value, end). Arrays are lists; bulk strings bytes."""
    kind = buf[pos:pos + 1]
    nl = buf.index(b"\r\n", pos)
    head = buf[pos + 1:nl]
    if kind in (b"+", b"-", b":", b"_", b",", b"#", b"("):
        return (kind, head), nl + 2
    if kind in (b"$", b"=", b"!"):
        n = int(head)
        if n < 0:
            return None, nl + 2
        assert buf[nl + 2 + n:nl + 4 + n] == b"\r\n"
        return buf[nl + 2:nl + 2 + n], nl + 4 + n
    if kind in (b"*", b"%", b"~", b">", b"|"):
        n = int(head)
        if kind in (b"%", b"|"):
            n *= 2
        items, p = [], nl + 2
        for _ in range(max(n, 0)):
            v, p = parse_resp(buf, p)
            items.append(v)
        return (kind, items), p
    raise AssertionError(f"not RESP at {pos}: {buf[pos:pos + 40]!r}")


def parse_all_resp(buf):
    """Every value in buf, with its span: [(value, start, end)]; the whole buffer must parse."""
    out, pos = [], 0
    while pos < len(buf):
        v, end = parse_resp(buf, pos)
        out.append((v, pos, end))
        pos = end
    return out


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def post_recording(fl, body):
    status, reply, _ = fl.request("POST", "/recordings", body)
    if status != 201:
        raise AssertionError(f"POST /recordings {body} -> {status} {reply}")
    return reply


def wait_status(fl, rec_id, ok, timeout=10):
    """GET /recordings/{id} until ok(status)."""
    st = poll(lambda: fl.request("GET", f"/recordings/{rec_id}")[1], ok, timeout=timeout)
    if not ok(st):
        raise AssertionError(f"recording {rec_id}: status did not get there in {timeout} s: {st}")
    return st


def export(fmt, rec_dir, out=None, timeout=TIMEOUT):
    """`faultline export FMT REC [-o OUT]` -> CompletedProcess (bytes)."""
    cmd = [BIN, "export", fmt, rec_dir] + (["-o", out] if out else [])
    return subprocess.run(cmd, capture_output=True, timeout=timeout)


def run(cmd, timeout=TIMEOUT, **kw):
    r = subprocess.run(cmd, capture_output=True, timeout=timeout, **kw)
    if r.returncode != 0:
        raise AssertionError(f"{cmd[0]} exited with {r.returncode}: {r.stderr[-1000:]!r} {r.stdout[-500:]!r}")
    return r


class RecorderCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="faultline-rec-test-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def check_status_matches_files(self, st, j):
        """What GET /recordings/{id} says of a finished recording agrees with its files."""
        lines = len(j.events) + len(j.headers)
        self.assertEqual(st["state"], "stopped", st)
        self.assertEqual(st["journals"], j.index["journals"])
        self.assertEqual(st["connections"], len(j.of("open")), st)
        self.assertEqual(st["events"], lines, st)
        self.assertEqual(st["bytes"], sum(o["len"] for o in j.of("data")), st)
        self.assertEqual(st["journal_bytes"], j.journal_bytes(), st)
        self.assertEqual(st["gaps"], {"markers": 0, "events": 0, "bytes": 0}, st)
        self.assertEqual(j.of("gap"), [])

    def exports(self, rec):
        """{"export har": bytes, "export text": ..., "export pcapng": ...}: the recording `rec`
        exported in each format (into self.tmp), each export exiting 0."""
        out = {}
        for fmt in ("har", "text", "pcapng"):
            path = os.path.join(self.tmp, "export." + fmt)
            r = export(fmt, rec, path)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(path, "rb") as f:
                out["export " + fmt] = f.read()
        return out

    def check_still_flowing(self, sock, n=20):
        """n messages b"still flowing I\n" on `sock`, an open connection through a proxy to an
        echo server, each read back whole; returns how many bytes went each way."""
        sent = 0
        for i in range(n):
            msg = b"still flowing %d\n" % i
            sock.sendall(msg)
            self.assertEqual(recv_exactly(sock, len(msg)), msg)
            sent += len(msg)
        return sent


def wait_closed(rec_dir, n, timeout=15):
    """Reads the journal (while it is being written) until `n` connections have their close line."""
    deadline = time.monotonic() + timeout
    while True:
        j = Journal(rec_dir, allow_truncated=True)
        closed = len(j.of("close"))
        if closed >= n:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{closed} of {n} connections closed in the journal after {timeout} s")
        time.sleep(0.05)  # pacing of a bounded poll


class BulkRecording(RecorderCase):
    def test_bulk_is_recorded_whole_on_the_zero_copy_path(self):
        # A recorded tcp proxy keeps splice(2) for bulk and tees the bytes for the recording.
        # Buffered reads are at most 256 KiB; a longer data line can only come from a splice
        # burst, so one proves the zero-copy path ran while every byte was still recorded.
        rec = os.path.join(self.tmp, "rec")
        payload = os.urandom(48 << 20)
        with Sink() as sink, Faultline() as fl:
            p = fl.create_proxy("bulk", sink.address)
            # Whole: the writer is slower than this stream, and the recorder drops what it cannot
            # write within 10 ms (docs/journal.md) unless traffic waits for it.
            post_recording(fl, {"id": "bulk", "dir": rec, "max_queue_bytes": 512 << 20, "overflow": "backpressure"})
            s = connect(p["listen"])
            for i in range(0, len(payload), 1 << 20):
                s.sendall(payload[i:i + (1 << 20)])
            s.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + 60
            while len(sink.received) < len(payload) and time.monotonic() < deadline:
                time.sleep(0.02)  # pacing of a bounded poll
            s.close()
            self.assertEqual(bytes(sink.received), payload)
            wait_status(fl, "bulk", lambda st: st["bytes"] >= len(payload), timeout=30)
            status, st, _ = fl.request("DELETE", "/recordings/bulk")
        self.assertEqual(status, 200)
        j = Journal(rec)
        self.assertEqual(bytes(j.stream(j.conns()[0], "up")), payload)
        self.assertEqual(st["gaps"], {"markers": 0, "events": 0, "bytes": 0}, st)
        longest = max(o["len"] for o in j.of("data", dir="up"))
        self.assertGreater(longest, 256 * 1024, "no data line longer than a buffered read: splice was not used")


# ---------------------------------------------------------------------------------------------
# 1. redis-benchmark through a resp proxy, recorded with `serve --record`

class RedisBenchmarkRecording(RecorderCase):
    def test_every_byte_and_command_of_a_redis_benchmark_run(self):
        bench = need("redis-benchmark", "redis-tools (apt package redis-tools)")
        rec = os.path.join(self.tmp, "rec")
        # Every byte is asked for, so traffic waits for the writer (the profile's recording
        # options under --record): with the default overflow the recorder drops what it cannot
        # write within 10 ms, and a slow host (the sanitizer pass) makes counted gaps.
        profile = {"recording": {"dir": rec, "overflow": "backpressure"}, "proxies": []}
        with RedisServer() as redis, Tee(redis.address) as tee, Faultline("--record", rec, config=profile) as fl:
            p = fl.create_proxy("redis", tee.address, protocol="resp")
            host, port = split_hostport(p["listen"])
            out = run([bench, "-h", host, "-p", str(port), "-t", "set,get", "-n", "5000", "-c", "10", "-P", "4",
                       "--csv"]).stdout.decode()
            self.assertIn('"SET"', out)
            self.assertIn('"GET"', out)
            caps = tee.wait_done(1)
            wait_closed(rec, len(caps))
            status, st, _ = fl.request("DELETE", "/recordings/serve")
            self.assertEqual(status, 200, st)
            j = Journal(rec)
            self.check_status_matches_files(st, j)
            status, listed, _ = fl.request("GET", "/recordings")
            self.assertEqual([r["id"] for r in listed], ["serve"])
            self.assertEqual(listed[0]["state"], "stopped")

        self.assertEqual(j.index["state"], "stopped")
        self.assertEqual(j.index["journals"], ["journal-000000.jsonl"])
        self.assertTrue(j.index.get("stopped_wall"), j.index)
        self.assertTrue(j.header["redacted"])
        conns = j.conns()
        self.assertEqual(conns, list(range(1, len(conns) + 1)))
        self.assertEqual(len(conns), len(caps))
        for o in j.of("open"):
            self.assertEqual((o["proxy"], o["protocol"], o["upstream"]), ("redis", "resp", tee.address))
            self.assertTrue(o["client"].startswith("127.0.0.1:"), o)

        # Every byte: per connection, (up, down) as the tee saw them, as a multiset (the tee and
        # the journal number connections independently).
        recorded = {c: (j.stream(c, "up"), j.stream(c, "down")) for c in conns}
        self.assertEqual(Counter(recorded.values()), Counter((bytes(c["up"]), bytes(c["down"])) for c in caps))

        commands = Counter()
        for c in conns:
            j.check_connection_order(c)
            self.assertEqual(len(j.of("close", conn=c)), 1, f"conn {c} has no close line")
            up, down = recorded[c]
            # Every command as sent, with the msg line that names it and points at its bytes.
            sent = parse_all_resp(up)
            msgs = j.msgs("resp_command", conn=c)
            self.assertEqual(len(msgs), len(sent), f"conn {c}: {len(sent)} commands, {len(msgs)} msg lines")
            for (value, start, end), m in zip(sent, msgs):
                kind, args = value
                self.assertEqual(kind, b"*")
                name = args[0].decode().upper()
                commands[name] += 1
                self.assertEqual((m["dir"], m["off"], m["len"], m["command"], m["argc"]),
                                 ("up", start, end - start, name, len(args)), m)
                if len(args) > 1:
                    self.assertEqual(m["key"], args[1].decode())
            replies = parse_all_resp(down)
            rmsgs = j.msgs("resp_reply", conn=c)
            self.assertEqual(len(rmsgs), len(replies), f"conn {c}: {len(replies)} replies, {len(rmsgs)} msg lines")
            for (value, start, end), m in zip(replies, rmsgs):
                reply_type = value[0].decode() if isinstance(value, tuple) else "$"
                self.assertEqual((m["dir"], m["off"], m["len"], m["reply_type"]),
                                 ("down", start, end - start, reply_type), m)
                if isinstance(value, tuple) and value[0] in (b"+", b"-"):
                    self.assertEqual(m["line"], value[1].decode())
            self.assertEqual(len(replies), len(sent), f"conn {c}: every command answered")
        self.assertEqual(commands["SET"], 5000, commands)
        self.assertEqual(commands["GET"], 5000, commands)
        self.assertEqual(set(commands) - {"SET", "GET", "CONFIG", "PING", "CLIENT", "HELLO", "INFO"}, set(), commands)
        # Messages come after the data holding their bytes.
        seen = {}
        for name, no, o in j.events:
            key = (o.get("conn"), o.get("dir"))
            if o["type"] == "data":
                seen[key] = o["off"] + o["len"]
            elif o["type"] == "msg":
                self.assertLessEqual(o["off"] + o["len"], seen.get(key, 0), f"{name}:{no}: msg before its bytes")


# ---------------------------------------------------------------------------------------------
# 2. An HTTP session through an http proxy: keep-alive, a chunked POST, an SSE answer

SSE_EVENTS = [("delta", str(i), json.dumps({"i": i, "text": "w" * (i + 1)})) for i in range(6)]


class OriginHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    uploads = []

    def log_message(self, *args):
        pass

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def reply(self, status, body, ctype="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/events":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for name, ident, data in SSE_EVENTS:
                ev = f"event: {name}\nid: {ident}\ndata: {data}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(ev), ev))
                self.wfile.flush()
                time.sleep(0.01)  # deliberate: events arrive apart, as a real stream's do
            self.wfile.write(b"0\r\n\r\n")
        elif self.path.startswith("/hello"):
            self.reply(200, b"hello from the origin\n")
        else:
            self.reply(404, b"no\n")

    def do_POST(self):
        data = self.body()
        self.uploads.append(data)
        if self.path == "/v1/chat":
            # Echoes the API key it was given in a field no rule names: only the echo scan finds it.
            try:
                key = json.loads(data).get("api_key", "")
            except ValueError:
                key = ""
            self.reply(200, json.dumps({"echo": key, "ok": True}).encode(), "application/json")
        else:
            self.reply(200, json.dumps({"received": len(data), "sha256": hashlib.sha256(data).hexdigest()}).encode(),
                       "application/json")


class Origin:
    """An HTTP origin on 127.0.0.1, a free port, answered by `handler` (by default an
    OriginHandler of its own, whose `uploads` keep every POST body)."""

    def __init__(self, handler=None):
        handler = handler or type("Handler", (OriginHandler,), {"uploads": []})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.handler = handler
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def http_heads(stream):
    """The heads in an HTTP/1 byte stream, in order: [(start, head bytes)] (bodies skipped by
    their framing; enough for these tests' messages)."""
    out, pos = [], 0
    while pos < len(stream):
        end = stream.index(b"\r\n\r\n", pos) + 4
        head = stream[pos:end]
        out.append((pos, head))
        fields = {}
        for line in head.split(b"\r\n")[1:]:
            if b":" in line:
                k, v = line.split(b":", 1)
                fields[k.strip().lower()] = v.strip()
        pos = end
        if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            while True:
                nl = stream.index(b"\r\n", pos)
                size = int(stream[pos:nl].split(b";")[0], 16)
                pos = nl + 2 + size + 2
                if size == 0:
                    break
        else:
            pos += int(fields.get(b"content-length", b"0"))
    return out


class HttpSessionRecording(RecorderCase):
    def test_every_byte_and_message_of_an_http_session(self):
        curl = need("curl", "curl (apt package curl)")
        rec = os.path.join(self.tmp, "rec")
        upload = bytes(range(256)) * 300 + b"tail"  # 76804 bytes, not UTF-8
        body_file = os.path.join(self.tmp, "upload.bin")
        with open(body_file, "wb") as f:
            f.write(upload)
        with Origin() as origin, Tee(origin.address) as tee, Faultline() as fl:
            p = fl.create_proxy("api", tee.address, protocol="http")
            # blob_threshold 1024: bigger chunks go to blobs/ (the reader checks their names).
            started = post_recording(fl, {"dir": rec, "proxies": ["api"], "blob_threshold": 1024})
            self.assertEqual((started["state"], started["proxies"], started["redacted"]), ("recording", ["api"], True))
            base = "http://" + p["listen"]
            r = run([curl, "-sS", "--http1.1", "-w", "%{http_code} %{num_connects}\n",
                     "-o", os.path.join(self.tmp, "1"), base + "/hello?x=1",
                     "--next", "-sS", "--http1.1", "-w", "%{http_code} %{num_connects}\n",
                     "-o", os.path.join(self.tmp, "2"), "-H", "Transfer-Encoding: chunked",
                     "-H", "Content-Type: application/octet-stream", "--data-binary", "@" + body_file,
                     base + "/upload",
                     "--next", "-sS", "--http1.1", "-N", "-w", "%{http_code} %{num_connects}\n",
                     "-o", os.path.join(self.tmp, "3"), base + "/events"])
            self.assertEqual(r.stdout.decode().split("\n")[:3], ["200 1", "200 0", "200 0"],
                             "keep-alive: one connection")
            with open(os.path.join(self.tmp, "2"), "rb") as f:
                self.assertEqual(json.loads(f.read())["received"], len(upload))
            self.assertEqual(origin.handler.uploads, [upload])
            caps = tee.wait_done(1)
            wait_closed(rec, 1)
            status, st, _ = fl.request("DELETE", "/recordings/" + started["id"])
            self.assertEqual(status, 200, st)
            j = Journal(rec)
            self.check_status_matches_files(st, j)
        self.assertEqual(len(caps), 1)
        self.assertEqual(j.conns(), [1])
        j.check_connection_order(1)
        up, down = j.stream(1, "up"), j.stream(1, "down")
        self.assertEqual(up, bytes(caps[0]["up"]))
        self.assertEqual(down, bytes(caps[0]["down"]))
        self.assertTrue(j.of("data", conn=1, dir="up") and any("blob" in o for o in j.of("data")),
                        "no data chunk went to a blob")
        self.assertEqual([o["how"] for o in j.of("end", conn=1)], ["half_close", "half_close"])

        # Requests as curl sent them.
        reqs = j.msgs("http_request", conn=1)
        self.assertEqual([(m["method"], m["target"], m["version"]) for m in reqs],
                         [("GET", "/hello?x=1", "HTTP/1.1"), ("POST", "/upload", "HTTP/1.1"),
                          ("GET", "/events", "HTTP/1.1")])
        heads = http_heads(up)
        self.assertEqual([(m["off"], m["len"], m["head_len"]) for m in reqs],
                         [(off, len(h), len(h)) for off, h in heads])
        for m, (_, head) in zip(reqs, heads):
            sent = [line.split(b": ", 1) for line in head.split(b"\r\n")[1:-2]]
            self.assertEqual(m["headers"], [[k.decode(), v.decode()] for k, v in sent])
        self.assertIn(["Transfer-Encoding", "chunked"], reqs[1]["headers"])
        ends = j.msgs("http_end", conn=1, request=True)
        self.assertEqual([m["body_len"] for m in ends], [0, len(upload), 0])
        self.assertEqual(ends[1]["off"], heads[1][0])
        self.assertEqual(ends[1]["off"] + ends[1]["len"], heads[2][0],
                         "the POST's span ends where the next request starts")

        # Responses as the origin sent them.
        resps = j.msgs("http_response", conn=1)
        rheads = http_heads(down)
        self.assertEqual([(m["status"], m["reason"], m["off"], m["len"]) for m in resps],
                         [(200, "OK", off, len(h)) for off, h in rheads])
        self.assertEqual([m["body_len"] for m in j.msgs("http_end", conn=1, request=False)],
                         [len(b"hello from the origin\n"), len(json.dumps({"received": len(upload),
                          "sha256": hashlib.sha256(upload).hexdigest()})),
                          sum(len(f"event: {n}\nid: {i}\ndata: {d}\n\n") for n, i, d in SSE_EVENTS)])
        sse = j.msgs("sse_event", conn=1)
        self.assertEqual([(m["event"], m["id"], m["data_len"]) for m in sse],
                         [(n, i, len(d)) for n, i, d in SSE_EVENTS])
        for m, (name, ident, data) in zip(sse, SSE_EVENTS):
            span = down[m["off"]:m["off"] + m["len"]]
            self.assertTrue(span.startswith(f"event: {name}\n".encode()) and span.endswith(b"\n\n"), span)
            self.assertIn(data.encode(), span)



# ---------------------------------------------------------------------------------------------
# 3. The /recordings API: a recording started mid-connection, stopped with DELETE

class RecordingsApi(RecorderCase):
    def test_started_mid_connection_then_deleted(self):
        rec = os.path.join(self.tmp, "rec")
        with EchoServer() as echo, Faultline() as fl:
            p = fl.create_proxy("echo", echo.address)
            other = fl.create_proxy("other", echo.address)
            s = connect(p["listen"])
            s.sendall(b"before the recording\n")
            self.assertEqual(recv_exactly(s, 21), b"before the recording\n")
            started = post_recording(fl, {"id": "mid", "proxies": ["echo"], "dir": rec})
            self.assertEqual((started["id"], started["dir"], started["state"], started["proxies"]),
                             ("mid", rec, "recording", ["echo"]))
            for i in range(3):
                msg = b"after the recording started %d\n" % i
                s.sendall(msg)
                self.assertEqual(recv_exactly(s, len(msg)), msg)
            # A proxy the recording does not cover is not recorded.
            o = connect(other["listen"])
            o.sendall(b"not recorded\n")
            self.assertEqual(recv_exactly(o, 13), b"not recorded\n")
            o.close()
            wait_status(fl, "mid", lambda st: st.get("bytes") == 2 * 3 * 30)
            status, listed, _ = fl.request("GET", "/recordings")
            self.assertEqual(status, 200)
            self.assertEqual([(r["id"], r["state"]) for r in listed], [("mid", "recording")])
            with open(os.path.join(rec, "index.json")) as f:
                self.assertEqual(json.load(f)["state"], "recording")

            status, final, _ = fl.request("DELETE", "/recordings/mid")
            self.assertEqual(status, 200, final)
            self.assertEqual(final["state"], "stopped")
            self.assertIn("stopped", final)
            # Traffic after the stop is not recorded, and still flows.
            s.sendall(b"after the stop\n")
            self.assertEqual(recv_exactly(s, 15), b"after the stop\n")
            s.close()
            wait_connections_closed(fl, "echo")  # the session is over: nothing more can be recorded
            status, again, _ = fl.request("GET", "/recordings/mid")
            self.assertEqual((status, again["state"], again["bytes"]), (200, "stopped", final["bytes"]))
            status, listed, _ = fl.request("GET", "/recordings")
            self.assertEqual([(r["id"], r["state"]) for r in listed], [("mid", "stopped")])
            # The directory holds a recording now: not reused.
            status, reply, _ = fl.request("POST", "/recordings", {"dir": rec})
            self.assertEqual(status, 400, reply)
            self.assertIn(rec, reply["error"])
            self.assertIn("index.json", reply["error"])
            j = Journal(rec)
        self.check_status_matches_files(final, j)
        self.assertEqual(j.index["state"], "stopped")
        self.assertTrue(j.index["stopped_wall"].endswith("Z"), j.index)
        self.assertGreaterEqual(j.index["stopped_wall"], j.index["started_wall"])
        self.assertEqual([(o["conn"], o["proxy"]) for o in j.of("open")], [(1, "echo")])
        want = b"".join(b"after the recording started %d\n" % i for i in range(3))
        self.assertEqual(j.stream(1, "up"), want)
        self.assertEqual(j.stream(1, "down"), want)
        self.assertEqual(j.of("close"), [], "still open when the recording stopped: no close line")
        self.assertNotIn(b"before", j.all_payload())
        self.assertNotIn(b"not recorded", j.all_payload())

    def test_started_between_messages_decodes_and_redacts(self):
        # http and resp connections open (and used) before the recording: their next messages
        # are decoded and redacted as if the recording had seen them from the start.
        import http.client
        rec = os.path.join(self.tmp, "rec")
        with Origin() as origin, RedisServer() as redis, Faultline() as fl:
            api = fl.create_proxy("api", origin.address, protocol="http")
            red = fl.create_proxy("redis", redis.address, protocol="resp")
            host, port = split_hostport(api["listen"])
            c = http.client.HTTPConnection(host, port, timeout=10)
            c.request("GET", "/hello?before=1")
            self.assertEqual(c.getresponse().read(), b"hello from the origin\n")
            s = connect(red["listen"])
            s.sendall(resp("PING"))
            self.assertEqual(read_reply(s), (b"+", b"PONG"))
            post_recording(fl, {"id": "between", "dir": rec})
            c.request("GET", "/hello?after=1", headers={"Authorization": "Bearer " + BEARER.decode()})
            self.assertEqual(c.getresponse().read(), b"hello from the origin\n")
            s.sendall(resp("AUTH", "default", REDIS_PASS))
            self.assertEqual(read_reply(s), (b"+", b"OK"))  # the default user has nopass: any password works
            s.sendall(resp("SET", "k", "v"))
            self.assertEqual(read_reply(s), (b"+", b"OK"))
            c.close()
            s.close()
            wait_closed(rec, 2)
            fl.request("DELETE", "/recordings/between")
        j = Journal(rec)
        self.assertEqual([m["target"] for m in j.msgs("http_request")], ["/hello?after=1"])
        self.assertEqual([m["status"] for m in j.msgs("http_response")], [200])
        self.assertEqual([(m["command"], m["key"]) for m in j.msgs("resp_command")],
                         [("AUTH", "default"), ("SET", "k")])
        self.assertEqual([m["reply_type"] for m in j.msgs("resp_reply")], ["+", "+"])
        self.assertEqual(sorted(r["rule"] for r in j.of("redaction")), ["header:authorization", "resp:auth"])
        payload = j.all_payload()
        self.assertNotIn(b"before", payload)
        self.assertNotIn(BEARER, payload)
        self.assertNotIn(REDIS_PASS, payload)
        self.assertEqual(j.of("msg", kind="undecodable"), [])

    def test_errors(self):
        plain = os.path.join(self.tmp, "plain")
        with open(plain, "w") as f:
            f.write("x")
        with EchoServer() as echo, Faultline() as fl:
            fl.create_proxy("echo", echo.address)
            for path in ("/recordings/nope", "/recordings/nope"):
                for method in ("GET", "DELETE"):
                    status, reply, _ = fl.request(method, path)
                    self.assertEqual(status, 404, (method, reply))
            bad = [({"rotate_bytes": 10}, "rotate_bytes"), ({"rotate_seconds": 0}, "rotate_seconds"),
                   ({"max_queue_bytes": "big"}, "max_queue_bytes"), ({"blob_threshold": -1}, "blob_threshold"),
                   ({"proxies": "echo"}, "proxies"), ({"redact": "no"}, "redact"), ({"dir": ""}, "dir"),
                   ({"dir": 7}, "dir"), ({"bogus": 1}, "bogus"),
                   ({"redact_rules": {"headers": [1]}}, "redact_rules.headers"),
                   ({"redact_rules": {"paths": []}}, "redact_rules.paths"), ({"id": ""}, "id"), ({"id": "a/b"}, "id")]
            for body, field in bad:
                body.setdefault("dir", os.path.join(self.tmp, "never"))
                status, reply, _ = fl.request("POST", "/recordings", body)
                self.assertEqual(status, 400, (body, reply))
                self.assertIn(f"field {field} ", reply["error"], body)
            status, reply, _ = fl.request("POST", "/recordings", raw="{not json")
            self.assertEqual(status, 400, reply)
            status, reply, _ = fl.request("POST", "/recordings", {"proxies": ["echo", "nope"],
                                                                  "dir": os.path.join(self.tmp, "never")})
            self.assertEqual(status, 400, reply)
            self.assertIn("nope", reply["error"])
            self.assertFalse(os.path.exists(os.path.join(self.tmp, "never")), "a refused recording made its directory")
            # Ids are unique.
            post_recording(fl, {"id": "one", "dir": os.path.join(self.tmp, "one")})
            status, reply, _ = fl.request("POST", "/recordings", {"id": "one", "dir": os.path.join(self.tmp, "two")})
            self.assertEqual(status, 409, reply)
            status, listed, _ = fl.request("GET", "/recordings")
            self.assertEqual([r["id"] for r in listed], ["one"])


# ---------------------------------------------------------------------------------------------
# 4. kill -9 mid-stream

class Streamer:
    """Sends a line every millisecond, each saying when (CLOCK_MONOTONIC) it was sent, and
    keeps (time sent, bytes sent so far) for each."""

    def __init__(self, address):
        self.sock = connect(address)
        self.sent = []  # (monotonic seconds before the send, total bytes after it)
        self.total = 0
        self.data = bytearray()
        self.stop = False
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        n = 0
        try:
            while not self.stop:
                now = time.monotonic()
                line = b"seq=%08d mono_ns=%d\n" % (n, time.monotonic_ns())
                self.sock.sendall(line)
                self.total += len(line)
                self.data += line
                self.sent.append((now, self.total))
                n += 1
                time.sleep(0.001)  # deliberate: a steady stream of small writes, the load under test
        except OSError as e:
            self.error = e

    def finish(self):
        self.stop = True
        self.thread.join(10)
        self.sock.close()


class CrashSafety(RecorderCase):
    def test_kill_9_mid_stream(self):
        rec = os.path.join(self.tmp, "rec")
        with Sink() as sink, Faultline("--record", rec) as fl:
            p = fl.create_proxy("stream", sink.address)
            streamer = Streamer(p["listen"])
            try:
                time.sleep(1.5)  # deliberate: the stream runs a while before the kill it measures
                self.assertIsNone(streamer.error)
                killed_at = time.monotonic()
                fl.proc.send_signal(signal.SIGKILL)
                fl.proc.wait(10)
            finally:
                streamer.finish()
        self.assertGreater(len(streamer.sent), 300, "the client sent too little to test anything")
        j = Journal(rec, allow_truncated=True)  # every line but a partial last one is JSON
        self.assertEqual(j.index["state"], "recording", "a killed recording is not stopped")
        self.assertNotIn("stopped_wall", j.index)
        self.assertEqual(j.conns(), [1])
        # Every recorded byte is what the client sent at its offset; a busy machine may have
        # made the writer drop a few events (it drops what it cannot write within 10 ms):
        # those are holes, each marked and counted.
        end = 0
        for o in j.of("data", conn=1, dir="up"):
            if o["off"] != end:
                marks = [m for m in j.msgs("undecodable", conn=1, dir="up") if m["off"] == o["off"]]
                self.assertTrue(marks and marks[0]["reason"].startswith(f"gap: {o['off'] - end} bytes"), o)
            self.assertEqual(o["bytes"], bytes(streamer.data[o["off"]:o["off"] + o["len"]]),
                             "the recorded bytes are what the client sent")
            end = o["off"] + o["len"]
        holes = end - sum(o["len"] for o in j.of("data", conn=1, dir="up"))
        self.assertLessEqual(holes, sum(o["bytes"] for o in j.of("gap")))
        # All but the last ~100 ms before the kill are there.
        due = max([total for at, total in streamer.sent if at <= killed_at - 0.1], default=0)
        self.assertGreaterEqual(end, due, f"recorded up to byte {end}; {due} were sent 100 ms before the kill")
        # t is CLOCK_MONOTONIC since started_mono_ns: no chunk is recorded before its bytes were sent.
        start_ns = j.header["started_mono_ns"]
        for o in j.of("data", conn=1, dir="up"):
            last = o["bytes"].rstrip(b"\n").rsplit(b"\n", 1)[-1]
            if last.startswith(b"seq="):
                sent_ns = int(last.split(b"mono_ns=")[1])
                self.assertGreaterEqual(start_ns + o["t"], sent_ns, o)
                self.assertLess(start_ns + o["t"] - sent_ns, 1_000_000_000, o)

        # `faultline export text` reads it; a partial last line is reported, the rest exported.
        r = export("text", rec)
        self.assertEqual(r.returncode, 0, r.stderr)
        if j.truncated:
            self.assertIn(b"incomplete", r.stderr)
            self.assertIn(j.truncated[0].encode(), r.stderr)
        # The same with a partial last line for certain: what a crash mid-write leaves.
        cut = os.path.join(self.tmp, "cut")
        shutil.copytree(rec, cut)
        last = os.path.join(cut, j.index["journals"][-1])
        with open(last, "rb") as f:
            text = f.read()
        whole = text[:text.rindex(b"\n") + 1]
        nlines = whole.count(b"\n")
        with open(last, "wb") as f:
            f.write(whole + b'{"type":"data","t":99,"conn":1,"dir":"up","off":')
        r = export("text", cut)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"journal-000000.jsonl: line %d is incomplete" % (nlines + 1), r.stderr)
        self.assertIn(b"stream", r.stdout)
        self.assertIn(b"seq=00000000", r.stdout + export("text", rec).stdout)


# ---------------------------------------------------------------------------------------------
# 5. A full disk and a file size limit: the recording fails, traffic does not

def echo_many(address, n, size=200):
    """n round trips of distinct payloads on one connection; returns how many came back intact."""
    ok = 0
    with connect(address) as s:
        for i in range(n):
            payload = (b"%06d:" % i) + os.urandom(size // 2).hex().encode()[:size - 7]
            s.sendall(payload)
            if recv_exactly(s, len(payload)) == payload:
                ok += 1
    return ok


class DiskFull(RecorderCase):
    def test_no_space_left_on_device(self):
        # A real full disk: the recording lives on a small tmpfs (mounted here: root only),
        # filled up once the first exchanges are written. Big chunks go to blobs/<name>,
        # written first as blobs/.tmp-<name>, which needs a new page: ENOSPC from the kernel.
        # (A symlink to /dev/full planted under that name no longer stands in: the recorder
        # never follows one, see test_recorder_files.py.)
        disk = os.path.join(self.tmp, "disk")
        os.makedirs(disk)
        if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", disk],
                                               capture_output=True, timeout=10).returncode != 0:
            self.skipTest("mounting a small tmpfs needs root")
        self.addCleanup(subprocess.run, ["umount", "-l", disk], capture_output=True, timeout=10)
        rec = os.path.join(disk, "rec")
        with EchoServer() as echo, Faultline() as fl:
            p = fl.create_proxy("echo", echo.address)
            st = post_recording(fl, {"id": "full", "dir": rec, "blob_threshold": 1024})
            self.assertEqual(echo_many(p["listen"], 5), 5)
            keep = connect(p["listen"])  # open across the failure
            keep.sendall(b"ping\n")
            self.assertEqual(recv_exactly(keep, 5), b"ping\n")
            # What came before is written before the failure (the writer writes every 5 ms).
            wait_status(fl, "full", lambda s: s["events"] >= 1 + 2 + 2 * 5 + 1 + 2)
            with open(os.path.join(disk, "filler"), "wb", buffering=0) as f:  # every page left
                for size in (1 << 16, 4096):
                    try:
                        while f.write(b"\0" * size):
                            pass
                    except OSError:
                        pass
            for attempt in range(5):
                # One send of 3000 bytes is normally one read in faultline (one chunk, one blob);
                # should it be split, the next attempt uses another payload.
                payload = os.urandom(3000)
                name = blob_name(payload)
                tmp_blob = os.path.join(rec, "blobs", ".tmp-" + name)
                keep.sendall(payload)
                self.assertEqual(recv_exactly(keep, len(payload)), payload)
                st = poll(lambda: fl.request("GET", "/recordings/full")[1], lambda s: s["state"] == "failed",
                          timeout=2)
                if st["state"] == "failed":
                    break
            self.assertEqual(st["state"], "failed", st)
            self.assertIn(tmp_blob, st["error"])
            self.assertIn("No space left on device", st["error"])
            self.assertEqual(metric(fl, "faultline_recording_failed", recording="full"), 1)
            # Traffic is unaffected: the open connection and new ones.
            flowing = self.check_still_flowing(keep)
            keep.close()
            self.assertEqual(echo_many(p["listen"], 20), 20)
            self.assertGreater(metric(fl, "faultline_recording_dropped_events_total", recording="full"), 0)
            lost = fl.request("GET", "/recordings/full")[1]
            flowed = 2 * (flowing + 20 * 200)
            self.assertGreater(lost.get("lost_events", 0), 40, lost)
            self.assertGreaterEqual(lost.get("lost_bytes", 0), flowed, lost)
            status, final, _ = fl.request("DELETE", "/recordings/full")
            self.assertEqual((status, final["state"], final["error"]), (200, "failed", st["error"]))
            logs = wait_for(lambda: "No space left on device" in fl.logs() and fl.logs(),
                            what="the disk error in faultline's log")
        said = [line for line in logs.splitlines() if "No space left on device" in line]
        self.assertEqual(len(said), 1, logs)
        self.assertIn("full", said[0])
        j = Journal(rec)  # whole lines only
        self.assertEqual(j.index["state"], "failed")
        self.assertEqual(j.index["error"], st["error"])
        self.assertEqual(final["events"], len(j.events) + len(j.headers), final)
        self.assertEqual(final["journal_bytes"], j.journal_bytes(), final)
        self.assertEqual(final["bytes"], sum(o["len"] for o in j.of("data")), final)
        self.assertNotIn(b"still flowing", j.all_payload())
        self.assertEqual(j.stream(2, "up")[:5], b"ping\n")
        self.assertEqual(len(j.stream(1, "up")), 5 * 200)
        self.assertFalse(os.path.exists(os.path.join(rec, "blobs", name)))

    def test_file_size_limit(self):
        # RLIMIT_FSIZE on the running faultline: the journal's write fails (EFBIG) mid-batch.
        # faultline must not die of SIGXFSZ; the journal is cut back to its last whole line.
        prlimit = need("prlimit", "util-linux")
        rec = os.path.join(self.tmp, "rec")
        limit = 20000
        with EchoServer() as echo, Faultline() as fl:
            p = fl.create_proxy("echo", echo.address)
            run([prlimit, "--pid", str(fl.proc.pid), f"--fsize={limit}"])
            post_recording(fl, {"id": "fsize", "dir": rec})
            ok = echo_many(p["listen"], 200)  # ~70 KB of journal lines

            def state():
                if fl.proc.poll() is not None:
                    return "died"
                try:
                    return fl.request("GET", "/recordings/fsize")[1]["state"]
                except OSError:
                    return "died"
            self.assertEqual(poll(state, lambda s: s != "recording", timeout=10), "failed",
                             f"faultline exited with {fl.proc.returncode} when the journal reached the file size "
                             f"limit:\n{fl.logs()}")
            self.assertEqual(ok, 200)
            st = fl.request("GET", "/recordings/fsize")[1]
            journal = os.path.join(rec, "journal-000000.jsonl")
            self.assertIn(journal, st["error"])
            self.assertIn("File too large", st["error"])
            self.assertEqual(metric(fl, "faultline_recording_failed", recording="fsize"), 1)
            self.assertEqual(echo_many(p["listen"], 20), 20)
            logs = fl.logs()
        self.assertEqual(len([line for line in logs.splitlines() if "File too large" in line]), 1, logs)
        j = Journal(rec)  # ends in a whole line
        self.assertLessEqual(os.path.getsize(journal), limit)
        self.assertEqual(j.index["state"], "failed")
        self.assertEqual(j.index["error"], st["error"])
        self.assertEqual(st["events"], len(j.events) + len(j.headers), st)
        self.assertEqual(st["journal_bytes"], j.journal_bytes(), st)

    def test_status_after_a_failed_write_counts_what_was_written(self):
        # Every payload byte is either in the journal (`bytes`) or counted in `lost_bytes`,
        # also when the journal hits the file size limit mid-batch.
        prlimit = need("prlimit", "util-linux")
        rec = os.path.join(self.tmp, "rec")
        with EchoServer() as echo, Faultline() as fl:
            p = fl.create_proxy("echo", echo.address)
            run([prlimit, "--pid", str(fl.proc.pid), "--fsize=20000"])
            post_recording(fl, {"id": "fsize", "dir": rec})
            self.assertEqual(echo_many(p["listen"], 200), 200)
            wait_status(fl, "fsize", lambda s: s["state"] == "failed")
            wait_connections_closed(fl, "echo")  # every event handed over: recorded or counted lost
            status, st, _ = fl.request("DELETE", "/recordings/fsize")
        j = Journal(rec)
        recorded = sum(o["len"] for o in j.of("data"))
        self.assertEqual(st["bytes"] + st["lost_bytes"], 2 * 200 * 200, st)
        self.assertEqual(st["bytes"], recorded, st)


# ---------------------------------------------------------------------------------------------
# 6. Directories that cannot be written

class UnwritableDirectory(RecorderCase):
    def test_api_and_serve_refuse(self):
        plain = os.path.join(self.tmp, "plain")
        with open(plain, "w") as f:
            f.write("a regular file\n")
        cases = [(os.path.join(plain, "rec"), "Not a directory"), (plain, "Not a directory"),
                 ("/proc/1/faultline-rec", None)]
        with EchoServer() as echo, Faultline() as fl:
            p = fl.create_proxy("echo", echo.address)
            for path, reason in cases:
                status, reply, _ = fl.request("POST", "/recordings", {"dir": path})
                self.assertEqual(status, 400, (path, reply))
                self.assertIn(path + ": ", reply["error"])
                if reason:
                    self.assertIn(reason, reply["error"])
                else:
                    self.assertGreater(len(reply["error"].split(path + ": ", 1)[1]), 5, reply)
            status, listed, _ = fl.request("GET", "/recordings")
            self.assertEqual(listed, [])
            self.assertEqual(echo_many(p["listen"], 3), 3)
        for path, reason in cases:
            rc, out, port_file_written, _ = run_serve_expect_exit(["--record", path])
            self.assertEqual(rc, 2, out)
            self.assertFalse(port_file_written, out)
            self.assertIn(path + ": ", out)
            if reason:
                self.assertIn(reason, out)



# ---------------------------------------------------------------------------------------------
# 7. Redaction

BEARER = b"sk-live-SECRET1234567890"
API_KEY = b"KEY-abcdef123456"
PASSWORD = b"hunter2hunter2"
REDIS_PASS = b"redis-Pa55word-0123456789"
SECRETS = [BEARER, API_KEY, PASSWORD, REDIS_PASS]


def read_reply(sock, timeout=10):
    """Reads one whole RESP reply."""
    sock.settimeout(timeout)
    buf = b""
    while True:
        try:
            value, end = parse_resp(buf)
            if end == len(buf):
                return value
        except (ValueError, IndexError, AssertionError):
            pass
        data = sock.recv(65536)
        if not data:
            raise AssertionError(f"connection ended after {buf!r}")
        buf += data


def http_secrets_session(address):
    """Keep-alive requests carrying the secrets; returns the answers' bodies (parsed)."""
    import http.client
    host, port = split_hostport(address)
    c = http.client.HTTPConnection(host, port, timeout=10)
    out = []
    try:
        for _ in range(2):
            c.request("GET", "/hello", headers={"Authorization": "Bearer " + BEARER.decode()})
            r = c.getresponse()
            out.append((r.status, r.read()))
        body = json.dumps({"api_key": API_KEY.decode(), "model": "x", "nested": {"password": PASSWORD.decode()},
                           "messages": [{"role": "user", "content": "lorem ipsum " * 300}]})
        for _ in range(2):
            c.request("POST", "/v1/chat", body=body, headers={"Content-Type": "application/json",
                                                              "Authorization": "Bearer " + BEARER.decode()})
            r = c.getresponse()
            out.append((r.status, json.loads(r.read())))
    finally:
        c.close()
    return out


def redis_secrets_session(address):
    s = connect(address)
    try:
        replies = []
        for cmd in (resp("AUTH", REDIS_PASS), resp("SET", "k", "v"), resp("HELLO", "3", "AUTH", "default", REDIS_PASS),
                    resp("AUTH", "default", REDIS_PASS), resp("PING")):
            s.sendall(cmd)
            replies.append(read_reply(s))
        return replies
    finally:
        s.close()


class Redaction(RecorderCase):
    def test_secrets_never_reach_the_disk_or_an_export(self):
        rec = os.path.join(self.tmp, "rec")
        with RedisServer("--requirepass", REDIS_PASS.decode()) as redis, Origin() as origin, \
                Tee(origin.address) as http_tee, Tee(redis.address) as redis_tee, Faultline() as fl:
            api = fl.create_proxy("api", http_tee.address, protocol="http")
            red = fl.create_proxy("redis", redis_tee.address, protocol="resp")
            # blob_threshold 1024: the JSON requests (3.7 KB) are written to blobs/.
            post_recording(fl, {"dir": rec, "blob_threshold": 1024})
            answers = http_secrets_session(api["listen"])
            replies = redis_secrets_session(red["listen"])
            # The traffic itself is untouched: statuses, Content-Length, the echoed key, the logins.
            self.assertEqual([a[0] for a in answers], [200] * 4)
            self.assertEqual(answers[0][1], b"hello from the origin\n")
            self.assertEqual(answers[2][1], {"echo": API_KEY.decode(), "ok": True})
            self.assertEqual(replies[0], (b"+", b"OK"))
            self.assertEqual(replies[2][0], b"%")
            self.assertEqual(replies[3], (b"+", b"OK"))
            self.assertEqual(replies[4], (b"+", b"PONG"))
            caps = {"api": http_tee.wait_done(1), "redis": redis_tee.wait_done(1)}
            wait_closed(rec, 2)
        j = Journal(rec)
        self.assertEqual(j.index["state"], "stopped")
        self.assertTrue(j.header["redacted"] and j.index["redacted"])

        tokens = {}  # secret -> token
        rules = Counter()
        for o in j.of("open"):
            c = o["conn"]
            self.assertEqual(len(caps[o["proxy"]]), 1)
            for d in ("up", "down"):
                sent = bytes(caps[o["proxy"]][0][d])
                got = bytearray(j.stream(c, d))
                self.assertEqual(len(got), len(sent), "redaction keeps lengths")
                spans = j.of("redaction", conn=c, dir=d)
                for r in spans:
                    secret = sent[r["off"]:r["off"] + r["len"]]
                    token = bytes(got[r["off"]:r["off"] + r["len"]])
                    self.assertIn(secret, SECRETS, r)
                    self.assertTrue(token.startswith(b"REDACTED-"), token)
                    self.assertRegex(token[9:].decode(), "^[0-9a-f]+$")
                    self.assertEqual(len(token), len(secret))
                    self.assertEqual(tokens.setdefault(secret, token), token, f"two tokens for one secret ({r})")
                    rules[r["rule"]] += 1
                    got[r["off"]:r["off"] + r["len"]] = secret
                # Outside the redactions, the bytes are as sent; every secret sent was redacted.
                self.assertEqual(bytes(got), sent, f"conn {c} {d}")
                for secret in SECRETS:
                    pos = sent.find(secret)
                    while pos >= 0:
                        self.assertTrue(any(r["off"] <= pos and pos + len(secret) <= r["off"] + r["len"]
                                            for r in spans), f"{secret!r} at {d} {pos} not redacted")
                        pos = sent.find(secret, pos + 1)
        self.assertEqual(set(tokens), set(SECRETS))
        self.assertEqual(len(set(tokens.values())), len(SECRETS), "different secrets, different tokens")
        self.assertEqual(rules["header:authorization"], 4, rules)
        self.assertEqual(rules["json:api_key"], 2, rules)
        self.assertEqual(rules["json:password"], 2, rules)
        self.assertEqual(rules["echo"], 2, rules)  # the key in the answers
        self.assertEqual(rules["resp:auth"], 2, rules)
        self.assertEqual(rules["resp:hello_auth"], 1, rules)
        # Decoded messages show tokens too.
        auths = j.msgs("resp_command", command="AUTH")
        self.assertEqual([(m["argc"], m["key"]) for m in auths], [(2, tokens[REDIS_PASS].decode()), (3, "default")])
        for m in j.msgs("http_request"):
            self.assertIn(["Authorization", "Bearer " + tokens[BEARER].decode()], m["headers"])

        # No secret anywhere: the files as written (journals, blobs, index), the decoded
        # payload, every export.
        places = {path: data for path, data in j.files_on_disk().items()}
        places["decoded payload"] = j.all_payload()
        places.update(self.exports(rec))
        blobs = [data for path, data in places.items() if os.sep + "blobs" + os.sep in path]
        self.assertTrue(any(tokens[API_KEY] in b and tokens[PASSWORD] in b for b in blobs), "no blob holds the JSON")
        self.assertIn(tokens[BEARER], places["export har"])
        self.assertIn(tokens[REDIS_PASS], places["export pcapng"])
        for where, data in places.items():
            for secret in SECRETS:
                self.assertNotIn(secret, data, f"{secret!r} in {where}")
                for form in base64_forms(secret):
                    self.assertNotIn(form, data, f"{secret!r} base64-encoded ({form!r}) in {where}")

    def test_no_redact_records_secrets_and_warns(self):
        rec = os.path.join(self.tmp, "rec")
        with RedisServer("--requirepass", REDIS_PASS.decode()) as redis, Origin() as origin, \
                Faultline("--record", rec, "--no-redact") as fl:
            api = fl.create_proxy("api", origin.address, protocol="http")
            red = fl.create_proxy("redis", redis.address, protocol="resp")
            http_secrets_session(api["listen"])
            redis_secrets_session(red["listen"])
            wait_closed(rec, 2)
            status, st, _ = fl.request("GET", "/recordings/serve")
            self.assertFalse(st["redacted"])
            logs = fl.logs()
        j = Journal(rec)
        self.assertFalse(j.header["redacted"])
        self.assertFalse(j.index["redacted"])
        self.assertEqual(j.of("redaction"), [])
        payload = j.all_payload()
        for secret in SECRETS:
            self.assertIn(secret, payload)
        warnings = [line for line in logs.splitlines() if " warning " in line and "redaction is off" in line.lower()]
        self.assertEqual(len(warnings), 1, logs)
        self.assertIn(rec, warnings[0])


# ---------------------------------------------------------------------------------------------
# 8. Rotation, and a profile recording one proxy of two

class Rotation(RecorderCase):
    def test_rotation_by_size(self):
        rec = os.path.join(self.tmp, "rec")
        with EchoServer() as echo, Faultline() as fl:
            p = fl.create_proxy("echo", echo.address)
            # backpressure: a rotation that a busy disk makes slow must not turn events into gaps.
            post_recording(fl, {"id": "rot", "dir": rec, "rotate_bytes": 4096, "overflow": "backpressure"})
            sent = bytearray()
            with connect(p["listen"]) as s:
                for i in range(150):
                    msg = b"message %04d " % i + b"x" * 90 + b"\n"
                    s.sendall(msg)
                    self.assertEqual(recv_exactly(s, len(msg)), msg)
                    sent += msg
            wait_closed(rec, 1)
            status, st, _ = fl.request("DELETE", "/recordings/rot")
        j = Journal(rec)
        self.check_status_matches_files(st, j)
        names = j.index["journals"]
        self.assertGreaterEqual(len(names), 6, names)
        self.assertEqual(names, ["journal-%06d.jsonl" % i for i in range(len(names))])
        self.assertEqual(sorted(os.path.basename(p) for p in glob.glob(os.path.join(rec, "journal-*"))), names)
        self.assertEqual([h["file"] for h in j.headers], list(range(len(names))))
        longest = max(len(line) + 1 for raw in j.raw.values() for line in raw.split(b"\n"))
        for name in names[:-1]:
            size = len(j.raw[name])
            self.assertGreaterEqual(size, 4096 - longest, name)
            self.assertLessEqual(size, 4096 + longest, name)
        # Read in index order, offsets are contiguous across files (Journal.stream checks).
        self.assertEqual(j.stream(1, "up"), bytes(sent))
        self.assertEqual(j.stream(1, "down"), bytes(sent))
        self.assertGreater(len({name for name, _, o in j.events if o["type"] == "data"}), 3)

    def test_rotation_by_time(self):
        rec = os.path.join(self.tmp, "rec")
        with EchoServer() as echo, Faultline() as fl:
            p = fl.create_proxy("echo", echo.address)
            post_recording(fl, {"id": "rot", "dir": rec, "rotate_seconds": 1})
            with connect(p["listen"]) as s:
                for msg in (b"first\n", b"second\n"):
                    s.sendall(msg)
                    self.assertEqual(recv_exactly(s, len(msg)), msg)
                    time.sleep(1.2)  # deliberate: past rotate_seconds (1), so the journal rotates
            status, st, _ = fl.request("DELETE", "/recordings/rot")
        j = Journal(rec)
        self.assertGreaterEqual(len(j.index["journals"]), 2, j.index)
        self.assertEqual(j.stream(1, "up"), b"first\nsecond\n")
        first = [name for name, _, o in j.events if o["type"] == "data" and o["bytes"] == b"first\n"]
        second = [name for name, _, o in j.events if o["type"] == "data" and o["bytes"] == b"second\n"]
        self.assertNotEqual(first[0], second[0])


class ProfileRecording(RecorderCase):
    def test_profile_records_only_the_marked_proxy(self):
        rec = os.path.join(self.tmp, "rec")
        with EchoServer() as echo:
            profile = {"proxies": [
                {"name": "recorded", "listen": "127.0.0.1:0", "upstream": echo.address, "record": True},
                {"name": "plain", "listen": "127.0.0.1:0", "upstream": echo.address}],
                "recording": {"dir": rec, "rotate_bytes": 1 << 20}}
            with Faultline(config=profile) as fl:
                status, proxies, _ = fl.request("GET", "/proxies")
                for name in ("recorded", "plain", "recorded"):
                    self.assertEqual(echo_many(proxies[name]["listen"], 3), 3)
                status, listed, _ = fl.request("GET", "/recordings")
                self.assertEqual([(r["proxies"], r["dir"]) for r in listed], [(["recorded"], rec)])
                wait_closed(rec, 2)
                fl.stop()
                self.assertEqual(fl.proc.returncode, 0, fl.logs())
        j = Journal(rec)
        self.assertEqual(j.index["state"], "stopped", "stopped on SIGTERM")
        self.assertEqual([(o["conn"], o["proxy"]) for o in j.of("open")], [(1, "recorded"), (2, "recorded")])
        for c in (1, 2):
            self.assertEqual(len(j.stream(c, "up")), 600)
            self.assertEqual(j.stream(c, "up"), j.stream(c, "down"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
