#!/usr/bin/env python3
"""Side-by-side benchmark: direct vs haproxy vs socat vs faultline, all on 127.0.0.1.

Run it through bench/run.sh (or ./dev bench), which checks the tools, raises the fd limit and
cleans up after a crash. Metrics (median of --runs runs each, runs interleaved across targets):
  throughput   iperf3, one connection, client -t SECONDS                      (Gbit/s)
  redis        redis-benchmark -c 50 -n 200000 -t get,set                     (requests/s)
               redis-benchmark -c 1 -n 20000 -t ping_mbulk latency            (us, avg and p99)
  connections  redis-benchmark -c 50 -n 50000 -t ping_mbulk -k 0              (new connections/s)
  memory       N idle connections through the proxy to an upstream that holds them:
               (RSS after - RSS before) / N                                   (KiB per connection)
Writes bench/results/latest.json. Stdlib only; every wait is bounded.
"""
import argparse
import csv
import datetime
import io
import json
import os
import platform
import resource
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
ALL_TARGETS = ["direct", "haproxy", "socat", "faultline"]
ALL_PHASES = ["throughput", "redis", "connections", "memory"]


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

    def __init__(self, kind, port, proc=None):
        self.kind, self.port, self.proc = kind, port, proc

    @property
    def pid(self):
        return self.proc.pid if self.proc else None


