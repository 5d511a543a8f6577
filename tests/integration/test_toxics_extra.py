"""The faults beyond Toxiproxy (docs/faults.md, "Beyond Toxiproxy" and "Seeing what faults
did") against real sockets: latency distributions and correlation, stream "both", slow_open,
limit_time, blackhole, corrupt, drop_connections, shared_bandwidth, the generic attributes
dice and schedule, attribute validation, per-toxic metrics and GET /proxies/{p}/connections.

Run standalone: python3 tests/integration/test_toxics_extra.py
Loopback only, port 0 everywhere; timing bounds are generous for a loaded 2-core machine.
"""
import os
import socket
import statistics
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Faultline, client_address, connect, metric, poll, proxy_connections,  # noqa: E402
                     recv_exactly, wait_end, wait_for)
from toxic_helpers import SinkServer, ToxicTestCase, round_trip  # noqa: E402


# ---------------------------------------------------------------------------------------------
# latency: distributions, correlation, stream "both"

class LatencyDistributions(ToxicTestCase):

    def _samples(self, distribution, n=60, **extra):
        attrs = {"latency": 50, "jitter": 20, "distribution": distribution}
        attrs.update(extra)
        resp = self.add({"name": "lat", "type": "latency", "attributes": attrs})
        self.assertEqual(resp["attributes"].get("distribution"), distribution,
                         f"a set distribution must show in the response: {resp}")
        sock = self.conn()
        return [round_trip(sock, b"d") * 1000 for _ in range(n)]

    def _check_mean(self, distribution, ms):
        mean = statistics.mean(ms)
        self.assertGreaterEqual(mean, 40, f"{distribution}: mean {mean:.1f} ms, samples {sorted(ms)}")
        self.assertLessEqual(mean, 80, f"{distribution}: mean {mean:.1f} ms, samples {sorted(ms)}")
        self.assertGreater(max(ms) - min(ms), 5, f"{distribution}: jitter 20 gave no spread: {sorted(ms)}")

    def test_normal(self):
        ms = self._samples("normal")
        self._check_mean("normal", ms)

    def test_pareto_mean_and_long_tail(self):
        ms = self._samples("pareto")
        self._check_mean("pareto", ms)
        self.assertGreater(max(ms), statistics.median(ms) + 5,
                           f"pareto: max {max(ms):.1f} not above median {statistics.median(ms):.1f}")

    def test_lognormal(self):
        self._check_mean("lognormal", self._samples("lognormal"))

    def test_paretonormal(self):
        self._check_mean("paretonormal", self._samples("paretonormal"))

    def test_uniform_is_the_default_and_explicit_uniform_works(self):
        resp = self.add({"name": "lat", "type": "latency",
                         "attributes": {"latency": 50, "jitter": 0, "distribution": "uniform"}})
        self.assertEqual(resp["attributes"]["latency"], 50)
        sock = self.conn()
        t = round_trip(sock)
        self.assertGreaterEqual(t, 0.050)
        self.assertLess(t, 0.050 + 0.06)

    def test_correlation_accepted(self):
        ms = self._samples("normal", n=20, correlation=0.5)
        code, toxic, _ = self.fl.request("GET", "/proxies/p/toxics/lat")
        self.assertEqual(code, 200)
        self.assertEqual(toxic["attributes"].get("correlation"), 0.5, toxic)
        self.assertTrue(all(0 <= x < 300 for x in ms), ms)

    def test_correlation_one_repeats_the_delay(self):
        """c x previous + (1 - c) x fresh with c = 1: every delay equals the first one."""
        ms = self._samples("normal", n=12, correlation=1)
        med = statistics.median(ms)
        close = sum(1 for x in ms if abs(x - med) <= 6)
        self.assertGreaterEqual(close, 10, f"correlation 1 should repeat one delay: {ms}")

    def test_correlation_out_of_range_refused(self):
        code, body, _ = self.fl.request("POST", "/proxies/p/toxics", {
            "name": "lat", "type": "latency", "attributes": {"latency": 50, "jitter": 20, "correlation": 1.5}})
        self.assertEqual(code, 400, body)
        self.assertIn("correlation", body["error"])


