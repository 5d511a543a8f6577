// Random bytes as a drill file (`faultline drill FILE`): parse_drill must return a drill or
// an error that names a JSON path ("$.method[2].provider: ..."), never crash or hang, with
// and without drill --check's placeholders. The environment is a fixed fake, so an input
// means the same on every machine.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "replay/drill.hpp"
#include "fuzz/check.hpp"

namespace {

using faultline::fuzz::check;

std::optional<std::string> fake_getenv(const std::string& name) {
  if (name == "FAULTLINE_URL") return "http://127.0.0.1:8474";
  if (name == "REDIS_ADDR") return "127.0.0.1:6379";
  if (name == "EMPTY") return "";
  return std::nullopt;
}

}  // namespace

// Input: byte 0's low bit turns on placeholders (drill --check), the rest is the file.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  faultline::drill::ParseOptions options;
  options.placeholders = (data[0] & 1) != 0;
  options.getenv = fake_getenv;
  options.vars = {{"target", "127.0.0.1:9"}};
  options.seed = 7;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  faultline::drill::Drill drill;
  if (auto error = faultline::drill::parse_drill(text, options, drill)) {
    check(!error->empty() && error->front() == '$');
    if (std::getenv("FAULTLINE_FUZZ_TRACE")) std::fprintf(stderr, "%s\n", error->c_str());
  }
  return 0;
}
