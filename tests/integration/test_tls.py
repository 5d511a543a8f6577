"""TLS on proxies (docs/tls.md) with real peers: openssl makes a test CA and server
certificates, Python's ssl module serves HTTPS upstreams, curl and `openssl s_client` are the
clients, and `faultline ca init` makes the CA that mints certificates.

- originate: an `http` proxy to an https:// upstream (tls.upstream: ca, verify, server_name),
  failures as 502s, log lines and faultline_tls_handshake_failures_total;
- terminate: tls.listen.mint with the CA of `faultline ca init`, and tls.listen.cert/key on a
  `tcp` proxy;
- both at once: HTTP faults act on the decrypted traffic; 1 MiB bodies pass unchanged;
- handshake failures of every reason and timeouts, counted and logged;
- ends of connections: a clean end on one side is a close_notify on the other, a truncated
  TLS end stays one.

Run standalone: FAULTLINE_BIN=build/faultline python3 -u tests/integration/test_tls.py
Needs openssl and curl on PATH. Loopback only, port 0 everywhere.
"""
import calendar
import hashlib
import http.server
import itertools
import os
import random
import re
import select
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN, EchoServer, Faultline, ThreadedServer, connect, metric, need, poll, recv_exactly, wait_end  # noqa: E402

MIB = 1 << 20
DATA = random.Random(20250101).randbytes(MIB)  # non-repeating: a lost or moved piece shows
HELLO = b"hello over tls\n"
FAILURES = "faultline_tls_handshake_failures_total"
REASONS = ("verification", "protocol", "sni", "closed", "other")
_names = itertools.count(1)


def unique(prefix):
    return f"{prefix}{next(_names)}"


def sha(data):
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# Test PKI, made with the openssl CLI

OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = ${ENV::SAN}
authorityKeyIdentifier = keyid
"""


class Pki:
    """A test CA (ca.pem) and leaves it signed, in a temp dir."""

    def __init__(self, openssl):
        self.openssl = openssl
        self.dir = tempfile.mkdtemp(prefix="faultline-tls-pki-")
        self.cnf = self.path("openssl.cnf")
        with open(self.cnf, "w") as f:
            f.write(OPENSSL_CNF)
        self.ca = self.path("ca.pem")
        self.ca_key = self.path("ca.key")
        self.run("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", self.ca_key, "-out", self.ca, "-days", "2", "-sha256",
                 "-subj", "/CN=faultline test upstream CA", "-extensions", "ca", san="DNS:unused")

    def path(self, name):
        return os.path.join(self.dir, name)

    def run(self, *args, san="DNS:unused"):
        env = dict(os.environ, SAN=san, OPENSSL_CONF=self.cnf)
        p = subprocess.run([self.openssl, *args, *(["-config", self.cnf] if args[0] == "req" else [])],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                           env=env, timeout=30)
        if p.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)} failed: {p.stderr.decode(errors='replace')}")
        return p.stdout.decode(errors="replace")

    def leaf(self, name, san, issuer=None, extensions="leaf"):
        """Writes NAME.pem (certificate) and NAME.key, signed by the CA (or by `issuer`, a
        (cert, key) pair); returns both paths. The CN is the first name of `san`."""
        cert, key, csr = self.path(name + ".pem"), self.path(name + ".key"), self.path(name + ".csr")
        ca, ca_key = issuer or (self.ca, self.ca_key)
        self.run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", key, "-out", csr, "-subj", "/CN=" + san.split(",")[0].split(":", 1)[1], san=san)
        self.run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
                 "-set_serial", "0x" + os.urandom(12).hex(), "-days", "2", "-sha256",
                 "-extfile", self.cnf, "-extensions", extensions, "-out", cert, san=san)
        return cert, key

    def chain(self, name, san):
        """A leaf signed by an intermediate CA (itself signed by the CA): returns (file holding
        the leaf then the intermediate, key)."""
        inter = self.leaf(name + "-inter", "DNS:faultline test intermediate", extensions="ca")
        cert, key = self.leaf(name, san, issuer=inter)
        both = self.path(name + "-chain.pem")
        with open(both, "w") as out:
            for part in (cert, inter[0]):
                with open(part) as f:
                    out.write(f.read())
        return both, key

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# HTTP(S) upstreams: python's ThreadingHTTPServer, TLS when given a certificate

class Upstream(http.server.ThreadingHTTPServer):
    """127.0.0.1:0; HTTPS when cert/key are given. Records each request and, per TLS
    connection, the SNI name (None when none was sent) and the ALPN protocol agreed."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, cert=None, key=None):
        self.lock = threading.Lock()
        self.requests = []    # (method, path, sha256 of the body)
        self.snis = []
        self.alpns = []
        self.errors = []
        self.tls = cert is not None
        super().__init__(("127.0.0.1", 0), Handler)
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            ctx.set_alpn_protocols(["http/1.1"])
            ctx.sni_callback = self._sni
            self.socket = ctx.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def _sni(self, sslsock, name, ctx):
        with self.lock:
            self.snis.append(name)

    @property
    def port(self):
        return self.server_address[1]

    def seen(self, path=None):
        with self.lock:
            return [r for r in self.requests if path is None or r[1] == path]

    def handle_error(self, request, client_address):
        with self.lock:
            self.errors.append(sys.exc_info()[1])

    def close(self):
        self.shutdown()
        self.server_close()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def setup(self):
        self.request.settimeout(15)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
            with self.server.lock:
                self.server.alpns.append(self.request.selected_alpn_protocol())
        super().setup()

    def reply(self, status, body, ctype="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with self.server.lock:
            self.server.requests.append(("GET", self.path, sha(b"")))
        if self.path == "/":
            self.reply(200, HELLO)
        elif self.path == "/big":
            self.reply(200, DATA, "application/octet-stream")
        else:
            self.reply(404, b"not here\n")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            self.server.requests.append(("POST", self.path, sha(body)))
        self.reply(200, body, "application/octet-stream")


# ---------------------------------------------------------------------------------------------
# Module fixtures: made once, on first use

class Fixtures:
    def __init__(self):
        self.openssl = need("openssl", "openssl (apt package openssl)")
        self.curl_bin = need("curl", "curl (apt package curl)")
        self.closers = []
        self.pki = Pki(self.openssl)
        self.closers.append(self.pki.close)
        self.local_cert, self.local_key = self.pki.leaf("localhost", "DNS:localhost,IP:127.0.0.1")
        self.other_cert, self.other_key = self.pki.leaf("other", "DNS:other.example.test")
        self.wild_cert, self.wild_key = self.pki.leaf("wild", "DNS:*.example.test,DNS:api*.partial.test")
        self.https = self.upstream(self.local_cert, self.local_key)      # cert for localhost, 127.0.0.1
        self.https_other = self.upstream(self.other_cert, self.other_key)  # cert for other.example.test
        self.https_wild = self.upstream(self.wild_cert, self.wild_key)
        self.plain = self.upstream()
        # `faultline ca init`, the way a user makes the minting CA.
        self.ca_parent = tempfile.mkdtemp(prefix="faultline-tls-ca-")
        self.closers.append(lambda: shutil.rmtree(self.ca_parent, ignore_errors=True))
        self.ca_dir = os.path.join(self.ca_parent, "ca")
        self.ca_init = subprocess.run([BIN, "ca", "init", "--dir", self.ca_dir], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=30)
        self.minting_ca = os.path.join(self.ca_dir, "ca.pem")

    def upstream(self, cert=None, key=None):
        u = Upstream(cert, key)
        self.closers.append(u.close)
        return u

    def close(self):
        for c in reversed(self.closers):
            c()


_fixtures = None


def fixtures():
    global _fixtures
    if _fixtures is None:
        _fixtures = Fixtures()
    return _fixtures


def tearDownModule():
    if _fixtures is not None:
        _fixtures.close()


class CurlResult:
    def __init__(self, proc, body, head):
        self.rc = proc.returncode
        self.headers = {}  # of the last response, names lower-cased
        blocks = [b for b in head.decode("latin-1").split("\r\n\r\n") if b]
        for line in (blocks[-1] if blocks else "").split("\r\n")[1:]:
            key, sep, value = line.partition(":")
            if sep:
                self.headers[key.strip().lower()] = value.strip()
        self.stderr = proc.stderr.decode(errors="replace")
        fields = proc.stdout.decode().split()
        self.status = int(fields[0]) if fields and fields[0].isdigit() else 0
        self.http_version = fields[1] if len(fields) > 1 else ""
        self.body = body

    def __repr__(self):
        return f"<curl rc={self.rc} status={self.status} body={self.body[:200]!r} stderr={self.stderr!r}>"


class TlsCase(unittest.TestCase):
    fl = None

    @classmethod
    def setUpClass(cls):
        cls.fx = fixtures()

    def curl(self, url, *args, timeout=40):
        """curl URL (no curlrc, no proxy, no CA variables from our environment). Returns a
        CurlResult: rc, status, http_version, body, stderr."""
        env = {k: v for k, v in os.environ.items()
               if k.lower() not in ("curl_ca_bundle", "ssl_cert_file", "ssl_cert_dir", "http_proxy",
                                    "https_proxy", "all_proxy", "no_proxy")}
        tmp = tempfile.mkdtemp(prefix="faultline-tls-curl-")
        try:
            out, head = os.path.join(tmp, "body"), os.path.join(tmp, "head")
            p = subprocess.run([self.fx.curl_bin, "-q", "-sS", "--noproxy", "*", "--max-time", "30",
                                "-o", out, "-D", head, "-w", "%{http_code} %{http_version}", *args, url],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               env=env, timeout=timeout)
            body, head_bytes = b"", b""
            if os.path.exists(out):
                with open(out, "rb") as f:
                    body = f.read()
            if os.path.exists(head):
                with open(head, "rb") as f:
                    head_bytes = f.read()
            return CurlResult(p, body, head_bytes)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def proxy(self, fl, prefix, upstream, **extra):
        return make_proxy(fl, prefix, upstream, **extra)

    def failures(self, fl, name, side):
        """{reason: count} of faultline_tls_handshake_failures_total for one proxy and side."""
        return {r: metric(fl, FAILURES, proxy=name, side=side, reason=r) for r in REASONS}

    def wait_failure(self, fl, name, side, reason, count=1):
        """Polls until the counter reaches `count`; returns all reasons of that side."""
        poll(lambda: metric(fl, FAILURES, proxy=name, side=side, reason=reason),
             lambda v: v is not None and v >= count, timeout=10)
        return self.failures(fl, name, side)

    def expect_failures(self, fl, name, side, reason, count=1):
        want = {r: (count if r == reason else 0) for r in REASONS}
        self.assertEqual(self.wait_failure(fl, name, side, reason, count), want,
                         f"{FAILURES}{{proxy={name},side={side}}}")

    def wait_log(self, fl, needle, timeout=10):
        text = poll(fl.logs, lambda t: needle in t, timeout=timeout)
        self.assertIn(needle, text, "faultline's log")
        return text


def make_proxy(fl, prefix, upstream, **extra):
    """Creates a proxy named PREFIX<n> on 127.0.0.1:0; returns (name, listen address)."""
    name = unique(prefix)
    p = fl.create_proxy(name, upstream, **extra)
    return name, p["listen"]


def port_of(listen):
    return int(listen.rsplit(":", 1)[1])


# ---------------------------------------------------------------------------------------------
# 1. Originate: plain HTTP from the client, TLS to the upstream

class OriginateTests(TlsCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.fl = Faultline()

    @classmethod
    def tearDownClass(cls):
        cls.fl.__exit__()

    def test_trusted_ca_gets_the_body_and_faults_still_apply(self):
        up = self.fx.https
        name, listen = self.proxy(self.fl, "orig", f"https://localhost:{up.port}", protocol="http",
                                  tls={"upstream": {"ca": self.fx.pki.ca}})
        before = len(up.seen("/"))
        r = self.curl(f"http://{listen}/")
        self.assertEqual((r.rc, r.status, r.body), (0, 200, HELLO), r)
        self.assertEqual(len(up.seen("/")), before + 1, "the request reached the HTTPS upstream")
        with up.lock:
            self.assertIn("localhost", up.snis, "SNI is the upstream host")
            self.assertEqual(up.alpns[-1], "http/1.1", "faultline offers ALPN http/1.1")
        self.assertEqual(self.failures(self.fl, name, "upstream"), {r: 0 for r in REASONS})

        code, resp, _ = self.fl.request("POST", f"/proxies/{name}/toxics", {
            "name": "limit", "type": "http_abort",
            "attributes": {"status": 429, "headers": {"Retry-After": "2"}, "body": "slow down"}})
        self.assertEqual(code, 200, resp)
        before = len(up.seen("/"))
        r = self.curl(f"http://{listen}/")
        self.assertEqual((r.rc, r.status, r.body), (0, 429, b"slow down"), r)
        self.assertEqual(len(up.seen("/")), before, "an aborted request is not forwarded")
        self.assertEqual(metric(self.fl, "faultline_toxic_messages_total", proxy=name, toxic="limit"), 1)

    def test_system_store_rejects_the_test_ca(self):
        up = self.fx.https
        upstream = f"https://localhost:{up.port}"
        name, listen = self.proxy(self.fl, "sys", upstream, protocol="http")
        before = len(up.seen())
        r = self.curl(f"http://{listen}/")
        self.assertEqual((r.rc, r.status), (0, 502), r)
        text = r.body.decode()
        self.assertIn(f"upstream {upstream}", text)
        self.assertIn("certificate verify failed: unable to get local issuer certificate", text)
        self.wait_log(self.fl, f"proxy {name}: TLS handshake with upstream {upstream} failed: "
                               "certificate verify failed: unable to get local issuer certificate")
        self.expect_failures(self.fl, name, "upstream", "verification")
        self.assertEqual(len(up.seen()), before, "no request went over the rejected connection")

    def test_verify_false_accepts_any_certificate(self):
        # No CA given and a certificate for another name: only verify=false gets through.
        up = self.fx.https_other
        name, listen = self.proxy(self.fl, "noverify", f"https://localhost:{up.port}", protocol="http",
                                  tls={"upstream": {"verify": False}})
        r = self.curl(f"http://{listen}/")
        self.assertEqual((r.rc, r.status, r.body), (0, 200, HELLO), r)
        self.assertEqual(self.failures(self.fl, name, "upstream"), {r: 0 for r in REASONS})

    def test_hostname_mismatch_is_a_502_with_the_reason(self):
        up = self.fx.https_other  # its certificate names other.example.test only
        upstream = f"https://localhost:{up.port}"
        name, listen = self.proxy(self.fl, "mismatch", upstream, protocol="http",
                                  tls={"upstream": {"ca": self.fx.pki.ca}})
        r = self.curl(f"http://{listen}/")
        self.assertEqual((r.rc, r.status), (0, 502), r)
        self.assertIn("certificate verify failed: hostname mismatch (expected localhost)", r.body.decode())
        self.wait_log(self.fl, f"proxy {name}: TLS handshake with upstream {upstream} failed: "
                               "certificate verify failed: hostname mismatch (expected localhost)")
        self.expect_failures(self.fl, name, "upstream", "verification")

        # server_name names what the certificate says: the same upstream is accepted.
        name, listen = self.proxy(self.fl, "sname", upstream, protocol="http",
                                  tls={"upstream": {"ca": self.fx.pki.ca, "server_name": "other.example.test"}})
        r = self.curl(f"http://{listen}/")
        self.assertEqual((r.rc, r.status, r.body), (0, 200, HELLO), r)
        with up.lock:
            self.assertEqual(up.snis[-1], "other.example.test", "server_name is sent as SNI")

    def test_ip_upstream_sends_no_sni_and_checks_ip_san(self):
        up = self.fx.https  # SAN has IP:127.0.0.1
        with up.lock:
            snis = len(up.snis)
        name, listen = self.proxy(self.fl, "ip", f"https://127.0.0.1:{up.port}", protocol="http",
                                  tls={"upstream": {"ca": self.fx.pki.ca}})
        r = self.curl(f"http://{listen}/")
        self.assertEqual((r.rc, r.status, r.body), (0, 200, HELLO), r)
        with up.lock:
            self.assertEqual(up.snis[snis:], [None], "no SNI for an IP address")
        # The certificate of other.example.test has no IP SAN: rejected.
        upstream = f"https://127.0.0.1:{self.fx.https_other.port}"
        name, listen = self.proxy(self.fl, "ipbad", upstream, protocol="http",
                                  tls={"upstream": {"ca": self.fx.pki.ca}})
        r = self.curl(f"http://{listen}/")
        self.assertEqual(r.status, 502, r)
        self.assertIn("certificate verify failed", r.body.decode())
        self.expect_failures(self.fl, name, "upstream", "verification")

    def test_wildcards_cover_one_whole_label(self):
        up = self.fx.https_wild  # *.example.test and api*.partial.test
        cases = [("api.example.test", 200), ("a.b.example.test", 502), ("example.test", 502),
                 ("api1.partial.test", 502)]
        for server_name, want in cases:
            with self.subTest(server_name=server_name):
                name, listen = self.proxy(self.fl, "wild", f"https://127.0.0.1:{up.port}", protocol="http",
                                          tls={"upstream": {"ca": self.fx.pki.ca, "server_name": server_name}})
                r = self.curl(f"http://{listen}/")
                self.assertEqual(r.status, want, r)
                if want == 502:
                    self.assertIn(f"hostname mismatch (expected {server_name})", r.body.decode())

    def test_ssl_cert_file_overrides_the_system_store(self):
        up = self.fx.https
        with Faultline(env={"SSL_CERT_FILE": self.fx.pki.ca}) as fl:
            name, listen = self.proxy(fl, "certfile", f"https://localhost:{up.port}", protocol="http")
            r = self.curl(f"http://{listen}/")
            self.assertEqual((r.rc, r.status, r.body), (0, 200, HELLO), r)

    def test_tcp_proxy_originates_too(self):
        # Bytes, not HTTP: a failure closes the connection instead of answering 502.
        up = self.fx.https
        name, listen = self.proxy(self.fl, "tcporig", f"https://localhost:{up.port}",
                                  tls={"upstream": {"ca": self.fx.pki.ca}})
        r = self.curl(f"http://{listen}/")
        self.assertEqual((r.rc, r.status, r.body), (0, 200, HELLO), r)
        name, listen = self.proxy(self.fl, "tcpsys", f"https://localhost:{up.port}")
        r = self.curl(f"http://{listen}/")
        self.assertNotEqual(r.rc, 0, r)
        self.assertEqual(r.status, 0, r)
        self.expect_failures(self.fl, name, "upstream", "verification")

    def test_update_keeps_tls_unless_given(self):
        name, listen = self.proxy(self.fl, "upd", f"https://localhost:{self.fx.https_other.port}", protocol="http",
                                  tls={"upstream": {"ca": self.fx.pki.ca}})
        self.assertEqual(self.curl(f"http://{listen}/").status, 502)
        # A new upstream, tls left alone: the CA stays.
        code, resp, _ = self.fl.request("POST", f"/proxies/{name}", {"upstream": f"https://localhost:{self.fx.https.port}"})
        self.assertEqual(code, 200, resp)
        self.assertEqual(resp.get("tls"), {"upstream": {"ca": self.fx.pki.ca}}, resp)
        r = self.curl(f"http://{listen}/")
        self.assertEqual((r.status, r.body), (200, HELLO), r)
        # A new tls object replaces the old one: the system store again.
        code, resp, _ = self.fl.request("POST", f"/proxies/{name}", {"tls": {"upstream": {"verify": True}}})
        self.assertEqual(code, 200, resp)
        r = self.curl(f"http://{listen}/")
        self.assertEqual(r.status, 502, r)
        self.assertIn("certificate verify failed", r.body.decode())

    def test_bad_upstream_options_are_400s(self):
        missing = os.path.join(self.fx.pki.dir, "no-such-ca.pem")
        port = self.fx.https.port
        name = unique("badca")
        code, resp, _ = self.fl.request("POST", "/proxies", {
            "name": name, "listen": "127.0.0.1:0", "upstream": f"https://localhost:{port}", "protocol": "http",
            "tls": {"upstream": {"ca": missing}}})
        self.assertEqual(code, 400, resp)
        self.assertIn("tls.upstream", str(resp))
        self.assertIn(missing, str(resp))
        self.assertIn("No such file", str(resp))
        self.assertEqual(self.fl.request("GET", f"/proxies/{name}")[0], 404, "not created")

        # A file that is not PEM, and tls.upstream on a plain upstream.
        code, resp, _ = self.fl.request("POST", "/proxies", {
            "name": name, "listen": "127.0.0.1:0", "upstream": f"https://localhost:{port}",
            "tls": {"upstream": {"ca": self.fx.pki.cnf}}})
        self.assertEqual(code, 400, resp)
        self.assertIn(self.fx.pki.cnf, str(resp))
        code, resp, _ = self.fl.request("POST", "/proxies", {
            "name": name, "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{port}",
            "tls": {"upstream": {"ca": self.fx.pki.ca}}})
        self.assertEqual(code, 400, resp)
        self.assertIn("https://", str(resp))


# ---------------------------------------------------------------------------------------------
# 2. Terminate with certificates minted by the CA of `faultline ca init`

class MintTests(TlsCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.fl = Faultline("--ca-dir", cls.fx.ca_dir)

    @classmethod
    def tearDownClass(cls):
        cls.fl.__exit__()

    def s_client(self, port, *args):
        p = subprocess.run([self.fx.openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-showcerts", *args],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=30)
        return p.returncode, p.stdout.decode(errors="replace")

    def leaf_text(self, s_client_out):
        pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", s_client_out, re.S)
        self.assertIsNotNone(pem, s_client_out)
        p = subprocess.run([self.fx.openssl, "x509", "-noout", "-text", "-fingerprint", "-sha256"],
                           input=pem.group(0).encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout.decode()

    @staticmethod
    def public_key(text):
        return re.search(r"pub:\s*\n((?:\s+[0-9a-f:]+\n)+)", text).group(1)

    @staticmethod
    def cert_time(text, field):
        value = re.search(field + r"\s*:\s*(.+? GMT)", text).group(1)
        return calendar.timegm(time.strptime(re.sub(r"\s+", " ", value), "%b %d %H:%M:%S %Y GMT"))

    def test_ca_init_writes_the_ca(self):
        p = self.fx.ca_init
        self.assertEqual(p.returncode, 0, p.stderr)
        cert, key = os.path.join(self.fx.ca_dir, "ca.pem"), os.path.join(self.fx.ca_dir, "ca-key.pem")
        out = p.stdout.decode()
        self.assertIn(cert, out)
        self.assertIn(key, out)
        self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600)
        text = subprocess.run([self.fx.openssl, "x509", "-in", cert, "-noout", "-text"], stdout=subprocess.PIPE,
                              timeout=30).stdout.decode()
        self.assertIn("Subject: CN = faultline local CA", text)
        self.assertRegex(text, r"Basic Constraints: critical\s+CA:TRUE")
        self.assertRegex(text, r"Key Usage: critical\s+Certificate Sign, CRL Sign")
        self.assertIn("prime256v1", text)
        years = (self.cert_time(text, "Not After") - self.cert_time(text, "Not Before")) / (365.25 * 86400)
        self.assertAlmostEqual(years, 10, delta=0.01, msg="valid for ten years")
        # Never overwritten without --force.
        again = subprocess.run([BIN, "ca", "init", "--dir", self.fx.ca_dir], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(again.returncode, 1, again)
        self.assertIn("--force", again.stderr.decode() + again.stdout.decode())
        self.assertEqual(stat.S_IMODE(os.stat(self.fx.ca_dir).st_mode), 0o700, "a new directory is private")
        bad = subprocess.run([BIN, "ca", "init", "--no-such-option"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(bad.returncode, 2, bad)
        # --force writes a new CA; `ca path` follows FAULTLINE_CA_DIR.
        other = tempfile.mkdtemp(prefix="faultline-tls-ca2-")
        try:
            first = subprocess.run([BIN, "ca", "init", "--dir", other], capture_output=True, timeout=30)
            self.assertEqual(first.returncode, 0, first)
            with open(os.path.join(other, "ca.pem")) as f:
                old = f.read()
            forced = subprocess.run([BIN, "ca", "init", "--dir", other, "--force"], capture_output=True, timeout=30)
            self.assertEqual(forced.returncode, 0, forced)
            with open(os.path.join(other, "ca.pem")) as f:
                self.assertNotEqual(f.read(), old)
            # The default directory: $FAULTLINE_CA_DIR, else $XDG_DATA_HOME/faultline/ca, else
            # ~/.local/share/faultline/ca.
            base = {k: v for k, v in os.environ.items() if k not in ("FAULTLINE_CA_DIR", "XDG_DATA_HOME")}
            for env, want in ((dict(base, FAULTLINE_CA_DIR=other, XDG_DATA_HOME="/x"), other),
                              (dict(base, XDG_DATA_HOME=other), os.path.join(other, "faultline", "ca")),
                              (dict(base, HOME=other), os.path.join(other, ".local", "share", "faultline", "ca"))):
                path = subprocess.run([BIN, "ca", "path"], capture_output=True, timeout=30, env=env)
                self.assertEqual((path.returncode, path.stdout.decode().strip()), (0, want), path)
            # A directory that cannot be made: status 1, saying why.
            blocker = os.path.join(other, "ca.pem")
            failed = subprocess.run([BIN, "ca", "init", "--dir", os.path.join(blocker, "sub")],
                                    capture_output=True, timeout=30)
            self.assertEqual(failed.returncode, 1, failed)
            self.assertIn(blocker, failed.stderr.decode() + failed.stdout.decode())
        finally:
            shutil.rmtree(other, ignore_errors=True)

    def test_curl_trusting_the_ca_gets_the_body(self):
        up = self.fx.plain
        name, listen = self.proxy(self.fl, "mint", f"127.0.0.1:{up.port}", protocol="http",
                                  tls={"listen": {"mint": True}})
        port = port_of(listen)
        r = self.curl(f"https://localhost:{port}/", "--cacert", self.fx.minting_ca,
                      "--resolve", f"localhost:{port}:127.0.0.1")
        self.assertEqual((r.rc, r.status, r.body), (0, 200, HELLO), r)
        self.assertEqual(r.http_version, "1.1", "curl offers h2 and http/1.1; faultline agrees to http/1.1")
        # Another name, the same listener.
        r = self.curl(f"https://api.example.test:{port}/", "--cacert", self.fx.minting_ca,
                      "--resolve", f"api.example.test:{port}:127.0.0.1")
        self.assertEqual((r.rc, r.status, r.body), (0, 200, HELLO), r)
        self.assertEqual(self.failures(self.fl, name, "client"), {r: 0 for r in REASONS})

    def test_s_client_sees_a_minted_leaf(self):
        name, listen = self.proxy(self.fl, "leaf", f"127.0.0.1:{self.fx.plain.port}", protocol="http",
                                  tls={"listen": {"mint": True}})
        port = port_of(listen)
        rc, out = self.s_client(port, "-servername", "api.example.test", "-CAfile", self.fx.minting_ca,
                                "-verify_hostname", "api.example.test", "-verify_return_error")
        self.assertEqual(rc, 0, out)
        self.assertIn("Verify return code: 0 (ok)", out)
        self.assertRegex(out, r"0 s:\s*CN\s*=\s*api\.example\.test")
        self.assertRegex(out, r"i:\s*CN\s*=\s*faultline local CA")
        self.assertRegex(out, r"1 s:\s*CN\s*=\s*faultline local CA", "the CA is sent as a chain certificate")
        leaf = self.leaf_text(out)
        self.assertIn("DNS:api.example.test", leaf)
        self.assertIn("TLS Web Server Authentication", leaf)
        self.assertIn("ecdsa-with-SHA256", leaf)
        self.assertIn("prime256v1", leaf)
        self.assertRegex(leaf, r"Basic Constraints: critical\s+CA:FALSE")
        serial = re.search(r"Serial Number:\s*\n?\s*([0-9a-f:]+)", leaf).group(1).replace(":", "")
        self.assertGreaterEqual(len(serial), 30, f"a random 128-bit serial: {serial}")
        # Valid from an hour ago, for 397 days.
        not_before = self.cert_time(leaf, "Not Before")
        not_after = self.cert_time(leaf, "Not After")
        now = time.time()
        self.assertAlmostEqual(not_before, now - 3600, delta=600)
        self.assertAlmostEqual(not_after, now + 397 * 86400, delta=3600 + 600)
        # Cached per listener: the same name gets the same certificate again.
        rc2, out2 = self.s_client(port, "-servername", "api.example.test")
        self.assertEqual(rc2, 0, out2)
        fingerprint = re.search(r"Fingerprint=(\S+)", leaf).group(1)
        self.assertEqual(re.search(r"Fingerprint=(\S+)", self.leaf_text(out2)).group(1), fingerprint)

        # No SNI: a certificate for localhost, 127.0.0.1 and ::1.
        rc, out = self.s_client(port, "-noservername", "-CAfile", self.fx.minting_ca, "-verify_ip", "127.0.0.1",
                                "-verify_return_error")
        self.assertEqual(rc, 0, out)
        default_leaf = self.leaf_text(out)
        for san in ("DNS:localhost", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1"):
            self.assertIn(san, default_leaf)
        self.assertEqual(self.public_key(default_leaf), self.public_key(leaf), "one key per listener")

        # An IP literal in SNI gets an IP SAN.
        rc, out = self.s_client(port, "-servername", "127.0.0.1", "-CAfile", self.fx.minting_ca,
                                "-verify_ip", "127.0.0.1", "-verify_return_error")
        self.assertEqual(rc, 0, out)
        self.assertIn("IP Address:127.0.0.1", self.leaf_text(out))

        # A client offering only h2 gets no ALPN answer.
        rc, out = self.s_client(port, "-servername", "api.example.test", "-alpn", "h2")
        self.assertEqual(rc, 0, out)
        self.assertIn("No ALPN negotiated", out)
        self.assertEqual(self.failures(self.fl, name, "client"), {r: 0 for r in REASONS})

    def test_python_client_trusting_the_ca(self):
        # An IP address: Python sends no SNI and checks the IP SAN of the default certificate.
        name, listen = self.proxy(self.fl, "pyip", f"127.0.0.1:{self.fx.plain.port}", protocol="http",
                                  tls={"listen": {"mint": True}})
        ctx = ssl.create_default_context(cafile=self.fx.minting_ca)
        with connect(listen) as raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            how, _, data = wait_end(s, 10)
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data)
        self.assertTrue(data.endswith(HELLO), data)

    def test_parallel_clients_many_names(self):
        # Worker threads share the listener's minter: 24 clients at once, 6 names.
        name, listen = self.proxy(self.fl, "many", f"127.0.0.1:{self.fx.plain.port}", protocol="http",
                                  tls={"listen": {"mint": True}})
        ctx = ssl.create_default_context(cafile=self.fx.minting_ca)
        results = [None] * 24

        def one(i):
            host = f"n{i % 6}.example.test"
            try:
                with connect(listen, timeout=20) as raw, ctx.wrap_socket(raw, server_hostname=host) as s:
                    s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                    how, _, data = wait_end(s, 20)
                    results[i] = (s.getpeercert()["subject"], data.endswith(HELLO), data[:12])
            except Exception as e:  # reported below
                results[i] = repr(e)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(40)
        for i, r in enumerate(results):
            self.assertEqual(r, (((("commonName", f"n{i % 6}.example.test"),),), True, b"HTTP/1.1 200"), i)
        self.assertEqual(self.failures(self.fl, name, "client"), {r: 0 for r in REASONS})

    def test_curl_without_the_ca_is_refused_and_counted(self):
        name, listen = self.proxy(self.fl, "untrusted", f"127.0.0.1:{self.fx.plain.port}", protocol="http",
                                  tls={"listen": {"mint": True}})
        port = port_of(listen)
        before = len(self.fx.plain.seen())
        r = self.curl(f"https://localhost:{port}/", "--resolve", f"localhost:{port}:127.0.0.1")
        self.assertEqual(r.rc, 60, r)  # CURLE_PEER_FAILED_VERIFICATION
        # The CA comes along as a chain certificate, so that is what curl names.
        self.assertIn("SSL certificate problem: self-signed certificate in certificate chain", r.stderr)
        # curl (OpenSSL) answers an unknown issuer with the alert "unknown ca".
        self.expect_failures(self.fl, name, "client", "verification")
        self.wait_log(self.fl, f"proxy {name}: TLS handshake with client 127.0.0.1:")
        self.wait_log(self.fl, "failed: peer rejected the certificate (tlsv1 alert unknown ca)")
        self.assertEqual(len(self.fx.plain.seen()), before, "nothing reached the upstream")

    def test_plain_http_to_the_tls_port(self):
        name, listen = self.proxy(self.fl, "plain", f"127.0.0.1:{self.fx.plain.port}", protocol="http",
                                  tls={"listen": {"mint": True}})
        r = self.curl(f"http://{listen}/")
        self.assertNotEqual(r.rc, 0, r)
        self.expect_failures(self.fl, name, "client", "protocol")
        self.wait_log(self.fl, "failed: plain HTTP sent to a TLS port")

    def test_tls_versions_and_bad_names(self):
        name, listen = self.proxy(self.fl, "versions", f"127.0.0.1:{self.fx.plain.port}", protocol="http",
                                  tls={"listen": {"mint": True}})
        port = port_of(listen)
        for version in ("1.2", "1.3"):
            r = self.curl(f"https://localhost:{port}/", "--cacert", self.fx.minting_ca,
                          "--resolve", f"localhost:{port}:127.0.0.1", f"--tlsv{version}", "--tls-max", version)
            self.assertEqual((r.rc, r.status, r.body), (0, 200, HELLO), (version, r))
        # TLS 1.1 (allowed on the client side by security level 0): refused.
        rc, out = self.s_client(port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
        self.assertNotEqual(rc, 0, out)
        self.assertIn("alert protocol version", out)
        self.wait_log(self.fl, f"proxy {name}: TLS handshake with client 127.0.0.1:")
        self.wait_log(self.fl, "failed: TLS version mismatch (unsupported protocol; faultline needs TLS 1.2 or later)")
        self.expect_failures(self.fl, name, "client", "protocol")
        # A name no certificate can be minted for.
        rc, out = self.s_client(port, "-servername", "bad!name")
        self.assertNotEqual(rc, 0, out)
        self.assertIn("unrecognized name", out)
        self.wait_log(self.fl, "failed: no certificate for the requested server name")
        self.assertEqual(self.wait_failure(self.fl, name, "client", "sni")["sni"], 1)
        # A connection closed before its handshake ends.
        with connect(listen) as s:
            s.sendall(b"\x16\x03\x01\x02\x00\x01")
        self.assertEqual(self.wait_failure(self.fl, name, "client", "closed")["closed"], 1)

    def test_serve_mints_with_the_default_ca_dir(self):
        # No --ca-dir: serve uses the directory `faultline ca init` writes by default.
        with Faultline(env={"FAULTLINE_CA_DIR": self.fx.ca_dir}) as fl:
            name, listen = self.proxy(fl, "default", f"127.0.0.1:{self.fx.plain.port}", protocol="http",
                                      tls={"listen": {"mint": True}})
            port = port_of(listen)
            r = self.curl(f"https://localhost:{port}/", "--cacert", self.fx.minting_ca,
                          "--resolve", f"localhost:{port}:127.0.0.1")
            self.assertEqual((r.rc, r.status, r.body), (0, 200, HELLO), r)

    def test_mint_without_a_ca_is_a_400_telling_to_run_ca_init(self):
        empty = tempfile.mkdtemp(prefix="faultline-tls-noca-")
        try:
            missing = os.path.join(empty, "ca")
            with Faultline("--ca-dir", missing) as fl:
                code, resp, _ = fl.request("POST", "/proxies", {
                    "name": "nomint", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{self.fx.plain.port}",
                    "protocol": "http", "tls": {"listen": {"mint": True}}})
                self.assertEqual(code, 400, resp)
                self.assertIn("tls.listen", str(resp))
                self.assertIn(f"faultline ca init --dir {missing}", str(resp))
                self.assertEqual(fl.request("GET", "/proxies/nomint")[0], 404)
        finally:
            shutil.rmtree(empty, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# 3. Terminate with a given certificate on a tcp proxy: plain bytes behind it

class GivenCertTests(TlsCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.fl = Faultline()
        cls.echo = EchoServer()

    @classmethod
    def tearDownClass(cls):
        cls.echo.close()
        cls.fl.__exit__()

    def echo_through(self, listen, payload):
        ctx = ssl.create_default_context(cafile=self.fx.pki.ca)
        with connect(listen) as raw, ctx.wrap_socket(raw, server_hostname="localhost") as s:
            self.assertEqual(s.getpeercert()["subject"], ((("commonName", "localhost"),),))
            s.sendall(payload)
            return recv_exactly(s, len(payload))

    def test_tls_client_echoes_through_a_tcp_proxy(self):
        name, listen = self.proxy(self.fl, "given", self.echo.address,
                                  tls={"listen": {"cert": self.fx.local_cert, "key": self.fx.local_key}})
        payload = random.Random(3).randbytes(256 * 1024)
        before = self.echo.accepted
        self.assertEqual(sha(self.echo_through(listen, payload)), sha(payload))
        self.assertEqual(self.echo.accepted, before + 1)
        self.assertEqual(self.failures(self.fl, name, "client"), {r: 0 for r in REASONS})

    def test_full_duplex_8_mib(self):
        # Sending and receiving at once (one thread, non-blocking), so that both directions of
        # the TLS stream are busy together and faultline's buffers fill up.
        name, listen = self.proxy(self.fl, "duplex", self.echo.address,
                                  tls={"listen": {"cert": self.fx.local_cert, "key": self.fx.local_key}})
        payload = random.Random(8).randbytes(8 * MIB)
        ctx = ssl.create_default_context(cafile=self.fx.pki.ca)
        with connect(listen) as raw, ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.setblocking(False)
            sent, got = 0, bytearray()
            deadline = time.monotonic() + 60
            while len(got) < len(payload):
                self.assertLess(time.monotonic(), deadline, f"sent {sent}, got {len(got)} of {len(payload)}")
                writing = sent < len(payload)
                readable, writable, _ = select.select([s], [s] if writing else [], [], 1)
                if writable:
                    try:
                        sent += s.send(payload[sent:sent + 65536])
                    except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                        pass
                if readable or s.pending():
                    try:
                        while True:
                            chunk = s.recv(262144)
                            self.assertTrue(chunk, f"EOF after {len(got)} bytes")
                            got += chunk
                            if not s.pending():
                                break
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        pass
        self.assertEqual(sha(bytes(got)), sha(payload))

    def test_certificate_file_with_its_intermediate(self):
        # The client trusts only the root: the handshake works because the intermediate
        # that follows the certificate in its file is sent along.
        chain, key = self.fx.pki.chain("chained", "DNS:localhost")
        name, listen = self.proxy(self.fl, "chain", self.echo.address, tls={"listen": {"cert": chain, "key": key}})
        self.assertEqual(self.echo_through(listen, b"through the chain\n"), b"through the chain\n")

    def test_key_in_the_certificate_file(self):
        both = os.path.join(self.fx.pki.dir, "both.pem")
        with open(both, "w") as out:
            for part in (self.fx.local_cert, self.fx.local_key):
                with open(part) as f:
                    out.write(f.read())
        name, listen = self.proxy(self.fl, "both", self.echo.address, tls={"listen": {"cert": both}})
        self.assertEqual(self.echo_through(listen, b"ping\n"), b"ping\n")

    def test_plain_bytes_to_the_tls_port_never_reach_the_upstream(self):
        name, listen = self.proxy(self.fl, "plainbytes", self.echo.address,
                                  tls={"listen": {"cert": self.fx.local_cert, "key": self.fx.local_key}})
        before = self.echo.accepted
        with connect(listen) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            how, _, data = wait_end(s, 10)
        self.assertIn(how, ("eof", "reset"), "the connection is closed")
        self.assertNotIn(b"GET /", data, "nothing was echoed")
        self.expect_failures(self.fl, name, "client", "protocol")
        self.assertEqual(self.echo.accepted, before)

    def test_bad_certificate_options_are_400s(self):
        missing = os.path.join(self.fx.pki.dir, "missing.pem")
        encrypted = os.path.join(self.fx.pki.dir, "encrypted.key")
        self.fx.pki.run("pkcs8", "-topk8", "-in", self.fx.local_key, "-out", encrypted, "-v2", "aes-256-cbc",
                        "-passout", "pass:secret")
        for tls, needle in [({"listen": {"cert": missing, "key": self.fx.local_key}}, missing),
                            ({"listen": {"cert": self.fx.local_cert, "key": encrypted}}, encrypted),
                            ({"listen": {"cert": self.fx.local_cert, "key": self.fx.other_key}}, self.fx.other_key),
                            ({"listen": {"cert": self.fx.local_cert}}, self.fx.local_cert),
                            ({"listen": {}}, "tls.listen")]:
            with self.subTest(tls=tls):
                code, resp, _ = self.fl.request("POST", "/proxies", {
                    "name": "badcert", "listen": "127.0.0.1:0", "upstream": self.echo.address, "tls": tls})
                self.assertEqual(code, 400, resp)
                self.assertIn(needle, str(resp))


# ---------------------------------------------------------------------------------------------
# Ends of connections: a clean end of one side is a clean end (close_notify) on the other

class Greeter(ThreadedServer):
    """Sends b"bye\\n" and ends its side: plain TCP (FIN), or TLS with close_notify ("clean") or
    without it ("ragged"). Then waits (bounded) for the peer to finish."""

    def __init__(self, ctx=None, ending="clean"):
        self.ctx, self.ending = ctx, ending
        super().__init__()

    def handle(self, conn):
        conn.settimeout(10)
        if self.ctx is None:
            conn.sendall(b"bye\n")
            conn.shutdown(socket.SHUT_WR)
            wait_end(conn, 10)
            return
        with self.ctx.wrap_socket(conn, server_side=True) as s:
            s.sendall(b"bye\n")
            if self.ending == "clean":
                s.unwrap()  # close_notify, then waits for the peer's
            else:
                s.shutdown(socket.SHUT_WR)  # a bare FIN: no close_notify
                wait_end(s, 10)


class Reporter(ThreadedServer):
    """TLS: reads until the peer ends and records (how, bytes read) in `seen`, how being
    "clean" (close_notify came) or "ragged" (a bare FIN); after a clean end it answers
    b"clean N\\n" and ends cleanly too."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.seen = []
        super().__init__()

    def handle(self, conn):
        conn.settimeout(10)
        with self.ctx.wrap_socket(conn, server_side=True, suppress_ragged_eofs=False) as s:
            got = 0
            try:
                while True:
                    data = s.recv(65536)
                    if not data:
                        break
                    got += len(data)
            except ssl.SSLEOFError:
                self.seen.append(("ragged", got))
                return  # OpenSSL takes a truncation as fatal: nothing more can be sent
            self.seen.append(("clean", got))
            s.sendall(f"clean {got}\n".encode())
            s.unwrap()


def read_to_end(sock):
    """All the bytes until the end, and how the end came: "clean", or "ragged" for a TLS
    connection ended by a bare FIN (a truncation, as far as TLS can tell)."""
    data = bytearray()
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return bytes(data), "clean"
            data += chunk
    except ssl.SSLEOFError:
        return bytes(data), "ragged"


class ConnectionEndTests(TlsCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.fl = Faultline("--ca-dir", cls.fx.ca_dir)
        cls.server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cls.server_ctx.load_cert_chain(cls.fx.local_cert, cls.fx.local_key)
        cls.servers = [Greeter(), Greeter(cls.server_ctx, "clean"), Greeter(cls.server_ctx, "ragged"),
                       Reporter(cls.server_ctx), EchoServer()]
        cls.plain_greeter, cls.clean_greeter, cls.ragged_greeter, cls.reporter, cls.echo = cls.servers

    @classmethod
    def tearDownClass(cls):
        for server in cls.servers:
            server.close()
        cls.fl.__exit__()

    def tls_client(self, listen):
        ctx = ssl.create_default_context(cafile=self.fx.minting_ca)
        return ctx.wrap_socket(connect(listen), server_hostname="localhost", suppress_ragged_eofs=False)

    def test_upstream_fin_reaches_a_tls_client_as_close_notify(self):
        for protocol in ("tcp", "http"):
            with self.subTest(protocol=protocol):
                name, listen = self.proxy(self.fl, "fin", self.plain_greeter.address, protocol=protocol,
                                          tls={"listen": {"mint": True}})
                with self.tls_client(listen) as s:
                    self.assertEqual(read_to_end(s), (b"bye\n", "clean"))

    def test_tls_client_close_notify_round_trip(self):
        # The client ends with close_notify (unwrap waits for faultline's): the echo server sees
        # EOF, ends too, and faultline answers the client's close_notify with its own.
        name, listen = self.proxy(self.fl, "unwrap", self.echo.address, tls={"listen": {"mint": True}})
        with self.tls_client(listen) as s:
            s.sendall(b"ping")
            self.assertEqual(recv_exactly(s, 4), b"ping")
            plain = s.unwrap()
            self.assertEqual(wait_end(plain, 10)[0], "eof")
            plain.close()

    def test_plain_client_fin_reaches_a_tls_upstream_as_close_notify(self):
        name, listen = self.proxy(self.fl, "orig", f"https://localhost:{self.reporter.port}",
                                  tls={"upstream": {"ca": self.fx.pki.ca}})
        with connect(listen) as s:
            s.sendall(b"hello")
            s.shutdown(socket.SHUT_WR)
            how, _, data = wait_end(s, 10)
        self.assertEqual(self.reporter.seen[-1:], [("clean", 5)], "how the upstream saw the client's end")
        self.assertEqual((how, data), ("eof", b"clean 5\n"))

    def test_tls_upstream_end_is_relayed_as_it_came(self):
        for greeter, ending in ((self.clean_greeter, "clean"), (self.ragged_greeter, "ragged")):
            with self.subTest(ending=ending):
                name, listen = self.proxy(self.fl, "relay", f"https://localhost:{greeter.port}",
                                          tls={"listen": {"mint": True}, "upstream": {"ca": self.fx.pki.ca}})
                with self.tls_client(listen) as s:
                    self.assertEqual(read_to_end(s), (b"bye\n", ending))


# ---------------------------------------------------------------------------------------------
# 4 and 5. Both sides: faults see the plaintext; big bodies pass unchanged

class BothSidesTests(TlsCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.fl = Faultline("--ca-dir", cls.fx.ca_dir)
        cls.up = cls.fx.https
        cls.name, cls.listen = make_proxy(cls.fl, "both", f"https://localhost:{cls.up.port}", protocol="http",
                                         tls={"listen": {"mint": True}, "upstream": {"ca": cls.fx.pki.ca}})
        cls.port = port_of(cls.listen)

    @classmethod
    def tearDownClass(cls):
        cls.fl.__exit__()

    def https(self, path, *args):
        return self.curl(f"https://api.example.test:{self.port}{path}", "--cacert", self.fx.minting_ca,
                         "--resolve", f"api.example.test:{self.port}:127.0.0.1", *args)

    def test_https_through_and_http_replace(self):
        r = self.https("/")
        self.assertEqual((r.rc, r.status, r.body), (0, 200, HELLO), r)
        code, resp, _ = self.fl.request("POST", f"/proxies/{self.name}/toxics", {
            "name": "teapot", "type": "http_replace", "attributes": {"status": 418, "headers": {"x-fault": "yes"}}})
        self.assertEqual(code, 200, resp)
        try:
            before = len(self.up.seen("/"))
            r = self.https("/")
            self.assertEqual((r.rc, r.status, r.body), (0, 418, HELLO), r)
            self.assertEqual(r.headers.get("x-fault"), "yes", r.headers)
            self.assertEqual(len(self.up.seen("/")), before + 1, "the request was forwarded over TLS")
            self.assertEqual(metric(self.fl, "faultline_toxic_messages_total", proxy=self.name, toxic="teapot"), 1)
        finally:
            self.assertEqual(self.fl.request("DELETE", f"/proxies/{self.name}/toxics/teapot")[0], 204)
        r = self.https("/")
        self.assertEqual((r.rc, r.status), (0, 200), r)
        for side in ("client", "upstream"):
            self.assertEqual(self.failures(self.fl, self.name, side), {r: 0 for r in REASONS}, side)

    def test_profile_with_both_sides(self):
        # The profile of docs/tls.md, on port 0 and with a local upstream.
        profile = {"proxies": [{"name": "api", "listen": "127.0.0.1:0", "protocol": "http",
                                "upstream": f"https://localhost:{self.up.port}",
                                "tls": {"listen": {"mint": True}, "upstream": {"verify": True, "ca": self.fx.pki.ca}}}]}
        with Faultline("--ca-dir", self.fx.ca_dir, config=profile) as fl:
            code, proxy, _ = fl.request("GET", "/proxies/api")
            self.assertEqual(code, 200, proxy)
            port = port_of(proxy["listen"])
            r = self.curl(f"https://api.example.com:{port}/", "--cacert", self.fx.minting_ca,
                          "--resolve", f"api.example.com:{port}:127.0.0.1")
            self.assertEqual((r.rc, r.status, r.body), (0, 200, HELLO), r)

    def test_handshake_timeouts(self):
        # A client that never says hello, and an upstream that never answers one: both are
        # given up after the handshake timeout (10 s), counted as "other", logged "timed out".
        release = threading.Event()

        class Silent(ThreadedServer):
            def handle(self, conn):
                release.wait(30)

        with Silent() as silent:
            try:
                upstream = f"https://localhost:{silent.port}"
                name, listen = self.proxy(self.fl, "slow", upstream, protocol="http",
                                          tls={"listen": {"mint": True}, "upstream": {"verify": False}})
                mute = connect(listen, timeout=30)
                ctx = ssl.create_default_context(cafile=self.fx.minting_ca)
                talker = ctx.wrap_socket(connect(listen, timeout=30), server_hostname="localhost")
                talker.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                results = {}

                def watch(key, sock):
                    results[key] = wait_end(sock, 25)

                threads = [threading.Thread(target=watch, args=item) for item in (("mute", mute), ("talker", talker))]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(30)
                mute.close()
                talker.close()
            finally:
                release.set()
        how, seconds, data = results["mute"]
        self.assertEqual((how, data), ("eof", b""), results)
        self.assertGreater(seconds, 8)
        how, seconds, data = results["talker"]
        self.assertEqual(how, "eof", results)
        self.assertGreater(seconds, 8)
        self.assertTrue(data.startswith(b"HTTP/1.1 502 "), data)
        self.assertIn(f"upstream {upstream}: TLS handshake failed: timed out".encode(), data)
        self.expect_failures(self.fl, name, "client", "other")
        self.expect_failures(self.fl, name, "upstream", "other")
        self.wait_log(self.fl, f"proxy {name}: TLS handshake with upstream {upstream} failed: timed out")

    def test_one_mib_each_way_is_byte_identical(self):
        tmp = tempfile.mkdtemp(prefix="faultline-tls-body-")
        try:
            upload = os.path.join(tmp, "upload")
            with open(upload, "wb") as f:
                f.write(DATA)
            r = self.https("/echo", "--data-binary", "@" + upload, "-H", "Content-Type: application/octet-stream")
            self.assertEqual((r.rc, r.status), (0, 200), r)
            self.assertEqual(len(r.body), MIB)
            self.assertEqual(sha(r.body), sha(DATA), "the echoed 1 MiB came back unchanged")
            self.assertEqual(self.up.seen("/echo")[-1][2], sha(DATA), "the upstream got the 1 MiB unchanged")
            r = self.https("/big")
            self.assertEqual((r.rc, r.status, len(r.body)), (0, 200, MIB), r)
            self.assertEqual(sha(r.body), sha(DATA), "the downloaded 1 MiB is unchanged")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
