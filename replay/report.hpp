// The drill's results for people and machines: a terminal table, a JSON report (Chaos
// Toolkit's journal shape — status, deviated, steady_states, run, rollbacks — plus loads,
// metrics and verdicts) and JUnit XML for CI (one testcase per verdict and per hypothesis
// probe and phase). Pure: a finished run in, text out.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "replay/drill.hpp"
#include "replay/record.hpp"
#include "replay/verdicts.hpp"

namespace faultline::drill {

struct RunReport {
  const Drill* drill = nullptr;
  RunRecord record;
  Outcome outcome;
  std::vector<VerdictResult> verdicts;
  int exit_code = 0;
  std::string started_at;  // ISO 8601 UTC, e.g. 2024-05-01T10:00:00.123Z
  double duration = 0;     // seconds
  std::string version;     // faultline's
};

std::string report_json(const RunReport& report);
std::string report_junit(const RunReport& report);
std::string report_table(const RunReport& report);

// One progress line for an activity that just ended (shown on a terminal).
std::string progress_line(const ActivityRecord& a);

std::string xml_escape(std::string_view text);

}  // namespace faultline::drill
