// What every proxy needs from the running server: the control loop (listeners and the
// API live there), the worker pool (connections live there) and the server's limits.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/vocabulary.hpp"
#include "proxy/asio.hpp"
#include "proxy/buffer_budget.hpp"
#include "proxy/replay_hook.hpp"
#include "proxy/workers.hpp"

namespace faultline {
namespace rec {
class Recording;
}

class ServerContext {
 public:
  ServerContext(net::io_context& control, WorkerPool& workers) : control(control), workers(workers) {}
  net::io_context& control;
  WorkerPool& workers;
  Duration connect_timeout = std::chrono::seconds(5);
  std::size_t max_queued_bytes = 16 * 1024 * 1024;
  // Bytes held by faults across every connection (`--max-buffered-bytes`); null: no limit.
  std::shared_ptr<BufferBudget> budget;
  std::uint64_t max_connections = 0;  // per proxy; 0 = unlimited
  std::uint64_t seed = 0;
  bool splice = true;
  Duration upstream_probe_interval = std::chrono::milliseconds(500);
  std::string ca_dir;  // where `tls.listen.mint` finds the CA (`faultline ca init`)
  // POST /recordings writes only under this folder (`serve --recordings-root`).
  std::string recordings_root = "recordings";
  // Recordings in progress; each proxy's snapshot carries those that cover it.
  std::vector<std::shared_ptr<rec::Recording>> recordings;
  // Starts the replay server of a proxy whose upstream is a journal; empty: `replay` is refused.
  ReplayStarter start_replay;
};

}  // namespace faultline
