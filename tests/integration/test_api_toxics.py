"""Control API: toxic routes, defaults, ordering, validation, populate and reset semantics."""
import decimal
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from api_helpers import ApiTestCase, assert_echo, expect_closed, to_plain  # noqa: E402
from harness import connect, free_port, recv_at_least  # noqa: E402

DEFAULT_ATTRIBUTES = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "slow_close": {"delay": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "limit_data": {"bytes": 0},
    "noop": {},
}


def timed_roundtrip(tc, sock, payload=b"ping"):
    start = time.monotonic()
    sock.sendall(payload)
    got = recv_at_least(sock, len(payload))
    tc.assertEqual(got, payload)
    return time.monotonic() - start


class ToxicRoutes(ApiTestCase):
    def setUp(self):
        super().setUp()
        self.echo = self.new_echo()
        self.proxy = self.make_proxy("p", self.echo.address)

    def test_create_is_200_with_defaults(self):
        r = self.ok("POST", "/proxies/p/toxics", {"type": "latency"}, status=200)
        self.assertTrue(r.headers.get("content-type", "").startswith("application/json"), r.headers)
        t = r.json
        self.assert_toxic_shape(t)
        self.assertEqual(list(t)[:5], ["attributes", "name", "type", "stream", "toxicity"])
        self.assertEqual(t["name"], "latency_downstream")
        self.assertEqual(t["type"], "latency")
        self.assertEqual(t["stream"], "downstream")
        self.assertEqual(t["toxicity"], 1)
        self.assertEqual(t["attributes"], {"latency": 0, "jitter": 0})

    def test_every_type_lists_all_attributes_with_zero_defaults(self):
        for type_, attrs in DEFAULT_ATTRIBUTES.items():
            with self.subTest(type=type_):
                t = self.ok("POST", "/proxies/p/toxics", {"type": type_}).json
                self.assertEqual(t["name"], f"{type_}_downstream")
                self.assertEqual(t["attributes"], attrs)
                for k, v in t["attributes"].items():
                    self.assertIs(type(v), int, f"{type_}.{k} should be a JSON integer: {t}")
                self.assertEqual(self.ok("GET", f"/proxies/p/toxics/{type_}_downstream").json, t)
        # slicer's average_size must be >= 1, so give it; the other two default to 0.
        t = self.ok("POST", "/proxies/p/toxics", {"type": "slicer", "attributes": {"average_size": 10}}).json
        self.assertEqual(t["name"], "slicer_downstream")
        self.assertEqual(t["attributes"], {"average_size": 10, "size_variation": 0, "delay": 0})
        listed = self.ok("GET", "/proxies/p/toxics").json
        self.assertEqual(len(listed), len(DEFAULT_ATTRIBUTES) + 1)
        for t in listed:
            self.assert_toxic_shape(t)

    def test_null_fields_mean_defaults_and_unknown_attributes_are_refused(self):
        t = self.ok("POST", "/proxies/p/toxics", {"type": "latency", "name": None, "stream": None,
                                                  "toxicity": None, "attributes": None}).json
        self.assertEqual((t["name"], t["stream"], t["toxicity"]), ("latency_downstream", "downstream", 1))
        self.assertEqual(t["attributes"], {"latency": 0, "jitter": 0})
        # A misspelt attribute would be a fault that does nothing: refused, naming the type's.
        r = self.api("POST", "/proxies/p/toxics", {"type": "bandwidth", "attributes": {"rate": 5, "bogus": 1}})
        self.assert_error(r, 400, "attribute bogus is unknown to bandwidth (its attributes: rate, dice, schedule)")
        # Unknown top-level keys stay accepted (Toxiproxy compatibility), and are logged.
        t = self.ok("POST", "/proxies/p/toxics", {"type": "bandwidth", "attributes": {"rate": 5}, "extra": True}).json
        self.assertEqual(t["attributes"], {"rate": 5})

    def test_case_insensitive_keys(self):
        t = self.ok("POST", "/proxies/p/toxics", {"Type": "latency", "Stream": "upstream", "Name": "lat",
                                                  "Attributes": {"latency": 7}}).json
        self.assertEqual((t["name"], t["type"], t["stream"]), ("lat", "latency", "upstream"))
        self.assertEqual(t["attributes"]["latency"], 7)

    def test_stream_spelling_is_echoed(self):
        t = self.ok("POST", "/proxies/p/toxics", {"type": "latency", "stream": "Upstream"}).json
        self.assertEqual(t["stream"], "Upstream")
        self.assertEqual(t["name"], "latency_Upstream")
        self.ok("POST", "/proxies/p/toxics", {"type": "latency", "name": "d"})
        names = [x["name"] for x in self.ok("GET", "/proxies/p/toxics").json]
        self.assertEqual(names, ["latency_Upstream", "d"], "an 'Upstream' toxic is an upstream toxic")

    def test_listing_order_upstream_first_then_insertion_order(self):
        for name, stream in [("d1", "downstream"), ("u1", "upstream"), ("d2", None), ("u2", "UPSTREAM"),
                             ("d3", "downstream")]:
            body = {"type": "noop", "name": name}
            if stream:
                body["stream"] = stream
            self.ok("POST", "/proxies/p/toxics", body)
        want = ["u1", "u2", "d1", "d2", "d3"]
        self.assertEqual([t["name"] for t in self.ok("GET", "/proxies/p/toxics").json], want)
        self.assertEqual([t["name"] for t in self.ok("GET", "/proxies/p").json["toxics"]], want)
        self.assertEqual([t["name"] for t in self.ok("GET", "/proxies").json["p"]["toxics"]], want)
        self.ok("DELETE", "/proxies/p/toxics/u1", status=204)
        self.ok("POST", "/proxies/p/toxics", {"type": "noop", "name": "u1", "stream": "upstream"})
        self.assertEqual([t["name"] for t in self.ok("GET", "/proxies/p/toxics").json],
                         ["u2", "u1", "d1", "d2", "d3"])

    def test_get_update_delete_toxic(self):
        self.ok("POST", "/proxies/p/toxics", {"type": "latency", "name": "lat",
                                              "attributes": {"latency": 100, "jitter": 10}})
        t = self.ok("GET", "/proxies/p/toxics/lat").json
        self.assertEqual(t["attributes"], {"latency": 100, "jitter": 10})
        r = self.ok("PATCH", "/proxies/p/toxics/lat", {"attributes": {"latency": 200}})
        self.assert_toxic_shape(r.json)
        self.assertEqual(r.json["attributes"], {"latency": 200, "jitter": 10}, "partial update keeps jitter")
        self.assertEqual(r.json["toxicity"], 1, "omitted toxicity is unchanged")
        r = self.ok("POST", "/proxies/p/toxics/lat", {"toxicity": 0.5})
        self.assertEqual(to_plain(r.json["toxicity"]), 0.5)
        self.assertEqual(r.json["attributes"], {"latency": 200, "jitter": 10}, "omitted attributes unchanged")
        r = self.ok("PATCH", "/proxies/p/toxics/lat", {"attributes": {"jitter": 3}})
        self.assertEqual(r.json["attributes"], {"latency": 200, "jitter": 3})
        self.assertEqual(to_plain(r.json["toxicity"]), 0.5)
        self.assertEqual(self.ok("GET", "/proxies/p/toxics/lat").json, r.json)
        r = self.ok("DELETE", "/proxies/p/toxics/lat", status=204)
        self.assertEqual(r.text, "")
        self.assertEqual(self.ok("GET", "/proxies/p/toxics").json, [])
        self.assert_error(self.api("DELETE", "/proxies/p/toxics/lat"), 404, 'toxic not found: "lat" on proxy "p"')

    def test_update_ignores_name_type_stream(self):
        self.ok("POST", "/proxies/p/toxics", {"type": "latency", "name": "lat", "attributes": {"latency": 1}})
        r = self.ok("PATCH", "/proxies/p/toxics/lat", {"name": "other", "type": "bandwidth", "stream": "upstream",
                                                       "attributes": {"latency": 5}})
        self.assertEqual((r.json["name"], r.json["type"], r.json["stream"]), ("lat", "latency", "downstream"))
        self.assertEqual(r.json["attributes"], {"latency": 5, "jitter": 0})
        self.assert_error(self.api("GET", "/proxies/p/toxics/other"), 404, 'toxic not found: "other" on proxy "p"')
        # Node/Java re-send the whole toxic.
        full = self.ok("GET", "/proxies/p/toxics/lat").json
        full["attributes"]["jitter"] = 2
        r = self.ok("POST", "/proxies/p/toxics/lat", to_plain(full))
        self.assertEqual(r.json["attributes"], {"latency": 5, "jitter": 2})

    def test_update_with_empty_body_is_400(self):
        self.ok("POST", "/proxies/p/toxics", {"type": "latency", "name": "lat"})
        self.assert_error(self.api("PATCH", "/proxies/p/toxics/lat", raw=b""), 400, prefix="bad request body")
        self.assert_error(self.api("PATCH", "/proxies/p/toxics/lat", raw=b"{"), 400, prefix="bad request body")

    def test_toxicity_is_printed_shortest(self):
        r = self.ok("POST", "/proxies/p/toxics", {"type": "latency", "toxicity": 0.2})
        self.assertRegex(r.text, r'"toxicity"\s*:\s*0\.2\s*[,}]')
        self.assertEqual(r.json["toxicity"], decimal.Decimal("0.2"))
        listed = self.ok("GET", "/proxies/p/toxics")
        self.assertRegex(listed.text, r'"toxicity"\s*:\s*0\.2\s*[,}]')
        r = self.ok("PATCH", "/proxies/p/toxics/latency_downstream", {"toxicity": 0.7})
        self.assertRegex(r.text, r'"toxicity"\s*:\s*0\.7\s*[,}]')
        r = self.ok("POST", "/proxies/p/toxics", {"type": "noop", "toxicity": 0})
        self.assertEqual(r.json["toxicity"], 0)

    def test_integral_float_accepted_for_int_attribute(self):
        r = self.ok("POST", "/proxies/p/toxics", {"type": "latency", "attributes": {"latency": 1000.0,
                                                                                  "jitter": 5.0}})
        self.assertEqual(r.json["attributes"], {"latency": 1000, "jitter": 5})
        self.assertIs(type(r.json["attributes"]["latency"]), int, r.text)
        r = self.ok("PATCH", "/proxies/p/toxics/latency_downstream", {"attributes": {"latency": 20.0}})
        self.assertEqual(r.json["attributes"], {"latency": 20, "jitter": 5})

    def test_toxic_on_disabled_proxy(self):
        self.ok("PATCH", "/proxies/p", {"enabled": False})
        self.ok("POST", "/proxies/p/toxics", {"type": "latency"})
        self.assertEqual(len(self.ok("GET", "/proxies/p").json["toxics"]), 1)

    def test_toxics_apply_to_open_connection_live(self):
        s = connect(self.proxy["listen"])
        self.addCleanup(s.close)
        self.assertLess(timed_roundtrip(self, s), 0.2)
        self.ok("POST", "/proxies/p/toxics", {"type": "latency", "attributes": {"latency": 300}})
        self.assertGreaterEqual(timed_roundtrip(self, s), 0.28, "latency added live applies to the connection")
        self.ok("PATCH", "/proxies/p/toxics/latency_downstream", {"attributes": {"latency": 0}})
        self.assertLess(timed_roundtrip(self, s), 0.2, "update applies live")
        self.ok("PATCH", "/proxies/p/toxics/latency_downstream", {"attributes": {"latency": 300}})
        self.ok("DELETE", "/proxies/p/toxics/latency_downstream", status=204)
        self.assertLess(timed_roundtrip(self, s), 0.2, "removal applies live")


