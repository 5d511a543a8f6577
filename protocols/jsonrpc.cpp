#include "protocols/jsonrpc.hpp"

#include <rapidjson/document.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

namespace faultline::jsonrpc {

namespace {

// Writing a value back out recurses once per level; deeper values are refused.
constexpr std::size_t kMaxWriteDepth = 256;

// Numbers are read by the C library, not by RapidJSON: its full-precision reader (1.1) runs
// off a table on numbers such as 56 digits with e-378 or hundreds of zeros (found by
// fuzz_jsonrpc: an MCP body could take faultline down), and its normal one is not exact.
// RapidJSON hands each number over as text (kParseNumbersAsStringsFlag); this converts it
// as its own parser would (integers that fit as integers, the rest as correctly rounded
// doubles; beyond a double's range: a parse error) and passes everything else through.
struct ExactNumbers {
  rapidjson::Document& doc;

  bool RawNumber(const char* text, rapidjson::SizeType length, bool) {
    const std::string t(text, length);
    errno = 0;
    char* end = nullptr;
    if (t.find_first_of(".eE") == std::string::npos) {
      if (t[0] == '-') {
        const long long v = std::strtoll(t.c_str(), &end, 10);
        if (errno == 0 && end == t.c_str() + t.size()) return doc.Int64(v);
      } else {
        const unsigned long long v = std::strtoull(t.c_str(), &end, 10);
        if (errno == 0 && end == t.c_str() + t.size()) return doc.Uint64(v);
      }
      errno = 0;
    }
    const double d = std::strtod(t.c_str(), &end);
    if (end != t.c_str() + t.size() || !std::isfinite(d)) return false;
    return doc.Double(d);
  }
  bool Null() { return doc.Null(); }
  bool Bool(bool b) { return doc.Bool(b); }
  bool Int(int i) { return doc.Int(i); }
  bool Uint(unsigned u) { return doc.Uint(u); }
  bool Int64(std::int64_t i) { return doc.Int64(i); }
  bool Uint64(std::uint64_t u) { return doc.Uint64(u); }
  bool Double(double d) { return doc.Double(d); }
  bool String(const char* s, rapidjson::SizeType n, bool copy) { return doc.String(s, n, copy); }
  bool StartObject() { return doc.StartObject(); }
  bool Key(const char* s, rapidjson::SizeType n, bool copy) { return doc.Key(s, n, copy); }
  bool EndObject(rapidjson::SizeType n) { return doc.EndObject(n); }
  bool StartArray() { return doc.StartArray(); }
  bool EndArray(rapidjson::SizeType n) { return doc.EndArray(n); }
};

// The iterative parser keeps its stack on the heap, so a body of a million '[' cannot
// overflow ours.
bool parse(rapidjson::Document& doc, std::string_view json) {
  bool ok = false;
  auto generate = [&](rapidjson::Document& target) {
    ExactNumbers handler{target};
    rapidjson::MemoryStream in(json.data(), json.size());
    rapidjson::Reader reader;
    ok = !reader.Parse<rapidjson::kParseIterativeFlag | rapidjson::kParseNumbersAsStringsFlag>(in, handler).IsError();
    return ok;
  };
  doc.Populate(generate);
  return ok;
}

bool deeper_than(const rapidjson::Value& root, std::size_t limit) {
  std::vector<std::pair<const rapidjson::Value*, std::size_t>> stack{{&root, 1}};
  while (!stack.empty()) {
    const auto [v, depth] = stack.back();
    stack.pop_back();
    if (depth > limit) return true;
    if (v->IsArray()) {
      for (const auto& e : v->GetArray()) stack.emplace_back(&e, depth + 1);
    } else if (v->IsObject()) {
      for (const auto& m : v->GetObject()) stack.emplace_back(&m.value, depth + 1);
    }
  }
  return false;
}

std::optional<std::string> to_json(const rapidjson::Value& v) {
  if (deeper_than(v, kMaxWriteDepth)) return std::nullopt;
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  if (!v.Accept(writer)) return std::nullopt;
  return std::string(buffer.GetString(), buffer.GetSize());
}

std::string quote(std::string_view s) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  return std::string(buffer.GetString(), buffer.GetSize());
}

const rapidjson::Value* member(const rapidjson::Value& object, std::string_view name) {
  if (!object.IsObject()) return nullptr;
  const auto it = object.FindMember(
      rapidjson::Value(rapidjson::StringRef(name.data(), static_cast<rapidjson::SizeType>(name.size()))));
  return it == object.MemberEnd() ? nullptr : &it->value;
}

// A number id that is not an integer of 64 bits (123456789012345678901234567890, 1.0, 1e2)
// would be written back as a double, so a reply would name another id: its text as sent is
// read from a second parse that keeps numbers as their text.
std::optional<std::string> number_as_sent(std::string_view json, bool batch) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag | rapidjson::kParseNumbersAsStringsFlag>(json.data(), json.size());
  if (doc.HasParseError()) return std::nullopt;
  const rapidjson::Value* v = &doc;
  if (batch) {
    if (!doc.IsArray() || doc.Empty()) return std::nullopt;
    v = &doc[0];
  }
  const auto* id = member(*v, "id");
  if (!id || !id->IsString()) return std::nullopt;
  return std::string(id->GetString(), id->GetStringLength());
}

