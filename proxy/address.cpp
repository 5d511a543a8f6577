#include "proxy/address.hpp"

#include <algorithm>

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

bool is_loopback_name(std::string_view host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  if (host.size() >= 4 && host.substr(0, 4) == "127.") return true;
  if (host.size() > 10 && host.substr(host.size() - 10) == ".localhost") return true;
  return false;
}

}  // namespace faultline
