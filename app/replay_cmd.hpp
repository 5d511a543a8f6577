// `faultline replay server|client`: flags, then replay/'s stand-in server and client replayer.
#pragma once
#include "proxy/replay_hook.hpp"

namespace faultline {

// What `serve` runs for a proxy with "replay": an embedded replay server on 127.0.0.1:0.
ReplayStarter replay_starter();
int run_replay_command(int argc, char** argv);
}