class StreamBoth(ToxicTestCase):

    def test_both_gives_round_trip_latency_and_is_listed_and_removable(self):
        resp = self.add({"name": "lb", "type": "latency", "stream": "both", "attributes": {"latency": 50}})
        self.assertEqual(resp["name"], "lb")
        sock = self.conn()
        for _ in range(3):
            t = round_trip(sock)
            self.assertGreaterEqual(t, 0.100, f"stream both, latency 50: round trip {t*1000:.1f} ms")
            self.assertLess(t, 0.100 + 0.1, f"stream both, latency 50: round trip {t*1000:.1f} ms")
        code, listed, _ = self.fl.request("GET", "/proxies/p/toxics")
        self.assertEqual(code, 200)
        self.assertIn("lb", [t["name"] for t in listed], listed)
        code, conns, _ = self.fl.request("GET", "/proxies/p/connections")
        self.assertEqual(code, 200, conns)
        self.assertEqual([c["toxics"] for c in conns], [{"upstream": ["lb"], "downstream": ["lb"]}],
                         "one fault, an instance on each direction")
        code, one, _ = self.fl.request("GET", "/proxies/p/toxics/lb")
        self.assertEqual(code, 200, one)
        code, proxy, _ = self.fl.request("GET", "/proxies/p")
        self.assertIn("lb", [t["name"] for t in proxy["toxics"]], proxy)
        self.remove("lb")
        code, listed, _ = self.fl.request("GET", "/proxies/p/toxics")
        self.assertEqual(listed, [], "removing a stream-both fault removes both directions")
        t = round_trip(sock)
        self.assertLess(t, 0.05, f"after removal the round trip took {t*1000:.1f} ms")
        t = round_trip(self.conn())
        self.assertLess(t, 0.05, f"after removal a new connection's round trip took {t*1000:.1f} ms")


class AtCreation(ToxicTestCase):
    """New fault types (and stream "both") in POST /proxies and /populate."""

    def test_create_proxy_with_new_faults(self):
        code, proxy, _ = self.fl.request("POST", "/proxies", {
            "name": "c", "listen": "127.0.0.1:0", "upstream": self.echo.address,
            "toxics": [{"name": "so", "type": "slow_open", "attributes": {"delay": 200}},
                       {"name": "lb", "type": "latency", "stream": "both", "attributes": {"latency": 30}}]})
        self.assertEqual(code, 201, proxy)
        self.assertEqual([t["name"] for t in proxy["toxics"]], ["so", "lb"], proxy)
        sock = self.conn(proxy["listen"])
        first = round_trip(sock)
        self.assertGreaterEqual(first, 0.2 + 0.06, f"slow_open 200 + 2 x latency 30: {first*1000:.1f} ms")
        self.assertLess(first, 0.26 + 0.3)
        later = round_trip(sock)
        self.assertGreaterEqual(later, 0.06)
        self.assertLess(later, 0.06 + 0.1)

    def test_populate_with_new_faults(self):
        code, body, _ = self.fl.request("POST", "/populate", [
            {"name": "d", "listen": "127.0.0.1:0", "upstream": self.echo.address,
             "toxics": [{"name": "bh", "type": "blackhole", "stream": "both"}]}])
        self.assertEqual(code, 201, body)
        sock = self.conn(body["proxies"][0]["listen"])
        sock.sendall(b"x" * 100)
        how, _, data = wait_end(sock, 1.0)
        self.assertEqual((how, data), ("open", b""))
        code, body, _ = self.fl.request("POST", "/populate", [
            {"name": "e", "listen": "127.0.0.1:0", "upstream": self.echo.address,
             "toxics": [{"name": "bad", "type": "corrupt", "attributes": {"probability": 3}}]}])
        self.assertEqual(code, 400, body)
        self.assertIn("probability", body["error"])
        self.assertEqual(self.fl.request("GET", "/proxies/e")[0], 404, "an invalid populate changes nothing")


# ---------------------------------------------------------------------------------------------
# slow_open, limit_time, blackhole, corrupt

class SlowOpen(ToxicTestCase):

    def _check(self, stream):
        self.add({"name": "so", "type": "slow_open", "stream": stream, "attributes": {"delay": 300}})
        for _ in range(2):  # per connection
            sock = self.conn()
            first = round_trip(sock, b"first")
            self.assertGreaterEqual(first, 0.29, f"{stream}: first byte after {first*1000:.1f} ms, delay 300")
            self.assertLess(first, 0.3 + 0.3, f"{stream}: first byte after {first*1000:.1f} ms, delay 300")
            for i in range(3):
                t = round_trip(sock, b"later%d" % i)
                self.assertLess(t, 0.1, f"{stream}: later data delayed {t*1000:.1f} ms")

    def test_downstream_first_data_delayed_rest_not(self):
        self._check("downstream")

    def test_upstream_first_data_delayed_rest_not(self):
        self._check("upstream")


