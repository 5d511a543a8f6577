"""V.5 with Redis Sentinel and ioredis: the master's faultline proxy is cut, the sentinels
promote the replica, ioredis (sentinel mode) follows, and no acknowledged write is lost.

The cluster, all on loopback with free ports:

    ioredis (sentinel mode) --> faultline `resp` proxy "redis-master"  --> redis-server (master)
                            \-> faultline `resp` proxy "redis-replica" --> redis-server (replica)
    3 x redis-sentinel (quorum 2) monitor the master through its proxy; each Redis announces
    its proxy's address (replica-announce-ip/port), so sentinels and clients reach both Redis
    servers only through faultline. The replica replicates from the master directly (that
    link is not what is being tested; through the proxy, the cut would also cut replication
    and acknowledged-but-unreplicated writes would be lost by design of async replication).

The drill (written by the test): a `command` probe runs tests/integration/node/sentinel_writer.mjs
(ioredis writing keys for 9 s, then reading every acknowledged key back from the master the
sentinels name at the end); in the background after 2 s `proxy.disable` cuts the master's proxy.
Verdicts:
  - failover (V.5): the replica's proxy sees >= 500 more Redis commands within 10 s of the cut
    (faultline's per-proxy request counter; the sentinels' own PING/INFO/hello traffic is
    about 6 a second, the writer's hundreds) and the master's none;
  - promoted: the sentinels name the replica's proxy as the master afterwards;
  - writes-survive: the writer's summary: no acknowledged write lost, writes acknowledged on
    the new master (ioredis reconnected);
  - aggregate of all.
The negative case cuts the replica's proxy too: no promotion, the drill fails (exit 1) with
each verdict saying why.

Run standalone: python3 tests/integration/test_sentinel_failover.py
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Faultline, ManagedProcess, RedisServer, free_port, need, need_node_package,  # noqa: E402
                     split_hostport, wait_for)
from test_drill import TempDir, run_drill  # noqa: E402

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")
WRITER = os.path.join(NODE_DIR, "sentinel_writer.mjs")
MASTER_NAME = "drillmaster"
WRITE_SECONDS = 9


# ---------------------------------------------------------------------------------------------
# A minimal RESP client for setting the cluster up (no redis-py in the stdlib).

def resp_encode(args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def resp_read(f):
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind in (b"+", b"-"):
        text = rest.decode()
        return RuntimeError(text) if kind == b"-" else text
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode()
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [resp_read(f) for _ in range(n)]
    raise ValueError(f"unexpected RESP {line!r}")


def redis_call(address, *args, timeout=5):
    host, port = split_hostport(address)
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(resp_encode(args))
        with s.makefile("rb") as f:
            reply = resp_read(f)
    if isinstance(reply, RuntimeError):
        raise reply
    return reply


def pairs(flat):
    """A RESP field/value list (SENTINEL replies) as a dict."""
    return dict(zip(flat[::2], flat[1::2]))


def wait_until(what, fn, timeout=30, step=0.1):
    """harness.wait_for with Sentinel's not-yet errors (a peer not up, a reply not parsed yet)."""
    return wait_for(fn, timeout, what, step, not_yet=(OSError, RuntimeError, ValueError))


