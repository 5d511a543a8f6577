// Latency statistics for the latency verdict (V.4) and the report. Pure.
#pragma once
#include <cstddef>
#include <vector>

namespace faultline::drill {

struct LatencyStats {
  std::size_t count = 0;
  double min = 0, avg = 0, p50 = 0, p95 = 0, p99 = 0, max = 0;  // milliseconds
};

// Nearest-rank percentile (the smallest sample with at least p% of the samples at or
// below it): every reported value is a latency that was really observed, which is what an
// SLO bound is compared with. `sorted` must be ascending and non-empty; p in (0, 100].
double percentile_sorted(const std::vector<double>& sorted, double p);

LatencyStats latency_stats(std::vector<double> samples_ms);

}  // namespace faultline::drill