class LenientServer(ApiTestCase):
    """serve --lenient: Toxiproxy's own behaviour, for clients that relied on it."""
    server_args = ("--lenient",)

    def setUp(self):
        super().setUp()
        self.echo = self.new_echo()
        self.proxy = self.make_proxy("p", self.echo.address)

    def test_unknown_attributes_are_ignored_and_errors_are_toxiproxys(self):
        t = self.ok("POST", "/proxies/p/toxics", {"type": "bandwidth", "attributes": {"rate": 5, "bogus": 1}}).json
        self.assertEqual(t["attributes"], {"rate": 5})
        self.assert_error(self.api("POST", "/proxies/p/toxics", {"type": "lag"}), 400, "invalid toxic type")


class ToxicErrors(ApiTestCase):
    def setUp(self):
        super().setUp()
        self.make_proxy("p", "127.0.0.1:1")

    def listed(self):
        return self.ok("GET", "/proxies/p/toxics").json

    def test_unknown_toxic_is_404(self):
        for method, body in [("GET", None), ("PATCH", {"toxicity": 0.5}), ("POST", {"toxicity": 0.5}),
                             ("DELETE", None)]:
            with self.subTest(method=method):
                self.assert_error(self.api(method, "/proxies/p/toxics/nope", body), 404,
                                  'toxic not found: "nope" on proxy "p"')

    def test_duplicate_toxic_is_409_across_streams(self):
        self.ok("POST", "/proxies/p/toxics", {"type": "latency"})
        self.assert_error(self.api("POST", "/proxies/p/toxics", {"type": "latency"}), 409,
                          'toxic already exists: "latency_downstream" on proxy "p"')
        self.ok("POST", "/proxies/p/toxics", {"type": "latency", "name": "x", "stream": "downstream"})
        self.assert_error(self.api("POST", "/proxies/p/toxics", {"type": "bandwidth", "name": "x",
                                                                 "stream": "upstream"}),
                          409, 'toxic already exists: "x" on proxy "p"')
        self.assertEqual([t["name"] for t in self.listed()], ["latency_downstream", "x"])

    def test_invalid_stream_is_400(self):
        for stream in ["sideways", "", "up"]:
            with self.subTest(stream=stream):
                self.assert_error(self.api("POST", "/proxies/p/toxics", {"type": "latency", "stream": stream}),
                                  400, "stream was invalid, can be either upstream or downstream")
        self.assertEqual(self.listed(), [])

    def test_invalid_type_is_400(self):
        for body in [{"type": "lag"}, {"type": ""}, {"name": "x"}]:
            with self.subTest(body=body):
                self.assert_error(self.api("POST", "/proxies/p/toxics", body), 400, prefix="invalid toxic type")
        self.assertEqual(self.listed(), [])

    def test_invalid_type_names_it_and_the_closest_type(self):
        r = self.api("POST", "/proxies/p/toxics", {"type": "latncy"})
        self.assert_error(r, 400, prefix='invalid toxic type "latncy" (did you mean "latency"?) (valid types: ')
        self.assertIn("bandwidth", r.json["error"])

    def test_unknown_attribute_is_400_naming_it(self):
        r = self.api("POST", "/proxies/p/toxics", {"type": "latency", "attributes": {"latncy": 100}})
        self.assert_error(r, 400, contains='attribute latncy is unknown to latency (did you mean "latency"?)')
        self.assertEqual(self.listed(), [])

    def test_bad_json_and_wrong_types_are_400(self):
        self.assert_error(self.api("POST", "/proxies/p/toxics", raw=b"{"), 400, prefix="bad request body")
        self.assert_error(self.api("POST", "/proxies/p/toxics", raw=b""), 400, prefix="bad request body")
        for body in [{"type": "latency", "attributes": {"latency": "100"}},
                     {"type": "latency", "toxicity": "0.5"},
                     {"type": 5},
                     {"type": "latency", "attributes": [1, 2]}]:
            with self.subTest(body=body):
                r = self.api("POST", "/proxies/p/toxics", body)
                self.assert_error(r, 400)
        self.assertEqual(self.listed(), [])
        self.ok("POST", "/proxies/p/toxics", {"type": "latency", "attributes": {"latency": 9}})
        self.assert_error(self.api("PATCH", "/proxies/p/toxics/latency_downstream",
                                   {"attributes": {"latency": "100"}}), 400)
        self.assertEqual(self.listed()[0]["attributes"]["latency"], 9)

    def test_invalid_attribute_values_are_400_naming_the_attribute(self):
        cases = [
            ({"type": "bandwidth", "attributes": {"rate": -1}}, "rate"),
            ({"type": "latency", "attributes": {"latency": -5}}, "latency"),
            ({"type": "slicer", "attributes": {"average_size": 0}}, "average_size"),
            ({"type": "slicer"}, "average_size"),
            ({"type": "slicer", "attributes": {"average_size": 10, "size_variation": 10}}, "size_variation"),
            ({"type": "slicer", "attributes": {"average_size": 10, "size_variation": 50}}, "size_variation"),
            ({"type": "latency", "toxicity": 1.5}, "toxicity"),
            ({"type": "latency", "toxicity": -0.1}, "toxicity"),
        ]
        for body, attribute in cases:
            with self.subTest(body=body):
                r = self.api("POST", "/proxies/p/toxics", body)
                self.assert_error(r, 400, contains=attribute)
        self.assertEqual(self.listed(), [])

    def test_huge_durations_are_refused_or_honoured(self):
        # A duration too large for the clock must be refused (400) or mean "practically forever";
        # it must never wrap around into "now".
        huge = 2 ** 63 - 1
        for type_, attrs in [("latency", {"latency": huge}), ("reset_peer", {"timeout": huge}),
                             ("timeout", {"timeout": huge}), ("latency", {"latency": 10 ** 13})]:
            with self.subTest(type=type_, attrs=attrs):
                echo = self.new_echo()
                p = self.make_proxy(f"h{len(self.ok('GET', '/proxies').json)}", echo.address)
                r = self.api("POST", f"/proxies/{p['name']}/toxics", {"type": type_, "attributes": attrs})
                if r.status == 400:
                    self.assert_error(r, 400, contains=next(iter(attrs)))
                    continue
                self.assertEqual(r.status, 200, r)
                s = connect(p["listen"], timeout=0.5)
                self.addCleanup(s.close)
                s.sendall(b"ping")
                try:
                    data = s.recv(4)
                    got = f"received {data!r}" if data else "EOF"
                except socket.timeout:
                    continue  # held, as it should be
                except OSError as e:
                    got = repr(e)
                self.fail(f"{type_} {attrs} acted at once: {got}")

    def test_invalid_update_is_400_and_keeps_toxic(self):
        self.ok("POST", "/proxies/p/toxics", {"type": "bandwidth", "attributes": {"rate": 100}})
        self.assert_error(self.api("PATCH", "/proxies/p/toxics/bandwidth_downstream",
                                   {"attributes": {"rate": -5}}), 400, contains="rate")
        self.assert_error(self.api("PATCH", "/proxies/p/toxics/bandwidth_downstream",
                                   {"toxicity": 1.5}), 400, contains="toxicity")
        t = self.ok("GET", "/proxies/p/toxics/bandwidth_downstream").json
        self.assertEqual(t["attributes"], {"rate": 100})
        self.assertEqual(t["toxicity"], 1)
        self.ok("POST", "/proxies/p/toxics", {"type": "slicer", "attributes": {"average_size": 10,
                                                                               "size_variation": 5}})
        self.assert_error(self.api("PATCH", "/proxies/p/toxics/slicer_downstream",
                                   {"attributes": {"average_size": 4}}), 400, contains="size_variation")
        self.assertEqual(self.ok("GET", "/proxies/p/toxics/slicer_downstream").json["attributes"],
                         {"average_size": 10, "size_variation": 5, "delay": 0})


