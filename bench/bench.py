#!/usr/bin/env python3
"""Side-by-side benchmark: direct vs haproxy vs socat vs faultline, all on 127.0.0.1.

Two more faultline targets measure what a toxic that does nothing costs: faultline+latency0
(latency 0 ms, jitter 0 on both streams) and faultline+bandwidth (rate 100,000,000 KB/s =
100 GB/s, far above line rate, on both streams). They are extra proxies on the same faultline
server as the plain faultline target, run in the throughput and redis phases only, and are
reported as ratios to plain faultline (the bar: a toxic that does nothing costs < 10 %).

faultline+record measures what recording costs (docs/journal.md): another tcp proxy on the same
faultline server, recorded through the API (POST /recordings {"proxies": [that proxy], "dir": ...},
defaults: redaction on, 64 MiB queue, gap markers when the writer falls behind). Each of its runs
gets a fresh recording, stopped (DELETE) and deleted after the run, so disk use stays bounded; what
the recording wrote (payload bytes, journal bytes, gaps) is noted per run. It takes part in the
throughput and redis phases and is reported as ratios to plain faultline with the recorder's bars:
recording costs < 30 % of bulk throughput and < 20 % of the redis-benchmark request rate.

Two targets take part in the http phase only: faultline+http, a second proxy on the plain
faultline target's server with "protocol": "http" (HTTP/1.1-aware), and haproxy+http, HAProxy in
mode http. The http phase's upstream is HAProxy answering every request itself (200, 12-byte
text/plain body, keep-alive). Reported: faultline+http / faultline (the bar: the HTTP decoder
costs < 25 % of requests per second against the tcp proxy, i.e. a ratio >= 0.75),
faultline+http / haproxy+http and haproxy+http / haproxy.

Run it through bench/run.sh (or ./dev bench), which checks the tools, raises the fd limit and
cleans up after a crash. Metrics (median of --runs runs each, runs interleaved across targets):
  throughput   iperf3, one connection, client -t SECONDS                      (Gbit/s)
  redis        redis-benchmark -c 50 -n 200000 -t get,set                     (requests/s)
               redis-benchmark -c 1 -n 20000 -t ping_mbulk latency            (us, avg and p99)
  connections  redis-benchmark -c 50 -n 50000 -t ping_mbulk -k 0              (new connections/s)
  http         wrk -t1 -c50 -d SECONDS --latency, keep-alive GET /            (requests/s, p50, p99 us)
  memory       N idle connections through the proxy to an upstream that holds them:
               (RSS after - RSS before) / N                                   (KiB per connection)
Writes bench/results/latest.json. Stdlib only; every wait is bounded.

--targets takes target names and these shorthands (mixable, duplicates dropped):
  toxics     faultline,faultline+latency0,faultline+bandwidth   (quick iteration on toxic overhead)
  recording  faultline,faultline+record                         (what recording costs)
  all        every target
"""
import argparse
import csv
import datetime
import hashlib
import io
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LOOPBACK = "127.0.0.1"
# Faultline proxies with toxics that should not change the traffic: name -> toxics, each
# created with POST /proxies/{p}/toxics after the proxy (so each is a separate API call).
TOXIC_VARIANTS = {
    "faultline+latency0": [
        {"name": f"latency0_{stream}", "type": "latency", "stream": stream, "toxicity": 1.0,
         "attributes": {"latency": 0, "jitter": 0}}
        for stream in ("upstream", "downstream")],
    "faultline+bandwidth": [
        {"name": f"bandwidth_{stream}", "type": "bandwidth", "stream": stream, "toxicity": 1.0,
         "attributes": {"rate": 100000000}}  # KB/s: 100 GB/s
        for stream in ("upstream", "downstream")],
}
# Targets of the http phase only: a second faultline proxy (on the plain faultline target's
# server) that decodes HTTP/1.1, and HAProxy in mode http.
FAULTLINE_PROTOCOL = {"faultline+http": "http"}
HTTP_VARIANTS = ["faultline+http", "haproxy+http"]
# Faultline proxies whose traffic is recorded (docs/journal.md): a tcp proxy on the plain faultline
# target's server, with a recording covering only it, started through the API before each run
# (these options) and stopped and deleted after it.
RECORD_VARIANTS = {"faultline+record": {}}
FAULTLINE_KINDS = ["faultline"] + list(TOXIC_VARIANTS) + list(RECORD_VARIANTS) + list(FAULTLINE_PROTOCOL)
ALL_TARGETS = ["direct", "haproxy", "haproxy+http", "socat"] + FAULTLINE_KINDS
TARGET_SETS = {"toxics": ["faultline"] + list(TOXIC_VARIANTS), "recording": ["faultline"] + list(RECORD_VARIANTS),
               "all": ALL_TARGETS}
ALL_PHASES = ["throughput", "redis", "connections", "http", "memory"]
# Phases the toxic and recording variants take part in (the others skip them, shown as n/a).
VARIANT_PHASES = ["throughput", "redis"]
# Targets that take part in some phases only; the others take part in all of them.
TARGET_PHASES = {**{v: VARIANT_PHASES for v in TOXIC_VARIANTS}, **{v: VARIANT_PHASES for v in RECORD_VARIANTS},
                 **{v: ["http"] for v in HTTP_VARIANTS}}
# A toxic that does nothing may cost less than this fraction of plain faultline's figure.
TOXIC_OVERHEAD_BAR = 0.10
# What recording may cost, per graded metric (fraction of plain faultline's figure).
RECORD_OVERHEAD_BARS = {"throughput": 0.30, "redis_set": 0.20, "redis_get": 0.20}
# The http phase: wrk's threads and connections (keep-alive), and the bar for the HTTP decoder:
# faultline+http's requests/s at least this fraction of the plain (tcp) faultline proxy's.
WRK_THREADS = 1
HTTP_CONNS = 50
HTTP_DECODER_MIN_RATIO = 0.75
# What the http phase's origin answers to every request.
HTTP_BODY = b"hello world\n"


class BenchError(Exception):
    pass


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- processes

class Procs:
    """Every child runs in its own session (process group), so stopping it also stops
    anything it forked (socat's per-connection children). Group ids are appended to
    $BENCH_TMP/pids so run.sh's trap can clean up even if this script is killed hard."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.live = []
        self.pidfile = os.path.join(os.environ.get("BENCH_TMP", tmp), "pids")

    def start(self, args, name, env=None):
        logpath = os.path.join(self.tmp, f"{name}.log")
        logf = open(logpath, "ab")
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                             env=full_env, start_new_session=True)
        logf.close()
        p.logpath = logpath
        p.name = name
        self.live.append(p)
        self._record()
        return p

    def _record(self):
        with open(self.pidfile + ".new", "w") as f:
            f.write("".join(f"{p.pid}\n" for p in self.live))
        os.replace(self.pidfile + ".new", self.pidfile)

    def stop(self, p, grace=10.0):
        if p in self.live:
            self.live.remove(p)
        if p.poll() is None:
            _killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log(f"{p.name} (pid {p.pid}) ignored SIGTERM for {grace:.0f} s; killing it")
                _killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
        # The leader is gone; make sure no forked child of its group lingers.
        _killpg(p.pid, signal.SIGKILL)
        self._record()

    def stop_all(self):
        for p in list(reversed(self.live)):
            try:
                self.stop(p, grace=5.0)
            except Exception as e:  # keep cleaning the others
                log(f"could not stop {p.name}: {e}")

    def run(self, args, name, timeout):
        """Runs a command to completion; returns stdout text. Raises BenchError on failure."""
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
        self.live.append(p)
        p.name = name
        self._record()
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(p, grace=2.0)
            raise BenchError(f"{name} did not finish within {timeout:.0f} s")
        except BaseException:
            # Interrupted (SIGTERM/SIGINT raise here): stop it now, or it outlives the script
            # once it is off the pid list.
            self.stop(p, grace=2.0)
            raise
        finally:
            if p in self.live:
                self.live.remove(p)
            self._record()
        if p.returncode != 0:
            raise BenchError(f"{name} exited with {p.returncode}: {(err or out).decode(errors='replace').strip()[-500:]}")
        return out.decode(errors="replace")


def _killpg(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


# ----------------------------------------------------------------------------- helpers

def free_port():
    s = socket.socket()
    s.bind((LOOPBACK, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def listening(port):
    """True if some socket LISTENs on loopback/any at `port` (read from /proc, no connect:
    a probe connection would use up `iperf3 -s -1`)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    local, state = parts[1], parts[3]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            continue
    return False


