#!/usr/bin/env python3
"""Re-makes the stand-in journals in profiles/journals/ (what profiles/default.json replays).

    python3 profiles/journals/make.py [--faultline build/faultline] [--only kimi,glm,...]

It starts local stand-ins for the seed stack — redis-server (with a fake password), an
OpenAI-compatible provider as Kimi and as GLM, a Redis Commander page and an MCP server from the
official SDK (mcp_standin.mjs) — puts a faultline in front of each (the proxies of
profiles/default.json, on free ports), records each proxy into its own directory through
`POST /recordings`, and drives a small, realistic session through it. Everything is on
127.0.0.1; no real key exists anywhere (the providers get `sk-faultline-FAKE-…`, which redaction
replaces in the journal anyway). Needs redis-server and node with tests/integration/node_modules
(./dev setup).

The answers are deterministic; a re-made journal differs from the committed one in its
timestamps, recording ids and client ports only.
"""
import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import standins  # noqa: E402

FAKE_KEY = "sk-faultline-FAKE-0000000000000000"  # not a key to anything; redacted on record
REDIS_PASSWORD = "faultline-fake-redis-password"
THREAD = "thread:7f3a9c2e-4b1d-4e8a-9a57-0c2d51e8b6f1"
ALL = ["redis", "kimi", "glm", "redis-commander", "mcp"]


