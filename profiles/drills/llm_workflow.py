#!/usr/bin/env python3
"""A stand-in app workflow for the V.2 error-recovery drill (v2-error-recovery.json) and V.8.

It plays the part of the app's LLM step: one chat completion per step, `--rate` steps a second
for `--duration` seconds (step i is due at start + i/rate, run on a free worker), each step
retried up to `--retries` times the way a careful client does: a 429 waits what its
`Retry-After` says (at most `--max-wait` s; without the header, as for a 5xx), a 5xx, a
connection error or a timeout backs off 0.25 s, 0.5 s, 1 s, ... (at most `--max-wait` s). Other
answers are final: a 2xx with a JSON body is a success, a 4xx other than 429 a failure.

Stdout: ONE JSON LINE PER STEP, as the step ends (a drill's `command` probe with
`"steps": true` reads them, docs/drills.md):
  {"start": unix_seconds, "end": unix_seconds, "ok": bool, "status": int, "detail": str}
`status` is the last answer's HTTP status (0: no answer); `detail` says how many retries the
step took, or why it failed ("429: {"error":...}" with the start of the body). A summary line
goes to stderr. With `--retries 0` it is the same workflow without retries: the broken client
the drill must catch.

Exit 0 when every step succeeded, 1 when one failed, 2 on bad arguments.
Only the standard library; every attempt, every wait and the whole run are bounded in time.
"""
import argparse
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor


def attempt(url, key, model, prompt, timeout):
    """One POST {url}/chat/completions: (status, headers, body text); status 0 if no answer."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}]})
    try:
        conn.request("POST", u.path.rstrip("/") + "/chat/completions", body,
                     {"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
        r = conn.getresponse()
        text = r.read(65536).decode("utf-8", "replace")
        return r.status, {k.lower(): v for k, v in r.getheaders()}, text
    except (OSError, http.client.HTTPException) as e:
        return 0, {}, f"{type(e).__name__}: {e}"
    finally:
        conn.close()


def retry_after(headers):
    """Seconds from a Retry-After header in seconds form, or None."""
    try:
        v = float(headers.get("retry-after", ""))
        return v if v >= 0 else None
    except ValueError:
        return None


def answered(status, text):
    if not 200 <= status < 300:
        return False
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def step(a):
    start = time.time()
    retries = 0
    while True:
        status, headers, text = attempt(a.url, a.key, a.model, a.prompt, a.timeout)
        if answered(status, text):
            detail = f"{status}" + (f" after {retries} retr{'y' if retries == 1 else 'ies'}" if retries else "")
            return {"start": start, "end": time.time(), "ok": True, "status": status, "detail": detail}, retries
        transient = status == 0 or status == 429 or status >= 500
        why = (f"{status}: " if status else "") + " ".join(text.split())[:120]
        if not transient or retries >= a.retries:
            if transient and a.retries:
                why = f"gave up after {retries} retr{'y' if retries == 1 else 'ies'}: " + why
            return {"start": start, "end": time.time(), "ok": False, "status": status, "detail": why}, retries
        wait = retry_after(headers) if status == 429 else None
        if wait is None:
            wait = 0.25 * 2 ** retries
        time.sleep(min(wait, a.max_wait))
        retries += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="the provider's base URL, e.g. http://127.0.0.1:18080/v1")
    ap.add_argument("--model", default="kimi-k2-0905-preview")
    ap.add_argument("--prompt", default="What is 2+2?")
    ap.add_argument("--key", default="sk-faultline-FAKE-drill", help="the bearer key sent")
    ap.add_argument("--rate", type=float, default=10, help="steps per second")
    ap.add_argument("--duration", type=float, default=5, help="seconds during which steps start")
    ap.add_argument("--retries", type=int, default=None, help="retries per step (default $LLM_WORKFLOW_RETRIES, else 3)")
    ap.add_argument("--timeout", type=float, default=3, help="seconds per attempt")
    ap.add_argument("--max-wait", type=float, default=5, help="longest wait before a retry (s)")
    ap.add_argument("--concurrency", type=int, default=32, help="steps in flight at most")
    a = ap.parse_args()
    if a.retries is None:
        try:
            a.retries = int(os.environ.get("LLM_WORKFLOW_RETRIES") or 3)
        except ValueError:
            ap.error(f"LLM_WORKFLOW_RETRIES must be an integer, got {os.environ['LLM_WORKFLOW_RETRIES']!r}")
    if a.rate <= 0 or a.duration <= 0 or a.retries < 0 or a.retries > 20 or a.timeout <= 0 or a.max_wait < 0 \
            or not 1 <= a.concurrency <= 256:
        ap.error("need rate > 0, duration > 0, 0 <= retries <= 20, timeout > 0, max-wait >= 0, 1 <= concurrency <= 256")
    u = urllib.parse.urlsplit(a.url)
    if u.scheme != "http" or not u.hostname:
        ap.error(f"--url must be http://HOST:PORT/PATH, got {a.url!r}")

    lock = threading.Lock()
    results = []
    retried = [0]

    def run_one():
        try:
            s, retries = step(a)
        except Exception as e:  # a bug here must show as a failed step, not vanish in a thread
            s, retries = {"start": time.time(), "end": time.time(), "ok": False, "status": 0,
                          "detail": f"client error: {e!r}"}, 0
        with lock:
            results.append(s)
            retried[0] += retries
            sys.stdout.write(json.dumps(s) + "\n")
            sys.stdout.flush()

    begin = time.monotonic()
    count = int(a.duration * a.rate + 1e-9)
    with ThreadPoolExecutor(max_workers=a.concurrency) as pool:
        for i in range(count):
            time.sleep(max(0.0, begin + i / a.rate - time.monotonic()))
            pool.submit(run_one)
    ok = sum(1 for s in results if s["ok"])
    print(f"llm_workflow: {len(results)} steps, {ok} ok, {retried[0]} retries (--retries {a.retries})",
          file=sys.stderr)
    return 0 if ok == len(results) and results else 1


if __name__ == "__main__":
    sys.exit(main())
