// Small pure helpers for the drill's network clients: http:// URLs, path escaping, RESP
// command encoding and reply decoding, `{i}` templates for load calls. No sockets here, so
// each is unit-tested on bytes.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "replay/observation.hpp"

namespace faultline::drill {

struct HttpUrl {
  std::string host;         // without brackets
  std::string port;         // "80" when not given
  std::string target;       // path and query, at least "/"
  std::string host_header;  // "host:port" as sent in Host ("[::1]:8080" for IPv6)
};
std::optional<HttpUrl> parse_http_url(std::string_view url);

// Percent-escapes a path segment (a proxy or toxic name) for the control API.
std::string escape_segment(std::string_view segment);

// A command as a RESP array of bulk strings, the way redis-cli sends it.
std::string encode_command(const std::vector<std::string>& args);

// Decodes exactly one complete reply (as delimited by resp::ReplyFramer); nullopt if the
// bytes are not one well-formed reply.
std::optional<RespReply> parse_reply(std::string_view bytes);

// Replaces every "{i}" with the call index; used on load request templates so each call can
// write its own key ("SET drill:{i} v{i}").
std::string expand_index(std::string_view text, std::uint64_t i);

}  // namespace faultline::drill
