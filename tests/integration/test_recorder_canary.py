"""The redaction canary (issue 16, item 2): distinctive secrets planted in every place the
redaction rules cover, and in requests that faults act on, must appear in no file of the
recording, no export and no log line.

Planted: an Authorization header, a Cookie, an x-api-key header, a query parameter, a JSON
body key, a form body parameter and a Set-Cookie answer (an `http` proxy); Redis AUTH, CONFIG
SET requirepass, ACL SETUSER and AUTH with a username (a `resp` proxy); and, the part faults
add, requests whose target carries a secret and that a fault delays (`http_delay`: the
fault line is journaled before the request is) or answers itself (`http_abort`: the request
never reaches the upstream, so the fault line is all the journal says of it), a Redis AUTH
that `resp_delay` delays and one that `resp_error` answers in Redis' place.

Searched: every file under the recording directory (hidden ones too), the decoded payload
(data is base64: its three base64 forms are searched in the raw files as well), the `har`,
`text` and `pcapng` exports, and faultline's own log at LOG_LEVEL=debug.

Run standalone: python3 tests/integration/test_recorder_canary.py
"""
import http.client
import http.server
import json
import os
import sys
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Faultline, RedisServer, connect, split_hostport  # noqa: E402
from test_recorder import (Journal, Origin, RecorderCase, base64_forms, post_recording, read_reply,  # noqa: E402
                           resp, wait_closed)

CANARY = {
    "header": b"cnry-hdr-7f3a9c1e5d",
    "cookie": b"cnry-cookie-a81b2c3d4e",
    "x-api-key": b"cnry-xapikey-1029384756",
    "query": b"cnry-query-5647382910",
    "json": b"cnry-json-pw-0a9b8c7d6e",
    "form": b"cnry-form-ab12cd34ef",
    "set-cookie": b"cnry-setcookie-99aa88bb",
    "fault delay": b"cnry-fault-delay-4d5e6f",
    "fault abort": b"cnry-fault-abort-7a8b9c",
    "redis auth": b"cnry-redis-auth-3c2b1a",
    "config set": b"cnry-config-pass-6f5e4d",
    "acl setuser": b"cnry-acl-pass-9e8d7c",
    "fault resp_delay": b"cnry-fault-rdelay-2b3c",
    "fault resp_error": b"cnry-fault-rerror-5e6f",
}


class CanaryHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Set-Cookie", "session=" + CANARY["set-cookie"].decode() + "; Path=/; HttpOnly")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.answer()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.answer()


def add_toxic(fl, proxy, body):
    status, reply, _ = fl.request("POST", f"/proxies/{proxy}/toxics", body)
    if status != 200:
        raise AssertionError(f"POST /proxies/{proxy}/toxics {body} -> {status} {reply}")


def remove_toxic(fl, proxy, name):
    status, reply, _ = fl.request("DELETE", f"/proxies/{proxy}/toxics/{name}")
    if status not in (200, 204):
        raise AssertionError(f"DELETE /proxies/{proxy}/toxics/{name} -> {status} {reply}")