class LimitTime(ToxicTestCase):

    def test_closes_after_time_while_data_flowed(self):
        self.add({"name": "lt", "type": "limit_time", "attributes": {"time": 600}})
        start = time.monotonic()
        sock = self.conn()
        sock.settimeout(2)
        ok, how = 0, "open"
        while time.monotonic() - start < 3:
            try:
                sock.sendall(b"t")
                data = sock.recv(1)
            except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
                how = "reset"
                break
            except socket.timeout:
                how = "stalled"
                break
            if not data:
                how = "eof"
                break
            ok += 1
            time.sleep(0.04)  # pacing: round trips spread over the toxic's 600 ms, which the test measures
        closed_at = time.monotonic() - start
        self.assertIn(how, ("eof", "reset"), f"limit_time 600: connection {how} after {closed_at:.2f} s")
        self.assertGreaterEqual(ok, 5, f"only {ok} round trips before the close")
        self.assertGreaterEqual(closed_at, 0.57, f"closed after {closed_at:.3f} s, time 600")
        self.assertLess(closed_at, 0.6 + 0.4, f"closed after {closed_at:.3f} s, time 600")

    def test_connections_started_later_get_their_own_time(self):
        self.add({"name": "lt", "type": "limit_time", "attributes": {"time": 400}})
        time.sleep(0.5)  # deliberate: more than the toxic's 400 ms passes before this connection opens
        start = time.monotonic()
        sock = self.conn()
        self.assertLess(round_trip(sock), 0.1, "a new connection must work at first")
        how, _, _ = wait_end(sock, 2)
        elapsed = time.monotonic() - start
        self.assertIn(how, ("eof", "reset"))
        self.assertGreaterEqual(elapsed, 0.38)
        self.assertLess(elapsed, 0.4 + 0.4)


class Blackhole(ToxicTestCase):

    def _check(self, stream):
        resp = self.add({"name": "bh", "type": "blackhole", "stream": stream})
        self.assertEqual(resp["type"], "blackhole")
        sock = self.conn()
        for _ in range(3):
            sock.sendall(b"x" * 1000)
            time.sleep(0.05)  # pacing: separate chunks for the blackhole to swallow, not a wait for state
        how, elapsed, data = wait_end(sock, 1.2)
        self.assertEqual((how, data), ("open", b""), f"{stream} blackhole: {how} with {len(data)} bytes")
        sock.sendall(b"still writable")

    def test_downstream(self):
        self._check("downstream")

    def test_upstream(self):
        self._check("upstream")

    def test_removing_it_never_leaves_a_hung_connection(self):
        """faults.md does not say what removal does to a connection that lost data (timeout
        closes it); either it is closed or new data flows, never a silent hang. New
        connections are clean."""
        self.add({"name": "bh", "type": "blackhole"})
        sock = self.conn()
        sock.sendall(b"lost")
        # The toxic's own counter, not /connections' bytes_upstream: bytes read but still queued
        # ahead of the chain would be released by the removal, and this test is about lost data.
        wait_for(lambda: (metric(self.fl, "faultline_toxic_bytes_dropped_total", proxy="p", toxic="bh") or 0) >= 4,
                 what="the blackhole to swallow the 4 bytes")
        self.remove("bh")
        try:
            sock.sendall(b"found")
        except (ConnectionResetError, BrokenPipeError):
            pass
        how, _, data = wait_end(sock, 1.5, upto=5)
        self.assertIn(how, ("data", "eof", "reset"), f"after removal: {how} with {data!r}")
        if how == "data":
            self.assertEqual(data, b"found")
        self.assertLess(round_trip(self.conn(), b"fresh"), 0.2)


class Corrupt(ToxicTestCase):

    def _echo_through(self, probability, n=20000):
        self.add({"name": "cr", "type": "corrupt", "attributes": {"probability": probability}})
        sock = self.conn()
        payload = os.urandom(n)
        sock.sendall(payload)
        got = recv_exactly(sock, n)
        self.assertEqual(len(got), n, "corrupt must keep the length")
        return payload, got

    def test_probability_one_flips_one_bit_in_every_byte(self):
        sent, got = self._echo_through(1)
        diffs = [a ^ b for a, b in zip(sent, got)]
        same = sum(1 for d in diffs if d == 0)
        self.assertEqual(same, 0, f"{same} of {len(sent)} bytes unchanged with probability 1")
        multi = sum(1 for d in diffs if bin(d).count("1") != 1)
        self.assertEqual(multi, 0, f"{multi} bytes had more than one bit flipped")

    def test_probability_zero_is_intact(self):
        sent, got = self._echo_through(0)
        self.assertEqual(got, sent)

    def test_probability_half_flips_about_half(self):
        sent, got = self._echo_through(0.5)
        changed = sum(1 for a, b in zip(sent, got) if a != b)
        self.assertGreater(changed, 0.4 * len(sent), changed)
        self.assertLess(changed, 0.6 * len(sent), changed)


# ---------------------------------------------------------------------------------------------
# drop_connections, shared_bandwidth

