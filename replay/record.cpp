#include "replay/record.hpp"

#include <algorithm>
#include <cstdlib>

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

std::optional<double> RunRecord::event(const std::string& key) const {
  if (auto it = events.find(key); it != events.end()) return it->second;
  if (auto split = split_offset(key)) {
    // An activity's plain name is its end.
    auto it = events.find(split->first);
    if (it == events.end()) it = events.find(split->first + ".end");
    if (it != events.end()) return it->second + split->second;
  }
  return std::nullopt;
}

}  // namespace faultline::drill
