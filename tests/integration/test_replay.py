"""`faultline replay server` and `faultline replay client` on real recordings.

A small Redis session (a Python client: SET/GET/INCR/HSET/HGET/...) and a small HTTP session
(JSON POST, JSON-RPC POST) are recorded with `faultline serve --record DIR`, then:
  (a) `replay server` answers the same commands with byte-identical replies, with no
      redis-server running; an unrecorded command gets the diagnostic naming the closest;
  (b) `replay client` re-drives a fresh redis-server with zero divergences;
  (c) `replay server` on the HTTP recording serves the same status/body, and a JSON-RPC
      call with another id gets the recorded result carrying the live id;
  (d) the forward policy and per-rule policies: only a request a rule sends forward opens a
      connection to the forward upstream (none otherwise);
  (e) an open-loop client sends on the recorded schedule without waiting for replies;
  (f) a `serve` profile proxy whose upstream is a journal ("replay"), with faults applied.
Loopback only, port 0, bounded waits.
"""
import http.client
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

sys.path.insert(0, os.path.dirname(__file__))
from harness import (BIN, EchoServer, Faultline, RedisServer, ReplayServer, recv_all, recv_until,  # noqa: E402
                     finish_recordings, run_serve_expect_exit)

TIMEOUT = 20
SSE_GAP = 0.4


