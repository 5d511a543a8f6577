"""Verdict pairs with a real redis-server and ioredis: each verdict must tell a recovering
system from its broken twin. The same drill runs against both setups, over 5 seeds each:
against the recovering one it passes (exit 0, the verdict passed), against the broken one it
fails (exit 1, that verdict failed with its reasons in `failures`).

3. latency: a load of GETs through a faultline `resp` proxy "redis" created with a `latency`
   toxic (jitter from the server's --seed). Verdict: avg < 100 ms.
   - recovering ("fast"): 30 ms +- 10;
   - broken ("slow"): 150 ms +- 10;
   - broken trap "hung backend": the proxy's upstream accepts and never answers. Loads are
     open loop: the 2 s load ends within duration + call timeout (+2 s of slack), the calls
     whose time came while every worker hung are reported `not_sent`, lateness in `late_ms`.
     (Its "recovering" figure is the fast runs'.)
4. error_recovery + success_rate: tests/integration/node/ioredis_workflow.mjs drives ioredis
   through the proxy and prints one JSON step per line (a `command` with `"steps": true`).
   The drill cuts the connection (`reset_peer`, 0.6 s), then answers 80% of SETs (rolled
   per message from the seed) with READONLY for 0.8 s.
   - recovering: ioredis' default retryStrategy and reconnectOnError returning 2 on READONLY
     (reconnect and resend): every step succeeds;
   - broken A "no-retry": retryStrategy () => null, maxRetriesPerRequest 0: the cut ends the
     client; `rides-out-cut` fails;
   - broken B "no-readonly", the trap: retries, no reconnectOnError. The cut is ridden out, the
     READONLY window is not: the steps during it fail, and they succeed again right after, so
     only an error_recovery that counts every step of its window (success_rate 1 at its
     defaults) fails it; success_rate (0.95) fails too.

Seeds: `faultline serve --seed N` and `drill --seed N`; fault times move with the seed too.
Each test prints one line per pair to stderr: "pair NAME: recovering passed X/5, broken failed
Y/5". The runs go on concurrently (FAULTLINE_PAIR_PARALLEL, default 4).

Loopback only, free ports, every wait bounded. Needs redis-server and node with ioredis
(./dev setup).
Run standalone: python3 tests/integration/test_verdict_pairs_redis.py -v
"""
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Faultline, RedisServer, ThreadedServer, need, need_node_package  # noqa: E402
from test_drill import TempDir, run_drill  # noqa: E402
from test_verdict_pairs_http import (  # noqa: E402
    SEEDS, Outcome, judge_broken, judge_recovering, load_of, print_sample, run_pair, verdict_of)

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")
WORKFLOW = os.path.join(NODE_DIR, "ioredis_workflow.mjs")
READONLY = "READONLY You can't write against a read only replica."

LOAD_SECONDS = 2
CALL_TIMEOUT = 1
WORKFLOW_SECONDS = 3.6


def report_lines(test, lines):
    """`lines`: [(pair name, verdict, recovering Outcomes, broken Outcomes)]. Prints every pair's
    figures (and what the verdict said in a run of each setup), then fails listing every run that
    went wrong."""
    wrong = []
    for name, verdict, rec, brk in lines:
        print("", file=sys.stderr)
        print_sample(rec, verdict)
        print_sample(brk, verdict)
        print(f"pair {name}: recovering passed {sum(o.ok for o in rec)}/{len(rec)}, "
              f"broken failed {sum(o.ok for o in brk)}/{len(brk)}", file=sys.stderr)
        wrong += [(name, o) for o in rec + brk if not o.ok]
    if wrong:
        test.fail(f"{len(wrong)} runs went wrong:\n\n" + "\n\n".join(f"[{n}] {o!r}" for n, o in wrong))


def judged(outcome, problems):
    """A copy of a finished run's Outcome judged by `problems` (a list of strings)."""
    if not outcome.run:
        return outcome
    why = "; ".join(problems) + ("\n" + outcome.run.out[-1500:] if problems else "")
    return Outcome(outcome.setup, outcome.seed, not problems, why, outcome.run)


class HungServer(ThreadedServer):
    """Accepts, reads everything, never answers (until closed)."""

    conn_timeout = 30

    def handle(self, conn):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self._stop:
            try:
                if not conn.recv(65536):
                    return
            except socket.timeout:
                return


# ---------------------------------------------------------------------------------------------
# Pair 3: latency

def latency_drill(fl_url, redis_addr):
    return {
        "title": "GETs through the redis proxy are fast enough",
        "configuration": {"faultline_url": fl_url, "redis": redis_addr},
        "method": [
            {"type": "action", "name": "gets", "background": True,
             "provider": {"type": "load", "duration": LOAD_SECONDS, "concurrency": 4, "rate": 20,
                          "target": {"type": "resp", "address": "${redis}", "command": ["GET", "latency:key"],
                                     "timeout": CALL_TIMEOUT}}},
        ],
        "verdicts": [
            {"type": "latency", "name": "fast-enough", "criterion": "V.4", "source": "gets", "avg": 100,
             "min_samples": 10},
        ],
    }


