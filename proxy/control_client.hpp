// A small blocking HTTP/1.1 client for `faultline ctl` (and tools) to call the control API.
#pragma once
#include <optional>
#include <string>

namespace faultline {

struct HttpResult {
  int status = 0;
  std::string body;
  std::string error;  // transport error (connection refused, bad URL); empty when a reply came
};

// `base_url` is "http://host:port" (scheme optional, as toxiproxy-cli allows).
HttpResult http_call(const std::string& base_url, const std::string& method, const std::string& path,
                     const std::optional<std::string>& body);

}  // namespace faultline