def encode(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class RespConn:
    """A raw RESP client: send a command, get the reply's exact bytes."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        i = self.buf.index(b"\r\n") + 2
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def _exactly(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _reply(self):
        line = self._line()
        t = line[:1]
        if t in (b"$",):
            n = int(line[1:-2])
            return line + (self._exactly(n + 2) if n >= 0 else b"")
        if t in (b"*", b"%", b"~"):
            n = int(line[1:-2])
            out = line
            for _ in range(max(n, 0) * (2 if t == b"%" else 1)):
                out += self._reply()
            return out
        return line

    def call(self, *args):
        self.sock.sendall(encode(*args))
        return self._reply()

    def close(self):
        self.sock.close()


SESSION = [
    ("SET", "greeting", "hello"),
    ("GET", "greeting"),
    ("INCR", "counter"),
    ("INCR", "counter"),
    ("INCR", "counter"),
    ("HSET", "user:1", "name", "ada", "lang", "en"),
    ("HGET", "user:1", "name"),
    ("HGETALL", "user:1"),
    ("RPUSH", "list", "a", "b", "c"),
    ("LRANGE", "list", "0", "-1"),
    ("GET", "missing"),
    ("DEL", "greeting"),
    ("EXISTS", "greeting"),
]


class ReplayServerProc(ReplayServer):
    """A replay server logging at debug: the tests read what unmatched requests got."""

    def __init__(self, *args):
        super().__init__(*args, env={"LOG_LEVEL": "debug"})


class ReplayRedis(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        class_recording_dir(cls, "faultline-replay-rec-")
        cls.recorded = []
        with RedisServer() as redis, Faultline("--record", cls.rec) as fl:
            proxy = fl.create_proxy("cache", redis.address, protocol="resp")
            port = int(proxy["listen"].rsplit(":", 1)[1])
            c = RespConn(port)
            for cmd in SESSION:
                cls.recorded.append(c.call(*cmd))
            c.close()
            finish_recordings(fl)  # every session ended and its events written out
            fl.stop()

    def test_recording_is_sane(self):
        self.assertEqual(self.recorded[0], b"+OK\r\n")
        self.assertEqual(self.recorded[4], b":3\r\n")

    def test_server_replays_byte_identical_without_redis(self):
        srv = ReplayServerProc("--journal", self.rec)
        try:
            c = RespConn(srv.port)
            self.addCleanup(c.close)
            for cmd, want in zip(SESSION, self.recorded):
                self.assertEqual(c.call(*cmd), want, cmd)
            # The ordered queue (shared by all connections): INCR answered 1, 2, 3 above; now
            # it is exhausted and the last reply is reused.
            c2 = RespConn(srv.port)
            self.addCleanup(c2.close)
            self.assertEqual([c2.call("INCR", "counter") for _ in range(4)], [b":3\r\n"] * 4)
            miss = c2.call("HGET", "user:1", "lang")
            self.assertTrue(miss.startswith(b"-ERR faultline replay: no recorded reply for HGET user:1 lang"), miss)
            self.assertIn(b"closest: HGET user:1 name", miss)
        finally:
            out = srv.finish()
        self.assertIn("served 17, unmatched 1", out)

    def test_unmatched_closest_and_fail(self):
        srv = ReplayServerProc("--journal", self.rec, "--unmatched", "closest")
        try:
            c = RespConn(srv.port)
            self.assertEqual(c.call("HGET", "user:1", "lang"), self.recorded[6])
            c.close()
        finally:
            srv.finish()
        srv = ReplayServerProc("--journal", self.rec, "--unmatched", "fail")
        c = RespConn(srv.port)
        self.addCleanup(c.close)
        with self.assertRaises((ConnectionError, OSError)):
            c.call("GET", "nope")
        c.close()
        srv.proc.send_signal(signal.SIGTERM)
        self.assertEqual(srv.proc.wait(timeout=10), 1)
        srv.finish()

    def test_client_redrives_fresh_redis_with_zero_divergences(self):
        with RedisServer() as redis:
            r = subprocess.run([BIN, "replay", "client", "--journal", self.rec, "--target", redis.address,
                                "--speed", "max"], capture_output=True, text=True, timeout=TIMEOUT)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("13 exchanges, 13 matched, 0 mismatched, 0 errors", r.stdout)
            # Again against the same (now dirty) server: INCR and RPUSH diverge.
            r = subprocess.run([BIN, "replay", "client", "--journal", self.rec, "--target", redis.address,
                                "--speed", "max"], capture_output=True, text=True, timeout=TIMEOUT)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn("INCR counter", r.stderr)
            r = subprocess.run([BIN, "replay", "client", "--journal", self.rec, "--target", redis.address,
                                "--speed", "max", "--threshold", "0.9"], capture_output=True, text=True,
                               timeout=TIMEOUT)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


def seed_where(redis, value):
    """SET where VALUE straight on `redis`, not through faultline."""
    c = RespConn(int(redis.address.rsplit(":", 1)[1]))
    try:
        c.call("SET", "where", value)
    finally:
        c.close()


class ReplayTwoProxies(unittest.TestCase):
    """A recording that holds two proxies' connections (a cache and a queue, each its own
    Redis): sent to one target, half of it cannot match, so the client says so and can
    replay one proxy (--proxy) or give each its own server (--target NAME=HOST:PORT)."""

    @classmethod
    def setUpClass(cls):
        class_recording_dir(cls, "faultline-replay-two-")
        # The cache's connection writes and reads its value; the queue's only reads the value its
        # own server holds (set directly, not through faultline): replayed against one server,
        # the queue's GET gets the cache's value.
        with RedisServer() as a, RedisServer() as b, Faultline("--record", cls.rec) as fl:
            seed_where(b, "from-the-queue-server")
            for name, redis, commands in (("cache", a, [("SET", "where", "from-the-cache-server"), ("GET", "where")]),
                                          ("queue", b, [("GET", "where")])):
                proxy = fl.create_proxy(name, redis.address, protocol="resp")
                c = RespConn(int(proxy["listen"].rsplit(":", 1)[1]))
                for cmd in commands:
                    c.call(*cmd)
                c.close()
            finish_recordings(fl)  # every session ended and its events written out
            fl.stop()

    def client(self, *args, speed="max"):
        return subprocess.run([BIN, "replay", "client", "--journal", self.rec, "--speed", speed, *args],
                              capture_output=True, text=True, timeout=TIMEOUT)

    def test_one_target_for_two_proxies_warns_and_shows_where_answers_differ(self):
        with RedisServer() as redis:
            # At the recorded pace: the cache's SET and GET, then the queue's GET, as recorded
            # (at max speed the two connections could run in either order).
            r = self.client("--target", redis.address, speed="1")
            self.assertIn("the journal holds connections of 2 proxies (cache, queue)", r.stderr)
            self.assertIn("--proxy NAME", r.stderr)
            # The queue's GET is answered with the cache's value. The report shows where the
            # answers differ, not the first bytes of each (equal here).
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn("3 exchanges, 2 matched, 1 mismatched", r.stdout)
            self.assertIn('GET where: reply differs at byte 14: "$21\\r\\nfrom-the-cache-server\\r\\n", '
                          'recorded "$21\\r\\nfrom-the-queue-server\\r\\n"', r.stderr)

    def test_proxy_selects_its_connections(self):
        with RedisServer() as redis:
            r = self.client("--target", redis.address, "--proxy", "cache")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("2 exchanges, 2 matched, 0 mismatched", r.stdout)
            self.assertNotIn("warning", r.stderr)
        r = self.client("--target", "127.0.0.1:1", "--proxy", "nope")
        self.assertEqual(r.returncode, 2)
        self.assertIn('no connection of proxy "nope" (it holds: cache, queue)', r.stderr)

    def test_a_target_per_proxy(self):
        with RedisServer() as a, RedisServer() as b:
            seed_where(b, "from-the-queue-server")
            r = self.client("--target", f"cache={a.address}", "--target", f"queue={b.address}")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("3 exchanges, 3 matched, 0 mismatched", r.stdout)
            r = self.client("--target", f"cache={a.address}")
            self.assertEqual(r.returncode, 2)
            self.assertIn('no --target for proxy "queue"', r.stderr)


class CountingUpstream:
    """A fake Redis for the forward policy: counts connections and commands, answers each
    command with $9 forwarded."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.accepts = 0
        self.commands = []
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepts += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(10)
        with conn:
            while not self.stopping:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                self.commands.append(data)
                conn.sendall(b"$9\r\nforwarded\r\n")

    def close(self):
        self.stopping = True
        self.thread.join(timeout=5)
        self.sock.close()


