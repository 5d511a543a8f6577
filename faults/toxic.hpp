// Toxic configuration as the control API sees it (Toxiproxy's JSON model) and the
// registry of toxic types: attribute schemas, defaults, validation, and the factory
// that turns an immutable config into a per-connection Stage.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "faults/rng.hpp"
#include "faults/stage.hpp"

namespace faultline {

enum class Stream : std::uint8_t { upstream, downstream };

// A numeric attribute value; Toxiproxy's are integers, ours may be floats too.
struct AttributeValue {
  bool integral = true;
  std::int64_t integer = 0;
  double number = 0.0;
  double as_double() const { return integral ? static_cast<double>(integer) : number; }
  std::int64_t as_int() const { return integral ? integer : static_cast<std::int64_t>(number); }
};

struct Attribute {
  std::string name;
  AttributeValue value;
};

// The immutable, shared configuration of one toxic.
struct ToxicConfig {
  std::string name;
  std::string type;
  std::string stream_text;  // the spelling the client used ("Upstream" stays "Upstream")
  Stream stream = Stream::downstream;
  double toxicity = 1.0;
  std::vector<Attribute> attributes;  // every attribute of the type, schema order
  std::uint64_t revision = 0;         // bumped on every update; stages are rebuilt when it changes

  const AttributeValue* find(std::string_view attribute) const;
  std::int64_t get_int(std::string_view attribute) const;
  double get_double(std::string_view attribute) const;
};

enum class AttributeKind : std::uint8_t { integer, number };

struct AttributeSpec {
  std::string_view name;
  AttributeKind kind = AttributeKind::integer;
  double default_value = 0;
};

// Everything the proxy needs to know about one toxic type.
struct ToxicType {
  std::string_view name;
  std::vector<AttributeSpec> attributes;
  // Returns an error message naming the attribute, or nullopt when valid.
  std::function<std::optional<std::string>(const ToxicConfig&)> validate;
  // Makes the per-connection stage. `rng` is this toxic's own stream on this connection.
  std::function<std::unique_ptr<Stage>(const ToxicConfig&, Rng rng)> make;
};

// The registry of toxic types; immutable after start-up.
class ToxicRegistry {
 public:
  static const ToxicRegistry& instance();
  const ToxicType* find(std::string_view type) const;
  const std::vector<ToxicType>& types() const { return types_; }
  void add(ToxicType type);

 private:
  std::vector<ToxicType> types_;
};

// Parses a stream name case-insensitively ("upstream"/"downstream").
std::optional<Stream> parse_stream(std::string_view text);

// Registration hooks, one per fault source file.
void register_basic_toxics(ToxicRegistry& registry);

}  // namespace faultline
