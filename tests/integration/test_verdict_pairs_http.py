"""Verdict pairs with real HTTP peers: each verdict must tell a recovering system from its
broken twin. The same drill runs against both setups, over 5 seeds each: against the
recovering one it passes (exit 0, the verdict passed), against the broken one it fails
(exit 1, that verdict failed with its reasons in `failures`).

    client (drill load) --> nginx / HAProxy --> faultline `http` proxy "app-a" --> backend A
                                            \-> faultline `http` proxy "app-b" --> backend B

Pairs (docs/drills.md is the reference):

1. error_recovery, nginx, the trap "a load balancer that hides every failure": `http_abort`
   502 (toxicity 0.7, rolled per request from the server's --seed) on app-a for 1.5 s under a
   load through nginx.
   - recovering: `proxy_next_upstream error timeout http_502`: nginx retries on B, the client
     sees no failure. The verdict passes at its defaults (`require_failure: true`) because
     faultline's own per-toxic counters show the fault acted, not because a client failed;
   - broken: `proxy_next_upstream off`: the 502s reach the client during the fault.
2. failover, HAProxy (a primary and a `backup` server): the drill disables app-a
   (`proxy.disable`) and enables it again 1.2 s later.
   - recovering: both servers health-checked (`option httpchk`, GET /health): traffic moves
     to the backup, and back after the primary returns (a second failover verdict, failback);
   - broken trap: the primary has no `check`, the backup has: the backup's proxy sees only
     health checks, which `"traffic": {"exclude": [{"path": "/health"}]}` does not count.
5. no_critical_errors, nginx: `reset_peer` (toxicity 0.7, per connection) on app-a.
   - recovering: next-upstream on error: no 5xx reaches the load;
   - broken: `proxy_next_upstream off`: nginx answers 502; the verdict counts those 5xx apart
     from the critical probe's failures (none: the probe runs before and after the fault).

Seeds: `faultline serve --seed N` and `drill --seed N`; the fault's start also moves with the
seed. Each test prints one line to stderr: "pair NAME: recovering passed X/5, broken failed
Y/5". The runs of a pair go on concurrently (FAULTLINE_PAIR_PARALLEL, default 4).

Loopback only, free ports, every wait bounded. Needs nginx (apt package nginx-light) and
haproxy: ./dev setup installs both.
Run standalone: python3 tests/integration/test_verdict_pairs_http.py -v
"""
import concurrent.futures
import http.client
import http.server
import os
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Faultline, ManagedProcess, free_port, need, wait_listening  # noqa: E402
from test_drill import Backend, HAProxy, TempDir, run_drill  # noqa: E402

SEEDS = (1, 2, 3, 4, 5)
PARALLEL = max(1, int(os.environ.get("FAULTLINE_PAIR_PARALLEL", "4")))
LOAD_SECONDS = 3


# ---------------------------------------------------------------------------------------------
# Peers

class AppHandler(http.server.BaseHTTPRequestHandler):
    """The backends' handler (served by test_drill's Backend): GET /health: 200 "ok"; anything
    else: 200 and the backend's name. HTTP/1.1 keep-alive."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"ok" if self.path == "/health" else self.server.name.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def app_backends(cls, *names):
    """A Backend serving AppHandler for each of `names`, closed when test class `cls` is done."""
    backends = []
    for name in names:
        backends.append(Backend(name, AppHandler))
        cls.addClassCleanup(backends[-1].close)
    return backends


def http_get(port, path, timeout=5):
    """(status, body) of GET path on 127.0.0.1:port, a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        conn.close()