class Sentinel(ManagedProcess):
    """redis-sentinel on 127.0.0.1, a free port, watching `master` (HOST:PORT) with `quorum`;
    down after 1 s, failover timeout 5 s, so a drill takes seconds."""

    stop_timeout = 10

    def __init__(self, master, quorum):
        # redis-server --sentinel is Redis Sentinel (Debian's redis-sentinel is a link to the
        # same binary). That package is not used: it starts a system sentinel on 26379.
        self.bin = need("redis-server", "redis-server")
        self.tmp = tempfile.mkdtemp(prefix="faultline-sentinel-")
        self.log = open(os.path.join(self.tmp, "sentinel.log"), "w+")
        host, port = split_hostport(master)
        conf = os.path.join(self.tmp, "sentinel.conf")
        for _ in range(3):  # a free port can be taken in between: retry
            self.port = free_port()
            with open(conf, "w") as f:  # sentinel rewrites its config file: it must be writable
                f.write(f"port {self.port}\nbind 127.0.0.1\ndaemonize no\ndir {self.tmp}\n"
                        f"sentinel monitor {MASTER_NAME} {host} {port} {quorum}\n"
                        f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
                        f"sentinel failover-timeout {MASTER_NAME} 5000\n"
                        f"sentinel parallel-syncs {MASTER_NAME} 1\n")
            self.proc = subprocess.Popen([self.bin, conf, "--sentinel"], stdout=self.log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if redis_call(self.address, "PING", timeout=1) == "PONG":
                        return
                except OSError:
                    pass
                time.sleep(0.05)
            self.stop()
        raise RuntimeError(f"redis-sentinel did not start: {self.logs()}")

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"


class SentinelCluster:
    """A master and a replica redis-server, each behind a faultline `resp` proxy, and three
    sentinels that know both (and each other) only through the proxies."""

    def __init__(self, fl):
        self.fl = fl
        self.master = RedisServer()
        self.replica = RedisServer()
        self.sentinels = []
        try:
            self.master_proxy = fl.create_proxy("redis-master", self.master.address, protocol="resp")["listen"]
            self.replica_proxy = fl.create_proxy("redis-replica", self.replica.address, protocol="resp")["listen"]
            for server, proxy in ((self.master, self.master_proxy), (self.replica, self.replica_proxy)):
                host, port = split_hostport(proxy)
                redis_call(server.address, "CONFIG", "SET", "replica-announce-ip", host)
                redis_call(server.address, "CONFIG", "SET", "replica-announce-port", str(port))
            redis_call(self.replica.address, "REPLICAOF", "127.0.0.1", str(self.master.port))
            replica_port = str(split_hostport(self.replica_proxy)[1])
            wait_until("the replica to be in sync",
                       lambda: "master_link_status:up" in redis_call(self.replica.address, "INFO", "replication")
                       and f"port={replica_port}," in redis_call(self.master.address, "INFO", "replication"))
            self.sentinels = [Sentinel(self.master_proxy, quorum=2) for _ in range(3)]
            for s in self.sentinels:
                wait_until(f"sentinel {s.port} to see the replica and the other sentinels", lambda s=s: (
                    any(pairs(r).get("port") == replica_port
                        for r in redis_call(s.address, "SENTINEL", "replicas", MASTER_NAME))
                    and int(pairs(redis_call(s.address, "SENTINEL", "master", MASTER_NAME))["num-other-sentinels"]) == 2))
        except BaseException:
            self.close()
            raise

    def master_named(self):
        """HOST:PORT the first sentinel names as the master."""
        host, port = redis_call(self.sentinels[0].address, "SENTINEL", "get-master-addr-by-name", MASTER_NAME)
        return f"{host}:{port}"

    def close(self):
        for s in self.sentinels:
            s.__exit__()
        self.master.__exit__()
        self.replica.__exit__()

    def logs(self):
        return "\n".join(f"--- sentinel {s.port}\n{s.logs()[-3000:]}" for s in self.sentinels)


def sentinel_drill(fl, cluster, cut_replica_too, summary_file):
    sentinel_ports = ",".join(str(s.port) for s in cluster.sentinels)
    replica_port = split_hostport(cluster.replica_proxy)[1]
    method = [
        # The cut happens 2 s into the writes, in the background while the writer runs.
        {"type": "action", "name": "cut-master", "background": True, "pauses": {"before": 2},
         "provider": {"type": "proxy.disable", "proxy": "redis-master"}},
    ]
    if cut_replica_too:
        method.append({"type": "action", "name": "cut-replica", "background": True, "pauses": {"before": 2},
                       "provider": {"type": "proxy.disable", "proxy": "redis-replica"}})
    method += [
        {"type": "probe", "name": "writes",
         "provider": {"type": "command", "path": "node",
                      "arguments": [WRITER, sentinel_ports, MASTER_NAME, str(WRITE_SECONDS), summary_file],
                      "timeout": 60},
         "tolerance": [{"type": "range", "range": [0, 0]},
                       {"type": "jsonpath", "path": "$.no_write_lost", "expect": True},
                       {"type": "jsonpath", "path": "$.reconnected", "expect": True}]},
        {"type": "probe", "name": "promoted",
         "provider": {"type": "resp", "address": cluster.sentinels[0].address,
                      "command": ["SENTINEL", "get-master-addr-by-name", MASTER_NAME], "timeout": 2},
         "tolerance": {"type": "regex", "pattern": f"\\b{replica_port}\\b"}},
    ]
    return {
        "title": "Redis Sentinel promotes the replica when the master's proxy is cut"
                 + (" (replica cut too)" if cut_replica_too else ""),
        "configuration": {"faultline_url": fl.url},
        "steady-state-hypothesis": {"title": "the sentinels name the master's proxy", "probes": [
            {"type": "probe", "name": "master-known",
             "provider": {"type": "resp", "address": cluster.sentinels[0].address,
                          "command": ["SENTINEL", "get-master-addr-by-name", MASTER_NAME]},
             "tolerance": {"type": "regex", "pattern": f"\\b{split_hostport(cluster.master_proxy)[1]}\\b"}}]},
        "runtime": {"hypothesis": {"strategy": "before-method-only"}, "metrics": {"interval": 0.1}},
        "method": method,
        "rollbacks": [
            {"type": "action", "name": "revive-master", "provider": {"type": "proxy.enable", "proxy": "redis-master"}},
            {"type": "action", "name": "revive-replica", "provider": {"type": "proxy.enable", "proxy": "redis-replica"}},
        ],
        "verdicts": [
            {"type": "failover", "name": "moves-to-replica", "criterion": "V.5",
             "primary": "redis-master", "backup": "redis-replica", "after": "cut-master", "within": 10,
             "metric": "faultline_proxy_requests_total", "labels": {},
             # Every command counts here, the sentinels' own PING/INFO/hello too: the 500 is what
             # the writer alone sends in a few seconds, far above their chatter.
             "min_delta": 500, "primary_max_share": 0},
            {"type": "success_rate", "name": "promoted", "criterion": "V.5", "source": "promoted", "threshold": 1},
            {"type": "success_rate", "name": "writes-survive", "criterion": "V.5", "source": "writes", "threshold": 1},
            {"type": "aggregate", "name": "all", "criterion": "V.8"},
        ],
    }


def writer_summary(run, path):
    """The writer's JSON summary (it writes the same text the drill's tolerances read)."""
    if not os.path.exists(path):
        raise AssertionError(f"the writer wrote no summary: {run.out}")
    with open(path) as f:
        return json.load(f)


class SentinelFailoverDrillTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        need("redis-server", "redis-server")
        need_node_package("ioredis")

    def test_master_cut_promotes_replica_and_no_acknowledged_write_is_lost(self):
        with TempDir() as tmp, Faultline() as fl:
            cluster = SentinelCluster(fl)
            try:
                summary_file = os.path.join(tmp, "writer.json")
                run = run_drill(tmp, sentinel_drill(fl, cluster, False, summary_file), timeout=120)
                summary = writer_summary(run, summary_file)
                self.assertEqual(run.rc, 0, f"{run.out}\n{summary}\n{cluster.logs()}")
                self.assertEqual((run.report["status"], run.report["result"]), ("completed", "pass"))
                v = run.verdict("moves-to-replica")
                self.assertTrue(v["passed"], v)
                self.assertLessEqual(v["measured"]["failover_s"], 10)
                self.assertGreaterEqual(v["measured"]["backup_traffic"], 500)
                self.assertTrue(run.verdict("promoted")["passed"])
                self.assertTrue(run.verdict("writes-survive")["passed"])
                # What the writer saw, checked here too: writes on both sides of the cut, all
                # read back from the replica's proxy, which the sentinels now name.
                self.assertEqual(summary["master_after"], cluster.replica_proxy, summary)
                self.assertEqual((summary["lost"], summary["unverified"]), (0, 0), summary)
                self.assertGreater(summary["acked_after_switch"], 0, summary)
                self.assertEqual(list(summary["endpoints"]), [cluster.master_proxy, cluster.replica_proxy], summary)
                self.assertGreater(summary["errors"] + summary["reconnects"], 0, "the cut never bit")
                self.assertEqual(cluster.master_named(), cluster.replica_proxy)
                self.assertEqual(redis_call(cluster.replica.address, "ROLE")[0], "master")
                print(f"\n  sentinel failover: traffic on the replica {v['measured']['failover_s']:.2f} s after the cut, "
                      f"{summary['acked']} writes acknowledged ({summary['acked_after_switch']} on the new master), "
                      f"{summary['lost']} lost", file=sys.stderr)
                # The rollback re-enabled the master's proxy.
                self.assertTrue(fl.request("GET", "/proxies/redis-master")[1]["enabled"])
            finally:
                cluster.close()

    def test_both_cut_no_promotion_and_the_drill_fails(self):
        with TempDir() as tmp, Faultline() as fl:
            cluster = SentinelCluster(fl)
            try:
                summary_file = os.path.join(tmp, "writer.json")
                run = run_drill(tmp, sentinel_drill(fl, cluster, True, summary_file), timeout=120)
                self.assertEqual(run.rc, 1, run.out)
                self.assertEqual((run.report["status"], run.report["result"]), ("completed", "fail"))
                v = run.verdict("moves-to-replica")
                self.assertFalse(v["passed"], v)
                self.assertTrue(any("no faultline_proxy_requests_total reached redis-replica" in f for f in v["failures"]), v)
                self.assertFalse(run.verdict("promoted")["passed"])
                self.assertFalse(run.verdict("writes-survive")["passed"])
                self.assertFalse(run.verdict("all")["passed"])
                summary = writer_summary(run, summary_file)
                self.assertGreater(summary["acked"], 0, "writes before the cut were acknowledged")
                self.assertEqual(summary["acked_after_switch"], 0, summary)
                self.assertFalse(summary["reconnected"], summary)
                for name in ("redis-master", "redis-replica"):
                    self.assertTrue(fl.request("GET", f"/proxies/{name}")[1]["enabled"], f"{name} not re-enabled")
            finally:
                cluster.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
