// Time as the fault stages see it: a monotonic clock passed in as a value, so the
// pure decision logic can be driven by a fake clock in tests.
#pragma once
#include <chrono>

namespace faultline {
using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Duration = Clock::duration;
using std::chrono::milliseconds;
using std::chrono::microseconds;
inline constexpr TimePoint kNever = TimePoint::max();
}  // namespace faultline
