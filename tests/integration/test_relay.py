"""TCP data path through a proxy created via the API (loopback only, port 0 everywhere).

Run standalone: python3 tests/integration/test_relay.py
"""
import hashlib
import os
import resource
import selectors
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (EchoServer, Faultline, ThreadedServer, connect, connect_outcome, echo_roundtrip, free_port,  # noqa: E402
                     client_address, metric, metrics_text, proxy_connections, recv_all, recv_exactly,
                     split_hostport, wait_connections_closed, wait_end, wait_for)
from relay_helpers import Blackhole, StreamingClients, seeded_chunks, set_linger_zero  # noqa: E402

MiB = 1 << 20


def listen_port(proxy):
    return split_hostport(proxy["listen"])[1]


class OneShotServer:
    """Accepts one connection on loopback port 0 and runs `handler(conn)` in a thread."""

    def __init__(self, handler, family=socket.AF_INET, host="127.0.0.1", port=0):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.sock.settimeout(20)
        self.port = self.sock.getsockname()[1]
        self.host = host
        self.result = {}
        self.error = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(handler,), daemon=True)
        self.thread.start()

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def _run(self, handler):
        try:
            conn, _ = self.sock.accept()
            conn.settimeout(20)
            try:
                handler(conn, self.result)
            finally:
                conn.close()
        except BaseException as e:  # reported by the test via .error
            self.error = e
        finally:
            self.done.set()

    def close(self):
        self.sock.close()


