// Deterministic random streams. One server seed derives one stream per connection and
// per toxic, so the same seed and the same traffic give the same faults (Toxiproxy #274).
#pragma once
#include <cstdint>
#include <string_view>

namespace faultline {

// xoshiro256** seeded through splitmix64: small, fast, and identical on every platform.
class Rng {
 public:
  explicit Rng(std::uint64_t seed = 0);
  std::uint64_t next();
  // Uniform double in [0, 1).
  double uniform();
  // Uniform integer in [0, bound); bound 0 yields 0.
  std::uint64_t below(std::uint64_t bound);
  // A new independent stream keyed by a label (e.g. a toxic name).
  Rng derive(std::string_view label) const;
  Rng derive(std::uint64_t label) const;

 private:
  std::uint64_t s_[4];
};

std::uint64_t hash_label(std::string_view label);

}  // namespace faultline
