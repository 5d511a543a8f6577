// Random bytes as a server's side of an HTTP/1.1 connection, cut anywhere, answering a
// method the input picks (HEAD and CONNECT change what follows a head).
#include "fuzz/http_fuzz_driver.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  faultline::fuzz::HttpDriver driver(false);
  if (size > 0) {
    static constexpr std::string_view methods[] = {"GET", "HEAD", "CONNECT", "POST"};
    driver.framer().answering(methods[data[size - 1] % 4]);
  }
  faultline::fuzz::feed_split(data, size, [&](std::string_view piece) { driver.feed(piece); });
  driver.finish();
  return 0;
}
