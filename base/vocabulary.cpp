#include "base/vocabulary.hpp"

namespace faultline {

std::optional<Protocol> parse_protocol(std::string_view text) {
  if (text == "tcp" || text.empty()) return Protocol::tcp;
  if (text == "http") return Protocol::http;
  if (text == "resp" || text == "redis") return Protocol::resp;
  if (text == "mcp") return Protocol::mcp;
  return std::nullopt;
}

std::string_view protocol_name(Protocol p) {
  switch (p) {
    case Protocol::http: return "http";
    case Protocol::resp: return "resp";
    case Protocol::mcp: return "mcp";
    case Protocol::tcp: break;
  }
  return "tcp";
}

}  // namespace faultline
