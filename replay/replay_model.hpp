// The replay model (issue 6, "Replay"): a journal turned into request/response exchanges
// per recorded connection, with the protocol-aware match key of each request, plus the
// pure helpers the stand-in server and the client replayer share (canonical JSON with an
// ignore list, JSON-RPC id rewriting, closest-request search, response comparison).
// No sockets here: everything is unit-testable on bytes.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/vocabulary.hpp"

namespace faultline::replay {

// A piece of recorded bytes and when the proxy delivered it (ns since recording start).
struct Segment {
  std::string bytes;
  std::int64_t t = 0;
};

struct Exchange {
  std::uint64_t conn = 0;
  std::size_t index = 0;           // position in its connection
  std::string request;             // the request's bytes as recorded
  std::int64_t request_t = 0;      // when its last byte was delivered
  std::vector<Segment> response;   // the response's bytes in recorded chunks (may be empty)
  bool has_response = false;
  std::string key;                 // match key (protocol-aware, see match_key)
  std::string label;               // for diagnostics: "GET /x", "SET k v", "jsonrpc tools/call"
  std::string method;              // HTTP method (the response framer needs it)
  std::optional<std::string> jsonrpc_id;  // the request's JSON-RPC id (raw JSON), when any
  std::string response_bytes() const;
};

struct Connection {
  std::uint64_t conn = 0;
  std::string proxy;  // the recorded proxy it went through (a journal may hold several)
  Protocol protocol = Protocol::tcp;
  std::int64_t open_t = 0;
  std::vector<Exchange> exchanges;
};

struct Model {
  std::vector<Connection> connections;  // in the order they opened
  std::vector<std::string> proxies;     // every recorded proxy, in the order first seen
  std::size_t exchanges = 0;
  std::vector<std::string> warnings;
};

struct ModelOptions {
  std::optional<Protocol> protocol;    // nullopt = auto (each connection's recorded protocol)
  std::vector<std::string> ignore;     // dotted JSON paths left out of HTTP body keys
};

// Reads a journal file or recording directory. False + error (path and reason) on failure.
bool build_model(const std::string& journal, const ModelOptions& options, Model& out, std::string& error);

// ---- matching -----------------------------------------------------------------------------
// Canonical JSON: objects with sorted keys, no whitespace, members at `ignore` paths
// ("a.b", "items.0.id", "*" matches any one step) removed. nullopt when not JSON.
std::optional<std::string> canonical_json(std::string_view text, const std::vector<std::string>& ignore);

struct RequestInfo {
  std::string key;
  std::string label;
  std::string method;
  std::optional<std::string> jsonrpc_id;
};
// HTTP: the request's bytes (head + body as sent, possibly chunked).
RequestInfo describe_http_request(std::string_view bytes, const std::vector<std::string>& ignore);
// RESP: the command's arguments (name first).
RequestInfo describe_resp_command(const std::vector<std::string>& args);
RequestInfo describe_tcp(std::string_view bytes);

// Ordered queues per key: the first recorded first; once exhausted the last is reused.
class Matcher {
 public:
  explicit Matcher(const Model& model);
  // nullptr when no recorded request has this key.
  const Exchange* take(const std::string& key);
  // The recorded request most like `key` (nullptr when the model is empty).
  const Exchange* closest(const std::string& key) const;

 private:
  std::map<std::string, std::vector<const Exchange*>> queues_;
  std::map<std::string, std::size_t> cursor_;
  std::vector<const Exchange*> all_;
};

// The recorded response with the JSON-RPC id replaced by `live_id` (raw JSON) in a JSON
// body or in SSE data events, Content-Length and chunk sizes fixed up. Returns the
// recorded segments unchanged when the ids are equal or there is nothing to rewrite.
std::vector<Segment> rewrite_http_response(const std::vector<Segment>& recorded, std::string_view recorded_id,
                                           std::string_view live_id);

// True when an HTTP response's head says text/event-stream.
bool is_event_stream(std::string_view response_bytes);

// ---- live MCP sessions (client replayer) ---------------------------------------------------
// A Streamable HTTP server names each session with an `Mcp-Session-Id` response header and
// wants it back on every later request. A fresh server issues a new one, so the client
// replayer maps each recorded id to the live one and sends that instead.
// The Mcp-Session-Id header of an HTTP message's head (request or response), when present.
std::optional<std::string> mcp_session_id(std::string_view message);
// The request with its Mcp-Session-Id value set to `live` (the head only: the body and its
// Content-Length stay as they are). Unchanged when it has no such header.
std::string with_mcp_session_id(std::string_view request, std::string_view live);

// ---- credentials the recording does not hold (client replayer) ------------------------------
// A recording keeps tokens in place of secrets (recorder/redaction.hpp), so a client side
// replayed against a real server needs them put back.
// The HTTP request with header `name` set to `value` (replaced where present, added at the
// end of the head otherwise); the body and its Content-Length stay as they are.
std::string with_header(std::string_view request, std::string_view name, std::string_view value);
// Why `name: value` cannot be a header (an empty or non-token name, a line break in the value).
std::optional<std::string> header_problem(std::string_view name, std::string_view value);
// The Redis command with its password (AUTH's, HELLO … AUTH's) set to `password`, re-encoded
// as a RESP array; any other command (or one whose arguments were not all kept) unchanged.
std::string with_redis_password(std::string_view command, std::string_view password);

// ---- comparing (client replayer) ----------------------------------------------------------
struct Verdict {
  bool match = true;
  std::string why;  // what differs
};
// HTTP: the status; a JSON body canonically (minus `ignore`); an event stream by the data of
// each event in order (JSON canonically, anything else byte for byte).
Verdict compare_http(std::string_view recorded, std::string_view live, const std::vector<std::string>& ignore);
// The data of each event of a decoded SSE body (its data lines joined by "\n"), in order;
// events without data (comments, keep-alives) are left out.
std::vector<std::string> sse_data(std::string_view body);
Verdict compare_resp(std::string_view recorded, std::string_view live);
Verdict compare_bytes(std::string_view recorded, std::string_view live);

// Splits an HTTP message into its head (through the blank line) and decoded body
// (chunked framing removed). False when the head is incomplete.
bool split_http(std::string_view bytes, std::string& head, std::string& body, bool& chunked);
int http_status(std::string_view head);
std::string printable(std::string_view bytes, std::size_t max = 120);
// Where two texts first differ, with a little context from each: `at byte 41: "...ount":
// 4}" vs recorded "...ount": 3}"`, not the first N bytes of each (which may be equal).
std::string diff_around(std::string_view live, std::string_view recorded);

}  // namespace faultline::replay
