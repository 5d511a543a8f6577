"""The control API under pressure (issue 16, items 3 and 11): out of descriptors it backs
off instead of spinning and answers 503, it caps its connections (503 beyond), cuts
half-sent requests after 10 s (not 60), answers an oversized head 431 and two Host headers
400; a proxy's max_connections refusals are logged at most once a second.

faultline runs under a low RLIMIT_NOFILE (prlimit, soft = hard, so it cannot raise it).
Loopback only, port 0, every wait bounded."""
import os
import shutil
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from api_helpers import fill_until_blocked, raw_http, read_http_response  # noqa: E402
from harness import (BIN, EchoServer, Faultline, ThreadedServer, call, connect, metric_value,  # noqa: E402
                     parse_metrics, poll)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU time of process `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class LimitedFaultline(Faultline):
    """`faultline serve` with RLIMIT_NOFILE set to `nofile` (soft and hard) and one worker."""

    def __init__(self, nofile, *extra_args):
        prlimit = shutil.which("prlimit")
        if not prlimit:
            raise RuntimeError("prlimit not found (util-linux)")
        import tempfile
        from harness import serve_command
        self.tmp = tempfile.mkdtemp(prefix="faultline-test-")
        self.port_file = os.path.join(self.tmp, "api.addr")
        cmd = [prlimit, f"--nofile={nofile}:{nofile}"] + serve_command(self.tmp, self.port_file)
        self._start(cmd + ["--workers", "1"] + list(extra_args), None)


def half_sent(fl, n):
    """`n` API connections, each with a request line and one header but no end of head."""
    socks = []
    for _ in range(n):
        s = socket.create_connection((fl.host, fl.port), timeout=5)
        s.sendall(b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        socks.append(s)
    return socks


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


class HoldingUpstream:
    """Listens with a deep backlog and never accepts: every connect to it succeeds and stays."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


class DescriptorsAndConnections(unittest.TestCase):
    NOFILE = 64

    def start(self, *args):
        fl = LimitedFaultline(self.NOFILE, *args)
        self.addCleanup(fl.__exit__)
        return fl

    def test_half_sent_requests_are_capped_with_503_and_cut_after_10_s(self):
        fl = self.start()
        cap = self.NOFILE // 4  # a quarter of the descriptors at most
        socks = half_sent(fl, 80)  # more than the process has descriptors for
        self.addCleanup(close_all, socks)
        cpu0 = cpu_seconds(fl.proc.pid)
        time.sleep(2)  # deliberate: the CPU faultline burns over 2 s is what is measured
        used = cpu_seconds(fl.proc.pid) - cpu0
        self.assertLess(used, 0.5, f"faultline used {used:.2f} s of CPU in 2 s holding half-sent requests (spinning?)")
        # A newcomer is told why at once instead of hanging.
        r = call(fl, "GET", "/version", timeout=3)
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.json["error"], f"too many control API connections open (limit {cap}); retry when one closes")
        self.assertEqual(r.headers.get("retry-after"), "1")
        # Those over the cap were told the same, not left hanging.
        over = socks[-1]
        over.settimeout(3)
        self.assertEqual(read_http_response(over).status, 503)
        # The half-sent ones being served are cut after the request timeout (10 s, not 60)
        # with a 408, and the API answers again.
        first = socks[0]
        first.settimeout(14)
        started = time.monotonic()
        r = read_http_response(first)
        self.assertEqual(r.status, 408, r)
        self.assertIn("within 10 s", r.json["error"])
        self.assertLess(time.monotonic() - started, 12)
        r = poll(lambda: call(fl, "GET", "/version", timeout=3), lambda r: r.status == 200, timeout=3)
        self.assertEqual(r.status, 200, r)
        logs = fl.logs()
        self.assertIn("control API: refused", logs)
        self.assertLessEqual(logs.count("control API: refused"), 15, "refusals are logged at most once a second")

    def test_out_of_descriptors_backs_off_and_answers_503(self):
        upstream = HoldingUpstream()
        self.addCleanup(upstream.close)
        fl = self.start()
        p = fl.create_proxy("hold", upstream.address)
        # Each proxied connection costs two descriptors: 40 of them exhaust 64.
        clients = [connect(p["listen"]) for _ in range(40)]
        self.addCleanup(close_all, clients)
        # Kept as a sleep: while the descriptors are exhausted the API itself is what is under
        # test, so there is nothing to poll; the accepts of the 40 clients settle meanwhile.
        time.sleep(0.5)
        answers, stop = [], threading.Event()

        def knock():
            while not stop.is_set():
                try:
                    answers.append(call(fl, "GET", "/version", timeout=3))
                except OSError as e:  # a hang shows up as a timeout here
                    answers.append(e)
                time.sleep(0.05)  # pacing: a request every 50 ms while the CPU is measured

        t = threading.Thread(target=knock)
        cpu0 = cpu_seconds(fl.proc.pid)
        t.start()
        time.sleep(2)  # deliberate: the CPU faultline burns over 2 s is what is measured
        stop.set()
        t.join(10)
        used = cpu_seconds(fl.proc.pid) - cpu0
        self.assertLess(used, 0.5, f"faultline used {used:.2f} s of CPU in 2 s out of descriptors (spinning?)")
        self.assertTrue(answers)
        for a in answers:
            self.assertNotIsInstance(a, OSError, f"an API request got no answer: {a!r}")
        refused = [a for a in answers if a.status == 503]
        self.assertTrue(refused, answers)
        self.assertIn("out of file descriptors", refused[0].json["error"])
        # Once the proxied connections go, the API serves again. (Each waits for its upstream
        # to end its half after the client's EOF: closing the upstream's listener resets them.)
        close_all(clients)
        upstream.close()
        r = poll(lambda: call(fl, "GET", "/version", timeout=3), lambda r: r.status == 200, timeout=5)
        self.assertEqual(r.status, 200, r)
        logs = fl.logs()
        self.assertLessEqual(logs.count("control API: accept failed"), 5, "accept failures are logged at most once a second")


class RequestHeads(unittest.TestCase):
    def setUp(self):
        self.fl = Faultline()
        self.addCleanup(self.fl.__exit__)

    def test_oversized_head_is_431(self):
        head = b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\n\r\n"
        r = raw_http(self.fl.host, self.fl.port, head)
        self.assertEqual(r.status, 431, r)
        self.assertEqual(r.json, {"error": "request head (request line and headers) too large (limit 64 KiB)",
                                  "status": 431})

    def test_two_host_headers_are_400(self):
        for hosts in [(b"127.0.0.1", b"evil.example"), (b"127.0.0.1", b"127.0.0.1")]:
            with self.subTest(hosts=hosts):
                r = raw_http(self.fl.host, self.fl.port,
                             b"GET /proxies HTTP/1.1\r\nHost: " + hosts[0] + b"\r\nHost: " + hosts[1] +
                             b"\r\nConnection: close\r\n\r\n")
                self.assertEqual(r.status, 400, r)
                self.assertEqual(r.json, {"error": "request has 2 Host headers; send exactly one", "status": 400})

    def test_malformed_request_is_400_not_a_silent_close(self):
        r = raw_http(self.fl.host, self.fl.port, b"GET /version HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n")
        self.assertEqual(r.status, 400, r)
        self.assertTrue(r.json["error"].startswith("malformed HTTP request: "), r)


class RefusalLog(unittest.TestCase):
    def test_max_connections_refusals_are_logged_once_a_second(self):
        with EchoServer() as echo, Faultline("--max-connections", "1") as fl:
            p = fl.create_proxy("limited", echo.address)
            held = connect(p["listen"])
            self.addCleanup(held.close)
            held.sendall(b"x")
            self.assertEqual(held.recv(1), b"x")
            for _ in range(100):
                s = connect(p["listen"])
                s.settimeout(2)
                try:
                    s.recv(1)
                except OSError:
                    pass
                s.close()

            def refused():
                return metric_value(parse_metrics(call(fl, "GET", "/metrics").text),
                                    "faultline_proxy_connections_refused_total", proxy="limited", reason="limit")

            self.assertEqual(poll(refused, lambda v: v == 100), 100)
            lines = [line for line in fl.logs().splitlines() if "proxy limited: refused" in line]
            self.assertGreaterEqual(len(lines), 1, "a refusal is logged")
            self.assertLessEqual(len(lines), 5, f"100 refusals in a moment flood the log: {len(lines)} lines")
            self.assertIn("max_connections is 1", lines[0])


class Sink(ThreadedServer):
    """Reads and discards everything."""

    def handle(self, conn):
        while conn.recv(65536):
            pass


class ServerWideBufferBudget(unittest.TestCase):
    """Item 10: every connection's bytes held by faults count against --max-buffered-bytes;
    once it is spent, connections stop reading (TCP pushes back) instead of each holding up
    to --max-queued-bytes."""

    BUDGET = 2 << 20

    def metric(self, fl, name):
        return metric_value(parse_metrics(call(fl, "GET", "/metrics").text), name)

    def test_stalled_clients_hold_the_budget_not_16_mib_each(self):
        with Sink() as sink, Faultline("--max-buffered-bytes", str(self.BUDGET)) as fl:
            p = fl.create_proxy("stall", sink.address)
            self.assertEqual(self.metric(fl, "faultline_buffered_bytes_limit"), self.BUDGET)
            r = call(fl, "POST", "/proxies/stall/toxics",
                     {"name": "pause", "type": "bandwidth", "stream": "upstream", "attributes": {"rate": 0}})
            self.assertEqual(r.status, 200, r)
            clients = [connect(p["listen"]) for _ in range(6)]
            self.addCleanup(lambda: [c.close() for c in clients])
            sent = [fill_until_blocked(c, max_bytes=64 << 20, quiet=0.5, limit=10) for c in clients]
            held = self.metric(fl, "faultline_buffered_bytes")
            # Each reader may finish the read it is in (a block of 256 KiB) past the budget.
            self.assertLessEqual(held, self.BUDGET + 6 * (256 << 10), f"held {held} bytes; clients sent {sent}")
            self.assertGreater(held, 0)
            self.assertGreater(self.metric(fl, "faultline_buffer_budget_pauses_total"), 0)
            # Without the budget each would have held up to 16 MiB: the kernel's buffers are
            # all the rest of what the clients got rid of.
            self.assertLess(sum(sent), 6 * (16 << 20), sent)
            # When the fault goes, everything drains and the budget is free again.
            self.assertEqual(call(fl, "DELETE", "/proxies/stall/toxics/pause").status, 204)
            self.assertEqual(poll(lambda: self.metric(fl, "faultline_buffered_bytes"), lambda v: v == 0, timeout=10), 0)

    def test_the_default_budget_is_1_gib(self):
        with Faultline() as fl:
            self.assertEqual(self.metric(fl, "faultline_buffered_bytes_limit"), 1 << 30)


if __name__ == "__main__":
    unittest.main()
