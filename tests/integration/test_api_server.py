"""`faultline serve` server-level behaviour: /version, auth, Host check, config file, flags,
/metrics and a control plane that never waits on traffic."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from api_helpers import ApiTestCase, StallServer, assert_echo, expect_closed, fill_until_blocked  # noqa: E402
from harness import (BIN, EchoServer, Faultline, Serve, call, connect, free_port,  # noqa: E402
                     metric_value, parse_metrics, poll, run_serve_expect_exit)


def temp_dir(tc):
    d = tempfile.mkdtemp(prefix="faultline-test-")
    tc.addCleanup(shutil.rmtree, d, True)
    return d


class Version(ApiTestCase):
    def test_version_body_and_content_type(self):
        r = self.ok("GET", "/version")
        m = re.fullmatch(r'\{"version": "(\d+)\.(\d+)\.(\d+)"\}\n', r.text)
        self.assertIsNotNone(m, f"/version body {r.text!r}")
        self.assertGreaterEqual(tuple(int(x) for x in m.groups()), (2, 6, 0), "Ruby picks PATCH for >= 2.6.0")
        self.assertTrue(r.headers.get("content-type", "").startswith("application/json"), r.headers)
        self.assertTrue(r.headers.get("x-faultline-version", "").strip(), f"X-Faultline-Version: {r.headers}")

    def test_serve_dash_version_prints_and_exits(self):
        out = subprocess.run([BIN, "serve", "-version"], capture_output=True, timeout=10)
        self.assertEqual(out.returncode, 0, out)
        self.assertRegex((out.stdout + out.stderr).decode(), r"\d+\.\d+\.\d+")


class TokenAuth(unittest.TestCase):
    TOKEN = "s3cret-token-42"

    def start(self, file_text):
        d = temp_dir(self)
        path = os.path.join(d, "token")
        with open(path, "w") as f:
            f.write(file_text)
        fl = Faultline("--token-file", path)
        self.addCleanup(fl.__exit__)
        return fl

    def assert_401(self, r):
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.json, {"error": "missing or invalid bearer token", "status": 401})

    def test_bearer_token_required(self):
        fl = self.start(self.TOKEN)
        good = {"Authorization": f"Bearer {self.TOKEN}"}
        for headers in [None, {"Authorization": "Bearer wrong"}, {"Authorization": self.TOKEN},
                        {"Authorization": f"Basic {self.TOKEN}"}, {"Authorization": f"Bearer {self.TOKEN}x"}]:
            with self.subTest(headers=headers):
                self.assert_401(call(fl, "GET", "/proxies", headers=headers))
        self.assert_401(call(fl, "POST", "/proxies", {"name": "x", "upstream": "127.0.0.1:1"}))
        self.assert_401(call(fl, "POST", "/reset"))
        self.assert_401(call(fl, "GET", "/metrics"))
        self.assertEqual(call(fl, "GET", "/proxies", headers=good).json, {}, "the 401 created nothing")
        r = call(fl, "POST", "/proxies", {"name": "x", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"},
                 headers=good)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(call(fl, "GET", "/proxies/x", headers=good).status, 200)
        self.assertEqual(call(fl, "DELETE", "/proxies/x", headers=good).status, 204)
        r = call(fl, "GET", "/version")
        self.assertEqual(r.status, 200, "/version needs no token")

    def test_token_file_trailing_newline_is_not_part_of_token(self):
        # `echo s3cret > token` writes a newline; the token is the line.
        fl = self.start(self.TOKEN + "\n")
        r = call(fl, "GET", "/proxies", headers={"Authorization": f"Bearer {self.TOKEN}"})
        self.assertEqual(r.status, 200, r)


class HostCheck(unittest.TestCase):
    def start(self, *args):
        fl = Faultline(*args)
        self.addCleanup(fl.__exit__)
        return fl

    def test_foreign_host_is_403(self):
        fl = self.start()
        for host in ["evil.example", f"evil.example:{fl.port}", f"localhost.evil.example:{fl.port}",
                     f"127.0.0.1.evil.example:{fl.port}"]:
            with self.subTest(host=host):
                r = call(fl, "GET", "/proxies", headers={"Host": host})
                self.assertEqual(r.status, 403, r)
                self.assertIsInstance(r.json, dict, r)
                self.assertEqual(r.json.get("status"), 403, r)
                self.assertTrue(r.json.get("error", "").startswith("host not allowed: "), r)
                self.assertIn(host.split(":")[0], r.json["error"])
        r = call(fl, "POST", "/proxies", {"name": "x", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"},
                 headers={"Host": "evil.example"})
        self.assertEqual(r.status, 403, r)
        self.assertEqual(call(fl, "GET", "/proxies").json, {}, "the 403 created nothing")

    def test_loopback_hosts_are_allowed(self):
        fl = self.start()
        for host in [f"localhost:{fl.port}", "localhost", f"127.0.0.1:{fl.port}", f"127.1.2.3:{fl.port}",
                     f"[::1]:{fl.port}", f"LOCALHOST:{fl.port}"]:
            with self.subTest(host=host):
                r = call(fl, "GET", "/proxies", headers={"Host": host})
                self.assertEqual(r.status, 200, r)

    def test_allow_host_flag(self):
        fl = self.start("--allow-host", "evil.example", "--allow-host", "proxy.internal")
        for host in ["evil.example", f"evil.example:{fl.port}", f"proxy.internal:{fl.port}",
                     f"localhost:{fl.port}"]:
            with self.subTest(host=host):
                self.assertEqual(call(fl, "GET", "/proxies", headers={"Host": host}).status, 200)
        self.assertEqual(call(fl, "GET", "/proxies", headers={"Host": "other.example"}).status, 403)


class ConfigFile(unittest.TestCase):
    def setUp(self):
        self.echo = EchoServer()
        self.addCleanup(self.echo.close)

    def start(self, config):
        fl = Faultline(config=config)
        self.addCleanup(fl.__exit__)
        return fl

    def test_toxiproxy_array_config(self):
        fl = self.start([
            {"name": "web", "listen": "127.0.0.1:0", "upstream": self.echo.address},
            {"name": "off", "listen": "localhost:0", "upstream": self.echo.address, "enabled": False},
            {"name": "tox", "listen": "127.0.0.1:0", "upstream": self.echo.address,
             "toxics": [{"type": "latency", "attributes": {"latency": 7}}]},
        ])
        proxies = call(fl, "GET", "/proxies").json
        self.assertEqual(set(proxies), {"web", "off", "tox"})
        self.assertIs(proxies["web"]["enabled"], True)
        self.assertRegex(proxies["web"]["listen"], r"^127\.0\.0\.1:[1-9]\d*$")
        self.assertIs(proxies["off"]["enabled"], False)
        self.assertEqual(proxies["off"]["listen"], "localhost:0")
        self.assertEqual([(t["name"], t["attributes"]) for t in proxies["tox"]["toxics"]],
                         [("latency_downstream", {"latency": 7, "jitter": 0})])
        assert_echo(self, proxies["web"]["listen"])

    def test_faultline_object_config_with_toxics(self):
        fl = self.start({"seed": 1, "proxies": [
            {"name": "slow", "listen": "127.0.0.1:0", "upstream": self.echo.address,
             "toxics": [{"type": "latency", "attributes": {"latency": 300}},
                        {"type": "noop", "name": "n", "stream": "upstream"}]},
            {"name": "fast", "listen": "127.0.0.1:0", "upstream": self.echo.address},
        ]})
        slow = call(fl, "GET", "/proxies/slow").json
        self.assertEqual([t["name"] for t in slow["toxics"]], ["n", "latency_downstream"])
        s = connect(slow["listen"])
        self.addCleanup(s.close)
        start = time.monotonic()
        s.sendall(b"x")
        self.assertEqual(s.recv(1), b"x")
        self.assertGreaterEqual(time.monotonic() - start, 0.28, "config toxics apply")
        assert_echo(self, call(fl, "GET", "/proxies/fast").json["listen"])

    def assert_bad_config(self, config, *needles):
        rc, out, port_file, seconds = run_serve_expect_exit([], config=config)
        self.assertIsNotNone(rc, f"faultline kept running with a bad config: {out}")
        self.assertEqual(rc, 2, out)
        self.assertLess(seconds, 5, "a bad config must fail fast")
        self.assertFalse(port_file, "nothing may listen with a bad config")
        for needle in needles:
            self.assertIn(needle, out)
        return out

    def test_bad_config_names_json_path(self):
        self.assert_bad_config({"proxies": [
            {"name": "a", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"},
            {"name": "b", "listen": "127.0.0.1:0"}]}, "config.json", "proxies[1]", "upstream")

    def test_bad_array_config_names_json_path(self):
        self.assert_bad_config([{"listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"}], "config.json", "[0]", "name")

    def test_bad_toxic_in_config(self):
        self.assert_bad_config({"proxies": [
            {"name": "a", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1",
             "toxics": [{"type": "latency"}, {"type": "bandwidth", "attributes": {"rate": -1}}]}]},
            "proxies[0]", "toxics[1]", "rate")

    def test_typos_in_a_profile_are_errors_naming_the_path_and_the_key_meant(self):
        # "protocl" would silently make a tcp proxy, "latancy" a latency of 0.
        self.assert_bad_config({"proxies": [
            {"name": "a", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1", "protocl": "resp"}]},
            "config.json", "$.proxies[0].protocl: unknown field", 'did you mean "protocol"?')
        self.assert_bad_config({"proxies": [
            {"name": "a", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1",
             "toxics": [{"type": "latency", "attributes": {"latancy": 100}}]}]},
            "proxies[0]", "toxics[0]", "attribute latancy is unknown to latency", 'did you mean "latency"?')
        self.assert_bad_config({"seeed": 1, "proxies": []}, "$.seeed: unknown field", 'did you mean "seed"?')
        # The file's own keys are read as written: "Seed" would be a seed silently ignored.
        self.assert_bad_config({"Seed": 1, "proxies": []}, "$.Seed: unknown field", 'did you mean "seed"?')

    def test_config_that_is_not_json(self):
        self.assert_bad_config("this is { not json", "config.json")

    def test_missing_config_file(self):
        rc, out, port_file, _ = run_serve_expect_exit(["--config", "/nonexistent/faultline/config.json"])
        self.assertIsNotNone(rc, out)
        self.assertNotEqual(rc, 0, out)
        self.assertFalse(port_file)
        self.assertIn("/nonexistent/faultline/config.json", out)


class ToxiproxyStyleFlags(unittest.TestCase):
    def test_single_dash_equals_flags(self):
        echo = EchoServer()
        self.addCleanup(echo.close)
        d = temp_dir(self)
        cfg = os.path.join(d, "toxiproxy.json")
        with open(cfg, "w") as f:
            f.write('[{"name": "web", "listen": "127.0.0.1:0", "upstream": "%s"}]' % echo.address)
        srv = Serve(["-host=127.0.0.1", "-port=0", "-config=" + cfg, "-seed=1", "-proxy-metrics",
                     "-runtime-metrics"])
        self.addCleanup(srv.__exit__)
        self.assertEqual(srv.host, "127.0.0.1")
        self.assertEqual(call(srv, "GET", "/version").status, 200)
        web = call(srv, "GET", "/proxies/web").json
        assert_echo(self, web["listen"])

    def test_single_dash_separate_value_flags(self):
        srv = Serve(["-host", "127.0.0.1", "-port", "0", "-seed", "7"])
        self.addCleanup(srv.__exit__)
        self.assertEqual(srv.host, "127.0.0.1")
        self.assertEqual(call(srv, "GET", "/proxies").json, {})


class Shutdown(unittest.TestCase):
    def test_sigterm_exits_0_and_closes_listeners(self):
        echo = EchoServer()
        self.addCleanup(echo.close)
        fl = Faultline("--shutdown-timeout-ms", "500")
        self.addCleanup(fl.__exit__)
        p = fl.create_proxy("x", echo.address)
        s = connect(p["listen"])
        self.addCleanup(s.close)
        s.sendall(b"hi")
        self.assertEqual(s.recv(2), b"hi")
        start = time.monotonic()
        rc = fl.stop(timeout=10)
        self.assertEqual(rc, 0, fl.logs())
        self.assertLess(time.monotonic() - start, 4, "an idle connection may delay exit by the timeout only")
        expect_closed(self, s, what="connection after shutdown")


class Metrics(ApiTestCase):
    def samples(self):
        r = self.ok("GET", "/metrics")
        self.assertTrue(r.headers.get("content-type", "").startswith("text/plain"), r.headers)
        return parse_metrics(r.text)

    def wait_metric(self, expected, name, timeout=2.0, **labels):
        value = poll(lambda: metric_value(self.samples(), name, **labels), lambda v: v == expected,
                     timeout=timeout, step=0.05)
        self.assertEqual(value, expected, f"{name}{labels}")

    def test_byte_counters_and_active_connections_are_live(self):
        echo = self.new_echo()
        p = self.make_proxy("x", echo.address)
        s = connect(p["listen"])
        self.addCleanup(s.close)
        payload = b"m" * 1000
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            got += s.recv(65536)
        # Connection still open: counters must already show the bytes.
        labels = {"proxy": "x", "listener": p["listen"], "upstream": echo.address}
        self.wait_metric(1000, "toxiproxy_proxy_received_bytes_total", direction="upstream", **labels)
        self.wait_metric(1000, "toxiproxy_proxy_sent_bytes_total", direction="upstream", **labels)
        self.wait_metric(1000, "toxiproxy_proxy_received_bytes_total", direction="downstream", **labels)
        self.wait_metric(1000, "toxiproxy_proxy_sent_bytes_total", direction="downstream", **labels)
        self.wait_metric(1, "faultline_proxy_connections_active", proxy="x")
        self.wait_metric(1, "faultline_proxy_connections_total", proxy="x")
        s.sendall(b"n" * 500)
        got = b""
        while len(got) < 500:
            got += s.recv(65536)
        self.wait_metric(1500, "toxiproxy_proxy_received_bytes_total", direction="upstream", **labels)
        s.close()
        self.wait_metric(0, "faultline_proxy_connections_active", proxy="x")
        self.wait_metric(1500, "toxiproxy_proxy_sent_bytes_total", direction="downstream", **labels)

    def test_upstream_connect_failure_is_counted(self):
        p = self.make_proxy("down", f"127.0.0.1:{free_port()}")  # nothing listens: refused
        s = connect(p["listen"])
        self.addCleanup(s.close)
        expect_closed(self, s, what="client of a proxy whose upstream is down")
        self.wait_metric(1, "faultline_proxy_upstream_connect_failures_total", proxy="down")
        self.wait_metric(0, "faultline_proxy_connections_active", proxy="down")


class ControlPlaneNeverWaitsOnTraffic(ApiTestCase):
    LIMIT = 1.0

    def timed(self, method, path, body=None, status=200):
        start = time.monotonic()
        r = call(self.fl, method, path, body, timeout=5)
        took = time.monotonic() - start
        self.assertEqual(r.status, status, f"{method} {path}: {r!r}")
        self.assertLess(took, self.LIMIT, f"{method} {path} took {took:.2f} s while traffic is stuck")
        return r

    def exercise_api(self, name):
        # No timeout toxic here: removing one closes its connections by design, which would
        # un-stick the connection under test.
        self.timed("GET", "/proxies")
        self.timed("GET", f"/proxies/{name}")
        self.timed("GET", f"/proxies/{name}/toxics")
        self.timed("GET", "/metrics")
        self.timed("POST", f"/proxies/{name}/toxics", {"type": "bandwidth", "stream": "upstream",
                                                       "attributes": {"rate": 1}})
        self.timed("POST", f"/proxies/{name}/toxics", {"type": "slow_close", "attributes": {"delay": 100}})
        self.timed("PATCH", f"/proxies/{name}/toxics/lat", {"attributes": {"latency": 500}})
        self.timed("PATCH", f"/proxies/{name}/toxics/bandwidth_upstream", {"attributes": {"rate": 0}})
        self.timed("POST", f"/proxies/{name}/toxics", {"type": "slicer", "attributes": {"average_size": 3}})
        self.timed("DELETE", f"/proxies/{name}/toxics/lat", status=204)
        self.timed("DELETE", f"/proxies/{name}/toxics/bandwidth_upstream", status=204)
        self.timed("DELETE", f"/proxies/{name}/toxics/slow_close_downstream", status=204)
        self.timed("POST", f"/proxies/{name}/toxics", {"type": "latency", "name": "lat2",
                                                       "attributes": {"latency": 2}})
        self.timed("POST", "/reset", status=204)
        self.timed("POST", "/populate", [], status=201)
        self.timed("POST", "/proxies", {"name": "other", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"},
                   status=201)

    def stuck_connection(self, upstream):
        p = self.make_proxy("stuck", upstream)
        self.ok("POST", "/proxies/stuck/toxics", {"type": "latency", "name": "lat", "attributes": {"latency": 1}})
        s = connect(p["listen"])
        self.addCleanup(s.close)
        box = {}
        t = threading.Thread(target=lambda: box.update(sent=fill_until_blocked(s, max_bytes=256 << 20)))
        t.start()
        t.join(20)
        self.assertFalse(t.is_alive(), "filling the connection did not finish")
        self.assertLess(box["sent"], 256 << 20, "no back-pressure: the proxy buffered 256 MiB")
        return s

    def test_api_fast_while_upstream_never_reads(self):
        with StallServer() as stall:
            s = self.stuck_connection(stall.address)
            self.exercise_api("stuck")
            self.timed("PATCH", "/proxies/stuck", {"enabled": False})
            expect_closed(self, s, what="stalled connection of a disabled proxy")
            self.timed("DELETE", "/proxies/stuck", status=204)

    def test_api_fast_while_client_never_reads(self):
        echo = self.new_echo()  # echoes into a client that never reads: both directions jam
        s = self.stuck_connection(echo.address)
        self.exercise_api("stuck")
        self.timed("DELETE", "/proxies/stuck", status=204)
        expect_closed(self, s, timeout=10, what="stalled connection of a deleted proxy")


if __name__ == "__main__":
    unittest.main()
