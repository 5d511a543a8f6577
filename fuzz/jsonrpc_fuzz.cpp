// Random bytes as a JSON-RPC message and as a dotted path into it. What describe() and
// value_at() return must be usable JSON, and the replies built from an id must parse back.
#include <rapidjson/document.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "protocols/jsonrpc.hpp"
#include "fuzz/check.hpp"

namespace {

using faultline::fuzz::check;

bool parses(const std::string& json) {
  rapidjson::Document d;
  d.Parse<rapidjson::kParseIterativeFlag>(json.data(), json.size());  // not full precision: see jsonrpc.cpp
  return !d.HasParseError();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // The first byte says how many of the following bytes are the path.
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::size_t path_size = std::min<std::size_t>(data[0] % 32, rest.size());
  const std::string_view path = rest.substr(0, path_size);
  const std::string_view json = rest.substr(path_size);

  const auto msg = faultline::jsonrpc::describe(json);
  if (!msg.valid) check(msg.method.empty() && !msg.id && msg.tool.empty() && !msg.is_response);
  if (msg.is_error) check(msg.is_response);
  if (!msg.tool.empty()) check(msg.method == "tools/call");
  if (msg.valid && msg.id) {
    check(parses(*msg.id));
    const std::string reply = faultline::jsonrpc::error_response(*msg.id, -32000, json);
    check(parses(reply));
    const auto back = faultline::jsonrpc::describe(reply);
    check(back.valid && back.is_error && back.id == msg.id);
    check(parses(faultline::jsonrpc::error_result(*msg.id, json)));
  }

  if (const auto v = faultline::jsonrpc::value_at(json, path)) {
    check(parses(*v));
    // Canonical: writing it again gives the same text.
    check(faultline::jsonrpc::value_at(*v, "") == v);
  }
  return 0;
}
