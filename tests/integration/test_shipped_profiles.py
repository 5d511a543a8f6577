"""What ships in profiles/ works: every profile loads and serves its proxies, every drill passes
`faultline drill --check`, `${VAR}` / `${VAR:-default}` in profile files expands (and an unset
variable is an error naming the JSON path and the variable), and the built-in default
(profiles/default.json, what `./dev run` serves) stands in for the seed stack on its own: a
request through each proxy gets the bundled journal's answer. That the shipped drills pass
against it, and fail against broken variants of it, is test_shipped_drills.py.

Listen ports come from the profiles' own variables (FAULTLINE_*_PORT=0: free ports), so
nothing here binds a fixed port. Run standalone: python3 tests/integration/test_shipped_profiles.py
"""
import glob
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN, Faultline, run_serve_expect_exit  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROFILES = sorted(glob.glob(os.path.join(ROOT, "profiles", "*.json")))
DRILLS = sorted(glob.glob(os.path.join(ROOT, "profiles", "drills", "*.json")))
FREE_PORTS = {"FAULTLINE_LISTEN_HOST": "127.0.0.1", "FAULTLINE_MCP_PORT": "0", "FAULTLINE_KIMI_PORT": "0",
              "FAULTLINE_GLM_PORT": "0", "FAULTLINE_REDIS_PORT": "0", "FAULTLINE_REDIS_COMMANDER_PORT": "0"}
SEED_STACK_UPSTREAMS = {"mcp": "mcp-server:8079", "redis": "redis:6379", "redis-commander": "redis-commander:8081",
                        "kimi": "https://api.moonshot.ai", "glm": "https://api.z.ai"}
THREAD = "thread:7f3a9c2e-4b1d-4e8a-9a57-0c2d51e8b6f1"


def clean_env(extra=None):
    """Extra environment for `serve` that blanks the profiles' variables a developer's shell may
    set (an empty value takes the default, as ${VAR:-default} does in sh), plus `extra`."""
    env = {k: "" for k in os.environ
           if (k.startswith("FAULTLINE_") and k.endswith(("_PORT", "_HOST"))) or k.endswith("_UPSTREAM")
           or k == "MCP_PROTOCOL"}
    env.update(extra or {})
    return env


def http_request(address, method, path, body=None, headers=None):
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        data = json.dumps(body) if isinstance(body, (dict, list)) else body
        conn.request(method, path, data, headers or {})
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        conn.close()


