#!/usr/bin/env python3
"""Before/after: two faultline binaries benchmarked side by side in one run.

    bench/compare.py BEFORE_BIN AFTER_BIN [--rounds N] [--phases throughput,redis,http]
                     [--targets direct,faultline,faultline+http] [--quick]

Each round runs bench/run.sh once (--runs 1) on each binary, alternating which goes first, so slow
drift on a noisy machine lands on both. Every figure is also taken relative to the direct
connection measured in the same bench.py run, which cancels most of a round's load. Reported per
metric: the median over rounds of each binary's figure and of after/before, with the rounds'
spread (min..max of after/before), so "no worse beyond the run's own spread" can be read off.
Writes bench/results/compare.json.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def one_run(binary, phases, targets, quick, out):
    cmd = [os.path.join(HERE, "run.sh"), "--runs", "1", "--phases", phases,
           "--targets", targets, "--output", out]
    if quick:
        cmd.append("--quick")
    env = dict(os.environ, FAULTLINE_BIN=binary)
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    with open(out) as f:
        return json.load(f)["metrics"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--phases", default="throughput,redis,http")
    ap.add_argument("--targets", default="direct,faultline,faultline+http")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    for b in (args.before, args.after):
        if not os.access(b, os.X_OK):
            ap.error(f"{b}: not an executable faultline binary")
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")

    figures = {"before": {}, "after": {}}  # side -> metric -> target -> [values]
    better = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = [("before", args.before), ("after", args.after)]
            if r % 2:
                order.reverse()
            for side, binary in order:
                print(f"round {r + 1}/{args.rounds}: {side} ({binary})", file=sys.stderr, flush=True)
                metrics = one_run(binary, args.phases, args.targets, args.quick,
                                  os.path.join(tmp, f"{side}-{r}.json"))
                for key, m in metrics.items():
                    better[key] = m["better"]
                    direct = m["median"].get("direct")
                    for target, value in m["median"].items():
                        if target == "direct" or value is None:
                            continue
                        per = figures[side].setdefault(key, {}).setdefault(target, [])
                        per.append((value, value / direct if direct else None))

    report = {}
    print(f"{'metric':<12} {'target':<16} {'before':>12} {'after':>12} {'after/before':>13} {'rounds':>14}")
    for key in figures["before"]:
        for target, before in figures["before"][key].items():
            after = figures["after"].get(key, {}).get(target, [])
            n = min(len(before), len(after))
            if n == 0:
                continue
            # after/before per round, of the figures relative to direct where direct was measured.
            ratios = []
            for (bv, brel), (av, arel) in zip(before[:n], after[:n]):
                ratios.append(arel / brel if brel and arel else av / bv if bv else None)
            ratios = [x for x in ratios if x is not None]
            entry = {
                "before_median": statistics.median(v for v, _ in before[:n]),
                "after_median": statistics.median(v for v, _ in after[:n]),
                "after_over_before_median": statistics.median(ratios) if ratios else None,
                "after_over_before_spread": [min(ratios), max(ratios)] if ratios else None,
                "better": better[key],
            }
            report.setdefault(key, {})[target] = entry
            spread = "{:.3f}..{:.3f}".format(*entry["after_over_before_spread"]) if ratios else "-"
            med = f"{entry['after_over_before_median']:.3f}" if ratios else "-"
            print(f"{key:<12} {target:<16} {entry['before_median']:>12.1f} {entry['after_median']:>12.1f} "
                  f"{med:>13} {spread:>14}")
    out = os.path.join(HERE, "results", "compare.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"before": args.before, "after": args.after, "rounds": args.rounds,
                   "phases": args.phases, "targets": args.targets, "metrics": report}, f, indent=2)
        f.write("\n")
    print(f"wrote {out} (after/before > 1 is better for 'higher' metrics, < 1 for 'lower')", file=sys.stderr)


if __name__ == "__main__":
    main()