def http_canaries(fl, address):
    host, port = split_hostport(address)
    c = http.client.HTTPConnection(host, port, timeout=10)
    statuses = []

    def get(target, headers=None):
        c.request("GET", target, headers=headers or {})
        r = c.getresponse()
        r.read()
        statuses.append(r.status)

    try:
        q = urllib.parse.urlencode({"token": CANARY["query"].decode(), "page": "1"})
        get("/hello?" + q, {"Authorization": "Bearer " + CANARY["header"].decode(),
                            "Cookie": "sid=" + CANARY["cookie"].decode() + "; theme=dark",
                            "x-api-key": CANARY["x-api-key"].decode()})
        body = json.dumps({"model": "m", "password": CANARY["json"].decode()})
        c.request("POST", "/v1/chat", body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        statuses.append(r.status)
        form = "user=bob&password=" + CANARY["form"].decode()
        c.request("POST", "/login", body=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
        r = c.getresponse()
        r.read()
        statuses.append(r.status)
        add_toxic(fl, "api", {"name": "slow", "type": "http_delay",
                              "attributes": {"delay": 20, "phase": "request", "match": {"path": "/slow"}}})
        get("/slow?token=" + CANARY["fault delay"].decode())
        remove_toxic(fl, "api", "slow")
        add_toxic(fl, "api", {"name": "abort", "type": "http_abort",
                              "attributes": {"status": 429, "match": {"path": "/abort"}}})
        get("/abort?api_key=" + CANARY["fault abort"].decode())
        remove_toxic(fl, "api", "abort")
    finally:
        c.close()
    return statuses


def redis_canaries(fl, address):
    s = connect(address)
    replies = []

    def send(*args):
        s.sendall(resp(*args))
        replies.append(read_reply(s))

    try:
        send("AUTH", CANARY["redis auth"])
        send("CONFIG", "SET", "requirepass", CANARY["config set"])
        send("AUTH", CANARY["config set"])
        send("ACL", "SETUSER", "canary", "on", b">" + CANARY["acl setuser"], "~*", "+@all")
        send("AUTH", "canary", CANARY["acl setuser"])
        add_toxic(fl, "redis", {"name": "slow_auth", "type": "resp_delay",
                                "attributes": {"delay": 10, "match": {"command": "AUTH"}}})
        send("AUTH", CANARY["fault resp_delay"])
        remove_toxic(fl, "redis", "slow_auth")
        add_toxic(fl, "redis", {"name": "bad_auth", "type": "resp_error",
                                "attributes": {"error": "WRONGPASS injected", "match": {"command": "AUTH"}}})
        send("AUTH", CANARY["fault resp_error"])
        remove_toxic(fl, "redis", "bad_auth")
        send("PING")
    finally:
        s.close()
    return replies


def every_file(directory):
    out = {}
    for base, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                out[path] = f.read()
    return out


class RedactionCanary(RecorderCase):
    def run_canaries(self, env=None):
        rec = os.path.join(self.tmp, "rec")
        with RedisServer("--requirepass", CANARY["redis auth"].decode()) as redis, Origin(CanaryHandler) as origin, \
                Faultline(env=env) as fl:
            api = fl.create_proxy("api", origin.address, protocol="http")
            red = fl.create_proxy("redis", redis.address, protocol="resp")
            post_recording(fl, {"id": "canary", "dir": rec, "blob_threshold": 1024})
            statuses = http_canaries(fl, api["listen"])
            replies = redis_canaries(fl, red["listen"])
            wait_closed(rec, 2)
            status, _, _ = fl.request("DELETE", "/recordings/canary")
            self.assertEqual(status, 200)
            logs = fl.logs()
        # The traffic went as planned: the faults acted, the logins worked.
        self.assertEqual(statuses, [200, 200, 200, 200, 429])
        self.assertEqual(replies[:5], [(b"+", b"OK")] * 5, replies)
        self.assertEqual(replies[5][0], b"-")  # a wrong password, delayed on its way to Redis
        self.assertEqual(replies[6], (b"-", b"WRONGPASS injected"))
        self.assertEqual(replies[7], (b"+", b"PONG"))
        j = Journal(rec)
        faults = {o["toxic"]: o["what"] for o in j.of("fault")}
        self.assertEqual(set(faults), {"slow", "abort", "slow_auth", "bad_auth"}, faults)
        return rec, j, faults, logs

    def places(self, rec, j):
        places = dict(every_file(rec))
        places["decoded payload"] = j.all_payload()
        places.update(self.exports(rec))
        return places

    def assert_no_canary(self, places):
        found = []
        for where, data in places.items():
            for what, secret in CANARY.items():
                if secret in data:
                    found.append((what, where))
                for form in base64_forms(secret):
                    if form in data:
                        found.append((what + " (base64)", where))
        self.assertEqual(found, [], "canaries found")

    def test_no_canary_in_the_journal_or_an_export(self):
        rec, j, faults, _ = self.run_canaries()
        # The fault lines still say what the faults did, with tokens where the secrets were.
        self.assertRegex(faults["slow"], r"^delayed GET /slow\?token=[0-9a-fREDACTED-]{%d}$" % len(CANARY["fault delay"]))
        self.assertRegex(faults["abort"], r"^answered 429 to GET /abort\?api_key=REDACTED-[0-9a-f]+$")
        self.assertRegex(faults["slow_auth"], r"^delayed AUTH REDACTED-[0-9a-f]+$")
        self.assertIn("to AUTH REDACTED-", faults["bad_auth"])
        rules = {o["rule"] for o in j.of("redaction")}
        for rule in ("header:authorization", "header:cookie", "header:x-api-key", "query:token", "json:password",
                     "form:password", "header:set-cookie", "resp:auth", "resp:config", "resp:acl"):
            self.assertIn(rule, rules)
        places = self.places(rec, j)
        self.assertIn(b"REDACTED-", places["export har"])
        self.assert_no_canary(places)

    def test_no_canary_in_the_debug_log(self):
        _, _, _, logs = self.run_canaries(env={"LOG_LEVEL": "debug"})
        self.assertIn("debug", logs.lower())
        self.assert_no_canary({"faultline's log": logs.encode()})


if __name__ == "__main__":
    unittest.main()