def outcome(address, timeout=2.0):
    """'kept' if a small echo comes back, else 'eof' / 'reset' / 'open'."""
    try:
        s = connect(address, timeout=timeout)
    except (ConnectionResetError, ConnectionAbortedError):
        return "reset"
    try:
        try:
            s.sendall(b"ping")
        except (ConnectionResetError, BrokenPipeError):
            return "reset"
        how, _, data = wait_end(s, timeout, upto=4)
        return "kept" if data == b"ping" else how
    finally:
        s.close()


class DropConnections(ToxicTestCase):

    def _end_of_new_connection(self, address=None, timeout=1.5):
        """(how, elapsed) for a new connection that is expected to be dropped; an RST can
        already fail connect() itself when it comes fast enough."""
        start = time.monotonic()
        try:
            sock = self.conn(address)
        except (ConnectionResetError, ConnectionAbortedError):
            return "reset", time.monotonic() - start, b""
        how, _, data = wait_end(sock, timeout)
        return how, time.monotonic() - start, data

    def test_first_two_reset_third_works_existing_untouched(self):
        before = self.conn()
        self.warm(before)
        resp = self.add({"name": "dc", "type": "drop_connections", "attributes": {"first": 2, "mode": "reset"}})
        self.assertEqual(resp["attributes"].get("mode"), "reset", resp)
        self.assertEqual(resp["attributes"].get("first"), 2, resp)
        for i in range(2):
            how, elapsed, data = self._end_of_new_connection()
            self.assertEqual(how, "reset", f"connection {i + 1} of first=2 mode=reset: {how} {data!r}")
            self.assertLess(elapsed, 0.5, "dropped connections are reset at once")
        for i in range(2):
            sock = self.conn()
            self.assertLess(round_trip(sock, b"third"), 0.2, f"connection {i + 3} must work")
        self.assertLess(round_trip(before, b"old"), 0.2, "a connection from before the fault is untouched")

    def test_mode_close_sends_fin(self):
        self.add({"name": "dc", "type": "drop_connections", "attributes": {"mode": "close"}})
        for i in range(3):  # first 0 = every new connection
            how, elapsed, data = self._end_of_new_connection()
            self.assertEqual((how, data), ("eof", b""), f"connection {i + 1} with mode close: {how}")
            self.assertLess(elapsed, 0.5)
        self.remove("dc")
        self.assertLess(round_trip(self.conn()), 0.2)

    def test_default_mode_is_close(self):
        self.add({"name": "dc", "type": "drop_connections"})
        how, _, _ = self._end_of_new_connection()
        self.assertEqual(how, "eof")

    def test_nothing_reaches_the_upstream(self):
        with SinkServer() as sink:
            proxy = self.fl.create_proxy("sink", sink.address)
            self.add({"name": "dc", "type": "drop_connections", "attributes": {"mode": "reset"}}, proxy="sink")
            try:
                sock = self.conn(proxy["listen"])
                sock.sendall(b"x" * 1000)
                wait_end(sock, 1.0)
            except OSError:
                pass
            # Once the session is gone nothing more can reach the upstream.
            wait_for(lambda: proxy_connections(self.fl, "sink") == [], what="the dropped connection to leave /connections")
            self.assertTrue(all(c == 0 for c in sink.counts), f"upstream got bytes: {sink.counts}")


class DropConnectionsSeeded(ToxicTestCase):
    SERVE_ARGS = ("--seed", "42")

    def _pattern(self, name):
        self.add({"name": "dc", "type": "drop_connections", "attributes": {"fraction": 0.5}}, proxy=name)
        return [outcome(self.proxies[name]) for _ in range(40)]

    def test_fraction_half_drops_about_half_reproducibly(self):
        self.proxies = {}
        self.proxies["a"] = self.fl.create_proxy("a", self.echo.address)["listen"]
        a = self._pattern("a")
        self.assertTrue(set(a) <= {"kept", "eof", "reset"}, a)
        dropped = sum(1 for x in a if x != "kept")
        self.assertGreaterEqual(dropped, 10, f"fraction 0.5 dropped {dropped} of 40: {a}")
        self.assertLessEqual(dropped, 30, f"fraction 0.5 dropped {dropped} of 40: {a}")
        # Same seed, a fresh server, same proxy name and toxic name: same decisions.
        self.fl.__exit__(None, None, None)
        self.fl = Faultline(*self.SERVE_ARGS)
        self.proxies = {"a": self.fl.create_proxy("a", self.echo.address)["listen"]}
        b = self._pattern("a")
        self.assertEqual([x == "kept" for x in a], [x == "kept" for x in b],
                         "same --seed and connection sequence must drop the same connections")


