// Faults Toxiproxy users have asked for for years (#536, #149, #451, #404, #613), on the
// same route and with the same rules as the classic toxics.
#include <algorithm>
#include <cmath>
#include <string>

#include "faults/toxic.hpp"

namespace faultline {
namespace {

std::optional<std::string> in_range(const ToxicConfig& c, std::string_view name, double lo, double hi) {
  const double v = c.get_double(name);
  if (v < lo || v > hi) {
    return "attribute " + std::string(name) + " must be between " + std::to_string(static_cast<long long>(lo)) +
           " and " + (hi >= kMaxAttribute ? std::string("10000000000") : std::to_string(hi).substr(0, 3));
  }
  return std::nullopt;
}

// Holds the first data of the direction for `delay` ms (a slow open / first byte).
class SlowOpen final : public Stage {
 public:
  explicit SlowOpen(const ToxicConfig& c) : delay_(milliseconds(c.get_int("delay"))) {}
  void on_data(Segment in, Emitter& out) override {
    if (!opened_) {
      opened_ = true;
      if (in.release != kNever) in.release += delay_;
      bytes_delayed += in.size;
    }
    out.emit(in);
  }

 private:
  Duration delay_;
  bool opened_ = false;
};

// Lets data flow, then closes the connection `time` ms after joining ("cable unplugged").
class LimitTime final : public Stage {
 public:
  explicit LimitTime(const ToxicConfig& c) : limit_(milliseconds(c.get_int("time"))) {}
  void on_start(TimePoint now, Emitter& out) override {
    if (joined_ == TimePoint{}) joined_ = now;
    out.end(EndKind::close, joined_ + limit_);
  }
  void on_data(Segment in, Emitter& out) override { out.emit(in); }

 private:
  Duration limit_;
  TimePoint joined_{};
};

// Swallows everything and never closes: a peer that accepted and went silent.
class Blackhole final : public Stage {
 public:
  void on_data(Segment in, Emitter&) override { bytes_dropped += in.size; }
};

// Flips one random bit in each byte with probability `probability`.
class Corrupt final : public Stage {
 public:
  Corrupt(const ToxicConfig& c, Rng rng) : p_(std::clamp(c.get_double("probability"), 0.0, 1.0)), rng_(rng) {}
  void on_data(Segment in, Emitter& out) override {
    if (p_ >= 1.0) {
      for (std::size_t i = 0; i < in.size; ++i) flip(in.data[i]);
    } else if (p_ > 0.0) {
      // Skip ahead geometrically instead of rolling for every byte.
      const double log_q = std::log1p(-p_);
      std::size_t i = skip(log_q);
      while (i < in.size) {
        flip(in.data[i]);
        i += 1 + skip(log_q);
      }
    }
    out.emit(in);
  }

 private:
  void flip(std::uint8_t& byte) {
    byte ^= static_cast<std::uint8_t>(1u << rng_.below(8));
    ++flipped_;
  }
  std::size_t skip(double log_q) {
    const double u = 1.0 - rng_.uniform();  // (0, 1]
    const double n = std::floor(std::log(u) / log_q);
    return n > 1e15 ? static_cast<std::size_t>(1e15) : static_cast<std::size_t>(n);
  }
  double p_;
  Rng rng_;
  std::uint64_t flipped_ = 0;
};

// drop_connections' count of the connections that started while it existed, across all
// of them, so `first` means the first connections after the fault was created.
struct StartedConnections final : TypeState {
  std::atomic<std::uint64_t> started{0};
};

// Closes or resets new connections at once: the first `first` (0 = all) after the fault
// was created are candidates, each dropped with probability `fraction`.
class DropConnections final : public Stage {
 public:
  DropConnections(const ToxicConfig& c, Rng rng, const StageContext& ctx) {
    if (!ctx.connection_start) return;  // only connections that start while it exists
    const auto index = c.shared->state<StartedConnections>().started.fetch_add(1, std::memory_order_relaxed);
    const auto first = static_cast<std::uint64_t>(c.get_int("first"));
    const bool candidate = first == 0 || index < first;
    drop_ = candidate && rng.uniform() < c.get_double("fraction");
    reset_ = c.get_text("mode") == "reset";
  }
  void on_start(TimePoint now, Emitter& out) override {
    if (!drop_) return;
    if (!counted_ && reset_) ++resets;
    counted_ = true;
    out.end(reset_ ? EndKind::reset : EndKind::close, now);
  }
  void on_data(Segment in, Emitter& out) override {
    if (drop_) {
      bytes_dropped += in.size;
      return;
    }
    out.emit(in);
  }