def latency_toxic(ms):
    return {"name": "slow-link", "type": "latency", "stream": "downstream", "attributes": {"latency": ms, "jitter": 10}}


class LatencyPairTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        need("redis-server", "redis-server (apt package redis-server)")
        cls.redis = RedisServer()
        cls.addClassCleanup(cls.redis.__exit__)
        cls.hung = HungServer()
        cls.addClassCleanup(cls.hung.close)

    def one_run(self, setup, seed):
        """(run, wall seconds of the drill process, problems to judge later)."""
        with TempDir() as tmp, Faultline("--seed", str(seed)) as fl:
            if setup == "hung":
                proxy = fl.create_proxy("redis", self.hung.address, protocol="resp")
            else:
                proxy = fl.create_proxy("redis", self.redis.address, protocol="resp",
                                        toxics=[latency_toxic(30 if setup == "fast" else 150)])
            start = time.monotonic()
            run = run_drill(tmp, latency_drill(fl.url, proxy["listen"]), args=["--seed", str(seed)], timeout=60)
            run.wall = time.monotonic() - start
            return run, []

    @staticmethod
    def fast_extra(run):
        load = load_of(run, "gets")
        problems = []
        if load.get("not_sent", 0) != 0:
            problems.append(f"the fast backend kept up, yet not_sent = {load.get('not_sent')}")
        avg = verdict_of(run, "fast-enough")["measured"].get("avg_ms", 0)
        if not 20 <= avg < 100:
            problems.append(f"avg {avg} ms: the 30 ms (+-10) toxic should show")
        return problems

    @staticmethod
    def slow_extra(run):
        avg = verdict_of(run, "fast-enough")["measured"].get("avg_ms", 0)
        return [] if avg >= 140 else [f"avg {avg} ms: the 150 ms toxic should show"]

    @staticmethod
    def hung_extra(run):
        bound = LOAD_SECONDS + CALL_TIMEOUT + 2
        problems = []
        if run.wall >= bound:
            problems.append(f"the drill took {run.wall:.2f} s against a hung backend, bound {bound} s")
        load = load_of(run, "gets")
        if not load.get("not_sent", 0) > 0:
            problems.append(f"calls due while every worker hung should be not_sent: {sorted(load)} "
                            f"not_sent={load.get('not_sent')}")
        late = load.get("late_ms")
        if late is None:
            problems.append(f"the load reports no late_ms: {sorted(load)}")
        elif isinstance(late, dict) and not late.get("max", 0) > 0:
            problems.append(f"late_ms: {late}")
        if load.get("ok", 1) != 0:
            problems.append(f"a backend that never answers gave {load.get('ok')} ok calls")
        # Every call the load was due to make is in the report: 20/s for 2 s.
        due = 20 * LOAD_SECONDS
        if not due - 2 <= load.get("calls", 0) <= due + 1:
            problems.append(f"{load.get('calls')} calls reported, {due} were due")
        return problems

    def test_latency_fast_slow_and_hung(self):
        jobs = [(setup, seed, lambda st=setup, s=seed: self.one_run(st, s))
                for seed in SEEDS for setup in ("fast", "slow", "hung")]
        done = run_pair(jobs)
        fast = [judged(o, judge_recovering(o.run, ["fast-enough"], self.fast_extra)) for o in done if o.setup == "fast"]
        slow = [judged(o, judge_broken(o.run, "fast-enough", self.slow_extra)) for o in done if o.setup == "slow"]
        hung = [judged(o, judge_broken(o.run, "fast-enough", self.hung_extra)) for o in done if o.setup == "hung"]
        walls = [f"{o.run.wall:.2f}" for o in hung if o.run]
        print(f"\n  hung backend: drill wall times {walls} s (bound {LOAD_SECONDS + CALL_TIMEOUT + 2} s)", file=sys.stderr)
        report_lines(self, [("latency-redis-30ms-vs-150ms", "fast-enough", fast, slow),
                            ("latency-redis-hung-backend", "fast-enough", fast, hung)])


# ---------------------------------------------------------------------------------------------
# Pair 4: ioredis, error_recovery + success_rate

