#include "proxy/address.hpp"

#include "base/ascii.hpp"

#include <algorithm>
#include <cctype>

namespace faultline {

std::optional<HostPort> split_host_port(std::string_view text) {
  if (text.empty()) return std::nullopt;
  if (text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') return std::nullopt;
    HostPort hp{std::string(text.substr(1, close - 1)), std::string(text.substr(close + 2))};
    if (hp.port.empty()) return std::nullopt;
    return hp;
  }
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  HostPort hp{std::string(text.substr(0, colon)), std::string(text.substr(colon + 1))};
  if (hp.port.empty() || hp.host.find(':') != std::string::npos) return std::nullopt;  // bare v6 needs brackets
  if (!std::all_of(hp.port.begin(), hp.port.end(), [](char c) { return (c >= '0' && c <= '9') || c == '-' || (c >= 'a' && c <= 'z'); }))
    return std::nullopt;
  return hp;
}

std::string join_host_port(std::string_view host, unsigned short port) {
  if (host.find(':') != std::string_view::npos) return "[" + std::string(host) + "]:" + std::to_string(port);
  return std::string(host) + ":" + std::to_string(port);
}

namespace {
// A dotted-quad IPv4 address whose first octet is 127 ("127.0.0.1.evil.example" is not).
bool is_loopback_ipv4(std::string_view host) {
  int octets = 0;
  std::size_t i = 0;
  int first = -1;
  while (i <= host.size()) {
    std::size_t j = i;
    int value = 0;
    while (j < host.size() && host[j] >= '0' && host[j] <= '9' && j - i < 3) value = value * 10 + (host[j++] - '0');
    if (j == i || value > 255) return false;
    if (octets == 0) first = value;
    ++octets;
    if (j == host.size()) break;
    if (host[j] != '.') return false;
    i = j + 1;
  }
  return octets == 4 && first == 127;
}
}  // namespace

bool is_loopback_name(std::string_view text) {
  std::string host = ascii_lower(text);
  if (!host.empty() && host.back() == '.') host.pop_back();  // "localhost." is the same name
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  return is_loopback_ipv4(host);
}

}  // namespace faultline
