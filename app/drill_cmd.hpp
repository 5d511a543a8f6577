// `faultline drill FILE`: flags, then replay/'s drill runner.
#pragma once

namespace faultline {
int run_drill_command(int argc, char** argv);
}
