"""V.2 with the `openai` npm client against a stand-in provider replayed from a journal.

1. A small OpenAI-compatible stub (POST /v1/chat/completions: SSE with "stream": true, JSON
   otherwise) is recorded through `faultline serve --record` while the workflow
   (tests/integration/node/openai_agent.mjs, the openai v4 client) runs one streaming and
   one plain step. The stub is then stopped: nothing but the journal is left.
2. `faultline replay server` serves the journal; a faultline `http` proxy "llm" sits in
   front. Identical requests are answered from the recorded queue and, once it is exhausted,
   with the last recorded answer again: that is what lets a client retry.
3. A drill drives the workflow (a `load` of GET /step/{i} on the agent, which calls the
   provider through "llm") and injects, one after the other, `http_abort` 429 with
   Retry-After, `http_abort` 503, and `sse_cut` after 3 events, each for 1.2 s at
   toxicity 1. Its `error_recovery` verdict (V.2) wants every step from the first 429 on
   to succeed, the first within 6 s.
   - retries on (openai maxRetries 4, the workflow re-running a step whose stream broke):
     passes, and faultline counted more requests than steps (the retries happened);
   - retries off: fails (exit 1), steps failed under each fault, no extra requests.

Loopback only, port 0 / free ports, bounded waits.
Run standalone: python3 tests/integration/test_openai_recovery.py
"""
import http.client
import http.server
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Faultline, ManagedProcess, ReplayServer, need, need_node_package  # noqa: E402
from test_drill import TempDir, run_drill  # noqa: E402

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")
AGENT = os.path.join(NODE_DIR, "openai_agent.mjs")
PIECES = ["Hello", ",", " this", " is", " a", " replayed", " answer", "!"]
FULL_TEXT = "".join(PIECES)
FAULT_SECONDS = 1.2