class ReplayPolicies(ReplayRedis):
    """Forward and per-rule policies on the Redis recording (setUpClass records it again)."""

    def test_recording_is_sane(self):
        pass

    test_server_replays_byte_identical_without_redis = None
    test_unmatched_closest_and_fail = None
    test_client_redrives_fresh_redis_with_zero_divergences = None

    def test_forward_only_what_a_rule_sends_forward(self):
        upstream = CountingUpstream()
        self.addCleanup(upstream.close)
        srv = ReplayServerProc("--journal", self.rec, "--rule", "HGET=forward", "--forward", upstream.address)
        try:
            c = RespConn(srv.port)
            self.addCleanup(c.close)
            self.assertEqual(c.call("GET", "greeting"), self.recorded[1])
            miss = c.call("GET", "nope")  # unmatched, no rule: the default (error)
            self.assertTrue(miss.startswith(b"-ERR faultline replay: no recorded reply for GET nope"), miss)
            self.assertEqual(upstream.accepts, 0, "a request no rule forwards opened an upstream connection")
            self.assertEqual(c.call("HGET", "user:1", "lang"), b"$9\r\nforwarded\r\n")
            self.assertEqual(c.call("HGET", "user:1", "city"), b"$9\r\nforwarded\r\n")
            self.assertEqual(c.call("HGET", "user:1", "name"), self.recorded[6])  # recorded: not forwarded
            self.assertEqual(upstream.accepts, 1)  # one link per live connection, reused
            self.assertEqual(upstream.commands, [encode("HGET", "user:1", "lang"), encode("HGET", "user:1", "city")])
        finally:
            out = srv.finish()
        self.assertIn("served 2, unmatched 3, forwarded 2", out)
        self.assertIn("no recorded response for HGET user:1 lang; closest: HGET user:1 name; policy forward "
                      "(rule 'HGET=forward')", out)

    def test_forward_default_and_unreachable_upstream(self):
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        dead_address = "127.0.0.1:%d" % dead.getsockname()[1]
        dead.close()  # nothing listens there any more
        srv = ReplayServerProc("--journal", self.rec, "--unmatched", "forward", "--forward", dead_address,
                               "--rule", "EXISTS=closest")
        try:
            c = RespConn(srv.port)
            self.addCleanup(c.close)
            self.assertEqual(c.call("EXISTS", "other"), self.recorded[12])
            reply = c.call("GET", "nope")
            self.assertTrue(reply.startswith(b"-ERR faultline replay: forward to " + dead_address.encode() + b" failed"),
                            reply)
        finally:
            srv.finish()

    def test_bad_flags_are_refused(self):
        for args, want in [
            (["--unmatched", "forward"], "--forward: required"),
            (["--rule", "HGET"], "--rule \"HGET\": expected MATCH=POLICY"),
            (["--rule", "HGET=maybe"], "policy must be one of error, closest, fail, forward"),
            (["--unmatched", "sometimes"], "--unmatched must be error, closest, fail or forward"),
        ]:
            r = subprocess.run([BIN, "replay", "server", "--journal", self.rec] + args, capture_output=True,
                               text=True, timeout=TIMEOUT)
            self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
            self.assertIn(want, r.stderr)

    def test_open_loop_client_does_not_wait_for_replies(self):
        delay = 0.4
        with RedisServer() as redis, Faultline() as fl:
            proxy = fl.create_proxy("slow", redis.address)
            status, body, _ = fl.request("POST", "/proxies/slow/toxics",
                                         {"type": "latency", "stream": "downstream",
                                          "attributes": {"latency": int(delay * 1000)}})
            self.assertEqual(status, 200, body)
            start = time.monotonic()
            r = subprocess.run([BIN, "replay", "client", "--journal", self.rec, "--target", proxy["listen"],
                                "--speed", "max", "--open-loop"], capture_output=True, text=True, timeout=TIMEOUT)
            elapsed = time.monotonic() - start
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("13 exchanges, 13 matched, 0 mismatched, 0 errors", r.stdout)
            # Closed loop pays the delay once per command (13 x 0.4 s); open loop about once.
            self.assertLess(elapsed, len(SESSION) * delay / 2, r.stdout + r.stderr)


