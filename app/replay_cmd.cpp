#include "app/replay_cmd.hpp"

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include <cxxopts.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "replay/replay_run.hpp"

namespace faultline {
namespace {

const char* kReplayUsage = R"(usage:
  faultline replay server --journal J --listen HOST:PORT [--protocol auto|http|resp|mcp|tcp]
                          [--unmatched error|closest|fail|forward] [--forward HOST:PORT]
                          [--rule 'MATCH=POLICY']... [--ignore PATH]... [--port-file F]
  faultline replay client --journal J --target HOST:PORT|NAME=HOST:PORT... [--proxy NAME]
                          [--speed N|max] [--open-loop]
                          [--concurrency-scale K] [--threshold F] [--ignore PATH]... [--timeout S]
                          [--header 'Name: value']... [--redis-password P]
See docs/replay.md.
)";

// Logs go to stderr; the level is --log-level, else $LOG_LEVEL, else info.
void setup_logging(const cxxopts::ParseResult& r) {
  std::string lvl = r.count("log-level") ? r["log-level"].as<std::string>() : "";
  if (lvl.empty()) {
    const char* env = std::getenv("LOG_LEVEL");
    lvl = env ? env : "info";
  }
  if (lvl == "warning") lvl = "warn";
  auto logger = spdlog::stderr_color_mt("faultline-replay");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_level(spdlog::level::from_str(lvl));
}

bool protocol_flag(const cxxopts::ParseResult& r, std::optional<Protocol>& out) {
  if (!r.count("protocol")) return true;
  const auto p = r["protocol"].as<std::string>();
  if (p == "auto") return true;
  if (!p.empty()) out = parse_protocol(p);  // an empty name is a mistake here, not tcp
  if (!out) {
    std::cerr << "faultline replay: --protocol must be auto, http, resp, mcp or tcp (got \"" << p << "\")\n";
    return false;
  }
  return true;
}

int server(int argc, char** argv) {
  cxxopts::Options options("faultline replay server", "Stand in for an upstream with recorded responses.");
  // clang-format off
  options.add_options()
    ("journal", "recording directory or journal file", cxxopts::value<std::string>())
    ("listen", "HOST:PORT to listen on (port 0 = any free port)", cxxopts::value<std::string>()->default_value("127.0.0.1:0"))
    ("protocol", "auto (from the journal), http, resp, mcp or tcp", cxxopts::value<std::string>()->default_value("auto"))
    ("unmatched", "requests the recording does not cover: error, closest, fail or forward", cxxopts::value<std::string>()->default_value("error"))
    ("forward", "HOST:PORT that the forward policy sends unmatched requests to", cxxopts::value<std::string>())
    ("rule", "MATCH=POLICY for unmatched requests, first match wins (repeatable): 'POST /v1/chat/*=forward', 'rpc tools/*=closest', 'GET=error'", cxxopts::value<std::vector<std::string>>())
    ("ignore", "a dotted JSON path left out of body matching (repeatable)", cxxopts::value<std::vector<std::string>>())
    ("port-file", "write the bound HOST:PORT here once listening", cxxopts::value<std::string>())
    ("log-level", "trace, debug, info, warn, error (default: $LOG_LEVEL or info)", cxxopts::value<std::string>())
    ("help", "show this help");
  // clang-format on
  cxxopts::ParseResult r;
  try {
    r = options.parse(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    std::cerr << "faultline replay server: " << e.what() << "\n" << options.help();
    return 2;
  }
  if (r.count("help")) {
    std::cout << options.help();
    return 0;
  }
  if (!r.count("journal")) {
    std::cerr << "faultline replay server: --journal is required\n" << kReplayUsage;
    return 2;
  }
  if (!r.unmatched().empty()) {
    std::cerr << "faultline replay server: unexpected argument \"" << r.unmatched().front() << "\"\n";
    return 2;
  }
  setup_logging(r);
  replay::ServerOptions o;
  o.journal = r["journal"].as<std::string>();
  o.listen = r["listen"].as<std::string>();
  if (!protocol_flag(r, o.protocol)) return 2;
  const auto u = r["unmatched"].as<std::string>();
  const auto policy = replay::parse_unmatched(u);
  if (!policy) {
    std::cerr << "faultline replay server: --unmatched must be error, closest, fail or forward (got \"" << u << "\")\n";
    return 2;
  }
  o.unmatched = *policy;
  if (r.count("forward")) o.forward = r["forward"].as<std::string>();
  if (r.count("rule")) {
    for (const auto& text : r["rule"].as<std::vector<std::string>>()) {
      replay::Rule rule;
      if (auto e = replay::parse_rule(text, rule)) {
        std::cerr << "faultline replay server: --rule " << *e << "\n";
        return 2;
      }
      o.rules.push_back(std::move(rule));
    }
  }
  if (auto e = replay::check_server_options(o)) {
    std::cerr << "faultline replay server: --" << *e << "\n";
    return 2;
  }
  if (r.count("ignore")) o.ignore = r["ignore"].as<std::vector<std::string>>();
  if (r.count("port-file")) o.port_file = r["port-file"].as<std::string>();
  return replay::run_server(o);
}

int client(int argc, char** argv) {
  cxxopts::Options options("faultline replay client", "Re-drive a server with the recorded client side.");
  // clang-format off
  options.add_options()
    ("journal", "recording directory or journal file", cxxopts::value<std::string>())
    ("target", "HOST:PORT of the server to drive, or NAME=HOST:PORT for the connections of recorded proxy NAME (repeatable)",
     cxxopts::value<std::vector<std::string>>())
    ("proxy", "replay only the connections of this recorded proxy (a journal may hold several)", cxxopts::value<std::string>())
    ("protocol", "auto (from the journal), http, resp, mcp or tcp", cxxopts::value<std::string>()->default_value("auto"))
    ("speed", "timing: 1 = as recorded, N = N times faster, max = as fast as possible", cxxopts::value<std::string>()->default_value("1"))
    ("open-loop", "send each request at its recorded time without waiting for the previous reply")
    ("concurrency-scale", "run each recorded connection K times at once", cxxopts::value<unsigned>()->default_value("1"))
    ("threshold", "exit 1 when (mismatches + errors) / exchanges exceeds this", cxxopts::value<double>()->default_value("0"))
    ("ignore", "a dotted JSON path left out of HTTP body comparison (repeatable)", cxxopts::value<std::vector<std::string>>())
    ("header", "'Name: value' set on every HTTP request, e.g. the Authorization the recording redacted (repeatable)", cxxopts::value<std::vector<std::string>>())
    ("redis-password", "the password put into AUTH and HELLO ... AUTH (the recording holds a token)", cxxopts::value<std::string>())
    ("timeout", "seconds to wait for each reply", cxxopts::value<double>()->default_value("10"))
    ("progress", "show the progress line (default: when stderr is a terminal)")
    ("no-progress", "no progress line")
    ("log-level", "trace, debug, info, warn, error (default: $LOG_LEVEL or info)", cxxopts::value<std::string>())
    ("help", "show this help");
  // clang-format on
  cxxopts::ParseResult r;
  try {
    r = options.parse(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    std::cerr << "faultline replay client: " << e.what() << "\n" << options.help();
    return 2;
  }
  if (r.count("help")) {
    std::cout << options.help();
    return 0;
  }
  if (!r.count("journal") || !r.count("target")) {
    std::cerr << "faultline replay client: --journal and --target are required\n" << kReplayUsage;
    return 2;
  }
  if (!r.unmatched().empty()) {
    std::cerr << "faultline replay client: unexpected argument \"" << r.unmatched().front() << "\"\n";
    return 2;
  }
  setup_logging(r);
  replay::ClientOptions o;
  o.journal = r["journal"].as<std::string>();
  for (const auto& t : r["target"].as<std::vector<std::string>>()) {
    const auto eq = t.find('=');
    if (eq != std::string::npos && eq < t.find(':')) {
      o.proxy_targets[t.substr(0, eq)] = t.substr(eq + 1);
    } else if (!o.target.empty()) {
      std::cerr << "faultline replay client: --target HOST:PORT given twice (for a proxy of its own, write NAME=HOST:PORT)\n";
      return 2;
    } else {
      o.target = t;
    }
  }
  if (r.count("proxy")) o.proxy = r["proxy"].as<std::string>();
  if (!protocol_flag(r, o.protocol)) return 2;
  const auto speed = r["speed"].as<std::string>();
  if (speed == "max") {
    o.speed = 0;
  } else {
    char* end = nullptr;
    o.speed = std::strtod(speed.c_str(), &end);
    if (!end || *end || !(o.speed > 0)) {
      std::cerr << "faultline replay client: --speed must be a positive number or max (got \"" << speed << "\")\n";
      return 2;
    }
  }
  o.open_loop = r.count("open-loop") > 0;
  o.concurrency_scale = r["concurrency-scale"].as<unsigned>();
  o.threshold = r["threshold"].as<double>();
  o.timeout = r["timeout"].as<double>();
  if (r.count("ignore")) o.ignore = r["ignore"].as<std::vector<std::string>>();
  if (r.count("header")) {
    for (const auto& h : r["header"].as<std::vector<std::string>>()) {
      const auto colon = h.find(':');
      std::string name = h.substr(0, colon), value = colon == std::string::npos ? "" : h.substr(colon + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      auto why = colon == std::string::npos ? std::optional<std::string>("expected 'Name: value'") : replay::header_problem(name, value);
      if (why) {
        std::cerr << "faultline replay client: --header \"" << (colon == std::string::npos ? h : name) << "\": " << *why << "\n";
        return 2;
      }
      o.headers.emplace_back(std::move(name), std::move(value));
    }
  }
  if (r.count("redis-password")) o.redis_password = r["redis-password"].as<std::string>();
  if (r.count("progress")) o.progress = 1;
  if (r.count("no-progress")) o.progress = 0;
  return replay::run_client(o);
}

}  // namespace

ReplayStarter replay_starter() {
  return [](const std::string& replay_json, const std::string& base_dir, std::string& upstream,
            std::shared_ptr<void>& owner) -> std::optional<std::string> {
    replay::ServerOptions o;
    o.listen = "127.0.0.1:0";
    if (auto e = replay::server_options_from_json(replay_json, base_dir, {}, o)) return e;
    std::string error;
    auto server = replay::ReplayServer::start(o, error);
    if (!server) return error.rfind("listen:", 0) == 0 || error.rfind("unmatched:", 0) == 0 ? error : "journal: " + error;
    upstream = server->address();
    owner = std::shared_ptr<replay::ReplayServer>(std::move(server));
    return std::nullopt;
  };
}

int run_replay_command(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "help")) {
    std::cout << kReplayUsage;
    return argc < 2 ? 2 : 0;
  }
  const std::string verb = argv[1];
  if (verb == "server") return server(argc - 1, argv + 1);
  if (verb == "client") return client(argc - 1, argv + 1);
  std::cerr << "faultline replay: unknown verb \"" << verb << "\"\n" << kReplayUsage;
  return 2;
}

}  // namespace faultline