class SharedBandwidth(ToxicTestCase):

    def test_two_connections_share_one_budget(self):
        self.add({"name": "sb", "type": "shared_bandwidth", "attributes": {"rate": 1000}})
        socks = [self.conn(timeout=10) for _ in range(2)]
        payloads = [os.urandom(1_000_000) for _ in range(2)]
        results, done = [None, None], [None, None]

        def run(i):
            start = time.monotonic()
            socks[i].sendall(payloads[i])
            results[i] = recv_exactly(socks[i], len(payloads[i]))
            done[i] = time.monotonic() - start

        start = time.monotonic()
        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=15)
        total = time.monotonic() - start
        for i in range(2):
            self.assertEqual(results[i], payloads[i], f"connection {i} data")
        self.assertGreaterEqual(total, 1.8, f"2 x 1 MB through a shared 1000 KB/s took {total:.2f} s "
                                            f"(per connection {done})")
        self.assertLessEqual(total, 2.3, f"2 x 1 MB through a shared 1000 KB/s took {total:.2f} s")

    def test_single_connection_gets_the_whole_rate(self):
        self.add({"name": "sb", "type": "shared_bandwidth", "attributes": {"rate": 1000}})
        sock = self.conn()
        payload = os.urandom(1_000_000)
        start = time.monotonic()
        sock.sendall(payload)
        self.assertEqual(recv_exactly(sock, len(payload)), payload)
        elapsed = time.monotonic() - start
        self.assertGreaterEqual(elapsed, 0.9, f"1 MB at 1000 KB/s took {elapsed:.2f} s")
        self.assertLessEqual(elapsed, 1.15, f"1 MB at 1000 KB/s took {elapsed:.2f} s")


# ---------------------------------------------------------------------------------------------
# generic attributes: dice, schedule

class Dice(ToxicTestCase):

    def test_chunk_dice_rolls_per_chunk(self):
        resp = self.add({"name": "lat", "type": "latency", "toxicity": 0.5,
                         "attributes": {"latency": 150, "dice": "chunk"}})
        self.assertEqual(resp["attributes"].get("dice"), "chunk", resp)
        sock = self.conn()
        times = [round_trip(sock, b"c") for _ in range(30)]
        delayed = sum(1 for t in times if t >= 0.075)
        self.assertGreater(delayed, 0, f"no round trip delayed: {times}")
        self.assertLess(delayed, 30, f"every round trip delayed: {times}")

    def test_connection_dice_is_the_default_one_roll_per_connection(self):
        resp = self.add({"name": "lat", "type": "latency", "toxicity": 0.5, "attributes": {"latency": 100}})
        self.assertNotIn("dice", resp["attributes"], "generic attributes show only when set")
        for c in range(8):
            sock = self.conn()
            pattern = [round_trip(sock, b"k") >= 0.05 for _ in range(4)]
            self.assertEqual(len(set(pattern)), 1, f"connection {c}: mixed delays with dice connection: {pattern}")
            sock.close()


class Schedule(ToxicTestCase):

    def _run(self, seconds):
        sock = self.conn()
        self.warm(sock)
        start = time.monotonic()
        out = []
        while time.monotonic() - start < seconds and len(out) < 200:
            at = time.monotonic() - start
            out.append((at, round_trip(sock, b"s")))
            time.sleep(0.02)  # pacing: samples spread over the schedule the test measures
        return out

    def test_windows_alternate(self):
        resp = self.add({"name": "lat", "type": "latency",
                         "attributes": {"latency": 100, "schedule": {"after": 0, "for": 300, "every": 600}}})
        self.assertEqual(resp["attributes"].get("schedule"), {"after": 0, "for": 300, "every": 600}, resp)
        out = self._run(1.6)
        delayed = [round(at, 2) for at, t in out if t >= 0.05]
        fast = [round(at, 2) for at, t in out if t < 0.05]
        self.assertTrue(delayed, f"no delayed round trip in 1.6 s: {out}")
        self.assertTrue(fast, f"no undelayed round trip in 1.6 s: {out}")
        # The second window (600..900 ms) must show up too: the schedule repeats.
        self.assertTrue(any(at >= 0.55 for at in delayed), f"no delay after the first window: {out}")

    def test_after_delays_the_start(self):
        self.add({"name": "lat", "type": "latency",
                  "attributes": {"latency": 100, "schedule": {"after": 500, "for": 0, "every": 0}}})
        out = self._run(1.2)
        early = [t for at, t in out if at < 0.35]
        late = [t for at, t in out if at > 0.75]
        self.assertTrue(early and late, out)
        self.assertTrue(all(t < 0.05 for t in early), f"delayed before 'after': {out}")
        self.assertTrue(all(t >= 0.1 for t in late), f"not delayed after 'after': {out}")


