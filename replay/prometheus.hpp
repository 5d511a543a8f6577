// Reading faultline's /metrics (Prometheus text format 0.0.4) for metric probes and the
// verdicts that count traffic per proxy. Pure: text in, samples out.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace faultline::drill {

struct PromSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Parses the sample lines (comments and lines that do not parse are skipped). When `keep`
// is non-empty only samples with those names are returned, which keeps a long drill's
// metric history small.
std::vector<PromSample> parse_prometheus(std::string_view text, const std::vector<std::string>& keep = {});

// The sum of the samples named `name` whose labels include every pair in `labels`;
// nullopt when none matches (a missing series is not the same as zero traffic).
std::optional<double> sum_matching(const std::vector<PromSample>& samples, std::string_view name,
                                   const std::map<std::string, std::string>& labels);

}  // namespace faultline::drill
