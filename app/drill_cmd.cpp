#include "app/drill_cmd.hpp"

#include <unistd.h>

#include <iostream>
#include <string>
#include <vector>

#include <cxxopts.hpp>

#include "replay/runner.hpp"

namespace faultline {

int run_drill_command(int argc, char** argv) {
  cxxopts::Options options("faultline drill",
                           "Run a drill: steady-state hypothesis, method (faults, loads), rollbacks, verdicts.\n"
                           "Exit code: 0 pass, 1 failed or deviated, 2 could not run. See docs/drills.md.");
  options.positional_help("FILE");
  // clang-format off
  options.add_options()
    ("file", "the drill (JSON)", cxxopts::value<std::string>())
    ("report-json", "write the JSON report here", cxxopts::value<std::string>())
    ("junit", "write a JUnit XML report here (one testcase per verdict and hypothesis probe)", cxxopts::value<std::string>())
    ("seed", "the seed the faultline servers run with; recorded in the reports and available as ${seed}",
     cxxopts::value<std::uint64_t>())
    ("var", "set a configuration variable, NAME=VALUE (repeatable; wins over the file and the environment)",
     cxxopts::value<std::vector<std::string>>())
    ("progress", "print a line per step (default: when stdout is a terminal)")
    ("no-progress", "no per-step lines")
    ("quiet", "no table at the end (reports and exit code only)")
    ("check", "only parse and check the file (exit 0 if it is valid, 2 if not); run nothing")
    ("help", "show this help");
  // clang-format on
  options.parse_positional({"file"});
  cxxopts::ParseResult r;
  try {
    r = options.parse(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    std::cerr << "faultline drill: " << e.what() << "\n" << options.help();
    return 2;
  }
  if (r.count("help")) {
    std::cout << options.help();
    return 0;
  }
  if (!r.count("file")) {
    std::cerr << "faultline drill: which drill? usage: faultline drill FILE [options]\n";
    return 2;
  }
  if (!r.unmatched().empty()) {
    std::cerr << "faultline drill: unexpected argument \"" << r.unmatched().front() << "\"\n";
    return 2;
  }
  drill::RunOptions o;
  o.drill_path = r["file"].as<std::string>();
  if (r.count("report-json")) o.report_json = r["report-json"].as<std::string>();
  if (r.count("junit")) o.junit = r["junit"].as<std::string>();
  if (r.count("seed")) o.parse.seed = r["seed"].as<std::uint64_t>();
  if (r.count("var")) {
    for (const auto& v : r["var"].as<std::vector<std::string>>()) {
      const auto eq = v.find('=');
      if (eq == std::string::npos || eq == 0) {
        std::cerr << "faultline drill: --var wants NAME=VALUE, got \"" << v << "\"\n";
        return 2;
      }
      o.parse.vars.emplace_back(v.substr(0, eq), v.substr(eq + 1));
    }
  }
  o.progress = r.count("progress") ? true : r.count("no-progress") ? false : ::isatty(STDOUT_FILENO) == 1;
  o.quiet = r.count("quiet") > 0;
  o.check_only = r.count("check") > 0;
  return drill::run_drill(o);
}

}  // namespace faultline