class ScheduledOutage(ToxicTestCase):
    """faults.md's example: a timeout toxic in a schedule window takes the service away."""

    def test_timeout_window_closes_existing_and_new_connections_then_heals(self):
        self.add({"name": "down", "type": "timeout",
                         "attributes": {"timeout": 1, "schedule": {"after": 400, "for": 400, "every": 0}}})
        t0 = time.monotonic()
        before = self.conn()
        self.assertLess(round_trip(before), 0.1, "before the window the service works")
        time.sleep(max(0, 0.55 - (time.monotonic() - t0)))  # deliberate: into the 400-800 ms window
        try:
            before.sendall(b"in window")
        except OSError:
            pass
        how, _, data = wait_end(before, 1.0)
        self.assertIn(how, ("eof", "reset"), f"an existing connection in the window: {how} {data!r}")
        self.assertLess(time.monotonic() - t0, 0.8 + 0.3)
        if time.monotonic() - t0 < 0.7:
            try:
                during = self.conn()
                during.sendall(b"x")
                how, _, data = wait_end(during, 0.5)
                self.assertIn(how, ("eof", "reset"), f"a new connection in the window: {how} {data!r}")
            except (ConnectionResetError, BrokenPipeError):
                pass
        time.sleep(max(0, 1.0 - (time.monotonic() - t0)))  # deliberate: past the window's end at 800 ms
        self.assertLess(round_trip(self.conn()), 0.1, "after the window new connections work")


# ---------------------------------------------------------------------------------------------
# validation

class Validation(ToxicTestCase):

    def _refused(self, body, word):
        code, resp, _ = self.fl.request("POST", "/proxies/p/toxics", body)
        self.assertEqual(code, 400, f"{body} -> {code} {resp}")
        self.assertIsInstance(resp, dict, resp)
        self.assertIn(word, resp.get("error", ""), f"{body}: error must name {word!r}: {resp}")
        self.assertEqual(resp.get("status"), 400)

    def test_bad_attributes_are_refused_naming_the_attribute(self):
        self._refused({"name": "a", "type": "latency", "attributes": {"latency": 10, "distribution": "gaussianish"}},
                      "distribution")
        self._refused({"name": "b", "type": "corrupt", "attributes": {"probability": 2}}, "probability")
        self._refused({"name": "c", "type": "latency",
                       "attributes": {"latency": 10, "schedule": {"after": 0, "for": -1, "every": 0}}}, "for")
        self._refused({"name": "d", "type": "drop_connections", "attributes": {"mode": "explode"}}, "mode")
        self._refused({"name": "e", "type": "latency", "toxicity": 0.5,
                       "attributes": {"latency": 10, "dice": "sometimes"}}, "dice")
        self._refused({"name": "f", "type": "drop_connections", "attributes": {"fraction": 1.5}}, "fraction")
        self._refused({"name": "g", "type": "shared_bandwidth", "attributes": {"rate": -1}}, "rate")
        self._refused({"name": "h", "type": "limit_time", "attributes": {"time": -5}}, "time")
        self._refused({"name": "i", "type": "slow_open", "attributes": {"delay": -5}}, "delay")
        code, listed, _ = self.fl.request("GET", "/proxies/p/toxics")
        self.assertEqual((code, listed), (200, []), "a refused toxic must not be added")

    def test_update_with_a_bad_value_is_refused_and_keeps_the_toxic(self):
        self.add({"name": "cr", "type": "corrupt", "attributes": {"probability": 0.1}})
        code, resp, _ = self.fl.request("POST", "/proxies/p/toxics/cr", {"attributes": {"probability": 2}})
        self.assertEqual(code, 400, resp)
        self.assertIn("probability", resp["error"])
        code, toxic, _ = self.fl.request("GET", "/proxies/p/toxics/cr")
        self.assertEqual(toxic["attributes"]["probability"], 0.1)

    def test_new_types_accepted_with_defaults(self):
        for t in ("slow_open", "blackhole", "corrupt", "drop_connections", "shared_bandwidth"):
            resp = self.add({"name": t, "type": t, "toxicity": 0})
            self.assertEqual((resp["name"], resp["type"], resp["stream"]), (t, t, "downstream"))

    def test_limit_time_needs_a_time(self):
        # time 0 would close every connection at once: refused, naming the attribute.
        code, resp, _ = self.fl.request("POST", "/proxies/p/toxics", {"type": "limit_time"})
        self.assertEqual(code, 400, resp)
        self.assertIn("time", resp["error"])
        self.add({"name": "lt", "type": "limit_time", "attributes": {"time": 1000}})

    def test_unknown_schedule_key_is_refused(self):
        code, resp, _ = self.fl.request("POST", "/proxies/p/toxics", {
            "type": "latency", "attributes": {"latency": 1, "schedule": {"for": 100, "evry": 200}}})
        self.assertEqual(code, 400, resp)
        self.assertIn("schedule.evry", resp["error"])


