"""Toxics on live connections through real sockets: nothing lost or reordered while
toxics come and go, delays as configured, and the API never waits on stalled traffic."""
import hashlib
import resource
import random
import socket
import threading
import time
import unittest

from harness import EchoServer, Faultline, connect, recv_exactly


def recv_for(sock, seconds):
    """Reads until EOF, or until `seconds` have passed at the end of a recv()."""
    data = b""
    deadline = time.time() + seconds
    while time.time() < deadline:
        chunk = sock.recv(10000)
        if not chunk:
            break
        data += chunk
    return data


class LiveToxics(unittest.TestCase):
    def setUp(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
        self.echo = EchoServer()
        self.fl = Faultline()
        self.proxy = self.fl.create_proxy("echo", self.echo.address)

    def tearDown(self):
        self.fl.__exit__(None, None, None)
        self.echo.close()

    def add_toxics(self, *bodies):
        for body in bodies:
            self.assertEqual(self.fl.request("POST", "/proxies/echo/toxics", body)[0], 200)

    def test_no_data_lost_or_reordered_while_toxics_churn(self):
        """Toxiproxy's TestNoDataDropped, stronger: 1,000 add/remove cycles of three toxic
        types on both streams while a stream flows both ways; every byte arrives, in order."""
        block = 65536
        stop = threading.Event()
        sent = hashlib.sha256()
        sent_bytes = [0]
        got = hashlib.sha256()
        got_bytes = [0]
        sock = connect(self.proxy["listen"])

        def sender():
            rng = random.Random(7)
            deadline = time.time() + 90
            while not stop.is_set() and time.time() < deadline:
                data = rng.randbytes(block)
                sock.sendall(data)
                sent.update(data)
                sent_bytes[0] += len(data)
                time.sleep(0.001)
            sock.shutdown(socket.SHUT_WR)

        def reader():
            while True:
                data = sock.recv(262144)
                if not data:
                    return
                got.update(data)
                got_bytes[0] += len(data)

        threads = [threading.Thread(target=sender), threading.Thread(target=reader)]
        for t in threads:
            t.start()
        cycles = 0
        deadline = time.time() + 80
        try:
            while cycles < 1000 and time.time() < deadline:
                stream = "upstream" if cycles % 2 else "downstream"
                kind = ["latency", "slicer", "bandwidth"][cycles % 3]
                attrs = {"latency": {"latency": 1, "jitter": 1},
                         "slicer": {"average_size": 1000, "size_variation": 100, "delay": 0},
                         "bandwidth": {"rate": 100000}}[kind]
                status, _, _ = self.fl.request("POST", "/proxies/echo/toxics",
                                               {"name": "churn", "type": kind, "stream": stream, "attributes": attrs})
                self.assertEqual(status, 200)
                status, _, _ = self.fl.request("DELETE", "/proxies/echo/toxics/churn")
                self.assertEqual(status, 204)
                cycles += 1
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
            sock.close()
        self.assertEqual(cycles, 1000, "the churn did not finish in time")
        self.assertGreater(sent_bytes[0], 1 << 20)
        self.assertEqual(got_bytes[0], sent_bytes[0])
        self.assertEqual(got.hexdigest(), sent.hexdigest())

    def test_latency_toxic_delays_round_trip(self):
        sock = connect(self.proxy["listen"])
        sock.sendall(b"warm")
        recv_exactly(sock, 4)
        self.fl.request("POST", "/proxies/echo/toxics",
                        {"type": "latency", "attributes": {"latency": 150, "jitter": 0}})
        start = time.time()
        sock.sendall(b"ping")
        self.assertEqual(recv_exactly(sock, 4), b"ping")
        elapsed = time.time() - start
        self.assertGreaterEqual(elapsed, 0.15)
        self.assertLess(elapsed, 0.15 + 0.1)
        self.fl.request("DELETE", "/proxies/echo/toxics/latency_downstream")
        start = time.time()
        sock.sendall(b"pong")
        self.assertEqual(recv_exactly(sock, 4), b"pong")
        self.assertLess(time.time() - start, 0.1)
        sock.close()

    def test_api_answers_while_connections_stall_behind_a_zero_rate_bandwidth(self):
        self.fl.request("POST", "/proxies/echo/toxics", {"name": "stall", "type": "bandwidth", "attributes": {"rate": 0}})
        socks = []
        for _ in range(500):
            s = connect(self.proxy["listen"])
            s.sendall(b"x" * 4096)
            socks.append(s)
        time.sleep(0.3)
        for call in [("GET", "/proxies", None),
                     ("POST", "/proxies/echo/toxics", {"name": "lat", "type": "latency", "attributes": {"latency": 1}}),
                     ("DELETE", "/proxies/echo/toxics/lat", None),
                     ("DELETE", "/proxies/echo/toxics/stall", None)]:
            start = time.time()
            status, _, _ = self.fl.request(call[0], call[1], call[2])
            self.assertLess(status, 300)
            self.assertLess(time.time() - start, 1.0, call)
        # Removing the stall releases the held data.
        for s in socks[:20]:
            self.assertEqual(recv_exactly(s, 4096), b"x" * 4096)
        for s in socks:
            s.close()

    def test_reset_peer_resets_an_existing_connection(self):
        sock = connect(self.proxy["listen"])
        sock.sendall(b"hello")
        self.assertEqual(recv_exactly(sock, 5), b"hello")
        self.fl.request("POST", "/proxies/echo/toxics", {"type": "reset_peer", "stream": "upstream",
                                                         "attributes": {"timeout": 0}})
        sock.sendall(b"again")
        with self.assertRaises(ConnectionResetError):
            deadline = time.time() + 3
            while time.time() < deadline:
                if not sock.recv(100):
                    break
        sock.close()

    def test_limit_data_passes_exactly_n_bytes(self):
        self.fl.request("POST", "/proxies/echo/toxics", {"type": "limit_data", "attributes": {"bytes": 1000}})
        sock = connect(self.proxy["listen"])
        sock.sendall(b"y" * 5000)
        self.assertEqual(len(recv_for(sock, 3)), 1000)
        sock.close()

    def test_limit_data_before_latency_still_delivers_its_bytes(self):
        self.add_toxics({"name": "lim", "type": "limit_data", "attributes": {"bytes": 700}},
                        {"name": "lat", "type": "latency", "attributes": {"latency": 100}})
        sock = connect(self.proxy["listen"])
        sock.sendall(b"z" * 3000)
        self.assertEqual(len(recv_for(sock, 3)), 700)
        sock.close()

    def test_timeout_then_latency_closes_on_time_and_server_survives(self):
        self.add_toxics({"name": "to", "type": "timeout", "attributes": {"timeout": 200}},
                        {"name": "lat", "type": "latency", "attributes": {"latency": 10}})
        sock = connect(self.proxy["listen"])
        start = time.time()
        sock.sendall(b"dropped")
        self.assertEqual(sock.recv(100), b"")  # closed, nothing delivered
        self.assertGreaterEqual(time.time() - start, 0.18)
        self.assertLess(time.time() - start, 1.0)
        sock.close()
        self.assertEqual(self.fl.request("GET", "/version")[0], 200)


if __name__ == "__main__":
    unittest.main()