class RelayTest(unittest.TestCase):

    # -----------------------------------------------------------------------------------------
    def test_bulk_256mib_both_directions(self):
        """256 MiB client→upstream while the echo streams the same 256 MiB back concurrently."""
        total = 256 * MiB
        time_limit = 120.0
        with Faultline() as fl, EchoServer() as echo:
            proxy = fl.create_proxy("bulk", echo.address)
            s = socket.create_connection(("127.0.0.1", listen_port(proxy)), timeout=30)
            sent_hash = hashlib.sha256()
            recv_hash = hashlib.sha256()
            state = {"received": 0, "error": None}
            start = time.monotonic()

            def reader():
                try:
                    while state["received"] < total:
                        if time.monotonic() - start > time_limit:
                            state["error"] = "reader: time limit"
                            return
                        data = s.recv(4 * MiB)
                        if not data:
                            state["error"] = f"reader: EOF after {state['received']} bytes"
                            return
                        recv_hash.update(data)
                        state["received"] += len(data)
                except OSError as e:
                    state["error"] = f"reader: {e!r} after {state['received']} bytes"

            t = threading.Thread(target=reader, daemon=True)
            t.start()
            sent = 0
            for chunk in seeded_chunks(seed=20240601, total=total, chunk=MiB):
                self.assertLess(time.monotonic() - start, time_limit, "sender: time limit")
                s.sendall(chunk)
                sent_hash.update(chunk)
                sent += len(chunk)
                if state["error"]:
                    break
            t.join(timeout=max(1.0, time_limit - (time.monotonic() - start)))
            elapsed = time.monotonic() - start
            self.assertFalse(t.is_alive(), f"reader still running after {elapsed:.1f}s "
                                           f"({state['received']} of {total} bytes)")
            self.assertIsNone(state["error"], state["error"])
            self.assertEqual(sent, total)
            self.assertEqual(state["received"], total)
            self.assertEqual(sent_hash.hexdigest(), recv_hash.hexdigest(), "SHA-256 mismatch")
            # Byte counters are live: checked while the connection is still open.
            for direction in ("upstream", "downstream"):
                for name in ("toxiproxy_proxy_received_bytes_total",
                             "toxiproxy_proxy_sent_bytes_total"):
                    value = metric(fl, name, proxy="bulk", direction=direction)
                    self.assertEqual(value, total, f"{name}{{direction={direction}}} while the "
                                                   f"connection is open")
            # Half-close after the bulk: the echo half-closes back, so we get EOF.
            s.shutdown(socket.SHUT_WR)
            kind, _, extra = wait_end(s, 5)
            self.assertEqual((kind, extra), ("eof", b""))
            s.close()
            print(f"\n  256 MiB each way in {elapsed:.2f}s "
                  f"({2 * total / MiB / elapsed:.0f} MiB/s total)", file=sys.stderr)

    # -----------------------------------------------------------------------------------------
    def test_half_close(self):
        """Client sends a request then SHUT_WR; the upstream reads to EOF, replies 1 MiB, closes."""
        request = b"REQUEST " + os.urandom(200000)
        reply = b"".join(seeded_chunks(seed=7, total=MiB, chunk=65536))

        def handler(conn, result):
            result["request"] = recv_all(conn)   # returns at EOF (the client's SHUT_WR)
            conn.sendall(reply)
            conn.shutdown(socket.SHUT_WR)

        up = OneShotServer(handler)
        with Faultline() as fl:
            proxy = fl.create_proxy("halfclose", up.address)
            s = socket.create_connection(("127.0.0.1", listen_port(proxy)), timeout=10)
            s.sendall(request)
            s.shutdown(socket.SHUT_WR)
            got = recv_all(s)       # must end with EOF, not reset/timeout
            s.close()
            self.assertTrue(up.done.wait(10))
            self.assertIsNone(up.error, f"upstream failed: {up.error!r}")
            self.assertEqual(up.result.get("request"), request,
                             "upstream did not receive the whole request before EOF")
            self.assertEqual(len(got), len(reply), "client did not get the whole reply")
            self.assertEqual(got, reply)
        up.close()

    def test_half_close_from_upstream(self):
        """Server-first: the upstream sends a greeting and SHUT_WR; the client sees the greeting
        then EOF, and can still send its data, which the upstream reads to EOF."""
        greeting = b"220 hello " + os.urandom(100000)
        request = os.urandom(300000)

        def handler(conn, result):
            conn.sendall(greeting)
            conn.shutdown(socket.SHUT_WR)
            result["request"] = recv_all(conn)

        up = OneShotServer(handler)
        with Faultline() as fl:
            proxy = fl.create_proxy("halfclose_up", up.address)
            s = socket.create_connection(("127.0.0.1", listen_port(proxy)), timeout=10)
            got = recv_all(s)           # greeting then EOF
            self.assertEqual(got, greeting)
            # The FIN reached us, so faultline has handled it: the session must still be there,
            # our direction open.
            wait_for(lambda: [c for c in proxy_connections(fl, "halfclose_up") if c.get("client") == client_address(s)],
                     what="the half-closed connection still listed in /connections")
            s.sendall(request)
            s.shutdown(socket.SHUT_WR)
            self.assertTrue(up.done.wait(10))
            kind, _, extra = wait_end(s, 5)
            s.close()
            self.assertIsNone(up.error, f"upstream failed: {up.error!r}")
            self.assertEqual(len(up.result.get("request", b"")), len(request),
                             "client data sent after the upstream's FIN did not arrive whole")
            self.assertEqual(up.result["request"], request)
            self.assertEqual((kind, extra), ("eof", b""))
        up.close()

    # -----------------------------------------------------------------------------------------
    def test_rst_from_upstream_reaches_client(self):
        def handler(conn, result):
            result["got"] = conn.recv(100)
            set_linger_zero(conn)   # close() below sends RST

        up = OneShotServer(handler)
        with Faultline() as fl:
            proxy = fl.create_proxy("rst_up", up.address)
            s = socket.create_connection(("127.0.0.1", listen_port(proxy)), timeout=10)
            s.sendall(b"hello")
            self.assertTrue(up.done.wait(10))
            self.assertEqual(up.result.get("got"), b"hello")
            kind, elapsed, _ = wait_end(s, 5)
            s.close()
            self.assertEqual(kind, "reset",
                             f"upstream sent RST; client expected ECONNRESET, got {kind} "
                             f"after {elapsed:.2f}s")
        up.close()

    def test_rst_from_client_reaches_upstream(self):
        def handler(conn, result):
            result["got"] = conn.recv(100)
            result["ready"].set()
            kind, elapsed, _ = wait_end(conn, 5)
            result["end"] = (kind, elapsed)

        up = OneShotServer(handler)
        up.result["ready"] = threading.Event()
        with Faultline() as fl:
            proxy = fl.create_proxy("rst_down", up.address)
            s = socket.create_connection(("127.0.0.1", listen_port(proxy)), timeout=10)
            s.sendall(b"ping")
            self.assertTrue(up.result["ready"].wait(10), "upstream never got the data")
            set_linger_zero(s)
            s.close()
            self.assertTrue(up.done.wait(10))
            self.assertIsNone(up.error, f"upstream failed: {up.error!r}")
            kind, elapsed = up.result["end"]
            self.assertIn(kind, ("reset", "eof"),
                          f"client reset; upstream expected reset/EOF, got {kind}")
            self.assertLess(elapsed, 2.0, f"upstream saw {kind} only after {elapsed:.2f}s")
            if kind != "reset":
                print(f"\n  note: client RST reached the upstream as {kind} (not a reset)",
                      file=sys.stderr)
        up.close()

    # -----------------------------------------------------------------------------------------
    def test_upstream_refused_default_closes_client(self):
        with Faultline() as fl:
            proxy = fl.create_proxy("down", f"127.0.0.1:{free_port()}")
            s = socket.create_connection(("127.0.0.1", listen_port(proxy)), timeout=5)
            kind, elapsed, extra = wait_end(s, 5)
            s.close()
            self.assertIn(kind, ("eof", "reset"), f"client neither closed nor reset: {kind}")
            self.assertEqual(extra, b"")
            self.assertLess(elapsed, 2.0, f"client closed only after {elapsed:.2f}s")
            # The listener stays open in the default mode (Toxiproxy's behaviour).
            kind = connect_outcome("127.0.0.1", listen_port(proxy), timeout=2)
            self.assertEqual(kind, "ok", "default mode must keep accepting")
            failures = metric(fl, "faultline_proxy_upstream_connect_failures_total", proxy="down")
            self.assertIsNotNone(failures, "no faultline_proxy_upstream_connect_failures_total")
            self.assertGreaterEqual(failures, 1)

    def test_upstream_refused_refuse_mode(self):
        up_port = free_port()
        with Faultline() as fl:
            proxy = fl.create_proxy("downr", f"127.0.0.1:{up_port}", on_upstream_down="refuse")
            self.assertEqual(proxy.get("on_upstream_down"), "refuse", proxy)
            port = listen_port(proxy)
            # First client: accepted, then closed (the upstream connect fails).
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            kind, elapsed, _ = wait_end(s, 5)
            s.close()
            self.assertIn(kind, ("eof", "reset"))
            self.assertLess(elapsed, 2.0)
            # Then new connects are refused (poll briefly: the listener closes asynchronously).
            deadline = time.monotonic() + 2.0
            kind = None
            while time.monotonic() < deadline:
                kind = connect_outcome("127.0.0.1", port, timeout=1)
                if kind == "refused":
                    break
                time.sleep(0.05)  # pacing of a bounded poll
            self.assertEqual(kind, "refused", "after an upstream failure in refuse mode, "
                                              "new connects must get ECONNREFUSED")
            # Stays refused while the upstream is down. Deliberate time passing, not
            # synchronisation: longer than the 500 ms between upstream probes.
            time.sleep(0.7)
            kind = connect_outcome("127.0.0.1", port, timeout=1)
            self.assertEqual(kind, "refused", "listener reopened although upstream still down")
            # Bring the upstream up on its port: the proxy reopens within ~3 s.
            up = EchoServer(port=up_port)
            t0 = time.monotonic()
            reopened = None
            while time.monotonic() - t0 < 3.5:
                if connect_outcome("127.0.0.1", port, timeout=1) == "ok":
                    reopened = time.monotonic() - t0
                    break
                time.sleep(0.1)  # pacing of a bounded poll
            self.assertIsNotNone(reopened, "listener not reopened within 3.5 s of the upstream "
                                           "coming back")
            echoed, _ = echo_roundtrip(f"127.0.0.1:{port}", b"back again")
            self.assertEqual(echoed, b"back again")
            status, p, _ = fl.request("GET", "/proxies/downr")
            self.assertEqual(status, 200)
            self.assertEqual(p["listen"], proxy["listen"], "reopened on a different address")
            self.assertTrue(p["enabled"])
            up.close()

    # -----------------------------------------------------------------------------------------
    def test_connect_timeout_does_not_block_accept(self):
        with Blackhole() as hole, EchoServer() as echo:
            works, how = hole.verify(timeout=1.0)
            self.assertTrue(works, f"test setup: a direct connect to the full-backlog socket "
                                   f"should hang but got {how}; the SYN-drop trick does not "
                                   f"work on this kernel")
            with Faultline("--connect-timeout-ms", "500") as fl:
                slow = fl.create_proxy("slow", hole.address)
                good = fl.create_proxy("good", echo.address)
                slow_port, good_port = listen_port(slow), listen_port(good)

                results = {}

                def watch(key):
                    t = time.monotonic()
                    c = socket.create_connection(("127.0.0.1", slow_port), timeout=5)
                    kind, elapsed, _ = wait_end(c, 5)
                    c.close()
                    results[key] = (kind, time.monotonic() - t)

                a = threading.Thread(target=watch, args=("a",), daemon=True)
                a.start()
                wait_for(lambda: len(proxy_connections(fl, "slow")) >= 1, 1.0, "client a's session on slow")
                b = threading.Thread(target=watch, args=("b",), daemon=True)
                b.start()
                wait_for(lambda: len(proxy_connections(fl, "slow")) >= 2, 1.0, "both sessions on slow")
                # While both upstream connects hang, the other proxy works without delay.
                latencies = []
                for i in range(5):
                    msg = f"probe-{i}".encode()
                    echoed, took = echo_roundtrip(f"127.0.0.1:{good_port}", msg, timeout=3)
                    self.assertEqual(echoed, msg)
                    latencies.append(took)
                self.assertNotIn("a", results, "slow client ended before the probes ran; "
                                               "the timing of this test is off")
                a.join(6)
                b.join(6)
                self.assertIn("a", results)
                self.assertIn("b", results)
                for key in ("a", "b"):
                    kind, took = results[key]
                    self.assertIn(kind, ("eof", "reset"), f"client {key}: {kind}")
                    self.assertTrue(0.3 <= took <= 3.0,
                                    f"client {key} closed after {took:.2f}s "
                                    f"(connect timeout 0.5 s)")
                failures = metric(fl, "faultline_proxy_upstream_connect_failures_total",
                                  proxy="slow")
                self.assertEqual(failures, 2, "two upstream connect timeouts")
                self.assertLess(max(latencies), 0.25,
                                f"working proxy delayed while an upstream connect hangs: "
                                f"{[round(x, 3) for x in latencies]}")

    # -----------------------------------------------------------------------------------------
    def test_1000_concurrent_connections(self):
        n = 1000
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.assertGreaterEqual(soft, 4 * n + 100,
                                f"RLIMIT_NOFILE {soft} too low for {n} connections")
        with EchoServer() as echo, Faultline() as fl:  # faultline inherits the raised limit
            proxy = fl.create_proxy("many", echo.address)
            port = listen_port(proxy)
            socks = []
            try:
                start = time.monotonic()
                for i in range(n):
                    s = socket.create_connection(("127.0.0.1", port), timeout=10)
                    s.setblocking(False)
                    socks.append(s)
                messages = [f"conn {i:04d} ".encode() + os.urandom(16).hex().encode() * 8
                            for i in range(n)]
                sel = selectors.DefaultSelector()
                got = [bytearray() for _ in range(n)]
                for i, s in enumerate(socks):
                    sent = s.send(messages[i])  # ~270 bytes: fits in the socket buffer
                    self.assertEqual(sent, len(messages[i]))
                    sel.register(s, selectors.EVENT_READ, i)
                pending = n
                deadline = time.monotonic() + 60
                while pending and time.monotonic() < deadline:
                    for key, _ in sel.select(timeout=1):
                        i = key.data
                        data = key.fileobj.recv(4096)
                        if not data:
                            self.fail(f"connection {i} closed early after {len(got[i])} bytes")
                        got[i] += data
                        if len(got[i]) >= len(messages[i]):
                            sel.unregister(key.fileobj)
                            pending -= 1
                sel.close()
                self.assertEqual(pending, 0, f"{pending} connections did not echo within 60 s")
                bad = [i for i in range(n) if bytes(got[i]) != messages[i]]
                self.assertEqual(bad, [], f"{len(bad)} connections echoed wrong data")
                # All of them are still open at the same time.
                active = metric(fl, "faultline_proxy_connections_active", proxy="many")
                self.assertEqual(active, n, "faultline_proxy_connections_active")
                self.assertEqual(echo.accepted, n)
                print(f"\n  {n} concurrent echo connections in {time.monotonic() - start:.2f}s",
                      file=sys.stderr)
            finally:
                for s in socks:
                    s.close()
            deadline = time.monotonic() + 5
            active = None
            while time.monotonic() < deadline:
                active = metric(fl, "faultline_proxy_connections_active", proxy="many")
                if active == 0:
                    break
                time.sleep(0.1)  # pacing of a bounded poll
            self.assertEqual(active, 0, "connections still active 5 s after the clients closed")

    # -----------------------------------------------------------------------------------------
    def _assert_all_end(self, clients, t0, what):
        clients.run(3.0, stop_when_all_ended=True)
        ended = [c for c in clients.conns if c["end"]]
        lag = [round(c["end_at"] - t0, 2) for c in ended]
        self.assertEqual(len(ended), len(clients.conns),
                         f"after {what}: only {len(ended)} of {len(clients.conns)} streaming "
                         f"connections ended within 3 s")
        self.assertLess(max(lag), 2.0, f"after {what}: connections ended after {lag}s")

    def test_disable_enable_delete_under_load(self):
        with EchoServer() as echo, Faultline() as fl:
            proxy = fl.create_proxy("load", echo.address)
            port = listen_port(proxy)

            clients = StreamingClients("127.0.0.1", port, 20)
            try:
                clients.run(0.5)
                self.assertTrue(all(c["received"] > 0 and c["end"] is None for c in clients.conns),
                                [(c["received"], c["end"]) for c in clients.conns])
                t0 = time.monotonic()
                status, p, _ = fl.request("PATCH", "/proxies/load", {"enabled": False})
                self.assertEqual(status, 200, p)
                self.assertFalse(p["enabled"])
                self._assert_all_end(clients, t0, "PATCH enabled=false")
            finally:
                clients.close()
            kind = connect_outcome("127.0.0.1", port, timeout=2)
            self.assertEqual(kind, "refused", "disabled proxy must refuse new connections")

            status, p, _ = fl.request("PATCH", "/proxies/load", {"enabled": True})
            self.assertEqual(status, 200, p)
            self.assertTrue(p["enabled"])
            port = listen_port(p)
            echoed, _ = echo_roundtrip(f"127.0.0.1:{port}", b"enabled again")
            self.assertEqual(echoed, b"enabled again")

            clients = StreamingClients("127.0.0.1", port, 20)
            try:
                clients.run(0.5)
                self.assertTrue(all(c["received"] > 0 and c["end"] is None for c in clients.conns))
                t0 = time.monotonic()
                status, body, _ = fl.request("DELETE", "/proxies/load")
                self.assertEqual(status, 204, body)
                self._assert_all_end(clients, t0, "DELETE")
            finally:
                clients.close()
            kind = connect_outcome("127.0.0.1", port, timeout=2)
            self.assertEqual(kind, "refused", "deleted proxy must refuse new connections")
            status, _, _ = fl.request("GET", "/proxies/load")
            self.assertEqual(status, 404)

    def test_reenable_keeps_bound_port(self):
        """Toxiproxy replaces listen with the bound address when the proxy starts, so a proxy
        created on :0 keeps its port across disable/enable and /reset (clients hold the port)."""
        with EchoServer() as echo, Faultline() as fl:
            proxy = fl.create_proxy("sameport", echo.address)
            bound = proxy["listen"]
            port = listen_port(proxy)
            status, p, _ = fl.request("PATCH", "/proxies/sameport", {"enabled": False})
            self.assertEqual(status, 200, p)
            self.assertEqual(p["listen"], bound,
                             "PATCH {enabled:false} on a proxy created with listen 127.0.0.1:0")
            status, p, _ = fl.request("PATCH", "/proxies/sameport", {"enabled": True})
            self.assertEqual(status, 200, p)
            self.assertEqual(p["listen"], bound, "re-enabled on another port")
            echoed, _ = echo_roundtrip(f"127.0.0.1:{port}", b"same port")
            self.assertEqual(echoed, b"same port")
            status, p, _ = fl.request("PATCH", "/proxies/sameport", {"enabled": False})
            status, _, _ = fl.request("POST", "/reset")
            self.assertEqual(status, 204)
            status, p, _ = fl.request("GET", "/proxies/sameport")
            self.assertEqual(p["listen"], bound, "/reset re-enabled the proxy on another port")

    # -----------------------------------------------------------------------------------------
    def test_graceful_shutdown_connection_finishes(self):
        with EchoServer() as echo, Faultline("--shutdown-timeout-ms", "3000") as fl:
            proxy = fl.create_proxy("g", echo.address)
            port = listen_port(proxy)
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"before")
            self.assertEqual(recv_exactly(s, 6), b"before")
            t0 = time.monotonic()
            fl.proc.send_signal(signal.SIGTERM)
            # New connects are refused soon.
            kind = None
            while time.monotonic() - t0 < 1.0:
                kind = connect_outcome("127.0.0.1", port, timeout=0.5)
                if kind == "refused":
                    break
                time.sleep(0.02)  # pacing of a bounded poll
            self.assertEqual(kind, "refused", "listener still accepting 1 s after SIGTERM")
            self.assertIsNone(fl.proc.poll(), "exited although a connection was open")
            # The open connection still relays.
            s.sendall(b"after sigterm")
            self.assertEqual(recv_exactly(s, 13), b"after sigterm")
            s.shutdown(socket.SHUT_WR)
            kind, _, _ = wait_end(s, 3)
            s.close()
            self.assertEqual(kind, "eof")
            t_closed = time.monotonic()
            try:
                rc = fl.proc.wait(timeout=5)
            except Exception:
                self.fail("process did not exit within 5 s after its last connection closed")
            took = time.monotonic() - t_closed
            self.assertEqual(rc, 0, fl.logs())
            self.assertLess(took, 1.5, f"exit {took:.2f}s after the last connection closed "
                                       f"(should not wait for the 3 s deadline)")

    def test_graceful_shutdown_deadline(self):
        with EchoServer() as echo, Faultline("--shutdown-timeout-ms", "3000") as fl:
            proxy = fl.create_proxy("g2", echo.address)
            s = socket.create_connection(("127.0.0.1", listen_port(proxy)), timeout=5)
            s.sendall(b"x")
            self.assertEqual(recv_exactly(s, 1), b"x")
            t0 = time.monotonic()
            fl.proc.send_signal(signal.SIGTERM)
            try:
                rc = fl.proc.wait(timeout=5.0)
            except Exception:
                rc = None
            took = time.monotonic() - t0
            self.assertIsNotNone(rc, "process still running 5 s after SIGTERM "
                                     "(--shutdown-timeout-ms 3000)")
            self.assertEqual(rc, 0, fl.logs())
            self.assertGreater(took, 2.5, f"exited after {took:.2f}s although a connection was "
                                          f"still open (deadline 3 s)")
            kind, _, _ = wait_end(s, 2)
            s.close()
            self.assertIn(kind, ("eof", "reset"))

    # -----------------------------------------------------------------------------------------
    def test_ipv6(self):
        probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            probe.bind(("::1", 0))
        except OSError as e:
            self.skipTest(f"IPv6 loopback unavailable: bind [::1]:0 failed: {e}; "
                          f"IPv6 relay NOT tested")
        finally:
            probe.close()
        with EchoServer(family=socket.AF_INET6, host="::1") as echo, Faultline() as fl:
            proxy = fl.create_proxy("v6", echo.address, listen="[::1]:0")
            self.assertTrue(proxy["listen"].startswith("[::1]:"), proxy["listen"])
            self.assertEqual(proxy["upstream"], echo.address)
            port = listen_port(proxy)
            self.assertNotEqual(port, 0)
            payload = os.urandom(300000)
            echoed, _ = echo_roundtrip(f"[::1]:{port}", payload)
            self.assertEqual(echoed, payload)
            kind = connect_outcome("127.0.0.1", port, timeout=1)
            # Listening on [::1] only: an IPv4 connect to that port must not reach the proxy.
            self.assertNotEqual(kind, "ok", "a [::1] listener accepted an IPv4 connection")

    # -----------------------------------------------------------------------------------------
    def test_max_connections(self):
        with EchoServer() as echo, Faultline("--max-connections", "5") as fl:
            proxy = fl.create_proxy("x", echo.address)
            port = listen_port(proxy)
            conns = []
            try:
                for i in range(5):
                    s = socket.create_connection(("127.0.0.1", port), timeout=5)
                    msg = f"conn{i}".encode()
                    s.sendall(msg)
                    self.assertEqual(recv_exactly(s, len(msg)), msg, f"connection {i}")
                    conns.append(s)
                sixth = socket.create_connection(("127.0.0.1", port), timeout=5)
                try:
                    sixth.sendall(b"sixth")
                except OSError:
                    pass
                kind, elapsed, extra = wait_end(sixth, 3)
                sixth.close()
                self.assertIn(kind, ("eof", "reset"), f"6th connection: {kind}")
                self.assertEqual(extra, b"", "6th connection got data")
                self.assertLess(elapsed, 0.5, f"6th connection closed only after {elapsed:.2f}s")
                # The five are unaffected.
                for i, s in enumerate(conns):
                    s.sendall(b"still")
                    self.assertEqual(recv_exactly(s, 5), b"still", f"connection {i}")
                refused = metric(fl, "faultline_proxy_connections_refused_total",
                                 proxy="x", reason="limit")
                self.assertEqual(refused, 1,
                                 'expected faultline_proxy_connections_refused_total'
                                 '{proxy="x",reason="limit"} 1 in /metrics:\n'
                                 + "\n".join(l for l in metrics_text(fl).splitlines()
                                             if "faultline_" in l))
                # Closing one frees a slot.
                conns.pop().close()
                deadline = time.monotonic() + 3
                ok = False
                while time.monotonic() < deadline and not ok:
                    try:
                        echoed, _ = echo_roundtrip(f"127.0.0.1:{port}", b"slot", timeout=2)
                        ok = echoed == b"slot"
                    except OSError:
                        pass
                    if not ok:
                        time.sleep(0.1)  # pacing of a bounded poll
                self.assertTrue(ok, "no slot freed within 3 s after closing one of 5")
            finally:
                for s in conns:
                    s.close()

    def test_max_connections_per_proxy_field(self):
        """"max_connections" in the proxy JSON overrides --max-connections for that proxy."""
        with EchoServer() as echo, Faultline("--max-connections", "5") as fl:
            proxy = fl.create_proxy("y", echo.address, max_connections=2)
            self.assertEqual(proxy.get("max_connections"), 2, proxy)
            port = listen_port(proxy)
            conns = []
            try:
                for i in range(2):
                    s = socket.create_connection(("127.0.0.1", port), timeout=5)
                    s.sendall(b"ok")
                    self.assertEqual(recv_exactly(s, 2), b"ok")
                    conns.append(s)
                third = socket.create_connection(("127.0.0.1", port), timeout=5)
                kind, elapsed, extra = wait_end(third, 3)
                third.close()
                self.assertIn(kind, ("eof", "reset"), f"3rd connection with max_connections=2: "
                                                      f"{kind}")
                self.assertLess(elapsed, 0.5)
                self.assertEqual(metric(fl, "faultline_proxy_connections_refused_total",
                                        proxy="y", reason="limit"), 1)
            finally:
                for s in conns:
                    s.close()


