"""A toxic's `schedule` on a connection that is already open, for every proxy kind (tcp,
http, resp, mcp): the window opens and closes on the live keep-alive connection exactly as
docs/faults.md says ("outside a window the fault is removed from live connections exactly
as if deleted, and re-added at the next window"), whichever session kind carries it (the
byte relay for tcp, the message-aware session for the others).

The connection is opened before the toxic exists; GET /proxies/{p}/connections shows when
each edge has been applied to it, so the test waits on that instead of sleeping. A
`timeout` window must close an idle connection when it opens, with no traffic to prompt it.

Run standalone: python3 tests/integration/test_schedule_live.py
Loopback only, port 0 everywhere; redis-server for the resp proxy.
"""
import http.client
import http.server
import json
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (EchoServer, Faultline, RedisServer, connect, poll, recv_exactly, split_hostport,  # noqa: E402
                     wait_end)

LATENCY_MS = 500
AFTER_MS = 1000
FOR_MS = 1500
FAST = 0.25  # a round trip without the latency, with room for a loaded 2-core machine


class HttpUpstream(http.server.ThreadingHTTPServer):
    """HTTP/1.1 keep-alive on 127.0.0.1:0: GET answers "ok", POST answers a JSON-RPC result
    for the request's id (what an MCP server's Streamable HTTP endpoint does)."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def address(self):
        return f"127.0.0.1:{self.server_address[1]}"

    def close(self):
        self.shutdown()
        self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, body, content_type):
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send(b"ok", "text/plain")

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
        self._send(json.dumps({"jsonrpc": "2.0", "id": request.get("id"), "result": {}}).encode(), "application/json")


class ScheduleOnLiveConnection:
    """The test, for a subclass that says which upstream to start and how to make one round
    trip on one client connection."""

    PROTOCOL = None
    UPSTREAM = None  # the upstream's class: UPSTREAM() starts one, .address is where it listens
    UPSTREAM_STOP = "close"  # the name of the method that stops it

    def start_upstream(self):
        """Starts an UPSTREAM (stopped by a cleanup); returns its address."""
        server = self.UPSTREAM()
        self.addCleanup(getattr(server, self.UPSTREAM_STOP))
        return server.address

    def open_client(self, address):
        """Opens one client connection to `address` (closed by a cleanup); returns
        (round_trip, sock): a function making one exchange on it, and its socket."""
        raise NotImplementedError

    def socket_client(self, address, request, reply):
        """open_client for a protocol spoken on a bare socket: each round trip sends `request`
        and must read back exactly `reply`."""
        sock = connect(address)
        self.addCleanup(sock.close)

        def round_trip():
            sock.sendall(request)
            self.assertEqual(recv_exactly(sock, len(reply)), reply)
        return round_trip, sock

    def http_connection(self, address):
        """A connected keep-alive http.client connection to `address` (closed by a cleanup)."""
        host, port = split_hostport(address)
        conn = http.client.HTTPConnection(host, port, timeout=10)
        self.addCleanup(conn.close)
        conn.connect()
        return conn

    def setUp(self):
        upstream = self.start_upstream()
        self.fl = Faultline()
        self.addCleanup(self.fl.__exit__, None, None, None)
        extra = {"protocol": self.PROTOCOL} if self.PROTOCOL != "tcp" else {}
        self.listen = self.fl.create_proxy("p", upstream, **extra)["listen"]

    def connections(self):
        code, body, _ = self.fl.request("GET", "/proxies/p/connections")
        self.assertEqual(code, 200, body)
        return body

    def timed(self, round_trip):
        start = time.monotonic()
        round_trip()
        return time.monotonic() - start

    def test_window_opens_and_closes_on_a_connection_opened_before_the_toxic(self):
        round_trip, _ = self.open_client(self.listen)
        self.assertLess(self.timed(round_trip), FAST, "no toxic yet")
        (before,) = self.connections()

        code, toxic, _ = self.fl.request("POST", "/proxies/p/toxics", {
            "name": "lat", "type": "latency",
            "attributes": {"latency": LATENCY_MS, "schedule": {"after": AFTER_MS, "for": FOR_MS}}})
        self.assertEqual(code, 200, toxic)
        added = time.monotonic()
        self.assertLess(self.timed(round_trip), FAST, "before the window opens")

        def live_toxics():
            (c,) = self.connections()
            self.assertEqual(c["id"], before["id"], "the same keep-alive connection throughout")
            return c["toxics"]["downstream"]

        seen = poll(live_toxics, lambda names: "lat" in names, timeout=(AFTER_MS + 2000) / 1000)
        opened = time.monotonic() - added
        self.assertIn("lat", seen, f"{self.PROTOCOL}: the window never opened on the live connection")
        self.assertGreater(opened, AFTER_MS / 1000 - 0.1, f"the window opened early, after {opened:.2f} s")
        elapsed = self.timed(round_trip)
        self.assertGreaterEqual(elapsed, (LATENCY_MS - 50) / 1000,
                                f"{self.PROTOCOL}: a round trip inside the window took {elapsed:.3f} s")
        self.assertLess(elapsed, (LATENCY_MS + 700) / 1000, f"{self.PROTOCOL}: {elapsed:.3f} s")

        seen = poll(live_toxics, lambda names: "lat" not in names, timeout=(AFTER_MS + FOR_MS + 2000) / 1000)
        self.assertNotIn("lat", seen, f"{self.PROTOCOL}: the window never closed on the live connection")
        self.assertGreater(time.monotonic() - added, (AFTER_MS + FOR_MS) / 1000 - 0.1, "the window closed early")
        elapsed = self.timed(round_trip)
        self.assertLess(elapsed, FAST, f"{self.PROTOCOL}: a round trip after the window took {elapsed:.3f} s")
        self.assertEqual([c["id"] for c in self.connections()], [before["id"]])

    def test_a_timeout_window_closes_an_idle_connection_when_it_opens(self):
        """Nothing is sent once the toxic exists: the edge itself must rebuild the chain."""
        round_trip, sock = self.open_client(self.listen)
        self.assertLess(self.timed(round_trip), FAST)
        code, toxic, _ = self.fl.request("POST", "/proxies/p/toxics", {
            "name": "down", "type": "timeout", "attributes": {"timeout": 100, "schedule": {"after": AFTER_MS}}})
        self.assertEqual(code, 200, toxic)
        added = time.monotonic()
        how, _, data = wait_end(sock, (AFTER_MS + 3000) / 1000)
        ended = time.monotonic() - added
        self.assertIn(how, ("eof", "reset"), f"{self.PROTOCOL}: the idle connection stayed {how} ({data!r})")
        self.assertGreater(ended, (AFTER_MS + 100) / 1000 - 0.1, f"closed before the window, after {ended:.2f} s")
        self.assertLess(ended, (AFTER_MS + 100) / 1000 + 1.0, f"{self.PROTOCOL}: closed only after {ended:.2f} s")


class Tcp(ScheduleOnLiveConnection, unittest.TestCase):
    PROTOCOL = "tcp"
    UPSTREAM = EchoServer

    def open_client(self, address):
        return self.socket_client(address, b"ping", b"ping")


class Http(ScheduleOnLiveConnection, unittest.TestCase):
    PROTOCOL = "http"
    UPSTREAM = HttpUpstream

    def open_client(self, address):
        conn = self.http_connection(address)

        def round_trip():
            conn.request("GET", "/")
            r = conn.getresponse()
            self.assertEqual((r.status, r.read()), (200, b"ok"))
        return round_trip, conn.sock


class Mcp(ScheduleOnLiveConnection, unittest.TestCase):
    PROTOCOL = "mcp"
    UPSTREAM = HttpUpstream

    def open_client(self, address):
        conn = self.http_connection(address)
        ids = iter(range(1, 1000))

        def round_trip():
            i = next(ids)
            conn.request("POST", "/mcp", json.dumps({"jsonrpc": "2.0", "id": i, "method": "ping"}),
                         {"content-type": "application/json", "accept": "application/json, text/event-stream"})
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            self.assertEqual(json.loads(r.read()), {"jsonrpc": "2.0", "id": i, "result": {}})
        return round_trip, conn.sock


class Resp(ScheduleOnLiveConnection, unittest.TestCase):
    PROTOCOL = "resp"
    UPSTREAM = RedisServer
    UPSTREAM_STOP = "stop"

    def open_client(self, address):
        return self.socket_client(address, b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n")


if __name__ == "__main__":
    unittest.main()
