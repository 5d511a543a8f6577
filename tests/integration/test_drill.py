"""`faultline drill`: drill files run against real systems with real recovery logic.

(a) V.2 error recovery against redis-server through a resp proxy: a LOADING fault on GETs for
    2 s under a load of GETs; verdicts error_recovery (passes) and success_rate (threshold 0.5
    passes, 0.99 fails with exit 1 and a JUnit failure).
(b) V.5 failover with haproxy (a primary and a `backup` server, health checks every 100 ms) in
    front of two faultline tcp proxies: disabling the primary's proxy moves traffic to the
    backup's (the failover verdict reads faultline's per-proxy counters); disabling both fails.
(c) Drills that cannot run: a bad file (exit 2 with the JSON path), faultline unreachable, a
    missing proxy, a replay reference to a server not running, and an interrupt mid-method
    (rollbacks still remove the fault).

(d) replay.start / replay.stop: a replay server from a journal, probed, faulted through a proxy.

docs/drills.md is the spec. Everything runs on loopback with free ports.
Run standalone: python3 tests/integration/test_drill.py
"""
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BIN, Faultline, ManagedProcess, RedisServer, finish_recordings, free_port, need,  # noqa: E402
                     recv_all, wait_listening)

LOADING = "LOADING Redis is loading the dataset in memory"


class DrillRun:
    """One `faultline drill` run: exit code, output, and the parsed reports."""

    def __init__(self, rc, out, report, junit):
        self.rc, self.out, self.report, self.junit = rc, out, report, junit

    def verdict(self, name):
        for v in self.report["verdicts"]:
            if v["name"] == name:
                return v
        raise AssertionError(f"no verdict {name}: {self.out}")

    def testcases(self):
        """{(classname, name): "pass" | "failure" | "error" | "skipped"} from the JUnit file."""
        out = {}
        for case in self.junit.iter("testcase"):
            kind = "pass"
            for child in ("failure", "error", "skipped"):
                if case.find(child) is not None:
                    kind = child
            out[(case.get("classname"), case.get("name"))] = kind
        return out


def run_drill(tmp, drill, env=None, args=(), timeout=60, name="drill.json", reports=True):
    """Writes `drill` (a dict, or text as is) into `tmp` and runs `faultline drill` on it."""
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(drill if isinstance(drill, str) else json.dumps(drill, indent=2))
    report_path = os.path.join(tmp, name + ".report.json")
    junit_path = os.path.join(tmp, name + ".junit.xml")
    for p in (report_path, junit_path):
        if os.path.exists(p):
            os.remove(p)
    cmd = [BIN, "drill", path] + list(args)
    if reports:
        cmd += ["--report-json", report_path, "--junit", junit_path]
    full_env = dict(os.environ)
    full_env.pop("TOXIPROXY_URL", None)
    full_env.update(env or {})
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                       timeout=timeout, text=True, env=full_env)
    report = junit = None
    if os.path.exists(report_path):
        with open(report_path) as f:
            report = json.load(f)
    if os.path.exists(junit_path):
        junit = ET.parse(junit_path).getroot()
    return DrillRun(r.returncode, r.stdout, report, junit)


class TempDir:
    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="faultline-drill-")
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# (a) V.2: Redis LOADING, recovery after the fault is removed

