"""Real Redis traffic through faultline: redis-benchmark and redis-cli via a proxy.

Run standalone: python3 tests/integration/test_redis.py
"""
import os
import re
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Faultline, RedisServer, metric, metrics_text, need,  # noqa: E402
                     split_hostport)


def run(args, timeout):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, timeout=timeout, text=True)


class RedisThroughProxyTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.cli = need("redis-cli", "redis-tools (apt package redis-tools / redis-server)")
        cls.bench = need("redis-benchmark", "redis-tools (apt package redis-tools / redis-server)")

    def test_benchmark_cli_and_metrics(self):
        with RedisServer() as redis, Faultline() as fl:
            proxy = fl.create_proxy("redis", f"127.0.0.1:{redis.port}")
            port = split_hostport(proxy["listen"])[1]

            # redis-cli round trip through the proxy; then read the key directly.
            r = run([self.cli, "-h", "127.0.0.1", "-p", str(port), "SET", "faultline:key",
                     "value-through-proxy"], 30)
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "OK"), r.stdout)
            r = run([self.cli, "-h", "127.0.0.1", "-p", str(port), "GET", "faultline:key"], 30)
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "value-through-proxy"),
                             r.stdout)
            r = run([self.cli, "-h", "127.0.0.1", "-p", str(redis.port), "GET",
                     "faultline:key"], 30)
            self.assertEqual(r.stdout.strip(), "value-through-proxy",
                             "the SET did not reach the real redis-server")

            # redis-benchmark through the proxy.
            start = time.monotonic()
            r = run([self.bench, "-h", "127.0.0.1", "-p", str(port), "-n", "20000", "-c", "20",
                     "-t", "set,get", "-q"], 150)
            took = time.monotonic() - start
            out = r.stdout.replace("\r", "\n")
            self.assertEqual(r.returncode, 0, f"redis-benchmark exit {r.returncode}:\n{out}")
            rates = {}
            for name, rate in re.findall(r"^\s*(SET|GET):\s*([0-9.]+) requests per second",
                                         out, re.M):
                rates[name] = float(rate)   # the last (final) line wins over progress lines
            self.assertEqual(set(rates), {"SET", "GET"}, f"no rates in output:\n{out}")
            for name, rate in rates.items():
                self.assertGreater(rate, 0, f"{name} rate is zero:\n{out}")
            self.assertNotIn("error", out.lower(), out)
            print(f"\n  redis-benchmark via faultline in {took:.1f}s: "
                  + ", ".join(f"{k} {v:.0f} req/s" for k, v in sorted(rates.items())),
                  file=sys.stderr)

            # Live byte counters for this proxy, in both directions.
            for name in ("toxiproxy_proxy_received_bytes_total", "toxiproxy_proxy_sent_bytes_total"):
                for direction in ("upstream", "downstream"):
                    value = metric(fl, name, proxy="redis", direction=direction)
                    self.assertIsNotNone(value, f"{name}{{proxy=redis,direction={direction}}} "
                                                f"missing:\n{metrics_text(fl)}")
                    self.assertGreater(value, 0, f"{name} direction={direction}")
            total = metric(fl, "faultline_proxy_connections_total", proxy="redis")
            self.assertIsNotNone(total)
            self.assertGreaterEqual(total, 20 + 2, "benchmark clients + 2 redis-cli runs")


if __name__ == "__main__":
    unittest.main(verbosity=2)
