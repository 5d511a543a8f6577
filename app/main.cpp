// The faultline executable: picks a subcommand and hands over. Kept thin on purpose.
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include <cxxopts.hpp>
#include <spdlog/cfg/env.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "app/ctl.hpp"
#include "app/drill_cmd.hpp"
#include "app/export_cmd.hpp"
#include "app/replay_cmd.hpp"
#include "proxy/json_io.hpp"
#include "proxy/server.hpp"
#include "proxy/tls.hpp"

namespace {

const char* kUsage = R"(faultline: a Toxiproxy-compatible chaos proxy

usage: faultline COMMAND [options]

commands:
  serve     run the proxy server and its control API (toxiproxy-server's flags work too)
  ctl       talk to a running server (toxiproxy-cli's commands)
  ca        create the local CA that TLS listeners mint certificates with (`ca init`)
  drill     run a drill file: faults, loads, steady-state checks and V.1-V.8 verdicts
            (`drill FILE [--report-json F] [--junit F]`; exit 0 pass, 1 fail, 2 could not run)
  export    turn a recording into HAR, pcapng (Wireshark) or a text timeline
            (`export FORMAT RECORDING [-o OUT]`)
  replay    replay a recording: `replay server` stands in for an upstream with recorded
            responses, `replay client` re-drives a server and compares (see docs/replay.md)
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
    ("allow-origin", "let web pages of this origin (e.g. http://localhost:3000, or *) call the API (repeatable)",
     cxxopts::value<std::vector<std::string>>())
    ("max-api-connections", "control API connections served at once; more get 503", cxxopts::value<std::size_t>()->default_value("256"))
    ("api-request-timeout-ms", "a control API request must arrive in full within this", cxxopts::value<std::uint64_t>()->default_value("10000"))
    ("recordings-root", "POST /recordings writes only under this directory", cxxopts::value<std::string>()->default_value("recordings"))
    ("connect-timeout-ms", "upstream connect timeout", cxxopts::value<std::uint64_t>()->default_value("5000"))
    ("max-connections", "per-proxy connection limit (0 = none)", cxxopts::value<std::uint64_t>()->default_value("0"))
    ("max-queued-bytes", "per connection and direction, bytes held by faults before reading pauses", cxxopts::value<std::uint64_t>()->default_value("16777216"))
    ("max-buffered-bytes", "over every connection, bytes held by faults before reading pauses (0 = no limit)", cxxopts::value<std::uint64_t>()->default_value("1073741824"))
    ("shutdown-timeout-ms", "on SIGINT/SIGTERM, how long open connections may finish", cxxopts::value<std::uint64_t>()->default_value("5000"))
    ("workers", "worker threads (0 = one per core)", cxxopts::value<std::size_t>()->default_value("0"))
    ("no-splice", "relay bulk data through user-space buffers instead of splice(2) (for comparison)")
    ("lenient", "Toxiproxy's leniency: ignore toxic attributes a type does not have (default: refuse them with 400) "
                "and answer Toxiproxy's bare error texts")
    ("ca-dir", "the CA that mints certificates for proxies with tls.listen.mint (default: faultline ca path)",
     cxxopts::value<std::string>())
    ("record", "record every proxy's traffic into this directory (a journal; see docs/journal.md)",
     cxxopts::value<std::string>())
    ("no-redact", "record secrets (Authorization, API keys, passwords) as they are: recordings are NOT safe to share")
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
  if (r.count("allow-origin")) o.allowed_origins = r["allow-origin"].as<std::vector<std::string>>();
  o.max_api_connections = r["max-api-connections"].as<std::size_t>();
  o.api_request_timeout_ms = r["api-request-timeout-ms"].as<std::uint64_t>();
  o.recordings_root = r["recordings-root"].as<std::string>();
  o.connect_timeout_ms = r["connect-timeout-ms"].as<std::uint64_t>();
  o.max_connections = r["max-connections"].as<std::uint64_t>();
  o.max_queued_bytes = r["max-queued-bytes"].as<std::uint64_t>();
  o.max_buffered_bytes = r["max-buffered-bytes"].as<std::uint64_t>();
  o.shutdown_timeout_ms = r["shutdown-timeout-ms"].as<std::uint64_t>();
  o.workers = r["workers"].as<std::size_t>();
  o.splice = r.count("no-splice") == 0;
  if (r.count("ca-dir")) o.ca_dir = r["ca-dir"].as<std::string>();
  if (r.count("record")) o.record_dir = r["record"].as<std::string>();
  o.no_redact = r.count("no-redact") > 0;
  o.runtime_metrics = r.count("runtime-metrics") > 0;
  if (o.max_queued_bytes < 64 * 1024) {
    std::cerr << "faultline serve: --max-queued-bytes must be at least 65536\n";
    return 2;
  }
  if (o.max_buffered_bytes != 0 && o.max_buffered_bytes < 64 * 1024) {
    std::cerr << "faultline serve: --max-buffered-bytes must be 0 (no limit) or at least 65536\n";
    return 2;
  }
  faultline::set_lenient_toxic_attributes(r.count("lenient") > 0);
  o.start_replay = faultline::replay_starter();  // proxies whose upstream is a journal
  return faultline::run_server(o);
}

const char* kCaUsage = R"(usage: faultline ca VERB [options]

verbs:
  init [--dir DIR] [--force]   create a local CA (ca.pem, ca-key.pem) for TLS listeners with "mint": true
  path                         print the default CA directory

DIR defaults to $FAULTLINE_CA_DIR, else $XDG_DATA_HOME/faultline/ca, else ~/.local/share/faultline/ca.
)";

int ca_init(int argc, char** argv) {
  cxxopts::Options options("faultline ca init", "Create a local CA that TLS listeners mint certificates with.");
  // clang-format off
  options.add_options()
    ("dir", "where to write ca.pem and ca-key.pem", cxxopts::value<std::string>()->default_value(faultline::tls::default_ca_dir()))
    ("force", "replace an existing CA (certificates minted by the old one stop being trusted)")
    ("help", "show this help");
  // clang-format on
  cxxopts::ParseResult r;
  try {
    r = options.parse(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    std::cerr << "faultline ca init: " << e.what() << "\n" << options.help();
    return 2;
  }
  if (r.count("help")) {
    std::cout << options.help();
    return 0;
  }
  if (!r.unmatched().empty()) {
    std::cerr << "faultline ca init: unexpected argument \"" << r.unmatched().front() << "\"\n";
    return 2;
  }
  const std::string dir = r["dir"].as<std::string>();
  std::string error;
  if (!faultline::tls::init_ca(dir, r.count("force") > 0, error)) {
    std::cerr << "faultline ca init: " << error << "\n";
    return 1;
  }
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(dir, ec);
  if (ec) abs = dir;
  const std::string cert = (abs / faultline::tls::kCaCertFile).string();
  const std::string key = (abs / faultline::tls::kCaKeyFile).string();
  std::cout << "wrote " << cert << " (the CA certificate: give it to your clients)\n"
            << "wrote " << key << " (its private key, mode 0600: keep it to yourself)\n"
            << "\n"
            << "TLS listeners with \"mint\": true now present certificates signed by this CA.\n"
            << "Trust it where the client runs:\n"
            << "  Debian/Ubuntu (e.g. a container):\n"
            << "    cp " << cert << " /usr/local/share/ca-certificates/faultline.crt && update-ca-certificates\n"
            << "  Node.js:\n"
            << "    NODE_EXTRA_CA_CERTS=" << cert << "\n"
            << "  Python (ssl, httpx: SSL_CERT_FILE; requests: REQUESTS_CA_BUNDLE). These replace the default\n"
            << "  bundle; after update-ca-certificates, point them at /etc/ssl/certs/ca-certificates.crt instead:\n"
            << "    SSL_CERT_FILE=" << cert << " REQUESTS_CA_BUNDLE=" << cert << "\n"
            << "  curl:\n"
            << "    curl --cacert " << cert << " https://...\n";
  return 0;
}

int ca(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kCaUsage;
    return 2;
  }
  const std::string verb = argv[1];
  if (verb == "--help" || verb == "-h" || verb == "help") {
    std::cout << kCaUsage;
    return 0;
  }
  if (verb == "init") return ca_init(argc - 1, argv + 1);
  if (verb == "path") {
    if (argc > 2) {
      std::cerr << "faultline ca path: unexpected argument \"" << argv[2] << "\"\n";
      return 2;
    }
    std::cout << faultline::tls::default_ca_dir() << "\n";
    return 0;
  }
  std::cerr << "faultline ca: unknown verb \"" << verb << "\"\n" << kCaUsage;
  return 2;
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
    if (command == "ca") return ca(argc - 1, argv + 1);
    if (command == "drill") return faultline::run_drill_command(argc - 1, argv + 1);
    if (command == "export") return faultline::run_export(argc - 1, argv + 1);
    if (command == "replay") return faultline::run_replay_command(argc - 1, argv + 1);
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
