"""Redis (`"protocol": "resp"`) proxies against a real redis-server: passthrough, the resp_*
faults as redis-cli, redis-benchmark and raw sockets see them, and their metrics.

docs/protocols.md is the spec. Every peer is started here on loopback (free ports).
Run standalone: python3 tests/integration/test_resp_proxy.py
"""
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Faultline, RedisServer, connect, metric, metrics_text, need, poll,  # noqa: E402
                     split_hostport, wait_end)

LOADING = "LOADING Redis is loading the dataset in memory"
READONLY = "READONLY You can't write against a read only replica."
BIG = 5 * 1024 * 1024


# ---------------------------------------------------------------------------------------------
# RESP on raw sockets

def enc(*args):
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def read_reply(f):
    """The raw bytes of one whole top-level RESP2/RESP3 reply read from the file `f`."""
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise EOFError(f"connection ended inside a reply: {line[:200]!r}")
    kind = line[:1]
    if kind in (b"+", b"-", b":", b",", b"_", b"#", b"("):
        return line
    n = int(line[1:-2])
    parts = [line]
    if kind in (b"$", b"!", b"="):
        if n >= 0:
            data = f.read(n + 2)
            if len(data) != n + 2:
                raise EOFError(f"connection ended inside a {n}-byte bulk")
            parts.append(data)
    elif kind in (b"*", b"~", b">"):
        parts += [read_reply(f) for _ in range(max(n, 0))]
    elif kind in (b"%", b"|"):
        parts += [read_reply(f) for _ in range(2 * n)]
        if kind == b"|":  # an attribute decorates the reply that follows it
            parts.append(read_reply(f))
    else:
        raise ValueError(f"not RESP: {line[:200]!r}")
    return b"".join(parts)


class RespConn:
    """A raw RESP connection: send bytes, read whole replies (each with its arrival time)."""

    def __init__(self, address, timeout=20):
        self.sock = connect(address, timeout=timeout)
        self.file = self.sock.makefile("rb")

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        return read_reply(self.file)

    def replies(self, n):
        return [read_reply(self.file) for _ in range(n)]

    def call(self, *args):
        self.send(enc(*args))
        return self.reply()

    def close(self):
        self.file.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run(args, timeout, stdin=None):
    return subprocess.run(args, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=None if stdin is not None else subprocess.DEVNULL,
                          timeout=timeout, text=True)


def mixed_pipeline():
    """1,000 commands of many kinds (multibulk and inline, errors, nils, nested arrays, a
    5 MiB value, then RESP3 after HELLO 3). Deterministic replies on a fresh database."""
    rng = random.Random(20240607)
    big = rng.randbytes(BIG)
    cmds = [enc("SELECT", "3"), enc("FLUSHDB")]
    i = 0
    while len(cmds) < 880:
        i += 1
        k = f"k:{i % 40}"
        kinds = [
            enc("SET", k, f"value-{i}"),
            enc("GET", k),
            enc("GET", f"missing:{i}"),                           # $-1
            enc("INCR", "counter"),
            enc("LPUSH", "list", str(i)),
            enc("LRANGE", "list", "0", "4"),
            enc("HSET", "hash", f"f{i % 20}", str(i)),
            enc("HGETALL", "hash"),
            enc("SADD", "set", str(i % 30)),
            enc("SMEMBERS", "set"),
            enc("ZADD", "zset", str(i % 17), f"m{i % 25}"),
            enc("ZRANGE", "zset", "0", "3", "WITHSCORES"),
            enc("MGET", k, "nope", "counter"),
            enc("ECHO", b"bin\r\n\x00\xff" + bytes([i % 256])),  # CRLF and NUL inside a bulk
            enc("SET", "empty", ""),                              # $0
            enc("GET", "empty"),
            enc("INCR", k),                                       # -ERR not an integer
            enc("NOSUCHCOMMAND", "x"),                            # -ERR unknown command
            enc("GET"),                                           # -ERR wrong arity
            enc("XADD", "stream", f"{i}-1", "field", str(i)),
            enc("XRANGE", "stream", "-", "+", "COUNT", "3"),      # nested arrays
            b"PING\r\n",                                          # inline
            b'ECHO "inline with spaces"\r\n',
            enc("EXISTS", k, "nope"),
            enc("DEL", f"k:{(i + 7) % 40}"),
            enc("TYPE", "hash"),
        ]
        cmds.append(kinds[i % len(kinds)])
        if len(cmds) == 500:
            cmds += [enc("SET", "big", big), enc("GET", "big"), enc("STRLEN", "big")]
    # RESP3: maps, sets, doubles, nulls. HELLO's own reply carries the connection id.
    cmds.append(enc("HELLO", "3"))
    j = 0
    while len(cmds) < 1000:
        j += 1
        resp3 = [enc("HGETALL", "hash"), enc("SMEMBERS", "set"), enc("ZSCORE", "zset", "m1"),
                 enc("GET", "missing"), enc("ZRANGE", "zset", "0", "2", "WITHSCORES"),
                 enc("XRANGE", "stream", "-", "+", "COUNT", "2"), enc("INCR", "counter"),
                 b"PING\r\n"]
        cmds.append(resp3[j % len(resp3)])
    return cmds


