// `faultline export FORMAT RECORDING [-o OUT]`: a recording as HAR, pcapng or a text timeline.
#pragma once

namespace faultline {
int run_export(int argc, char** argv);
}