class StubProvider(http.server.BaseHTTPRequestHandler):
    """OpenAI-compatible chat completions: SSE (chunked, 10 ms between events) or JSON."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path != "/v1/chat/completions":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i, piece in enumerate(PIECES):
                chunk = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 1700000000,
                         "model": "stub-model",
                         "choices": [{"index": 0, "delta": {"content": piece},
                                      "finish_reason": "stop" if i == len(PIECES) - 1 else None}]}
                self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())
                time.sleep(0.01)
            self._chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        answer = json.dumps({"id": "chatcmpl-stub", "object": "chat.completion", "created": 1700000000,
                             "model": "stub-model",
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": FULL_TEXT},
                                          "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 3, "completion_tokens": 8, "total_tokens": 11}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def log_message(self, *args):
        pass


class Agent(ManagedProcess):
    """openai_agent.mjs listening on a free port; GET /step/N runs a workflow step."""

    def __init__(self, base_url, retries):
        need("node", "nodejs")
        self.tmp = tempfile.mkdtemp(prefix="faultline-openai-agent-")
        port_file = os.path.join(self.tmp, "agent.addr")
        self._launch(["node", AGENT, base_url, FULL_TEXT, "--retries", retries, port_file], None, port_file,
                     "openai_agent.mjs", timeout=20)

    def get(self, path):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, json.loads(r.read() or b"null")
        finally:
            conn.close()


def record_provider(tmp):
    """Records one streaming and one plain step against the stub; returns the recording dir."""
    rec = os.path.join(tmp, "rec")
    stub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StubProvider)
    stub.daemon_threads = True
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    try:
        with Faultline("--record", rec) as fl:
            proxy = fl.create_proxy("llm-rec", f"127.0.0.1:{stub.server_address[1]}", protocol="http")
            with Agent(f"http://{proxy['listen']}/v1", "off") as agent:
                for n in (0, 1):
                    status, r = agent.get(f"/step/{n}")
                    if status != 200:
                        raise AssertionError(f"recording step {n} failed: {r}")
            # The journal writer flushes every few ms; stopping faultline closes the recording.
            fl.stop()
    finally:
        stub.shutdown()
        stub.server_close()
    return rec


def recovery_drill(fl, agent):
    def fault(name, toxic_type, attributes, before):
        return {"type": "action", "name": name, "pauses": {"before": before},
                "provider": {"type": "toxic.add", "proxy": "llm", "duration": FAULT_SECONDS,
                             "toxic": {"name": name, "type": toxic_type, "toxicity": 1,
                                       "attributes": attributes}}}
    return {
        "title": "an openai workflow rides out 429, 503 and a cut stream from a replayed provider",
        "configuration": {"faultline_url": fl.url},
        "method": [
            {"type": "action", "name": "workflow", "background": True,
             "provider": {"type": "load", "duration": 11, "concurrency": 1, "rate": 5,
                          "target": {"type": "http", "url": f"http://127.0.0.1:{agent.port}/step/{{i}}",
                                     "timeout": 25},
                          "success": 200}},
            fault("abort-429", "http_abort", {"status": 429, "headers": {"Retry-After": "1"},
                                             "body": {"error": {"message": "Rate limit reached", "type": "requests"}}},
                  1),
            # 2 s apart, so a step's retries from one fault are over before the next one.
            fault("abort-503", "http_abort", {"status": 503}, 2),
            fault("cut-stream", "sse_cut", {"after_events": 3, "mode": "close"}, 2),
        ],
        "rollbacks": [
            {"type": "action", "name": f"remove-{n}", "provider": {"type": "toxic.remove", "proxy": "llm", "toxic": n}}
            for n in ("abort-429", "abort-503", "cut-stream")
        ],
        "verdicts": [
            {"type": "error_recovery", "name": "workflow-recovers", "criterion": "V.2", "source": "workflow",
             # 1.2 s of 429s, then the client's Retry-After (1 s) or 5xx backoff (0.5, 1, 2 s).
             # At its defaults: every step must succeed, and the faults must have acted by
             # faultline's own count (the client hides them when it retries).
             "after": "abort-429", "fault": ["abort-429", "abort-503", "cut-stream"], "within": 6,
             "retries": {"proxy": "llm", "max": 200}},
        ],
    }


class OpenAIReplayedProviderRecoveryTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        need_node_package("openai")
        cls.tmp = tempfile.mkdtemp(prefix="faultline-openai-")
        cls.rec = record_provider(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_workflow(self, retries):
        """The drill with the agent's retries on or off; returns (run, agent stats, replay log)."""
        with TempDir() as tmp:
            replay = ReplayServer("--journal", self.rec)
            try:
                with Faultline() as fl:
                    proxy = fl.create_proxy("llm", replay.address, protocol="http")
                    with Agent(f"http://{proxy['listen']}/v1", retries) as agent:
                        # The stand-in answers both kinds of step before anything is broken.
                        for n in (0, 1):
                            status, r = agent.get(f"/step/{n}")
                            self.assertEqual(status, 200, r)
                        run = run_drill(tmp, recovery_drill(fl, agent), timeout=120)
                        stats = agent.get("/stats")[1]
            finally:
                replay_log = replay.finish()
        return run, stats, replay_log

    def test_retries_on_the_workflow_recovers(self):
        run, stats, replay_log = self.run_workflow("on")
        v = run.verdict("workflow-recovers")
        self.assertEqual(run.rc, 0, f"{run.out}\n{replay_log}")
        self.assertTrue(v["passed"], v)
        load = run.report["loads"]["workflow"]
        self.assertEqual(load["ok"], load["calls"], load)
        self.assertGreaterEqual(load["calls"], 20, load)
        # The faults bit and were ridden out by retries: faultline saw more requests than steps
        # (the client's retries of 429/503), and the workflow re-ran steps whose stream broke.
        self.assertGreater(v["measured"]["retries"], 0, v)
        # faultline answered requests with 429 and 503 and cut streams: the faults bit, though
        # every step succeeded.
        self.assertGreater(v["measured"]["fault_messages"], 0, v)
        self.assertGreater(stats["step_retries"], 0, stats)
        self.assertLessEqual(v["measured"]["time_to_first_success_s"], 6, v)
        # Two exchanges were recorded; every step and retry was answered from them (the queue
        # of an identical request reuses its last answer once exhausted).
        served = re.search(r"served (\d+), unmatched 0", replay_log)
        self.assertTrue(served, replay_log)
        self.assertGreaterEqual(int(served.group(1)), load["calls"] + 2, replay_log)
        print(f"\n  openai retries on: {load['calls']} steps all ok, {int(v['measured']['retries'])} requests beyond one per step, "
              f"{stats['step_retries']} step re-runs", file=sys.stderr)

    def test_retries_off_the_verdict_fails(self):
        run, stats, replay_log = self.run_workflow("off")
        v = run.verdict("workflow-recovers")
        self.assertEqual(run.rc, 1, run.out)
        self.assertEqual(run.report["result"], "fail")
        self.assertFalse(v["passed"], v)
        load = run.report["loads"]["workflow"]
        self.assertLess(load["ok"], load["calls"], load)
        self.assertEqual(v["measured"]["retries"], 0, v)
        self.assertTrue(any("steps failed" in f for f in v["failures"]), v)
        self.assertEqual(stats["step_retries"], 0, stats)
        # Every fault made steps fail: the 429, the 503 and the cut stream.
        self.assertEqual(set(stats["failures"]), {"429", "503", "stream"}, stats)
        self.assertIn("unmatched 0", replay_log)
        print(f"\n  openai retries off: {load['calls'] - load['ok']} of {load['calls']} steps failed", file=sys.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