def loading_drill(faultline_url, redis_proxy, redis_direct):
    return {
        "title": "Redis LOADING for 2 s: GETs recover",
        "description": "resp_error LOADING on GET for 2 s under a GET load; GETs succeed again within 1 s",
        "configuration": {
            "faultline_url": faultline_url,
            "redis": redis_proxy,
            "redis_direct": redis_direct,
            "redis_port": int(redis_proxy.rsplit(":", 1)[1]),
            "threshold": {"type": "env", "key": "DRILL_THRESHOLD", "default": 0.5},
        },
        "steady-state-hypothesis": {
            "title": "Redis answers through faultline",
            "probes": [
                {"type": "probe", "name": "ping", "critical": True,
                 "provider": {"type": "resp", "address": "${redis}", "command": ["PING"]},
                 "tolerance": "+PONG"},
            ],
        },
        "method": [
            # Written directly, so faultline's request counter only sees the load's GETs.
            {"type": "action", "name": "seed-key",
             "provider": {"type": "resp", "address": "${redis_direct}", "command": ["SET", "drill:key", "v"]}},
            {"type": "action", "name": "gets", "background": True,
             "provider": {"type": "load", "duration": 5, "concurrency": 4, "rate": 100,
                          "target": {"type": "resp", "address": "${redis}", "command": ["GET", "drill:key"],
                                     "timeout": 2},
                          "success": "v"}},
            {"type": "action", "name": "loading", "pauses": {"before": 0.5, "after": 2.5},
             "provider": {"type": "toxic.add", "proxy": "redis", "duration": 2,
                          "toxic": {"name": "loading", "type": "resp_error",
                                    "attributes": {"error": LOADING, "match": {"command": "GET"}}}}},
            # Every probe kind gets a turn: faultline's request counter over the run, and
            # redis-cli reading the key after the fault is gone.
            {"type": "probe", "name": "requests-seen",
             "provider": {"type": "metric", "name": "faultline_proxy_requests_total", "labels": {"proxy": "redis"}},
             "tolerance": {"type": "range", "min": 100}},
            {"type": "probe", "name": "redis-cli-get",
             "provider": {"type": "command", "path": "redis-cli",
                          "arguments": ["-h", "127.0.0.1", "-p", "${redis_port}", "GET", "drill:key"], "timeout": 10},
             "tolerance": [{"type": "regex", "pattern": "^v\\s*$", "target": "stdout"}, {"type": "range", "range": [0, 0]}]},
        ],
        "rollbacks": [
            {"type": "action", "name": "remove-loading",
             "provider": {"type": "toxic.remove", "proxy": "redis", "toxic": "loading"}},
        ],
        "verdicts": [
            {"type": "error_recovery", "name": "gets-recover", "criterion": "V.2", "source": "gets",
             # The load does not retry, so 40 % of its GETs fail under the fault: this verdict asks
             # only that GETs come back (success_rate 0.5), the default (every step) would fail it.
             "after": "loading.removed", "within": 1, "success_rate": 0.5, "retries": {"proxy": "redis", "max": 2}},
            {"type": "success_rate", "name": "gets-success", "criterion": "V.1",
             "source": "gets", "threshold": "${threshold}"},
            {"type": "no_critical_errors", "name": "no-critical", "criterion": "V.7"},
            {"type": "aggregate", "name": "all", "criterion": "V.8"},
        ],
    }


class RedisRecoveryDrillTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        need("redis-cli", "redis-tools (apt package redis-tools / redis-server)")

    def test_loading_fault_recovery_and_thresholds(self):
        with TempDir() as tmp, RedisServer() as redis, Faultline() as fl:
            proxy = fl.create_proxy("redis", redis.address, protocol="resp")
            drill = loading_drill(fl.url, proxy["listen"], redis.address)

            run = run_drill(tmp, drill, args=["--seed", "7"])
            self.assertEqual(run.rc, 0, run.out)
            self.assertEqual((run.report["status"], run.report["deviated"], run.report["result"]),
                             ("completed", False, "pass"))
            self.assertEqual(run.report["seed"], 7)
            recover = run.verdict("gets-recover")
            self.assertTrue(recover["passed"], recover)
            self.assertLessEqual(recover["measured"]["time_to_first_success_s"], 1.0)
            self.assertGreater(recover["measured"]["failures"], 0)
            # The fault bit by faultline's own count: the GETs it answered with -LOADING.
            self.assertGreater(recover["measured"]["fault_messages"], 100, recover)
            self.assertLessEqual(recover["measured"]["retries"], 2)
            success = run.verdict("gets-success")
            self.assertTrue(success["passed"], success)
            rate = success["measured"]["success_rate"]
            self.assertTrue(0.5 < rate < 0.95, f"about 60% of the GETs should succeed, got {rate}")
            # The fault was removed after its duration, and the rollback found it gone.
            self.assertIn("loading.removed", run.report["events"])
            status, toxics, _ = fl.request("GET", "/proxies/redis/toxics")
            self.assertEqual((status, toxics), (200, []))
            self.assertEqual([a["status"] for a in run.report["run"]], ["succeeded"] * 6, run.report["run"])
            self.assertIn("loading.removed", [a["name"] for a in run.report["run"]])
            rollback = run.report["rollbacks"][0]
            self.assertEqual(rollback["status"], "succeeded", rollback)
            cases = run.testcases()
            self.assertEqual(cases[("drill.steady-state.before", "ping")], "pass")
            self.assertEqual(cases[("drill.steady-state.after", "ping")], "pass")
            self.assertEqual(cases[("drill.verdicts", "gets-success (V.1)")], "pass")
            self.assertIn("PASS  gets-recover [V.2]", run.out)
            print(f"\n  recovery: first GET ok {recover['measured']['time_to_first_success_s'] * 1000:.0f} ms after "
                  f"the fault went, {rate:.0%} of {int(success['measured']['samples'])} GETs ok", file=sys.stderr)

            # The same run judged by a 99% bar: the verdict (and V.8) fail, exit 1.
            run = run_drill(tmp, drill, env={"DRILL_THRESHOLD": "0.99"})
            self.assertEqual(run.rc, 1, run.out)
            self.assertEqual((run.report["status"], run.report["result"]), ("completed", "fail"))
            self.assertFalse(run.verdict("gets-success")["passed"])
            self.assertTrue(run.verdict("gets-recover")["passed"], run.verdict("gets-recover"))
            cases = run.testcases()
            self.assertEqual(cases[("drill.verdicts", "gets-success (V.1)")], "failure")
            self.assertEqual(cases[("drill.verdicts", "all (V.8)")], "failure")
            self.assertEqual(cases[("drill.verdicts", "gets-recover (V.2)")], "pass")
            failure = [c for c in self.junit_cases(run) if c.get("name") == "gets-success (V.1)"][0].find("failure")
            self.assertIn("is below 99%", failure.get("message"))
            self.assertEqual(run.junit.get("failures"), "2")
            self.assertIn("FAIL  gets-success [V.1]", run.out)

    def test_acknowledged_writes_are_read_back(self):
        with TempDir() as tmp, RedisServer() as redis, RedisServer() as other, Faultline() as fl:
            proxy = fl.create_proxy("redis", redis.address, protocol="resp")

            def drill(verify_address):
                return {"title": "writes", "configuration": {"faultline_url": fl.url}, "method": [
                    {"type": "action", "name": "writes", "provider": {
                        "type": "load", "requests": 40, "concurrency": 4,
                        "target": {"type": "resp", "address": proxy["listen"], "command": ["SET", "drill:{i}", "v{i}"]},
                        "success": "+OK",
                        "verify": {"address": verify_address, "command": ["GET", "drill:{i}"], "expect": "v{i}"}}}]}

            run = run_drill(tmp, drill(redis.address))
            self.assertEqual(run.rc, 0, run.out)
            self.assertEqual(run.report["loads"]["writes"]["writes"],
                             {"verified": True, "acknowledged": 40, "read_back": 40, "lost": 0})
            # Read back from a Redis that never saw them: every acknowledged write is "lost".
            run = run_drill(tmp, drill(other.address))
            self.assertEqual(run.report["loads"]["writes"]["writes"]["lost"], 40, run.report["loads"]["writes"])

    @staticmethod
    def junit_cases(run):
        return list(run.junit.iter("testcase"))


# ---------------------------------------------------------------------------------------------
# (b) V.5: haproxy fails over from the primary's proxy to the backup's

class NamedHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = self.server.name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a disabled proxy or a reset cuts connections mid-request: that is the point


