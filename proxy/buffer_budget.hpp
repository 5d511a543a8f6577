// The server-wide budget of bytes held by faults (`serve --max-buffered-bytes`): every
// connection's queued bytes count against it, and once it is spent a connection that would
// queue more stops reading (TCP pushes back on its sender) until bytes are written out.
// `--max-queued-bytes` bounds one connection; this bounds them all (1,000 clients pushing
// into a stalled toxic would otherwise hold 16 GiB). Shared between worker threads.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>

namespace faultline {

class BufferBudget {
 public:
  explicit BufferBudget(std::uint64_t limit) : limit_(limit) {}

  // How often a reader paused by the budget looks again (the bytes that free it belong to
  // other connections, whose writers cannot wake it).
  static constexpr std::chrono::milliseconds kRecheck{20};

  void add(std::uint64_t n) { held_.fetch_add(n, std::memory_order_relaxed); }
  void release(std::uint64_t n) { held_.fetch_sub(n, std::memory_order_relaxed); }
  bool exhausted() const { return limit_ != 0 && held_.load(std::memory_order_relaxed) >= limit_; }
  void count_pause() { pauses_.fetch_add(1, std::memory_order_relaxed); }

  std::uint64_t held() const { return held_.load(std::memory_order_relaxed); }
  std::uint64_t limit() const { return limit_; }  // 0: no limit
  std::uint64_t pauses() const { return pauses_.load(std::memory_order_relaxed); }

 private:
  const std::uint64_t limit_;
  std::atomic<std::uint64_t> held_{0};
  std::atomic<std::uint64_t> pauses_{0};
};

}  // namespace faultline
