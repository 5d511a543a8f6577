// Bounds for "this does not take long" checks. A sanitizer build (FAULTLINE_SANITIZE=1, as
// CI runs the suite a second time) is many times slower at allocation-heavy work, so the
// bound there is ten times the release one: still far below what a quadratic or
// backtracking implementation takes.
#pragma once
#include <chrono>

namespace faultline::test {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr int kSanitizerSlowdown = 10;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr int kSanitizerSlowdown = 10;
#else
inline constexpr int kSanitizerSlowdown = 1;
#endif
#else
inline constexpr int kSanitizerSlowdown = 1;
#endif

// How long work that takes well under `release` in a release build may take in this one.
constexpr std::chrono::milliseconds quick(std::chrono::milliseconds release) { return release * kSanitizerSlowdown; }

}  // namespace faultline::test
