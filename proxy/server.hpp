// `faultline serve`: the daemon. Asio-free so the executable stays cheap to compile.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proxy/replay_hook.hpp"

namespace faultline {

struct ServeOptions {
  std::string host = "127.0.0.1";
  unsigned short port = 8474;
  std::optional<std::string> config_path;
  std::optional<std::string> port_file;
  std::optional<std::string> token_file;
  std::vector<std::string> allowed_hosts;
  std::vector<std::string> allowed_origins;  // --allow-origin: pages that may call the API
  std::optional<std::uint64_t> seed;
  bool runtime_metrics = false;
  std::uint64_t connect_timeout_ms = 5000;
  std::uint64_t max_connections = 0;
  std::uint64_t max_queued_bytes = 16 * 1024 * 1024;
  std::uint64_t max_buffered_bytes = 1ull << 30;  // every connection together; 0 = no limit
  std::uint64_t shutdown_timeout_ms = 5000;
  std::size_t workers = 0;  // 0 = one per core
  bool splice = true;
  std::string ca_dir;  // empty: tls::default_ca_dir()
  std::optional<std::string> record_dir;  // --record DIR: record every proxy from the start
  bool no_redact = false;
  std::string recordings_root = "recordings";  // POST /recordings writes only under it
  std::size_t max_api_connections = 256;       // control API connections at once; more get 503
  std::uint64_t api_request_timeout_ms = 10000;  // a request must arrive in full within this
  ReplayStarter start_replay;  // proxies with "replay" (installed by app/, which owns replay/)
};

// Runs until SIGINT/SIGTERM. Returns the process exit code (2: could not start).
int run_server(const ServeOptions& options);

}  // namespace faultline
