// What the HTTP and Redis engines share: ordered release times per direction, the
// per-message toxicity roll, and reporting a fault that acted.
#pragma once
#include <algorithm>
#include <string>
#include <string_view>

#include "faults/protocol_engine.hpp"
#include "faults/protocol_fault.hpp"

namespace faultline {

class EngineBase : public ProtocolEngine {
 public:
  explicit EngineBase(Rng rng) : dice_(rng.derive("messages")) {}
  void set_faults(ToxicList faults) override { faults_ = std::move(faults); }
  const EngineCounters& counters() const override { return counters_; }

 protected:
  // Bytes towards one side never overtake bytes sent before them.
  void send(EngineOutput& out, Stream towards, std::string_view bytes, TimePoint release) {
    TimePoint& last = last_release_[towards == Stream::upstream ? 0 : 1];
    release = std::max(release, last);
    last = release;
    if (!bytes.empty()) out.send(towards, std::string(bytes), release);
  }
  void end(EngineOutput& out, Stream towards, EndKind kind, TimePoint at) {
    const TimePoint last = last_release_[towards == Stream::upstream ? 0 : 1];
    out.end(towards, kind, std::max(at, last));
  }
  // Toxicity is rolled per message, from the connection's seeded stream.
  bool roll(const ToxicConfig& c) { return c.toxicity >= 1.0 || dice_.uniform() < c.toxicity; }
  Duration draw_delay(const ProtocolFault& f) {
    if (f.jitter.count() <= 0) return f.delay;
    const auto j = std::chrono::duration_cast<std::chrono::milliseconds>(f.jitter).count();
    const auto offset = static_cast<std::int64_t>(dice_.below(static_cast<std::uint64_t>(2 * j + 1))) - j;
    return std::max(Duration::zero(), f.delay + std::chrono::milliseconds(offset));
  }
  static void report(EngineOutput& out, const ToxicConfig& c, std::string_view what) {
    c.shared->applied.fetch_add(1, std::memory_order_relaxed);
    out.applied(c, what);
  }

  Rng dice_;
  ToxicList faults_;
  EngineCounters counters_;
  TimePoint last_release_[2]{};
};

}  // namespace faultline
