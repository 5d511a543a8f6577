#include "replay/replay_actions.hpp"

namespace faultline::drill {

ReplayActionResult replay_action(Provider which, const ReplaySpec& spec) {
  (void)spec;
  ReplayActionResult r;
  r.error = std::string("replay is not available in this build (") + to_string(which) + ")";
  return r;
}

}  // namespace faultline::drill
