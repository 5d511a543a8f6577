// Where a drill's replay actions meet the replay engine: `replay.start` runs an embedded
// replay server (replay_run.hpp) inside the drill process until `replay.stop` or the end of
// the drill, `replay.client` replays a journal's client side against a target. The runner
// owns one ReplayActions for the run; its destructor stops every server still running.
#pragma once
#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "replay/drill.hpp"

namespace faultline::replay {
class ReplayServer;
}

namespace faultline::drill {

struct ReplayActionResult {
  bool ok = false;
  std::string output;  // what happened (e.g. "replay server r1 on 127.0.0.1:40411: 12 recorded exchanges (http)")
  std::string error;
};

class ReplayActions {
 public:
  // Relative journals resolve against `base_dir` (the drill file's directory).
  explicit ReplayActions(std::string base_dir);
  ~ReplayActions();
  ReplayActions(const ReplayActions&) = delete;
  ReplayActions& operator=(const ReplayActions&) = delete;

  ReplayActionResult start(const ReplaySpec& spec);
  ReplayActionResult stop(const ReplaySpec& spec);
  // replay.client: blocks until the replay is done (the runner calls it on a helper thread).
  ReplayActionResult client(const ReplaySpec& spec, const std::atomic<bool>* cancel = nullptr) const;
  // The bound HOST:PORT of a running server (what ${replay.NAME.address} becomes).
  std::optional<std::string> address(const std::string& name) const;
  void stop_all();

 private:
  std::string base_dir_;
  std::map<std::string, std::unique_ptr<replay::ReplayServer>> servers_;
};

}  // namespace faultline::drill
