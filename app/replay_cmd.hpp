// `faultline replay server|client`: flags, then replay/'s stand-in server and client replayer.
#pragma once

namespace faultline {
int run_replay_command(int argc, char** argv);
}
