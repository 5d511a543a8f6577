#include "replay/record.hpp"

#include <algorithm>

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

std::optional<double> RunRecord::event(const std::string& key) const {
  auto it = events.find(key);
  if (it == events.end()) return std::nullopt;
  return it->second;
}

}  // namespace faultline::drill