def resp(address, *args):
    """One Redis command; returns the raw reply (a line, or a whole bulk string)."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in args))
        data = b""
        for _ in range(1000):  # bounded: the socket timeout bounds each read
            chunk = s.recv(65536)
            data += chunk
            if not chunk or b"\r\n" not in data:
                if not chunk:
                    return data
                continue
            head = data[:data.index(b"\r\n")]
            if not head.startswith(b"$") or int(head[1:]) < 0 or len(data) >= len(head) + 2 + int(head[1:]) + 2:
                return data
        return data


class ProfilesLoad(unittest.TestCase):

    def test_there_are_the_shipped_profiles(self):
        names = [os.path.basename(p) for p in PROFILES]
        self.assertIn("default.json", names)
        self.assertIn("seed-stack.json", names)

    def test_each_profile_serves_its_proxies(self):
        for path in PROFILES:
            with self.subTest(profile=os.path.basename(path)):
                with open(path) as f:
                    profile = json.load(f)
                entries = profile if isinstance(profile, list) else profile["proxies"]
                with Faultline("--config", path, env=clean_env(FREE_PORTS)) as fl:
                    status, proxies, _ = fl.request("GET", "/proxies")
                    self.assertEqual(status, 200)
                    self.assertEqual(sorted(proxies), sorted(e["name"] for e in entries))
                    for e in entries:
                        p = proxies[e["name"]]
                        self.assertTrue(p["enabled"], p)
                        self.assertTrue(p["listen"].startswith("127.0.0.1:") and not p["listen"].endswith(":0"), p)

    def test_seed_stack_upstreams_default_and_override(self):
        path = os.path.join(ROOT, "profiles", "seed-stack.json")
        with Faultline("--config", path, env=clean_env(FREE_PORTS)) as fl:
            _, proxies, _ = fl.request("GET", "/proxies")
            self.assertEqual({n: p["upstream"] for n, p in proxies.items()}, SEED_STACK_UPSTREAMS)
            self.assertEqual(proxies["kimi"].get("protocol"), "http")
            self.assertEqual(proxies["mcp"].get("protocol"), "mcp")
        env = clean_env(dict(FREE_PORTS, REDIS_UPSTREAM="10.0.0.7:6380", KIMI_UPSTREAM="https://api.moonshot.cn",
                             MCP_PROTOCOL="tcp"))
        with Faultline("--config", path, env=env) as fl:
            _, proxies, _ = fl.request("GET", "/proxies")
            self.assertEqual(proxies["redis"]["upstream"], "10.0.0.7:6380")
            self.assertEqual(proxies["kimi"]["upstream"], "https://api.moonshot.cn")
            self.assertEqual(proxies["glm"]["upstream"], "https://api.z.ai")
            self.assertNotIn("protocol", proxies["mcp"])  # tcp is not shown, as in Toxiproxy's JSON


class EnvExpansion(unittest.TestCase):

    def write(self, tmp, profile):
        path = os.path.join(tmp, "p.json")
        with open(path, "w") as f:
            json.dump(profile, f)
        return path

    def test_expands_defaults_values_and_literal_dollar(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = self.write(tmp, {"proxies": [
                {"name": "a", "listen": "127.0.0.1:${FL_TEST_A_PORT:-0}", "upstream": "${FL_TEST_HOST}:${FL_TEST_EMPTY:-6379}"},
                {"name": "b$${x}", "listen": "127.0.0.1:0", "upstream": "example.com:1"}]})
            env = clean_env({"FL_TEST_HOST": "cache.internal", "FL_TEST_EMPTY": "", "FL_TEST_A_PORT": ""})
            with Faultline("--config", path, env=env) as fl:
                _, proxies, _ = fl.request("GET", "/proxies")
                self.assertEqual(proxies["a"]["upstream"], "cache.internal:6379")  # empty takes the default, as in sh
                self.assertIn("b${x}", proxies)

    def test_unset_variable_is_an_error_with_path_and_name(self):
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "p.json"), "w") as f:
                json.dump({"proxies": [{"name": "a", "listen": "127.0.0.1:0",
                                        "upstream": "${FL_TEST_SURELY_UNSET_6B1F}"}]}, f)
            with open(os.path.join(tmp, "p.json")) as f:
                text = f.read()
            rc, out, port_written, _ = run_serve_expect_exit([], config=text)
            self.assertEqual(rc, 2, out)
            self.assertFalse(port_written)
            self.assertIn("$.proxies[0].upstream", out)
            self.assertIn("FL_TEST_SURELY_UNSET_6B1F is not set", out)

    def test_malformed_reference_is_an_error(self):
        for bad, why in (("${unclosed", "closing"), ("${1BAD}", "NAME")):
            with self.subTest(bad=bad):
                rc, out, _, _ = run_serve_expect_exit([], config=json.dumps(
                    {"proxies": [{"name": "a", "listen": "127.0.0.1:0", "upstream": bad}]}))
                self.assertEqual(rc, 2, out)
                self.assertIn("$.proxies[0].upstream", out)
                self.assertIn(why, out)


class DrillsCheck(unittest.TestCase):

    def test_one_drill_per_criterion(self):
        names = [os.path.basename(d) for d in DRILLS]
        for n in range(1, 9):
            self.assertTrue(any(name.startswith(f"v{n}-") for name in names), f"no drill for V.{n}: {names}")

    def test_every_drill_is_valid(self):
        for path in DRILLS:
            with self.subTest(drill=os.path.basename(path)):
                r = subprocess.run([BIN, "drill", "--check", path], capture_output=True, text=True, timeout=30)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                with open(path) as f:
                    drill = json.load(f)
                criteria = {v.get("criterion") for v in drill.get("verdicts", [])}
                n = os.path.basename(path)[1]
                self.assertIn(f"V.{n}", criteria, f"{path} has no verdict for V.{n}")


class DefaultStack(unittest.TestCase):
    """profiles/default.json on its own, with nothing else running."""

    @classmethod
    def setUpClass(cls):
        cls.fl = Faultline("--config", os.path.join(ROOT, "profiles", "default.json"), env=clean_env(FREE_PORTS))
        _, proxies, _ = cls.fl.request("GET", "/proxies")
        cls.addr = {n: p["listen"] for n, p in proxies.items()}

    @classmethod
    def tearDownClass(cls):
        cls.fl.__exit__()

    def test_each_proxy_answers_from_its_journal(self):
        auth = {"Authorization": "Bearer sk-anything", "Content-Type": "application/json"}
        status, body = http_request(self.addr["kimi"], "POST", "/v1/chat/completions",
                                    {"model": "kimi-k2-0905-preview", "messages": [{"role": "user", "content": "What is 2+2?"}]}, auth)
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["choices"][0]["message"]["content"], "Stand-in answer to: What is 2+2?")

        status, body = http_request(self.addr["glm"], "POST", "/api/paas/v4/chat/completions",
                                    {"model": "glm-4.6", "stream": True,
                                     "messages": [{"role": "user", "content": "Explain a circuit breaker in one sentence"}]}, auth)
        self.assertEqual(status, 200, body)
        self.assertIn('"model":"glm-4.6"', body)
        self.assertTrue(body.rstrip().endswith("data: [DONE]"), body[-200:])

        self.assertEqual(resp(self.addr["redis"], "PING"), b"+PONG\r\n")
        reply = resp(self.addr["redis"], "GET", THREAD)
        self.assertTrue(reply.startswith(b"$") and b"Redis answered slowly" in reply, reply)

        status, body = http_request(self.addr["redis-commander"], "GET", "/")
        self.assertEqual(status, 200)
        self.assertIn("Redis Commander", body)

        status, body = http_request(self.addr["mcp"], "POST", "/mcp",
                                    {"jsonrpc": "2.0", "id": 77, "method": "tools/call",
                                     "params": {"name": "listmodels", "arguments": {}}},
                                    {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"})
        self.assertEqual(status, 200, body)
        answer = json.loads(body)
        self.assertEqual(answer["id"], 77)  # the live id, not the recorded one
        self.assertIn("glm-4.5-flash", answer["result"]["content"][0]["text"])

    def test_a_fault_applies_to_replayed_answers(self):
        status, _, _ = self.fl.request("POST", "/proxies/kimi/toxics", {
            "name": "overloaded", "type": "http_abort", "attributes": {"status": 429}})
        self.assertEqual(status, 200)
        try:
            status, _ = http_request(self.addr["kimi"], "GET", "/v1/models", headers={"Authorization": "Bearer x"})
            self.assertEqual(status, 429)
        finally:
            self.fl.request("DELETE", "/proxies/kimi/toxics/overloaded")
        status, body = http_request(self.addr["kimi"], "GET", "/v1/models", headers={"Authorization": "Bearer x"})
        self.assertEqual(status, 200)
        self.assertIn("kimi-k2-turbo-preview", body)


if __name__ == "__main__":
    unittest.main()
