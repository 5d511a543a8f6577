"""Shared helpers for faultline's integration tests (stdlib only).

Every test starts its own `faultline serve` on 127.0.0.1 with API port 0 and reads the
bound address from --port-file. Peers (echo servers, redis-server, ...) bind port 0 too.
Nothing here talks to any address outside loopback.

What lives here is what several test files use: launching faultline (Faultline, Serve,
run_serve_expect_exit) and other child processes (ManagedProcess), HTTP to the control API
(call, Response), loopback TCP servers (ThreadedServer, EchoServer), socket helpers (connect,
try_connect, wait_listening, wait_end, echo_roundtrip, recv_*), /metrics parsing and polling. Helpers for one
group of tests stay in api_helpers.py, relay_helpers.py and toxic_helpers.py.
"""
import decimal
import errno
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

BIN = os.environ.get("FAULTLINE_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "faultline")


def need(program, install_hint):
    """Fail (not skip) with the install step when a real peer is missing."""
    path = shutil.which(program)
    if not path:
        raise RuntimeError(f"{program} not found: run ./dev setup (it installs {install_hint})")
    return path


NODE_MODULES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node_modules")


def need_node_package(package):
    """Fail (not skip) when node, or the npm `package` that ./dev setup installs into
    tests/integration/node_modules, is missing."""
    need("node", "nodejs")
    if not os.path.isdir(os.path.join(NODE_MODULES, package)):
        raise RuntimeError(f"{package} not installed: run ./dev setup (npm install in tests/integration)")


def split_hostport(text):
    host, port = text.rsplit(":", 1)
    return host.strip("[]"), int(port)


def poll(fn, ok, timeout=3.0, step=0.05):
    """Calls fn() until ok(value) or timeout; returns the last value."""
    deadline = time.monotonic() + timeout
    value = fn()
    while not ok(value) and time.monotonic() < deadline:
        time.sleep(step)
        value = fn()
    return value


class WaitTimeout(AssertionError):
    """wait_for's deadline passed; an AssertionError so a test reports it as a failure."""


def wait_for(probe, timeout=5.0, what="the condition", step=0.01, not_yet=(OSError,)):
    """Calls probe() until it returns something truthy and returns that; when `timeout` seconds
    pass first, fails naming `what` and the last value seen. This is how a test waits for a
    state (a recording's bytes, a metric, a connection gone): never a fixed sleep. An exception
    of the `not_yet` types from probe (by default OSError: a port not open yet) counts as not
    yet."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = probe()
        except not_yet as error:
            last = error
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"waited {timeout} s for {what}; last seen: {last!r}")
        time.sleep(step)  # pacing between probes, not synchronisation


def proxy_connections(fl, proxy):
    """GET /proxies/{proxy}/connections as a list (the live connections)."""
    resp = call(fl, "GET", f"/proxies/{proxy}/connections")
    if resp.status != 200 or not isinstance(resp.json, list):
        raise AssertionError(f"GET /proxies/{proxy}/connections: {resp!r}")
    return resp.json


def wait_connections_closed(fl, *proxies, timeout=5.0):
    """Waits until the named proxies (all of them when none is named) list no live connection:
    every session has ended, so a recording holds or has queued all of its events (a stop or
    SIGTERM then writes the queue out). Replaces "sleep while the journal catches up"."""
    def open_connections():
        names = proxies or list((call(fl, "GET", "/proxies").json or {}).keys())
        return {name: proxy_connections(fl, name) for name in names}
    wait_for(lambda: not any(open_connections().values()), timeout,
             f"no open connection on {', '.join(proxies) or 'any proxy'}")


def finish_recordings(fl, timeout=5.0):
    """Ends a recorded run deterministically: waits until no proxy has a live connection (every
    session's events are queued), then stops every recording with DELETE /recordings/{id},
    which answers once the queue is written out and the index finalized. Returns the final
    statuses by id."""
    wait_connections_closed(fl, timeout=timeout)
    final = {}
    for status in call(fl, "GET", "/recordings").json or []:
        resp = call(fl, "DELETE", f"/recordings/{status['id']}")
        if resp.status != 200 or (resp.json or {}).get("state") != "stopped":
            raise AssertionError(f"DELETE /recordings/{status['id']}: {resp!r}")
        final[status["id"]] = resp.json
    return final


def client_address(sock):
    """How /connections names the client end of `sock` (IPv4 or IPv6)."""
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# ---------------------------------------------------------------------------------------------
# HTTP to the control API

class Response:
    def __init__(self, status, text, headers):
        self.status = status
        self.text = text
        self.headers = headers  # lower-cased names
        try:
            # Decimal keeps 0.2 as printed, so the test can see 0.200000003 if it is sent.
            self.json = json.loads(text, parse_float=decimal.Decimal) if text.strip() else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return f"<HTTP {self.status} {self.text[:300]!r}>"


def call(fl, method, path, body=None, raw=None, headers=None, timeout=10, user_agent="faultline-tests"):
    """One request to `fl` (anything with .host and .port) on a fresh connection.
    `body` is JSON-encoded; `raw` is sent as is."""
    conn = http.client.HTTPConnection(fl.host, fl.port, timeout=timeout)
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    if isinstance(data, str):
        data = data.encode()
    hdrs = {}
    if user_agent is not None:
        hdrs["User-Agent"] = user_agent
    if headers:
        hdrs.update(headers)
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        text = resp.read().decode("utf-8", "replace")
        return Response(resp.status, text, {k.lower(): v for k, v in resp.getheaders()})
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# Child processes: faultline, redis-server, ...

class ManagedProcess:
    """A child process (self.proc) with a temp dir (self.tmp) holding its log (self.log).
    Leaving the `with` block stops it and removes the dir."""

    stop_timeout = 15

    def logs(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self, sig=signal.SIGTERM, timeout=None):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def finish(self):
        """Stops the process, cleans up, and returns everything it logged."""
        self.stop()
        out = self.logs()
        self.__exit__()
        return out

    def _launch(self, args, env, port_file, what, timeout=15):
        """Runs `args` (output to self.log in self.tmp), waits until it writes HOST:PORT to
        `port_file`, sets host/port/address; cleans up and raises if it exits or never does."""
        self.log = open(os.path.join(self.tmp, "server.log"), "w+")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if os.path.exists(port_file):
                with open(port_file) as f:
                    text = f.read().strip()
                if text:
                    self.address = text
                    self.host, self.port = split_hostport(text)
                    return
            if self.proc.poll() is not None:
                out = self.logs()
                self.__exit__()
                raise RuntimeError(f"{what} exited with {self.proc.returncode}: {out}")
            time.sleep(0.02)
        self.__exit__()
        raise RuntimeError(f"{what} did not write its port file within {timeout} s")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        if not self.log.closed:
            self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def serve_env(env=None):
    """The environment faultline runs in: ours, LOG_LEVEL=warn unless set, plus `env`."""
    full_env = dict(os.environ)
    full_env.setdefault("LOG_LEVEL", "warn")
    if env:
        full_env.update(env)
    return full_env


def serve_command(tmp, port_file, config=None):
    """`faultline serve --host 127.0.0.1 --port 0 --port-file F --recordings-root TMP [--config C]`; the config (a JSON
    text, or a value to encode) is written into `tmp`."""
    # Tests record into their own temp dirs: POST /recordings writes only under the recordings root.
    cmd = [BIN, "serve", "--host", "127.0.0.1", "--port", "0", "--port-file", port_file,
           "--recordings-root", tempfile.gettempdir()]
    if config is not None:
        path = os.path.join(tmp, "config.json")
        with open(path, "w") as f:
            f.write(config if isinstance(config, str) else json.dumps(config))
        cmd += ["--config", path]
    return cmd


class Faultline(ManagedProcess):
    """A running `faultline serve` process with a small API client."""

    def __init__(self, *extra_args, env=None, config=None):
        self.tmp = tempfile.mkdtemp(prefix="faultline-test-")
        self.port_file = os.path.join(self.tmp, "api.addr")
        self._start(serve_command(self.tmp, self.port_file, config) + list(extra_args), env)

    def _start(self, args, env):
        """Runs `args`, waits for the port file and sets host/port (cleans up if it fails)."""
        self._launch(args, serve_env(env), self.port_file, "faultline")

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def request(self, method, path, body=None, headers=None, raw=None, timeout=10):
        """Returns (status, parsed JSON or text, response headers dict)."""
        r = call(self, method, path, body, raw=raw, headers=headers, timeout=timeout)
        try:
            parsed = json.loads(r.text) if r.text.strip() else None
        except ValueError:
            parsed = r.text
        return r.status, parsed, r.headers

    def create_proxy(self, name, upstream, listen="127.0.0.1:0", **extra):
        body = {"name": name, "listen": listen, "upstream": upstream}
        body.update(extra)
        status, proxy, _ = self.request("POST", "/proxies", body)
        if status != 201:
            raise RuntimeError(f"create {name} failed: {status} {proxy}")
        return proxy


class ReplayServer(ManagedProcess):
    """`faultline replay server --listen 127.0.0.1:0 ARGS...` (e.g. "--journal", DIR) on a free port."""

    def __init__(self, *args, env=None):
        self.tmp = tempfile.mkdtemp(prefix="faultline-replay-")
        port_file = os.path.join(self.tmp, "addr")
        self._launch([BIN, "replay", "server", "--listen", "127.0.0.1:0", "--port-file", port_file] + list(args),
                     serve_env(env), port_file, "faultline replay server")


class Serve(Faultline):
    """`faultline serve` with exactly the given flags (plus --port-file), same API as Faultline."""

    def __init__(self, args, env=None, port_file_flag="--port-file"):
        self.tmp = tempfile.mkdtemp(prefix="faultline-test-")
        self.port_file = os.path.join(self.tmp, "api.addr")
        self._start([BIN, "serve"] + list(args) + [port_file_flag, self.port_file], env)


class RedisServer(ManagedProcess):
    """redis-server on 127.0.0.1, a free port, no persistence, in a temp dir; `extra_args` are
    more redis-server options (e.g. "--requirepass", "secret")."""

    stop_timeout = 10

    def __init__(self, *extra_args):
        self.bin = need("redis-server", "redis-server (apt package redis-server)")
        self.tmp = tempfile.mkdtemp(prefix="faultline-redis-")
        self.log = open(os.path.join(self.tmp, "redis.log"), "w+")
        last = None
        for _ in range(3):  # a free port can be taken in between: retry a couple of times
            self.port = free_port()
            self.proc = subprocess.Popen(
                [self.bin, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.tmp, "--daemonize", "no",
                 "--protected-mode", "yes"] + list(extra_args),
                stdout=self.log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                        s.sendall(b"PING\r\n")
                        # +PONG, or -NOAUTH with requirepass: either way it is serving.
                        if s.recv(100).startswith((b"+PONG", b"-NOAUTH")):
                            return
                except OSError as e:
                    last = e
                time.sleep(0.05)
            self.stop()
        raise RuntimeError(f"redis-server did not start ({last}): {self.logs()}")

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"


def run_serve_expect_exit(args, config=None, timeout=10):
    """Runs `faultline serve --host 127.0.0.1 --port 0 --port-file F [--config C] ARGS`, expecting it
    to exit by itself. Returns (returncode or None on timeout, output, port_file_written, seconds)."""
    tmp = tempfile.mkdtemp(prefix="faultline-test-")
    try:
        port_file = os.path.join(tmp, "api.addr")
        cmd = serve_command(tmp, port_file, config)
        start = time.monotonic()
        proc = subprocess.Popen(cmd + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=serve_env())
        try:
            out, _ = proc.communicate(timeout=timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            rc = None
        return rc, out.decode("utf-8", "replace"), os.path.exists(port_file), time.monotonic() - start
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# /metrics

_METRIC_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text format -> list of (name, {labels}, float value)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _METRIC_RE.match(line)
        if not m:
            continue
        labels = dict(_LABEL_RE.findall(m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def _matching(samples, name, labels):
    return [v for n, l, v in samples if n == name and all(l.get(k) == str(w) for k, w in labels.items())]


def metric_value(samples, name, **labels):
    """The value of the one sample of `name` whose labels include `labels`, or None."""
    found = _matching(samples, name, labels)
    if len(found) > 1:
        raise AssertionError(f"{len(found)} samples of {name} match {labels}")
    return found[0] if found else None


def metrics_text(fl):
    status, text, _ = fl.request("GET", "/metrics")
    return text if isinstance(text, str) else str(text)


def metric(fl, name, **labels):
    """GET /metrics: the sum of the samples `name` whose labels include `labels`; None if none."""
    status, text, _ = fl.request("GET", "/metrics")
    if status != 200:
        raise AssertionError(f"GET /metrics -> {status}: {text!r}")
    if not isinstance(text, str):
        raise AssertionError(f"GET /metrics body is not text: {text!r}")
    found = _matching(parse_metrics(text), name, labels)
    if not found:
        return None
    return sum(found)


# ---------------------------------------------------------------------------------------------
# Loopback TCP servers

class ThreadedServer:
    """A TCP server on loopback (port 0 unless given): each accepted connection goes to
    on_accept(conn), which by default runs handle(conn) in a thread of its own and then closes
    the connection. `accepted` counts the connections."""

    backlog = 1024
    conn_timeout = None  # socket timeout set on each accepted connection (None: blocking)

    def __init__(self, family=socket.AF_INET, host="127.0.0.1", port=0):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(self.backlog)
        self.port = self.sock.getsockname()[1]
        self.host = host
        self.accepted = 0
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self):
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def _serve(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.on_accept(conn)

    def on_accept(self, conn):
        threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        try:
            if self.conn_timeout is not None:
                conn.settimeout(self.conn_timeout)
            self.handle(conn)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def handle(self, conn):
        raise NotImplementedError

    def close(self):
        self._stop = True
        # shutdown() wakes the accept() blocked in _serve; close() alone does not, and that
        # thread would later accept (and handle as this server) a connection meant for the
        # next server given the same descriptor number.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class EchoServer(ThreadedServer):
    """A threaded TCP echo server on loopback, port 0 unless given. Echoes until EOF, then
    half-closes."""

    def handle(self, conn):
        while True:
            data = conn.recv(262144)
            if not data:
                break
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)


# ---------------------------------------------------------------------------------------------
# Sockets

def free_port():
    """A port that was free a moment ago (for tests that need a closed port)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_listening(proc, port, timeout=10):
    """True once 127.0.0.1:port accepts a connection; False if `proc` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def connect(address, timeout=10):
    """A connected socket to HOST:PORT or [V6]:PORT; closed again when connect() fails."""
    host, port = split_hostport(address)
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


def try_connect(host, port, timeout=2.0, family=socket.AF_INET):
    """Returns ("ok", sock) | ("refused", None) | ("timeout", None) | ("error:<e>", None)."""
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        return "ok", s
    except ConnectionRefusedError:
        s.close()
        return "refused", None
    except socket.timeout:
        s.close()
        return "timeout", None
    except OSError as e:
        s.close()
        return f"error:{errno.errorcode.get(e.errno, e.errno)}", None


def connect_outcome(host, port, timeout=2.0, family=socket.AF_INET):
    """try_connect's kind alone; a socket that connected is closed at once."""
    kind, s = try_connect(host, port, timeout=timeout, family=family)
    if s is not None:
        s.close()
    return kind


def recv_exactly(sock, n):
    """Reads until n bytes came (never more) or EOF."""
    chunks, got = [], 0
    while got < n:
        data = sock.recv(min(262144, n - got))
        if not data:
            break
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


def recv_at_least(sock, n):
    """Reads in 64 KiB recv()s until at least n bytes came (all that the last recv() gave) or EOF."""
    got = bytearray()
    while len(got) < n:
        data = sock.recv(65536)
        if not data:
            break
        got += data
    return bytes(got)


def recv_until(sock, marker, timeout=10):
    """Reads until `marker` is in what came (returns all of it); fails on EOF or after `timeout` s."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    got = b""
    while marker not in got:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {marker!r} within {timeout} s; got {got[-200:]!r}")
        data = sock.recv(65536)
        if not data:
            raise AssertionError(f"EOF before {marker!r}; got {got[-200:]!r}")
        got += data
    return got


def recv_all(sock):
    chunks = []
    while True:
        data = sock.recv(262144)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def echo_roundtrip(address, payload, timeout=5.0):
    """Connect, send payload, read len(payload) back, close. Returns (echoed_bytes, seconds)."""
    start = time.monotonic()
    s = connect(address, timeout=timeout)
    try:
        s.sendall(payload)
        return recv_at_least(s, len(payload)), time.monotonic() - start
    finally:
        s.close()


def wait_end(sock, timeout, upto=None):
    """Reads (keeping the data) until the socket ends, `timeout` passes or, with `upto`, that
    many bytes came. Returns (how, elapsed_s, data), how being "eof", "reset" (ECONNRESET,
    ECONNABORTED or EPIPE), "open" (still open after timeout), "data" (`upto` bytes came) or
    "error:<errno name>"."""
    start = time.monotonic()
    deadline = start + timeout
    data = bytearray()
    while upto is None or len(data) < upto:
        left = deadline - time.monotonic()
        if left <= 0:
            return "open", time.monotonic() - start, bytes(data)
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536 if upto is None else upto - len(data))
        except socket.timeout:
            return "open", time.monotonic() - start, bytes(data)
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            return "reset", time.monotonic() - start, bytes(data)
        except OSError as e:
            return f"error:{errno.errorcode.get(e.errno, e.errno)}", time.monotonic() - start, bytes(data)
        if not chunk:
            return "eof", time.monotonic() - start, bytes(data)
        data += chunk
    return "data", time.monotonic() - start, bytes(data)