def wait_listening(port, proc, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(port):
            return
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{proc.name} exited with {proc.returncode} before listening on {port}:\n"
                             f"{tail(proc.logpath)}")
        time.sleep(0.02)
    raise BenchError(f"nothing listens on {LOOPBACK}:{port} after {timeout:.0f} s"
                     + (f" ({proc.name}):\n{tail(proc.logpath)}" if proc else ""))


def proc_status_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise BenchError(f"no {field} in /proc/{pid}/status")


def descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def pss_tree_kib(pid):
    """Proportional set size summed over a process and all its descendants (for socat, which
    forks one process per connection: summing RSS would count shared pages thousands of times)."""
    total = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def median(values):
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


# ----------------------------------------------------------------------------- targets

class Target:
    """A way to reach an upstream port: directly or through one proxy process."""

    def __init__(self, kind, port, proc=None, api=None, proxy=None):
        self.kind, self.port, self.proc = kind, port, proc
        self.api, self.proxy = api, proxy  # faultline only: control API address, proxy name

    @property
    def pid(self):
        return self.proc.pid if self.proc else None


def write_haproxy_cfg(ctx, name, mode, sections):
    """Writes an HAProxy config (mode tcp or http, long client/server timeouts) with `sections`
    (frontends and backends) after its global and defaults sections; returns its path."""
    cfg = os.path.join(ctx.tmp, f"{name}.cfg")
    with open(cfg, "w") as f:
        f.write(f"""global
    maxconn {ctx.haproxy_maxconn}
defaults
    mode {mode}
    maxconn {ctx.haproxy_maxconn}
    timeout connect 5s
    timeout client 1h
    timeout server 1h
""" + sections)
    return cfg


def start_target(kind, upstream_port, ctx, tag):
    procs = ctx.procs
    if kind == "direct":
        return Target(kind, upstream_port)
    if kind in ("haproxy", "haproxy+http"):
        # mode http: HAProxy parses every request and answer (keep-alive on both sides, idle
        # server connections reused); mode tcp relays bytes.
        mode = "http" if kind == "haproxy+http" else "tcp"
        name = "haproxy-http" if mode == "http" else "haproxy"
        port = free_port()
        cfg = write_haproxy_cfg(ctx, f"{name}-{tag}", mode, f"""frontend fe
    bind {LOOPBACK}:{port}
    default_backend be
backend be
    server upstream {LOOPBACK}:{upstream_port}
""")
        p = procs.start(["haproxy", "-db", "-f", cfg], f"{name}-{tag}")
        wait_listening(port, p)
        return Target(kind, port, p)
    if kind == "socat":
        port = free_port()
        p = procs.start(["socat", "-b262144",
                         f"TCP-LISTEN:{port},bind={LOOPBACK},reuseaddr,fork,backlog=4096",
                         f"TCP:{LOOPBACK}:{upstream_port}"], f"socat-{tag}")
        wait_listening(port, p)
        return Target(kind, port, p)
    if kind in FAULTLINE_KINDS:
        return start_targets([kind], upstream_port, ctx, tag)[kind]
    raise BenchError(f"unknown target {kind}")