# ---------------------------------------------------------------------------------------------
# metrics and the connections listing

class ToxicMetrics(ToxicTestCase):

    def _m(self, name, toxic, **labels):
        return metric(self.fl, name, proxy="p", toxic=toxic, **labels)

    def test_connections_total_counts_connections_it_applied_to(self):
        self.add({"name": "lat", "type": "latency", "attributes": {"latency": 1}})
        for _ in range(3):
            s = self.conn()
            self.warm(s)
        first = poll(lambda: self._m("faultline_toxic_connections_total", "lat", type="latency"),
                     lambda v: v is not None and v >= 3)
        self.assertIsNotNone(first, "faultline_toxic_connections_total{proxy,toxic,type} missing")
        self.assertGreaterEqual(first, 3)
        for _ in range(2):
            s = self.conn()
            self.warm(s)
        second = poll(lambda: self._m("faultline_toxic_connections_total", "lat", type="latency"),
                      lambda v: v is not None and v >= first + 2)
        self.assertGreaterEqual(second, first + 2)

    def test_toxicity_zero_does_not_count(self):
        self.add({"name": "never", "type": "latency", "toxicity": 0, "attributes": {"latency": 1}})
        s = self.conn()
        self.warm(s)
        # The draw is made when the chains are built; /connections lists the result.
        wait_for(lambda: [c for c in proxy_connections(self.fl, "p")
                          if c.get("client") == client_address(s) and c.get("toxics") is not None],
                 what="the connection, with its toxicity draw, in /connections")
        v = self._m("faultline_toxic_connections_total", "never")
        self.assertIn(v, (None, 0.0), "a toxic that did not apply (toxicity 0) counted a connection")

    def _dropped(self, body):
        self.add(body)
        s = self.conn()
        s.sendall(b"x" * 1000)
        v = poll(lambda: self._m("faultline_toxic_bytes_dropped_total", body["name"]),
                 lambda v: v is not None and v >= 1000)
        self.assertIsNotNone(v, f"faultline_toxic_bytes_dropped_total missing for {body['type']}")
        self.assertGreaterEqual(v, 1000, f"{body['type']} dropped 1000 bytes, metric says {v}")

    def test_bytes_dropped_by_timeout(self):
        self._dropped({"name": "to", "type": "timeout", "attributes": {"timeout": 0}})

    def test_bytes_dropped_by_blackhole(self):
        self._dropped({"name": "bh", "type": "blackhole"})

    def test_resets_by_reset_peer(self):
        self.add({"name": "rp", "type": "reset_peer", "stream": "upstream", "attributes": {"timeout": 0}})
        s = self.conn()
        s.sendall(b"boom")
        how, _, _ = wait_end(s, 2)
        self.assertEqual(how, "reset")
        v = poll(lambda: self._m("faultline_toxic_resets_total", "rp"), lambda v: v is not None and v >= 1)
        self.assertIsNotNone(v, "faultline_toxic_resets_total missing")
        self.assertGreaterEqual(v, 1)

    def test_bytes_delayed_by_latency(self):
        self.add({"name": "lat", "type": "latency", "attributes": {"latency": 20}})
        s = self.conn()
        round_trip(s, b"d" * 500)
        v = poll(lambda: self._m("faultline_toxic_bytes_delayed_total", "lat"),
                 lambda v: v is not None and v >= 500)
        self.assertIsNotNone(v, "faultline_toxic_bytes_delayed_total missing")
        self.assertGreaterEqual(v, 500)

    def test_counters_of_a_removed_toxic_stay_until_reset(self):
        # A drill reads what a fault did after the fault is gone (its duration ended).
        self.add({"name": "gone", "type": "timeout", "attributes": {"timeout": 0}})
        s = self.conn()
        s.sendall(b"x" * 700)
        v = poll(lambda: self._m("faultline_toxic_bytes_dropped_total", "gone", state="active"),
                 lambda v: v is not None and v >= 700)
        self.assertGreaterEqual(v or 0, 700)
        code, _, _ = self.fl.request("DELETE", "/proxies/p/toxics/gone")
        self.assertEqual(code, 204)
        self.assertIsNone(self._m("faultline_toxic_bytes_dropped_total", "gone", state="active"))
        self.assertEqual(self._m("faultline_toxic_bytes_dropped_total", "gone", state="removed"), v)
        # Added and removed again: one removed series, the sum of both lives.
        self.add({"name": "gone", "type": "timeout", "attributes": {"timeout": 0}})
        self.fl.request("DELETE", "/proxies/p/toxics/gone")
        self.assertEqual(self._m("faultline_toxic_bytes_dropped_total", "gone", state="removed"), v)
        code, _, _ = self.fl.request("POST", "/reset")
        self.assertEqual(code, 204)
        self.assertIsNone(self._m("faultline_toxic_bytes_dropped_total", "gone"))

    def test_data_connections_leave_out_connections_that_sent_nothing(self):
        before = metric(self.fl, "faultline_proxy_data_connections_total", proxy="p") or 0
        quiet = self.conn()  # connects, sends nothing: a TCP health check
        quiet_client = client_address(quiet)
        wait_for(lambda: [c for c in proxy_connections(self.fl, "p") if c.get("client") == quiet_client],
                 what="the quiet connection in /connections")
        quiet.close()
        s = self.conn()
        s.sendall(b"hello")
        v = poll(lambda: metric(self.fl, "faultline_proxy_data_connections_total", proxy="p"),
                 lambda v: v is not None and v >= before + 1)
        self.assertEqual(v, before + 1)
        # A quiet connection's count is settled by the time its session has ended.
        wait_for(lambda: not [c for c in proxy_connections(self.fl, "p") if c.get("client") == quiet_client],
                 what="the quiet connection to leave /connections")
        self.assertEqual(metric(self.fl, "faultline_proxy_data_connections_total", proxy="p"), before + 1)


