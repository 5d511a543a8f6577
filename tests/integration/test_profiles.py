"""Every shipped profile in profiles/ loads: faultline starts with it and serves its proxies."""
import glob
import json
import os
import unittest

from harness import Faultline

PROFILES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "profiles", "*.json")))


class ShippedProfiles(unittest.TestCase):
    def test_there_are_profiles(self):
        self.assertIn("default.json", [os.path.basename(p) for p in PROFILES])

    def test_each_profile_loads_and_serves_its_proxies(self):
        for path in PROFILES:
            with self.subTest(profile=os.path.basename(path)):
                with open(path) as f:
                    profile = json.load(f)
                entries = profile if isinstance(profile, list) else profile["proxies"]
                with Faultline("--config", path) as fl:
                    status, proxies, _ = fl.request("GET", "/proxies")
                    self.assertEqual(status, 200)
                    self.assertEqual(sorted(proxies), sorted(e["name"] for e in entries))
                    for e in entries:
                        self.assertEqual(proxies[e["name"]]["upstream"], e["upstream"])
                        self.assertEqual(proxies[e["name"]]["enabled"], e.get("enabled", True))


if __name__ == "__main__":
    unittest.main()