def note_faultline_build(ctx, tag):
    """Records which build of the binary a server starts from (it may be rebuilt mid-run)."""
    try:
        with open(ctx.faultline_bin, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()[:16]
        mtime = datetime.datetime.fromtimestamp(os.stat(ctx.faultline_bin).st_mtime, datetime.timezone.utc)
    except (OSError, AttributeError):
        return
    build = ctx.faultline_builds.setdefault(
        digest, {"mtime": mtime.isoformat(timespec="seconds"), "servers": []})
    build["servers"].append(tag)
    if len(ctx.faultline_builds) == 2 and len(build["servers"]) == 1:
        log(f"note: {ctx.faultline_bin} was rebuilt during the run; later faultline servers use the new build")


def start_faultline_server(ctx, tag):
    """Starts `faultline serve` with its API on a free loopback port; returns (proc, "host:port")."""
    note_faultline_build(ctx, tag)
    port_file = os.path.join(ctx.tmp, f"faultline-{tag}.addr")
    if os.path.exists(port_file):
        os.unlink(port_file)
    p = ctx.procs.start([ctx.faultline_bin, "serve", "--host", LOOPBACK, "--port", "0",
                         "--port-file", port_file] + ctx.faultline_args, f"faultline-{tag}",
                        env={"LOG_LEVEL": os.environ.get("BENCH_FAULTLINE_LOG_LEVEL", "warn")})
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise BenchError(f"faultline exited with {p.returncode}:\n{tail(p.logpath)}")
        try:
            with open(port_file) as f:
                text = f.read().strip()
            if text:
                return p, text
        except OSError:
            pass
        time.sleep(0.02)
    raise BenchError(f"faultline wrote no port file within 15 s:\n{tail(p.logpath)}")


def faultline_api(api, method, path, body=None):
    """One control API call; returns (status, parsed JSON reply). Raises BenchError on failure."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{api}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json",
                                          "User-Agent": "faultline-bench"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        raise BenchError(f"faultline {method} {path}: {e.code} {e.read().decode(errors='replace')}")
    except (OSError, ValueError) as e:
        raise BenchError(f"faultline {method} {path} failed: {e}")


def add_faultline_proxy(ctx, proc, api, name, upstream_port, toxics, protocol=None):
    """Creates a proxy (of `protocol`; None: the default, tcp), then its toxics one POST each;
    checks they are in place. Returns its port."""
    body = {"name": name, "listen": f"{LOOPBACK}:0", "upstream": f"{LOOPBACK}:{upstream_port}"}
    if protocol is not None:
        body["protocol"] = protocol
    status, reply = faultline_api(api, "POST", "/proxies", body)
    if status != 201 or "listen" not in reply:
        raise BenchError(f"faultline POST /proxies: unexpected reply {status} {reply}")
    if protocol is not None and reply.get("protocol") != protocol:
        raise BenchError(f"faultline POST /proxies: asked for protocol {protocol}, got {reply}")
    port = int(reply["listen"].rsplit(":", 1)[1])
    for toxic in toxics:
        status, reply = faultline_api(api, "POST", f"/proxies/{name}/toxics", toxic)
        if status not in (200, 201) or reply.get("name") != toxic["name"]:
            raise BenchError(f"faultline POST /proxies/{name}/toxics: unexpected reply {status} {reply}")
    _, listed = faultline_api(api, "GET", f"/proxies/{name}/toxics")
    got = sorted((t.get("name"), t.get("type"), t.get("stream")) for t in listed)
    want = sorted((t["name"], t["type"], t["stream"]) for t in toxics)
    if got != want:
        raise BenchError(f"proxy {name} has toxics {got}, expected {want}")
    wait_listening(port, proc)
    return port


def start_targets(kinds, upstream_port, ctx, tag):
    """Starts every target in `kinds`; returns {kind: Target} in the same order. All faultline
    kinds are proxies on one shared faultline server (one process), each with its own toxics
    (or protocol)."""
    out = {}
    server = None
    try:
        for kind in kinds:
            if kind in FAULTLINE_KINDS:
                if server is None:
                    server = start_faultline_server(ctx, tag)
                proc, api = server
                suffix = "" if kind == "faultline" else "_" + kind.split("+", 1)[1]
                name = f"bench_{tag}{suffix}"
                port = add_faultline_proxy(ctx, proc, api, name, upstream_port, TOXIC_VARIANTS.get(kind, []),
                                           FAULTLINE_PROTOCOL.get(kind))
                out[kind] = Target(kind, port, proc, api, name)
            else:
                out[kind] = start_target(kind, upstream_port, ctx, tag)
        return out
    except BaseException:
        stop_targets(ctx, out.values())
        if server is not None and server[0] not in {t.proc for t in out.values()}:
            ctx.procs.stop(server[0])
        raise


def note_toxics_applied(results, targets, phase):
    """Reads the server's per-toxic counters after a phase and notes, per variant and toxic, the
    connection directions it applied to and the bytes it handled, so a variant whose toxics did
    not engage (which would make its numbers meaningless) is visible. Never fails the phase."""
    per = {}
    for kind, t in targets.items():
        if kind not in TOXIC_VARIANTS or t.api is None:
            continue
        try:
            req = urllib.request.Request(f"http://{t.api}/metrics", headers={"User-Agent": "faultline-bench"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                text = resp.read().decode(errors="replace")
        except OSError as e:
            log(f"could not read faultline /metrics after the {phase} phase: {e}")
            continue
        counts = {}
        for line in text.splitlines():
            for metric, field in (("faultline_toxic_connections_total", "connections"),
                                  ("faultline_toxic_bytes_delayed_total", "bytes")):
                if line.startswith(metric + "{") and f'proxy="{t.proxy}"' in line:
                    toxic = line.split('toxic="', 1)[1].split('"', 1)[0]
                    try:
                        counts.setdefault(toxic, {})[field] = int(float(line.rsplit(" ", 1)[1]))
                    except ValueError:
                        pass
        per[kind] = counts
        idle = [n for n in (x["name"] for x in TOXIC_VARIANTS[kind]) if not counts.get(n, {}).get("connections")]
        if idle:
            log(f"warning: {kind}: toxics {', '.join(idle)} applied to no connection in the {phase} phase")
    if per:
        results.note(f"toxics_applied_{phase}", per)


class RecordingRun:
    """Around one run of a RECORD_VARIANTS target: starts a fresh recording of its proxy
    (POST /recordings), and afterwards stops it (DELETE), notes what it wrote and deletes its
    directory. Does nothing for other targets. A recording that cannot start fails the run."""

    def __init__(self, ctx, results, target, phase, run):
        self.ctx, self.results, self.t, self.phase, self.run = ctx, results, target, phase, run
        self.id = self.dir = None

    def __enter__(self):
        if self.t.kind not in RECORD_VARIANTS:
            return self
        self.id = f"{self.t.proxy}-{self.phase}-{self.run + 1}"
        self.dir = os.path.join(self.ctx.tmp, "recordings", self.id)
        body = {"id": self.id, "proxies": [self.t.proxy], "dir": self.dir, **RECORD_VARIANTS[self.t.kind]}
        status, reply = faultline_api(self.t.api, "POST", "/recordings", body)
        if status != 201 or reply.get("state") != "recording":
            raise BenchError(f"faultline POST /recordings: unexpected reply {status} {reply}")
        return self

    def __exit__(self, *exc):
        if self.id is None:
            return False
        try:
            if self.t.proc.poll() is None:
                _, st = faultline_api(self.t.api, "DELETE", f"/recordings/{self.id}")
                entry = {"run": self.run + 1, "state": st.get("state"), "connections": st.get("connections"),
                         "bytes_recorded": st.get("bytes"), "journal_bytes": st.get("journal_bytes"),
                         "events": st.get("events"), "journals": len(st.get("journals", [])),
                         "gap_markers": st.get("gaps", {}).get("markers"),
                         "gap_events": st.get("gaps", {}).get("events"),
                         "gap_bytes": st.get("gaps", {}).get("bytes")}
                if st.get("error"):
                    entry["error"] = st["error"]
                self.results.notes.setdefault(f"recording_{self.phase}", {}).setdefault(self.t.kind, []).append(entry)
                log(f"{self.phase} run {self.run + 1} {self.t.kind}: recorded {fmt(entry['bytes_recorded'], 0)} B "
                    f"({fmt(entry['journal_bytes'], 0)} B of journal, {entry['journals']} files), "
                    f"gaps {entry['gap_markers']} ({fmt(entry['gap_bytes'], 0)} B dropped), state {entry['state']}")
                if entry["state"] != "stopped":
                    log(f"warning: recording {self.id} ended {entry['state']}: {st.get('error')}")
        except BenchError as e:
            log(f"could not stop recording {self.id}: {e}")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
        return False


def stop_targets(ctx, targets, results=None, phase=None):
    """Stops each target's process once (faultline kinds share theirs). With `results`, first
    reports any that had already died."""
    seen = set()
    for t in targets:
        if t.proc is not None and t.proc.pid not in seen:
            seen.add(t.proc.pid)
            if results is not None and t.proc.poll() is not None:
                report_death(results, t.proc, phase)
            ctx.procs.stop(t.proc)


def stop_target(ctx, t):
    stop_targets(ctx, [t])


def exit_text(p):
    rc = p.returncode
    if rc is not None and rc < 0:
        try:
            return f"signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"signal {-rc}"
    return f"exit code {rc}"


def require_alive(t):
    """Fails a measurement at once when the target's proxy process is gone (clients facing a
    dead port can take until their timeout to give up)."""
    if t.proc is not None and t.proc.poll() is not None:
        raise BenchError(f"{t.proc.name} is not running ({exit_text(t.proc)})")


def report_death(results, p, phase):
    log(f"{p.name} (pid {p.pid}) died in the {phase} phase with {exit_text(p)}; "
        f"last lines of its log:\n{tail(p.logpath, 30)}")
    results.notes.setdefault("target_deaths", []).append(
        {"phase": phase, "process": p.name, "pid": p.pid, "exit": exit_text(p),
         "log_tail": tail(p.logpath, 30)})


def revive(ctx, results, targets, kind, upstream_port, tag, phase):
    """Returns targets[kind], first restarting its process if it died (a crash of the shared
    faultline server would otherwise fail every later run of all faultline kinds). The death,
    with the tail of the process's log, is logged and noted in the JSON."""
    t = targets[kind]
    if t.proc is None or t.proc.poll() is None:
        return t
    dead = t.proc
    report_death(results, dead, phase)
    ctx.procs.stop(dead)
    kinds = [k for k, x in targets.items() if x.proc is dead]
    n = len(results.notes["target_deaths"])
    fresh = start_targets(kinds, upstream_port, ctx, f"{tag}-restart{n}")
    for k in kinds:
        targets[k] = fresh[k]
    log(f"restarted {', '.join(kinds)}")
    return targets[kind]


def phase_targets(ctx, phase):
    """The selected targets that take part in `phase` (toxic variants only in VARIANT_PHASES,
    the http variants only in the http phase)."""
    return [k for k in ctx.targets if phase in TARGET_PHASES.get(k, ALL_PHASES)]


# ----------------------------------------------------------------------------- phases

def unique_payload(ctx):
    """A file iperf3 -F sends: AES-128-CTR over zeros, so no two chunks of the stream are alike
    (iperf3's own payload is one buffer sent over and over, which recording stores once as a
    blob). Sized for 12 Gbit/s over the run's seconds; made once per bench run."""
    path = os.path.join(ctx.tmp, "unique-bulk.bin")
    if not os.path.exists(path):
        size = (ctx.iperf_seconds + 1) * 1536 << 20
        log(f"making a {size >> 20} MiB never-repeating payload for iperf3 -F")
        subprocess.run(["bash", "-o", "pipefail", "-c",
                        'head -c "$1" /dev/zero | openssl enc -aes-128-ctr -nosalt -pbkdf2 '
                        '-pass pass:faultline-bench > "$2"', "unique-payload", str(size), path + ".tmp"],
                       check=True, timeout=300)
        os.rename(path + ".tmp", path)
    return path


def phase_throughput(ctx, results):
    up = free_port()
    secs = ctx.iperf_seconds
    payload = ["-F", unique_payload(ctx)] if ctx.unique_bulk else []
    targets = start_targets(phase_targets(ctx, "throughput"), up, ctx, "iperf")
    try:
        for run in range(ctx.runs):
            for kind in list(targets):
                t = revive(ctx, results, targets, kind, up, "iperf", "throughput")
                srv = ctx.procs.start(["iperf3", "-s", "-B", LOOPBACK, "-p", str(up), "-1"],
                                      f"iperf3-server-{kind}-{run}")
                value = None
                try:
                    wait_listening(up, srv)
                    with RecordingRun(ctx, results, t, "throughput", run):
                        out = ctx.procs.run(["iperf3", "-c", LOOPBACK, "-p", str(t.port), "-t", str(secs), "-J"]
                                            + payload,
                                            f"iperf3 client via {kind}", timeout=secs + 30)
                    data = json.loads(out)
                    if "error" in data:
                        raise BenchError(f"iperf3 via {kind}: {data['error']}")
                    value = data["end"]["sum_received"]["bits_per_second"] / 1e9
                except (BenchError, KeyError, ValueError) as e:
                    log(f"throughput run {run + 1} via {kind} failed: {e}")
                finally:
                    try:
                        srv.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        pass
                    ctx.procs.stop(srv, grace=2.0)
                results.add("throughput", kind, value)
                log(f"throughput run {run + 1}/{ctx.runs} {kind}: {fmt(value, 2)} Gbit/s")
        note_toxics_applied(results, targets, "throughput")
    finally:
        stop_targets(ctx, targets.values(), results, "throughput")


