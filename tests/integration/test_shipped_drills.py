"""The shipped drills are proven: each of profiles/drills/v1..v8 passes against the stand-in stack
(profiles/default.json, the seed stack's proxies replaying their journals) and FAILS against a
broken variant of it, over several seeds (`serve --seed N` and `drill --seed N`).

A broken variant is the default stack with a standing defect put in place before the drill (a
permanent fault through the API, a proxy disabled, a connection cap, a journal that leaked a
key) or a client variant (the V.2 workflow without retries). Recovering must exit 0 with every
verdict passed; broken must exit 1 with status `completed` (the steady state held, so it is a
verdict that failed), the criterion's verdict among the failed ones, each failed verdict giving
its reasons. After every run the stack is checked: the rollbacks took out what the drill added,
and only the variant's own defect is left.

Every run gets its own `faultline serve` (free ports through the profile's FAULTLINE_*_PORT
variables); independent runs go JOBS at a time (FAULTLINE_DRILL_JOBS, default 3). A line per
drill says "drill vN: recovering passed X/S, broken failed Y/S".
Run standalone: python3 tests/integration/test_shipped_drills.py -v
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN, Faultline  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DRILLS_DIR = os.path.join(ROOT, "profiles", "drills")
DEFAULT_PROFILE = os.path.join(ROOT, "profiles", "default.json")
JOURNALS = os.path.join(ROOT, "profiles", "journals")
SEEDS = (1, 2, 3)
JOBS = max(1, int(os.environ.get("FAULTLINE_DRILL_JOBS", "3")))
DRILL_TIMEOUT = 60
FREE_PORTS = {"FAULTLINE_LISTEN_HOST": "127.0.0.1", "FAULTLINE_MCP_PORT": "0", "FAULTLINE_KIMI_PORT": "0",
              "FAULTLINE_GLM_PORT": "0", "FAULTLINE_REDIS_PORT": "0", "FAULTLINE_REDIS_COMMANDER_PORT": "0"}
# Variables of the drills and the profile a developer's shell may set; the runs set their own.
DRILL_VARS = ("FAULTLINE_URL", "MCP_URL", "KIMI_URL", "GLM_URL", "REDIS_ADDR", "JOURNALS_DIR", "PYTHON",
              "LLM_FALLBACK_CLIENT", "LLM_WORKFLOW_CLIENT", "LLM_WORKFLOW_RETRIES", "V1_THRESHOLD", "FAULTLINE_TOKEN",
              "TOXIPROXY_URL")
FAKE_KEY = "sk-faultline-FAKE-0000000000000000"  # what profiles/journals/make.py gives the providers


# --- the standing defects of the broken variants ------------------------------------------------

def toxic(proxy, body):
    def put(fl, tmp):
        status, answer, _ = fl.request("POST", f"/proxies/{proxy}/toxics", body)
        if status != 200:
            raise AssertionError(f"adding the defect {body['name']} to {proxy}: {status} {answer}")
        return {}
    put.leaves = {"toxics": {proxy: [body["name"]]}}
    return put


def proxy_update(proxy, fields, leaves):
    def put(fl, tmp):
        status, answer, _ = fl.request("POST", f"/proxies/{proxy}", fields)
        if status != 200:
            raise AssertionError(f"updating {proxy} with {fields}: {status} {answer}")
        return {}
    put.leaves = leaves
    return put


def env_only(extra):
    def put(fl, tmp):
        return dict(extra)
    put.leaves = {}
    return put


def leaked_journals(fl, tmp):
    """A copy of the shipped journals in which one recorded request kept the provider key."""
    leaked = os.path.join(tmp, "journals")
    shutil.copytree(JOURNALS, leaked)
    jsonl = sorted(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(leaked, "kimi")) for f in fs
                   if f.endswith(".jsonl"))
    if not jsonl:
        raise AssertionError(f"no .jsonl journal under {leaked}/kimi to plant the leak in")
    with open(jsonl[0], "a") as f:
        f.write(json.dumps({"note": "an unredacted header", "authorization": f"Bearer {FAKE_KEY}"}) + "\n")
    return {"JOURNALS_DIR": leaked}


leaked_journals.leaves = {}

MCP_500 = toxic("mcp", {"name": "broken-tools-500", "type": "http_abort", "toxicity": 0.3,
                        "attributes": {"status": 500, "match": {"rpc_method": "tools/call"}}})
REDIS_150MS = toxic("redis", {"name": "broken-redis-150ms", "type": "latency", "stream": "downstream",
                              "attributes": {"latency": 150}})
NO_RETRIES = env_only({"LLM_WORKFLOW_RETRIES": "0"})

# drill -> (file, expected failing verdicts per broken variant: [(variant, defect, {verdicts})])
DRILLS = {
    "v1": ("v1-critical-tools.json", [
        ("MCP tools/call answers 500 at toxicity 0.3", MCP_500, {"critical-tools"})]),
    "v2": ("v2-error-recovery.json", [
        ("the workflow without retries (LLM_WORKFLOW_RETRIES=0)", NO_RETRIES, {"workflow-recovers"})]),
    "v3": ("v3-concurrent-calls.json", [
        ("the MCP server takes 50 connections at most", proxy_update("mcp", {"max_connections": 50}, {}),
         {"concurrent-calls-succeed"}),
        ("MCP tools/call answers 500 at toxicity 0.3", MCP_500, {"concurrent-calls-succeed"})]),
    "v4": ("v4-redis-latency.json", [
        ("150 ms on every Redis reply", REDIS_150MS, {"redis-average"})]),
    "v5": ("v5-failover.json", [
        ("the backup (glm) is down too", proxy_update("glm", {"enabled": False}, {"disabled": ["glm"]}),
         {"kimi-to-glm"})]),
    "v6": ("v6-security-under-load.json", [
        ("a journal kept the provider key", leaked_journals, {"secrets-redacted", "security-checks"})]),
    "v7": ("v7-no-critical-errors.json", [
        ("GLM streams answer 502 at toxicity 0.5",
         toxic("glm", {"name": "broken-streams-502", "type": "http_abort", "toxicity": 0.5,
                       "attributes": {"status": 502, "match": {"path": "/api/paas/v4/chat/completions",
                                                               "body": {"stream": True}}}}),
         {"no-critical"})]),
    "v8": ("v8-all-criteria.json", [
        ("150 ms on every Redis reply", REDIS_150MS, {"redis-fast", "all"}),
        ("MCP tools/call answers 500 at toxicity 0.3", MCP_500, {"tools", "no-critical", "all"}),
        ("the GLM workflow without retries", NO_RETRIES, {"glm-recovers", "all"})]),
}


class RunResult:
    def __init__(self, drill, variant, seed):
        self.drill, self.variant, self.seed = drill, variant, seed
        self.rc = None
        self.report = None
        self.output = ""
        self.state = None  # (enabled by proxy, toxic names by proxy) after the drill
        self.error = None  # why the run could not be judged at all
        self.seconds = 0.0

    def describe(self):
        lines = [f"{self.drill} [{self.variant}] seed {self.seed}: exit {self.rc}"]
        if self.error:
            lines.append(f"  error: {self.error}")
        if self.report:
            r = self.report
            lines.append(f"  status {r.get('status')}, deviated {r.get('deviated')}, result {r.get('result')}, "
                         f"reason {r.get('reason')!r}")
            for v in r.get("verdicts", []):
                lines.append(f"  {'PASS' if v.get('passed') else 'FAIL'} {v.get('name')}: {v.get('summary')}"
                             + "".join(f"\n      - {f}" for f in v.get("failures", [])))
        lines.append("  output: " + self.output[-3000:])
        return "\n".join(lines)


def run_one(drill, variant, seed, defect):
    """Serves default.json with --seed, puts the defect in place, runs the drill with --seed."""
    file = os.path.join(DRILLS_DIR, DRILLS[drill][0])
    res = RunResult(drill, variant, seed)
    began = time.monotonic()
    tmp = tempfile.mkdtemp(prefix=f"faultline-drill-{drill}-")
    try:
        serve_env = {k: "" for k in os.environ if k.startswith("FAULTLINE_") and k.endswith(("_PORT", "_HOST"))}
        serve_env.update(FREE_PORTS)
        with Faultline("--config", DEFAULT_PROFILE, "--seed", str(seed), env=serve_env) as fl:
            _, proxies, _ = fl.request("GET", "/proxies")
            a = {n: p["listen"] for n, p in proxies.items()}
            env = {k: v for k, v in os.environ.items() if k not in DRILL_VARS}
            env.update(FAULTLINE_URL=fl.url, MCP_URL=f"http://{a['mcp']}/mcp", KIMI_URL=f"http://{a['kimi']}/v1",
                       GLM_URL=f"http://{a['glm']}/api/paas/v4", REDIS_ADDR=a["redis"], JOURNALS_DIR=JOURNALS,
                       PYTHON=sys.executable, LLM_FALLBACK_CLIENT=os.path.join(DRILLS_DIR, "llm_fallback.py"),
                       LLM_WORKFLOW_CLIENT=os.path.join(DRILLS_DIR, "llm_workflow.py"), LLM_WORKFLOW_RETRIES="3")
            if defect is not None:
                env.update(defect(fl, tmp))
            report = os.path.join(tmp, "report.json")
            try:
                r = subprocess.run([BIN, "drill", file, "--seed", str(seed), "--no-progress", "--report-json", report],
                                   capture_output=True, text=True, timeout=DRILL_TIMEOUT, env=env, cwd=ROOT)
                res.rc, res.output = r.returncode, r.stdout + r.stderr
            except subprocess.TimeoutExpired as e:
                res.error = f"the drill did not end within {DRILL_TIMEOUT} s"
                res.output = (e.stdout or b"").decode("utf-8", "replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            if os.path.exists(report):
                with open(report) as f:
                    res.report = json.load(f)
            elif not res.error:
                res.error = "the drill wrote no report"
            _, proxies, _ = fl.request("GET", "/proxies")
            res.state = ({n: p["enabled"] for n, p in proxies.items()},
                         {n: sorted(t["name"] for t in p["toxics"]) for n, p in proxies.items()})
    except Exception as e:  # reported by the test of this drill, never dropped
        res.error = f"{type(e).__name__}: {e}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        res.seconds = time.monotonic() - began
    return res


class ShippedDrills(unittest.TestCase):
    results = {}  # drill -> [RunResult]

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(BIN):
            raise RuntimeError(f"{BIN} not found: run ./dev build")
        jobs = []
        for seed in SEEDS:  # seed-major, so the JOBS running at once are different drills
            for drill, (_, broken) in DRILLS.items():
                jobs.append((drill, "recovering", seed, None))
                for variant, defect, _ in broken:
                    jobs.append((drill, variant, seed, defect))
        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=JOBS) as pool:
            for res in pool.map(lambda j: run_one(*j), jobs):
                cls.results.setdefault(res.drill, []).append(res)
        cls.wall = time.monotonic() - began
        print(f"\nshipped drills: {len(jobs)} runs, {JOBS} at a time, {cls.wall:.0f} s", file=sys.stderr)

    def check_state(self, res, leaves):
        enabled, toxics = res.state
        disabled = sorted(n for n, e in enabled.items() if not e)
        self.assertEqual(disabled, sorted(leaves.get("disabled", [])), "proxies left disabled\n" + res.describe())
        left = {n: t for n, t in toxics.items() if t}
        self.assertEqual(left, leaves.get("toxics", {}), "faults left behind\n" + res.describe())

    def judge(self, drill):
        file, broken = DRILLS[drill]
        runs = self.results.get(drill, [])
        self.assertEqual(len(runs), len(SEEDS) * (1 + len(broken)), f"runs of {drill}")
        recovering = [r for r in runs if r.variant == "recovering"]
        rec_ok = brk_ok = 0
        per_variant = {}
        problems = []
        for res in runs:
            expected = next((e for v, _, e in broken if v == res.variant), None)
            try:
                self.assertIsNone(res.error, res.describe())
                self.assertIsNotNone(res.report, res.describe())
                verdicts = res.report["verdicts"]
                self.assertTrue(verdicts, res.describe())
                if expected is None:
                    self.assertEqual(res.rc, 0, res.describe())
                    self.assertEqual(res.report["result"], "pass", res.describe())
                    self.assertTrue(all(v["passed"] for v in verdicts), res.describe())
                    self.check_state(res, {})
                    rec_ok += 1
                else:
                    self.assertEqual(res.rc, 1, res.describe())
                    self.assertEqual((res.report["status"], res.report["deviated"], res.report["result"]),
                                     ("completed", False, "fail"), res.describe())
                    failed = {v["name"] for v in verdicts if not v["passed"]}
                    self.assertTrue(expected <= failed, f"expected {sorted(expected)} to fail\n" + res.describe())
                    criterion = f"V.{drill[1]}"
                    self.assertTrue(any(v.get("criterion") == criterion for v in verdicts if not v["passed"]),
                                    f"no {criterion} verdict failed\n" + res.describe())
                    for v in verdicts:
                        if not v["passed"]:
                            self.assertTrue(v.get("failures"), f"{v['name']} failed without a reason\n" + res.describe())
                    defect = next(d for v, d, _ in broken if v == res.variant)
                    self.check_state(res, defect.leaves)
                    brk_ok += 1
                    per_variant[res.variant] = per_variant.get(res.variant, 0) + 1
            except AssertionError as e:
                problems.append(str(e))
        n_broken = len(runs) - len(recovering)
        line = f"drill {drill}: recovering passed {rec_ok}/{len(recovering)}, broken failed {brk_ok}/{n_broken}"
        if len(broken) > 1:
            line += " (" + "; ".join(f"{v}: {per_variant.get(v, 0)}/{len(SEEDS)}" for v, _, _ in broken) + ")"
        line += f" [{max(r.seconds for r in runs):.1f} s per run at most]"
        print("\n" + line, file=sys.stderr)
        if problems:
            self.fail(f"{line}\n\n" + "\n\n".join(problems))

    def test_v1_critical_tools(self):
        self.judge("v1")

    def test_v2_error_recovery(self):
        self.judge("v2")

    def test_v3_concurrent_calls(self):
        self.judge("v3")

    def test_v4_redis_latency(self):
        self.judge("v4")

    def test_v5_failover(self):
        self.judge("v5")

    def test_v6_security_under_load(self):
        self.judge("v6")

    def test_v7_no_critical_errors(self):
        self.judge("v7")

    def test_v8_all_criteria(self):
        self.judge("v8")


if __name__ == "__main__":
    unittest.main()
