#include "proxy/json_io.hpp"

#include <atomic>

#include <spdlog/spdlog.h>

#include "base/json_writer.hpp"
#include "base/suggest.hpp"
#include "protocols/http.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace faultline {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

const char* kind_name(const rapidjson::Value& v) {
  if (v.IsString()) return "string";
  if (v.IsBool()) return "boolean";
  if (v.IsNumber()) return "number";
  if (v.IsArray()) return "array";
  if (v.IsObject()) return "object";
  return "null";
}

std::optional<DecodeError> wrong_type(std::string_view field, const char* expected, const rapidjson::Value& got) {
  return DecodeError{"bad request body: field " + std::string(field) + " must be " + expected + ", got " +
                     kind_name(got)};
}

std::optional<DecodeError> get_string(const rapidjson::Value& obj, std::string_view key, std::optional<std::string>& out) {
  const rapidjson::Value* v = find_member(obj, key);
  if (!v) return std::nullopt;
  if (!v->IsString()) return wrong_type(key, "a string", *v);
  out = std::string(v->GetString(), v->GetStringLength());
  return std::nullopt;
}

// Integral numbers, including integral floats such as 1000.0 (Ruby and Python send them).
bool as_integer(const rapidjson::Value& v, std::int64_t& out) {
  if (v.IsInt64()) {
    out = v.GetInt64();
    return true;
  }
  if (v.IsUint64()) return false;  // above int64
  if (v.IsDouble()) {
    const double d = v.GetDouble();
    if (std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9.2e18) {
      out = static_cast<std::int64_t>(d);
      return true;
    }
  }
  return false;
}

}  // namespace

const rapidjson::Value* find_member(const rapidjson::Value& object, std::string_view key) {
  if (!object.IsObject()) return nullptr;
  const rapidjson::Value* found = nullptr;
  for (auto it = object.MemberBegin(); it != object.MemberEnd(); ++it) {
    std::string_view name(it->name.GetString(), it->name.GetStringLength());
    if (name == key) {  // an exact match wins over a case-insensitive one
      found = &it->value;
      break;
    }
    if (!found && iequals(name, key)) found = &it->value;
  }
  if (found && found->IsNull()) return nullptr;
  return found;
}

std::optional<std::string> parse_body(std::string_view body, rapidjson::Document& doc) {
  std::size_t start = 0;
  while (start < body.size() && (body[start] == ' ' || body[start] == '\n' || body[start] == '\r' || body[start] == '\t'))
    ++start;
  if (start == body.size()) return "bad request body: EOF";
  // Iterative parsing: deeply nested input must not exhaust the stack.
  doc.Parse<rapidjson::kParseStopWhenDoneFlag | rapidjson::kParseIterativeFlag>(body.data(), body.size());
  if (doc.HasParseError()) {
    return std::string("bad request body: ") + rapidjson::GetParseError_En(doc.GetParseError()) + " (at byte " +
           std::to_string(doc.GetErrorOffset()) + ")";
  }
  return std::nullopt;
}

const std::vector<std::string_view>& proxy_field_names() {
  static const std::vector<std::string_view> names{"name",     "listen",          "upstream", "enabled", "toxics", "on_upstream_down",
                                                   "max_connections", "protocol", "tls",     "replay", "record"};
  return names;
}

const std::vector<std::string_view>& toxic_field_names() {
  static const std::vector<std::string_view> names{"name", "type", "stream", "toxicity", "attributes"};
  return names;
}

std::optional<DecodeError> decode_proxy(const rapidjson::Value& v, ProxyFields& out) {
  if (!v.IsObject()) return DecodeError{std::string("bad request body: expected a JSON object, got ") + kind_name(v)};
  for (auto [key, field] : {std::pair{"name", &out.name}, std::pair{"listen", &out.listen},
                            std::pair{"upstream", &out.upstream}, std::pair{"on_upstream_down", &out.on_upstream_down},
                            std::pair{"protocol", &out.protocol}}) {
    if (auto e = get_string(v, key, *field)) return e;
  }
  if (const auto* e = find_member(v, "enabled")) {
    if (!e->IsBool()) return wrong_type("enabled", "a boolean", *e);
    out.enabled = e->GetBool();
  }
  if (const auto* m = find_member(v, "max_connections")) {
    std::int64_t n = 0;
    if (!as_integer(*m, n) || n < 0) return DecodeError{"bad request body: field max_connections must be a non-negative integer"};
    out.max_connections = static_cast<std::uint64_t>(n);
  }
  if (out.on_upstream_down && *out.on_upstream_down != "close" && *out.on_upstream_down != "refuse") {
    return DecodeError{"bad request body: field on_upstream_down must be \"close\" or \"refuse\", got \"" +
                       *out.on_upstream_down + "\""};
  }
  if (const auto* t = find_member(v, "toxics")) {
    if (!t->IsArray()) return wrong_type("toxics", "an array", *t);
    out.toxics = t;
  }
  if (out.protocol && !parse_protocol(*out.protocol)) {
    return DecodeError{"bad request body: field protocol must be one of tcp, http, resp, mcp, got \"" + *out.protocol + "\""};
  }
  if (const auto* t = find_member(v, "tls")) {
    if (!t->IsObject()) return wrong_type("tls", "an object like {\"upstream\":{\"verify\":true},\"listen\":{\"mint\":true}}", *t);
    out.tls = t;
  }
  if (const auto* r = find_member(v, "replay")) {
    if (!r->IsObject()) return wrong_type("replay", "an object like {\"journal\":\"recordings/run1\"}", *r);
    out.replay = r;
  }
  return std::nullopt;
}

