// Delay distributions for the latency fault, after netem: pure functions of a seeded RNG.
#pragma once
#include <cmath>
#include <string_view>

#include "faults/rng.hpp"

namespace faultline {

enum class Distribution { uniform, normal, pareto, paretonormal, lognormal };

inline Distribution parse_distribution(std::string_view name) {
  if (name == "normal") return Distribution::normal;
  if (name == "pareto") return Distribution::pareto;
  if (name == "paretonormal") return Distribution::paretonormal;
  if (name == "lognormal") return Distribution::lognormal;
  return Distribution::uniform;
}

// Draws delays in milliseconds. `uniform` keeps Toxiproxy's semantics exactly: latency plus a
// whole number of ms in [-jitter, +jitter). The others have mean `mean` and standard deviation
// `sd`; `correlation` c blends each draw with the previous one (c·previous + (1−c)·fresh).
// Results are never negative.
class DelayModel {
 public:
  DelayModel(Distribution d, double mean, double sd, double correlation)
      : dist_(d), mean_(mean), sd_(sd), corr_(correlation) {}

  double next(Rng& rng) {
    double fresh = draw(rng);
    if (has_last_ && corr_ > 0) fresh = corr_ * last_ + (1 - corr_) * fresh;
    last_ = fresh;
    has_last_ = true;
    return fresh < 0 ? 0 : fresh;
  }

 private:
  static double standard_normal(Rng& rng) {
    // Box–Muller; u1 in (0, 1] so the log is finite.
    const double u1 = 1.0 - rng.uniform(), u2 = rng.uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  double pareto(Rng& rng) const {
    // Shape 3: mean 1.5·xm, sd (√3/2)·xm. Shift so the mean is `mean_` and scale so sd is `sd_`.
    const double xm = sd_ / 0.8660254037844386;
    const double x = xm / std::cbrt(1.0 - rng.uniform());
    return mean_ + x - 1.5 * xm;
  }
  double draw(Rng& rng) const {
    switch (dist_) {
      case Distribution::uniform: {
        const auto jitter = static_cast<std::int64_t>(sd_);
        if (jitter <= 0) return mean_;
        return mean_ + static_cast<double>(static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(2 * jitter))) - jitter);
      }
      case Distribution::normal:
        return mean_ + sd_ * standard_normal(rng);
      case Distribution::pareto:
        return pareto(rng);
      case Distribution::paretonormal:
        return rng.uniform() < 0.25 ? pareto(rng) : mean_ + sd_ * standard_normal(rng);
      case Distribution::lognormal: {
        if (mean_ <= 0) return 0;
        const double s2 = std::log(1.0 + (sd_ * sd_) / (mean_ * mean_));
        return std::exp(std::log(mean_) - s2 / 2 + std::sqrt(s2) * standard_normal(rng));
      }
    }
    return mean_;
  }

  Distribution dist_;
  double mean_, sd_, corr_;
  double last_ = 0;
  bool has_last_ = false;
};

}  // namespace faultline
