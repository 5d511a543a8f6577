// JSON-RPC 2.0 as MCP uses it: what a message is (request, notification, response, error),
// its method, id and, for tools/call, the tool name; and the replies a fault sends.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace faultline::jsonrpc {

struct Message {
  bool valid = false;        // parsed as one JSON-RPC object (batches: the first element)
  bool batch = false;
  std::string method;        // requests and notifications
  std::optional<std::string> id;  // the id as raw JSON text ("7", "\"abc\""); none for notifications
  std::string tool;          // params.name of a tools/call
  bool is_response = false;  // has result or error
  bool is_error = false;     // has error
};

// Describes one JSON-RPC message (a POST body, an SSE event's data, a stdio line).
Message describe(std::string_view json);

// {"jsonrpc":"2.0","id":<id>,"error":{"code":<code>,"message":<message>}}
std::string error_response(std::string_view id_json, int code, std::string_view message);
// {"jsonrpc":"2.0","id":<id>,"result":{"content":[{"type":"text","text":<message>}],"isError":true}}
std::string error_result(std::string_view id_json, std::string_view message);

// The value at a dotted path ("params.arguments.model", "messages.0.role") in a JSON
// document, as canonical JSON text (strings quoted); nullopt when absent or unparsable.
std::optional<std::string> value_at(std::string_view json, std::string_view dotted_path);

}  // namespace faultline::jsonrpc
