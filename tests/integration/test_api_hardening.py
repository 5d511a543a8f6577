"""What an API caller names is checked (issue 16, items 4, 6, 7, 11 and 13): files read for
TLS and replay are regular and bounded, proxy and toxic names are addressable, recordings
stay under the recordings root, browser origins, upstreams and listen addresses are checked,
and errors name what they are about.

Loopback only, port 0, every wait bounded."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from api_helpers import ApiTestCase, raw_http  # noqa: E402
from harness import BIN, EchoServer, Faultline, Serve, call, run_serve_expect_exit  # noqa: E402


def temp_dir(tc):
    d = tempfile.mkdtemp(prefix="faultline-test-")
    tc.addCleanup(shutil.rmtree, d, True)
    return d


def sparse_file(path, size):
    with open(path, "wb") as f:
        f.truncate(size)
    return path


class FilesNamedInApiCalls(ApiTestCase):
    """Item 4: a FIFO, a device or a huge file is refused with 400 naming the field and the
    limit, without being read, and the API stays responsive."""

    def create(self, body, timeout=5):
        body = {"name": "files", "listen": "127.0.0.1:0", **body}
        return self.api("POST", "/proxies", body, timeout=timeout)

    def assert_400(self, r, *needles):
        self.assert_error(r, 400)
        for needle in needles:
            self.assertIn(needle, r.json["error"])
        self.assertEqual(self.api("GET", "/proxies/files").status, 404, "nothing was created")

    def test_tls_files_must_be_regular_and_small(self):
        d = temp_dir(self)
        echo = self.new_echo()
        fifo = os.path.join(d, "ca.fifo")
        os.mkfifo(fifo)
        # A FIFO would block the control thread in open(2) until a writer came.
        r = self.create({"upstream": "https://localhost:1", "tls": {"upstream": {"ca": fifo}}})
        self.assert_400(r, "field tls.upstream.ca: ", f"CA file '{fifo}': not a regular file (it is a FIFO)")
        big = sparse_file(os.path.join(d, "big.pem"), 5 << 20)
        r = self.create({"upstream": echo.address, "tls": {"listen": {"cert": big, "key": big}}})
        self.assert_400(r, "field tls.listen.cert: ", f"certificate file '{big}': the file is 5 MiB, over the limit of 4 MiB")
        # Only once non-regular files are known to be refused unread: /dev/zero would
        # otherwise grow memory until allocation fails.
        r = self.create({"upstream": echo.address, "tls": {"listen": {"cert": "/dev/zero", "key": "/dev/zero"}}})
        self.assert_400(r, "field tls.listen.cert: ", "certificate file '/dev/zero': not a regular file (it is a character device)")
        self.assertEqual(self.api("GET", "/version").status, 200)

    def test_replay_journal_must_be_a_bounded_recording(self):
        d = temp_dir(self)
        fifo = os.path.join(d, "journal.fifo")
        os.mkfifo(fifo)
        r = self.create({"replay": {"journal": fifo}})
        self.assert_400(r, "field replay.journal: ", f"'{fifo}' is a FIFO, not a journal file or a recording folder")
        big = sparse_file(os.path.join(d, "big.jsonl"), 300 << 20)
        r = self.create({"replay": {"journal": big}})
        self.assert_400(r, "field replay.journal: ", f"'{big}' is 300 MiB, over the limit of 256 MiB",
                        "faultline replay server --journal")
        rec = os.path.join(d, "rec")
        os.makedirs(os.path.join(rec, "blobs"))
        with open(os.path.join(rec, "index.json"), "w") as f:
            f.write("{}")
        os.symlink("/dev/zero", os.path.join(rec, "blobs", "zero"))
        r = self.create({"replay": {"journal": rec}})
        self.assert_400(r, "field replay.journal: ", "zero' is a character device")
        r = self.create({"replay": {"journal": "/dev/zero"}})
        self.assert_400(r, "field replay.journal: ", "'/dev/zero' is a character device")
        self.assertEqual(self.api("GET", "/version").status, 200)


class UnaddressableNames(ApiTestCase):
    """Item 6: a name the routes cannot reach is refused at creation."""

    def test_proxy_names_with_a_slash_or_dot_steps_are_400(self):
        for name in ["a/b", "/x", "x/", ".", ".."]:
            with self.subTest(name=name):
                r = self.api("POST", "/proxies", {"name": name, "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"})
                self.assert_error(r, 400, prefix=f'proxy name "{name}" cannot be used: ')
        r = self.api("POST", "/populate", [{"name": "ok", "upstream": "127.0.0.1:1"},
                                           {"name": "a/b", "upstream": "127.0.0.1:1"}])
        self.assert_error(r, 400, prefix='proxy name "a/b" cannot be used: ')
        self.assertEqual(self.ok("GET", "/proxies").json, {}, "nothing was created")

    def test_toxic_names_with_a_slash_are_400(self):
        self.make_proxy("p", "127.0.0.1:1")
        r = self.api("POST", "/proxies/p/toxics", {"type": "latency", "name": "lat/1"})
        self.assert_error(r, 400, prefix='toxic name "lat/1" cannot be used: ')
        r = self.api("POST", "/proxies", {"name": "q", "upstream": "127.0.0.1:1",
                                          "toxics": [{"type": "latency", "name": ".."}]})
        self.assert_error(r, 400, prefix='toxics[0]: toxic name ".." cannot be used: ')
        self.assertEqual(self.ok("GET", "/proxies/p/toxics").json, [])


class RecordingsRoot(unittest.TestCase):
    """Item 7: POST /recordings writes only under --recordings-root, never into a folder that
    holds something unless asked to append."""

    def setUp(self):
        self.tmp = temp_dir(self)
        self.root = os.path.join(self.tmp, "recordings")
        self.echo = EchoServer()
        self.addCleanup(self.echo.close)
        self.fl = Serve(["--host", "127.0.0.1", "--port", "0", "--recordings-root", self.root])
        self.addCleanup(self.fl.__exit__)
        self.fl.create_proxy("echo", self.echo.address)

    def post(self, body):
        return call(self.fl, "POST", "/recordings", raw=json.dumps(body))

    def test_dirs_outside_the_root_are_refused(self):
        outside = os.path.join(self.tmp, "elsewhere")
        for dir_, needle in [("/etc/faultline-rec", "/etc/faultline-rec: outside the recordings root"),
                             (outside, outside + ": outside the recordings root"),
                             ("../x", 'must not contain ".."'),
                             (self.root + "/../x", 'must not contain ".."'),
                             ("a\u0000/../../x", "must not contain a NUL byte"),
                             (self.root, "outside the recordings root")]:
            with self.subTest(dir=dir_):
                r = self.post({"dir": dir_})
                self.assertEqual(r.status, 400, r)
                self.assertTrue(r.json["error"].startswith("bad request body: field dir"), r)
                self.assertIn(needle, r.json["error"])
        self.assertFalse(os.path.exists(outside))
        self.assertEqual(call(self.fl, "GET", "/recordings").json, [])
        os.makedirs(self.root)
        os.symlink(self.tmp, os.path.join(self.root, "out"))
        r = self.post({"dir": "out/x"})
        self.assertEqual(r.status, 400, r)
        self.assertIn("through a symlink", r.json["error"])

    def test_relative_and_absolute_dirs_inside_the_root(self):
        r = self.post({"id": "one", "dir": "run1"})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json["dir"], os.path.join(self.root, "run1"))
        r = self.post({"id": "two", "dir": os.path.join(self.root, "nested", "run2")})
        self.assertEqual(r.status, 201, r)
        r = self.post({"id": "three"})
        self.assertEqual(r.status, 201, r)
        self.assertTrue(r.json["dir"].startswith(self.root + "/three-"), r)
        for rec in ("one", "two", "three"):
            self.assertEqual(call(self.fl, "DELETE", f"/recordings/{rec}").status, 200)
        self.assertTrue(os.path.exists(os.path.join(self.root, "run1", "index.json")))

    def test_a_folder_that_is_not_empty_needs_append(self):
        full = os.path.join(self.root, "full")
        os.makedirs(full)
        with open(os.path.join(full, "notes.txt"), "w") as f:
            f.write("mine\n")
        r = self.post({"dir": "full"})
        self.assertEqual(r.status, 400, r)
        self.assertIn(full + ': is not empty (holds notes.txt); give "append": true', r.json["error"])
        self.assertEqual(self.post({"dir": "full", "append": "yes"}).status, 400)
        r = self.post({"id": "app", "dir": "full", "append": True})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(call(self.fl, "DELETE", "/recordings/app").status, 200)
        with open(os.path.join(full, "notes.txt")) as f:
            self.assertEqual(f.read(), "mine\n")

    def test_the_default_root_is_recordings_in_the_working_directory(self):
        fl = Serve(["--host", "127.0.0.1", "--port", "0"])
        self.addCleanup(fl.__exit__)
        r = call(fl, "POST", "/recordings", {"dir": "/tmp/faultline-elsewhere"})
        self.assertEqual(r.status, 400, r)
        self.assertIn(f"the recordings root is {os.path.join(os.getcwd(), 'recordings')}", r.json["error"])


class BrowserOrigins(unittest.TestCase):
    """Item 11: a page of another site cannot drive the API (a form POST needs no preflight)."""

    def test_cross_origin_requests_are_403(self):
        with Faultline() as fl:
            for origin in ["http://evil.example", "null", f"http://127.0.0.1:{fl.port + 1}"]:
                with self.subTest(origin=origin):
                    r = call(fl, "POST", "/reset", raw=b"", headers={"Origin": origin})
                    self.assertEqual(r.status, 403, r)
                    self.assertEqual(r.json["error"], f"origin not allowed: {origin} (pages of other sites may not "
                                                      "drive the API; allow one with --allow-origin)")
            # The API's own origin, and no Origin at all (every non-browser client), are fine.
            self.assertEqual(call(fl, "POST", "/reset", raw=b"", headers={"Origin": fl.url}).status, 204)
            self.assertEqual(call(fl, "POST", "/reset", raw=b"").status, 204)

    def test_allow_origin_lets_a_page_in_with_cors_headers(self):
        with Faultline("--allow-origin", "http://localhost:3000") as fl:
            r = call(fl, "GET", "/proxies", headers={"Origin": "http://localhost:3000"})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.headers.get("access-control-allow-origin"), "http://localhost:3000")
            r = call(fl, "OPTIONS", "/proxies", headers={"Origin": "http://localhost:3000",
                                                         "Access-Control-Request-Method": "POST"})
            self.assertEqual(r.status, 204, r)
            self.assertIn("POST", r.headers.get("access-control-allow-methods", ""))
            self.assertEqual(call(fl, "GET", "/proxies", headers={"Origin": "http://localhost:4000"}).status, 403)


class UpstreamsAndListen(ApiTestCase):
    """Item 11: upstreams that cannot be dialled are refused naming the field; a listen
    without a host binds loopback."""

    def test_bad_upstreams_are_400_naming_the_field(self):
        for upstream, why in [("127.0.0.1:99999", "port 99999 is out of range (1 to 65535)"),
                              ("ftp://x", "scheme ftp:// is not supported"),
                              ("localhost", "missing port"),
                              ("127.0.0.1:redis", 'port "redis" is not a number from 1 to 65535')]:
            with self.subTest(upstream=upstream):
                r = self.api("POST", "/proxies", {"name": "u", "listen": "127.0.0.1:0", "upstream": upstream})
                self.assert_error(r, 400, prefix=f"bad request body: field upstream: {why}")
                self.assertIn(f'(got "{upstream}")', r.json["error"])
        self.make_proxy("ok", "127.0.0.1:1")
        self.assert_error(self.api("PATCH", "/proxies/ok", {"upstream": "127.0.0.1:70000"}), 400,
                          prefix="bad request body: field upstream: port 70000 is out of range")
        self.assertEqual(self.ok("GET", "/proxies/ok").json["upstream"], "127.0.0.1:1")
        self.assert_error(self.api("POST", "/populate", [{"name": "p", "upstream": "gopher://x:70"}]), 400,
                          prefix="bad request body: field upstream: scheme gopher:// is not supported")
        for good in ["localhost:6379", "[::1]:6379", "https://api.example.test", "http://127.0.0.1:8080/v1"]:
            with self.subTest(good=good):
                self.make_proxy("g", good, enabled=False)
                self.ok("DELETE", "/proxies/g", status=204)

    def test_bad_upstream_in_a_config_file_names_its_path(self):
        rc, out, port_file, _ = run_serve_expect_exit(
            [], config={"proxies": [{"name": "a", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:99999"}]})
        self.assertEqual(rc, 2, out)
        self.assertIn("config.json: $.proxies[0].upstream: port 99999 is out of range (1 to 65535)", out)

    def test_listen_without_a_host_binds_loopback(self):
        for listen in [":0", "", None]:
            with self.subTest(listen=listen):
                body = {"name": "l", "upstream": "127.0.0.1:1"}
                if listen is not None:
                    body["listen"] = listen
                r = self.ok("POST", "/proxies", body, status=201)
                self.assert_bound_loopback(r.json["listen"])
                self.ok("DELETE", "/proxies/l", status=204)
        r = self.ok("POST", "/proxies", {"name": "all", "listen": "0.0.0.0:0", "upstream": "127.0.0.1:1"}, status=201)
        self.assertRegex(r.json["listen"], r"^0\.0\.0\.0:\d+$", "a host asks for every interface")


class ErrorsNameTheThing(ApiTestCase):
    """Item 13: which proxy, which toxic, which file; never a library's source location."""

    def test_not_found_and_exists_name_them(self):
        self.assert_error(self.api("GET", "/proxies/nope"), 404, 'proxy not found: "nope"')
        self.make_proxy("p", "127.0.0.1:1")
        self.assert_error(self.api("POST", "/proxies", {"name": "p", "upstream": "127.0.0.1:1"}), 409,
                          'proxy already exists: "p"')
        self.assert_error(self.api("GET", "/proxies/p/toxics/t"), 404, 'toxic not found: "t" on proxy "p"')
        self.assert_error(self.api("DELETE", "/proxies/p/toxics/t"), 404, 'toxic not found: "t" on proxy "p"')
        self.ok("POST", "/proxies/p/toxics", {"type": "latency", "name": "t"})
        self.assert_error(self.api("POST", "/proxies/p/toxics", {"type": "latency", "name": "t"}), 409,
                          'toxic already exists: "t" on proxy "p"')
        r = self.api("POST", "/proxies/p/toxics", {"type": "latencyy"})
        self.assert_error(r, 400, prefix='invalid toxic type "latencyy"')
        self.assertIn("valid types: ", r.json["error"])
        self.assertIn("bandwidth", r.json["error"])

    def test_lenient_keeps_toxiproxys_bare_texts(self):
        with Faultline("--lenient") as fl:
            r = call(fl, "GET", "/proxies/nope")
            self.assertEqual(r.json, {"error": "proxy not found", "status": 404})

    def test_config_file_errors_name_the_file_not_a_request_body(self):
        rc, out, _, _ = run_serve_expect_exit(
            [], config={"proxies": [{"name": "a", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1",
                                     "enabled": "yes"}]})
        self.assertEqual(rc, 2, out)
        self.assertIn("config.json: $.proxies[0].enabled: must be a boolean, got string", out)
        self.assertNotIn("bad request body", out)
        rc, out, _, _ = run_serve_expect_exit(
            [], config={"proxies": [{"name": "a", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1",
                                     "toxics": [{"type": "latency", "attributes": {"latency": "100"}}]}]})
        self.assertEqual(rc, 2, out)
        self.assertIn("config.json: $.proxies[0].toxics[0]: attribute latency of latency must be an integer", out)
        self.assertNotIn("bad request body", out)

    def test_ctl_errors_show_no_library_internals(self):
        p = subprocess.run([BIN, "ctl", "--host", "http://127.0.0.1:1", "list"], capture_output=True, timeout=20)
        err = p.stderr.decode()
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("Connection refused", err)
        for internal in ["[system:", ".hpp:", "in function"]:
            self.assertNotIn(internal, err)


if __name__ == "__main__":
    unittest.main()
