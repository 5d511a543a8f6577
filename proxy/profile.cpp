#include "proxy/profile.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string_view>

#include <rapidjson/error/en.h>

#include "base/suggest.hpp"
#include "protocols/http.hpp"
#include "proxy/json_io.hpp"

namespace faultline {

namespace {

bool is_env_name(std::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name) {
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

// `${VAR}` and `${VAR:-default}` (the default when VAR is unset or empty, as in a shell and in
// docker-compose files); `$${` is a literal `${`. A `$` before anything else stays as it is.
std::optional<std::string> expand_env_text(std::string_view text, const std::string& json_path, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < text.size();) {
    if (text.compare(i, 3, "$${") == 0) {
      out += "${";
      i += 3;
      continue;
    }
    if (text.compare(i, 2, "${") != 0) {
      out += text[i++];
      continue;
    }
    const std::size_t close = text.find('}', i + 2);
    if (close == std::string_view::npos) return json_path + ": \"${\" without a closing \"}\" (write $${ for a literal ${)";
    const std::string_view inner = text.substr(i + 2, close - i - 2);
    const std::size_t dash = inner.find(":-");
    const std::string name(inner.substr(0, dash));
    if (inner.find("${") != std::string_view::npos) {
      // The first "}" closes the reference, so a nested one would expand to half a default.
      return json_path + ": \"${" + std::string(inner) + "}\": a default cannot hold another ${...} (nesting is not supported)";
    }
    if (!is_env_name(name)) {
      return json_path + ": \"${" + std::string(inner) + "}\": expected ${NAME} or ${NAME:-default} with NAME made of letters, digits and _";
    }
    const char* value = std::getenv(name.c_str());
    if (value != nullptr && *value != '\0') {
      out += value;
    } else if (dash != std::string_view::npos) {
      out += inner.substr(dash + 2);
    } else {
      return json_path + ": environment variable " + name + " is not set (write ${" + name + ":-default} to give it a default)";
    }
    i = close + 1;
  }
  return std::nullopt;
}

// Expands every string value (not keys) in place, so the rest of the loader and the API see
// plain values.
std::optional<std::string> expand_env(rapidjson::Value& v, rapidjson::Document::AllocatorType& alloc, const std::string& json_path) {
  if (v.IsString()) {
    const std::string_view text(v.GetString(), v.GetStringLength());
    if (text.find('$') == std::string_view::npos) return std::nullopt;
    std::string expanded;
    if (auto e = expand_env_text(text, json_path, expanded)) return e;
    v.SetString(expanded.data(), static_cast<rapidjson::SizeType>(expanded.size()), alloc);
  } else if (v.IsArray()) {
    for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
      if (auto e = expand_env(v[i], alloc, json_path + "[" + std::to_string(i) + "]")) return e;
    }
  } else if (v.IsObject()) {
    for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
      if (auto e = expand_env(it->value, alloc, json_path + "." + it->name.GetString())) return e;
    }
  }
  return std::nullopt;
}

// "$.proxies[0].protocl: unknown field (did you mean "protocol"?) (expected one of: ...)".
// Proxy and toxic keys match case-insensitively, as decode_proxy and decode_toxic read them
// (Toxiproxy's JSON decoding); the file's own keys are read as written.
std::optional<std::string> unknown_key(const rapidjson::Value& object, const std::vector<std::string_view>& known,
                                       const std::string& at, bool any_case = true) {
  for (auto it = object.MemberBegin(); it != object.MemberEnd(); ++it) {
    const std::string_view key(it->name.GetString(), it->name.GetStringLength());
    if (std::any_of(known.begin(), known.end(), [&](std::string_view k) { return any_case ? http::iequals(k, key) : k == key; }))
      continue;
    return at + "." + std::string(key) + ": " + unknown_field(key, known);
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> load_profile(const std::string& path, Profile& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return path + ": cannot open the file";
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  out.document.Parse<rapidjson::kParseIterativeFlag>(text.c_str(), text.size());
  if (out.document.HasParseError()) {
    // Report line and column, which a person can find in an editor.
    const auto [line, column] = line_and_column(text, out.document.GetErrorOffset());
    return path + ":" + std::to_string(line) + ":" + std::to_string(column) + ": not valid JSON: " +
           rapidjson::GetParseError_En(out.document.GetParseError());
  }
  if (auto e = expand_env(out.document, out.document.GetAllocator(), "$")) return path + ": " + *e;
  if (out.document.IsArray()) {
    out.proxies = &out.document;
    return std::nullopt;
  }
  if (!out.document.IsObject()) return path + ": $: expected an array of proxies or a faultline profile object";
  if (auto e = unknown_key(out.document, {"seed", "proxies", "recording", "description", "$schema"}, "$", false))
    return path + ": " + *e;
  if (auto seed = out.document.FindMember("seed"); seed != out.document.MemberEnd()) {
    if (!seed->value.IsUint64()) return path + ": $.seed: must be a non-negative integer";
    out.seed = seed->value.GetUint64();
  }
  auto proxies = out.document.FindMember("proxies");
  if (proxies == out.document.MemberEnd()) return path + ": $.proxies: missing required field";
  if (!proxies->value.IsArray()) return path + ": $.proxies: must be an array";
  out.proxies = &proxies->value;
  if (auto rec = out.document.FindMember("recording"); rec != out.document.MemberEnd()) {
    if (!rec->value.IsObject()) return path + ": $.recording: must be an object like {\"dir\":\"recordings/run1\"}";
    out.recording = &rec->value;
  }
  for (rapidjson::SizeType i = 0; i < proxies->value.Size(); ++i) {
    const rapidjson::Value& p = proxies->value[i];
    if (!p.IsObject()) continue;  // populate reports it with its path
    // A faultline profile is strict: "protocl": "resp" would silently give a tcp proxy. (A
    // Toxiproxy config, the array form, keeps Toxiproxy's leniency.)
    if (auto e = unknown_key(p, proxy_field_names(), "$.proxies[" + std::to_string(i) + "]")) return path + ": " + *e;
    if (auto t = p.FindMember("toxics"); t != p.MemberEnd() && t->value.IsArray()) {
      for (rapidjson::SizeType k = 0; k < t->value.Size(); ++k)
        if (t->value[k].IsObject())
          if (auto e = unknown_key(t->value[k], toxic_field_names(), "$.proxies[" + std::to_string(i) + "].toxics[" + std::to_string(k) + "]"))
            return path + ": " + *e;
    }
    auto record = p.FindMember("record");
    if (record == p.MemberEnd()) continue;
    if (!record->value.IsBool()) return path + ": $.proxies[" + std::to_string(i) + "].record: must be true or false";
    auto name = p.FindMember("name");
    if (record->value.GetBool() && name != p.MemberEnd() && name->value.IsString()) {
      out.recorded_proxies.emplace_back(name->value.GetString());
    }
  }
  return std::nullopt;
}

}  // namespace faultline