std::string envelope(std::string_view id_json) {
  std::string out = R"({"jsonrpc":"2.0","id":)";
  out += id_json.empty() ? std::string_view("null") : id_json;
  return out;
}

}  // namespace

Message describe(std::string_view json) {
  Message msg;
  rapidjson::Document doc;
  if (!parse(doc, json)) return msg;
  const rapidjson::Value* v = &doc;
  if (doc.IsArray()) {
    msg.batch = true;
    if (doc.Empty()) return msg;
    v = &doc[0];
  }
  if (!v->IsObject()) return msg;
  const auto* version = member(*v, "jsonrpc");
  if (!version || !version->IsString() || std::string_view(version->GetString(), version->GetStringLength()) != "2.0")
    return msg;
  const auto* method = member(*v, "method");
  const auto* result = member(*v, "result");
  const auto* error = member(*v, "error");
  if (method && method->IsString()) {
    msg.method.assign(method->GetString(), method->GetStringLength());
  } else if (!result && !error) {
    return msg;
  }
  if (const auto* id = member(*v, "id")) {
    msg.id = id->IsNumber() && !id->IsInt64() && !id->IsUint64() ? number_as_sent(json, msg.batch) : to_json(*id);
    if (!msg.id) {
      Message invalid;
      invalid.batch = msg.batch;
      return invalid;
    }
  }
  msg.is_response = msg.method.empty() && (result || error);
  msg.is_error = msg.is_response && error;
  if (msg.method == "tools/call") {
    if (const auto* params = member(*v, "params")) {
      if (const auto* name = member(*params, "name"); name && name->IsString())
        msg.tool.assign(name->GetString(), name->GetStringLength());
    }
  }
  msg.valid = true;
  return msg;
}

std::string error_response(std::string_view id_json, int code, std::string_view message) {
  std::string out = envelope(id_json);
  out += R"(,"error":{"code":)";
  out += std::to_string(code);
  out += R"(,"message":)";
  out += quote(message);
  out += "}}";
  return out;
}

std::string error_result(std::string_view id_json, std::string_view message) {
  std::string out = envelope(id_json);
  out += R"(,"result":{"content":[{"type":"text","text":)";
  out += quote(message);
  out += R"(}],"isError":true}})";
  return out;
}

std::optional<std::string> value_at(std::string_view json, std::string_view dotted_path) {
  rapidjson::Document doc;
  if (!parse(doc, json)) return std::nullopt;
  const rapidjson::Value* v = &doc;
  // An empty path names the whole document; otherwise every part counts, empty ones too
  // ("a..b" looks up the key "" inside "a").
  bool more = !dotted_path.empty();
  while (more) {
    const std::size_t dot = dotted_path.find('.');
    const std::string_view part = dotted_path.substr(0, dot);
    more = dot != std::string_view::npos;
    if (more) dotted_path.remove_prefix(dot + 1);
    if (v->IsObject()) {
      v = member(*v, part);
    } else if (v->IsArray()) {
      if (part.empty() || part.size() > 9 || part.find_first_not_of("0123456789") != std::string_view::npos)
        return std::nullopt;
      const auto index = static_cast<rapidjson::SizeType>(std::stoul(std::string(part)));
      v = index < v->Size() ? &(*v)[index] : nullptr;
    } else {
      v = nullptr;
    }
    if (!v) return std::nullopt;
  }
  return to_json(*v);
}

}  // namespace faultline::jsonrpc
