// Random bytes as a client's side of an HTTP/1.1 connection, cut anywhere.
#include "fuzz/http_fuzz_driver.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  faultline::fuzz::HttpDriver driver(true);
  faultline::fuzz::feed_split(data, size, [&](std::string_view piece) { driver.feed(piece); });
  driver.finish();
  return 0;
}