std::optional<DecodeError> decode_toxic(const rapidjson::Value& v, ToxicFields& out) {
  if (!v.IsObject()) return DecodeError{std::string("bad request body: expected a JSON object, got ") + kind_name(v)};
  // Unknown top-level keys stay accepted, as Toxiproxy does (its clients send only known
  // ones), but are logged: a misspelt "toxicty" would otherwise vanish without a word.
  for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
    const std::string_view key(it->name.GetString(), it->name.GetStringLength());
    const auto& known = toxic_field_names();
    if (std::none_of(known.begin(), known.end(), [&](std::string_view k) { return http::iequals(k, key); }))
      spdlog::warn("toxic field \"{}\" is unknown and ignored{}", key, did_you_mean(key, known));
  }
  for (auto [key, field] : {std::pair{"name", &out.name}, std::pair{"type", &out.type}}) {
    if (auto e = get_string(v, key, *field)) return e;
  }
  // An explicit "stream": "" is kept (and later refused), as Toxiproxy does.
  if (const auto* s = find_member(v, "stream")) {
    if (!s->IsString()) return wrong_type("stream", "a string", *s);
    out.stream = std::string(s->GetString(), s->GetStringLength());
  }
  if (const auto* t = find_member(v, "toxicity")) {
    if (!t->IsNumber()) return wrong_type("toxicity", "a number", *t);
    out.toxicity = t->GetDouble();
  }
  if (const auto* a = find_member(v, "attributes")) {
    if (!a->IsObject()) return wrong_type("attributes", "an object", *a);
    out.attributes = a;
  }
  return std::nullopt;
}

