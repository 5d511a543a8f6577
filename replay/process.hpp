// Running a command for `command` probes and actions: argv (no shell), extra environment,
// captured stdout/stderr, a timeout, and cancellation. Blocking by design — the runner
// calls it on a helper thread — so it is plain POSIX with error codes, no Asio.
#pragma once
#include <atomic>
#include <string>

#include "replay/drill.hpp"

namespace faultline::drill {

struct ProcessResult {
  bool started = false;  // false: could not run it at all (`error` says why)
  int exit_code = -1;    // -1 when killed by a signal
  bool timed_out = false;
  bool cancelled = false;
  std::string out, err;  // each capped at 1 MiB
  std::string error;
  double ms = 0;
};

// Runs `spec` in its own process group, so a timeout or cancel (SIGTERM, then SIGKILL after
// 2 s) reaches whatever it started too. `cancel` is polled every 50 ms.
ProcessResult run_process(const CommandSpec& spec, const std::atomic<bool>& cancel);

}  // namespace faultline::drill
