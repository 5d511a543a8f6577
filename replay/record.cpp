#include "replay/record.hpp"

#include <algorithm>
#include <cstdlib>

#include <rapidjson/document.h>

namespace faultline::drill {

const char* to_string(Phase p) {
  switch (p) {
    case Phase::before: return "before";
    case Phase::during: return "during";
    case Phase::after: return "after";
    case Phase::method: return "method";
    case Phase::rollback: return "rollback";
  }
  return "?";
}

std::vector<const ActivityRecord*> RunRecord::probe_runs(const std::string& name) const {
  std::vector<const ActivityRecord*> out;
  for (const auto& h : hypothesis)
    for (const auto& p : h.probes)
      if (p.name == name && !p.skipped) out.push_back(&p);
  for (const auto* list : {&method, &rollbacks})
    for (const auto& a : *list)
      if (a.name == name && !a.skipped && is_probe_provider(a.provider)) out.push_back(&a);
  std::stable_sort(out.begin(), out.end(), [](const auto* a, const auto* b) { return a->start < b->start; });
  return out;
}

std::optional<std::pair<std::string, double>> split_offset(const std::string& key) {
  const auto sign = key.find_last_of("+-");
  if (sign == std::string::npos || sign == 0) return std::nullopt;
  std::string number = key.substr(sign + 1);
  double scale = 1;
  if (number.size() > 2 && number.compare(number.size() - 2, 2, "ms") == 0) {
    scale = 0.001;
    number.resize(number.size() - 2);
  } else if (number.size() > 1 && number.back() == 's') {
    number.pop_back();
  } else {
    return std::nullopt;
  }
  if (number.empty() || number.find_first_not_of("0123456789.") != std::string::npos || number.front() == '.' ||
      std::count(number.begin(), number.end(), '.') > 1)
    return std::nullopt;
  const double value = std::strtod(number.c_str(), nullptr) * scale;
  return std::pair{key.substr(0, sign), key[sign] == '-' ? -value : value};
}

StepLines parse_steps(std::string_view text, double wall0) {
  StepLines out;
  std::size_t at = 0;
  while (at < text.size()) {
    auto nl = text.find('\n', at);
    if (nl == std::string_view::npos) nl = text.size();
    const std::string_view line = text.substr(at, nl - at);
    at = nl + 1;
    if (line.find('{') == std::string_view::npos) continue;
    rapidjson::Document doc;
    doc.Parse(line.data(), line.size());
    if (doc.HasParseError() || !doc.IsObject()) continue;
    auto num = [&](const char* key) -> std::optional<double> {
      auto it = doc.FindMember(key);
      return it != doc.MemberEnd() && it->value.IsNumber() ? std::optional<double>(it->value.GetDouble()) : std::nullopt;
    };
    const auto start = num("start"), end = num("end");
    auto ok = doc.FindMember("ok");
    if (!start || !end || ok == doc.MemberEnd() || !ok->value.IsBool() || *end < *start) {
      ++out.malformed;
      continue;
    }
    LoadCall call;
    call.start = *start - wall0;
    call.latency_ms = (*end - *start) * 1000;
    call.ok = ok->value.GetBool();
    if (auto status = num("status")) call.status = static_cast<int>(*status);
    if (auto d = doc.FindMember("detail"); d != doc.MemberEnd() && d->value.IsString() && !call.ok)
      call.detail = std::string(d->value.GetString(), std::min<std::size_t>(d->value.GetStringLength(), 200));
    out.calls.push_back(std::move(call));
  }
  return out;
}

std::pair<std::string, std::string> split_edge(const std::string& key) {
  for (const std::string_view edge : {".start", ".end", ".removed"}) {
    if (key.size() > edge.size() && key.compare(key.size() - edge.size(), edge.size(), edge) == 0)
      return {key.substr(0, key.size() - edge.size()), std::string(edge)};
  }
  return {key, ""};
}

std::optional<double> RunRecord::event(const std::string& key) const {
  if (auto it = events.find(key); it != events.end()) return it->second;
  // "NAME.end+2s": the parser writes every event with its edge, so the base is a key.
  if (auto split = split_offset(key))
    if (auto it = events.find(split->first); it != events.end()) return it->second + split->second;
  return std::nullopt;
}

}  // namespace faultline::drill