namespace {

std::atomic<bool> lenient_attributes{false};

// Every attribute name the type takes, the generic ones included.
std::vector<std::string_view> attribute_names(const ToxicType& type) {
  std::vector<std::string_view> names;
  for (const auto& spec : type.attributes) names.push_back(spec.name);
  names.push_back("dice");
  names.push_back("schedule");
  return names;
}

std::optional<ToxicBuildError> unknown_attribute(const ToxicType& type, const rapidjson::Value& attrs) {
  if (lenient_attributes.load(std::memory_order_relaxed)) return std::nullopt;
  const auto names = attribute_names(type);
  for (auto it = attrs.MemberBegin(); it != attrs.MemberEnd(); ++it) {
    const std::string_view key(it->name.GetString(), it->name.GetStringLength());
    // Keys match case-insensitively, as Toxiproxy's JSON decoding does.
    if (std::any_of(names.begin(), names.end(), [&](std::string_view n) { return http::iequals(n, key); })) continue;
    std::string list;
    for (const auto n : names) list += (list.empty() ? "" : ", ") + std::string(n);
    return ToxicBuildError{400, "attribute " + std::string(key) + " is unknown to " + std::string(type.name) +
                                    did_you_mean(key, names) + " (its attributes: " + list + ")"};
  }
  return std::nullopt;
}

std::optional<ToxicBuildError> merge_attributes(const ToxicType& type, const rapidjson::Value* attrs, ToxicConfig& c) {
  if (!attrs) return std::nullopt;
  if (auto e = unknown_attribute(type, *attrs)) return e;
  for (const auto& spec : type.attributes) {
    const rapidjson::Value* v = find_member(*attrs, spec.name);
    if (!v) continue;
    auto* slot = const_cast<AttributeValue*>(c.find(spec.name));
    if (spec.kind == AttributeKind::integer) {
      std::int64_t n = 0;
      if (!as_integer(*v, n)) {
        return ToxicBuildError{400, "bad request body: attribute " + std::string(spec.name) + " of " +
                                        std::string(type.name) + " must be an integer, got " +
                                        (v->IsNumber() ? "a fraction or out-of-range number" : kind_name(*v))};
      }
      *slot = AttributeValue::of_int(n);
    } else if (spec.kind == AttributeKind::text) {
      const std::string value = v->IsString() ? std::string(v->GetString(), v->GetStringLength()) : "";
      if (!v->IsString() || std::find(spec.choices.begin(), spec.choices.end(), value) == spec.choices.end()) {
        std::string allowed;
        for (auto choice : spec.choices) allowed += (allowed.empty() ? "" : ", ") + std::string(choice);
        return ToxicBuildError{400, "bad request body: attribute " + std::string(spec.name) + " of " +
                                        std::string(type.name) + " must be one of " + allowed +
                                        (v->IsString() ? ", got \"" + value + "\"" : std::string(", got ") + kind_name(*v))};
      }
      AttributeValue text;
      text.is_text = true;
      text.text = value;
      *slot = std::move(text);
    } else if (spec.kind == AttributeKind::string) {
      if (!v->IsString()) {
        return ToxicBuildError{400, "bad request body: attribute " + std::string(spec.name) + " of " +
                                        std::string(type.name) + " must be a string, got " + kind_name(*v)};
      }
      *slot = AttributeValue::of_text(std::string(v->GetString(), v->GetStringLength()));
    } else if (spec.kind == AttributeKind::json) {
      *slot = AttributeValue::of_json(compact_json(*v));
    } else {
      if (!v->IsNumber()) {
        return ToxicBuildError{400, "bad request body: attribute " + std::string(spec.name) + " of " +
                                        std::string(type.name) + " must be a number, got " + kind_name(*v)};
      }
      *slot = AttributeValue::of_number(v->GetDouble());
    }
  }
  // Generic attributes every fault takes.
  if (const rapidjson::Value* dice = find_member(*attrs, "dice")) {
    const std::string value = dice->IsString() ? dice->GetString() : "";
    if (value != "connection" && value != "chunk") {
      return ToxicBuildError{400, "bad request body: attribute dice must be \"connection\" or \"chunk\""};
    }
    c.per_chunk_dice = value == "chunk";
  }
  if (const rapidjson::Value* schedule = find_member(*attrs, "schedule")) {
    if (!schedule->IsObject()) {
      return ToxicBuildError{400, std::string("bad request body: attribute schedule must be an object like "
                                              "{\"after\":0,\"for\":5000,\"every\":30000}, got ") + kind_name(*schedule)};
    }
    Schedule s;
    for (auto it = schedule->MemberBegin(); it != schedule->MemberEnd(); ++it) {
      const std::string key(it->name.GetString(), it->name.GetStringLength());
      if (key != "after" && key != "for" && key != "every") {
        return ToxicBuildError{400, "bad request body: attribute schedule." + key +
                                        " is unknown (expected after, for, every)"};
      }
    }
    for (auto [key, slot] : {std::pair{"after", &s.after_ms}, std::pair{"for", &s.for_ms}, std::pair{"every", &s.every_ms}}) {
      const rapidjson::Value* v = find_member(*schedule, key);
      if (!v) continue;
      std::int64_t n = 0;
      if (!as_integer(*v, n) || n < 0 || n > 10000000000LL) {
        return ToxicBuildError{400, std::string("bad request body: attribute schedule.") + key +
                                        " must be a whole number of ms between 0 and 10000000000"};
      }
      *slot = n;
    }
    if (s.every_ms > 0 && s.for_ms > s.every_ms) {
      return ToxicBuildError{400, "bad request body: attribute schedule.for must not exceed schedule.every"};
    }
    c.schedule = s;
  }
  return std::nullopt;
}

std::optional<ToxicBuildError> check(const ToxicType& type, ToxicConfig& c) {
  if (!(c.toxicity >= 0.0 && c.toxicity <= 1.0)) {
    return ToxicBuildError{400, "toxicity must be between 0 and 1, got " + format_number(c.toxicity)};
  }
  if (type.validate) {
    if (auto e = type.validate(c)) return ToxicBuildError{400, "invalid attributes for " + std::string(type.name) + ": " + *e};
  }
  if (type.compile) {
    std::string error;
    auto compiled = type.compile(c, error);
    if (!compiled) return ToxicBuildError{400, "invalid attributes for " + std::string(type.name) + ": " + error};
    c.compiled = std::move(compiled);
  }
  return std::nullopt;
}

}  // namespace

