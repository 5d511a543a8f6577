"""Runs one integration test file, or some of its classes, the way CTest registers them.

    python3 -u run_case.py test_relay.py [RelayTest ...]

The file is imported as its own module (so module-level fixtures and setUpModule behave as
under `python3 test_relay.py`), the named classes (or all of the file) run verbosely, and at the
end every failure, error and skip is listed on a line of its own ("FAILED: RelayTest.test_x",
"SKIPPED: ...: reason"), so CTest's --output-on-failure block names the method, and a skip
(IPv6 loopback missing, say) is visible rather than a silent pass.
"""
import importlib.util
import os
import sys
import unittest


def load_module(path):
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_name(test):
    # "test_x (test_relay.RelayTest.test_x)" reads worse than "RelayTest.test_x"; class-level
    # failures (setUpClass) are _ErrorHolder objects with only a description.
    method = getattr(test, "_testMethodName", None)
    if method is None:
        return str(test)
    return f"{type(test).__name__}.{method}"


def main(argv):
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    module = load_module(argv[0])
    loader = unittest.TestLoader()
    if len(argv) > 1:
        suite = unittest.TestSuite(loader.loadTestsFromName(name, module) for name in argv[1:])
    else:
        suite = loader.loadTestsFromModule(module)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    for test, _ in result.failures:
        print(f"FAILED: {test_name(test)}")
    for test, _ in result.errors:
        print(f"FAILED: {test_name(test)} (error)")
    for test in result.unexpectedSuccesses:
        print(f"FAILED: {test_name(test)} (unexpected success)")
    for test, reason in result.skipped:
        print(f"SKIPPED: {test_name(test)}: {reason}")
    if result.testsRun == 0 and not result.skipped:
        print("FAILED: no tests ran")
        return 1
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main(sys.argv[1:]))
