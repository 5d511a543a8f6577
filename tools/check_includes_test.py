#!/usr/bin/env python3
"""tools/check-includes on tools/include_fixture/, a tree with one include of each kind the
checker must refuse and some it must accept: exit 1, exactly the expected file:line list."""
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
EXPECTED = {
    "base/bad.hpp:3",                 # base/ includes proxy/ (upwards)
    "protocols/asio_outside.cpp:3",   # <boost/asio/...> outside proxy/asio.hpp
    "faults/sibling.hpp:3",           # faults/ includes recorder/ (siblings)
    "recorder/sibling.hpp:2",         # recorder/ includes faults/ (siblings)
    "proxy/beast_without_asio.cpp:1", # Beast in a file that did not include proxy/asio.hpp
    "replay/up.cpp:2",                # replay/ includes app/
}

run = subprocess.run([sys.executable, str(HERE / "check-includes"), str(HERE / "include_fixture")],
                     capture_output=True, text=True)
reported = {line.split(": ", 1)[0] for line in run.stdout.splitlines() if line}
failures = []
if run.returncode != 1:
    failures.append(f"exit {run.returncode}, want 1")
if reported != EXPECTED:
    failures.append(f"missed: {sorted(EXPECTED - reported)}; reported wrongly: {sorted(reported - EXPECTED)}")
for line in run.stdout.splitlines():
    if "layering:" not in line and "one include point" not in line and "Beast only where" not in line:
        failures.append(f"a report without its rule: {line}")
if failures:
    print(run.stdout, run.stderr, sep="\n")
    print("\n".join(failures))
    sys.exit(1)
print(f"check-includes refused the fixture's {len(EXPECTED)} bad includes and nothing else")
