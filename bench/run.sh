#!/usr/bin/env bash
# Side-by-side benchmark of faultline against a direct connection, HAProxy (mode tcp) and socat,
# all on 127.0.0.1, in phases:
#   throughput   bulk throughput, one connection (iperf3)
#   redis        redis-benchmark requests/s (50 connections) and PING latency (1 connection)
#   connections  new connections per second (redis-benchmark -k 0)
#   http         HTTP/1.1 keep-alive requests/s and p50/p99 latency (wrk -t1 -c50) against an
#                HAProxy origin that answers every request itself (200, "hello world\n")
#   memory       memory per idle connection
# Medians of 3 runs (--runs N), runs interleaved across targets.
# Two more targets measure what a toxic that does nothing costs, in the throughput and redis
# phases: faultline+latency0 (latency 0, jitter 0 on both streams) and faultline+bandwidth
# (rate 100,000,000 KB/s on both streams), extra proxies on the plain faultline target's server,
# reported as ratios to plain faultline (bar: < 10 % cost).
# faultline+record measures what recording costs: another tcp proxy on the same server, recorded
# through POST /recordings (a fresh recording per run, deleted after it), in the throughput and
# redis phases, reported as ratios to plain faultline (bars: recording costs < 30 % of bulk
# throughput and < 20 % of the redis-benchmark request rate), with what each recording wrote.
# Two targets take part in the http phase only: faultline+http (a second proxy on the plain
# faultline target's server with "protocol": "http") and haproxy+http (HAProxy in mode http);
# reported: faultline+http / faultline (bar: the HTTP decoder costs < 25 % of requests per
# second against the tcp proxy, a ratio >= 0.75) and faultline+http / haproxy+http.
# Prints a table and writes bench/results/latest.json.
#
#   bench/run.sh [--quick] [--runs N] [--phases throughput,redis,connections,http,memory]
#                [--targets direct,haproxy,haproxy+http,socat,faultline,faultline+latency0,
#                           faultline+bandwidth,faultline+record,faultline+http]
#                [--idle-conns N] [--iperf-seconds S] [--unique-bulk] [--http-seconds S] [--output FILE]
#
# --targets also takes the shorthands `toxics` (faultline and its two toxic variants, for quick
# iteration: bench/run.sh --targets toxics --phases throughput,redis), `recording` (faultline and
# faultline+record: bench/run.sh --targets recording --phases throughput,redis, about 2 minutes)
# and `all` (the default).
# FAULTLINE_BIN overrides build/faultline; BENCH_FAULTLINE_ARGS adds `faultline serve` flags
# (e.g. --no-splice); BENCH_FAULTLINE_LOG_LEVEL sets its log level (default warn).
# Before/after a change: bench/compare.py BEFORE_BIN AFTER_BIN alternates the two binaries round by
# round in one run and reports after/before relative to the direct connection of the same round.
# Takes about 10-12 minutes on a 2-core machine; the http phase alone (--phases http) about
# 2 minutes (6 targets x 3 runs x 5 s of wrk), about 30 s with --quick.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
cd "$ROOT"

missing=()
for tool in python3 iperf3 haproxy socat redis-server redis-benchmark wrk; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "bench: missing ${missing[*]}: run ./dev setup (it installs iperf3 haproxy socat redis-server redis-tools wrk)" >&2
  exit 1
fi
export FAULTLINE_BIN="${FAULTLINE_BIN:-$ROOT/build/faultline}"

# 5,000 idle connections through a proxy need ~10,000 descriptors in the proxy and the same in
# this script: ask for 65536 and settle for the hard limit.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

BENCH_TMP="$(mktemp -d /tmp/faultline-bench.XXXXXX)"
export BENCH_TMP
child=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n "$child" ]] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$child" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$child" 2>/dev/null || true
  fi
  # Backstop if bench.py died without cleaning up: it keeps the ids of the process groups it
  # started and has not stopped yet in $BENCH_TMP/pids.
  if [[ -f "$BENCH_TMP/pids" ]]; then
    while read -r pgid; do
      [[ -n "$pgid" ]] && kill -KILL -- "-$pgid" 2>/dev/null || true
    done <"$BENCH_TMP/pids"
  fi
  rm -rf "$BENCH_TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

python3 -u "$HERE/bench.py" "$@" &
child=$!
wait "$child"