void set_lenient_toxic_attributes(bool lenient) { lenient_attributes.store(lenient, std::memory_order_relaxed); }
bool lenient_toxic_attributes() { return lenient_attributes.load(std::memory_order_relaxed); }

std::optional<ToxicBuildError> build_toxic(const ToxicFields& f, ToxicConfig& c) {
  c.stream_text = f.stream.value_or("downstream");
  auto stream = parse_stream(c.stream_text);
  if (!stream) return ToxicBuildError{400, "stream was invalid, can be either upstream or downstream"};  // or "both"
  c.stream = *stream;
  c.type = f.type.value_or("");
  c.name = f.name.value_or("");
  if (c.name.empty()) c.name = c.type + "_" + c.stream_text;
  const ToxicType* type = ToxicRegistry::instance().find(c.type);
  if (!type) {
    // Toxiproxy's text first (clients match on it), then what was meant and what exists;
    // --lenient keeps Toxiproxy's bare text for golden tests that compare it exactly.
    if (lenient_attributes.load(std::memory_order_relaxed)) return ToxicBuildError{400, "invalid toxic type"};
    std::vector<std::string_view> types;
    for (const auto& t : ToxicRegistry::instance().types()) types.push_back(t.name);
    std::string list;
    for (const auto t : types) list += (list.empty() ? "" : ", ") + std::string(t);
    return ToxicBuildError{400, "invalid toxic type \"" + c.type + "\"" + did_you_mean(c.type, types) + " (valid types: " + list + ")"};
  }
  c.toxicity = f.toxicity.value_or(1.0);
  c.attributes.clear();
  for (const auto& spec : type->attributes) {
    c.attributes.push_back({std::string(spec.name), default_value(spec)});
  }
  c.created = Clock::now();
  if (auto e = merge_attributes(*type, f.attributes, c)) return e;
  return check(*type, c);
}

std::optional<ToxicBuildError> update_toxic(const ToxicFields& f, ToxicConfig& c) {
  const ToxicType* type = ToxicRegistry::instance().find(c.type);
  if (!type) return ToxicBuildError{400, "invalid toxic type"};
  if (f.toxicity) c.toxicity = *f.toxicity;
  if (auto e = merge_attributes(*type, f.attributes, c)) return e;
  return check(*type, c);
}



void write_toxic(JsonWriter& w, const ToxicConfig& t) {
  w.begin_object();
  w.key("attributes").begin_object();
  const ToxicType* type = ToxicRegistry::instance().find(t.type);
  for (const auto& a : t.attributes) {
    if (type) {
      const auto spec = std::find_if(type->attributes.begin(), type->attributes.end(),
                                     [&](const AttributeSpec& s) { return s.name == a.name; });
      if (spec != type->attributes.end() && spec->extension) {
        const bool is_default = spec->kind == AttributeKind::text
                                    ? (spec->choices.empty() || a.value.text == spec->choices.front())
                                    : a.value.as_double() == spec->default_value;
        if (is_default) continue;
      }
    }
    w.key(a.name);
    if (a.value.is_json) w.raw(a.value.text);
    else if (a.value.is_text) w.string(a.value.text);
    else if (a.value.integral) w.number(a.value.integer);
    else w.number(a.value.number);
  }
  // Generic attributes appear only when set, so Toxiproxy clients see Toxiproxy's shapes.
  if (t.per_chunk_dice) w.key("dice").string("chunk");
  if (t.schedule) {
    w.key("schedule").begin_object();
    w.key("after").number(t.schedule->after_ms);
    w.key("for").number(t.schedule->for_ms);
    w.key("every").number(t.schedule->every_ms);
    w.end_object();
  }
  w.end_object();
  w.key("name").string(t.name);
  w.key("type").string(t.type);
  w.key("stream").string(t.stream_text);
  w.key("toxicity").number(t.toxicity);
  w.end_object();
}

std::string toxic_json(const ToxicConfig& t) {
  JsonWriter w;
  write_toxic(w, t);
  return w.take();
}

std::pair<std::size_t, std::size_t> line_and_column(std::string_view text, std::size_t offset) {
  std::size_t line = 1, column = 1;
  for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return {line, column};
}

std::string compact_json(const rapidjson::Value& value) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  value.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

std::string error_json(int status, std::string_view message) {
  JsonWriter w;
  w.begin_object().key("error").string(message).key("status").number(status).end_object();
  std::string out = w.take();
  out += '\n';
  return out;
}

}  // namespace faultline
