// `faultline ctl`: toxiproxy-cli's commands and flags against the control API.
#pragma once

namespace faultline {
int run_ctl(int argc, char** argv);
}