 private:
  bool drop_ = false;
  bool reset_ = false;
  bool counted_ = false;
};

// shared_bandwidth's budget: a virtual clock (when the link is next free, in ns of the
// steady clock), advanced with compare-and-swap by every connection of the toxic.
struct VirtualLinkClock final : TypeState {
  std::atomic<std::int64_t> next_free_ns{0};
};

// One bandwidth budget shared by every connection of the proxy (#613).
class SharedBandwidth final : public Stage {
 public:
  explicit SharedBandwidth(const ToxicConfig& c)
      : rate_kbps_(c.get_int("rate")), shared_(c.shared), clock_(c.shared->state<VirtualLinkClock>()) {}
  void on_data(Segment in, Emitter& out) override {
    if (rate_kbps_ <= 0 || in.release == kNever) {
      in.release = kNever;
      out.emit(in);
      return;
    }
    // n bytes at rate KB/s take n * 10^6 / rate ns.
    const std::int64_t cost = static_cast<std::int64_t>(in.size) * 1000000 / rate_kbps_;
    const std::int64_t arrival = in.release.time_since_epoch().count();
    std::int64_t current = clock_.next_free_ns.load(std::memory_order_relaxed), start = 0;
    do {
      start = std::max(current, arrival);
    } while (!clock_.next_free_ns.compare_exchange_weak(current, start + cost, std::memory_order_relaxed));
    // Release in slices of at most 100 ms worth of bytes, spread over the reserved span.
    const std::size_t slice = static_cast<std::size_t>(std::max<std::int64_t>(rate_kbps_ * 100, 1));
    std::size_t offset = 0;
    while (offset < in.size) {
      const std::size_t n = std::min(slice, in.size - offset);
      offset += n;
      const std::int64_t at = start + static_cast<std::int64_t>(offset) * 1000000 / rate_kbps_;
      out.emit(Segment{in.data + offset - n, n, TimePoint(Duration(at))});
    }
    bytes_delayed += in.size;
  }

 private:
  std::int64_t rate_kbps_;
  std::shared_ptr<ToxicShared> shared_;  // keeps clock_ alive
  VirtualLinkClock& clock_;
};

void add_extra_toxics(ToxicRegistry& r) {
  r.add({"slow_open",
         {{"delay"}},
         [](const ToxicConfig& c) { return in_range(c, "delay", 0, kMaxAttribute); },
         [](const ToxicConfig& c, Rng, const StageContext&) -> std::unique_ptr<Stage> {
           return std::make_unique<SlowOpen>(c);
         }});
  r.add({"limit_time",
         {{"time"}},
         [](const ToxicConfig& c) -> std::optional<std::string> {
           // 0 would close every connection at once; that is drop_connections' job.
           if (c.get_int("time") < 1) return "attribute time must be at least 1 (ms)";
           return in_range(c, "time", 1, kMaxAttribute);
         },
         [](const ToxicConfig& c, Rng, const StageContext&) -> std::unique_ptr<Stage> {
           return std::make_unique<LimitTime>(c);
         }});
  r.add({"blackhole", {}, [](const ToxicConfig&) { return std::nullopt; },
         [](const ToxicConfig&, Rng, const StageContext&) -> std::unique_ptr<Stage> {
           return std::make_unique<Blackhole>();
         }});
  r.add({"corrupt",
         {{"probability", AttributeKind::number}},
         [](const ToxicConfig& c) { return in_range(c, "probability", 0, 1); },
         [](const ToxicConfig& c, Rng rng, const StageContext&) -> std::unique_ptr<Stage> {
           return std::make_unique<Corrupt>(c, rng);
         }});
  r.add({"drop_connections",
         {{"first"}, {"fraction", AttributeKind::number, 1.0}, {"mode", AttributeKind::text, 0, {"close", "reset"}}},
         [](const ToxicConfig& c) -> std::optional<std::string> {
           if (auto e = in_range(c, "first", 0, kMaxAttribute)) return e;
           return in_range(c, "fraction", 0, 1);
         },
         [](const ToxicConfig& c, Rng rng, const StageContext& ctx) -> std::unique_ptr<Stage> {
           return std::make_unique<DropConnections>(c, rng, ctx);
         }});
  r.add({"shared_bandwidth",
         {{"rate"}},
         [](const ToxicConfig& c) { return in_range(c, "rate", 0, kMaxAttribute); },
         [](const ToxicConfig& c, Rng, const StageContext&) -> std::unique_ptr<Stage> {
           return std::make_unique<SharedBandwidth>(c);
         }});
}

const FaultRegistrar registrar(add_extra_toxics);

}  // namespace

}  // namespace faultline