class FirehoseServer(ThreadedServer):
    """Streams bytes to every client until the client goes away."""

    def handle(self, conn):
        block = b"f" * 262144
        deadline = time.time() + 20
        try:
            while time.time() < deadline:
                conn.sendall(block)
        except OSError:
            pass


class VanishingClients(unittest.TestCase):
    def test_clients_vanishing_mid_bulk_download_do_not_hurt_the_server(self):
        """A client that closes while faultline is relaying bulk data to it (the zero-copy
        path) must cost only that connection: no SIGPIPE, no crash, the API still answers."""
        with FirehoseServer() as firehose, Faultline() as fl:
            proxy = fl.create_proxy("hose", firehose.address)
            for _ in range(8):
                s = connect(proxy["listen"])
                got = 0
                while got < 4 * 1024 * 1024:
                    chunk = s.recv(262144)
                    self.assertTrue(chunk, "the stream ended early")
                    got += len(chunk)
                set_linger_zero(s)  # vanish abruptly, mid-stream
                s.close()
            wait_connections_closed(fl, "hose")  # faultline has handled every abrupt end
            self.assertIsNone(fl.proc.poll(), f"faultline died: {fl.logs()}")
            self.assertEqual(fl.request("GET", "/version")[0], 200)
            s = connect(proxy["listen"])
            self.assertTrue(s.recv(1000))
            s.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
