// The control API's JSON: lenient decoding the way Toxiproxy's Go server decodes
// (unknown keys ignored, keys case-insensitive, null means "default/unchanged",
// integral floats accepted for integers) and the exact response shapes it emits.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <rapidjson/document.h>

#include "base/json_writer.hpp"
#include "faults/protocol_engine.hpp"
#include "faults/toxic.hpp"

namespace faultline {

// Fields of a proxy body; absent or null fields are nullopt.
struct ProxyFields {
  std::optional<std::string> name, listen, upstream, on_upstream_down, protocol;
  std::optional<bool> enabled;
  std::optional<std::uint64_t> max_connections;
  const rapidjson::Value* toxics = nullptr;  // array when present
  const rapidjson::Value* tls = nullptr;     // object when present
  const rapidjson::Value* replay = nullptr;  // object when present: the upstream is a journal
};

// Fields of a toxic body; absent or null fields are nullopt.
// The keys decode_proxy and decode_toxic read (what a strict profile allows).
const std::vector<std::string_view>& proxy_field_names();
const std::vector<std::string_view>& toxic_field_names();

struct ToxicFields {
  std::optional<std::string> name, type, stream;
  std::optional<double> toxicity;
  const rapidjson::Value* attributes = nullptr;  // object when present
};

// Errors carry the exact field that is wrong and why.
struct DecodeError {
  std::string message;
};

// Finds a member by case-insensitive key (Go encoding/json semantics); null counts as absent.
const rapidjson::Value* find_member(const rapidjson::Value& object, std::string_view key);

std::optional<DecodeError> decode_proxy(const rapidjson::Value& v, ProxyFields& out);
std::optional<DecodeError> decode_toxic(const rapidjson::Value& v, ToxicFields& out);

// Builds a complete ToxicConfig for a new toxic: defaults, stream check, every attribute
// of the type present. Error messages are Toxiproxy's where Toxiproxy has one.
struct ToxicBuildError {
  int status;
  std::string message;
};
std::optional<ToxicBuildError> build_toxic(const ToxicFields& fields, ToxicConfig& out);
// An attribute the toxic's type does not have is refused (a misspelt `latncy` would give a
// latency of 0 that reports success). `serve --lenient` turns this off process-wide, for
// clients that relied on Toxiproxy ignoring unknown attributes; set once at start-up.
void set_lenient_toxic_attributes(bool lenient);
// Whether --lenient is on (errors then keep Toxiproxy's bare texts, e.g. "proxy not found").
bool lenient_toxic_attributes();
// Applies a partial update (attributes merged, toxicity kept when absent) to a copy.
std::optional<ToxicBuildError> update_toxic(const ToxicFields& fields, ToxicConfig& inout);

// A toxic as the API shows it; write_toxic puts it inside a larger document.
std::string toxic_json(const ToxicConfig& toxic);
void write_toxic(JsonWriter& w, const ToxicConfig& toxic);

// Parses a body: only the first JSON value is read (trailing bytes ignored, like Go).
std::optional<std::string> parse_body(std::string_view body, rapidjson::Document& doc);

// 1-based line and column of a byte offset: where a person finds a parse error in an editor.
std::pair<std::size_t, std::size_t> line_and_column(std::string_view text, std::size_t offset);

// A JSON value as compact text (no spaces), e.g. to store or compare attribute values.
std::string compact_json(const rapidjson::Value& value);
std::string error_json(int status, std::string_view message);

}  // namespace faultline