class ToxicsAtCreation(ApiTestCase):
    def test_create_proxy_with_toxics(self):
        echo = self.new_echo()
        r = self.ok("POST", "/proxies", {"name": "p", "listen": "127.0.0.1:0", "upstream": echo.address,
                                         "toxics": [{"type": "latency", "attributes": {"latency": 300}},
                                                    {"type": "bandwidth", "stream": "upstream",
                                                     "attributes": {"rate": 100000}}]}, status=201)
        self.assert_proxy_shape(r.json)
        self.assertEqual([t["name"] for t in r.json["toxics"]], ["bandwidth_upstream", "latency_downstream"])
        self.assertEqual(r.json["toxics"][1]["attributes"], {"latency": 300, "jitter": 0})
        self.assertEqual([t["name"] for t in self.ok("GET", "/proxies/p/toxics").json],
                         ["bandwidth_upstream", "latency_downstream"])
        s = connect(r.json["listen"])
        self.addCleanup(s.close)
        self.assertGreaterEqual(timed_roundtrip(self, s), 0.28, "the latency toxic given at creation applies")

    def test_create_proxy_with_invalid_toxic_creates_nothing(self):
        r = self.api("POST", "/proxies", {"name": "p", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1",
                                          "toxics": [{"type": "nope"}]})
        self.assert_error(r, 400, contains="invalid toxic type")  # may be prefixed with its path
        self.assert_error(self.api("GET", "/proxies/p"), 404, 'proxy not found: "p"')

    def test_populate_with_toxics(self):
        echo = self.new_echo()
        r = self.ok("POST", "/populate", [
            {"name": "a", "listen": "127.0.0.1:0", "upstream": echo.address,
             "toxics": [{"type": "latency", "name": "lag", "attributes": {"latency": 300}},
                        {"type": "noop", "stream": "upstream"}]},
            {"name": "b", "listen": "127.0.0.1:0", "upstream": echo.address, "toxics": []},
            {"name": "c", "listen": "127.0.0.1:0", "upstream": echo.address, "toxics": None},
        ], status=201)
        a, b, c = r.json["proxies"]
        self.assertEqual([t["name"] for t in a["toxics"]], ["noop_upstream", "lag"])
        self.assertEqual((b["toxics"], c["toxics"]), ([], []))
        s = connect(a["listen"])
        self.addCleanup(s.close)
        self.assertGreaterEqual(timed_roundtrip(self, s), 0.28)


