#include "replay/wire.hpp"

#include <cctype>

#include "protocols/resp.hpp"

namespace faultline::drill {

std::optional<HttpUrl> parse_http_url(std::string_view url) {
  constexpr std::string_view scheme = "http://";
  if (url.substr(0, scheme.size()) != scheme) return std::nullopt;
  url.remove_prefix(scheme.size());
  const auto slash = url.find_first_of("/?");
  std::string_view authority = url.substr(0, slash);
  HttpUrl out;
  out.target = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
  if (out.target[0] == '?') out.target = "/" + out.target;
  if (authority.find('@') != std::string_view::npos) return std::nullopt;  // no credentials in URLs
  if (authority.empty()) return std::nullopt;
  if (authority[0] == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    out.host = std::string(authority.substr(1, close - 1));
    auto rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':' || rest.size() == 1) return std::nullopt;
      out.port = std::string(rest.substr(1));
    }
  } else {
    const auto colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      out.port = std::string(authority.substr(colon + 1));
      if (out.port.empty()) return std::nullopt;
    }
  }
  if (out.host.empty()) return std::nullopt;
  if (out.port.empty()) out.port = "80";
  for (char c : out.port)
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
  const bool v6 = out.host.find(':') != std::string::npos;
  out.host_header = (v6 ? "[" + out.host + "]" : out.host) + ":" + out.port;
  return out;
}

std::string escape_segment(std::string_view segment) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : segment) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == ':') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string encode_command(const std::vector<std::string>& args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}

namespace {

// The drill's view of a reply: a verbatim string without its "txt:" format, a RESP3 blob
// error an error like any other.
RespReply to_reply(resp::Value&& v) {
  RespReply out;
  out.type = v.type == '!' ? '-' : v.type;
  out.null = v.null;
  out.text = std::move(v.text);
  if (v.type == '=' && out.text.size() >= 4) out.text.erase(0, 4);
  out.elements.reserve(v.elements.size());
  for (auto& e : v.elements) out.elements.push_back(to_reply(std::move(e)));
  return out;
}

}  // namespace

std::optional<RespReply> parse_reply(std::string_view bytes) {
  auto value = resp::parse_value(bytes);
  if (!value) return std::nullopt;
  return to_reply(std::move(*value));
}

std::string expand_index(std::string_view text, std::uint64_t i) {
  std::string out;
  const std::string value = std::to_string(i);
  for (std::size_t p = 0; p < text.size();) {
    if (text.compare(p, 3, "{i}") == 0) {
      out += value;
      p += 3;
    } else {
      out += text[p++];
    }
  }
  return out;
}

}  // namespace faultline::drill
