#include "faults/toxic.hpp"

#include <algorithm>
#include <cctype>

namespace faultline {

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

const ToxicRegistry& ToxicRegistry::instance() {
  static const ToxicRegistry registry = [] {
    ToxicRegistry r;
    register_basic_toxics(r);
    return r;
  }();
  return registry;
}

const ToxicType* ToxicRegistry::find(std::string_view type) const {
  auto it = std::find_if(types_.begin(), types_.end(), [&](const ToxicType& t) { return t.name == type; });
  return it == types_.end() ? nullptr : &*it;
}

void ToxicRegistry::add(ToxicType type) { types_.push_back(std::move(type)); }

std::optional<Stream> parse_stream(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "upstream") return Stream::upstream;
  if (lower == "downstream") return Stream::downstream;
  return std::nullopt;
}

}  // namespace faultline
