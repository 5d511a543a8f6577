// The faultline executable: picks a subcommand and hands over. Kept thin on purpose.
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include <cxxopts.hpp>
#include <spdlog/cfg/env.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "app/ctl.hpp"
#include "proxy/server.hpp"

namespace {

const char* kUsage = R"(faultline: a Toxiproxy-compatible chaos proxy

usage: faultline COMMAND [options]

commands:
  serve     run the proxy server and its control API (toxiproxy-server's flags work too)
  ctl       talk to a running server (toxiproxy-cli's commands)
  version   print the version

Run `faultline COMMAND --help` for a command's options.
)";

// toxiproxy-server uses Go's flag package: "-host=0.0.0.0" and "-port 8474". Rewrite
// those single-dash long flags to the GNU form so existing scripts keep working.
std::vector<std::string> normalize_go_flags(int argc, char** argv) {
  static const std::set<std::string> go_flags = {"host", "port", "config", "seed", "proxy-metrics", "runtime-metrics",
                                                 "version", "help"};
  std::vector<std::string> out;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a.size() > 2 && a[0] == '-' && a[1] != '-') {
      const std::string name = a.substr(1, a.find('=') == std::string::npos ? std::string::npos : a.find('=') - 1);
      if (go_flags.count(name)) a = "-" + a;
    }
    out.push_back(a);
  }
  return out;
}

void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("faultline");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  std::string lvl = level;
  if (lvl.empty()) {
    const char* env = std::getenv("LOG_LEVEL");
    lvl = env ? env : "info";
  }
  if (lvl == "warning") lvl = "warn";
  if (lvl == "fatal" || lvl == "panic") lvl = "critical";
  spdlog::set_level(spdlog::level::from_str(lvl));
}

int serve(int argc, char** argv) {
  auto normalized = normalize_go_flags(argc, argv);
  std::vector<char*> args;
  for (auto& s : normalized) args.push_back(s.data());
  cxxopts::Options options("faultline serve", "Run the proxy server and its Toxiproxy-compatible control API.");
  faultline::ServeOptions o;
  // clang-format off
  options.add_options()
    ("host", "control API listen host", cxxopts::value<std::string>()->default_value("127.0.0.1"))
    ("port", "control API port (0 = any free port)", cxxopts::value<unsigned short>()->default_value("8474"))
    ("config", "Toxiproxy config (JSON array) or faultline profile (JSON object)", cxxopts::value<std::string>())
    ("seed", "seed for every random fault decision (reproducible runs)", cxxopts::value<std::uint64_t>())
    ("port-file", "write the control API's bound HOST:PORT here once it listens", cxxopts::value<std::string>())
    ("token-file", "require 'Authorization: Bearer <first line of this file>' on every route but /version", cxxopts::value<std::string>())
    ("allow-host", "also accept this Host header name (repeatable)", cxxopts::value<std::vector<std::string>>())
    ("connect-timeout-ms", "upstream connect timeout", cxxopts::value<std::uint64_t>()->default_value("5000"))
    ("max-connections", "per-proxy connection limit (0 = none)", cxxopts::value<std::uint64_t>()->default_value("0"))
    ("max-queued-bytes", "per connection and direction, bytes held by faults before reading pauses", cxxopts::value<std::uint64_t>()->default_value("16777216"))
    ("shutdown-timeout-ms", "on SIGINT/SIGTERM, how long open connections may finish", cxxopts::value<std::uint64_t>()->default_value("5000"))
    ("workers", "worker threads (0 = one per core)", cxxopts::value<std::size_t>()->default_value("0"))
    ("no-splice", "relay bulk data through user-space buffers instead of splice(2) (for comparison)")
    ("log-level", "trace, debug, info, warn, error (default: $LOG_LEVEL or info)", cxxopts::value<std::string>()->default_value(""))
    ("proxy-metrics", "accepted for toxiproxy-server compatibility; /metrics is always on")
    ("runtime-metrics", "accepted for toxiproxy-server compatibility; process metrics are always on")
    ("version", "print the version and exit")
    ("help", "show this help");
  // clang-format on
  cxxopts::ParseResult r;
  try {
    r = options.parse(static_cast<int>(args.size()), args.data());
  } catch (const cxxopts::exceptions::exception& e) {
    std::cerr << "faultline serve: " << e.what() << "\n" << options.help();
    return 2;
  }
  if (r.count("help")) {
    std::cout << options.help();
    return 0;
  }
  if (r.count("version")) {
    std::cout << "faultline version " << FAULTLINE_VERSION << " (toxiproxy-server compatible 2.12.0)\n";
    return 0;
  }
  if (!r.unmatched().empty()) {
    std::cerr << "faultline serve: unexpected argument \"" << r.unmatched().front() << "\"\n";
    return 2;
  }
  setup_logging(r["log-level"].as<std::string>());
  o.host = r["host"].as<std::string>();
  o.port = r["port"].as<unsigned short>();
  if (r.count("config")) o.config_path = r["config"].as<std::string>();
  if (r.count("seed")) o.seed = r["seed"].as<std::uint64_t>();
  if (r.count("port-file")) o.port_file = r["port-file"].as<std::string>();
  if (r.count("token-file")) o.token_file = r["token-file"].as<std::string>();
  if (r.count("allow-host")) o.allowed_hosts = r["allow-host"].as<std::vector<std::string>>();
  o.connect_timeout_ms = r["connect-timeout-ms"].as<std::uint64_t>();
  o.max_connections = r["max-connections"].as<std::uint64_t>();
  o.max_queued_bytes = r["max-queued-bytes"].as<std::uint64_t>();
  o.shutdown_timeout_ms = r["shutdown-timeout-ms"].as<std::uint64_t>();
  o.workers = r["workers"].as<std::size_t>();
  o.splice = r.count("no-splice") == 0;
  o.runtime_metrics = r.count("runtime-metrics") > 0;
  if (o.max_queued_bytes < 64 * 1024) {
    std::cerr << "faultline serve: --max-queued-bytes must be at least 65536\n";
    return 2;
  }
  return faultline::run_server(o);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "help")) {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  try {
    if (command == "serve") return serve(argc - 1, argv + 1);
    if (command == "ctl") return faultline::run_ctl(argc - 2, argv + 2);
    if (command == "version" || command == "--version" || command == "-version") {
      std::cout << "faultline " << FAULTLINE_VERSION << " (toxiproxy-compatible API 2.12.0)\n";
      return 0;
    }
  } catch (const std::exception& e) {
    std::cerr << "faultline " << command << ": unexpected error: " << e.what() << "\n";
    return 1;
  }
  std::cerr << "faultline: unknown command \"" << command << "\"\n" << kUsage;
  return 2;
}
