// `faultline drill FILE`: loads a drill, checks that every faultline API (and proxy) it
// names is there, runs it — steady-state hypothesis, method, rollbacks — on one Asio
// io_context, computes the verdicts and writes the reports. Returns the exit code: 0 pass,
// 1 failed or deviated, 2 could not run. The Asio machinery stays in runner.cpp.
#pragma once
#include <string>

#include "replay/drill.hpp"

namespace faultline::drill {

struct RunOptions {
  std::string drill_path;
  ParseOptions parse;
  std::string report_json;  // --report-json FILE
  std::string junit;        // --junit FILE
  bool progress = false;    // a line per step (on a terminal)
  bool quiet = false;       // no table at the end
  bool check_only = false;  // --check: parse and check the file, run nothing
};

int run_drill(const RunOptions& options);

}  // namespace faultline::drill