def parse_redis_csv(text):
    rows = {}
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("test"):
            rows[row["test"]] = row
    return rows


def redis_bench(ctx, port, args, what, timeout):
    out = ctx.procs.run(["redis-benchmark", "-h", LOOPBACK, "-p", str(port), "--csv"] + args,
                        what, timeout=timeout)
    rows = parse_redis_csv(out)
    if not rows:
        raise BenchError(f"{what}: no CSV rows in output: {out[-300:]!r}")
    return rows


def start_redis(ctx):
    port = free_port()
    p = ctx.procs.start(["redis-server", "--port", str(port), "--bind", LOOPBACK, "--save", "",
                         "--appendonly", "no", "--daemonize", "no", "--dir", ctx.tmp,
                         "--maxclients", "10000"], "redis-server")
    wait_listening(port, p)
    return port, p


def phase_redis(ctx, results, redis_port):
    targets = start_targets(phase_targets(ctx, "redis"), redis_port, ctx, "redis")
    n = ctx.redis_requests
    pings = ctx.ping_requests
    try:
        for run in range(ctx.runs):
            for kind in list(targets):
                t = revive(ctx, results, targets, kind, redis_port, "redis", "redis")
                set_rps = get_rps = avg_us = p99_us = None
                try:
                    with RecordingRun(ctx, results, t, "redis", run):
                        rows = redis_bench(ctx, t.port, ["-c", "50", "-n", str(n), "-t", "get,set", "-q"],
                                           f"redis-benchmark get,set via {kind}", timeout=180)
                    set_rps = float(rows["SET"]["rps"])
                    get_rps = float(rows["GET"]["rps"])
                except (BenchError, KeyError, ValueError) as e:
                    log(f"redis get/set run {run + 1} via {kind} failed: {e}")
                try:
                    require_alive(t)
                    with RecordingRun(ctx, results, t, "redis_ping", run):
                        rows = redis_bench(ctx, t.port, ["-c", "1", "-n", str(pings), "-t", "ping_mbulk"],
                                           f"redis-benchmark ping via {kind}", timeout=120)
                    row = rows["PING_MBULK"]
                    avg_us = float(row["avg_latency_ms"]) * 1000
                    p99_us = float(row["p99_latency_ms"]) * 1000
                except (BenchError, KeyError, ValueError) as e:
                    log(f"redis ping run {run + 1} via {kind} failed: {e}")
                results.add("redis_set", kind, set_rps)
                results.add("redis_get", kind, get_rps)
                results.add("ping_avg", kind, avg_us)
                results.add("ping_p99", kind, p99_us)
                log(f"redis run {run + 1}/{ctx.runs} {kind}: SET {fmt(set_rps, 0)}/s GET {fmt(get_rps, 0)}/s "
                    f"PING avg {fmt(avg_us, 1)} us p99 {fmt(p99_us, 1)} us")
        note_toxics_applied(results, targets, "redis")
    finally:
        stop_targets(ctx, targets.values(), results, "redis")


def phase_connections(ctx, results, redis_port):
    targets = start_targets(phase_targets(ctx, "connections"), redis_port, ctx, "conns")
    n = ctx.conn_requests
    try:
        for run in range(ctx.runs):
            for kind in list(targets):
                t = revive(ctx, results, targets, kind, redis_port, "conns", "connections")
                value = None
                try:
                    rows = redis_bench(ctx, t.port, ["-c", "50", "-n", str(n), "-t", "ping_mbulk", "-k", "0"],
                                       f"redis-benchmark -k 0 via {kind}", timeout=240)
                    value = float(rows["PING_MBULK"]["rps"])
                except (BenchError, KeyError, ValueError) as e:
                    log(f"connections run {run + 1} via {kind} failed: {e}")
                results.add("new_conns", kind, value)
                log(f"connections run {run + 1}/{ctx.runs} {kind}: {fmt(value, 0)} conn/s")
                time.sleep(1)  # let TIME_WAIT / forked children settle between runs
    finally:
        stop_targets(ctx, targets.values(), results, "connections")


