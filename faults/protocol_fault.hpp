// Protocol faults: faults that act on messages (an HTTP exchange, an SSE event, a Redis
// command, a JSON-RPC call) instead of bytes. Their attributes are compiled once, when the
// toxic is created or updated, into a ProtocolFault that every connection shares; the
// per-connection engines (faults/protocol_engine.hpp) decide per message.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/regex.hpp"
#include "faults/stage.hpp"
#include "base/vocabulary.hpp"

namespace faultline {

namespace http {
struct Head;
}

// What a fault applies to; every field present must match. No `match`: every message.
struct MessageMatch {
  // HTTP
  std::string method;                                        // exact, case-sensitive like HTTP
  std::string path;                                          // prefix of the path (query excluded)
  std::optional<Regex> path_regex;                           // RE2, must match the whole path
  std::string path_regex_text;
  std::vector<std::pair<std::string, std::string>> headers;  // name -> exact value ("*" = present)
  std::vector<std::pair<std::string, std::string>> body;     // dotted JSON path -> compact JSON value
  // JSON-RPC / MCP
  std::string rpc_method;
  std::string tool;     // params.name of tools/call
  std::string session;  // Mcp-Session-Id
  // Redis
  std::string command;  // upper-cased
  std::string key;      // glob

  bool needs_body() const { return !body.empty() || !rpc_method.empty() || !tool.empty(); }
  bool matches_head(const http::Head& head) const;
};

struct HeaderValue {
  std::string name;
  std::string value;
};

struct ProtocolFault {
  std::string type;
  MessageMatch match;
  // http_abort, http_replace: the answer (status 0 = keep the upstream's).
  int status = 0;
  std::vector<HeaderValue> headers;
  std::optional<std::string> body;
  std::string patch;  // http_patch: a JSON merge patch (RFC 7396), compact
  // Delays (http_delay, sse_delay, resp_delay, jsonrpc_delay): mean and jitter in ms.
  Duration delay{};
  Duration jitter{};
  bool before_response = false;  // http_delay phase: response
  // http_reset and sse_cut: how the connection ends.
  EndKind end = EndKind::reset;
  std::int64_t after_bytes = 0;
  std::int64_t after_events = 0;
  Duration stall{};  // sse_stall; zero = forever
  // resp_error, resp_drop: before or after the command is forwarded.
  bool after_forward = false;
  std::string error_line;
  // jsonrpc_error
  int code = -32603;
  std::string message;
  bool as_result = false;
};

// Parses a `match` object (compact JSON text); nullopt + `error` naming the field on failure.
std::optional<MessageMatch> parse_match(std::string_view json, std::string& error);

// Applies a JSON merge patch (RFC 7396) to a JSON document; nullopt when `document` is not JSON.
std::optional<std::string> merge_patch(std::string_view document, std::string_view patch);

// The reason phrase HTTP/1.1 uses for a status ("Too Many Requests"); "" when unknown.
std::string_view reason_phrase(int status);

}  // namespace faultline
