#include "replay/stats.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace faultline::drill {

double percentile_sorted(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const double rank = std::ceil(p / 100.0 * static_cast<double>(sorted.size()));
  const std::size_t index = rank < 1 ? 0 : static_cast<std::size_t>(rank) - 1;
  return sorted[std::min(index, sorted.size() - 1)];
}

LatencyStats latency_stats(std::vector<double> samples_ms) {
  LatencyStats s;
  if (samples_ms.empty()) return s;
  std::sort(samples_ms.begin(), samples_ms.end());
  s.count = samples_ms.size();
  s.min = samples_ms.front();
  s.max = samples_ms.back();
  s.avg = std::accumulate(samples_ms.begin(), samples_ms.end(), 0.0) / static_cast<double>(s.count);
  s.p50 = percentile_sorted(samples_ms, 50);
  s.p95 = percentile_sorted(samples_ms, 95);
  s.p99 = percentile_sorted(samples_ms, 99);
  return s;
}

}  // namespace faultline::drill