def haproxy_version(ctx):
    """(major, minor) from `haproxy -v`, or None if it does not say."""
    m = re.search(r"version (\d+)\.(\d+)", ctx.versions.get("haproxy") or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def start_http_origin(ctx):
    """The http phase's upstream: HAProxy in mode http answering every request itself (200,
    text/plain HTTP_BODY, keep-alive), fast enough not to be the bottleneck. Returns (port, proc)."""
    v = haproxy_version(ctx)
    if v is not None and v < (2, 2):
        raise BenchError(f"the http phase needs HAProxy >= 2.2 (http-request return); found {ctx.versions['haproxy']}")
    port = free_port()
    body = HTTP_BODY.decode().replace("\n", "\\n")
    cfg = write_haproxy_cfg(ctx, "http-origin", "http", f"""frontend origin
    bind {LOOPBACK}:{port}
    http-request return status 200 content-type text/plain string "{body}"
""")
    p = ctx.procs.start(["haproxy", "-db", "-f", cfg], "http-origin")
    wait_listening(port, p)
    return port, p


def check_http_answer(port, what):
    """One GET through the target (its own connection): the origin's answer must come back whole."""
    try:
        req = urllib.request.Request(f"http://{LOOPBACK}:{port}/", headers={"User-Agent": "faultline-bench"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, body = resp.status, resp.read()
    except (OSError, ValueError) as e:  # urllib.error.URLError is an OSError
        raise BenchError(f"GET / via {what} failed: {e}")
    if status != 200 or body != HTTP_BODY:
        raise BenchError(f"GET / via {what}: got {status} {body[:100]!r}, expected 200 {HTTP_BODY!r}")


WRK_TIME_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def parse_wrk(text):
    """{"rps", "p50_us", "p99_us", "requests", "socket_errors", "non_2xx"} from wrk --latency's
    report; raises BenchError if a figure is missing."""
    def find(pattern):
        m = re.search(pattern, text, re.MULTILINE)
        if not m:
            raise BenchError(f"wrk: no match for {pattern!r} in its output: {text[-400:]!r}")
        return m

    def latency(pct):
        m = find(rf"^\s*{pct}(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$")
        return float(m.group(1)) * WRK_TIME_UNITS[m.group(2)]

    out = {"rps": float(find(r"^Requests/sec:\s+([\d.]+)").group(1)),
           "p50_us": latency(50), "p99_us": latency(99),
           "requests": int(find(r"^\s*(\d+) requests in ").group(1)),
           "socket_errors": {}, "non_2xx": 0}
    # Printed only when not zero.
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["socket_errors"] = {k: int(v) for k, v in zip(("connect", "read", "write", "timeout"), m.groups())
                                if int(v)}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["non_2xx"] = int(m.group(1))
    return out


def note_http_decoded(results, targets):
    """Notes, for each faultline proxy of the http phase, the requests and responses its server
    decoded and the streams it could not decode, from /metrics: an http proxy that decoded
    nothing (or passed the traffic through as bytes) would make its numbers meaningless. Never
    fails the phase."""
    per = {}
    for kind, t in targets.items():
        if kind not in FAULTLINE_KINDS or t.api is None:
            continue
        try:
            req = urllib.request.Request(f"http://{t.api}/metrics", headers={"User-Agent": "faultline-bench"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                text = resp.read().decode(errors="replace")
        except OSError as e:
            log(f"could not read faultline /metrics after the http phase: {e}")
            continue
        counts = {}
        for line in text.splitlines():
            for metric, field in (("faultline_proxy_requests_total", "requests"),
                                  ("faultline_proxy_responses_total", "responses"),
                                  ("faultline_proxy_undecodable_streams_total", "undecodable_streams"),
                                  ("faultline_proxy_connections_total", "connections")):
                if line.startswith(metric + "{") and f'proxy="{t.proxy}"' in line:
                    try:
                        counts[field] = int(float(line.rsplit(" ", 1)[1]))
                    except ValueError:
                        pass
        counts["protocol"] = FAULTLINE_PROTOCOL.get(kind, "tcp")
        per[kind] = counts
        if kind in FAULTLINE_PROTOCOL and not counts.get("requests"):
            log(f"warning: {kind}: the proxy decoded no request in the http phase")
        if counts.get("undecodable_streams"):
            log(f"warning: {kind}: {counts['undecodable_streams']} streams did not decode as HTTP "
                f"(passed through as bytes)")
    if per:
        results.note("http_decoded", per)


def phase_http(ctx, results):
    secs = ctx.http_seconds
    origin_port, origin = start_http_origin(ctx)
    try:
        check_http_answer(origin_port, "the origin")
        targets = start_targets(phase_targets(ctx, "http"), origin_port, ctx, "http")
        try:
            for run in range(ctx.runs):
                for kind in list(targets):
                    t = revive(ctx, results, targets, kind, origin_port, "http", "http")
                    rps = p50 = p99 = None
                    try:
                        check_http_answer(t.port, kind)
                        out = ctx.procs.run(["wrk", f"-t{WRK_THREADS}", f"-c{HTTP_CONNS}", f"-d{secs}s",
                                             "--timeout", "5s", "--latency", f"http://{LOOPBACK}:{t.port}/"],
                                            f"wrk via {kind}", timeout=secs + 30)
                        w = parse_wrk(out)
                        if w["non_2xx"]:
                            raise BenchError(f"wrk via {kind}: {w['non_2xx']} of {w['requests']} answers "
                                             f"were not 2xx/3xx")
                        if not w["requests"]:
                            raise BenchError(f"wrk via {kind}: no request completed")
                        if w["socket_errors"]:
                            log(f"warning: http run {run + 1} via {kind}: socket errors {w['socket_errors']}")
                            results.notes.setdefault("http_socket_errors", {}).setdefault(kind, []).append(
                                {"run": run + 1, **w["socket_errors"]})
                        rps, p50, p99 = w["rps"], w["p50_us"], w["p99_us"]
                    except (BenchError, KeyError, ValueError) as e:
                        log(f"http run {run + 1} via {kind} failed: {e}")
                    results.add("http_rps", kind, rps)
                    results.add("http_p50", kind, p50)
                    results.add("http_p99", kind, p99)
                    log(f"http run {run + 1}/{ctx.runs} {kind}: {fmt(rps, 0)} req/s "
                        f"p50 {fmt(p50, 1)} us p99 {fmt(p99, 1)} us")
            note_http_decoded(results, targets)
        finally:
            stop_targets(ctx, targets.values(), results, "http")
    finally:
        ctx.procs.stop(origin)


class Holder:
    """Upstream for the memory phase: accepts connections and holds them open, silent."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(4096)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)

    @property
    def count(self):
        with self.lock:
            return len(self.conns)

    def wait_count(self, n, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count >= n:
                return True
            time.sleep(0.01)
        return self.count >= n

    def drop_all(self):
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            c.close()

    def close(self):
        self.sock.close()
        self.drop_all()


def open_idle(port, n, holder, deadline):
    socks = []
    try:
        for i in range(n):
            if time.monotonic() > deadline:
                raise BenchError(f"opened only {i} of {n} connections before the deadline")
            s = socket.create_connection((LOOPBACK, port), timeout=10)
            socks.append(s)
            # Do not run far ahead of the proxy (socat forks per connection).
            if i % 250 == 249 and not holder.wait_count(i + 1 - 1000, max(0.0, deadline - time.monotonic())):
                raise BenchError(f"upstream holds only {holder.count} of {i + 1} connections")
        if not holder.wait_count(n, max(0.0, deadline - time.monotonic())):
            raise BenchError(f"upstream got only {holder.count} of {n} connections")
        return socks
    except BaseException:
        for s in socks:
            s.close()
        raise


def measure_memory(t):
    """(kib, method): VmRSS of the proxy process; for socat, PSS summed over its process tree."""
    if t.kind == "socat":
        return pss_tree_kib(t.pid), "pss-tree"
    return proc_status_kib(t.pid, "VmRSS"), "vmrss"


def phase_memory(ctx, results):
    n = ctx.idle_conns
    holder = Holder()
    try:
        for run in range(ctx.runs):
            for kind in phase_targets(ctx, "memory"):
                if kind == "direct":
                    continue
                value = None
                t = None
                socks = []
                try:
                    t = start_target(kind, holder.port, ctx, f"mem{run}")
                    # Warm up: a few connections through, then closed, so one-time setup is in "before".
                    warm = open_idle(t.port, 20, holder, time.monotonic() + 30)
                    for s in warm:
                        s.close()
                    holder.drop_all()
                    time.sleep(1.0)
                    before, method = measure_memory(t)
                    socks = open_idle(t.port, n, holder, time.monotonic() + ctx.idle_timeout)
                    time.sleep(1.0)
                    after, _ = measure_memory(t)
                    if t.proc.poll() is not None:
                        raise BenchError(f"{kind} exited during the run:\n{tail(t.proc.logpath)}")
                    value = (after - before) / n
                    results.note(f"memory_{kind}", method)
                    log(f"memory run {run + 1}/{ctx.runs} {kind}: {before} -> {after} KiB ({method}) "
                        f"= {value:.1f} KiB per connection")
                except (BenchError, OSError) as e:
                    log(f"memory run {run + 1} via {kind} failed: {e}")
                finally:
                    for s in socks:
                        s.close()
                    holder.drop_all()
                    if t is not None:
                        stop_target(ctx, t)
                results.add("idle_kib", kind, value)
    finally:
        holder.close()


# ----------------------------------------------------------------------------- results

METRICS = [
    # key, label, unit, better
    ("throughput", "bulk throughput, 1 conn (iperf3)", "Gbit/s", "higher"),
    ("redis_set", "redis SET, 50 conns", "req/s", "higher"),
    ("redis_get", "redis GET, 50 conns", "req/s", "higher"),
    ("ping_avg", "redis PING latency avg, 1 conn", "us", "lower"),
    ("ping_p99", "redis PING latency p99, 1 conn", "us", "lower"),
    ("new_conns", "new connections (PING, -k 0)", "conn/s", "higher"),
    ("http_rps", f"HTTP GET keep-alive, {HTTP_CONNS} conns (wrk)", "req/s", "higher"),
    ("http_p50", f"HTTP latency p50, {HTTP_CONNS} conns", "us", "lower"),
    ("http_p99", f"HTTP latency p99, {HTTP_CONNS} conns", "us", "lower"),
    ("idle_kib", "memory per idle connection", "KiB", "lower"),
]
PHASE_OF = {"throughput": "throughput", "redis_set": "redis", "redis_get": "redis", "ping_avg": "redis",
            "ping_p99": "redis", "new_conns": "connections", "http_rps": "http", "http_p50": "http",
            "http_p99": "http", "idle_kib": "memory"}


class Results:
    def __init__(self):
        self.runs = {}
        self.notes = {}

    def add(self, metric, target, value):
        self.runs.setdefault(metric, {}).setdefault(target, []).append(value)

    def note(self, key, value):
        self.notes[key] = value

    def median(self, metric, target):
        return median(self.runs.get(metric, {}).get(target, []))


def fmt(v, digits):
    if v is None:
        return "-"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


DIGITS = {"Gbit/s": 2, "req/s": 0, "us": 1, "conn/s": 0, "KiB": 1}


# Short column headers for the table (the JSON uses the target names).
COLUMN = {"faultline+latency0": "fl+latency0", "faultline+bandwidth": "fl+bandwidth",
          "faultline+http": "fl+http", "faultline+record": "fl+record"}
# Metrics with a pass/fail against TOXIC_OVERHEAD_BAR (the others' ratios are informational).
OVERHEAD_GRADED = ["throughput", "redis_set", "redis_get"]


def measured(key, target):
    """Whether `target` takes part in the phase of metric `key`."""
    if key == "idle_kib" and target == "direct":
        return False
    return PHASE_OF[key] in TARGET_PHASES.get(target, ALL_PHASES)


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def overhead(key, ctx, results, variants=None):
    """{variant: {...}} for metric `key`: ratio of medians to plain faultline, cost (the fraction
    worse: 1 - ratio for higher-is-better, ratio - 1 for lower-is-better), and the per-run
    ratios to the plain faultline run of the same round (runs are interleaved). `variants`:
    TOXIC_VARIANTS (the default) or RECORD_VARIANTS."""
    variants = TOXIC_VARIANTS if variants is None else variants
    better = next(m[3] for m in METRICS if m[0] == key)
    base_runs = results.runs.get(key, {}).get("faultline", [])
    out = {}
    for v in ctx.targets:
        if v not in variants or not measured(key, v):
            continue
        r = ratio(results.median(key, v), results.median(key, "faultline"))
        cost = None if r is None else (1 - r if better == "higher" else r - 1)
        runs = results.runs.get(key, {}).get(v, [])
        entry = {"ratio": r, "cost": cost,
                 "per_run_ratios": [ratio(a, b) for a, b in zip(runs, base_runs)]}
        if variants is TOXIC_VARIANTS and key in OVERHEAD_GRADED:
            entry["within_bar"] = None if cost is None else cost < TOXIC_OVERHEAD_BAR
        elif variants is RECORD_VARIANTS and key in RECORD_OVERHEAD_BARS:
            entry["bar"] = RECORD_OVERHEAD_BARS[key]
            entry["within_bar"] = None if cost is None else cost < RECORD_OVERHEAD_BARS[key]
        out[v] = entry
    return out


def recorded_summary(results, phase, kind):
    """Totals over a record variant's runs in `phase`: what its recordings wrote and dropped."""
    runs = results.notes.get(f"recording_{phase}", {}).get(kind, [])
    if not runs:
        return None
    total = {k: sum(r.get(k) or 0 for r in runs) for k in ("bytes_recorded", "journal_bytes", "gap_bytes", "gap_events")}
    total["runs"] = len(runs)
    total["states"] = sorted({r.get("state") for r in runs})
    seen = total["bytes_recorded"] + total["gap_bytes"]
    total["fraction_recorded"] = total["bytes_recorded"] / seen if seen else None
    return total


def print_record_overhead(ctx, results, cols):
    variants = [v for v in cols if v in RECORD_VARIANTS]
    rows = [m for m in METRICS if PHASE_OF[m[0]] in ctx.phases and PHASE_OF[m[0]] in VARIANT_PHASES]
    if not variants or not rows:
        return
    print()
    print("recording overhead: variant median / plain faultline median (bars: recording costs < "
          + ", ".join(f"{RECORD_OVERHEAD_BARS[k]:.0%} of {k}" for k in RECORD_OVERHEAD_BARS) + ")")
    vw = [max(16, len(COLUMN.get(v, v)) + 2) for v in variants]
    header = (f"{'metric':<36} {'unit':<7}" + "".join(f"{COLUMN.get(v, v):>{w}}" for v, w in zip(variants, vw))
              + f"{'fl run spread':>15}")
    print(header)
    print("-" * len(header))
    for key, label, unit, better in rows:
        ov = overhead(key, ctx, results, RECORD_VARIANTS)
        cells = []
        for v, w in zip(variants, vw):
            e = ov.get(v, {})
            text = "-" if e.get("ratio") is None else f"{e['ratio']:.3f}x"
            if e.get("within_bar") is not None:
                text += "  ok" if e["within_bar"] else "  OVER"
            elif key not in RECORD_OVERHEAD_BARS:
                text += "  (i)"
            cells.append(f"{text:>{w}}")
        sp = spread(results.runs.get(key, {}).get("faultline", []))
        print(f"{label:<36} {unit:<7}" + "".join(cells) + f"{('-' if sp is None else f'{sp:.0%}'):>15}")
    for v in variants:
        for phase in ("throughput", "redis", "redis_ping"):
            s = recorded_summary(results, phase, v)
            if s is None:
                continue
            frac = "-" if s["fraction_recorded"] is None else f"{s['fraction_recorded']:.1%}"
            print(f"{COLUMN.get(v, v)} {phase}: {s['runs']} recordings, {fmt(s['bytes_recorded'] / 1e6, 1)} MB of "
                  f"payload recorded ({frac} of what went through), {fmt(s['journal_bytes'] / 1e6, 1)} MB written, "
                  f"{fmt(s['gap_bytes'] / 1e6, 1)} MB dropped in gaps; states {', '.join(map(str, s['states']))}")
    print("fl+record: a tcp proxy on the same server, recorded through POST /recordings (redaction on, gap markers "
          "when the writer falls behind);")
    print("  a fresh recording per run, deleted after it; ok/OVER: cost below/above the bar; (i): informational")


def spread(values):
    """(max - min) / median of the runs, as a noise indicator; None with fewer than 2 runs."""
    vals = [v for v in values if v is not None]
    if len(vals) < 2 or not statistics.median(vals):
        return None
    return (max(vals) - min(vals)) / statistics.median(vals)


# The http phase's ratios of medians: (numerator, denominator); the first is graded against
# HTTP_DECODER_MIN_RATIO in requests/s, the others are informational.
HTTP_PAIRS = [("faultline+http", "faultline"), ("faultline+http", "haproxy+http"), ("haproxy+http", "haproxy")]
HTTP_GRADED = ("faultline+http", "faultline", "http_rps")
HTTP_METRICS = ["http_rps", "http_p50", "http_p99"]


def http_ratios(ctx, results):
    """{"a/b": {metric: {"ratio", "per_run_ratios"[, "within_bar"]}}} for the pairs of HTTP_PAIRS
    whose two targets both ran (per-run ratios pair the runs of the same round)."""
    out = {}
    for a, b in HTTP_PAIRS:
        if a not in ctx.targets or b not in ctx.targets:
            continue
        per = {}
        for key in HTTP_METRICS:
            ra = results.runs.get(key, {}).get(a, [])
            rb = results.runs.get(key, {}).get(b, [])
            e = {"ratio": ratio(results.median(key, a), results.median(key, b)),
                 "per_run_ratios": [ratio(x, y) for x, y in zip(ra, rb)]}
            if (a, b, key) == HTTP_GRADED:
                e["within_bar"] = None if e["ratio"] is None else e["ratio"] >= HTTP_DECODER_MIN_RATIO
            per[key] = e
        out[f"{a}/{b}"] = per
    return out


def print_http_ratios(ctx, results):
    ratios = http_ratios(ctx, results)
    if not ratios:
        return
    print()
    print(f"HTTP: ratios of medians (bar: fl+http / faultline >= {HTTP_DECODER_MIN_RATIO:.2f} in req/s, "
          f"i.e. the HTTP decoder costs < {1 - HTTP_DECODER_MIN_RATIO:.0%} of requests per second "
          f"against the tcp proxy)")
    names = ["/".join(COLUMN.get(x, x) for x in pair.split("/")) for pair in ratios]
    widths = [max(18, len(n) + 2) for n in names]
    header = f"{'metric':<36} {'unit':<7}" + "".join(f"{n:>{w}}" for n, w in zip(names, widths))
    print(header)
    print("-" * len(header))
    for key, label, unit, _ in METRICS:
        if key not in HTTP_METRICS:
            continue
        cells = []
        for per, w in zip(ratios.values(), widths):
            e = per[key]
            text = "-" if e["ratio"] is None else f"{e['ratio']:.3f}x"
            if "within_bar" in e and e["within_bar"] is not None:
                text += "  ok" if e["within_bar"] else "  UNDER"
            elif e["ratio"] is not None:
                text += "  (i)"
            cells.append(f"{text:>{w}}")
        print(f"{label:<36} {unit:<7}" + "".join(cells))
    spreads = [(c, spread(results.runs.get("http_rps", {}).get(c, []))) for c in phase_targets(ctx, "http")]
    print("ok/UNDER: ratio at or above / below the bar; (i): informational; run spread ((max - min) / median "
          "of each target's own req/s runs): "
          + ", ".join(f"{COLUMN.get(c, c)} {'-' if sp is None else f'{sp:.0%}'}" for c, sp in spreads))


def print_table(ctx, results):
    # Targets that take part in at least one of the selected phases.
    cols = [c for c in ctx.targets
            if any(measured(k, c) for k, _, _, _ in METRICS if PHASE_OF[k] in ctx.phases)]
    widths = [max(12, len(COLUMN.get(c, c)) + 2) for c in cols]
    header = (f"{'metric':<36} {'unit':<7}" + "".join(f"{COLUMN.get(c, c):>{w}}" for c, w in zip(cols, widths))
              + f"{'fl/haproxy':>12}  better")
    print()
    print(f"faultline benchmark: median of {ctx.runs} runs, all on {LOOPBACK}")
    print(header)
    print("-" * len(header))
    for key, label, unit, better in METRICS:
        if PHASE_OF[key] not in ctx.phases:
            continue
        cells = []
        for c, w in zip(cols, widths):
            if not measured(key, c):
                cells.append(f"{'n/a':>{w}}")
            else:
                cells.append(f"{fmt(results.median(key, c), DIGITS[unit]):>{w}}")
        r = ratio(results.median(key, "faultline"), results.median(key, "haproxy"))
        print(f"{label:<36} {unit:<7}" + "".join(cells) + f"{(f'{r:.2f}x' if r is not None else '-'):>12}  {better}")
    if "memory" in ctx.phases:
        print(f"memory: {ctx.idle_conns} idle connections; VmRSS delta of the proxy process "
              f"(socat: PSS summed over its per-connection processes)")
    if "http" in ctx.phases:
        print(f"HTTP: wrk -t{WRK_THREADS} -c{HTTP_CONNS} -d{ctx.http_seconds}s, keep-alive GET / to HAProxy answering "
              f"200 with a {len(HTTP_BODY)}-byte body; haproxy: mode tcp; haproxy+http: mode http; "
              f"fl+http: a second proxy on faultline's server with \"protocol\": \"http\"")
    variants = [v for v in cols if v in TOXIC_VARIANTS]
    rows = [m for m in METRICS if PHASE_OF[m[0]] in ctx.phases and PHASE_OF[m[0]] in VARIANT_PHASES]
    if variants:
        print("fl+latency0: latency 0 ms, jitter 0 on both streams; fl+bandwidth: bandwidth rate "
              "100,000,000 KB/s on both streams;")
        print("  extra proxies on the same faultline server as 'faultline'; n/a: phase not run for them")
    if variants and rows:
        print()
        print(f"toxic overhead: variant median / plain faultline median "
              f"(bar: a toxic that does nothing costs < {TOXIC_OVERHEAD_BAR:.0%})")
        vw = [max(16, len(COLUMN.get(v, v)) + 2) for v in variants]
        header = (f"{'metric':<36} {'unit':<7}" + "".join(f"{COLUMN.get(v, v):>{w}}" for v, w in zip(variants, vw))
                  + f"{'fl run spread':>15}")
        print(header)
        print("-" * len(header))
        for key, label, unit, better in rows:
            ov = overhead(key, ctx, results)
            cells = []
            for v, w in zip(variants, vw):
                e = ov.get(v, {})
                text = "-" if e.get("ratio") is None else f"{e['ratio']:.3f}x"
                if "within_bar" in e and e["within_bar"] is not None:
                    text += "  ok" if e["within_bar"] else "  OVER"
                elif key not in OVERHEAD_GRADED:
                    text += "  (i)"
                cells.append(f"{text:>{w}}")
            sp = spread(results.runs.get(key, {}).get("faultline", []))
            print(f"{label:<36} {unit:<7}" + "".join(cells) + f"{('-' if sp is None else f'{sp:.0%}'):>15}")
        print("ok/OVER: cost below/above the bar (higher-is-better metrics: 1 - ratio; latency: ratio - 1); "
              "(i): informational, not graded;")
        print("fl run spread: (max - min) / median of plain faultline's own runs, the noise floor to read "
              "the ratios against")
    print_record_overhead(ctx, results, cols)
    if "http" in ctx.phases:
        print_http_ratios(ctx, results)
    print()


def failed_runs(results):
    """{"metric/target": number of runs that produced no value}."""
    return {f"{k}/{c}": sum(v is None for v in vals) for k, per in results.runs.items()
            for c, vals in per.items() if any(v is None for v in vals)}


def write_json(ctx, results, path, started):
    metrics = {}
    for key, label, unit, better in METRICS:
        if PHASE_OF[key] not in ctx.phases:
            continue
        med = {c: results.median(key, c) for c in ctx.targets if measured(key, c) or c == "direct"}
        metrics[key] = {
            "label": label, "unit": unit, "better": better,
            "median": med,
            "runs": results.runs.get(key, {}),
            "faultline_vs_haproxy": ratio(med.get("faultline"), med.get("haproxy")),
        }
        ov = {**overhead(key, ctx, results), **overhead(key, ctx, results, RECORD_VARIANTS)}
        if ov:
            metrics[key]["vs_faultline"] = {v: e["ratio"] for v, e in ov.items()}
    doc = {
        "started": started,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": {"kernel": platform.release(), "cpus": os.cpu_count(),
                 "loadavg_at_start": ctx.loadavg_at_start, "loadavg_at_end": os.getloadavg()[0]},
        "versions": ctx.versions,
        "config": {"runs": ctx.runs, "targets": ctx.targets, "phases": ctx.phases,
                   "iperf_seconds": ctx.iperf_seconds, "unique_bulk": ctx.unique_bulk, "redis_requests": ctx.redis_requests,
                   "ping_requests": ctx.ping_requests, "conn_requests": ctx.conn_requests,
                   "idle_conns": ctx.idle_conns, "http_seconds": ctx.http_seconds,
                   "http_conns": HTTP_CONNS, "faultline_bin": ctx.faultline_bin,
                   "faultline_args": ctx.faultline_args, "faultline_builds": ctx.faultline_builds},
        "notes": results.notes,
        "failed_runs": failed_runs(results),
        "metrics": metrics,
    }
    variants = [v for v in ctx.targets if v in TOXIC_VARIANTS]
    if variants:
        doc["config"]["toxic_variants"] = {
            "server": "shared: each variant is a separate proxy on the same faultline server "
                      "(one process per phase) as the plain faultline target",
            "phases": [p for p in VARIANT_PHASES if p in ctx.phases],
            "toxics": {v: TOXIC_VARIANTS[v] for v in variants},
        }
        over = {}
        for key, _, _, _ in METRICS:
            if PHASE_OF[key] not in ctx.phases:
                continue
            for v, e in overhead(key, ctx, results).items():
                over.setdefault(v, {})[key] = e
        doc["toxic_overhead"] = {
            "bar": TOXIC_OVERHEAD_BAR,
            "graded_metrics": OVERHEAD_GRADED,
            "definition": "ratio = variant median / plain faultline median; cost = 1 - ratio "
                          "(higher is better) or ratio - 1 (lower is better); within_bar = cost < bar",
            "faultline_run_spread": {k: spread(results.runs.get(k, {}).get("faultline", []))
                                     for k in metrics if PHASE_OF[k] in VARIANT_PHASES},
            "variants": over,
            "all_within_bar": all(e.get("within_bar") is True for per in over.values()
                                  for k, e in per.items() if k in OVERHEAD_GRADED) if over else None,
        }
    recorded = [v for v in ctx.targets if v in RECORD_VARIANTS]
    if recorded:
        over = {}
        for key, _, _, _ in METRICS:
            if PHASE_OF[key] not in ctx.phases:
                continue
            for v, e in overhead(key, ctx, results, RECORD_VARIANTS).items():
                over.setdefault(v, {})[key] = e
        doc["recording_overhead"] = {
            "bars": RECORD_OVERHEAD_BARS,
            "definition": "ratio = variant median / plain faultline median; cost = 1 - ratio "
                          "(higher is better) or ratio - 1 (lower is better); within_bar = cost < bar",
            "setup": "a tcp proxy on the same faultline server as plain faultline, recorded through "
                     "POST /recordings (only that proxy; redaction on; default queue, blob threshold and "
                     "rotation); a fresh recording per run, stopped and deleted after it",
            "options": {v: RECORD_VARIANTS[v] for v in recorded},
            "faultline_run_spread": {k: spread(results.runs.get(k, {}).get("faultline", []))
                                     for k in metrics if PHASE_OF[k] in VARIANT_PHASES},
            "variants": over,
            "recorded": {v: {p: recorded_summary(results, p, v) for p in ("throughput", "redis", "redis_ping")
                             if recorded_summary(results, p, v)} for v in recorded},
            "all_within_bar": all(e.get("within_bar") is True for per in over.values()
                                  for k, e in per.items() if k in RECORD_OVERHEAD_BARS) if over else None,
        }
    if "http" in ctx.phases:
        ratios = http_ratios(ctx, results)
        graded = ratios.get("/".join(HTTP_GRADED[:2]), {}).get(HTTP_GRADED[2], {})
        doc["http"] = {
            "client": f"wrk -t{WRK_THREADS} -c{HTTP_CONNS} -d{ctx.http_seconds}s --timeout 5s --latency "
                      f"(keep-alive GET /)",
            "origin": f"HAProxy, mode http, answering every request itself: 200 text/plain {HTTP_BODY.decode()!r}",
            "targets": {"haproxy": "HAProxy mode tcp", "haproxy+http": "HAProxy mode http",
                        "faultline": "faultline proxy, protocol tcp",
                        "faultline+http": "a second proxy on the same faultline server, protocol http"},
            "bar": {"ratio": "/".join(HTTP_GRADED[:2]), "metric": HTTP_GRADED[2],
                    "min_ratio": HTTP_DECODER_MIN_RATIO,
                    "text": "the HTTP decoder costs < 25 % of requests per second against the tcp proxy"},
            "within_bar": graded.get("within_bar"),
            "ratios": ratios,
            "run_spread": {k: {c: spread(results.runs.get(k, {}).get(c, [])) for c in phase_targets(ctx, "http")}
                           for k in HTTP_METRICS},
        }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    log(f"wrote {path}")


def versions(ctx):
    def output(args):
        try:
            r = subprocess.run(args, capture_output=True, text=True, timeout=10)
            return (r.stdout or r.stderr).strip().splitlines()
        except (OSError, subprocess.TimeoutExpired):
            return []

    def pick(lines, prefix=""):
        return next((l.strip() for l in lines if l.startswith(prefix)), None)

    v = {"haproxy": pick(output(["haproxy", "-v"])),
         "socat": pick(output(["socat", "-V"]), "socat version"),
         "iperf3": pick(output(["iperf3", "-v"])),
         "redis-server": pick(output(["redis-server", "--version"])),
         "wrk": pick(output(["wrk", "-v"]), "wrk")}
    if any(t in FAULTLINE_KINDS for t in ctx.targets):
        v["faultline"] = pick(output([ctx.faultline_bin, "version"]))
    return v


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description="faultline vs direct, haproxy and socat on loopback")
    ap.add_argument("--runs", type=int, default=3, help="runs per metric and target (median; default 3)")
    ap.add_argument("--targets", default="all",
                    help="comma list of " + ",".join(ALL_TARGETS) + ", or of these shorthands: "
                    + "; ".join(f"{k} = {','.join(v)}" for k, v in TARGET_SETS.items()) + " (default all)")
    ap.add_argument("--phases", default=",".join(ALL_PHASES), help="comma list of " + ",".join(ALL_PHASES))
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for checking the script itself")
    ap.add_argument("--iperf-seconds", type=int, default=5)
    ap.add_argument("--unique-bulk", action="store_true",
                    help="iperf3 sends a never-repeating payload (a file of AES-CTR output, made once in the "
                         "run's temp dir) instead of one buffer over and over: what recording costs when its "
                         "blobs cannot be deduplicated")
    ap.add_argument("--http-seconds", type=int, default=5, help="wrk -d per http run (default 5)")
    ap.add_argument("--idle-conns", type=int, default=5000)
    ap.add_argument("--output", default=os.path.join(HERE, "results", "latest.json"))
    args = ap.parse_args()

    ctx = argparse.Namespace()
    ctx.runs = max(1, args.runs)
    ctx.targets = []
    for t in (t.strip() for t in args.targets.split(",")):
        if not t:
            continue
        if t not in ALL_TARGETS and t not in TARGET_SETS:
            ap.error(f"unknown target {t} (targets: {', '.join(ALL_TARGETS)}; "
                     f"shorthands: {', '.join(TARGET_SETS)})")
        for k in TARGET_SETS.get(t, [t]):
            if k not in ctx.targets:
                ctx.targets.append(k)
    if not ctx.targets:
        ap.error("no targets")
    ctx.phases = [p for p in args.phases.split(",") if p]
    for p in ctx.phases:
        if p not in ALL_PHASES:
            ap.error(f"unknown phase {p}")
    ctx.iperf_seconds = 1 if args.quick else args.iperf_seconds
    ctx.unique_bulk = args.unique_bulk
    ctx.http_seconds = 1 if args.quick else max(1, args.http_seconds)
    ctx.redis_requests = 20000 if args.quick else 200000
    ctx.ping_requests = 2000 if args.quick else 20000
    ctx.conn_requests = 5000 if args.quick else 50000
    ctx.idle_conns = min(args.idle_conns, 500) if args.quick else args.idle_conns
    ctx.idle_timeout = 180
    ctx.faultline_bin = os.environ.get("FAULTLINE_BIN") or os.path.join(ROOT, "build", "faultline")
    # Extra `faultline serve` flags for every faultline server, e.g. "--no-splice".
    ctx.faultline_args = os.environ.get("BENCH_FAULTLINE_ARGS", "").split()
    ctx.faultline_builds = {}  # sha256 prefix -> {mtime, servers started from it}
    if any(t in FAULTLINE_KINDS for t in ctx.targets) and not os.access(ctx.faultline_bin, os.X_OK):
        sys.exit(f"bench: {ctx.faultline_bin} not found: run ./dev build (./dev bench builds it first)")

    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    need_fds = 2 * ctx.idle_conns + 200
    if "memory" in ctx.phases and nofile < need_fds:
        sys.exit(f"bench: open-file limit {nofile} is too low for {ctx.idle_conns} idle connections "
                 f"(needs {need_fds}); use --idle-conns or raise ulimit -n")
    ctx.haproxy_maxconn = max(100, min(ctx.idle_conns + 1000, (nofile - 200) // 2))
    ctx.loadavg_at_start = os.getloadavg()[0]
    if any(t in TOXIC_VARIANTS for t in ctx.targets) and "faultline" not in ctx.targets:
        log("note: toxic variants without plain faultline: no overhead ratios (add faultline, or use --targets toxics)")
    if any(t in RECORD_VARIANTS for t in ctx.targets) and "faultline" not in ctx.targets:
        log("note: faultline+record without plain faultline: no recording ratios (add faultline, or use "
            "--targets recording)")
    if "http" in ctx.phases and "faultline+http" in ctx.targets and "faultline" not in ctx.targets:
        log("note: faultline+http without plain faultline: no HTTP decoder ratio (add faultline)")
    if ctx.loadavg_at_start > 0.8:
        log(f"note: load average is {ctx.loadavg_at_start:.2f}; other work on this machine skews the numbers")

    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    ctx.tmp = tempfile.mkdtemp(prefix="faultline-bench-", dir=os.environ.get("BENCH_TMP"))
    ctx.procs = Procs(ctx.tmp)
    ctx.versions = versions(ctx)
    results = Results()

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    try:
        log(f"targets {','.join(ctx.targets)}; phases {','.join(ctx.phases)}; {ctx.runs} runs each; logs in {ctx.tmp}")
        if "throughput" in ctx.phases:
            phase_throughput(ctx, results)
        if "redis" in ctx.phases or "connections" in ctx.phases:
            redis_port, redis_proc = start_redis(ctx)
            try:
                if "redis" in ctx.phases:
                    phase_redis(ctx, results, redis_port)
                if "connections" in ctx.phases:
                    phase_connections(ctx, results, redis_port)
            finally:
                ctx.procs.stop(redis_proc)
        if "http" in ctx.phases:
            phase_http(ctx, results)
        if "memory" in ctx.phases:
            phase_memory(ctx, results)
    except BenchError as e:
        log(f"error: {e}")
        ctx.procs.stop_all()
        return 1
    finally:
        ctx.procs.stop_all()
    print_table(ctx, results)
    write_json(ctx, results, args.output, started)
    failed = failed_runs(results)
    if failed:
        log("failed runs (medians use the rest): " + ", ".join(f"{k} x{n}" for k, n in failed.items()))
    if results.notes.get("target_deaths"):
        log("target processes died: " + ", ".join(f"{d['process']} ({d['exit']})"
                                                  for d in results.notes["target_deaths"]))
    missing = [(k, c) for k, _, _, _ in METRICS if PHASE_OF[k] in ctx.phases for c in ctx.targets
               if measured(k, c) and results.median(k, c) is None]
    if missing:
        log("some measurements failed: " + ", ".join(f"{k}/{c}" for k, c in missing))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