class PopulateAndReset(ApiTestCase):
    def test_populate_keeps_unchanged_and_replaces_changed(self):
        echo, echo2 = self.new_echo(), self.new_echo()
        ports = set()
        while len(ports) < 4:
            ports.add(free_port())
        p1, p2, p3, p4 = sorted(ports)
        first = [
            {"name": "keep", "listen": f"127.0.0.1:{p1}", "upstream": echo.address},
            {"name": "keepdis", "listen": f"127.0.0.1:{p2}", "upstream": echo.address},
            {"name": "keeploc", "listen": f"localhost:{p3}", "upstream": echo.address},
            {"name": "change", "listen": f"127.0.0.1:{p4}", "upstream": echo.address},
        ]
        self.ok("POST", "/populate", first, status=201)
        for name in ["keep", "keepdis", "keeploc", "change"]:
            self.ok("POST", f"/proxies/{name}/toxics", {"type": "latency", "name": "lat",
                                                        "attributes": {"latency": 1}})
        self.ok("PATCH", "/proxies/keepdis", {"enabled": False})
        c_keep = connect(f"127.0.0.1:{p1}")
        self.addCleanup(c_keep.close)
        c_change = connect(f"127.0.0.1:{p4}")
        self.addCleanup(c_change.close)
        timed_roundtrip(self, c_keep)
        timed_roundtrip(self, c_change)

        second = [dict(e) for e in first]
        second[1]["enabled"] = True  # ignored: keepdis is unchanged, so it stays disabled
        second[3]["upstream"] = echo2.address
        r = self.ok("POST", "/populate", second, status=201)
        got = {p["name"]: p for p in r.json["proxies"]}
        self.assertEqual([p["name"] for p in r.json["proxies"]], ["keep", "keepdis", "keeploc", "change"])
        self.assertEqual([t["name"] for t in got["keep"]["toxics"]], ["lat"])
        self.assertIs(got["keepdis"]["enabled"], False)
        self.assertEqual([t["name"] for t in got["keepdis"]["toxics"]], ["lat"])
        self.assertEqual([t["name"] for t in got["keeploc"]["toxics"]], ["lat"],
                         "localhost:P vs bound 127.0.0.1:P is not a change")
        self.assertIs(got["keeploc"]["enabled"], True)
        self.assertEqual(got["change"]["toxics"], [])
        self.assertEqual(got["change"]["upstream"], echo2.address)
        self.assertIs(got["change"]["enabled"], True)
        self.assertEqual(got["change"]["listen"], f"127.0.0.1:{p4}")
        self.assertEqual(self.ok("GET", "/proxies").json["keep"]["toxics"][0]["name"], "lat")

        timed_roundtrip(self, c_keep)  # the unchanged proxy's connection survives
        expect_closed(self, c_change, what="connection of a replaced proxy")
        assert_echo(self, f"127.0.0.1:{p4}")
        self.assertEqual(echo2.accepted, 1)

    def test_reset_enables_all_and_removes_all_toxics(self):
        echo = self.new_echo()
        a = self.make_proxy("a", echo.address)
        self.make_proxy("b", echo.address, listen="localhost:0", enabled=False)
        self.ok("POST", "/proxies/a/toxics", {"type": "latency", "attributes": {"latency": 300}})
        self.ok("POST", "/proxies/a/toxics", {"type": "bandwidth", "stream": "upstream",
                                              "attributes": {"rate": 1}})
        self.ok("POST", "/proxies/b/toxics", {"type": "timeout"})
        r = self.ok("POST", "/reset", status=204)
        self.assertEqual(r.text, "")
        proxies = self.ok("GET", "/proxies").json
        for name in ["a", "b"]:
            self.assertIs(proxies[name]["enabled"], True, name)
            self.assertEqual(proxies[name]["toxics"], [], name)
        self.assertEqual(proxies["a"]["listen"], a["listen"])
        self.assert_bound_loopback(proxies["b"]["listen"])
        assert_echo(self, proxies["b"]["listen"])
        s = connect(a["listen"])
        self.addCleanup(s.close)
        self.assertLess(timed_roundtrip(self, s), 0.2, "no latency after reset")


if __name__ == "__main__":
    unittest.main()