def die(msg):
    sys.exit(f"make.py: {msg}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, what, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    die(f"{what} did not come up within {timeout} s")


class Api:
    def __init__(self, base):
        self.base = base

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


# --- sessions, one per stand-in ------------------------------------------------------------

def resp_command(sock, *args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    sock.sendall(out)
    buf = b""
    # Replies here are one line, or a bulk string: read until the whole reply is in.
    while True:
        buf += sock.recv(65536)
        if buf.startswith(b"$") and b"\r\n" in buf:
            n = int(buf[1:buf.index(b"\r\n")])
            if n < 0 or len(buf) >= buf.index(b"\r\n") + 2 + n + 2:
                return buf
        elif buf.endswith(b"\r\n"):
            return buf


def session_redis(addr):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        # What the seed stack's MCP server does with Redis: AUTH, the health check's key,
        # conversation threads with a 3 h TTL, a miss.
        for cmd in (["AUTH", REDIS_PASSWORD], ["PING"],
                    ["SET", "__health_check_test__", "ok", "EX", "5"], ["GET", "__health_check_test__"],
                    ["SETEX", THREAD, "10800", json.dumps({"turns": [{"role": "user", "content": "Summarise the incident"},
                                                                     {"role": "assistant", "content": "Redis answered slowly"}]},
                                                          separators=(",", ":"))],
                    ["GET", THREAD], ["GET", "thread:00000000-0000-0000-0000-000000000000"],
                    ["EXPIRE", THREAD, "10800"], ["DBSIZE"], ["PING"]):
            reply = resp_command(s, *cmd)
            if reply.startswith(b"-"):
                die(f"redis stand-in refused {cmd[0]}: {reply!r}")


def session_provider(addr, prefix, models, stream_model):
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    auth = {"Authorization": f"Bearer {FAKE_KEY}", "Content-Type": "application/json"}

    def post(body, headers=auth, expect=200):
        conn.request("POST", prefix + "/chat/completions", json.dumps(body), headers)
        r = conn.getresponse()
        r.read()
        if r.status != expect:
            die(f"{addr}{prefix}: expected {expect}, got {r.status}")

    conn.request("GET", prefix + "/models", headers=auth)
    r = conn.getresponse()
    r.read()
    post({"model": models[0], "messages": [{"role": "system", "content": "You are a concise assistant."},
                                           {"role": "user", "content": "Say hello"}], "temperature": 0.3})
    post({"model": stream_model, "stream": True,
          "messages": [{"role": "user", "content": "Explain a circuit breaker in one sentence"}]})
    post({"model": models[0], "messages": [{"role": "user", "content": "What is 2+2?"}]})
    # No key: the provider's 401 (a security check in the V.6 drill replays this one).
    post({"model": models[0], "messages": [{"role": "user", "content": "Who am I?"}]},
         headers={"Content-Type": "application/json"}, expect=401)
    conn.close()


def session_commander(addr):
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/")  # its compose healthcheck: wget --spider http://127.0.0.1:8081
    r = conn.getresponse()
    r.read()
    if r.status != 200:
        die(f"redis-commander stand-in answered {r.status}")
    conn.close()


# --- the run --------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faultline", default=os.environ.get("FAULTLINE_BIN") or os.path.join(ROOT, "build", "faultline"))
    ap.add_argument("--only", default=",".join(ALL), help="comma-separated subset of " + ",".join(ALL))
    ap.add_argument("--out", default=HERE, help="where the journal directories go (default: next to this script)")
    args = ap.parse_args()
    only = [n for n in args.only.split(",") if n]
    for n in only:
        if n not in ALL:
            die(f"--only: unknown stand-in {n!r} (known: {', '.join(ALL)})")
    if not os.access(args.faultline, os.X_OK):
        die(f"no faultline binary at {args.faultline} (./dev build, or --faultline PATH)")

    tmp = tempfile.mkdtemp(prefix="faultline-journals-")
    procs = []
    try:
        upstreams = {}
        if "redis" in only:
            redis_bin = shutil.which("redis-server") or die("redis-server not found (./dev setup installs it)")
            port = free_port()
            procs.append(subprocess.Popen([redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                           "--appendonly", "no", "--dir", tmp, "--requirepass", REDIS_PASSWORD],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, "redis-server")
            upstreams["redis"] = f"127.0.0.1:{port}"
        for kind in ("kimi", "glm", "redis-commander"):
            if kind in only:
                _, upstreams[kind] = standins.start(kind)
        if "mcp" in only:
            node = shutil.which("node") or die("node not found (./dev setup installs it)")
            p = subprocess.Popen([node, os.path.join(HERE, "mcp_standin.mjs"), "serve"],
                                 stdout=subprocess.PIPE, text=True)
            procs.append(p)
            line = p.stdout.readline().strip()
            if not line.startswith("listening "):
                die(f"the MCP stand-in did not start (printed {line!r})")
            upstreams["mcp"] = line.split(" ", 1)[1]

        protocols = {"redis": "resp", "kimi": "http", "glm": "http", "redis-commander": "http", "mcp": "mcp"}
        config = {"proxies": [{"name": n, "listen": "127.0.0.1:0", "upstream": upstreams[n], "protocol": protocols[n]}
                              for n in only]}
        config_path = os.path.join(tmp, "record.json")
        with open(config_path, "w") as f:
            json.dump(config, f)
        port_file = os.path.join(tmp, "api.addr")
        fl = subprocess.Popen([args.faultline, "serve", "--host", "127.0.0.1", "--port", "0", "--port-file", port_file,
                               "--config", config_path, "--seed", "1"],
                              stdout=open(os.path.join(tmp, "serve.log"), "w"), stderr=subprocess.STDOUT)
        procs.append(fl)
        wait_for(lambda: os.path.exists(port_file) and open(port_file).read().strip(), "faultline serve")
        api = Api("http://" + open(port_file).read().strip())
        status, proxies = api.call("GET", "/proxies")
        listen = {n: proxies[n]["listen"] for n in only}

        for name in only:
            out_dir = os.path.join(args.out, name)
            shutil.rmtree(out_dir, ignore_errors=True)
            status, body = api.call("POST", "/recordings", {"id": f"standin-{name}", "proxies": [name], "dir": out_dir})
            if status != 201:
                die(f"POST /recordings for {name}: {status} {body}")
            if name == "redis":
                session_redis(listen[name])
            elif name == "kimi":
                session_provider(listen[name], "/v1", standins.PROVIDERS["kimi"][2], "kimi-k2-turbo-preview")
            elif name == "glm":
                session_provider(listen[name], "/api/paas/v4", standins.PROVIDERS["glm"][2], "glm-4.6")
            elif name == "redis-commander":
                session_commander(listen[name])
            elif name == "mcp":
                subprocess.run([shutil.which("node"), os.path.join(HERE, "mcp_standin.mjs"), "drive",
                                f"http://{listen[name]}/mcp"], check=True, timeout=60)
            time.sleep(0.2)  # let the last connection's close reach the recording
            status, body = api.call("DELETE", f"/recordings/standin-{name}")
            if status != 200 or body.get("state") != "stopped":
                die(f"stopping the {name} recording: {status} {body}")
            size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out_dir) for f in fs)
            print(f"make.py: {name}: {body['connections']} connections, {body['events']} events, "
                  f"{size} bytes in {os.path.relpath(out_dir, ROOT)}")
        # The fake key must not have reached any journal (redaction at record time).
        for name in only:
            for d, _, fs in os.walk(os.path.join(args.out, name)):
                for f in fs:
                    with open(os.path.join(d, f), "rb") as fh:
                        text = fh.read()
                    if FAKE_KEY.encode() in text or REDIS_PASSWORD.encode() in text:
                        die(f"{os.path.join(d, f)} holds a secret in clear: redaction did not run")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