def exchange(address, cmds, timeout=60):
    """Sends every command in one pipeline (from a thread, so a big reply cannot block the
    send) and reads exactly one reply per command."""
    with RespConn(address, timeout=timeout) as c:
        sender = threading.Thread(target=c.send, args=(b"".join(cmds),), daemon=True)
        sender.start()
        out = c.replies(len(cmds))
        sender.join(timeout)
        return out


class RespProxyTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.cli = need("redis-cli", "redis-tools (apt package redis-tools / redis-server)")
        cls.bench = need("redis-benchmark", "redis-tools (apt package redis-tools / redis-server)")
        cls.redis = RedisServer()
        try:
            cls.fl = Faultline("--log-level", "debug")
        except BaseException:
            cls.redis.__exit__()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.fl.__exit__()
        cls.redis.__exit__()

    def setUp(self):
        self.created = []
        self.direct("FLUSHALL")

    def tearDown(self):
        for fl, name in self.created:
            fl.request("DELETE", f"/proxies/{name}")

    # -- helpers -------------------------------------------------------------------------------

    def direct(self, *args, redis=None):
        """One command straight to redis-server (no proxy); its raw reply."""
        with RespConn((redis or self.redis).address) as c:
            return c.call(*args)

    def resp_proxy(self, name, fl=None, redis=None, protocol="resp"):
        """A proxy of `protocol` to the redis-server; returns its HOST:PORT."""
        fl = fl or self.fl
        proxy = fl.create_proxy(name, (redis or self.redis).address, protocol=protocol)
        self.created.append((fl, name))
        self.assertEqual(proxy.get("protocol", "tcp"), protocol, proxy)
        return proxy["listen"]

    def fault(self, proxy, type_, attributes, name=None, toxicity=1.0, fl=None):
        body = {"type": type_, "attributes": attributes, "toxicity": toxicity}
        if name:
            body["name"] = name
        status, toxic, _ = (fl or self.fl).request("POST", f"/proxies/{proxy}/toxics", body)
        self.assertEqual(status, 200, f"adding {body}: {toxic}")
        return toxic

    def redis_cli(self, address, *args, stdin=None, extra=()):
        host, port = split_hostport(address)
        r = run([self.cli, "-h", host, "-p", str(port), "--no-raw", *extra, *args], 30, stdin=stdin)
        return r.stdout.strip()

    def calls(self, command):
        """How many times redis-server ran `command` (INFO commandstats), read directly."""
        info = self.direct("INFO", "commandstats").decode()
        m = re.search(rf"^cmdstat_{command.lower()}:calls=(\d+)", info, re.M)
        return int(m.group(1)) if m else 0

    def metric_now(self, name, **labels):
        return metric(self.fl, name, **labels) or 0

    # -- passthrough ---------------------------------------------------------------------------

    def test_pipeline_of_1000_mixed_commands_is_byte_identical_to_direct(self):
        cmds = mixed_pipeline()
        self.assertEqual(len(cmds), 1000)
        address = self.resp_proxy("pipe")
        # A fault that never matches keeps the fault path live on every command.
        self.fault("pipe", "resp_error", {"match": {"command": "NOSUCHCOMMAND", "key": "never"}})
        direct = exchange(self.redis.address, cmds)
        proxied = exchange(address, cmds)
        self.assertEqual(len(proxied), 1000)

        def masked(replies):  # HELLO's reply holds the connection id, different per connection
            return [re.sub(rb"(\$2\r\nid\r\n):\d+\r\n", rb"\1:0\r\n", r) for r in replies]
        d, p = masked(direct), masked(proxied)
        for n, (a, b) in enumerate(zip(d, p)):
            self.assertEqual(a, b, f"reply {n} differs for {cmds[n][:80]!r}")
        self.assertEqual(b"".join(d), b"".join(p))
        # The replies are what this pipeline must give (not, say, a stream of errors).
        self.assertIn(b"$%d\r\n" % BIG, b"".join(p))
        self.assertEqual(p[500], b"+OK\r\n")
        self.assertTrue(p[501].startswith(b"$%d\r\n" % BIG))
        self.assertEqual(p[502], b":%d\r\n" % BIG)
        self.assertTrue(p[880].startswith(b"%"), p[880][:80])          # HELLO 3: a map
        self.assertTrue(any(r.startswith(b"~") for r in p[881:]))       # RESP3 set
        self.assertTrue(any(r.startswith(b",") for r in p[881:]))       # RESP3 double
        self.assertTrue(any(r.startswith(b"-ERR unknown command") for r in p))
        # And they were decoded, not waved through as undecodable bytes.
        requests = poll(lambda: self.metric_now("faultline_proxy_requests_total", proxy="pipe"),
                        lambda v: v >= 1000, timeout=5)
        self.assertEqual(requests, 1000)
        self.assertEqual(self.metric_now("faultline_proxy_responses_total", proxy="pipe"), 1000)
        self.assertEqual(self.metric_now("faultline_proxy_undecodable_streams_total", proxy="pipe"), 0)

    def test_redis_benchmark_pipelined_through_resp_proxy(self):
        address = self.resp_proxy("bench")
        self.fault("bench", "resp_delay", {"delay": 1, "match": {"command": "NOSUCHCOMMAND"}})
        host, port = split_hostport(address)
        start = time.monotonic()
        r = run([self.bench, "-h", host, "-p", str(port), "-t", "set,get,lpush,lrange_100",
                 "-n", "20000", "-P", "16", "-q"], 150)
        took = time.monotonic() - start
        out = r.stdout.replace("\r", "\n")
        self.assertEqual(r.returncode, 0, f"redis-benchmark exit {r.returncode}:\n{out}")
        self.assertNotIn("error", out.lower(), out)
        rates = dict(re.findall(r"^\s*(SET|GET|LPUSH|LRANGE_100)[^:\n]*:\s*([0-9.]+) requests per second",
                                out, re.M))
        self.assertEqual(set(rates), {"SET", "GET", "LPUSH", "LRANGE_100"}, out)
        for name, rate in rates.items():
            self.assertGreater(float(rate), 0, f"{name}:\n{out}")
        print(f"\n  redis-benchmark -P 16 via a resp proxy in {took:.1f}s: "
              + ", ".join(f"{k} {float(v):.0f} req/s" for k, v in sorted(rates.items())),
              file=sys.stderr)
        requests = self.metric_now("faultline_proxy_requests_total", proxy="bench")
        self.assertGreaterEqual(requests, 80000, "every benchmark command is decoded")
        self.assertGreaterEqual(self.metric_now("faultline_proxy_responses_total", proxy="bench"), 80000)
        self.assertEqual(self.metric_now("faultline_proxy_undecodable_streams_total", proxy="bench"), 0)

    # -- resp_error ----------------------------------------------------------------------------

    def test_error_before_is_answered_and_never_reaches_redis(self):
        address = self.resp_proxy("err_before")
        self.fault("err_before", "resp_error", {"error": LOADING, "match": {"key": "thread:*"}})
        self.direct("SET", "thread:1", "stored-before")
        self.direct("SET", "other", "fine")
        gets = self.calls("get")
        self.assertEqual(self.redis_cli(address, "GET", "thread:1"), f"(error) {LOADING}")
        self.assertEqual(self.calls("get"), gets, "the faulted GET must not reach redis-server")
        self.assertEqual(self.redis_cli(address, "GET", "other"), '"fine"')
        self.assertEqual(self.calls("get"), gets + 1)
        # A write of a matching key is answered too, and not applied.
        self.assertEqual(self.redis_cli(address, "SET", "thread:1", "overwritten"), f"(error) {LOADING}")
        self.assertEqual(self.redis_cli(address, "SET", "thread:new", "x"), f"(error) {LOADING}")
        self.assertEqual(self.direct("GET", "thread:1"), b"$13\r\nstored-before\r\n")
        self.assertEqual(self.direct("EXISTS", "thread:new"), b":0\r\n")
        self.assertEqual(self.redis_cli(address, "SET", "other", "changed"), "OK")
        self.assertEqual(self.direct("GET", "other"), b"$7\r\nchanged\r\n")
        # A 5 MiB value of an answered command is swallowed as it streams; the command
        # pipelined behind it is forwarded and answered in order.
        value = random.Random(3).randbytes(BIG)
        with RespConn(address) as c:
            sender = threading.Thread(target=c.send, args=(enc("SET", "thread:big", value) + enc("GET", "other"),),
                                      daemon=True)
            sender.start()
            self.assertEqual(c.replies(2), [f"-{LOADING}\r\n".encode(), b"$7\r\nchanged\r\n"])
            sender.join(20)
        self.assertEqual(self.direct("EXISTS", "thread:big"), b":0\r\n")

    def test_a_key_over_64_kib_cannot_be_answered_early_and_the_connection_stays_in_step(self):
        address = self.resp_proxy("long_key")
        self.fault("long_key", "resp_error", {"error": LOADING, "match": {"key": "thread:*"}}, name="before")
        self.fault("long_key", "resp_error", {"error": READONLY, "when": "after", "match": {"key": "ro:*"}},
                   name="after")
        short, long_ = "thread:" + "s" * 1000, "thread:" + "k" * 100000
        with RespConn(address) as c:
            c.send(enc("SET", short, "v") + enc("SET", long_, "v") + enc("SET", "ro:" + "k" * 100000, "v")
                   + enc("PING"))
            # The long key's first 64 KiB went out before its name and key were known: it is
            # forwarded (Redis would otherwise wait for the rest of it, and desynchronise).
            self.assertEqual(c.replies(4), [f"-{LOADING}\r\n".encode(), b"+OK\r\n", f"-{READONLY}\r\n".encode(),
                                            b"+PONG\r\n"])
        self.assertEqual(self.direct("EXISTS", short), b":0\r\n")
        self.assertEqual(self.direct("EXISTS", long_, "ro:" + "k" * 100000), b":2\r\n")

    def test_error_after_replaces_the_reply_but_the_write_happened(self):
        address = self.resp_proxy("err_after")
        self.fault("err_after", "resp_error",
                   {"error": READONLY, "when": "after", "match": {"command": "set", "key": "thread:*"}})
        self.assertEqual(self.redis_cli(address, "SET", "thread:x", "v"), f"(error) {READONLY}")
        self.assertEqual(self.direct("GET", "thread:x"), b"$1\r\nv\r\n", "the SET ran on the server")
        self.assertEqual(self.redis_cli(address, "GET", "thread:x"), '"v"', "GET is not matched")
        self.assertEqual(self.redis_cli(address, "SET", "plain", "p"), "OK")
        # A 5 MiB reply that is replaced is swallowed whole; the next reply still pairs up.
        self.fault("err_after", "resp_error",
                   {"error": READONLY, "when": "after", "match": {"command": "GET", "key": "big"}},
                   name="big_after")
        self.direct("SET", "big", b"b" * BIG)
        with RespConn(address) as c:
            c.send(enc("GET", "big") + enc("STRLEN", "big"))
            self.assertEqual(c.replies(2), [f"-{READONLY}\r\n".encode(), b":%d\r\n" % BIG])

    def test_error_bytes_are_exact_on_a_raw_socket(self):
        address = self.resp_proxy("err_raw")
        self.fault("err_raw", "resp_error", {"error": READONLY, "match": {"command": "SET"}}, name="before")
        self.fault("err_raw", "resp_error", {"error": READONLY, "when": "after", "match": {"command": "HSET"}},
                   name="after")
        self.fault("err_raw", "resp_error", {"match": {"command": "DEL"}}, name="default")
        want = f"-{READONLY}\r\n".encode()
        with RespConn(address) as c:
            self.assertEqual(c.call("SET", "a", "1"), want)
            # after: the server's `:1` is swallowed, only the error comes back; nothing extra
            # is left on the connection (the next reply is the PING's).
            c.send(enc("HSET", "h", "f", "v") + enc("PING") + enc("DEL", "h"))
            self.assertEqual(c.replies(3), [want, b"+PONG\r\n", b"-ERR Fault injected by faultline\r\n"])
        self.assertEqual(self.direct("EXISTS", "a"), b":0\r\n")
        self.assertEqual(self.direct("HGET", "h", "f"), b"$1\r\nv\r\n")

    # -- resp_delay ----------------------------------------------------------------------------

    def test_delay_holds_the_command_and_the_replies_behind_it_in_order(self):
        address = self.resp_proxy("delay")
        self.fault("delay", "resp_delay", {"delay": 300, "match": {"command": "SET"}})
        self.direct("SET", "b", "bee")
        with RespConn(address) as c:
            start = time.monotonic()
            c.send(enc("SET", "a", "1") + enc("GET", "a") + enc("GET", "b") + enc("PING"))
            got = []
            for _ in range(4):
                got.append((c.reply(), time.monotonic() - start))
        self.assertEqual([r for r, _ in got], [b"+OK\r\n", b"$1\r\n1\r\n", b"$3\r\nbee\r\n", b"+PONG\r\n"],
                         "in order, and GET a ran after the delayed SET a")
        first = got[0][1]
        self.assertGreaterEqual(first, 0.28, f"the SET's reply came after {first:.3f}s")
        self.assertLess(first, 5.0)
        for reply, at in got[1:]:
            self.assertGreaterEqual(at, first, f"{reply!r} came at {at:.3f}s, before the SET's reply")
        # The client half-closes right after a delayed command: it still runs, its reply comes.
        with connect(address) as s:
            start = time.monotonic()
            s.sendall(enc("SET", "half", "closed"))
            s.shutdown(socket.SHUT_WR)
            how, took, data = wait_end(s, 5)
        self.assertEqual((how, data), ("eof", b"+OK\r\n"))
        self.assertGreaterEqual(took, 0.28)
        self.assertEqual(self.direct("GET", "half"), b"$6\r\nclosed\r\n")
        # A command that is not matched is not delayed.
        with RespConn(address) as c:
            start = time.monotonic()
            self.assertEqual(c.call("GET", "b"), b"$3\r\nbee\r\n")
            self.assertLess(time.monotonic() - start, 0.25)

    # -- resp_drop -----------------------------------------------------------------------------

    def test_drop_before_closes_and_the_command_is_not_applied(self):
        address = self.resp_proxy("drop_before")
        self.fault("drop_before", "resp_drop", {"match": {"key": "drop:*"}})
        # A two-word command is whole once its key is known: nothing of it may go out either.
        for command in (("SET", "drop:1", "v"), ("INCR", "drop:n"), ("DEL", "drop:kept")):
            self.direct("SET", "drop:kept", "1")
            with RespConn(address) as c:
                self.assertEqual(c.call("SET", "kept", "1"), b"+OK\r\n")
                c.send(enc(*command))
                how, _, data = wait_end(c.sock, 5)
            self.assertIn(how, ("eof", "reset"), f"the connection closes at {command}")
            self.assertEqual(data, b"", "no reply")
        time.sleep(0.2)
        self.assertEqual(self.direct("EXISTS", "drop:1", "drop:n"), b":0\r\n", "the commands never reached redis")
        self.assertEqual(self.direct("GET", "drop:kept"), b"$1\r\n1\r\n", "the DEL never reached redis")
        self.assertEqual(self.direct("GET", "kept"), b"$1\r\n1\r\n")
        # redis-cli sees the dropped connection as an error (and a non-matching command works).
        self.assertEqual(self.redis_cli(address, "SET", "fine", "1"), "OK")
        self.assertEqual(self.redis_cli(address, "SET", "drop:2", "v"), "Error: Server closed the connection")
        self.assertEqual(self.direct("EXISTS", "drop:2"), b":0\r\n")

    def test_drop_before_still_forwards_the_commands_pipelined_ahead_of_it(self):
        address = self.resp_proxy("drop_ahead")
        self.fault("drop_ahead", "resp_drop", {"match": {"command": "SET", "key": "drop:*"}})
        ahead = b"x" * 1000
        with RespConn(address) as c:
            c.send(enc("SET", "ahead", ahead) + enc("SET", "drop:1", "v") + enc("SET", "behind", "1"))
            how, _, _ = wait_end(c.sock, 5)
        self.assertIn(how, ("eof", "reset"))
        got = poll(lambda: self.direct("STRLEN", "ahead"), lambda v: v != b":0\r\n", timeout=3)
        self.assertEqual(got, b":1000\r\n", "the SET sent before the dropped one reaches redis whole")
        self.assertEqual(self.direct("EXISTS", "drop:1", "behind"), b":0\r\n")
        # Also when the command ahead is delayed: it goes out at its time, then the close.
        self.fault("drop_ahead", "resp_delay", {"delay": 300, "match": {"key": "slow"}})
        with RespConn(address) as c:
            c.send(enc("SET", "slow", ahead) + enc("SET", "drop:2", "v"))
            how, took, _ = wait_end(c.sock, 5)
        self.assertIn(how, ("eof", "reset"))
        self.assertGreaterEqual(took, 0.25, "the close waits for the delayed command ahead")
        got = poll(lambda: self.direct("STRLEN", "slow"), lambda v: v != b":0\r\n", timeout=3)
        self.assertEqual(got, b":1000\r\n")
        self.assertEqual(self.direct("EXISTS", "drop:2"), b":0\r\n")

    def test_drop_after_forwards_the_command_then_closes(self):
        address = self.resp_proxy("drop_after")
        self.fault("drop_after", "resp_drop", {"when": "after", "match": {"command": "SET", "key": "drop:*"}})
        with RespConn(address) as c:
            c.send(enc("SET", "drop:1", "applied"))
            how, _, data = wait_end(c.sock, 5)
        self.assertIn(how, ("eof", "reset"))
        self.assertEqual(data, b"", "the reply never comes back")
        got = poll(lambda: self.direct("GET", "drop:1"), lambda v: v != b"$-1\r\n", timeout=3)
        self.assertEqual(got, b"$7\r\napplied\r\n", "the SET was forwarded and ran")

    def test_drop_after_forwards_a_5_mib_command_whole(self):
        address = self.resp_proxy("drop_after_big")
        self.fault("drop_after_big", "resp_drop", {"when": "after", "match": {"command": "SET", "key": "drop:*"}})
        value = random.Random(5).randbytes(BIG)
        with RespConn(address) as c:
            sender = threading.Thread(target=lambda: c.sock.sendall(enc("SET", "drop:big", value)), daemon=True)
            sender.start()
            how, _, data = wait_end(c.sock, 20)
            sender.join(20)
        self.assertIn(how, ("eof", "reset"))
        self.assertEqual(data, b"")
        got = poll(lambda: self.direct("STRLEN", "drop:big"), lambda v: v != b":0\r\n", timeout=5)
        self.assertEqual(got, b":%d\r\n" % BIG, "'forwarded whole': the whole 5 MiB SET must reach redis")

    # -- scope ---------------------------------------------------------------------------------

    def test_auth_hello_and_ping_pass_a_fault_without_match_command(self):
        with RedisServer("--requirepass", "s3cret") as redis:
            address = self.resp_proxy("auth", redis=redis)
            self.fault("auth", "resp_error", {}, name="everything")
            auth = ("-a", "s3cret", "--no-auth-warning")
            self.assertEqual(self.redis_cli(address, "PING", extra=auth), "PONG")
            self.assertEqual(self.redis_cli(address, "GET", "x", extra=auth),
                             "(error) ERR Fault injected by faultline")
            with RespConn(address) as c:
                self.assertEqual(c.call("AUTH", "wrong"),
                                 b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
                                 "AUTH reached the real server")
                hello = c.call("HELLO", "3", "AUTH", "default", "s3cret")
                self.assertTrue(hello.startswith(b"%7\r\n") and b"proto\r\n:3\r\n" in hello, hello[:200])
                self.assertEqual(c.call("PING"), b"+PONG\r\n")
                self.assertEqual(c.call("SET", "k", "v"), b"-ERR Fault injected by faultline\r\n")
            self.assertEqual(self.direct("AUTH", "s3cret", redis=redis), b"+OK\r\n")
            self.assertEqual(metric(self.fl, "faultline_toxic_messages_total", proxy="auth",
                                    toxic="everything"), 2, "GET and SET only")
            # Naming the command (any case) does reach AUTH.
            self.assertEqual(self.fl.request("DELETE", "/proxies/auth/toxics/everything")[0], 204)
            self.fault("auth", "resp_error", {"error": "NOAUTH Authentication required.",
                                              "match": {"command": "auth"}})
            with RespConn(address) as c:
                self.assertEqual(c.call("AUTH", "s3cret"), b"-NOAUTH Authentication required.\r\n")
                self.assertTrue(c.call("GET", "x").startswith(b"-NOAUTH"), "not authenticated on the server")

    def test_toxicity_half_with_the_same_seed_repeats_the_same_errors(self):
        def pattern(seed):
            with Faultline("--seed", str(seed)) as fl:
                address = fl.create_proxy("seeded", self.redis.address, protocol="resp")["listen"]
                self.fault("seeded", "resp_error", {"match": {"command": "GET"}}, toxicity=0.5, fl=fl)
                out = ""
                for _ in range(2):  # two connections, each its own dice
                    with RespConn(address) as c:
                        c.send(b"".join(enc("GET", f"k{i}") + enc("PING") for i in range(40)))
                        replies = c.replies(80)
                    self.assertEqual(replies[1::2], [b"+PONG\r\n"] * 40)
                    out += "".join("E" if r.startswith(b"-ERR Fault") else "." if r == b"$-1\r\n" else "?"
                                   for r in replies[0::2])
                    out += "|"
                return out
        first, second, other = pattern(4242), pattern(4242), pattern(977)
        self.assertNotIn("?", first)
        self.assertEqual(first, second, "same seed, same traffic: same faults")
        self.assertIn("E", first)
        self.assertIn(".", first)
        self.assertTrue(15 <= first.count("E") <= 65, f"toxicity 0.5 over 80 GETs: {first}")
        self.assertNotEqual(first, other, "another seed gives other faults")

    # -- protocol features through the proxy ---------------------------------------------------

    def test_multi_exec_through_the_proxy(self):
        address = self.resp_proxy("multi")
        self.fault("multi", "resp_error", {"error": LOADING, "match": {"command": "GET", "key": "thread:*"}})
        out = self.redis_cli(address, stdin="MULTI\nSET tx:k 1\nINCR tx:k\nGET tx:k\nEXEC\n")
        self.assertEqual(out.splitlines(), ["OK", "QUEUED", "QUEUED", "QUEUED",
                                            "1) OK", "2) (integer) 2", '3) "2"'])
        self.assertEqual(self.direct("GET", "tx:k"), b"$1\r\n2\r\n")
        # A command the fault answers inside MULTI is refused the way Redis refuses one (a
        # LOADING server does exactly this): EXEC then aborts and nothing queued runs.
        out = self.redis_cli(address, stdin="MULTI\nSET tx:a 1\nGET thread:1\nINCR tx:k\nEXEC\nGET tx:k\n")
        self.assertEqual(out.splitlines(), ["OK", "QUEUED", f"(error) {LOADING}", "QUEUED",
                                            "(error) EXECABORT Transaction discarded because of previous errors.",
                                            '"2"'])
        self.assertEqual(self.direct("EXISTS", "tx:a"), b":0\r\n", "the aborted transaction did not run")
        self.assertEqual(self.direct("GET", "tx:k"), b"$1\r\n2\r\n")
        # A watched key changed by someone else: EXEC answers a null array.
        with RespConn(address) as c:
            self.assertEqual(c.call("WATCH", "tx:w"), b"+OK\r\n")
            self.direct("SET", "tx:w", "theirs")
            c.send(enc("MULTI") + enc("SET", "tx:w", "mine") + enc("EXEC") + enc("DISCARD"))
            self.assertEqual(c.replies(4), [b"+OK\r\n", b"+QUEUED\r\n", b"*-1\r\n",
                                            b"-ERR DISCARD without MULTI\r\n"])
        self.assertEqual(self.direct("GET", "tx:w"), b"$6\r\ntheirs\r\n")

    def test_subscribe_turns_the_connection_into_bytes_and_publish_still_works(self):
        address = self.resp_proxy("pubsub")
        self.fault("pubsub", "resp_error", {"match": {"command": "GET"}}, name="get_fault")
        with RespConn(address) as sub, RespConn(address) as sub3:
            # Replies (and the fault's answer) due before the SUBSCRIBE's still come, in order.
            sub.send(enc("ECHO", "A") + enc("GET", "b") + enc("SUBSCRIBE", "news"))
            self.assertEqual(sub.replies(3), [b"$1\r\nA\r\n", b"-ERR Fault injected by faultline\r\n",
                                              b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"])
            self.assertTrue(sub3.call("HELLO", "3").startswith(b"%7\r\n"))
            self.assertEqual(sub3.call("SUBSCRIBE", "news"), b">3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n")
            self.assertEqual(self.redis_cli(address, "PUBLISH", "news", "hello"), "(integer) 2")
            self.assertEqual(sub.reply(), b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n")
            self.assertEqual(sub3.reply(), b">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n")
            # From SUBSCRIBE on, the connection is bytes: the GET fault no longer answers,
            # the real server does (and refuses GET in subscribed mode).
            self.assertTrue(sub.call("GET", "x").startswith(b"-ERR Can't execute 'get'"))
            self.assertEqual(sub.call("PING"), b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")
            self.assertEqual(self.direct("PUBLISH", "news", "again"), b":2\r\n")
            self.assertEqual(sub.reply(), b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nagain\r\n")
            self.assertEqual(sub.call("UNSUBSCRIBE", "news"), b"*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:0\r\n")
        self.assertEqual(metric(self.fl, "faultline_toxic_messages_total", proxy="pubsub", toxic="get_fault"), 1,
                         "only the GET b before SUBSCRIBE")
        # Other connections keep their faults.
        self.assertEqual(self.redis_cli(address, "GET", "x"), "(error) ERR Fault injected by faultline")

    def test_resp3_push_before_a_replaced_reply_passes_through(self):
        address = self.resp_proxy("push")
        self.fault("push", "resp_error", {"when": "after", "match": {"command": "ECHO"}})
        with RespConn(address) as c:
            self.assertTrue(c.call("HELLO", "3").startswith(b"%7\r\n"))
            self.assertEqual(c.call("CLIENT", "TRACKING", "ON"), b"+OK\r\n")
            self.assertEqual(c.call("GET", "tracked"), b"_\r\n")
            # Redis sends the invalidation push after SET's reply, before ECHO's (replaced) one.
            c.send(enc("SET", "tracked", "new") + enc("ECHO", "x"))
            self.assertEqual(c.replies(3), [b"+OK\r\n", b">2\r\n$10\r\ninvalidate\r\n*1\r\n$7\r\ntracked\r\n",
                                            b"-ERR Fault injected by faultline\r\n"])

    def test_client_reply_in_any_case_turns_the_connection_into_bytes(self):
        address = self.resp_proxy("client_reply")
        self.fault("client_reply", "resp_error",
                   {"error": "ERR after", "when": "after", "match": {"command": "ECHO"}})
        with RespConn(address) as c:
            self.assertEqual(c.call("ECHO", "x"), b"-ERR after\r\n", "the fault acts before CLIENT REPLY")
            # OFF and SET get no reply at all; from here on replies do not pair with commands.
            c.send(enc("CLIENT", "Reply", "OFF") + enc("SET", "cr", "1") + enc("CLIENT", "rEPLY", "ON")
                   + enc("ECHO", "a") + enc("ECHO", "b") + enc("ECHO", "c"))
            self.assertEqual(c.replies(4), [b"+OK\r\n", b"$1\r\na\r\n", b"$1\r\nb\r\n", b"$1\r\nc\r\n"])
        self.assertEqual(self.direct("GET", "cr"), b"$1\r\n1\r\n")

    def test_inline_commands_are_matched(self):
        address = self.resp_proxy("inline")
        self.fault("inline", "resp_error", {"error": "ERR ping fault", "match": {"command": "PING"}}, name="ping")
        self.fault("inline", "resp_error", {"error": LOADING, "match": {"key": "thread:*"}}, name="thread")
        with RespConn(address) as c:
            c.send(b"PING\r\n")
            self.assertEqual(c.reply(), b"-ERR ping fault\r\n")
            c.send(b"ping\n")  # lower case, LF only: Redis accepts both
            self.assertEqual(c.reply(), b"-ERR ping fault\r\n")
            self.assertEqual(c.call("PING"), b"-ERR ping fault\r\n")
            c.send(b"SET thread:inl v\r\n")
            self.assertEqual(c.reply(), f"-{LOADING}\r\n".encode())
            c.send(b'SET other "a b"\r\nGET other\r\nECHO hi\r\n')
            self.assertEqual(c.replies(3), [b"+OK\r\n", b"$3\r\na b\r\n", b"$2\r\nhi\r\n"])
        self.assertEqual(self.direct("EXISTS", "thread:inl"), b":0\r\n")
        self.assertEqual(metric(self.fl, "faultline_toxic_messages_total", proxy="inline", toxic="ping"), 3)
        # printf 'PING\r\n' | nc: exactly the fault's bytes, nothing else.
        with connect(address) as s:
            s.sendall(b"PING\r\n")
            s.shutdown(socket.SHUT_WR)
            how, _, data = wait_end(s, 5)
        self.assertEqual((how, data), ("eof", b"-ERR ping fault\r\n"))

    def test_undecodable_traffic_passes_through_as_bytes(self):
        address = self.resp_proxy("garbage")
        self.fault("garbage", "resp_error", {}, name="everything")
        bad = b"*1\r\n$x\r\nGET\r\n"
        with connect(self.redis.address) as s:
            s.sendall(bad)
            want = wait_end(s, 5)
        with connect(address) as s:
            s.sendall(bad)
            got = wait_end(s, 5)
        self.assertEqual(want[0], "eof")
        self.assertTrue(want[2].startswith(b"-ERR Protocol error"), want)
        self.assertEqual((got[0], got[2]), (want[0], want[2]), "the real server's answer, untouched")
        self.assertEqual(self.metric_now("faultline_proxy_undecodable_streams_total", proxy="garbage"), 1)
        self.assertEqual(metric(self.fl, "faultline_toxic_messages_total", proxy="garbage", toxic="everything"), 0)

    # -- API and metrics -----------------------------------------------------------------------

    def test_resp_fault_on_a_proxy_of_another_protocol_is_400(self):
        for protocol in ("tcp", "http"):
            name = f"not_resp_{protocol}"
            self.resp_proxy(name, protocol=protocol)
            for type_ in ("resp_error", "resp_delay", "resp_drop"):
                status, body, _ = self.fl.request("POST", f"/proxies/{name}/toxics",
                                                  {"type": type_, "attributes": {}})
                self.assertEqual(status, 400, f"{type_} on a {protocol} proxy: {body}")
                self.assertIn("resp", str(body), f"the 400 names the protocol it needs: {body}")
            self.assertEqual(self.fl.request("GET", f"/proxies/{name}/toxics")[1], [])
        self.resp_proxy("is_resp")
        status, body, _ = self.fl.request("POST", "/proxies/is_resp/toxics",
                                          {"type": "http_abort", "attributes": {}})
        self.assertEqual(status, 400, body)

    def test_a_match_field_of_another_protocol_never_matches_a_command(self):
        # "every field given must match": a Redis command has no HTTP method or path, so such
        # a fault is refused (400, like rpc_method/tool/session) or never acts; it is never a
        # catch-all.
        address = self.resp_proxy("foreign_match")
        for name, type_, match in (("method", "resp_error", {"method": "GET"}),
                                   ("path", "resp_drop", {"path": "/", "command": "GET"}),
                                   ("tool", "resp_error", {"tool": "x"})):
            status, body, _ = self.fl.request("POST", "/proxies/foreign_match/toxics",
                                              {"name": name, "type": type_, "attributes": {"match": match}})
            self.assertEqual(status, 400, body)
            self.assertIn(f"match.{name} needs a proxy with protocol", body["error"])
        with RespConn(address) as c:
            self.assertEqual(c.call("SET", "fm", "1"), b"+OK\r\n")
            self.assertEqual(c.call("GET", "fm"), b"$1\r\n1\r\n")
        # Refused, so no fault exists that could have acted.
        self.assertIsNone(metric(self.fl, "faultline_toxic_messages_total", proxy="foreign_match"))

    def test_metrics_and_debug_log_count_commands_replies_and_faults(self):
        address = self.resp_proxy("metrics")
        self.fault("metrics", "resp_error", {"error": LOADING, "match": {"command": "GET", "key": "thread:*"}},
                   name="loading")
        self.fault("metrics", "resp_delay", {"delay": 10, "match": {"command": "SET"}}, name="slow_set")
        with RespConn(address) as c:
            c.send(enc("GET", "thread:1") + enc("GET", "thread:2") + enc("GET", "other")
                   + enc("SET", "thread:1", "x") + enc("PING"))
            replies = c.replies(5)
        err = f"-{LOADING}\r\n".encode()
        self.assertEqual(replies, [err, err, b"$-1\r\n", b"+OK\r\n", b"+PONG\r\n"])
        self.assertEqual(metric(self.fl, "faultline_toxic_messages_total", proxy="metrics",
                                toxic="loading", type="resp_error"), 2)
        self.assertEqual(metric(self.fl, "faultline_toxic_messages_total", proxy="metrics",
                                toxic="slow_set", type="resp_delay"), 1)
        requests = poll(lambda: self.metric_now("faultline_proxy_requests_total", proxy="metrics"),
                        lambda v: v >= 5, timeout=5)
        self.assertEqual(requests, 5, metrics_text(self.fl))
        # Replies decoded from redis-server: the three commands it answered.
        self.assertEqual(self.metric_now("faultline_proxy_responses_total", proxy="metrics"), 3)
        log = poll(self.fl.logs, lambda t: "GET thread:2" in t, timeout=3)
        self.assertRegex(log, r"proxy metrics: resp_error loading: answered -LOADING to GET thread:1")
        self.assertRegex(log, r"proxy metrics: resp_delay slow_set: delayed SET thread:1")


if __name__ == "__main__":
    unittest.main(verbosity=2)
