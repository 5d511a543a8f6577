// Config files for `serve --config`: a Toxiproxy config (a JSON array of proxies) or a
// faultline profile (an object: {"seed": N, "proxies": [...]}, proxies may carry toxics).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include <rapidjson/document.h>

namespace faultline {

struct Profile {
  rapidjson::Document document;
  const rapidjson::Value* proxies = nullptr;  // the array of proxy entries
  std::optional<std::uint64_t> seed;
  const rapidjson::Value* recording = nullptr;  // "recording": options for the proxies with "record": true
  std::vector<std::string> recorded_proxies;    // names of the proxies with "record": true
};

// Reads and checks the file's shape; errors name the file, the JSON path and the reason.
// `${VAR}` / `${VAR:-default}` in string values are expanded from the environment first.
std::optional<std::string> load_profile(const std::string& path, Profile& out);

}  // namespace faultline