class Nginx(ManagedProcess):
    """nginx (one process, no daemon) on a free port in front of `upstreams` (round robin,
    failure accounting off: every second request goes to A whatever happened before).
    `next_upstream` is the proxy_next_upstream value ("off" or the conditions). GET /health is
    answered by nginx itself; everything else is proxied."""

    def __init__(self, upstreams, next_upstream):
        self.bin = need("nginx", "nginx-light (apt package nginx-light)")
        self.tmp = tempfile.mkdtemp(prefix="faultline-nginx-")
        self.log = open(os.path.join(self.tmp, "nginx.out"), "w+")
        cfg = os.path.join(self.tmp, "nginx.conf")
        servers = "\n".join(f"        server {u} max_fails=0;" for u in upstreams)
        for _ in range(3):  # a free port can be taken in between: retry
            self.port = free_port()
            temp = {k: os.path.join(self.tmp, k) for k in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
            with open(cfg, "w") as f:
                f.write(f"""daemon off;
master_process off;
worker_processes 1;
pid {self.tmp}/nginx.pid;
error_log {self.tmp}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {temp['body']};
    proxy_temp_path {temp['proxy']};
    fastcgi_temp_path {temp['fastcgi']};
    uwsgi_temp_path {temp['uwsgi']};
    scgi_temp_path {temp['scgi']};
    upstream app {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{self.port};
        location = /health {{ return 200 "ok"; }}
        location / {{
            proxy_pass http://app;
            proxy_next_upstream {next_upstream};
            proxy_next_upstream_tries 2;
            proxy_connect_timeout 1s;
            proxy_read_timeout 2s;
        }}
    }}
}}
""")
            self.proc = subprocess.Popen([self.bin, "-p", self.tmp + "/", "-c", cfg, "-e", os.path.join(self.tmp, "error.log")],
                                         stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if wait_listening(self.proc, self.port):
                return
            self.stop()
        out = self.logs() + self.error_log()
        self.__exit__()
        raise RuntimeError(f"nginx did not start: {out}")

    def error_log(self):
        try:
            with open(os.path.join(self.tmp, "error.log")) as f:
                return f.read()
        except OSError:
            return ""


def wait_for_body(port, want, timeout=10):
    """Polls GET / on the load balancer until `want` answers (bounded); returns the last answer."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = http_get(port, "/", timeout=2)
            if last == (200, want):
                return last
        except OSError as e:
            last = e
        time.sleep(0.1)
    return last


# ---------------------------------------------------------------------------------------------
# Running a pair

class Outcome:
    """One drill run of a pair: which setup, seed, whether it did what the pair expects, why not."""

    def __init__(self, setup, seed, ok, why, run=None):
        self.setup, self.seed, self.ok, self.why, self.run = setup, seed, ok, why, run

    def __repr__(self):
        return f"{self.setup} seed {self.seed}: {'as expected' if self.ok else 'NOT as expected: ' + self.why}"


def verdict_of(run, name):
    if not run.report:
        return None
    for v in run.report.get("verdicts", []):
        if v.get("name") == name:
            return v
    return None


def judge_recovering(run, verdicts, extra=None):
    """The recovering setup: exit 0, each verdict in `verdicts` passed, `extra(run)` found no problem."""
    problems = []
    if run.rc != 0:
        problems.append(f"exit {run.rc}, want 0")
    for name in verdicts:
        v = verdict_of(run, name)
        if v is None:
            problems.append(f"no verdict {name}")
        elif not v.get("passed"):
            problems.append(f"{name} failed: {v.get('failures')}")
    if not problems and extra:
        problems += extra(run)
    return problems


def judge_broken(run, verdict, extra=None):
    """The broken setup: exit 1, `verdict` failed with at least one reason, `extra(run)` found no
    problem."""
    problems = []
    if run.rc != 1:
        problems.append(f"exit {run.rc}, want 1")
    v = verdict_of(run, verdict)
    if v is None:
        problems.append(f"no verdict {verdict}")
    elif v.get("passed"):
        problems.append(f"{verdict} passed: {v.get('summary')} {v.get('measured')}")
    elif not v.get("failures"):
        problems.append(f"{verdict} failed without a reason in `failures`: {v}")
    if not problems and extra:
        problems += extra(run)
    return problems


def run_pair(jobs):
    """Runs `jobs` ([(setup, seed, fn)], fn() -> (run, problems)) concurrently; returns Outcomes
    in the order given. An exception in a job is an outcome that did not go as expected."""
    def one(job):
        setup, seed, fn = job
        try:
            run, problems = fn()
        except Exception as e:  # noqa: BLE001 - reported as the outcome
            return Outcome(setup, seed, False, f"{type(e).__name__}: {e}")
        why = "; ".join(problems)
        if problems and run is not None:
            why += "\n" + run.out[-1500:]
        return Outcome(setup, seed, not problems, why, run)

    with concurrent.futures.ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        return list(pool.map(one, jobs))


def print_sample(outcomes, verdict):
    """One line per setup on stderr: what `verdict` said in the first run of that setup."""
    for o in outcomes:
        v = verdict_of(o.run, verdict) if o.run else None
        if v is not None:
            reason = f" — {v['failures'][0]}" if v.get("failures") else ""
            print(f"  {o.setup} seed {o.seed}: {verdict} {'PASS' if v.get('passed') else 'FAIL'}: "
                  f"{v.get('summary')}{reason}"[:400], file=sys.stderr)
            return


def report_pair(test, name, outcomes, verdict):
    """Prints the pair's figures (and what `verdict` said in a run of each setup), then fails the
    test listing every run that went wrong."""
    rec = [o for o in outcomes if o.setup == "recovering"]
    brk = [o for o in outcomes if o.setup == "broken"]
    print("", file=sys.stderr)
    print_sample(rec, verdict)
    print_sample(brk, verdict)
    print(f"pair {name}: recovering passed {sum(o.ok for o in rec)}/{len(rec)}, "
          f"broken failed {sum(o.ok for o in brk)}/{len(brk)}", file=sys.stderr)
    wrong = [o for o in outcomes if not o.ok]
    if wrong:
        test.fail(f"{len(wrong)} of {len(outcomes)} runs of pair {name} went wrong:\n\n" +
                  "\n\n".join(repr(o) for o in wrong))


def load_of(run, name="traffic"):
    return (run.report or {}).get("loads", {}).get(name, {})


# ---------------------------------------------------------------------------------------------
# Drills

def lb_fault_drill(fl_url, lb_port, seed, toxic, verdicts):
    """Load through the load balancer for LOAD_SECONDS; `toxic` on app-a for 1.5 s from about
    0.5 s in (later with the seed). A critical probe through the load balancer runs before and
    after the method."""
    return {
        "title": f"{toxic['type']} on app-a behind nginx",
        "configuration": {"faultline_url": fl_url, "lb": f"http://127.0.0.1:{lb_port}"},
        "steady-state-hypothesis": {"title": "nginx reaches the backends", "probes": [
            {"type": "probe", "name": "lb-answers", "critical": True,
             "provider": {"type": "http", "url": "${lb}/probe", "timeout": 3}, "tolerance": 200}]},
        "method": [
            {"type": "action", "name": "traffic", "background": True,
             "provider": {"type": "load", "duration": LOAD_SECONDS, "concurrency": 4, "rate": 40,
                          "target": {"type": "http", "url": "${lb}/items/{i}", "timeout": 2},
                          "success": 200}},
            {"type": "action", "name": "break-a", "pauses": {"before": 0.4 + 0.05 * seed},
             "provider": {"type": "toxic.add", "proxy": "app-a", "duration": 1.5, "toxic": toxic}},
        ],
        "rollbacks": [
            {"type": "action", "name": "remove-fault",
             "provider": {"type": "toxic.remove", "proxy": "app-a", "toxic": toxic["name"]}},
        ],
        "verdicts": verdicts,
    }


ABORT_502 = {"name": "abort", "type": "http_abort", "toxicity": 0.7, "attributes": {"status": 502}}
RESET = {"name": "reset", "type": "reset_peer", "stream": "upstream", "toxicity": 0.7, "attributes": {"timeout": 0}}

RECOVERS = {"type": "error_recovery", "name": "recovers", "criterion": "V.2", "source": "traffic",
            "after": "break-a.removed", "fault": "break-a", "within": 1}
NO_5XX = {"type": "no_critical_errors", "name": "no-5xx", "criterion": "V.7", "no_5xx": ["traffic"]}


def failover_drill(fl_url, lb_port, seed):
    """Load through haproxy for 4 s; app-a (the primary's proxy) disabled from about 0.9 s in
    (later with the seed) for 1.2 s."""
    exclude = {"exclude": [{"path": "/health"}]}
    return {
        "title": "haproxy fails over from app-a to app-b and back",
        "configuration": {"faultline_url": fl_url, "lb": f"http://127.0.0.1:{lb_port}"},
        "method": [
            {"type": "action", "name": "traffic", "background": True,
             "provider": {"type": "load", "duration": 4, "concurrency": 4, "rate": 40,
                          "target": {"type": "http", "url": "${lb}/items/{i}", "timeout": 2},
                          "success": 200}},
            {"type": "action", "name": "kill-primary", "pauses": {"before": 0.8 + 0.05 * seed},
             "provider": {"type": "proxy.disable", "proxy": "app-a"}},
            {"type": "action", "name": "revive-primary", "pauses": {"before": 1.2},
             "provider": {"type": "proxy.enable", "proxy": "app-a"}},
        ],
        "rollbacks": [
            {"type": "action", "name": "enable-primary", "provider": {"type": "proxy.enable", "proxy": "app-a"}},
        ],
        "runtime": {"metrics": {"interval": 0.1}},
        "verdicts": [
            {"type": "failover", "name": "moves-to-backup", "criterion": "V.5", "primary": "app-a", "backup": "app-b",
             "after": "kill-primary", "until": "revive-primary", "within": 1, "traffic": exclude,
             "min_requests": 1, "primary_max_share": 0.05, "health": {"source": "traffic", "min": 0.75}},
            # Failback: once app-a is back and haproxy's checks pass again, the traffic returns.
            {"type": "failover", "name": "fails-back", "criterion": "V.5", "primary": "app-b", "backup": "app-a",
             "after": "revive-primary", "within": 1.5, "traffic": exclude,
             "min_requests": 1, "primary_max_share": 0.25},
        ],
    }


# ---------------------------------------------------------------------------------------------

class NginxPairsTest(unittest.TestCase):
    """Pairs 1 and 5: nginx in front of two backends, with and without next-upstream."""

    NEXT = {"recovering": "error timeout http_502", "broken": "off"}

    @classmethod
    def setUpClass(cls):
        need("nginx", "nginx-light (apt package nginx-light)")
        cls.a, cls.b = app_backends(cls, "A", "B")

    def one_run(self, setup, seed, toxic, verdicts, judge):
        """A faultline (--seed) with app-a / app-b, nginx over them, and the drill; returns
        (run, problems)."""
        with TempDir() as tmp, Faultline("--seed", str(seed)) as fl:
            pa = fl.create_proxy("app-a", self.a.address, protocol="http")
            pb = fl.create_proxy("app-b", self.b.address, protocol="http")
            with Nginx([pa["listen"], pb["listen"]], self.NEXT[setup]) as nginx:
                # Both backends answer through nginx before anything is broken.
                seen = {http_get(nginx.port, f"/warm/{i}")[1] for i in range(4)}
                if seen != {"A", "B"}:
                    return None, [f"nginx does not route to both backends: saw {seen}\n{nginx.error_log()}"]
                run = run_drill(tmp, lb_fault_drill(fl.url, nginx.port, seed, toxic, verdicts),
                                args=["--seed", str(seed)], timeout=60)
                return run, judge(run)

    def run_and_report(self, pair, toxic, verdict, recovering_extra, broken_extra):
        """The drill with `toxic` and the one `verdict`, against each setup over SEEDS, judged by
        that verdict and the setup's `*_extra`; then report_pair under the name `pair`."""
        name = verdict["name"]
        jobs = []
        for seed in SEEDS:
            jobs.append(("recovering", seed, lambda s=seed: self.one_run(
                "recovering", s, toxic, [verdict], lambda r: judge_recovering(r, [name], recovering_extra))))
            jobs.append(("broken", seed, lambda s=seed: self.one_run(
                "broken", s, toxic, [verdict], lambda r: judge_broken(r, name, broken_extra))))
        report_pair(self, pair, run_pair(jobs), name)

    def test_error_recovery_next_upstream_hides_every_failure(self):
        """Pair 1: the recovering nginx loses no request yet passes at `require_failure: true`:
        faultline's per-toxic counters (kept after the toxic's removal) show the 502s happened."""
        def recovering_extra(run):
            m = verdict_of(run, "recovers")["measured"]
            problems = []
            if m.get("fault_messages", 0) <= 0:
                problems.append(f"the fault bit should show in fault_messages: {m}")
            if m.get("failures", -1) != 0 or m.get("success_rate") != 1:
                problems.append(f"nginx retried on B: the client should have seen no failure: {m}")
            load = load_of(run)
            if load.get("ok") != load.get("calls") or not load.get("calls"):
                problems.append(f"load: {load.get('ok')}/{load.get('calls')} ok")
            return problems

        def broken_extra(run):
            m = verdict_of(run, "recovers")["measured"]
            problems = []
            if not (m.get("failures", 0) > 0 and m.get("success_rate", 1) < 1):
                problems.append(f"the 502s should be failed steps: {m}")
            if m.get("fault_messages", 0) <= 0:
                problems.append(f"fault_messages: {m}")
            return problems

        self.run_and_report("error_recovery-nginx-next-upstream", ABORT_502, RECOVERS, recovering_extra, broken_extra)

    def test_no_critical_errors_counts_5xx_apart_from_probe_failures(self):
        """Pair 5: reset_peer on app-a. Without next-upstream nginx answers 502 to the load (the
        critical probe, before and after the fault, still passes): 5xx counted apart."""
        def recovering_extra(run):
            m = verdict_of(run, "no-5xx")["measured"]
            return [] if (m.get("http_5xx"), m.get("critical_probe_failures")) == (0, 0) else [f"measured: {m}"]

        def broken_extra(run):
            v = verdict_of(run, "no-5xx")
            m = v["measured"]
            problems = []
            if not m.get("http_5xx", 0) > 0:
                problems.append(f"no 5xx counted: {m}")
            if m.get("critical_probe_failures") != 0:
                problems.append(f"the critical probe ran outside the fault and should not count: {m}")
            if not any("5xx" in f for f in v["failures"]):
                problems.append(f"no reason names the 5xx answers: {v['failures']}")
            statuses = {row[3] for row in load_of(run).get("timeline", []) if not row[2]}
            if 502 not in statuses:
                problems.append(f"nginx should have answered 502 to the load; failed calls had {statuses}")
            return problems

        self.run_and_report("no_critical_errors-nginx-reset", RESET, NO_5XX, recovering_extra, broken_extra)


class HAProxyFailoverPairTest(unittest.TestCase):
    """Pair 2: haproxy primary + backup, health checks on both (recovering) or on the backup
    only (broken: the backup's proxy sees nothing but health checks)."""

    @classmethod
    def setUpClass(cls):
        need("haproxy", "haproxy (apt package haproxy)")
        cls.a, cls.b = app_backends(cls, "primary", "backup")

    def one_run(self, setup, seed):
        with TempDir() as tmp, Faultline("--seed", str(seed)) as fl:
            pa = fl.create_proxy("app-a", self.a.address, protocol="http")
            pb = fl.create_proxy("app-b", self.b.address, protocol="http")
            with HAProxy(pa["listen"], pb["listen"], primary_check=(setup == "recovering"), http_check=True,
                         maxconn=512) as ha:
                got = wait_for_body(ha.port, "primary")
                if got != (200, "primary"):
                    return None, [f"haproxy does not route to the primary: {got}\n{ha.logs()}"]
                run = run_drill(tmp, failover_drill(fl.url, ha.port, seed), args=["--seed", str(seed)], timeout=60)
                if setup == "recovering":
                    return run, judge_recovering(run, ["moves-to-backup", "fails-back"], self.recovering_extra)
                return run, judge_broken(run, "moves-to-backup", self.broken_extra)

    @staticmethod
    def recovering_extra(run):
        m = verdict_of(run, "moves-to-backup")["measured"]
        problems = []
        if not m.get("failover_s", 99) <= 1:
            problems.append(f"failover_s: {m}")
        timeline = load_of(run).get("timeline", [])
        events = run.report.get("events", {})
        revive = events.get("revive-primary.end", events.get("revive-primary"))
        if revive is None:
            problems.append(f"no revive-primary event: {events}")
        # The last calls (0.5 s before the load's end, well after the failback) all succeeded.
        late = [row for row in timeline if row[0] > revive + 1.2] if revive is not None else []
        if not late or not all(row[2] for row in late):
            problems.append(f"calls after the failback: {late[:5]}")
        return problems

    @staticmethod
    def broken_extra(run):
        v = verdict_of(run, "moves-to-backup")
        reasons = " | ".join(v["failures"])
        problems = []
        if "app-b" not in reasons or "health check" not in reasons:
            problems.append(f"the reason should say app-b saw only health checks: {reasons}")
        return problems

    def test_failover_health_checks_are_not_traffic(self):
        jobs = []
        for seed in SEEDS:
            for setup in ("recovering", "broken"):
                jobs.append((setup, seed, lambda s=seed, st=setup: self.one_run(st, s)))
        report_pair(self, "failover-haproxy-unchecked-primary", run_pair(jobs), "moves-to-backup")


if __name__ == "__main__":
    unittest.main(verbosity=2)
