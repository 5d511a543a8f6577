#!/usr/bin/env python3
"""A small LLM client with a provider fallback, for the V.5 failover drill (v5-failover.json).

It plays the part of the app's provider layer: chat completions go to the primary provider
(Kimi) until it fails `--fail-max` times in a row (a connection error, a timeout, a 429 or a
5xx), then a circuit breaker opens and calls go to the backup (GLM) for `--reset` seconds, as
the seed stack's breakers do (Kimi 4 failures / 120 s). Against your own stack, drive the app
instead and keep the drill's failover verdict: it reads faultline's counters, not this script.

Stdout: one JSON line per call, as it ends, for a drill's `command` probe with `"steps": true`
(docs/drills.md): {"start": unix_seconds, "end": unix_seconds, "ok": bool, "status": int,
"detail": str}, `status` being the last answer's HTTP status (0: no answer) and `detail` who
answered ("primary 200", "backup 200 after primary ConnectionRefusedError: ..."). A summary line goes to
stderr.

Exit 0 when at least --min-ok of the calls got a 200 from someone, else 1.
Only the standard library (and llm_workflow.py beside it); every call and the whole run are bounded in time.
"""
import argparse
import json
import sys
import time

from llm_workflow import attempt  # the V.2 workflow's chat-completion call (this script's folder)


def call(base_url, model, timeout):
    """One chat completion: (status, why); status None when nothing answered."""
    status, _, text = attempt(base_url, "sk-faultline-FAKE-drill", model, "What is 2+2?", timeout)
    return (status, str(status)) if status else (None, text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--primary", required=True, help="base URL, e.g. http://127.0.0.1:18080/v1")
    ap.add_argument("--primary-model", default="kimi-k2-0905-preview")
    ap.add_argument("--backup", required=True, help="base URL, e.g. http://127.0.0.1:18081/api/paas/v4")
    ap.add_argument("--backup-model", default="glm-4.5-flash")
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--rate", type=float, default=20, help="calls per second")
    ap.add_argument("--fail-max", type=int, default=2)
    ap.add_argument("--reset", type=float, default=120)
    ap.add_argument("--timeout", type=float, default=2)
    ap.add_argument("--min-ok", type=float, default=0.75)
    a = ap.parse_args()

    start = time.monotonic()
    calls = ok = failures_in_row = on_backup = 0
    open_until = 0.0
    while time.monotonic() - start < a.duration:
        due = start + calls / a.rate
        time.sleep(max(0.0, due - time.monotonic()))
        calls += 1
        now = time.monotonic()
        began = time.time()
        if now < open_until:
            status, why = call(a.backup, a.backup_model, a.timeout)
            on_backup += 1
            detail = f"backup {why} (breaker open)"
        else:
            status, why = call(a.primary, a.primary_model, a.timeout)
            detail = f"primary {why}"
            if status is None or status == 429 or status >= 500:
                failures_in_row += 1
                if failures_in_row >= a.fail_max:
                    open_until = now + a.reset
                    failures_in_row = 0
                # The app retries a failed call on the backup at once.
                status, why_b = call(a.backup, a.backup_model, a.timeout)
                on_backup += 1
                detail = f"backup {why_b} after primary {why}"
            else:
                failures_in_row = 0
        ok += status == 200
        print(json.dumps({"start": began, "end": time.time(), "ok": status == 200, "status": status or 0,
                          "detail": detail}), flush=True)
    ratio = ok / calls if calls else 0.0
    print(f"llm_fallback: {calls} calls, {ok} answered ({ratio:.0%}), {on_backup} on the backup", file=sys.stderr)
    return 0 if ratio >= a.min_ok else 1


if __name__ == "__main__":
    sys.exit(main())
