"""Journal integrity under a writer that falls behind (issue 16, item 1): a journal must be
rebuildable byte for byte, every byte either at its true offset or inside a counted gap.

A bulk two-way stream (several connections through a `tcp` proxy, a never-repeating random
payload each way, so blobs cannot deduplicate it) is recorded with the smallest queue the
API takes (`max_queue_bytes` 65536), so the writer falls behind and drops into counted gaps,
while toxics are added, updated and removed more than 1,000 times through the API (every
change rebuilds the connections' chains and journals `fault` lines between the data lines).
Both peers keep what they sent; the journal, read by the independent reader of
test_recorder.py, is rebuilt per connection and direction:

- every `data` line's bytes equal what was sent at its `off`;
- data lines and holes (offset jumps, each marked by an `undecodable` msg "gap: N bytes")
  tile the stream from 0 to its end with no overlap and nothing missing, the end included;
- the holes add up to the `bytes` of the journal's `gap` lines and to the API's count.

Figures (offsets wrong, bytes recorded, gaps) are printed. Run standalone:
python3 tests/integration/test_recorder_integrity.py
"""
import http.client
import json
import os
import re
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Faultline, ThreadedServer, connect, split_hostport  # noqa: E402
from test_recorder import Journal, RecorderCase, post_recording, wait_status  # noqa: E402

CONNECTIONS = 3
BLOCK = 64 << 10
MIN_CHANGES = 1000
MAX_BYTES = 96 << 20  # per direction of one connection: bounds memory and time
GAP_RE = re.compile(r"^gap: (\d+) bytes were not recorded")


class TwoWay:
    """Sends random blocks on `sock` until `stop` is set (and at least `minimum` bytes went),
    while reading everything the peer sends; keeps both."""

    def __init__(self, sock, stop, minimum=1 << 20):
        self.sock = sock
        self.local = sock.getsockname()
        self.stop = stop
        self.minimum = minimum
        self.sent = bytearray()
        self.received = bytearray()
        self.error = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.writer = threading.Thread(target=self._write, daemon=True)
        self.reader.start()
        self.writer.start()

    def _write(self):
        try:
            while (not self.stop.is_set() or len(self.sent) < self.minimum) and len(self.sent) < MAX_BYTES:
                block = os.urandom(BLOCK)
                self.sock.sendall(block)
                self.sent += block
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            self.error = e

    def _read(self):
        try:
            while True:
                data = self.sock.recv(1 << 20)
                if not data:
                    return
                self.received += data
        except OSError as e:
            self.error = e

    def join(self, timeout):
        self.writer.join(timeout)
        self.reader.join(timeout)
        return not self.writer.is_alive() and not self.reader.is_alive()


class BulkPeer(ThreadedServer):
    """The upstream: for each connection, streams random blocks back while reading."""

    def __init__(self, stop):
        self.stop_sending = stop
        self.peers = []
        self.lock = threading.Lock()
        super().__init__()

    def handle(self, conn):
        peer = TwoWay(conn, self.stop_sending)
        with self.lock:
            self.peers.append(peer)
        peer.join(120)


class Api:
    """One keep-alive connection to the control API (a fresh one after an error)."""

    def __init__(self, fl):
        self.fl = fl
        self.conn = None

    def call(self, method, path, body=None):
        for attempt in range(3):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.fl.host, self.fl.port, timeout=10)
                data = json.dumps(body).encode() if body is not None else None
                self.conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
                r = self.conn.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def churn_toxics(fl, proxy, changes, done, log):
    """Adds, updates and removes toxics on both directions, `changes` API calls in all."""
    api = Api(fl)
    n = 0
    i = 0
    while n < changes:
        lat = i % 4
        for method, path, body in [
            ("POST", f"/proxies/{proxy}/toxics",
             {"name": "lat_up", "type": "latency", "stream": "upstream", "attributes": {"latency": lat, "jitter": 1}}),
            ("POST", f"/proxies/{proxy}/toxics",
             {"name": "slice_down", "type": "slicer", "stream": "downstream",
              "attributes": {"average_size": 1500 + 100 * lat, "size_variation": 1000, "delay": 0}}),
            ("POST", f"/proxies/{proxy}/toxics/lat_up", {"attributes": {"latency": (lat + 1) % 3, "jitter": 0}}),
            ("POST", f"/proxies/{proxy}/toxics",
             {"name": "bw_down", "type": "bandwidth", "stream": "downstream", "attributes": {"rate": 400000}}),
            ("DELETE", f"/proxies/{proxy}/toxics/slice_down", None),
            ("DELETE", f"/proxies/{proxy}/toxics/lat_up", None),
            ("DELETE", f"/proxies/{proxy}/toxics/bw_down", None),
        ]:
            status, text = api.call(method, path, body)
            if status >= 300:
                log.append((method, path, status, text[:200]))
            n += 1
        i += 1
    done.set()
    return n