class Backend:
    """An HTTP server on loopback answering its name (`handler`: NamedHandler unless given)."""

    def __init__(self, name, handler=NamedHandler):
        self.server = QuietServer(("127.0.0.1", 0), handler)
        self.server.name = name
        self.port = self.server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class HAProxy(ManagedProcess):
    """haproxy in mode http on a free port: `primary` and a `backup` server, health-checked
    every 100 ms (down after 2 failures, up after 2 passes) by a connect, or with `http_check`
    by GET /health. Without `primary_check` only the backup is checked: haproxy takes the
    primary for up whatever happens. `maxconn` is haproxy's global maxconn."""

    CHECK = "check inter 100ms fall 2 rise 2"

    def __init__(self, primary, backup, primary_check=True, http_check=False, maxconn=256):
        self.bin = need("haproxy", "haproxy (apt package haproxy)")
        self.tmp = tempfile.mkdtemp(prefix="faultline-haproxy-")
        self.log = open(os.path.join(self.tmp, "haproxy.log"), "w+")
        cfg = os.path.join(self.tmp, "haproxy.cfg")
        backend = ["option httpchk", "http-check send meth GET uri /health ver HTTP/1.1 hdr Host app"] if http_check else []
        backend += [f"server primary {primary} {self.CHECK}" if primary_check else f"server primary {primary}",
                    f"server backup {backup} {self.CHECK} backup"]
        backend_lines = "".join(f"    {line}\n" for line in backend)
        for _ in range(3):  # a free port can be taken in between: retry
            self.port = free_port()
            with open(cfg, "w") as f:
                f.write(f"""global
    maxconn {maxconn}
defaults
    mode http
    # A refused connect is retried after min(timeout connect, 1 s): keep that short so a
    # request caught by the kill waits 200 ms, not 1 s per retry.
    timeout connect 200ms
    timeout client 10s
    timeout server 10s
    retries 2
    option redispatch
frontend fe
    bind 127.0.0.1:{self.port}
    default_backend be
backend be
{backend_lines}""")
            self.proc = subprocess.Popen([self.bin, "-db", "-f", cfg], stdout=self.log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
            if wait_listening(self.proc, self.port):
                return
            self.stop()
        out = self.logs()
        self.__exit__()
        raise RuntimeError(f"haproxy did not start: {out}")

    def get(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    return data
                data += chunk


def failover_drill(faultline_url, haproxy_port, kill_backup):
    method = [
        {"type": "action", "name": "traffic", "background": True,
         "provider": {"type": "load", "duration": 4, "concurrency": 4, "rate": 50,
                      "target": {"type": "http", "url": f"http://127.0.0.1:{haproxy_port}/", "timeout": 2},
                      "success": 200}},
        {"type": "action", "name": "kill-primary", "pauses": {"before": 1},
         "provider": {"type": "proxy.disable", "proxy": "primary"}},
    ]
    if kill_backup:
        method.append({"type": "action", "name": "kill-backup", "provider": {"type": "proxy.disable", "proxy": "backup"}})
    # After the failover the backup answers (a probe in the method only records).
    method.append({"type": "probe", "name": "served-by-backup", "pauses": {"before": 1},
                   "provider": {"type": "http", "url": f"http://127.0.0.1:{haproxy_port}/"},
                   "tolerance": [{"type": "range", "range": [200, 200]}, {"type": "regex", "pattern": "^backup$"}]})
    return {
        "title": "haproxy fails over to the backup" + (" (backup down too)" if kill_backup else ""),
        "configuration": {"faultline_url": faultline_url},
        # haproxy itself must stay up throughout (a request in flight at the kill may get a
        # 502, so the HTTP answer is judged by the verdict's health ratio, not here).
        "steady-state-hypothesis": {"title": "the load balancer accepts connections", "probes": [
            {"type": "probe", "name": "listening", "provider": {"type": "tcp", "address": f"127.0.0.1:{haproxy_port}"},
             "tolerance": True}]},
        "method": method,
        "rollbacks": [
            {"type": "action", "name": "revive-primary", "provider": {"type": "proxy.enable", "proxy": "primary"}},
            {"type": "action", "name": "revive-backup", "provider": {"type": "proxy.enable", "proxy": "backup"}},
        ],
        "runtime": {"hypothesis": {"strategy": "continuously", "frequency": 0.5}},
        "verdicts": [
            {"type": "failover", "name": "moves-to-backup", "criterion": "V.5", "primary": "primary",
             "backup": "backup", "after": "kill-primary", "within": 3,
             "health": {"source": "traffic", "min": 0.75}},
        ],
    }


class HAProxyFailoverDrillTest(unittest.TestCase):

    def test_failover_passes_then_fails_with_both_down(self):
        a, b = Backend("primary"), Backend("backup")
        try:
            with TempDir() as tmp, Faultline() as fl:
                pa = fl.create_proxy("primary", f"127.0.0.1:{a.port}")
                pb = fl.create_proxy("backup", f"127.0.0.1:{b.port}")
                with HAProxy(pa["listen"], pb["listen"]) as ha:
                    deadline = time.monotonic() + 10
                    while b"primary" not in ha.get() and time.monotonic() < deadline:
                        time.sleep(0.1)  # pacing of a bounded poll
                    self.assertIn(b"primary", ha.get(), "haproxy does not route to the primary")

                    run = run_drill(tmp, failover_drill(fl.url, ha.port, kill_backup=False))
                    self.assertEqual(run.rc, 0, run.out)
                    v = run.verdict("moves-to-backup")
                    self.assertTrue(v["passed"], v)
                    self.assertLessEqual(v["measured"]["failover_s"], 3)
                    self.assertGreater(v["measured"]["backup_traffic"], 0)
                    self.assertGreaterEqual(v["measured"]["health_ratio"], 0.75)
                    self.assertEqual(run.testcases()[("drill.verdicts", "moves-to-backup (V.5)")], "pass")
                    print(f"\n  failover: traffic on the backup {v['measured']['failover_s']:.2f} s after the kill, "
                          f"{v['measured']['health_ratio']:.0%} of calls healthy", file=sys.stderr)
                    self.assertGreaterEqual(len(run.report["steady_states"]["during"]), 3)
                    self.assertEqual(run.report["run"][-1]["status"], "succeeded", run.report["run"])
                    self.assertFalse(run.report["deviated"], run.out)
                    # The rollback brought the primary back.
                    status, proxy, _ = fl.request("GET", "/proxies/primary")
                    self.assertTrue(proxy["enabled"], proxy)

                    # Let haproxy see the primary healthy again before the second drill.
                    deadline = time.monotonic() + 10
                    while b"primary" not in ha.get() and time.monotonic() < deadline:
                        time.sleep(0.1)  # pacing of a bounded poll
                    run = run_drill(tmp, failover_drill(fl.url, ha.port, kill_backup=True), name="both.json")
                    self.assertEqual(run.rc, 1, run.out)
                    self.assertFalse(run.report["deviated"], "haproxy kept listening")
                    self.assertEqual(run.report["run"][-1]["name"], "served-by-backup")
                    self.assertEqual(run.report["run"][-1]["status"], "failed")
                    v = run.verdict("moves-to-backup")
                    self.assertFalse(v["passed"], v)
                    self.assertTrue(any("no connections carrying data reached backup" in f for f in v["failures"]), v)
                    self.assertEqual(run.testcases()[("drill.verdicts", "moves-to-backup (V.5)")], "failure")
                    for name in ("primary", "backup"):
                        status, proxy, _ = fl.request("GET", f"/proxies/{name}")
                        self.assertTrue(proxy["enabled"], f"the rollback did not re-enable {name}")
        finally:
            a.close()
            b.close()


# ---------------------------------------------------------------------------------------------
# (c) drills that cannot run

class DrillCannotRunTest(unittest.TestCase):

    def test_bad_file_exits_2_with_the_json_path(self):
        with TempDir() as tmp:
            drill = {"title": "bad", "method": [
                {"type": "action", "name": "w", "provider": {"type": "wait", "seconds": 1}},
                {"type": "action", "name": "a", "provider": {"type": "toxic.add", "proxy": "p", "toxic": {"type": "latency"}}},
                {"type": "probe", "name": "h", "provider": {"type": "http", "url": 8080}},
            ]}
            run = run_drill(tmp, drill)
            self.assertEqual(run.rc, 2, run.out)
            self.assertIn("drill.json: $.method[2].provider.url: expected a string, got a number", run.out)
            self.assertIsNone(run.report, "nothing ran, so there is no report")
            run = run_drill(tmp, '{"title": "x",\n "method": [,]}', name="broken.json")
            self.assertEqual(run.rc, 2, run.out)
            self.assertIn("broken.json: line 2, column 13: not valid JSON", run.out)
            run = run_drill(tmp, {"title": "x", "method": []}, args=["--bogus"])
            self.assertEqual(run.rc, 2, run.out)
            # --check validates without running (nothing here could run: no faultline).
            run = run_drill(tmp, drill, args=["--check"], reports=False)
            self.assertEqual(run.rc, 2, run.out)
            self.assertIn("$.method[2].provider.url", run.out)
            drill["method"].pop()
            run = run_drill(tmp, drill, args=["--check"], reports=False)
            self.assertEqual((run.rc, run.out.strip()), (0, os.path.join(tmp, "drill.json") +
                                                         ": ok (0 hypothesis probes, 2 method steps, 0 rollbacks, 0 verdicts)"))

    def test_unreachable_faultline_and_missing_proxy_exit_2(self):
        with TempDir() as tmp:
            drill = {"title": "t", "configuration": {"faultline_url": f"http://127.0.0.1:{free_port()}"},
                     "method": [{"type": "action", "name": "off", "provider": {"type": "proxy.disable", "proxy": "redis"}}]}
            run = run_drill(tmp, drill)
            self.assertEqual(run.rc, 2, run.out)
            self.assertIn("cannot reach the faultline API at http://127.0.0.1:", run.out)
            self.assertEqual(run.report["status"], "aborted")
            self.assertEqual(run.report["result"], "error")
            self.assertEqual(run.testcases()[("drill", "run")], "error")
            with Faultline() as fl:
                drill["configuration"]["faultline_url"] = fl.url
                run = run_drill(tmp, drill)
                self.assertEqual(run.rc, 2, run.out)
                self.assertIn(f'$.method[0].provider.proxy: no proxy "redis" on {fl.url}', run.out)
                # TOXIPROXY_URL is the default API when the drill names none.
                del drill["configuration"]
                run = run_drill(tmp, drill, env={"TOXIPROXY_URL": fl.url})
                self.assertIn(f'no proxy "redis" on {fl.url}', run.out)

    def test_replay_reference_to_a_server_not_running_fails_the_action(self):
        with TempDir() as tmp, Faultline() as fl:
            fl.create_proxy("svc", f"127.0.0.1:{free_port()}")
            drill = {"title": "replay", "configuration": {"faultline_url": fl.url}, "method": [
                {"type": "action", "name": "slow", "provider": {"type": "toxic.add", "proxy": "svc",
                                                                "toxic": {"name": "slow", "type": "latency",
                                                                          "attributes": {"latency": 10}}}},
                {"type": "action", "name": "probe", "provider": {"type": "tcp", "address": "${replay.nope.address}"}},
                {"type": "action", "name": "never", "provider": {"type": "wait", "seconds": 5}},
            ], "rollbacks": [
                {"type": "action", "name": "fast", "provider": {"type": "toxic.remove", "proxy": "svc", "toxic": "slow"}},
            ]}
            run = run_drill(tmp, drill)
            self.assertEqual(run.rc, 2, run.out)
            self.assertEqual(run.report["status"], "aborted")
            self.assertIn("no replay server named nope is running", run.report["reason"])
            self.assertEqual([a["status"] for a in run.report["run"]], ["succeeded", "failed", "skipped"])
            self.assertEqual(run.report["rollbacks"][0]["status"], "succeeded")
            self.assertEqual(fl.request("GET", "/proxies/svc/toxics")[1], [])
            # A bad replay.start is refused before anything runs, with its JSON path.
            drill["method"][1] = {"type": "action", "name": "r", "provider": {"type": "replay.start", "name": "x",
                                                                              "journal": "j", "unmatched": "maybe"}}
            run = run_drill(tmp, drill, reports=False)
            self.assertEqual(run.rc, 2, run.out)
            self.assertIn("$.method[1].provider.unmatched: must be one of error, closest, fail, forward", run.out)

    def test_interrupt_stops_the_method_and_rolls_back(self):
        with TempDir() as tmp, Faultline() as fl:
            fl.create_proxy("svc", f"127.0.0.1:{free_port()}")
            drill = {"title": "long", "configuration": {"faultline_url": fl.url}, "method": [
                {"type": "action", "name": "cut", "provider": {"type": "proxy.disable", "proxy": "svc"}},
                {"type": "action", "name": "hold", "provider": {"type": "wait", "seconds": 60}},
            ], "rollbacks": [
                {"type": "action", "name": "restore", "provider": {"type": "proxy.enable", "proxy": "svc"}},
            ]}
            path = os.path.join(tmp, "long.json")
            with open(path, "w") as f:
                json.dump(drill, f)
            report = os.path.join(tmp, "long.report.json")
            proc = subprocess.Popen([BIN, "drill", path, "--report-json", report, "--progress"],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            deadline = time.monotonic() + 10
            while fl.request("GET", "/proxies/svc")[1]["enabled"] and time.monotonic() < deadline:
                time.sleep(0.05)  # pacing of a bounded poll
            start = time.monotonic()
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=20)
            self.assertLess(time.monotonic() - start, 5, "the wait was not cut short")
            self.assertEqual(proc.returncode, 2, out)
            with open(report) as f:
                r = json.load(f)
            self.assertEqual(r["status"], "interrupted")
            self.assertEqual(r["rollbacks"][0]["status"], "succeeded", r["rollbacks"])
            self.assertTrue(fl.request("GET", "/proxies/svc")[1]["enabled"], "the rollback did not run")


# ---------------------------------------------------------------------------------------------
# (d) replay.start / replay.stop

class ReplayDrillTest(unittest.TestCase):
    def test_replay_start_probe_fault_stop(self):
        """A drill starts a replay server from a journal recorded here, probes it, puts a fault on
        a faultline proxy in front of it (its upstream set to ${replay.api.address}), stops it,
        and the rollbacks still run."""
        with TempDir() as tmp:
            rec = os.path.join(tmp, "rec")
            backend = Backend("recorded-answer")
            try:
                with Faultline("--record", rec) as recorder:
                    proxy = recorder.create_proxy("api", f"127.0.0.1:{backend.port}", protocol="http")
                    port = int(proxy["listen"].rsplit(":", 1)[1])
                    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
                    conn.sendall(b"GET /name HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    answer = recv_all(conn)
                    conn.close()
                    self.assertIn(b"recorded-answer", answer)
                    finish_recordings(recorder)  # the session ended and the journal is written out
            finally:
                backend.close()  # from here on only the journal can answer
            with Faultline() as fl:
                front = fl.create_proxy("front", f"127.0.0.1:{free_port()}", protocol="http")
                front_url = "http://" + front["listen"] + "/name"
                drill = {"title": "replay", "configuration": {"faultline_url": fl.url}, "method": [
                    {"type": "action", "name": "start", "provider": {"type": "replay.start", "name": "api",
                                                                     "journal": "rec", "unmatched": "error"}},
                    {"type": "probe", "name": "direct", "provider": {"type": "http",
                                                                     "url": "http://${replay.api.address}/name"},
                     "tolerance": {"type": "regex", "pattern": "recorded-answer", "target": "body"}},
                    {"type": "probe", "name": "unrecorded", "provider": {"type": "http",
                                                                         "url": "http://${replay.api.address}/other"},
                     "tolerance": 502},
                    {"type": "action", "name": "repoint", "provider": {
                        "type": "http", "method": "POST", "url": fl.url + "/proxies/front",
                        "body": {"upstream": "${replay.api.address}"}}, "tolerance": 200},
                    {"type": "probe", "name": "through_front", "provider": {"type": "http", "url": front_url},
                     "tolerance": {"type": "regex", "pattern": "recorded-answer", "target": "body"}},
                    {"type": "action", "name": "abort", "provider": {
                        "type": "toxic.add", "proxy": "front",
                        "toxic": {"name": "abort", "type": "http_abort", "attributes": {"status": 503}}}},
                    {"type": "probe", "name": "faulted", "provider": {"type": "http", "url": front_url},
                     "tolerance": 503},
                    {"type": "action", "name": "client", "provider": {"type": "replay.client", "journal": "rec",
                                                                      "target": "${replay.api.address}", "speed": "max"}},
                    {"type": "action", "name": "stop", "provider": {"type": "replay.stop", "name": "api"}},
                    {"type": "action", "name": "healed", "provider": {"type": "toxic.remove", "proxy": "front",
                                                                      "toxic": "abort"}},
                    {"type": "probe", "name": "gone", "provider": {"type": "http", "url": front_url},
                     "tolerance": 502},
                ], "rollbacks": [
                    {"type": "action", "name": "cleanup", "provider": {"type": "toxic.remove", "proxy": "front",
                                                                       "toxic": "abort"}},
                ]}
                run = run_drill(tmp, drill)
                self.assertEqual(run.rc, 0, run.out)
                self.assertEqual(run.report["status"], "completed", run.out)
                steps = {a["name"]: a for a in run.report["run"]}
                self.assertEqual([a["status"] for a in run.report["run"]], ["succeeded"] * 11, run.out)
                self.assertRegex(steps["start"]["output"], r"replay server api on 127\.0\.0\.1:\d+: 1 recorded")
                self.assertEqual(steps["client"]["output"], "1 exchanges, 1 matched, 0 mismatched, 0 errors")
                self.assertIn("4 requests, 3 matched, 1 unmatched, 0 forwarded", steps["stop"]["output"])
                self.assertEqual(run.report["rollbacks"][0]["status"], "succeeded")
                self.assertEqual(fl.request("GET", "/proxies/front/toxics")[1], [])


    def test_interrupt_cuts_a_replay_client_short(self):
        """replay.client replays at the recorded pace; an interrupt stops it at once, not after
        the journal's 6 s, and the rollbacks run."""
        with TempDir() as tmp:
            rec = os.path.join(tmp, "rec")
            backend = Backend("slow-session")
            try:
                with Faultline("--record", rec) as recorder:
                    proxy = recorder.create_proxy("api", f"127.0.0.1:{backend.port}", protocol="http")
                    port = int(proxy["listen"].rsplit(":", 1)[1])
                    for i in range(2):
                        if i:
                            time.sleep(6)  # deliberate: the 6 s gap the replay will reproduce
                        conn = socket.create_connection(("127.0.0.1", port), timeout=10)
                        conn.sendall(b"GET /name HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        while conn.recv(65536):
                            pass
                        conn.close()
                    finish_recordings(recorder)  # the sessions ended and the journal is written out
            finally:
                backend.close()
            with Faultline() as fl:
                fl.create_proxy("svc", f"127.0.0.1:{free_port()}")
                drill = {"title": "slow replay", "configuration": {"faultline_url": fl.url}, "method": [
                    {"type": "action", "name": "start", "provider": {"type": "replay.start", "name": "api",
                                                                     "journal": "rec"}},
                    {"type": "action", "name": "cut", "provider": {"type": "proxy.disable", "proxy": "svc"}},
                    {"type": "action", "name": "client", "provider": {"type": "replay.client", "journal": "rec",
                                                                      "target": "${replay.api.address}", "speed": 1}},
                ], "rollbacks": [
                    {"type": "action", "name": "restore", "provider": {"type": "proxy.enable", "proxy": "svc"}},
                ]}
                path = os.path.join(tmp, "slow.json")
                with open(path, "w") as f:
                    json.dump(drill, f)
                report = os.path.join(tmp, "slow.report.json")
                proc = subprocess.Popen([BIN, "drill", path, "--report-json", report],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                deadline = time.monotonic() + 10
                while fl.request("GET", "/proxies/svc")[1]["enabled"] and time.monotonic() < deadline:
                    time.sleep(0.05)  # pacing of a bounded poll
                # Not observable from outside the drill process: half a second into the replay
                # client's first exchange, well before its second (6 s away).
                time.sleep(0.5)
                start = time.monotonic()
                proc.send_signal(signal.SIGINT)
                out, _ = proc.communicate(timeout=30)
                self.assertLess(time.monotonic() - start, 3, "the replay client was not cut short:\n" + out)
                self.assertEqual(proc.returncode, 2, out)
                with open(report) as f:
                    r = json.load(f)
                self.assertEqual(r["status"], "interrupted")
                client = [a for a in r["run"] if a["name"] == "client"]
                self.assertEqual(len(client), 1, r["run"])
                self.assertIn("cancelled", json.dumps(client[0]), client[0])
                self.assertTrue(fl.request("GET", "/proxies/svc")[1]["enabled"], "the rollback did not run")


if __name__ == "__main__":
    unittest.main(verbosity=2)
