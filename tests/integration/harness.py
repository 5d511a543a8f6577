"""Shared helpers for faultline's integration tests (stdlib only).

Every test starts its own `faultline serve` on 127.0.0.1 with API port 0 and reads the
bound address from --port-file. Peers (echo servers, redis-server, ...) bind port 0 too.
Nothing here talks to any address outside loopback.
"""
import http.client
import json
import os
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


class Faultline:
    """A running `faultline serve` process with a small API client."""

    def __init__(self, *extra_args, env=None, config=None):
        self.tmp = tempfile.mkdtemp(prefix="faultline-test-")
        self.port_file = os.path.join(self.tmp, "api.addr")
        args = [BIN, "serve", "--host", "127.0.0.1", "--port", "0", "--port-file", self.port_file]
        if config is not None:
            path = os.path.join(self.tmp, "config.json")
            with open(path, "w") as f:
                f.write(config if isinstance(config, str) else json.dumps(config))
            args += ["--config", path]
        args += list(extra_args)
        full_env = dict(os.environ)
        full_env.setdefault("LOG_LEVEL", "warn")
        if env:
            full_env.update(env)
        self.log = open(os.path.join(self.tmp, "server.log"), "w+")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=full_env)
        deadline = time.time() + 15
        while time.time() < deadline:
            if os.path.exists(self.port_file):
                with open(self.port_file) as f:
                    text = f.read().strip()
                if text:
                    host, port = text.rsplit(":", 1)
                    self.host, self.port = host.strip("[]"), int(port)
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"faultline exited with {self.proc.returncode}: {self.logs()}")
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("faultline did not write its port file within 15 s")

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def logs(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def request(self, method, path, body=None, headers=None, raw=None, timeout=10):
        """Returns (status, parsed JSON or text, response headers dict)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        hdrs = {"User-Agent": "faultline-tests"}
        if headers:
            hdrs.update(headers)
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        text = resp.read().decode("utf-8", "replace")
        resp_headers = {k.lower(): v for k, v in resp.getheaders()}
        conn.close()
        try:
            parsed = json.loads(text) if text.strip() else None
        except ValueError:
            parsed = text
        return resp.status, parsed, resp_headers

    def create_proxy(self, name, upstream, listen="127.0.0.1:0", **extra):
        body = {"name": name, "listen": listen, "upstream": upstream}
        body.update(extra)
        status, proxy, _ = self.request("POST", "/proxies", body)
        if status != 201:
            raise RuntimeError(f"create {name} failed: {status} {proxy}")
        return proxy

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def split_hostport(text):
    host, port = text.rsplit(":", 1)
    return host.strip("[]"), int(port)


class EchoServer:
    """A threaded TCP echo server on loopback, port 0. Echoes until EOF, then half-closes."""

    def __init__(self, family=socket.AF_INET, host="127.0.0.1"):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(1024)
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
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn):
        try:
            while True:
                data = conn.recv(262144)
                if not data:
                    break
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def free_port():
    """A port that was free a moment ago (for tests that need a closed port)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def connect(address, timeout=10):
    host, port = split_hostport(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((host, port))
    return s


def recv_exactly(sock, n):
    chunks, got = [], 0
    while got < n:
        data = sock.recv(min(262144, n - got))
        if not data:
            break
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


def recv_all(sock):
    chunks = []
    while True:
        data = sock.recv(262144)
        if not data:
            return b"".join(chunks)
        chunks.append(data)