def rebuild(j, conn, direction, sent):
    """Checks one direction of one connection against what was sent; returns figures."""
    data = [o for o in j.of("data", conn=conn, dir=direction)]
    marks = []
    for o in j.msgs("undecodable", conn=conn, dir=direction):
        m = GAP_RE.match(o.get("reason", ""))
        if m:
            marks.append((o["off"], int(m.group(1))))
    wrong = 0      # data bytes not equal to what was sent at their offset
    overlap = 0
    pieces = [(o["off"], o["off"] + o["len"], "data") for o in data] + [(off - n, off, "hole") for off, n in marks]
    for o in data:
        if bytes(o["bytes"]) != bytes(sent[o["off"]:o["off"] + o["len"]]):
            wrong += sum(1 for a, b in zip(o["bytes"], sent[o["off"]:o["off"] + o["len"]]) if a != b) + max(
                0, o["off"] + o["len"] - len(sent))
    pieces.sort()
    pos = 0
    unaccounted = 0
    for start, end, _ in pieces:
        if start < pos:
            overlap += min(end, pos) - start
        elif start > pos:
            unaccounted += start - pos
        pos = max(pos, end)
    missing_end = max(0, len(sent) - pos)
    beyond_end = max(0, pos - len(sent))
    return {
        "sent": len(sent),
        "recorded": sum(o["len"] for o in data),
        "holes": sum(n for _, n in marks),
        "wrong": wrong,
        "overlap": overlap,
        "unaccounted": unaccounted,
        "missing_end": missing_end,
        "beyond_end": beyond_end,
        "data_lines": len(data),
    }


class JournalIntegrity(RecorderCase):
    def test_bulk_two_way_stream_with_toxic_churn_rebuilds_byte_for_byte(self):
        rec = os.path.join(self.tmp, "rec")
        stop = threading.Event()
        started = time.monotonic()
        with BulkPeer(stop) as peer, Faultline() as fl:
            p = fl.create_proxy("bulk", peer.address)
            post_recording(fl, {"id": "integrity", "dir": rec, "max_queue_bytes": 65536})
            clients = [TwoWay(connect(p["listen"]), stop) for _ in range(CONNECTIONS)]
            errors = []
            changes = churn_toxics(fl, "bulk", MIN_CHANGES, stop, errors)
            for c in clients:
                self.assertTrue(c.join(60), "a client did not finish")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with peer.lock:
                    peers = list(peer.peers)
                if len(peers) == CONNECTIONS and all(not x.writer.is_alive() and not x.reader.is_alive()
                                                     for x in peers):
                    break
                time.sleep(0.05)
            for c in clients:
                c.sock.close()
            # Every close is journaled before the recording stops (close lines are never dropped).
            wait_status(fl, "integrity", lambda st: st["connections"] == CONNECTIONS, timeout=10)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if len(Journal(rec, allow_truncated=True).of("close")) == CONNECTIONS:
                    break
                time.sleep(0.05)
            status, st, _ = fl.request("DELETE", "/recordings/integrity")
            self.assertEqual(status, 200, st)
        self.assertEqual(errors, [], "toxic changes refused")
        self.assertGreaterEqual(changes, MIN_CHANGES)
        # The proxy itself carried every byte both ways (latency, slicer, bandwidth change no byte).
        self.assertEqual(len(peers), CONNECTIONS)
        by_client = {}
        for c in clients:
            self.assertIsNone(c.error)
        # Pair each client with its upstream peer by what they exchanged.
        for c in clients:
            match = [x for x in peers if bytes(x.received[:BLOCK]) == bytes(c.sent[:BLOCK])]
            self.assertEqual(len(match), 1)
            x = match[0]
            self.assertEqual(bytes(x.received), bytes(c.sent), "upstream got other bytes than the client sent")
            self.assertEqual(bytes(c.received), bytes(x.sent), "the client got other bytes than upstream sent")
            by_client["%s:%d" % c.local] = (c, x)

        j = Journal(rec)
        conns = j.conns()
        self.assertEqual(len(conns), CONNECTIONS)
        totals = {k: 0 for k in ("sent", "recorded", "holes", "wrong", "overlap", "unaccounted", "missing_end",
                                 "beyond_end", "data_lines")}
        problems = []
        opens = {o["conn"]: o["client"] for o in j.of("open")}
        for conn in conns:
            pair = by_client.get(opens[conn])
            self.assertIsNotNone(pair, f"conn {conn}: its client {opens[conn]} is none of ours")
            c, x = pair
            for direction, sent in (("up", c.sent), ("down", x.sent)):
                fig = rebuild(j, conn, direction, sent)
                for k in totals:
                    totals[k] += fig[k]
                if fig["wrong"] or fig["overlap"] or fig["unaccounted"] or fig["missing_end"] or fig["beyond_end"]:
                    problems.append((conn, direction, fig))
        gap_bytes = sum(o["bytes"] for o in j.of("gap"))
        faults = len(j.of("fault"))
        elapsed = time.monotonic() - started
        print(f"\njournal integrity: {changes} toxic changes, {faults} fault lines, {totals['sent']} bytes "
              f"through, {totals['recorded']} recorded in {totals['data_lines']} data lines, {totals['holes']} "
              f"in holes, gap lines count {gap_bytes}; wrong {totals['wrong']} bytes "
              f"({100.0 * totals['wrong'] / max(1, totals['recorded']):.2f} % of recorded), overlap "
              f"{totals['overlap']}, unaccounted {totals['unaccounted']}, missing at the end "
              f"{totals['missing_end']}; {elapsed:.1f} s", file=sys.stderr)
        self.assertGreater(faults, 100, "too few fault lines to test anything")
        self.assertGreater(totals["holes"], 0, "the writer never fell behind: nothing was tested")
        self.assertGreater(totals["recorded"], 0)
        self.assertEqual(problems, [], "bytes off their true offset or outside any counted gap")
        self.assertEqual(totals["holes"], gap_bytes, "holes and gap lines disagree")
        self.assertEqual(st["gaps"]["bytes"], gap_bytes, st)
        self.assertEqual(totals["recorded"] + totals["holes"], totals["sent"])


if __name__ == "__main__":
    unittest.main()
