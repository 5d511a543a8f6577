// Everything a drill run observed, in the form verdicts and reports read: activity results
// (probes with their observations, actions with their output), every load call, the
// faultline /metrics samples taken while the method ran, and when each activity started
// and ended. Times are seconds since the run started (steady clock). Pure data.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "replay/drill.hpp"
#include "replay/prometheus.hpp"

namespace faultline::drill {

enum class Phase { before, during, after, method, rollback };
const char* to_string(Phase p);

struct ActivityRecord {
  std::string name;
  Provider provider = Provider::wait;
  bool probe = false;
  bool background = false;
  bool critical = false;
  Phase phase = Phase::method;
  double start = 0, end = 0;  // seconds since the run started
  bool ok = false;
  bool skipped = false;  // not run (the method stopped first)
  std::string observed;  // a short line: what the probe saw or what the action did
  std::string why;       // when !ok: the tolerance failure or the error
  int http_status = 0;   // http probes: the status code (0: none)
  double latency_ms = 0;
};

struct LoadCall {
  // Seconds since the run started: the call's intended start (open loop: its place in the
  // schedule, so a call sent late counts its lateness in latency_ms, as wrk2 does).
  double start = 0;
  double latency_ms = 0;
  bool ok = false;
  int status = 0;      // http status code, else 0
  std::string detail;  // why it failed (empty when ok)
  double late_ms = 0;  // how long after its intended start it was sent
  bool sent = true;    // false: its time came while every worker was busy, and the load ended first
};

struct WriteCheck {
  bool ran = false;
  std::uint64_t acknowledged = 0;  // calls that passed their success tolerance
  std::uint64_t verified = 0;      // of those, read back with the expected value
  std::uint64_t lost = 0;
  std::vector<std::string> examples;  // first few lost keys or errors
  std::string error;                  // verification could not run
};

struct LoadRecord {
  std::string name;
  ProbeKind target = ProbeKind::http;
  std::vector<LoadCall> calls;
  std::optional<WriteCheck> writes;
};

struct MetricPoll {
  double t = 0;
  std::vector<PromSample> samples;  // only the series some verdict reads
};

struct HypothesisRun {
  Phase phase = Phase::before;
  double start = 0;
  bool met = false;
  std::vector<ActivityRecord> probes;
};

// "kill+2s" -> ("kill", 2), "storm.removed-500ms" -> ("storm.removed", -0.5); nullopt when the
// text does not end in an offset (a number with s or ms after + or -).
std::optional<std::pair<std::string, double>> split_offset(const std::string& key);

// "kill.removed" -> ("kill", ".removed"); without a .start, .end or .removed edge: (key, "").
std::pair<std::string, std::string> split_edge(const std::string& key);

// A workflow command's stdout: each line that is a JSON object {"start", "end" (unix seconds),
// "ok", "status", "detail"} is one step; other lines are the script's own output. `wall0` is
// the run's start in unix seconds (step times become run times).
struct StepLines {
  std::vector<LoadCall> calls;  // in the order printed
  std::size_t malformed = 0;    // JSON objects without start, end and ok (or ending before they start)
};
StepLines parse_steps(std::string_view stdout_text, double wall0);

struct RunRecord {
  std::vector<HypothesisRun> hypothesis;
  std::vector<ActivityRecord> method;
  std::vector<ActivityRecord> rollbacks;
  std::map<std::string, LoadRecord> loads;
  std::map<std::string, std::vector<MetricPoll>> metrics;  // per faultline API URL, in time order
  std::map<std::string, std::string> metric_errors;        // per URL: why polling failed (last error)
  // "NAME.start", "NAME.end", "NAME.removed", "method.start", "method.end" -> seconds
  std::map<std::string, double> events;
  // The protocol of each proxy a verdict counts traffic on ("http", "mcp", "resp", "tcp"),
  // keyed by proxy_key(faultline, proxy); read at preflight.
  std::map<std::string, std::string> proxy_protocols;
  static std::string proxy_key(const std::string& faultline, const std::string& proxy) { return faultline + " " + proxy; }

  // Every run of a probe (any phase) with that name, in time order.
  std::vector<const ActivityRecord*> probe_runs(const std::string& name) const;
  // The time of an event key, with its offset applied ("kill+2s" is 2 s after kill).
  std::optional<double> event(const std::string& key) const;
};

}  // namespace faultline::drill