class Connections(ToxicTestCase):

    def _list(self, proxy="p"):
        code, body, _ = self.fl.request("GET", f"/proxies/{proxy}/connections")
        self.assertEqual(code, 200, body)
        self.assertIsInstance(body, list, body)
        return body

    def _mine(self, sock):
        me = "127.0.0.1:%d" % sock.getsockname()[1]
        found = [c for c in self._list() if c.get("client") == me]
        return found[0] if len(found) == 1 else None

    def test_lists_live_connections_with_counts_age_and_toxics(self):
        self.add({"name": "lat_up", "type": "latency", "stream": "upstream", "attributes": {"latency": 1}})
        self.add({"name": "lat_down", "type": "latency", "stream": "downstream", "attributes": {"latency": 1}})
        self.add({"name": "never", "type": "latency", "stream": "downstream", "toxicity": 0,
                  "attributes": {"latency": 1}})
        sock = self.conn()
        round_trip(sock, b"a" * 100)
        c = poll(lambda: self._mine(sock), lambda c: c is not None and c.get("bytes_downstream", 0) >= 100)
        self.assertIsNotNone(c, f"connection {sock.getsockname()} not listed: {self._list()}")
        for key in ("id", "client", "age_ms", "bytes_upstream", "bytes_downstream", "toxics"):
            self.assertIn(key, c, c)
        self.assertIsInstance(c["id"], int)
        self.assertGreaterEqual(c["bytes_upstream"], 100)
        self.assertGreaterEqual(c["bytes_downstream"], 100)
        self.assertGreaterEqual(c["age_ms"], 0)
        self.assertEqual(c["toxics"], {"upstream": ["lat_up"], "downstream": ["lat_down"]},
                         "toxics active after the toxicity draw (toxicity 0 not listed)")
        time.sleep(0.3)  # deliberate: the connection ages, which age_ms must show (>= 250 more)
        round_trip(sock, b"b" * 500)
        c2 = poll(lambda: self._mine(sock), lambda c: c is not None and c.get("bytes_downstream", 0) >= 600)
        self.assertEqual(c2["id"], c["id"])
        self.assertGreaterEqual(c2["bytes_upstream"], c["bytes_upstream"] + 500)
        self.assertGreaterEqual(c2["bytes_downstream"], c["bytes_downstream"] + 500)
        self.assertGreaterEqual(c2["age_ms"], c["age_ms"] + 250)
        sock.close()
        left = poll(self._list, lambda lst: lst == [])
        self.assertEqual(left, [], "a closed connection must leave the list")

    def test_several_connections_and_other_proxies(self):
        socks = [self.conn() for _ in range(3)]
        for s in socks:
            self.warm(s)
        lst = poll(self._list, lambda lst: len(lst) == 3)
        self.assertEqual(len(lst), 3, lst)
        self.assertEqual(len({c["id"] for c in lst}), 3)
        self.assertEqual({c["client"] for c in lst}, {"127.0.0.1:%d" % s.getsockname()[1] for s in socks})
        for c in lst:
            self.assertEqual(c["toxics"], {"upstream": [], "downstream": []})
        self.fl.create_proxy("other", self.echo.address)
        code, body, _ = self.fl.request("GET", "/proxies/other/connections")
        self.assertEqual((code, body), (200, []))

    def test_unknown_proxy_404(self):
        code, body, _ = self.fl.request("GET", "/proxies/nope/connections")
        self.assertEqual(code, 404)
        self.assertEqual(body, {"error": 'proxy not found: "nope"', "status": 404})


if __name__ == "__main__":
    unittest.main()
