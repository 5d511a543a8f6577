// Toxiproxy's toxics with Toxiproxy's names, attributes, defaults and units, minus
// its crashes: every attribute is validated before a stage can be made from it.
#include <algorithm>
#include <string>

#include "faults/delay.hpp"
#include "faults/toxic.hpp"

namespace faultline {
namespace {

std::optional<std::string> non_negative(const ToxicConfig& c, std::initializer_list<std::string_view> names) {
  for (auto name : names) {
    if (c.get_double(name) < 0) return "attribute " + std::string(name) + " must not be negative";
    if (c.get_double(name) > kMaxAttribute) return "attribute " + std::string(name) + " must be at most 10000000000";
  }
  return std::nullopt;
}

// Passes everything through; Toxiproxy registers it so the API accepts it.
class Noop final : public Stage {
 public:
  void on_data(Segment in, Emitter& out) override { out.emit(in); }
};

// Delays every chunk counted from its arrival, so queued bytes keep flowing at full rate
// behind the delay. "uniform" is Toxiproxy's latency ± jitter in whole milliseconds; the
// other distributions have mean `latency` and standard deviation `jitter` (see delay.hpp).
class Latency final : public Stage {
 public:
  Latency(const ToxicConfig& c, Rng rng)
      : model_(parse_distribution(c.get_text("distribution")), static_cast<double>(c.get_int("latency")),
               static_cast<double>(c.get_int("jitter")), c.get_double("correlation")),
        rng_(rng) {}
  void on_data(Segment in, Emitter& out) override {
    const double ms = model_.next(rng_);
    if (in.release != kNever) in.release += std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(ms));
    bytes_delayed += in.size;
    out.emit(in);
  }

 private:
  DelayModel model_;
  Rng rng_;
};

// Limits throughput to `rate` KB/s (K = 1000). Rate 0 stalls the direction until the
// toxic changes, which Toxiproxy users rely on as a "pause" switch.
class Bandwidth final : public Stage {
 public:
  explicit Bandwidth(const ToxicConfig& c) : rate_kbps_(c.get_int("rate")) {}
  void on_data(Segment in, Emitter& out) override {
    if (rate_kbps_ <= 0 || in.release == kNever) {
      in.release = kNever;
      out.emit(in);
      return;
    }
    // Cut into slices of at most 100 ms worth of bytes so a big chunk trickles out.
    const std::size_t slice = static_cast<std::size_t>(std::max<std::int64_t>(rate_kbps_ * 100, 1));
    TimePoint cursor = std::max(in.release, next_free_);
    std::size_t offset = 0;
    while (offset < in.size) {
      const std::size_t n = std::min(slice, in.size - offset);
      // n bytes at rate KB/s take n / rate ms = n * 1000 / rate µs.
      cursor += microseconds(static_cast<std::int64_t>(n) * 1000 / rate_kbps_);
      out.emit(Segment{in.data + offset, n, cursor});
      bytes_delayed += n;
      offset += n;
    }
    next_free_ = cursor;
  }

 private:
  std::int64_t rate_kbps_;
  TimePoint next_free_{};
};

// Delays the end of the stream (the FIN) by `delay` ms.
class SlowClose final : public Stage {
 public:
  explicit SlowClose(const ToxicConfig& c) : delay_(milliseconds(c.get_int("delay"))) {}
  void on_data(Segment in, Emitter& out) override { out.emit(in); }
  void on_end(EndKind kind, TimePoint at, Emitter& out) override { out.end(kind, at + delay_); }

 private:
  Duration delay_;
};

// Drops all data; closes the connection `timeout` ms after the toxic joins it (0: never).
class Timeout final : public Stage {
 public:
  explicit Timeout(const ToxicConfig& c) : timeout_(milliseconds(c.get_int("timeout"))) {}
  void on_start(TimePoint now, Emitter& out) override {
    if (joined_ == TimePoint{}) joined_ = now;  // counted from when it joined, not from each rebuild
    if (timeout_ > Duration::zero()) out.end(EndKind::close, joined_ + timeout_);
  }
  void on_data(Segment in, Emitter&) override { bytes_dropped += in.size; }

