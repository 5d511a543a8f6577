"""Control API: proxy routes, shapes, errors and lenient decoding (Toxiproxy compat §1)."""
import http.client
import json
import os
import re
import socket
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from api_helpers import (ApiTestCase, assert_echo, expect_closed, expect_refused,  # noqa: E402
                         ipv6_loopback_missing, raw_http)
from harness import Faultline, call, connect, free_port  # noqa: E402


def port_in_use(tc):
    """A loopback port that a listening socket holds until the test ends."""
    blocker = socket.socket()
    tc.addCleanup(blocker.close)
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    return blocker.getsockname()[1]


class ProxyRoutes(ApiTestCase):
    def open_connection(self, listen):
        """A connection through the proxy at `listen` that has carried one echo."""
        s = connect(listen)
        self.addCleanup(s.close)
        s.sendall(b"ping")
        self.assertEqual(s.recv(4), b"ping")
        return s

    def test_create_returns_201_with_proxy_json(self):
        echo = self.new_echo()
        r = self.ok("POST", "/proxies", {"name": "redis", "listen": "localhost:0",
                                         "upstream": echo.address}, status=201)
        self.assertTrue(r.headers.get("content-type", "").startswith("application/json"), r.headers)
        p = r.json
        self.assert_proxy_shape(p)
        self.assertEqual(p["name"], "redis")
        self.assert_bound_loopback(p["listen"])
        self.assertEqual(p["upstream"], echo.address)
        self.assertIs(p["enabled"], True)
        self.assertEqual(p["toxics"], [])
        assert_echo(self, p["listen"])

    def test_get_proxies_is_name_keyed_object(self):
        r = self.ok("GET", "/proxies")
        self.assertEqual(r.json, {})
        self.assertTrue(r.headers.get("content-type", "").startswith("application/json"), r.headers)
        self.make_proxy("one", "127.0.0.1:1")
        self.make_proxy("two", "127.0.0.1:2", enabled=False)
        r = self.ok("GET", "/proxies")
        self.assertIsInstance(r.json, dict, r)
        self.assertEqual(set(r.json), {"one", "two"})
        for name, p in r.json.items():
            self.assert_proxy_shape(p)
            self.assertEqual(p["name"], name)
        self.assertIs(r.json["one"]["enabled"], True)
        self.assertIs(r.json["two"]["enabled"], False)
        self.assertEqual(r.json["two"]["upstream"], "127.0.0.1:2")

    def test_get_one_proxy(self):
        created = self.make_proxy("db", "127.0.0.1:5432")
        r = self.ok("GET", "/proxies/db")
        self.assert_proxy_shape(r.json)
        self.assertEqual(r.json, created)

    def test_names_with_colon_dot_at_route(self):
        echo = self.new_echo()
        for name in ["kafka:9092", "10.96.147.189:9094@host", "my-svc_1.ns.svc"]:
            with self.subTest(name=name):
                p = self.make_proxy(name, echo.address)
                self.assertEqual(p["name"], name)
                self.assertEqual(self.ok("GET", f"/proxies/{name}").json["name"], name)
                r = self.ok("POST", f"/proxies/{name}/toxics", {"type": "latency", "attributes": {"latency": 1}})
                self.assertEqual(r.json["name"], "latency_downstream")
                self.assertEqual(len(self.ok("GET", f"/proxies/{name}/toxics").json), 1)
                self.ok("GET", f"/proxies/{name}/toxics/latency_downstream")
                self.ok("PATCH", f"/proxies/{name}/toxics/latency_downstream", {"attributes": {"latency": 2}})
                self.ok("DELETE", f"/proxies/{name}/toxics/latency_downstream", status=204)
                self.assertIs(self.ok("PATCH", f"/proxies/{name}", {"enabled": False}).json["enabled"], False)
                self.assertIn(name, self.ok("GET", "/proxies").json)
                self.ok("DELETE", f"/proxies/{name}", status=204)
                self.assert_error(self.api("GET", f"/proxies/{name}"), 404, f'proxy not found: "{name}"')

    def test_percent_encoded_name_routes(self):
        self.make_proxy("kafka:9092", "127.0.0.1:9092")
        quoted = urllib.parse.quote("kafka:9092", safe="")
        self.assertEqual(quoted, "kafka%3A9092")
        self.assertEqual(self.ok("GET", f"/proxies/{quoted}").json["name"], "kafka:9092")

    def test_post_and_patch_both_update(self):
        p = self.make_proxy("svc", "127.0.0.1:1")
        for method, enabled in [("PATCH", False), ("POST", True), ("POST", False), ("PATCH", True)]:
            with self.subTest(method=method, enabled=enabled):
                r = self.ok(method, "/proxies/svc", {"enabled": enabled})
                self.assert_proxy_shape(r.json)
                self.assertIs(r.json["enabled"], enabled)
                self.assertEqual(r.json["upstream"], "127.0.0.1:1", "partial update keeps upstream")
                self.assertEqual(r.json["listen"], p["listen"], "partial update keeps listen")
                self.assertIs(self.ok("GET", "/proxies/svc").json["enabled"], enabled)

    def test_update_upstream_redirects_new_connections(self):
        old, new = self.new_echo(), self.new_echo()
        p = self.make_proxy("svc", old.address)
        assert_echo(self, p["listen"])
        self.assertEqual(old.accepted, 1)
        r = self.ok("PATCH", "/proxies/svc", {"upstream": new.address})
        self.assertEqual(r.json["upstream"], new.address)
        self.assertIs(r.json["enabled"], True)
        self.assertEqual(r.json["listen"], p["listen"], "listen not in body: same bound address")
        assert_echo(self, r.json["listen"])
        self.assertEqual(new.accepted, 1)
        self.assertEqual(old.accepted, 1)

    def test_update_ignores_name_and_toxics(self):
        self.make_proxy("svc", "127.0.0.1:1")
        r = self.ok("POST", "/proxies/svc", {"name": "other", "enabled": True,
                                             "toxics": [{"type": "latency"}]})
        self.assertEqual(r.json["name"], "svc")
        self.assertEqual(r.json["toxics"], [])
        self.assert_error(self.api("GET", "/proxies/other"), 404, 'proxy not found: "other"')
        self.assertEqual(set(self.ok("GET", "/proxies").json), {"svc"})

    def test_go_client_save_full_proxy_json(self):
        # The Go client's Proxy.Save() re-posts the whole proxy JSON, toxics included.
        p = self.make_proxy("svc", "127.0.0.1:1")
        self.ok("POST", "/proxies/svc/toxics", {"type": "latency", "attributes": {"latency": 5}})
        full = self.ok("GET", "/proxies/svc").json
        full["enabled"] = False
        r = self.ok("POST", "/proxies/svc", full)
        self.assertIs(r.json["enabled"], False)
        self.assertEqual([t["name"] for t in r.json["toxics"]], ["latency_downstream"])
        self.assertEqual(r.json["listen"], p["listen"])

    def test_update_listen_rebinds_and_closes_connections(self):
        echo = self.new_echo()
        p = self.make_proxy("svc", echo.address)
        s = self.open_connection(p["listen"])
        port = free_port()
        r = self.ok("PATCH", "/proxies/svc", {"listen": f"localhost:{port}"})
        self.assertEqual(r.json["listen"], f"127.0.0.1:{port}")
        self.assertIs(r.json["enabled"], True)
        expect_closed(self, s, what="connection of a proxy whose listen changed")
        expect_refused(self, p["listen"])
        assert_echo(self, f"127.0.0.1:{port}")

    def test_update_with_bad_listen_is_500_and_leaves_proxy_running(self):
        echo = self.new_echo()
        p = self.make_proxy("svc", echo.address)
        self.assert_error(self.api("PATCH", "/proxies/svc", {"listen": "foo"}), 500)
        now = self.ok("GET", "/proxies/svc").json
        self.assertIs(now["enabled"], True, f"a refused update must not take the proxy down: {now}")
        self.assertEqual(now["listen"], p["listen"])
        assert_echo(self, p["listen"])

    def test_create_with_bad_listen_is_500(self):
        r = self.api("POST", "/proxies", {"name": "bad", "listen": "foo", "upstream": "127.0.0.1:1"})
        self.assert_error(r, 500)
        self.assert_error(self.api("GET", "/proxies/bad"), 404, 'proxy not found: "bad"')

    def test_faultline_extra_fields_only_when_set(self):
        plain = self.make_proxy("plain", "127.0.0.1:1")
        self.assertNotIn("on_upstream_down", plain)
        self.assertNotIn("max_connections", plain)
        extra = self.make_proxy("extra", "127.0.0.1:1", on_upstream_down="refuse", max_connections=3)
        self.assert_proxy_shape(extra)
        self.assertEqual(extra["on_upstream_down"], "refuse")
        self.assertEqual(extra["max_connections"], 3)
        self.assertEqual(self.ok("GET", "/proxies/extra").json, extra)
        for body in [{"on_upstream_down": "explode"}, {"max_connections": -1}]:
            with self.subTest(body=body):
                body.update({"name": "bad", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"})
                self.assert_error(self.api("POST", "/proxies", body), 400, prefix="bad request body")
        self.assert_error(self.api("GET", "/proxies/bad"), 404, 'proxy not found: "bad"')

    def test_disabled_proxy_keeps_raw_listen(self):
        r = self.ok("POST", "/proxies", {"name": "off", "listen": "localhost:0",
                                         "upstream": "127.0.0.1:1", "enabled": False}, status=201)
        self.assertEqual(r.json["listen"], "localhost:0")
        self.assertIs(r.json["enabled"], False)
        self.assertEqual(self.ok("GET", "/proxies/off").json["listen"], "localhost:0")
        r = self.ok("PATCH", "/proxies/off", {"enabled": True})
        self.assertIs(r.json["enabled"], True)
        self.assert_bound_loopback(r.json["listen"])

    def test_enabled_proxy_reports_bound_address_for_fixed_port(self):
        port = free_port()
        r = self.ok("POST", "/proxies", {"name": "fixed", "listen": f"localhost:{port}",
                                         "upstream": "127.0.0.1:1"}, status=201)
        self.assertEqual(r.json["listen"], f"127.0.0.1:{port}")

    def test_ipv6_wildcard_listen(self):
        missing = ipv6_loopback_missing()
        if missing:
            self.skipTest(f"IPv6 loopback unavailable: {missing}; IPv6 wildcard listen NOT tested")
        echo = self.new_echo()
        r = self.ok("POST", "/proxies", {"name": "v6", "listen": "[::]:0", "upstream": echo.address},
                    status=201)
        m = re.fullmatch(r"\[::\]:(\d+)", r.json["listen"])
        self.assertIsNotNone(m, f"expected [::]:<port>, got {r.json['listen']!r}")
        assert_echo(self, f"[::1]:{m.group(1)}")

    def test_disable_closes_listener_and_connections_then_reenable(self):
        echo = self.new_echo()
        p = self.make_proxy("svc", echo.address)
        s = self.open_connection(p["listen"])
        off = self.ok("PATCH", "/proxies/svc", {"enabled": False}).json
        self.assertIs(off["enabled"], False)
        expect_closed(self, s, what="client connection of a disabled proxy")
        expect_refused(self, p["listen"])
        on = self.ok("PATCH", "/proxies/svc", {"enabled": True}).json
        self.assertIs(on["enabled"], True)
        assert_echo(self, on["listen"])
        # Toxiproxy keeps the bound address: clients (and port mappings) stay valid across a toggle.
        self.assertEqual(off["listen"], p["listen"], "a disabled proxy keeps its last bound address")
        self.assertEqual(on["listen"], p["listen"], "re-enabling binds the same address")

    def test_delete_returns_204_and_closes_everything(self):
        echo = self.new_echo()
        p = self.make_proxy("svc", echo.address)
        s = self.open_connection(p["listen"])
        r = self.ok("DELETE", "/proxies/svc", status=204)
        self.assertEqual(r.text, "")
        expect_closed(self, s, what="client connection of a deleted proxy")
        expect_refused(self, p["listen"])
        self.assert_error(self.api("GET", "/proxies/svc"), 404, 'proxy not found: "svc"')
        self.assert_error(self.api("DELETE", "/proxies/svc"), 404, 'proxy not found: "svc"')
        self.assertEqual(self.ok("GET", "/proxies").json, {})
        # The name and the port are free again.
        self.make_proxy("svc", echo.address, listen=p["listen"])
        assert_echo(self, p["listen"])


class Populate(ApiTestCase):
    def test_populate_empty_array_returns_empty_list(self):
        r = self.ok("POST", "/populate", [], status=201)
        self.assertEqual(r.json, {"proxies": []})

    def test_populate_creates_in_input_order(self):
        echo = self.new_echo()
        body = [{"name": "b", "listen": "127.0.0.1:0", "upstream": echo.address},
                {"name": "a", "listen": "localhost:0", "upstream": echo.address},
                {"name": "c", "listen": "localhost:0", "upstream": echo.address, "enabled": False}]
        r = self.ok("POST", "/populate", body, status=201)
        self.assertEqual(list(r.json), ["proxies"])
        self.assertIsInstance(r.json["proxies"], list)
        self.assertEqual([p["name"] for p in r.json["proxies"]], ["b", "a", "c"])
        for p in r.json["proxies"]:
            self.assert_proxy_shape(p)
        b, a, c = r.json["proxies"]
        self.assertIs(c["enabled"], False)
        self.assertEqual(c["listen"], "localhost:0")
        self.assert_bound_loopback(a["listen"])
        assert_echo(self, a["listen"])
        assert_echo(self, b["listen"])
        self.assertEqual(set(self.ok("GET", "/proxies").json), {"a", "b", "c"})

    def test_populate_missing_name_at_proxy_n_creates_nothing(self):
        body = [{"name": "ok1", "upstream": "127.0.0.1:1", "listen": "127.0.0.1:0"},
                {"upstream": "127.0.0.1:2", "listen": "127.0.0.1:0"}]
        self.assert_error(self.api("POST", "/populate", body), 400, "missing required field: name at proxy 2")
        self.assertEqual(self.ok("GET", "/proxies").json, {})

    def test_populate_missing_upstream_at_proxy_n_creates_nothing(self):
        body = [{"name": "x", "listen": "127.0.0.1:0"},
                {"name": "ok", "upstream": "127.0.0.1:1", "listen": "127.0.0.1:0"}]
        self.assert_error(self.api("POST", "/populate", body), 400,
                          "missing required field: upstream at proxy 1")
        self.assertEqual(self.ok("GET", "/proxies").json, {})

    def test_populate_bind_failure_part_way_keeps_earlier_ones(self):
        port = port_in_use(self)
        body = [{"name": "a", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"},
                {"name": "b", "listen": f"127.0.0.1:{port}", "upstream": "127.0.0.1:1"},
                {"name": "c", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"}]
        r = self.api("POST", "/populate", body)
        self.assert_error(r, 500, contains="address already in use")
        self.assertEqual([p["name"] for p in r.json.get("proxies", [])], ["a"],
                         "the error body lists the proxies done before the failure")
        self.assertEqual(set(self.ok("GET", "/proxies").json), {"a"}, "no rollback, nothing after")

    def test_populate_object_instead_of_array_is_400(self):
        r = self.api("POST", "/populate", {"name": "x", "upstream": "127.0.0.1:1"})
        self.assert_error(r, 400, prefix="bad request body")
        self.assertEqual(self.ok("GET", "/proxies").json, {})

    def test_populate_bad_json_is_400(self):
        self.assert_error(self.api("POST", "/populate", raw=b"[{"), 400, prefix="bad request body")


class ProxyErrors(ApiTestCase):
    def test_bad_json_is_400(self):
        for raw in [b"{", b"not json", b'{"name": "x", "upstream": }']:
            with self.subTest(raw=raw):
                self.assert_error(self.api("POST", "/proxies", raw=raw), 400, prefix="bad request body")
        self.assertEqual(self.ok("GET", "/proxies").json, {})

    def test_empty_body_on_create_is_400(self):
        self.assert_error(self.api("POST", "/proxies", raw=b""), 400, prefix="bad request body")

    def test_missing_name_or_upstream(self):
        self.assert_error(self.api("POST", "/proxies", {"upstream": "127.0.0.1:1"}), 400,
                          "missing required field: name")
        self.assert_error(self.api("POST", "/proxies", {"name": "x", "listen": "127.0.0.1:0"}), 400,
                          "missing required field: upstream")
        self.assert_error(self.api("POST", "/proxies", {"name": "", "upstream": "127.0.0.1:1"}), 400,
                          "missing required field: name")
        self.assertEqual(self.ok("GET", "/proxies").json, {})

    def test_duplicate_name_is_409(self):
        first = self.make_proxy("dup", "127.0.0.1:1")
        r = self.api("POST", "/proxies", {"name": "dup", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:2"})
        self.assert_error(r, 409, 'proxy already exists: "dup"')
        self.assertEqual(self.ok("GET", "/proxies/dup").json, first)

    def test_unknown_proxy_is_404_everywhere(self):
        for method, path, body in [("GET", "/proxies/nope", None),
                                   ("PATCH", "/proxies/nope", {"enabled": False}),
                                   ("POST", "/proxies/nope", {"enabled": False}),
                                   ("DELETE", "/proxies/nope", None),
                                   ("GET", "/proxies/nope/toxics", None),
                                   ("POST", "/proxies/nope/toxics", {"type": "latency"}),
                                   ("GET", "/proxies/nope/toxics/t", None),
                                   ("PATCH", "/proxies/nope/toxics/t", {"toxicity": 0.5}),
                                   ("DELETE", "/proxies/nope/toxics/t", None)]:
            with self.subTest(method=method, path=path):
                self.assert_error(self.api(method, path, body), 404, 'proxy not found: "nope"')

    def test_port_in_use_is_500(self):
        port = port_in_use(self)
        r = self.api("POST", "/proxies", {"name": "clash", "listen": f"127.0.0.1:{port}",
                                          "upstream": "127.0.0.1:1"})
        self.assert_error(r, 500, contains="address already in use")
        self.assert_error(self.api("GET", "/proxies/clash"), 404, 'proxy not found: "clash"')

    def test_enable_on_port_in_use_is_500(self):
        port = port_in_use(self)
        self.make_proxy("later", "127.0.0.1:1", listen=f"127.0.0.1:{port}", enabled=False)
        r = self.api("PATCH", "/proxies/later", {"enabled": True})
        self.assert_error(r, 500, contains="address already in use")
        self.assertIs(self.ok("GET", "/proxies/later").json["enabled"], False)

    def test_wrong_json_types_are_400(self):
        for body in [{"name": "x", "upstream": "127.0.0.1:1", "enabled": "true"},
                     {"name": 5, "upstream": "127.0.0.1:1"},
                     {"name": "x", "upstream": ["127.0.0.1:1"]},
                     ["not", "an", "object"]]:
            with self.subTest(body=body):
                self.assert_error(self.api("POST", "/proxies", body), 400, prefix="bad request body")
        self.assertEqual(self.ok("GET", "/proxies").json, {})
        self.make_proxy("x", "127.0.0.1:1")
        self.assert_error(self.api("PATCH", "/proxies/x", {"enabled": "false"}), 400, prefix="bad request body")
        self.assertIs(self.ok("GET", "/proxies/x").json["enabled"], True)

    def test_unknown_path_is_404(self):
        # Routing errors are gorilla/mux's (compat §1.2): plain-text 404, not the JSON error shape.
        for method, path in [("GET", "/nope"), ("GET", "/proxies/x/y/z/w"), ("POST", "/toxics"),
                             ("GET", "/proxies/")]:
            with self.subTest(path=path):
                r = self.api(method, path)
                self.assertEqual(r.status, 404, r)
                self.assertEqual(r.text, "404 page not found\n")

    def test_wrong_method_is_405(self):
        self.make_proxy("x", "127.0.0.1:1")
        for method, path in [("PUT", "/proxies"), ("DELETE", "/proxies"), ("GET", "/reset"),
                             ("GET", "/populate"), ("PUT", "/proxies/x"), ("PUT", "/proxies/x/toxics"),
                             ("POST", "/version"), ("OPTIONS", "/proxies")]:
            with self.subTest(method=method, path=path):
                r = self.api(method, path, raw=b"")
                self.assertEqual(r.status, 405, r)
                self.assertEqual(r.text, "", "405 has an empty body (compat §1.2)")
        self.assertEqual(set(self.ok("GET", "/proxies").json), {"x"})

    def test_browser_user_agent_is_403(self):
        r = self.api("GET", "/proxies", user_agent="Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101")
        self.assertEqual(r.status, 403)
        self.assertEqual(r.text.strip(), "User agent not allowed")
        r = self.api("POST", "/proxies", {"name": "x", "upstream": "127.0.0.1:1"}, user_agent="Mozilla/4.0")
        self.assertEqual(r.status, 403)
        self.assertEqual(self.ok("GET", "/proxies", user_agent="Wget/2.1").json, {})

    def test_body_over_1mib_is_413(self):
        pad = 1 << 20
        body = b'{"name":"big","upstream":"127.0.0.1:1","pad":"' + b"x" * pad + b'"}'
        self.assertGreater(len(body), 1 << 20)
        req = (b"POST /proxies HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: t\r\n"
               b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        r = raw_http(self.fl.host, self.fl.port, req)
        self.assert_error(r, 413, "request body too large (limit 1 MiB)")
        self.assert_error(self.api("GET", "/proxies/big"), 404, 'proxy not found: "big"')

    def test_chunked_body_over_1mib_is_413(self):
        body = b'{"name":"big","upstream":"127.0.0.1:1","pad":"' + b"x" * (2 << 20) + b'"}'
        chunked = b"".join(b"%x\r\n" % len(body[i:i + 65536]) + body[i:i + 65536] + b"\r\n"
                           for i in range(0, len(body), 65536)) + b"0\r\n\r\n"
        req = (b"POST /proxies HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: t\r\n"
               b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunked)
        self.assert_error(raw_http(self.fl.host, self.fl.port, req), 413, "request body too large (limit 1 MiB)")
        self.assert_error(self.api("GET", "/proxies/big"), 404, 'proxy not found: "big"')

    def test_deeply_nested_json_is_400_not_a_crash(self):
        depth = 200000  # 400 KB: well under the body limit
        for path in ["/proxies", "/populate", "/reset"]:
            with self.subTest(path=path):
                fl = Faultline()  # one server per path: a crash must not hide the next case
                self.addCleanup(fl.__exit__)
                try:
                    r = call(fl, "POST", path, raw=b"[" * depth + b"]" * depth, timeout=10)
                except (http.client.HTTPException, OSError) as e:
                    time.sleep(0.2)
                    self.fail(f"POST {path} with {depth}-deep JSON: no response ({e!r}); "
                              f"server exit code {fl.proc.poll()}")
                if path == "/reset":
                    self.assertEqual(r.status, 204, r)  # the body of /reset is ignored
                else:
                    self.assert_error(r, 400, prefix="bad request body")
                self.assertEqual(call(fl, "GET", "/proxies").json, {})
                self.assertIsNone(fl.proc.poll(), "server died")

    def test_body_of_exactly_1mib_is_accepted(self):
        head = b'{"name":"big","upstream":"127.0.0.1:1","listen":"127.0.0.1:0","pad":"'
        tail = b'"}'
        body = head + b"x" * ((1 << 20) - len(head) - len(tail)) + tail
        self.assertEqual(len(body), 1 << 20)
        r = self.api("POST", "/proxies", raw=body)
        self.assertEqual(r.status, 201, r)


class LenientDecoding(ApiTestCase):
    def test_unknown_fields_ignored(self):
        r = self.api("POST", "/proxies", {"name": "x", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1",
                                          "enabled": True, "toxics": None, "Logger": {}, "extra": [1, 2]})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json["toxics"], [])
        r = self.api("POST", "/populate", [{"name": "y", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1",
                                            "toxics": None, "Logger": {}}])
        self.assertEqual(r.status, 201, r)

    def test_enabled_null_means_true(self):
        r = self.ok("POST", "/proxies", {"name": "x", "listen": "localhost:0", "upstream": "127.0.0.1:1",
                                         "enabled": None}, status=201)
        self.assertIs(r.json["enabled"], True)
        self.assert_bound_loopback(r.json["listen"])
        r = self.ok("POST", "/populate", [{"name": "y", "listen": "localhost:0", "upstream": "127.0.0.1:1",
                                           "enabled": None}], status=201)
        self.assertIs(r.json["proxies"][0]["enabled"], True)

    def test_keys_are_case_insensitive(self):
        r = self.ok("POST", "/proxies", {"Name": "x", "Listen": "127.0.0.1:0", "UPSTREAM": "127.0.0.1:1"},
                    status=201)
        self.assertEqual(r.json["name"], "x")
        self.assertEqual(r.json["upstream"], "127.0.0.1:1")
        r = self.ok("PATCH", "/proxies/x", {"Enabled": False})
        self.assertIs(r.json["enabled"], False)

    def test_no_or_foreign_content_type(self):
        # http.client sends no Content-Type by default (like Java's HttpURLConnection defaults).
        self.ok("POST", "/proxies", {"name": "a", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"},
                status=201)
        self.ok("POST", "/proxies", {"name": "b", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"},
                status=201, headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.ok("POST", "/proxies/b", {"enabled": False},
                headers={"Content-Type": "text/plain"})

    def test_reset_with_no_body_and_no_content_length(self):
        self.make_proxy("x", "127.0.0.1:1", enabled=False)
        r = raw_http(self.fl.host, self.fl.port,
                     b"POST /reset HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: Ruby\r\nConnection: close\r\n\r\n")
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.text, "")
        self.assertIs(self.ok("GET", "/proxies/x").json["enabled"], True)

    def test_reset_with_empty_and_with_json_body(self):
        self.assertEqual(self.ok("POST", "/reset", raw=b"", status=204).text, "")
        self.assertEqual(self.ok("POST", "/reset", raw=b"{}", status=204,
                                 headers={"Content-Type": "application/json"}).text, "")

    def test_keep_alive_requests_on_one_connection(self):
        conn = http.client.HTTPConnection(self.fl.host, self.fl.port, timeout=5)
        self.addCleanup(conn.close)
        for i in range(3):
            conn.request("POST", "/proxies", body=f'{{"name":"k{i}","listen":"127.0.0.1:0",'
                         f'"upstream":"127.0.0.1:1"}}', headers={"User-Agent": "t"})
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 201)
        conn.request("GET", "/proxies", headers={"User-Agent": "t"})
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(len(json.loads(r.read())), 3)


if __name__ == "__main__":
    unittest.main()
