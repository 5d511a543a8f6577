"""`faultline ctl` (toxiproxy-cli compatible) against a running `faultline serve`.

stdout is a pipe here, so ctl must print its non-TTY (tab-separated) form.
Run standalone: python3 tests/integration/test_ctl.py
"""
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN, EchoServer, Faultline, connect_outcome, echo_roundtrip, split_hostport  # noqa: E402


class CtlTest(unittest.TestCase):

    def setUp(self):
        self.fl = Faultline()
        self.echo = EchoServer()

    def tearDown(self):
        self.fl.__exit__(None, None, None)
        self.echo.close()

    def ctl(self, *args, host=True, env=None, timeout=20):
        """Runs `faultline ctl [--host URL] args...`; returns CompletedProcess (text)."""
        argv = [BIN, "ctl"] + (["--host", self.fl.url] if host is True else
                               (list(host) if host else [])) + list(args)
        full_env = {k: v for k, v in os.environ.items() if k != "TOXIPROXY_URL"}
        if env:
            full_env.update(env)
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, env=full_env, timeout=timeout, text=True)

    def ok(self, *args, **kw):
        r = self.ctl(*args, **kw)
        self.assertEqual(r.returncode, 0, f"ctl {' '.join(args)} -> exit {r.returncode}\n"
                                          f"stdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def api(self, path):
        status, body, _ = self.fl.request("GET", path)
        return status, body

    def list_rows(self, **kw):
        r = self.ok("list", **kw)
        rows = {}
        for line in r.stdout.splitlines():
            if not line.strip():
                continue
            cols = line.split("\t")
            self.assertEqual(len(cols), 5, f"list line is not 5 tab-separated columns: {line!r}"
                                           f"\nfull output:\n{r.stdout}")
            rows[cols[0]] = cols
        return rows

    # -----------------------------------------------------------------------------------------
    def test_full_cycle_with_host_flag(self):
        up = self.echo.address
        r = self.ok("create", "p1", "-l", "127.0.0.1:0", "-u", up)
        self.assertIn("p1", r.stdout)
        status, p = self.api("/proxies/p1")
        self.assertEqual(status, 200, p)
        self.assertEqual(p["upstream"], up)
        self.assertTrue(p["enabled"])
        listen = p["listen"]
        port = split_hostport(listen)[1]
        self.assertNotEqual(port, 0)
        echoed, _ = echo_roundtrip(f"127.0.0.1:{port}", b"via ctl-created proxy")
        self.assertEqual(echoed, b"via ctl-created proxy")

        rows = self.list_rows()
        self.assertEqual(rows.get("p1"), ["p1", listen, up, "enabled", "0"])

        # toxic add -a latency=100 (downstream by default, default name)
        r = self.ok("toxic", "add", "p1", "-t", "latency", "-a", "latency=100")
        status, toxics = self.api("/proxies/p1/toxics")
        self.assertEqual(status, 200)
        self.assertEqual(len(toxics), 1, toxics)
        t = toxics[0]
        self.assertEqual((t["name"], t["type"], t["stream"]),
                         ("latency_downstream", "latency", "downstream"))
        self.assertEqual(t["attributes"]["latency"], 100)
        self.assertEqual(t["toxicity"], 1)
        self.assertEqual(self.list_rows()["p1"][4], "1")

        # inspect shows the toxic with its attribute
        r = self.ok("inspect", "p1")
        self.assertIn("latency_downstream", r.stdout)
        self.assertIn("latency", r.stdout)
        self.assertIn("100", r.stdout)
        self.assertNotIn("\x1b[", r.stdout, "colour codes although stdout is not a TTY")

        # toxic update: latency changes, jitter untouched
        self.ok("toxic", "update", "p1", "-n", "latency_downstream", "-a", "latency=250")
        status, t = self.api("/proxies/p1/toxics/latency_downstream")
        self.assertEqual(status, 200)
        self.assertEqual(t["attributes"]["latency"], 250)
        self.assertEqual(t["attributes"].get("jitter"), 0)

        # a named upstream toxic with toxicity
        self.ok("toxic", "add", "p1", "-t", "latency", "-n", "lat_up", "-u", "--tox", "0.5",
                "-a", "latency=10", "-a", "jitter=5")
        status, t = self.api("/proxies/p1/toxics/lat_up")
        self.assertEqual(status, 200, t)
        self.assertEqual(t["stream"], "upstream")
        self.assertEqual(t["toxicity"], 0.5)
        self.assertEqual(t["attributes"], {"latency": 10, "jitter": 5})
        self.assertEqual(self.list_rows()["p1"][4], "2")

        # toggle → disabled (listener closed) → enabled
        self.ok("toggle", "p1")
        status, p = self.api("/proxies/p1")
        self.assertFalse(p["enabled"])
        self.assertEqual(self.list_rows()["p1"][3], "disabled")
        self.assertEqual(connect_outcome("127.0.0.1", port, timeout=2), "refused")
        self.ok("toggle", "p1")
        status, p = self.api("/proxies/p1")
        self.assertTrue(p["enabled"])
        self.assertEqual(self.list_rows()["p1"][3], "enabled")

        # toxic remove
        self.ok("toxic", "remove", "p1", "-n", "latency_downstream")
        status, _ = self.api("/proxies/p1/toxics/latency_downstream")
        self.assertEqual(status, 404)
        self.ok("toxic", "remove", "p1", "-n", "lat_up")
        status, toxics = self.api("/proxies/p1/toxics")
        self.assertEqual(toxics, [])
        self.assertEqual(self.list_rows()["p1"][4], "0")

        # delete
        self.ok("delete", "p1")
        status, _ = self.api("/proxies/p1")
        self.assertEqual(status, 404)
        self.assertNotIn("p1", self.list_rows())

    def test_toggle_twice_keeps_port(self):
        """toxiproxy-cli toggle = GET + POST of the proxy JSON; with Toxiproxy the stopped proxy
        reports its bound address, so disable+enable comes back on the same port."""
        self.ok("create", "tg", "-l", "127.0.0.1:0", "-u", self.echo.address)
        listen = self.api("/proxies/tg")[1]["listen"]
        self.ok("toggle", "tg")
        self.assertEqual(self.list_rows()["tg"][1:4], [listen, self.echo.address, "disabled"])
        self.ok("toggle", "tg")
        self.assertEqual(self.list_rows()["tg"][1:4], [listen, self.echo.address, "enabled"])
        echoed, _ = echo_roundtrip(f"127.0.0.1:{split_hostport(listen)[1]}", b"toggled")
        self.assertEqual(echoed, b"toggled")

    def test_toxiproxy_argument_order(self):
        """toxiproxy-cli (urfave/cli) wants flags before the proxy name: scripts do that."""
        self.ok("create", "-l", "127.0.0.1:0", "-u", self.echo.address, "p2")
        status, p = self.api("/proxies/p2")
        self.assertEqual(status, 200, p)
        self.assertEqual(p["upstream"], self.echo.address)
        self.ok("toxic", "add", "-t", "latency", "-a", "latency=100", "p2")
        status, t = self.api("/proxies/p2/toxics/latency_downstream")
        self.assertEqual(status, 200, t)
        self.assertEqual(t["attributes"]["latency"], 100)
        self.ok("toxic", "remove", "-n", "latency_downstream", "p2")
        status, _ = self.api("/proxies/p2/toxics/latency_downstream")
        self.assertEqual(status, 404)

    def test_toxiproxy_url_env_and_short_host(self):
        self.ok("create", "envp", "-l", "127.0.0.1:0", "-u", self.echo.address,
                host=None, env={"TOXIPROXY_URL": self.fl.url})
        rows = self.list_rows(host=None, env={"TOXIPROXY_URL": self.fl.url})
        self.assertIn("envp", rows)
        self.assertEqual(rows["envp"][2], self.echo.address)
        # -h URL works as --host, and wins over the environment
        rows = self.list_rows(host=("-h", self.fl.url),
                              env={"TOXIPROXY_URL": "http://127.0.0.1:1"})
        self.assertIn("envp", rows)
        self.ok("delete", "envp", host=None, env={"TOXIPROXY_URL": self.fl.url})
        status, _ = self.api("/proxies/envp")
        self.assertEqual(status, 404)

    def test_host_without_scheme(self):
        """The Go client (and so toxiproxy-cli) prepends http:// when the URL has no scheme."""
        rows = self.list_rows(host=("--host", f"{self.fl.host}:{self.fl.port}"))
        self.assertEqual(rows, {})

    def test_unknown_proxy_fails(self):
        for args in (("inspect", "nosuch"), ("delete", "nosuch"), ("toggle", "nosuch"),
                     ("toxic", "add", "nosuch", "-t", "latency", "-a", "latency=1"),
                     ("toxic", "remove", "nosuch", "-n", "x")):
            r = self.ctl(*args)
            self.assertNotEqual(r.returncode, 0, f"ctl {' '.join(args)} succeeded: {r.stdout}")
            self.assertIn("proxy not found", r.stderr, f"ctl {' '.join(args)} stderr")
        r = self.ctl("inspect", "nosuch")
        self.assertEqual(r.returncode, 1, "contract: failure exits 1")

    def test_other_failures(self):
        self.ok("create", "dup", "-l", "127.0.0.1:0", "-u", self.echo.address)
        r = self.ctl("create", "dup", "-l", "127.0.0.1:0", "-u", self.echo.address)
        self.assertEqual(r.returncode, 1)
        self.assertIn("proxy already exists", r.stderr)
        r = self.ctl("toxic", "remove", "dup", "-n", "nosuch")
        self.assertEqual(r.returncode, 1)
        self.assertIn("toxic not found", r.stderr)
        r = self.ctl("toxic", "add", "dup", "-t", "nosuchtype")
        self.assertEqual(r.returncode, 1)
        self.assertIn("invalid toxic type", r.stderr)
        # server not reachable: non-zero, something on stderr, no hang
        r = self.ctl("list", host=("--host", "http://127.0.0.1:1"))
        self.assertNotEqual(r.returncode, 0)
        self.assertTrue(r.stderr.strip())
        self.assertRegex(r.stderr, r"cannot reach (a|the) faultline.* API at http://127\.0\.0\.1:1")
        self.assertEqual(r.stderr.count("cannot reach"), 1, r.stderr)
        self.assertNotIn("[system:", r.stderr, "library internals in a user's error")

    def test_a_typo_in_an_attribute_is_an_error_not_an_added_fault(self):
        self.ok("create", "t", "-l", "127.0.0.1:0", "-u", self.echo.address)
        r = self.ctl("toxic", "add", "t", "-t", "latency", "-a", "latncy=100")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn('attribute latncy is unknown to latency (did you mean "latency"?)', r.stderr)
        self.assertNotIn("Added", r.stdout)

    def test_pointed_at_something_that_is_not_faultline(self):
        """Another JSON API, a web page, Redis: said plainly, exit 1, never a crash or a silent 0."""
        import http.server
        import socket
        import threading

        class Other(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.startswith("/proxies"):
                    body, kind = b'{"items": [1, 2], "name": 3}', "application/json"
                elif self.path == "/version" and self.server.html:
                    body, kind = b"<html><body>Welcome</body></html>", "text/html"
                else:
                    body, kind = (b"<html>hi</html>", "text/html") if self.server.html else (b'{"detail": "no"}', "application/json")
                self.send_response(200 if self.server.html else 404)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        for html in (False, True):
            srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Other)
            srv.html = html
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            try:
                url = f"http://127.0.0.1:{srv.server_address[1]}"
                for args in (("list",), ("inspect", "x"), ("toxic", "add", "x", "-t", "latency")):
                    with self.subTest(html=html, args=args):
                        r = self.ctl(*args, host=("--host", url))
                        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                        self.assertIn(f"no faultline/Toxiproxy API at {url}", r.stderr)
                        self.assertEqual(r.stdout, "")
            finally:
                srv.shutdown()
                srv.server_close()
        # A Redis-like peer that answers RESP, not HTTP.
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(4)

        def redis_like():
            for _ in range(4):
                try:
                    c, _ = lsock.accept()
                except OSError:
                    return
                c.settimeout(2)
                try:
                    c.recv(4096)
                    c.sendall(b"-ERR unknown command 'GET'\r\n")
                except OSError:
                    pass
                c.close()
        threading.Thread(target=redis_like, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{lsock.getsockname()[1]}"
            r = self.ctl("list", host=("--host", url))
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn(f"faultline/Toxiproxy API at {url}", r.stderr)
            self.assertNotIn("[system:", r.stderr)
        finally:
            lsock.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