def workflow_drill(fl_url, port, mode, seed):
    return {
        "title": f"an ioredis workflow ({mode}) through a connection cut and a READONLY window",
        "configuration": {"faultline_url": fl_url},
        "method": [
            {"type": "action", "name": "steps", "background": True,
             "provider": {"type": "command", "path": "node",
                          "arguments": [WORKFLOW, str(port), str(WORKFLOW_SECONDS), mode, "20"],
                          "steps": True, "timeout": 30}},
            {"type": "action", "name": "cut", "pauses": {"before": 0.6 + 0.05 * seed},
             "provider": {"type": "toxic.add", "proxy": "redis", "duration": 0.6,
                          "toxic": {"name": "cut", "type": "reset_peer", "stream": "upstream",
                                    "attributes": {"timeout": 0}}}},
            {"type": "action", "name": "readonly", "pauses": {"before": 1.2},
             "provider": {"type": "toxic.add", "proxy": "redis", "duration": 0.8,
                          "toxic": {"name": "readonly", "type": "resp_error", "toxicity": 0.8,
                                    "attributes": {"error": READONLY, "match": {"command": "SET"}}}}},
        ],
        "rollbacks": [
            {"type": "action", "name": "remove-cut", "provider": {"type": "toxic.remove", "proxy": "redis", "toxic": "cut"}},
            {"type": "action", "name": "remove-readonly",
             "provider": {"type": "toxic.remove", "proxy": "redis", "toxic": "readonly"}},
        ],
        "verdicts": [
            {"type": "error_recovery", "name": "rides-out-cut", "criterion": "V.2", "source": "steps",
             "fault": "cut", "after": "cut.removed", "within": 1, "until": "readonly.start"},
            {"type": "error_recovery", "name": "rides-out-readonly", "criterion": "V.2", "source": "steps",
             "fault": "readonly", "after": "readonly.removed", "within": 1, "from": "readonly.start"},
            {"type": "success_rate", "name": "steps-succeed", "criterion": "V.1", "source": "steps",
             "threshold": 0.95, "min_samples": 40},
        ],
    }


class IoredisRecoveryPairTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        need("redis-server", "redis-server (apt package redis-server)")
        need_node_package("ioredis")
        cls.redis = RedisServer()
        cls.addClassCleanup(cls.redis.__exit__)

    def one_run(self, mode, seed):
        with TempDir() as tmp, Faultline("--seed", str(seed)) as fl:
            proxy = fl.create_proxy("redis", self.redis.address, protocol="resp")
            port = int(proxy["listen"].rsplit(":", 1)[1])
            return run_drill(tmp, workflow_drill(fl.url, port, mode, seed), args=["--seed", str(seed)], timeout=60), []

    @staticmethod
    def recovering_extra(run):
        problems = []
        cut = verdict_of(run, "rides-out-cut")["measured"]
        if not cut.get("fault_resets", 0) > 0:
            problems.append(f"the cut should show in faultline's reset counter: {cut}")
        ro = verdict_of(run, "rides-out-readonly")["measured"]
        if not ro.get("fault_messages", 0) > 0:
            problems.append(f"the READONLY answers should show in faultline's message counter: {ro}")
        for name, m in (("rides-out-cut", cut), ("rides-out-readonly", ro)):
            if m.get("failures") != 0:
                problems.append(f"{name}: the recovering client lost steps: {m}")
        return problems

    @staticmethod
    def no_readonly_extra(run):
        """The trap: the cut is ridden out, the READONLY steps fail but the workflow goes on."""
        problems = []
        if not verdict_of(run, "rides-out-cut")["passed"]:
            problems.append(f"the retrying client should ride out the cut: {verdict_of(run, 'rides-out-cut')}")
        m = verdict_of(run, "rides-out-readonly")["measured"]
        if not (m.get("failures", 0) > 0 and m.get("success_rate", 1) < 1):
            problems.append(f"READONLY steps should be failed steps: {m}")
        if not m.get("time_to_first_success_s", 99) <= 1 or m.get("later_success_rate") != 1:
            problems.append(f"after the window the steps succeed again (that is what makes it a trap): {m}")
        return problems

    @staticmethod
    def no_retry_extra(run):
        load_failures = verdict_of(run, "rides-out-cut")["measured"].get("failures", 0)
        return [] if load_failures > 0 else ["the client without retries should lose steps after the cut"]

    def test_ioredis_recovery_logic(self):
        jobs = [(mode, seed, lambda m=mode, s=seed: self.one_run(m, s))
                for seed in SEEDS for mode in ("recovering", "no-retry", "no-readonly")]
        done = run_pair(jobs)
        of = {mode: [o for o in done if o.setup == mode] for mode in ("recovering", "no-retry", "no-readonly")}
        all_three = ["rides-out-cut", "rides-out-readonly", "steps-succeed"]
        rec = [judged(o, judge_recovering(o.run, all_three, self.recovering_extra)) for o in of["recovering"]]
        no_retry = [judged(o, judge_broken(o.run, "rides-out-cut", self.no_retry_extra)) for o in of["no-retry"]]
        trap = [judged(o, judge_broken(o.run, "rides-out-readonly", self.no_readonly_extra)) for o in of["no-readonly"]]
        rate_no_readonly = [judged(o, judge_broken(o.run, "steps-succeed")) for o in of["no-readonly"]]
        rate_no_retry = [judged(o, judge_broken(o.run, "steps-succeed")) for o in of["no-retry"]]
        report_lines(self, [("error_recovery-ioredis-no-retry", "rides-out-cut", rec, no_retry),
                            ("error_recovery-ioredis-readonly-trap", "rides-out-readonly", rec, trap),
                            ("success_rate-ioredis-no-readonly", "steps-succeed", rec, rate_no_readonly),
                            ("success_rate-ioredis-no-retry", "steps-succeed", rec, rate_no_retry)])


if __name__ == "__main__":
    unittest.main(verbosity=2)