 private:
  Duration timeout_;
  TimePoint joined_{};
};

// On the first data after it joins: drops it and resets the connection (RST both ways)
// `timeout` ms later. Unlike Toxiproxy, this also resets connections that already existed.
class ResetPeer final : public Stage {
 public:
  explicit ResetPeer(const ToxicConfig& c) : timeout_(milliseconds(c.get_int("timeout"))) {}
  void on_data(Segment in, Emitter& out) override {
    bytes_dropped += in.size;
    if (triggered_) return;
    triggered_ = true;
    reset_at_ = (in.release == kNever ? Clock::now() : in.release) + timeout_;
    ++resets;
    out.end(EndKind::reset, reset_at_);
  }
  void on_start(TimePoint, Emitter& out) override {
    if (triggered_) out.end(EndKind::reset, reset_at_);
  }

 private:
  Duration timeout_;
  bool triggered_ = false;
  TimePoint reset_at_{};
};

// Cuts each chunk into pieces of about average_size ± size_variation bytes, `delay` µs apart.
class Slicer final : public Stage {
 public:
  Slicer(const ToxicConfig& c, Rng rng)
      : average_(static_cast<std::size_t>(c.get_int("average_size"))),
        variation_(static_cast<std::size_t>(c.get_int("size_variation"))),
        delay_(microseconds(c.get_int("delay"))),
        rng_(rng) {}
  void on_data(Segment in, Emitter& out) override {
    TimePoint at = in.release;
    std::size_t offset = 0;
    while (offset < in.size) {
      std::size_t n = average_;
      if (variation_ > 0) n = average_ - variation_ + rng_.below(2 * variation_ + 1);
      n = std::clamp<std::size_t>(n, 1, in.size - offset);
      out.emit(Segment{in.data + offset, n, at});
      offset += n;
      if (at != kNever) at += delay_;
    }
  }

 private:
  std::size_t average_;
  std::size_t variation_;
  Duration delay_;
  Rng rng_;
};

// Passes exactly `bytes` bytes in total, then closes the connection.
class LimitData final : public Stage {
 public:
  explicit LimitData(const ToxicConfig& c) : limit_(static_cast<std::uint64_t>(c.get_int("bytes"))) {}
  void on_data(Segment in, Emitter& out) override {
    if (closed_) {
      bytes_dropped += in.size;
      return;
    }
    const std::uint64_t room = limit_ - passed_;
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(room, in.size));
    if (n > 0) out.emit(Segment{in.data, n, in.release});
    passed_ += n;
    bytes_dropped += in.size - n;
    if (passed_ >= limit_) {
      closed_ = true;
      closed_at_ = in.release;
      out.end(EndKind::close, closed_at_);
    }
  }
  void on_start(TimePoint, Emitter& out) override {
    if (closed_) out.end(EndKind::close, closed_at_);
  }

 private:
  std::uint64_t limit_;
  std::uint64_t passed_ = 0;
  bool closed_ = false;
  TimePoint closed_at_{};
};

// Drops whole chunks with probability loss_rate, or loss_rate + correlation right after
// a drop (a two-state loss model, as Toxiproxy's packet_loss).
class PacketLoss final : public Stage {
 public:
  PacketLoss(const ToxicConfig& c, Rng rng)
      : loss_(std::clamp(c.get_double("loss_rate"), 0.0, 1.0)),
        correlation_(std::clamp(c.get_double("correlation"), 0.0, 1.0)),
        rng_(rng) {}
  void on_data(Segment in, Emitter& out) override {
    const double p = std::min(1.0, last_dropped_ ? loss_ + correlation_ : loss_);
    last_dropped_ = rng_.uniform() < p;
    if (last_dropped_) {
      bytes_dropped += in.size;
      return;
    }
    out.emit(in);
  }

