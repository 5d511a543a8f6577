// The seam where a drill's `replay.start` / `replay.stop` actions meet the replay engine
// (client replayer, stand-in server: the replay part of issue 6). The drill parser already
// accepts these actions and the runner calls replay_action(); until the engine lands here,
// every call fails with "replay is not available in this build", which aborts the drill
// cleanly (rollbacks still run) instead of pretending the step happened.
#pragma once
#include <string>

#include "replay/drill.hpp"

namespace faultline::drill {

struct ReplayActionResult {
  bool ok = false;
  std::string output;  // what happened (e.g. "replaying j.jsonl against 127.0.0.1:6379")
  std::string error;
};

ReplayActionResult replay_action(Provider which, const ReplaySpec& spec);

}  // namespace faultline::drill
