#include "proxy/profile.hpp"

#include <fstream>
#include <sstream>

#include <rapidjson/error/en.h>

#include "proxy/json_io.hpp"

namespace faultline {

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
  if (out.document.IsArray()) {
    out.proxies = &out.document;
    return std::nullopt;
  }
  if (!out.document.IsObject()) return path + ": $: expected an array of proxies or a faultline profile object";
  for (auto it = out.document.MemberBegin(); it != out.document.MemberEnd(); ++it) {
    const std::string key = it->name.GetString();
    if (key != "seed" && key != "proxies" && key != "description" && key != "$schema" && key != "recording") {
      return path + ": $." + key + ": unknown field (expected seed, proxies, recording, description)";
    }
  }
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
