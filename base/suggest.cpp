#include "base/suggest.hpp"

#include <algorithm>

namespace faultline {

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string closest_name(std::string_view name, const std::vector<std::string_view>& candidates) {
  std::string best;
  // Up to a third of the name's letters (at least 2) may differ.
  std::size_t best_distance = std::max<std::size_t>(2, name.size() / 3) + 1;
  for (const auto c : candidates) {
    const std::size_t d = edit_distance(name, c);
    if (d < best_distance) {
      best_distance = d;
      best = std::string(c);
    }
  }
  return best;
}

std::string did_you_mean(std::string_view name, const std::vector<std::string_view>& candidates) {
  const std::string near = closest_name(name, candidates);
  return near.empty() ? "" : " (did you mean \"" + near + "\"?)";
}

std::string unknown_field(std::string_view key, const std::vector<std::string_view>& known) {
  std::string list;
  for (const auto k : known) list += (list.empty() ? "" : ", ") + std::string(k);
  return "unknown field" + did_you_mean(key, known) + " (expected one of: " + list + ")";
}

}  // namespace faultline
