// A log line per event, at most one a second: a flood of refused connections or failed
// accepts must not turn the log into the flood. Safe to share between threads.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>

namespace faultline {

class LogLimiter {
 public:
  explicit LogLimiter(std::chrono::milliseconds every = std::chrono::seconds(1)) : every_ns_(every.count() * 1000000) {}

  // Counts one event. Returns 0 when it should not be logged (one was logged less than
  // `every` ago), else how many events the line stands for: this one and those counted
  // since the last line.
  std::uint64_t admit() {
    count_.fetch_add(1, std::memory_order_relaxed);
    const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::steady_clock::now().time_since_epoch()).count();
    std::int64_t last = last_ns_.load(std::memory_order_relaxed);
    if (last != 0 && now - last < every_ns_) return 0;
    if (!last_ns_.compare_exchange_strong(last, now, std::memory_order_relaxed)) return 0;
    return count_.exchange(0, std::memory_order_relaxed);
  }

 private:
  const std::int64_t every_ns_;
  std::atomic<std::int64_t> last_ns_{0};
  std::atomic<std::uint64_t> count_{0};
};

}  // namespace faultline
