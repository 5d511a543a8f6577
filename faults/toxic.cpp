#include "faults/toxic.hpp"

#include "base/ascii.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>

namespace faultline {

AttributeValue default_value(const AttributeSpec& spec) {
  switch (spec.kind) {
    case AttributeKind::integer: return AttributeValue::of_int(static_cast<std::int64_t>(spec.default_value));
    case AttributeKind::number: return AttributeValue::of_number(spec.default_value);
    case AttributeKind::text:
      return AttributeValue::of_text(std::string(spec.choices.empty() ? std::string_view{} : spec.choices.front()));
    case AttributeKind::string: return AttributeValue::of_text(std::string(spec.default_text));
    case AttributeKind::json:
      return AttributeValue::of_json(std::string(spec.default_text.empty() ? "null" : spec.default_text));
  }
  return AttributeValue{};
}

const AttributeValue* ToxicConfig::find(std::string_view attribute) const {
  for (const auto& a : attributes) {
    if (a.name == attribute) return &a.value;
  }
  return nullptr;
}

std::int64_t ToxicConfig::get_int(std::string_view attribute) const {
  const AttributeValue* v = find(attribute);
  return v ? v->as_int() : 0;
}

double ToxicConfig::get_double(std::string_view attribute) const {
  const AttributeValue* v = find(attribute);
  return v ? v->as_double() : 0.0;
}

const std::string& ToxicConfig::get_text(std::string_view attribute) const {
  static const std::string empty;
  const AttributeValue* v = find(attribute);
  return v ? v->text : empty;
}

bool Schedule::active(Duration since) const {
  const Duration after = milliseconds(after_ms);
  if (since < after) return false;
  if (for_ms <= 0) return true;
  const auto t = std::chrono::duration_cast<milliseconds>(since - after).count();
  if (every_ms <= 0) return t < for_ms;
  return t % every_ms < for_ms;
}

std::optional<Duration> Schedule::next_change(Duration since) const {
  const Duration after = milliseconds(after_ms);
  if (since < after) return after;
  if (for_ms <= 0) return std::nullopt;
  const auto t = std::chrono::duration_cast<milliseconds>(since - after).count();
  if (every_ms <= 0) return t < for_ms ? std::optional<Duration>(after + milliseconds(for_ms)) : std::nullopt;
  const std::int64_t cycle = t / every_ms, into = t % every_ms;
  const std::int64_t next = into < for_ms ? cycle * every_ms + for_ms : (cycle + 1) * every_ms;
  return after + milliseconds(next);
}

// Made on first use, so it exists whichever file's registrar runs first.
ToxicRegistry& ToxicRegistry::filling() {
  static ToxicRegistry registry;
  return registry;
}

const ToxicRegistry& ToxicRegistry::instance() { return filling(); }

const ToxicType* ToxicRegistry::find(std::string_view type) const {
  auto it = std::find_if(types_.begin(), types_.end(), [&](const ToxicType& t) { return t.name == type; });
  return it == types_.end() ? nullptr : &*it;
}

void ToxicRegistry::add(ToxicType type) {
  if (find(type.name)) {
    std::fprintf(stderr, "faultline: fault type %.*s is registered twice\n", static_cast<int>(type.name.size()), type.name.data());
    std::abort();
  }
  types_.push_back(std::move(type));
}

std::optional<Stream> parse_stream(std::string_view text) {
  const std::string lower = ascii_lower(text);
  if (lower == "upstream") return Stream::upstream;
  if (lower == "downstream") return Stream::downstream;
  if (lower == "both") return Stream::both;
  return std::nullopt;
}

}  // namespace faultline