class ReplayProfile(ReplayRedis):
    """`serve --config` with a proxy whose upstream is a journal."""

    test_server_replays_byte_identical_without_redis = None
    test_unmatched_closest_and_fail = None
    test_client_redrives_fresh_redis_with_zero_divergences = None

    def test_profile_proxy_replays_a_journal_with_faults(self):
        profile = os.path.join(self.tmp, "profile.json")
        with open(profile, "w") as f:
            json.dump({"proxies": [{"name": "cache", "listen": "127.0.0.1:0", "protocol": "resp",
                                    "replay": {"journal": "rec", "unmatched": "error"}}]}, f)
        with Faultline("--config", profile) as fl:
            status, proxy, _ = fl.request("GET", "/proxies/cache")
            self.assertEqual(status, 200)
            self.assertEqual(proxy["replay"], {"journal": "rec", "unmatched": "error"})
            self.assertRegex(proxy["upstream"], r"^127\.0\.0\.1:\d+$")
            port = int(proxy["listen"].rsplit(":", 1)[1])
            c = RespConn(port)
            self.addCleanup(c.close)
            self.assertEqual(c.call("GET", "greeting"), self.recorded[1])
            status, body, _ = fl.request("POST", "/proxies/cache/toxics",
                                         {"name": "loading", "type": "resp_error",
                                          "attributes": {"error": "LOADING faulted", "match": {"command": "GET"}}})
            self.assertEqual(status, 200, body)
            self.assertEqual(c.call("GET", "greeting"), b"-LOADING faulted\r\n")
            self.assertEqual(c.call("EXISTS", "greeting"), self.recorded[12])  # not matched by the fault
            # The same through POST /proxies (a relative journal: the server's working directory).
            status, made, _ = fl.request("POST", "/proxies", {"name": "cache2", "listen": "127.0.0.1:0",
                                                              "replay": {"journal": self.rec}})
            self.assertEqual(status, 201, made)
            c2 = RespConn(int(made["listen"].rsplit(":", 1)[1]))
            self.addCleanup(c2.close)
            self.assertEqual(c2.call("HGET", "user:1", "name"), self.recorded[6])
            status, err, _ = fl.request("POST", "/proxies", {"name": "cache3", "listen": "127.0.0.1:0",
                                                             "replay": {"journal": self.rec, "unmatched": "maybe"}})
            self.assertEqual(status, 400)
            self.assertIn("replay.unmatched: must be one of error, closest, fail, forward", err["error"])

    def test_replay_server_lives_and_dies_with_its_proxy(self):
        def refused_soon(address):
            host, port = address.rsplit(":", 1)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    socket.create_connection((host, int(port)), timeout=1).close()
                except OSError:
                    return True
                time.sleep(0.05)  # pacing of a bounded poll
            return False

        with Faultline() as fl:
            made = {}
            for name in ("gone", "repointed"):
                status, made[name], _ = fl.request("POST", "/proxies", {"name": name, "listen": "127.0.0.1:0",
                                                                        "replay": {"journal": self.rec}})
                self.assertEqual(status, 201, made[name])
                # The embedded replay server answers on the proxy's upstream address.
                c = RespConn(int(made[name]["upstream"].rsplit(":", 1)[1]))
                self.assertEqual(c.call("GET", "greeting"), self.recorded[1])
                c.close()
            status, _, _ = fl.request("DELETE", "/proxies/gone")
            self.assertEqual(status, 204)
            self.assertTrue(refused_soon(made["gone"]["upstream"]), "the deleted proxy's replay server still listens")
            # A change of replay options is refused (delete and create instead)...
            status, err, _ = fl.request("POST", "/proxies/repointed",
                                        {"replay": {"journal": self.rec, "unmatched": "closest"}})
            self.assertEqual(status, 400, err)
            # ...a real upstream replaces the replay server.
            with RedisServer() as redis:
                status, changed, _ = fl.request("POST", "/proxies/repointed", {"upstream": redis.address})
                self.assertEqual(status, 200, changed)
                self.assertEqual(changed["upstream"], redis.address)
                self.assertNotIn("replay", changed)
                self.assertTrue(refused_soon(made["repointed"]["upstream"]),
                                "the replaced replay server still listens")
                c = RespConn(int(changed["listen"].rsplit(":", 1)[1]))
                self.assertEqual(c.call("PING"), b"+PONG\r\n")
                c.close()

    def test_bad_replay_field_names_its_json_path(self):
        rc, out, _, _ = run_serve_expect_exit([], config={"proxies": [
            {"name": "ok", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"},
            {"name": "a", "listen": "127.0.0.1:0", "replay": {"journal": self.rec}},
            {"name": "b", "listen": "127.0.0.1:0", "replay": {"journal": self.rec, "unmatched": "maybe"}}]})
        self.assertEqual(rc, 2, out)
        self.assertIn("$.proxies[2].replay.unmatched: must be one of error, closest, fail, forward", out)
        rc, out, _, _ = run_serve_expect_exit([], config={"proxies": [
            {"name": "a", "listen": "127.0.0.1:0", "replay": {"journal": os.path.join(self.tmp, "missing")}}]})
        self.assertEqual(rc, 2, out)
        self.assertIn("$.proxies[0].replay.journal: ", out)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/sse":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            events = [{"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}},
                      {"jsonrpc": "2.0", "id": body["id"], "result": {"done": True}}]
            for i, ev in enumerate(events):
                if i:
                    time.sleep(SSE_GAP)  # deliberate: the gap between events the replay must reproduce
                data = ("event: message\ndata: %s\n\n" % json.dumps(ev)).encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path == "/rpc":
            out = {"jsonrpc": "2.0", "id": body["id"],
                   "result": {"content": [{"type": "text", "text": "sum=%d" % sum(body["params"]["arguments"]["xs"])}]}}
        else:
            out = {"id": body["id"], "echo": body.get("q"), "status": "ok"}
        data = json.dumps(out).encode()
        self.send_response(201 if self.path == "/items" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def sse_post(port, obj):
    """POSTs to /sse on a raw socket; returns (the bytes, [(seconds since send, bytes so far)])."""
    body = json.dumps(obj).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /sse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
              % (len(body), body))
    start = time.monotonic()
    data, arrivals = b"", []
    while not data.endswith(b"0\r\n\r\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
        arrivals.append((time.monotonic() - start, data))
    s.close()
    return data, arrivals


def sse_events(data):
    return [json.loads(line[5:]) for line in data.split(b"\n") if line.startswith(b"data:")]


def post(port, path, obj):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", path, body=json.dumps(obj), headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    out = (r.status, r.read())
    conn.close()
    return out


def start_origin(test, handler=None):
    """A `handler` (default Handler) server on a free port, shut down when `test` ends."""
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler or Handler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    test.addCleanup(web.server_close)
    test.addCleanup(web.shutdown)
    return web


class ReplayHttp(unittest.TestCase):
    def test_http_and_jsonrpc(self):
        tmp = tempfile.mkdtemp(prefix="faultline-replay-http-")
        self.addCleanup(shutil.rmtree, tmp, True)
        rec = os.path.join(tmp, "rec")
        web = start_origin(self)
        rpc = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add", "arguments": {"xs": [1, 2, 3]}}}
        with Faultline("--record", rec) as fl:
            proxy = fl.create_proxy("api", f"127.0.0.1:{web.server_address[1]}", protocol="http")
            port = int(proxy["listen"].rsplit(":", 1)[1])
            item = post(port, "/items", {"id": 17, "q": "apples"})
            call = post(port, "/rpc", rpc)
            sse, _ = sse_post(port, dict(rpc, id=5))
            finish_recordings(fl)  # every session ended and its events written out
            fl.stop()
        self.assertEqual(item[0], 201)
        web.shutdown()  # nothing upstream any more

        srv = ReplayServerProc("--journal", rec)
        try:
            # Same request (keys in another order: the body is matched canonically).
            self.assertEqual(post(srv.port, "/items", {"q": "apples", "id": 17}), item)
            status, body = post(srv.port, "/rpc", dict(rpc, id="live-42"))
            self.assertEqual(status, 200)
            got = json.loads(body)
            self.assertEqual(got["id"], "live-42")
            self.assertEqual(got["result"], json.loads(call[1])["result"])
            status, body = post(srv.port, "/rpc", dict(rpc, id=1))
            self.assertEqual((status, body), call)
            status, body = post(srv.port, "/items", {"id": 18, "q": "pears"})
            self.assertEqual(status, 502)
            diag = json.loads(body)
            self.assertIn("POST /items", diag["closest"])
            self.assertIn("apples", diag["closest"])
            # SSE: the recorded gap between events, the live id inside the data event.
            self.assertEqual([e.get("id") for e in sse_events(sse)], [None, 5])
            data, arrivals = sse_post(srv.port, dict(rpc, id="s-1"))
            self.assertEqual([e.get("id") for e in sse_events(data)], [None, "s-1"])
            self.assertEqual(sse_events(data)[1]["result"], {"done": True})
            first = next(t for t, d in arrivals if b"progress" in d)
            second = next(t for t, d in arrivals if b"s-1" in d)
            self.assertGreater(second - first, SSE_GAP * 0.7)
        finally:
            out = srv.finish()
        self.assertIn("served 4, unmatched 1", out)

        # The client side against a fresh upstream: zero divergences (SSE compared by status).
        web2 = start_origin(self)
        r = subprocess.run([BIN, "replay", "client", "--journal", rec, "--target", f"127.0.0.1:{web2.server_address[1]}",
                            "--speed", "max"], capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("3 exchanges, 3 matched, 0 mismatched, 0 errors", r.stdout)


def recording_dir(test, prefix):
    """A fresh directory for `faultline --record`, removed when `test` ends."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    test.addCleanup(shutil.rmtree, tmp, True)
    return os.path.join(tmp, "rec")


def class_recording_dir(cls, prefix):
    """recording_dir for a test class that records once in setUpClass: sets cls.tmp, a fresh
    directory removed when the class is done, and cls.rec, the directory for `faultline
    --record` in it."""
    cls.tmp = tempfile.mkdtemp(prefix=prefix)
    cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
    cls.rec = os.path.join(cls.tmp, "rec")


def recording_bytes(directory):
    """Every file of a recording, concatenated: to check what it does not hold."""
    out = b""
    for root, _, files in os.walk(directory):
        for name in sorted(files):
            with open(os.path.join(root, name), "rb") as f:
                out += f.read()
    return out


class ReplayRedisWithPassword(unittest.TestCase):
    """A session on a Redis that needs a password, recorded with redaction (the journal holds a
    token for it): the replay server answers the live AUTH, forwarded commands run as the
    client's would (the AUTH and SELECT the recording answered reach the forward link too),
    and `replay client --redis-password` re-drives a real server."""

    @classmethod
    def setUpClass(cls):
        class_recording_dir(cls, "faultline-replay-auth-")
        with RedisServer("--requirepass", "secret") as redis, Faultline("--record", cls.rec) as fl:
            proxy = fl.create_proxy("cache", redis.address, protocol="resp")
            c = RespConn(int(proxy["listen"].rsplit(":", 1)[1]))
            assert c.call("AUTH", "secret") == b"+OK\r\n"
            assert c.call("SELECT", "2") == b"+OK\r\n"
            assert c.call("SET", "k", "v") == b"+OK\r\n"
            c.close()
            finish_recordings(fl)  # every session ended and its events written out
            fl.stop()

    def test_replay_client_puts_the_password_back(self):
        journal = recording_bytes(self.rec)
        self.assertNotIn(b"secret", journal, "the password is redacted in the recording")
        with RedisServer("--requirepass", "secret") as live:
            args = [BIN, "replay", "client", "--journal", self.rec, "--target", live.address, "--speed", "max"]
            r = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)  # the token is not the password
            self.assertIn("AUTH (password)", r.stderr)
            r = subprocess.run(args + ["--redis-password", "secret"], capture_output=True, text=True, timeout=TIMEOUT)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("3 exchanges, 3 matched, 0 mismatched, 0 errors", r.stdout)
            direct = RespConn(live.port)
            self.addCleanup(direct.close)
            direct.call("AUTH", "secret")
            direct.call("SELECT", "2")
            self.assertEqual(direct.call("GET", "k"), b"$1\r\nv\r\n", "the replayed SET landed in database 2")

    def test_forwarded_commands_are_authenticated_and_in_the_selected_database(self):
        rec = self.rec

        with RedisServer("--requirepass", "secret") as live, RedisServer("--requirepass", "other") as wrong:
            direct = RespConn(live.port)
            self.addCleanup(direct.close)
            direct.call("AUTH", "secret")
            direct.call("SELECT", "2")
            self.assertEqual(direct.call("SET", "only-in-db2", "x"), b"+OK\r\n")

            srv = ReplayServerProc("--journal", rec, "--unmatched", "forward", "--forward", live.address)
            try:
                c = RespConn(srv.port)
                self.addCleanup(c.close)
                self.assertEqual(c.call("AUTH", "secret"), b"+OK\r\n")  # from the recording
                # Forwarded: the link opens authenticated (no -NOAUTH), in database 0.
                self.assertEqual(c.call("GET", "only-in-db2"), b"$-1\r\n")
                self.assertEqual(c.call("SELECT", "2"), b"+OK\r\n")  # recorded, and sent on the open link
                self.assertEqual(c.call("GET", "only-in-db2"), b"$1\r\nx\r\n")
                c2 = RespConn(srv.port)  # AUTH and SELECT before any link: the link starts with both
                self.addCleanup(c2.close)
                c2.call("AUTH", "secret")
                c2.call("SELECT", "2")
                self.assertEqual(c2.call("GET", "only-in-db2"), b"$1\r\nx\r\n")
            finally:
                out = srv.finish()
            self.assertIn("served 4, unmatched 3, forwarded 3", out)  # AUTH and SELECT from the recording
            self.assertNotIn("secret", out, "the live password is never logged")

            srv = ReplayServerProc("--journal", rec, "--unmatched", "forward", "--forward", wrong.address)
            try:
                c = RespConn(srv.port)
                self.addCleanup(c.close)
                self.assertEqual(c.call("AUTH", "secret"), b"+OK\r\n")
                reply = c.call("GET", "only-in-db2")
                self.assertTrue(reply.startswith(b"-ERR faultline replay: forward to " + wrong.address.encode() +
                                                 b" failed: AUTH on the forward link: WRONGPASS"), reply)
            finally:
                srv.finish()


class NeedsKey(http.server.BaseHTTPRequestHandler):
    """GET /whoami: 200 with the caller's name for `Authorization: Bearer sk-live-123`, else 401."""
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        ok = self.headers.get("Authorization") == "Bearer sk-live-123"
        data = json.dumps({"user": "ada"} if ok else {"error": "bad key"}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class ReplayClientCredentials(unittest.TestCase):
    def test_header_puts_back_the_authorization_the_recording_redacted(self):
        rec = recording_dir(self, "faultline-replay-key-")
        origin = start_origin(self, NeedsKey)
        target = f"127.0.0.1:{origin.server_address[1]}"
        with Faultline("--record", rec) as fl:
            proxy = fl.create_proxy("api", target, protocol="http")
            conn = http.client.HTTPConnection("127.0.0.1", int(proxy["listen"].rsplit(":", 1)[1]), timeout=10)
            conn.request("GET", "/whoami", headers={"Authorization": "Bearer sk-live-123"})
            r = conn.getresponse()
            self.assertEqual((r.status, json.loads(r.read())), (200, {"user": "ada"}))
            conn.close()
            finish_recordings(fl)  # every session ended and its events written out
            fl.stop()
        journal = recording_bytes(rec)
        self.assertNotIn(b"sk-live-123", journal)

        args = [BIN, "replay", "client", "--journal", rec, "--target", target, "--speed", "max"]
        r = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("status 401, recorded 200", r.stderr)
        r = subprocess.run(args + ["--header", "Authorization: Bearer sk-live-123"], capture_output=True, text=True,
                           timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("1 exchanges, 1 matched, 0 mismatched, 0 errors", r.stdout)
        for bad, why in [("Authorization", "expected 'Name: value'"),
                         ("Bad Name: x", "\"Bad Name\" is not a header name")]:
            r = subprocess.run(args + ["--header", bad], capture_output=True, text=True, timeout=TIMEOUT)
            self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
            self.assertIn(why, r.stderr)


class GatedStream(http.server.BaseHTTPRequestHandler):
    """POST /stream: a chunked event stream whose second event waits for the server's `gate`;
    POST /stream?cut=1 closes the connection after the first event (the stream never ends)."""
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(data):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        chunk(b"data: first\n\n")
        if self.path.endswith("cut=1"):
            self.close_connection = True
            return
        if not self.server.gate.wait(10):
            return
        chunk(b"data: second\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def log_message(self, *args):
        pass


class ReplayHttpForward(unittest.TestCase):
    def record_one_item(self):
        """A journal holding one POST /items exchange; returns (its path, the answer)."""
        rec = recording_dir(self, "faultline-replay-fwd-")
        web = start_origin(self)
        with Faultline("--record", rec) as fl:
            proxy = fl.create_proxy("api", f"127.0.0.1:{web.server_address[1]}", protocol="http")
            item = post(int(proxy["listen"].rsplit(":", 1)[1]), "/items", {"id": 17, "q": "apples"})
            finish_recordings(fl)  # every session ended and its events written out
            fl.stop()
        return rec, item

    def test_a_forwarded_event_stream_reaches_the_client_event_by_event(self):
        """An LLM answer streamed by the forward upstream is relayed as it comes: the client has
        the first event while the upstream still holds the second; the connection then serves
        the next request. A stream the upstream cuts is cut for the client too (no 502 after
        part of an answer)."""
        rec, _ = self.record_one_item()
        origin = start_origin(self, GatedStream)
        origin.gate = threading.Event()
        self.addCleanup(origin.gate.set)
        srv = ReplayServerProc("--journal", rec, "--unmatched", "forward",
                               "--forward", f"127.0.0.1:{origin.server_address[1]}")
        try:
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            self.addCleanup(s.close)
            request = b"POST /stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
            s.sendall(request)
            got = recv_until(s, b"data: first\n\n")
            self.assertTrue(got.startswith(b"HTTP/1.1 200"), got)
            self.assertNotIn(b"second", got)
            origin.gate.set()
            got += recv_until(s, b"0\r\n\r\n")
            self.assertIn(b"data: second\n\n", got)
            origin.gate.clear()
            s.sendall(request)  # the same connection, the next forwarded answer
            self.assertIn(b"data: first", recv_until(s, b"data: first\n\n"))
            origin.gate.set()
            recv_until(s, b"0\r\n\r\n")

            c = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            self.addCleanup(c.close)
            c.sendall(request.replace(b"/stream", b"/stream?cut=1"))
            got = recv_until(c, b"data: first\n\n")
            c.settimeout(5)
            rest = recv_all(c)
            self.assertNotIn(b"502", got + rest, "no error answer after part of an answer")
            self.assertNotIn(b"0\r\n\r\n", got + rest, "the stream did not end: the client sees the cut")
        finally:
            out = srv.finish()
        self.assertIn("forwarded 2", out)
        self.assertIn("forwarding POST /stream?cut=1", out)

    def test_unmatched_http_is_forwarded_unless_a_rule_says_otherwise(self):
        rec, item = self.record_one_item()
        web = start_origin(self)
        srv = ReplayServerProc("--journal", rec, "--unmatched", "forward",
                               "--forward", f"127.0.0.1:{web.server_address[1]}", "--rule", "POST /rpc*=error")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            self.addCleanup(conn.close)
            for obj, want in [({"id": 17, "q": "apples"}, item),  # recorded
                              ({"id": 18, "q": "pears"}, None),   # forwarded: the live server's answer
                              ({"id": 19, "q": "plums"}, None)]:  # forwarded on the same link
                conn.request("POST", "/items", body=json.dumps(obj), headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                got = (r.status, r.read())
                if want:
                    self.assertEqual(got, want)
                else:
                    self.assertEqual(got[0], 201)
                    self.assertEqual(json.loads(got[1])["echo"], obj["q"])
            status, body = post(srv.port, "/rpc", {"jsonrpc": "2.0", "id": 1, "method": "x"})
            self.assertEqual(status, 502)
            self.assertIn("POST /items", json.loads(body)["closest"])
        finally:
            out = srv.finish()
        self.assertIn("served 1, unmatched 3, forwarded 2", out)


class ReplayTcp(unittest.TestCase):
    def test_tcp_turns(self):
        tmp = tempfile.mkdtemp(prefix="faultline-replay-tcp-")
        self.addCleanup(shutil.rmtree, tmp, True)
        rec = os.path.join(tmp, "rec")
        turns = [b"hello\n", b"world, again\n"]
        with EchoServer() as echo, Faultline("--record", rec) as fl:
            proxy = fl.create_proxy("raw", echo.address)
            pport = int(proxy["listen"].rsplit(":", 1)[1])
            s = socket.create_connection(("127.0.0.1", pport), timeout=10)
            for t in turns:
                s.sendall(t)
                got = b""
                while len(got) < len(t):
                    got += s.recv(100)
                self.assertEqual(got, t)
                time.sleep(0.05)  # deliberate: a pause between turns, so the journal holds them apart
            s.close()
            finish_recordings(fl)  # every session ended and its events written out
            fl.stop()
        srv = ReplayServerProc("--journal", rec)
        try:
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            self.addCleanup(s.close)
            for t in turns:
                s.sendall(t)
                got = b""
                while len(got) < len(t):
                    got += s.recv(100)
                self.assertEqual(got, t)
        finally:
            out = srv.finish()
        self.assertIn("served 2, unmatched 0", out)
        with EchoServer() as echo:
            r = subprocess.run([BIN, "replay", "client", "--journal", rec, "--target", echo.address,
                                "--speed", "max"], capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("2 exchanges, 2 matched, 0 mismatched, 0 errors", r.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
