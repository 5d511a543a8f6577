// Random bytes as a `serve --config` file (a Toxiproxy array or a faultline profile):
// load_profile must accept it or say why with the file and a JSON path, never crash. `${VAR}`
// references are expanded from the environment, so the target sets a few variables.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "fuzz/scratch_dir.hpp"
#include "proxy/profile.hpp"
#include "fuzz/check.hpp"

namespace {

using faultline::fuzz::check;

// The scratch directory, with the variables the seed profiles refer to set once.
const faultline::fuzz::ScratchDir& scratch() {
  static const faultline::fuzz::ScratchDir dir = [] {
    ::setenv("FUZZ_HOST", "127.0.0.1", 1);
    ::setenv("FUZZ_PORT", "26379", 1);
    ::setenv("FUZZ_EMPTY", "", 1);
    return faultline::fuzz::ScratchDir("profile");
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = scratch().write("profile.json", data, size);
  faultline::Profile profile;
  if (auto error = faultline::load_profile(path, profile)) {
    check(!error->empty());
    if (std::getenv("FAULTLINE_FUZZ_TRACE")) std::fprintf(stderr, "%s\n", error->c_str());
    return 0;
  }
  check(profile.proxies != nullptr && profile.proxies->IsArray());
  return 0;
}
