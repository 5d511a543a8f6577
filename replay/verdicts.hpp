// Verdicts: named pass/fail checks for the V.1-V.8 criteria, computed only from what the
// run recorded (probe results, load calls, faultline /metrics polls, activity times), so
// they are unit-tested on synthetic records and a re-run with the same observations gives
// the same answer. Also the run's overall outcome and exit code. Pure.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "replay/drill.hpp"
#include "replay/record.hpp"

namespace faultline::drill {

struct VerdictResult {
  std::string name;
  VerdictType type = VerdictType::success_rate;
  std::string criterion;
  bool passed = false;
  std::string summary;                // one line: what was measured against what bound
  std::vector<std::string> failures;  // every reason it failed
  std::vector<std::pair<std::string, double>> measured;  // numbers for the JSON report
};

// What a fault did, by faultline's own count: the per-toxic series a verdict reads to tell
// whether its fault acted.
inline constexpr const char* kToxicMetrics[4] = {"faultline_toxic_messages_total", "faultline_toxic_resets_total",
                                                 "faultline_toxic_bytes_dropped_total", "faultline_toxic_bytes_delayed_total"};

// Every (faultline API, /metrics series) the verdict reads: what the runner polls.
std::vector<std::pair<std::string, std::string>> series_read(const VerdictSpec& spec);

// The name of the zero-delay toxic that counts a failover verdict's k-th `traffic.exclude`
// match (health checks) on a proxy; the runner adds it, the verdict reads its counter.
std::string traffic_counter_name(const VerdictSpec& spec, std::size_t k);

std::vector<VerdictResult> evaluate_verdicts(const std::vector<VerdictSpec>& specs, const RunRecord& record);

// Chaos Toolkit's run statuses.
enum class Status { completed, failed, aborted, interrupted };
const char* to_string(Status s);

struct Outcome {
  Status status = Status::completed;
  bool deviated = false;   // the steady state did not hold after (or during) the method
  std::string reason;      // why the status is not completed
  bool preflight_failed = false;  // nothing ran: a faultline API or proxy was not there
};

// 0: completed, not deviated, every verdict passed. 1: failed, deviated or a verdict
// failed. 2: the drill could not run to a verdict (aborted, interrupted, preflight).
int exit_code(const Outcome& outcome, const std::vector<VerdictResult>& verdicts);
// "pass", "fail" or "error" (the same three cases).
const char* result_word(int exit_code);

}  // namespace faultline::drill
