"""Every Toxiproxy toxic against real sockets, checked against docs/faults.md: latency
(jitter bounds, both streams, throughput kept), bandwidth, slow_close, timeout, reset_peer,
slicer, limit_data, packet_loss, noop, toxicity 0 and --seed determinism.

Run standalone: python3 tests/integration/test_toxics_semantics.py
Loopback only, port 0 everywhere; timing bounds are generous for a loaded 2-core machine.
"""
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import EchoServer, Faultline, connect, metric, poll, recv_exactly, wait_end, wait_for  # noqa: E402
from toxic_helpers import GreeterServer, SinkServer, ToxicTestCase, round_trip  # noqa: E402

SLACK = 0.06  # seconds a loaded machine may add to a delay


class Latency(ToxicTestCase):

    def _jitter_bounds(self, stream):
        self.add({"name": "lat", "type": "latency", "stream": stream,
                  "attributes": {"latency": 100, "jitter": 30}})
        sock = self.conn()
        times = [round_trip(sock, b"j%02d" % i) for i in range(20)]
        lo, hi = 0.100 - 0.030, 0.100 + 0.030 + SLACK
        for t in times:
            self.assertGreaterEqual(t, lo - 0.002, f"{stream}: round trip {t*1000:.1f} ms below latency-jitter; all: {times}")
            self.assertLessEqual(t, hi, f"{stream}: round trip {t*1000:.1f} ms above latency+jitter+slack; all: {times}")
        self.assertGreater(max(times) - min(times), 0.010, f"{stream}: jitter 30 gave no spread: {times}")
        self.assertTrue(any(t < 0.100 for t in times),
                        f"{stream}: jitter is ± but no round trip was under 100 ms: {times}")

    def test_jitter_bounds_downstream(self):
        self._jitter_bounds("downstream")

    def test_jitter_bounds_upstream(self):
        self._jitter_bounds("upstream")

    def test_latency_on_both_streams_adds_up(self):
        self.add({"name": "up", "type": "latency", "stream": "upstream", "attributes": {"latency": 100}})
        self.add({"name": "down", "type": "latency", "stream": "downstream", "attributes": {"latency": 100}})
        sock = self.conn()
        for i in range(3):
            t = round_trip(sock, b"both%d" % i)
            self.assertGreaterEqual(t, 0.200, f"round trip {t*1000:.1f} ms with 100 ms each way")
            self.assertLessEqual(t, 0.200 + SLACK * 2, f"round trip {t*1000:.1f} ms with 100 ms each way")

    def test_update_and_removal_apply_to_a_live_connection(self):
        self.add({"name": "lat", "type": "latency", "attributes": {"latency": 50}})
        sock = self.conn()
        t = round_trip(sock)
        self.assertGreaterEqual(t, 0.05)
        self.assertLess(t, 0.05 + SLACK)
        code, body, _ = self.fl.request("POST", "/proxies/p/toxics/lat", {"attributes": {"latency": 200}})
        self.assertEqual(code, 200, body)
        t = round_trip(sock)
        self.assertGreaterEqual(t, 0.2)
        self.assertLess(t, 0.2 + SLACK)
        self.remove("lat")
        self.assertLess(round_trip(sock), 0.04)

    def test_latency_keeps_throughput(self):
        """Delay counted from each chunk's arrival: 64 MiB through 100 ms upstream latency
        into a counting sink in < 1.5 s (>= ~45 MB/s even with the 100 ms, no per-chunk
        serialisation of the delay)."""
        with SinkServer() as sink:
            proxy = self.fl.create_proxy("sink", sink.address)
            self.add({"name": "lat", "type": "latency", "stream": "upstream",
                      "attributes": {"latency": 100}}, proxy="sink")
            total = 64 << 20
            block = b"\x5a" * (1 << 20)
            sock = self.conn(proxy["listen"])
            start = time.monotonic()
            for _ in range(total // len(block)):
                sock.sendall(block)
            sock.shutdown(socket.SHUT_WR)
            how, _, reply = wait_end(sock, 20)
            elapsed = time.monotonic() - start
            self.assertEqual(how, "eof")
            self.assertEqual(reply, b"%d\n" % total)
            self.assertGreaterEqual(elapsed, 0.1)
            self.assertLess(elapsed, 1.5, f"64 MiB through 100 ms latency took {elapsed:.2f} s")

    def test_4mib_echo_through_latency_is_not_throttled(self):
        self.add({"name": "lat", "type": "latency", "stream": "downstream", "attributes": {"latency": 100}})
        sock = self.conn()
        payload = os.urandom(4 << 20)
        start = time.monotonic()
        sock.sendall(payload)
        got = recv_exactly(sock, len(payload))
        elapsed = time.monotonic() - start
        self.assertEqual(got, payload)
        self.assertGreaterEqual(elapsed, 0.1)
        self.assertLess(elapsed, 0.6, f"4 MiB echo through 100 ms latency took {elapsed:.2f} s")


class Bandwidth(ToxicTestCase):

    def test_downstream_rate(self):
        self.add({"name": "bw", "type": "bandwidth", "stream": "downstream", "attributes": {"rate": 1000}})
        sock = self.conn()
        payload = os.urandom(2_000_000)
        start = time.monotonic()
        sock.sendall(payload)
        got = recv_exactly(sock, len(payload))
        elapsed = time.monotonic() - start
        self.assertEqual(got, payload)
        self.assertGreaterEqual(elapsed, 1.8, f"2 MB at 1000 KB/s took {elapsed:.2f} s")
        self.assertLessEqual(elapsed, 2.2, f"2 MB at 1000 KB/s took {elapsed:.2f} s")

    def test_rate_zero_stalls_until_updated(self):
        self.add({"name": "bw", "type": "bandwidth", "attributes": {"rate": 0}})
        sock = self.conn()
        sock.sendall(b"p" * 1000)
        how, _, data = wait_end(sock, 0.5)
        self.assertEqual((how, data), ("open", b""), "rate 0 must stall the direction")
        code, body, _ = self.fl.request("POST", "/proxies/p/toxics/bw", {"attributes": {"rate": 100}})
        self.assertEqual(code, 200, body)
        start = time.monotonic()
        self.assertEqual(recv_exactly(sock, 1000), b"p" * 1000)
        self.assertLess(time.monotonic() - start, 0.5)

    def test_upstream_rate_into_sink(self):
        with SinkServer() as sink:
            proxy = self.fl.create_proxy("sink", sink.address)
            self.add({"name": "bw", "type": "bandwidth", "stream": "upstream", "attributes": {"rate": 1000}},
                     proxy="sink")
            sock = self.conn(proxy["listen"])
            start = time.monotonic()
            sock.sendall(b"b" * 2_000_000)
            sock.shutdown(socket.SHUT_WR)
            how, _, reply = wait_end(sock, 10)
            elapsed = time.monotonic() - start
            self.assertEqual((how, reply), ("eof", b"2000000\n"))
            self.assertGreaterEqual(elapsed, 1.8, f"2 MB at 1000 KB/s took {elapsed:.2f} s")
            self.assertLessEqual(elapsed, 2.2, f"2 MB at 1000 KB/s took {elapsed:.2f} s")


class SlowClose(ToxicTestCase):

    def _greet(self, with_toxic):
        with GreeterServer(b"hello") as greeter:
            name = "greet_slow" if with_toxic else "greet"
            proxy = self.fl.create_proxy(name, greeter.address)
            if with_toxic:
                self.add({"name": "sc", "type": "slow_close", "attributes": {"delay": 500}}, proxy=name)
            start = time.monotonic()
            sock = self.conn(proxy["listen"])
            first = sock.recv(100)
            t_data = time.monotonic() - start
            how, _, rest = wait_end(sock, 5)
            t_end = time.monotonic() - start
            self.assertEqual(first + rest, b"hello")
            self.assertEqual(how, "eof")
            return t_data, t_end

    def test_fin_delayed_by_delay(self):
        t_data, t_end = self._greet(True)
        self.assertLess(t_data, 0.3, f"slow_close delayed the data ({t_data:.3f} s)")
        self.assertGreaterEqual(t_end, 0.5, f"FIN after {t_end:.3f} s with slow_close 500 ms")
        self.assertLess(t_end, 0.5 + 0.4, f"FIN after {t_end:.3f} s with slow_close 500 ms")

    def test_upstream_fin_delayed(self):
        """The client's FIN reaches the upstream `delay` later (the sink answers on EOF)."""
        with SinkServer() as sink:
            proxy = self.fl.create_proxy("sink", sink.address)
            self.add({"name": "sc", "type": "slow_close", "stream": "upstream", "attributes": {"delay": 400}},
                     proxy="sink")
            sock = self.conn(proxy["listen"])
            sock.sendall(b"abc")
            start = time.monotonic()
            sock.shutdown(socket.SHUT_WR)
            how, _, reply = wait_end(sock, 3)
            elapsed = time.monotonic() - start
            self.assertEqual((how, reply), ("eof", b"3\n"))
            self.assertGreaterEqual(elapsed, 0.39, f"upstream FIN after {elapsed:.3f} s, delay 400")
            self.assertLess(elapsed, 0.4 + 0.4)

    def test_control_without_toxic_closes_at_once(self):
        _, t_end = self._greet(False)
        self.assertLess(t_end, 0.3)


class Timeout(ToxicTestCase):

    def test_closes_on_time_and_drops_data(self):
        self.add({"name": "to", "type": "timeout", "attributes": {"timeout": 300}})
        start = time.monotonic()
        sock = self.conn()
        sock.sendall(b"dropped please")
        how, _, data = wait_end(sock, 3)
        elapsed = time.monotonic() - start
        self.assertEqual(data, b"", "timeout must drop the data")
        self.assertIn(how, ("eof", "reset"))
        self.assertGreaterEqual(elapsed, 0.28, f"closed after {elapsed:.3f} s with timeout 300")
        self.assertLess(elapsed, 0.3 + 0.5, f"closed after {elapsed:.3f} s with timeout 300")

    def test_upstream_timeout_drops_client_data(self):
        with SinkServer() as sink:
            proxy = self.fl.create_proxy("sink", sink.address)
            self.add({"name": "to", "type": "timeout", "stream": "upstream", "attributes": {"timeout": 300}},
                     proxy="sink")
            sock = self.conn(proxy["listen"])
            sock.sendall(b"x" * 5000)
            how, _, data = wait_end(sock, 3)
            self.assertIn(how, ("eof", "reset"))
            poll(lambda: sink.counts, bool, timeout=2, step=0.02)
            self.assertEqual(sink.counts, [0], "no client byte may reach the upstream")

    def test_timeout_zero_never_closes(self):
        self.add({"name": "to", "type": "timeout", "attributes": {"timeout": 0}})
        sock = self.conn()
        sock.sendall(b"into the void")
        how, elapsed, data = wait_end(sock, 1.0)
        self.assertEqual((how, data), ("open", b""))

    def test_removing_timeout_closes_connections_it_dropped_data_on(self):
        self.add({"name": "to", "type": "timeout", "attributes": {"timeout": 0}})
        sock = self.conn()
        sock.sendall(b"into the void")
        wait_for(lambda: (metric(self.fl, "faultline_toxic_bytes_dropped_total", proxy="p", toxic="to") or 0) >= 13,
                 what="the timeout toxic to drop the 13 bytes")
        self.remove("to")
        how, elapsed, data = wait_end(sock, 2.0)
        self.assertIn(how, ("eof", "reset"), "removing the timeout must close the connection")
        self.assertLess(elapsed, 1.0)


class ResetPeer(ToxicTestCase):

    def _reset_after(self, stream, timeout_ms):
        self.add({"name": "rp", "type": "reset_peer", "stream": stream, "attributes": {"timeout": timeout_ms}})
        sock = self.conn()
        start = time.monotonic()
        sock.sendall(b"first data")
        how, _, data = wait_end(sock, 3)
        elapsed = time.monotonic() - start
        self.assertEqual(how, "reset", f"expected ECONNRESET, got {how} with {data!r}")
        self.assertEqual(data, b"", "the first data is dropped")
        return elapsed

    def test_upstream_timeout_zero_resets_at_once(self):
        elapsed = self._reset_after("upstream", 0)
        self.assertLess(elapsed, 0.5)

    def test_upstream_timeout_resets_after_timeout(self):
        elapsed = self._reset_after("upstream", 400)
        self.assertGreaterEqual(elapsed, 0.38, f"reset after {elapsed:.3f} s, timeout 400")
        self.assertLess(elapsed, 0.4 + 0.5, f"reset after {elapsed:.3f} s, timeout 400")

    def test_downstream_timeout_resets_after_timeout(self):
        elapsed = self._reset_after("downstream", 300)
        self.assertGreaterEqual(elapsed, 0.28, f"reset after {elapsed:.3f} s, timeout 300")
        self.assertLess(elapsed, 0.3 + 0.5, f"reset after {elapsed:.3f} s, timeout 300")


class Slicer(ToxicTestCase):

    def test_data_intact_in_several_pieces_with_delay(self):
        self.add({"name": "sl", "type": "slicer",
                  "attributes": {"average_size": 100, "size_variation": 50, "delay": 10000}})
        sock = self.conn()
        payload = os.urandom(2000)
        start = time.monotonic()
        sock.sendall(payload)
        pieces = []
        got = 0
        deadline = start + 5
        while got < len(payload) and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            pieces.append(chunk)
            got += len(chunk)
        elapsed = time.monotonic() - start
        self.assertEqual(b"".join(pieces), payload)
        self.assertGreaterEqual(len(pieces), 5, f"2000 bytes in slices of ~100 arrived in {len(pieces)} recv()s")
        self.assertTrue(all(len(p) <= 2000 for p in pieces))
        # at least 2000/150 - 1 = 12 gaps of 10 ms
        self.assertGreaterEqual(elapsed, 0.10, f"slices 10 ms apart but all arrived in {elapsed:.3f} s")
        self.assertLess(elapsed, 2.0)


class LimitData(ToxicTestCase):

    def test_downstream_exactly_n_bytes(self):
        self.add({"name": "ld", "type": "limit_data", "attributes": {"bytes": 1234}})
        sock = self.conn()
        sock.sendall(b"y" * 5000)
        how, _, data = wait_end(sock, 3)
        self.assertEqual(len(data), 1234)
        self.assertIn(how, ("eof", "reset"))

    def test_upstream_exactly_n_bytes_reach_the_server(self):
        with SinkServer() as sink:
            proxy = self.fl.create_proxy("sink", sink.address)
            self.add({"name": "ld", "type": "limit_data", "stream": "upstream", "attributes": {"bytes": 1000}},
                     proxy="sink")
            sock = self.conn(proxy["listen"])
            try:
                for _ in range(5):
                    sock.sendall(b"u" * 1000)
                    time.sleep(0.02)  # deliberate: separate chunks, so the limit falls between them
            except OSError:
                pass
            how, _, _ = wait_end(sock, 3)
            self.assertIn(how, ("eof", "reset"))
            poll(lambda: sink.counts, bool, timeout=2, step=0.02)
            self.assertEqual(sink.counts, [1000])


class PacketLoss(ToxicTestCase):

    def _send_chunks(self, sock, n=5, size=500):
        for i in range(n):
            sock.sendall(bytes([65 + i]) * size)
            time.sleep(0.05)  # deliberate: one chunk each, as packet_loss rolls per chunk

    def test_loss_rate_one_drops_everything(self):
        self.add({"name": "pl", "type": "packet_loss", "attributes": {"loss_rate": 1}})
        sock = self.conn()
        self._send_chunks(sock)
        how, _, data = wait_end(sock, 1.0)
        self.assertEqual((how, data), ("open", b""))

    def test_loss_rate_zero_passes_everything(self):
        self.add({"name": "pl", "type": "packet_loss", "attributes": {"loss_rate": 0}})
        sock = self.conn()
        self._send_chunks(sock)
        got = recv_exactly(sock, 2500)
        self.assertEqual(got, b"".join(bytes([65 + i]) * 500 for i in range(5)))


class NoopAndToxicityZero(ToxicTestCase):

    def test_noop_passes_everything(self):
        self.add({"name": "nop", "type": "noop"})
        sock = self.conn()
        payload = os.urandom(100_000)
        start = time.monotonic()
        sock.sendall(payload)
        self.assertEqual(recv_exactly(sock, len(payload)), payload)
        self.assertLess(time.monotonic() - start, 0.5)

    def test_toxicity_zero_latency_has_no_effect(self):
        self.add({"name": "lat", "type": "latency", "toxicity": 0, "attributes": {"latency": 500}})
        for _ in range(3):
            sock = self.conn()
            self.assertLess(round_trip(sock), 0.25)

    def test_toxicity_zero_timeout_limit_data_reset_peer_have_no_effect(self):
        self.add({"name": "to", "type": "timeout", "toxicity": 0, "attributes": {"timeout": 0}})
        self.add({"name": "ld", "type": "limit_data", "toxicity": 0, "attributes": {"bytes": 10}})
        self.add({"name": "rp", "type": "reset_peer", "stream": "upstream", "toxicity": 0,
                  "attributes": {"timeout": 0}})
        self.add({"name": "pl", "type": "packet_loss", "toxicity": 0, "attributes": {"loss_rate": 1}})
        sock = self.conn()
        payload = os.urandom(1000)
        sock.sendall(payload)
        self.assertEqual(recv_exactly(sock, 1000), payload)
        self.assertLess(round_trip(sock), 0.25)


class Seed(unittest.TestCase):
    """--seed: the same seed and the same sequence of connections give the same faults."""

    def _pattern(self, seed, echo):
        with Faultline("--seed", str(seed)) as fl:
            proxy = fl.create_proxy("seeded", echo.address)
            status, body, _ = fl.request("POST", "/proxies/seeded/toxics",
                                         {"name": "lat", "type": "latency", "toxicity": 0.5,
                                          "attributes": {"latency": 120}})
            self.assertEqual(status, 200, body)
            pattern = []
            for i in range(40):
                s = connect(proxy["listen"])
                try:
                    round_trip(s, b"s")
                    # Which connections the toxicity roll picked, as the server reports it
                    # (no timing involved, so a busy machine cannot blur the pattern).
                    status, conns, _ = fl.request("GET", "/proxies/seeded/connections")
                    self.assertEqual(status, 200)
                    self.assertEqual(len(conns), 1, conns)
                    pattern.append(1 if "lat" in conns[0]["toxics"]["downstream"] else 0)
                finally:
                    s.close()
                deadline = time.time() + 5  # wait until the server saw the close
                while fl.request("GET", "/proxies/seeded/connections")[1] and time.time() < deadline:
                    time.sleep(0.005)  # pacing of a bounded poll
            return pattern

    def test_same_seed_same_pattern_other_seed_other_pattern(self):
        with EchoServer() as echo:
            a = self._pattern(42, echo)
            b = self._pattern(42, echo)
            c = self._pattern(43, echo)
        self.assertTrue(0 < sum(a) < 40, f"toxicity 0.5 on 40 connections gave {sum(a)} delayed")
        self.assertEqual(a, b, "same --seed, same connection sequence: patterns must match")
        self.assertNotEqual(a, c, "--seed 43 gave exactly the pattern of --seed 42")


if __name__ == "__main__":
    unittest.main()