def start_target(kind, upstream_port, ctx, tag):
    procs, tmp = ctx.procs, ctx.tmp
    if kind == "direct":
        return Target(kind, upstream_port)
    if kind == "haproxy":
        port = free_port()
        cfg = os.path.join(tmp, f"haproxy-{tag}.cfg")
        with open(cfg, "w") as f:
            f.write(f"""global
    maxconn {ctx.haproxy_maxconn}
defaults
    mode tcp
    maxconn {ctx.haproxy_maxconn}
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend fe
    bind {LOOPBACK}:{port}
    default_backend be
backend be
    server upstream {LOOPBACK}:{upstream_port}
""")
        p = procs.start(["haproxy", "-db", "-f", cfg], f"haproxy-{tag}")
        wait_listening(port, p)
        return Target(kind, port, p)
    if kind == "socat":
        port = free_port()
        p = procs.start(["socat", "-b262144",
                         f"TCP-LISTEN:{port},bind={LOOPBACK},reuseaddr,fork,backlog=4096",
                         f"TCP:{LOOPBACK}:{upstream_port}"], f"socat-{tag}")
        wait_listening(port, p)
        return Target(kind, port, p)
    if kind == "faultline":
        port_file = os.path.join(tmp, f"faultline-{tag}.addr")
        if os.path.exists(port_file):
            os.unlink(port_file)
        p = procs.start([ctx.faultline_bin, "serve", "--host", LOOPBACK, "--port", "0",
                         "--port-file", port_file], f"faultline-{tag}",
                        env={"LOG_LEVEL": os.environ.get("BENCH_FAULTLINE_LOG_LEVEL", "warn")})
        deadline = time.monotonic() + 15
        api = None
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise BenchError(f"faultline exited with {p.returncode}:\n{tail(p.logpath)}")
            try:
                with open(port_file) as f:
                    text = f.read().strip()
                if text:
                    api = text
                    break
            except OSError:
                pass
            time.sleep(0.02)
        if not api:
            raise BenchError(f"faultline wrote no port file within 15 s:\n{tail(p.logpath)}")
        body = json.dumps({"name": f"bench_{tag}", "listen": f"{LOOPBACK}:0",
                           "upstream": f"{LOOPBACK}:{upstream_port}"}).encode()
        req = urllib.request.Request(f"http://{api}/proxies", data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": "faultline-bench"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status, reply = resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            raise BenchError(f"faultline POST /proxies: {e.code} {e.read().decode(errors='replace')}")
        except (OSError, ValueError) as e:
            raise BenchError(f"faultline POST /proxies failed: {e}")
        if status != 201 or "listen" not in reply:
            raise BenchError(f"faultline POST /proxies: unexpected reply {status} {reply}")
        listen = reply["listen"]
        port = int(listen.rsplit(":", 1)[1])
        wait_listening(port, p)
        return Target(kind, port, p)
    raise BenchError(f"unknown target {kind}")


def stop_target(ctx, t):
    if t.proc is not None:
        ctx.procs.stop(t.proc)


# ----------------------------------------------------------------------------- phases

def phase_throughput(ctx, results):
    up = free_port()
    secs = ctx.iperf_seconds
    targets = {k: start_target(k, up, ctx, "iperf") for k in ctx.targets}
    try:
        for run in range(ctx.runs):
            for kind, t in targets.items():
                srv = ctx.procs.start(["iperf3", "-s", "-B", LOOPBACK, "-p", str(up), "-1"],
                                      f"iperf3-server-{kind}-{run}")
                value = None
                try:
                    wait_listening(up, srv)
                    out = ctx.procs.run(["iperf3", "-c", LOOPBACK, "-p", str(t.port), "-t", str(secs), "-J"],
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
    finally:
        for t in targets.values():
            stop_target(ctx, t)


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
    targets = {k: start_target(k, redis_port, ctx, "redis") for k in ctx.targets}
    n = ctx.redis_requests
    pings = ctx.ping_requests
    try:
        for run in range(ctx.runs):
            for kind, t in targets.items():
                set_rps = get_rps = avg_us = p99_us = None
                try:
                    rows = redis_bench(ctx, t.port, ["-c", "50", "-n", str(n), "-t", "get,set", "-q"],
                                       f"redis-benchmark get,set via {kind}", timeout=180)
                    set_rps = float(rows["SET"]["rps"])
                    get_rps = float(rows["GET"]["rps"])
                except (BenchError, KeyError, ValueError) as e:
                    log(f"redis get/set run {run + 1} via {kind} failed: {e}")
                try:
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
    finally:
        for t in targets.values():
            stop_target(ctx, t)


def phase_connections(ctx, results, redis_port):
    targets = {k: start_target(k, redis_port, ctx, "conns") for k in ctx.targets}
    n = ctx.conn_requests
    try:
        for run in range(ctx.runs):
            for kind, t in targets.items():
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
        for t in targets.values():
            stop_target(ctx, t)


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
            for kind in ctx.targets:
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
    ("idle_kib", "memory per idle connection", "KiB", "lower"),
]
PHASE_OF = {"throughput": "throughput", "redis_set": "redis", "redis_get": "redis", "ping_avg": "redis",
            "ping_p99": "redis", "new_conns": "connections", "idle_kib": "memory"}


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


def print_table(ctx, results):
    cols = ctx.targets
    header = f"{'metric':<36} {'unit':<7}" + "".join(f"{c:>12}" for c in cols) + f"{'fl/haproxy':>12}  better"
    print()
    print(f"faultline benchmark: median of {ctx.runs} runs, all on {LOOPBACK}")
    print(header)
    print("-" * len(header))
    for key, label, unit, better in METRICS:
        if PHASE_OF[key] not in ctx.phases:
            continue
        cells = []
        for c in cols:
            if key == "idle_kib" and c == "direct":
                cells.append(f"{'n/a':>12}")
            else:
                cells.append(f"{fmt(results.median(key, c), DIGITS[unit]):>12}")
        fl, ha = results.median(key, "faultline"), results.median(key, "haproxy")
        ratio = f"{fl / ha:.2f}x" if fl is not None and ha not in (None, 0) else "-"
        print(f"{label:<36} {unit:<7}" + "".join(cells) + f"{ratio:>12}  {better}")
    if "memory" in ctx.phases:
        print(f"memory: {ctx.idle_conns} idle connections; VmRSS delta of the proxy process "
              f"(socat: PSS summed over its per-connection processes)")
    print()


def write_json(ctx, results, path, started):
    metrics = {}
    for key, label, unit, better in METRICS:
        if PHASE_OF[key] not in ctx.phases:
            continue
        med = {c: results.median(key, c) for c in ctx.targets}
        fl, ha = med.get("faultline"), med.get("haproxy")
        metrics[key] = {
            "label": label, "unit": unit, "better": better,
            "median": med,
            "runs": results.runs.get(key, {}),
            "faultline_vs_haproxy": (fl / ha) if fl is not None and ha not in (None, 0) else None,
        }
    doc = {
        "started": started,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": {"kernel": platform.release(), "cpus": os.cpu_count(),
                 "loadavg_at_start": ctx.loadavg_at_start, "loadavg_at_end": os.getloadavg()[0]},
        "versions": ctx.versions,
        "config": {"runs": ctx.runs, "targets": ctx.targets, "phases": ctx.phases,
                   "iperf_seconds": ctx.iperf_seconds, "redis_requests": ctx.redis_requests,
                   "ping_requests": ctx.ping_requests, "conn_requests": ctx.conn_requests,
                   "idle_conns": ctx.idle_conns, "faultline_bin": ctx.faultline_bin},
        "notes": results.notes,
        "metrics": metrics,
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
         "redis-server": pick(output(["redis-server", "--version"]))}
    if "faultline" in ctx.targets:
        v["faultline"] = pick(output([ctx.faultline_bin, "version"]))
    return v


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description="faultline vs direct, haproxy and socat on loopback")
    ap.add_argument("--runs", type=int, default=3, help="runs per metric and target (median; default 3)")
    ap.add_argument("--targets", default=",".join(ALL_TARGETS), help="comma list of " + ",".join(ALL_TARGETS))
    ap.add_argument("--phases", default=",".join(ALL_PHASES), help="comma list of " + ",".join(ALL_PHASES))
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for checking the script itself")
    ap.add_argument("--iperf-seconds", type=int, default=5)
    ap.add_argument("--idle-conns", type=int, default=5000)
    ap.add_argument("--output", default=os.path.join(HERE, "results", "latest.json"))
    args = ap.parse_args()

    ctx = argparse.Namespace()
    ctx.runs = max(1, args.runs)
    ctx.targets = [t for t in args.targets.split(",") if t]
    ctx.phases = [p for p in args.phases.split(",") if p]
    for t in ctx.targets:
        if t not in ALL_TARGETS:
            ap.error(f"unknown target {t}")
    for p in ctx.phases:
        if p not in ALL_PHASES:
            ap.error(f"unknown phase {p}")
    ctx.iperf_seconds = 1 if args.quick else args.iperf_seconds
    ctx.redis_requests = 20000 if args.quick else 200000
    ctx.ping_requests = 2000 if args.quick else 20000
    ctx.conn_requests = 5000 if args.quick else 50000
    ctx.idle_conns = min(args.idle_conns, 500) if args.quick else args.idle_conns
    ctx.idle_timeout = 180
    ctx.faultline_bin = os.environ.get("FAULTLINE_BIN") or os.path.join(ROOT, "build", "faultline")
    if "faultline" in ctx.targets and not os.access(ctx.faultline_bin, os.X_OK):
        sys.exit(f"bench: {ctx.faultline_bin} not found: run ./dev build (./dev bench builds it first)")

    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    need_fds = 2 * ctx.idle_conns + 200
    if "memory" in ctx.phases and nofile < need_fds:
        sys.exit(f"bench: open-file limit {nofile} is too low for {ctx.idle_conns} idle connections "
                 f"(needs {need_fds}); use --idle-conns or raise ulimit -n")
    ctx.haproxy_maxconn = max(100, min(ctx.idle_conns + 1000, (nofile - 200) // 2))
    ctx.loadavg_at_start = os.getloadavg()[0]
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
    missing = [(k, c) for k, _, _, _ in METRICS if PHASE_OF[k] in ctx.phases for c in ctx.targets
               if not (k == "idle_kib" and c == "direct") and results.median(k, c) is None]
    if missing:
        log("some measurements failed: " + ", ".join(f"{k}/{c}" for k, c in missing))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