 private:
  double loss_;
  double correlation_;
  Rng rng_;
  bool last_dropped_ = false;
};

void add_basic_toxics(ToxicRegistry& r) {
  r.add({"noop", {}, [](const ToxicConfig&) { return std::nullopt; },
         [](const ToxicConfig&, Rng, const StageContext&) -> std::unique_ptr<Stage> { return std::make_unique<Noop>(); }});
  r.add({"latency",
         {{"latency"},
          {"jitter"},
          {"distribution", AttributeKind::text, 0, {"uniform", "normal", "pareto", "paretonormal", "lognormal"}, true},
          {"correlation", AttributeKind::number, 0, {}, true}},
         [](const ToxicConfig& c) -> std::optional<std::string> {
           if (auto e = non_negative(c, {"latency", "jitter"})) return e;
           const double corr = c.get_double("correlation");
           if (corr < 0 || corr > 1) return "attribute correlation must be between 0 and 1";
           return std::nullopt;
         },
         [](const ToxicConfig& c, Rng rng, const StageContext&) -> std::unique_ptr<Stage> { return std::make_unique<Latency>(c, rng); }});
  r.add({"bandwidth",
         {{"rate"}},
         [](const ToxicConfig& c) { return non_negative(c, {"rate"}); },
         [](const ToxicConfig& c, Rng, const StageContext&) -> std::unique_ptr<Stage> { return std::make_unique<Bandwidth>(c); }});
  r.add({"slow_close",
         {{"delay"}},
         [](const ToxicConfig& c) { return non_negative(c, {"delay"}); },
         [](const ToxicConfig& c, Rng, const StageContext&) -> std::unique_ptr<Stage> { return std::make_unique<SlowClose>(c); }});
  r.add({"timeout",
         {{"timeout"}},
         [](const ToxicConfig& c) { return non_negative(c, {"timeout"}); },
         [](const ToxicConfig& c, Rng, const StageContext&) -> std::unique_ptr<Stage> { return std::make_unique<Timeout>(c); }});
  r.add({"reset_peer",
         {{"timeout"}},
         [](const ToxicConfig& c) { return non_negative(c, {"timeout"}); },
         [](const ToxicConfig& c, Rng, const StageContext&) -> std::unique_ptr<Stage> { return std::make_unique<ResetPeer>(c); }});
  r.add({"slicer",
         {{"average_size"}, {"size_variation"}, {"delay"}},
         [](const ToxicConfig& c) -> std::optional<std::string> {
           if (auto e = non_negative(c, {"average_size", "size_variation", "delay"})) return e;
           if (c.get_int("average_size") < 1) return "attribute average_size must be at least 1";
           if (c.get_int("size_variation") >= c.get_int("average_size"))
             return "attribute size_variation must be smaller than average_size";
           return std::nullopt;
         },
         [](const ToxicConfig& c, Rng rng, const StageContext&) -> std::unique_ptr<Stage> { return std::make_unique<Slicer>(c, rng); }});
  r.add({"limit_data",
         {{"bytes"}},
         [](const ToxicConfig& c) { return non_negative(c, {"bytes"}); },
         [](const ToxicConfig& c, Rng, const StageContext&) -> std::unique_ptr<Stage> { return std::make_unique<LimitData>(c); }});
  r.add({"packet_loss",
         {{"loss_rate", AttributeKind::number}, {"correlation", AttributeKind::number}},
         [](const ToxicConfig& c) -> std::optional<std::string> {
           for (auto name : {"loss_rate", "correlation"}) {
             const double v = c.get_double(name);
             if (v < 0 || v > 1) return "attribute " + std::string(name) + " must be between 0 and 1";
           }
           return std::nullopt;
         },
         [](const ToxicConfig& c, Rng rng, const StageContext&) -> std::unique_ptr<Stage> { return std::make_unique<PacketLoss>(c, rng); }});
}

const FaultRegistrar registrar(add_basic_toxics);

}  // namespace

}  // namespace faultline
