"""The files a recording creates, against a real faultline (issue 16, items 5 and 9).

- A full disk (a small tmpfs, mounted for the test: root only) fails the recording, and
  index.json says so: `state` "failed" and the error (the file and "No space left on
  device"), because room for the last index is kept from the start (index.json.reserve,
  removed when the recording stops). Traffic goes on; every journal line is whole.
- Symlinks planted under the names the recorder creates (index.json.tmp, a blob's temporary
  file, index.json.reserve, the next journal) are never followed: the files they point to
  are unchanged.

Run standalone: python3 tests/integration/test_recorder_files.py
"""
import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import EchoServer, Faultline, connect, poll, recv_exactly  # noqa: E402
from test_recorder import Journal, RecorderCase, blob_name, echo_many, post_recording, wait_status  # noqa: E402


def mount_tmpfs(path, size):
    """Mounts a tmpfs of `size` bytes at `path`; False when this process may not mount."""
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", path],
                       capture_output=True, timeout=10)
    return r.returncode == 0


def umount(path):
    subprocess.run(["umount", "-l", path], capture_output=True, timeout=10)


class FullDisk(RecorderCase):
    def setUp(self):
        super().setUp()
        self.disk = os.path.join(self.tmp, "disk")
        if os.geteuid() != 0 or not mount_tmpfs(self.disk, 1 << 20):
            self.skipTest("mounting a small tmpfs needs root")

    def tearDown(self):
        umount(self.disk)
        super().tearDown()

    def test_a_full_disk_is_written_into_index_json(self):
        rec = os.path.join(self.disk, "rec")
        with EchoServer() as echo, Faultline() as fl:
            p = fl.create_proxy("echo", echo.address)
            post_recording(fl, {"id": "full", "dir": rec, "blob_threshold": 1024})
            self.assertTrue(os.path.exists(os.path.join(rec, "index.json.reserve")))
            keep = connect(p["listen"])  # open across the failure
            st = None
            for _ in range(400):  # 2 KB per exchange, both ways: the 1 MiB disk fills long before
                payload = os.urandom(2000)
                keep.sendall(payload)
                self.assertEqual(recv_exactly(keep, len(payload)), payload)
                st = fl.request("GET", "/recordings/full")[1]
                if st["state"] != "recording":
                    break
            st = wait_status(fl, "full", lambda s: s["state"] == "failed", timeout=5)
            self.assertIn("No space left on device", st["error"])
            # The folder says it, while faultline still runs.
            with open(os.path.join(rec, "index.json")) as f:
                index = json.load(f)
            self.assertEqual(index["state"], "failed", index)
            self.assertEqual(index["error"], st["error"])
            # Traffic is unaffected.
            self.check_still_flowing(keep)
            keep.close()
            self.assertEqual(echo_many(p["listen"], 5), 5)
            status, final, _ = fl.request("DELETE", "/recordings/full")
            self.assertEqual((status, final["state"]), (200, "failed"))
        j = Journal(rec)  # whole lines only
        self.assertEqual(j.index["state"], "failed")
        self.assertIn("No space left on device", j.index["error"])
        self.assertIn("stopped_wall", j.index)
        self.assertFalse(os.path.exists(os.path.join(rec, "index.json.reserve")), "the reserve outlived the stop")
        self.assertFalse(os.path.exists(os.path.join(rec, "index.json.tmp")))


class PlantedSymlinks(RecorderCase):
    def victim_and_rec(self):
        """(victim, rec): a file holding "precious\n" that no symlink may get written, and the
        recording's directory (not there yet, in a folder of its own)."""
        victim = os.path.join(self.tmp, "victim")
        with open(victim, "w") as f:
            f.write("precious\n")
        root = os.path.join(self.tmp, "root")
        os.makedirs(root)
        return victim, os.path.join(root, "rec")

    def test_no_file_is_written_through_a_planted_symlink(self):
        victim, rec = self.victim_and_rec()
        with EchoServer() as echo, Faultline() as fl:
            p = fl.create_proxy("echo", echo.address)
            post_recording(fl, {"id": "planted", "dir": rec, "blob_threshold": 1024, "rotate_bytes": 1 << 20})
            self.assertEqual(echo_many(p["listen"], 3), 3)
            wait_status(fl, "planted", lambda s: s["events"] >= 1 + 2 + 6)
            # Planted while it records: the next index (at the stop), the next blob's
            # temporary file, the reserve's name.
            os.symlink(victim, os.path.join(rec, "index.json.tmp"))
            payload = os.urandom(3000)
            os.makedirs(os.path.join(rec, "blobs"), exist_ok=True)
            os.symlink(victim, os.path.join(rec, "blobs", ".tmp-" + blob_name(payload)))
            with connect(p["listen"]) as s:
                s.sendall(payload)
                self.assertEqual(recv_exactly(s, len(payload)), payload)
            wait_status(fl, "planted", lambda st: st["bytes"] >= 3 * 200 * 2 + 2 * len(payload))
            status, final, _ = fl.request("DELETE", "/recordings/planted")
            self.assertEqual((status, final["state"]), (200, "stopped"), final)
        with open(victim) as f:
            self.assertEqual(f.read(), "precious\n", "a file was written through a planted symlink")
        self.assertFalse(os.path.islink(os.path.join(rec, "index.json")))
        j = Journal(rec)
        self.assertEqual(j.index["state"], "stopped")
        self.assertIn(payload, j.all_payload())

    def test_a_symlink_planted_as_the_next_journal_is_not_followed(self):
        victim, rec = self.victim_and_rec()
        with EchoServer() as echo, Faultline() as fl:
            p = fl.create_proxy("echo", echo.address)
            post_recording(fl, {"id": "planted", "dir": rec, "rotate_bytes": 4096})
            os.symlink(victim, os.path.join(rec, "journal-000001.jsonl"))
            echo_many(p["listen"], 40)
            st = wait_status(fl, "planted", lambda s: s["state"] != "recording")
            self.assertEqual(st["state"], "failed", st)
            self.assertIn("journal-000001.jsonl: File exists", st["error"])
            fl.request("DELETE", "/recordings/planted")
        with open(victim) as f:
            self.assertEqual(f.read(), "precious\n")


if __name__ == "__main__":
    unittest.main()
