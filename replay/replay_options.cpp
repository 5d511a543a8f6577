// The replay server's options as JSON (profiles, drills) and the checks shared with the flags.
#include <algorithm>

#include <rapidjson/document.h>

#include "proxy/address.hpp"
#include "replay/replay_run.hpp"

#include "base/suggest.hpp"

namespace faultline::replay {

std::string resolve_journal(const std::string& base_dir, const std::string& journal) {
  return !base_dir.empty() && !journal.empty() && journal.front() != '/' ? base_dir + "/" + journal : journal;
}

std::optional<std::string> check_server_options(const ServerOptions& o) {
  bool forwards = o.unmatched == Unmatched::forward;
  for (const auto& r : o.rules) forwards = forwards || r.policy == Unmatched::forward;
  // A drill's ${replay.NAME.address} is filled in when the action runs.
  if (!o.forward.empty() && o.forward.find("${replay.") == std::string::npos) {
    const auto hp = split_host_port(o.forward);
    if (!hp || hp->host.empty() || hp->port.empty() || hp->port.find_first_not_of("0123456789") != std::string::npos)
      return "forward: expected HOST:PORT, got \"" + o.forward + "\"";
  }
  if (forwards && o.forward.empty())
    return std::string("forward: required (HOST:PORT) when unmatched or a rule says forward");
  if (forwards && o.protocol == Protocol::tcp)
    return std::string("unmatched: forward needs protocol http, mcp or resp (tcp turns cannot be forwarded)");
  return std::nullopt;
}

std::optional<std::string> server_options_from_json(const std::string& json, const std::string& base_dir,
                                                    const std::vector<std::string>& extra_keys, ServerOptions& out) {
  rapidjson::Document doc;
  doc.Parse(json.c_str(), json.size());
  if (doc.HasParseError() || !doc.IsObject())
    return std::string("expected an object like {\"journal\": \"recordings/run1\", \"unmatched\": \"error\"}");
  static const std::vector<std::string_view> known{"journal", "listen", "protocol", "unmatched", "forward", "ignore", "rules"};
  for (auto it = doc.MemberBegin(); it != doc.MemberEnd(); ++it) {
    const std::string key(it->name.GetString(), it->name.GetStringLength());
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    if (std::find(extra_keys.begin(), extra_keys.end(), key) != extra_keys.end()) continue;
    return key + ": " + unknown_field(key, known);
  }
  auto text = [&](const char* key, std::string& into) -> std::optional<std::string> {
    auto it = doc.FindMember(key);
    if (it == doc.MemberEnd()) return std::nullopt;
    if (!it->value.IsString()) return std::string(key) + ": must be a string";
    into.assign(it->value.GetString(), it->value.GetStringLength());
    return std::nullopt;
  };
  auto strings = [&](const char* key, std::vector<std::string>& into) -> std::optional<std::string> {
    auto it = doc.FindMember(key);
    if (it == doc.MemberEnd()) return std::nullopt;
    if (!it->value.IsArray()) return std::string(key) + ": must be an array of strings";
    for (rapidjson::SizeType i = 0; i < it->value.Size(); ++i) {
      if (!it->value[i].IsString()) return std::string(key) + "[" + std::to_string(i) + "]: must be a string";
      into.emplace_back(it->value[i].GetString(), it->value[i].GetStringLength());
    }
    return std::nullopt;
  };
  if (!doc.HasMember("journal")) return std::string("journal: missing required field (a recording directory or journal file)");
  if (auto e = text("journal", out.journal)) return e;
  if (out.journal.empty()) return std::string("journal: must not be empty");
  out.journal = resolve_journal(base_dir, out.journal);
  if (auto e = text("listen", out.listen)) return e;
  std::string protocol, unmatched;
  if (auto e = text("protocol", protocol)) return e;
  if (!protocol.empty() && protocol != "auto") {
    out.protocol = parse_protocol(protocol);
    if (!out.protocol) return "protocol: must be one of auto, http, resp, mcp, tcp (got \"" + protocol + "\")";
  }
  if (auto e = text("unmatched", unmatched)) return e;
  if (!unmatched.empty() || doc.HasMember("unmatched")) {
    const auto u = parse_unmatched(unmatched);
    if (!u) return "unmatched: must be one of error, closest, fail, forward (got \"" + unmatched + "\")";
    out.unmatched = *u;
  }
  if (auto e = text("forward", out.forward)) return e;
  if (auto e = strings("ignore", out.ignore)) return e;
  std::vector<std::string> rules;
  if (auto e = strings("rules", rules)) return e;
  for (std::size_t i = 0; i < rules.size(); ++i) {
    Rule r;
    if (auto e = parse_rule(rules[i], r)) return "rules[" + std::to_string(i) + "]: " + *e;
    out.rules.push_back(std::move(r));
  }
  return check_server_options(out);
}

}  // namespace faultline::replay
