#include <catch2/catch.hpp>

#include "tests/faults/test_support.hpp"

using namespace faultline;
using namespace faultline::test;
using std::chrono::milliseconds;

namespace {
std::unique_ptr<Stage> make(const std::shared_ptr<const ToxicConfig>& c, std::uint64_t seed = 1) {
  const ToxicType* type = ToxicRegistry::instance().find(c->type);
  REQUIRE(type != nullptr);
  REQUIRE_FALSE(type->validate(*c).has_value());
  return type->make(*c, Rng(seed), StageContext{});
}
std::optional<std::string> validate(const std::shared_ptr<const ToxicConfig>& c) {
  return ToxicRegistry::instance().find(c->type)->validate(*c);
}
std::uint8_t g_bytes[1 << 20];
}  // namespace

TEST_CASE("latency: delay counted from arrival, jitter uniform within ±jitter") {
  auto stage = make(toxic("latency", {attr("latency", 100), attr("jitter", 20)}));
  Recorder out;
  double sum = 0;
  long lo = 1000, hi = 0;
  for (int i = 0; i < 5000; ++i) {
    const TimePoint arrival = t0() + milliseconds(i);
    stage->on_data({g_bytes, 1, arrival}, out);
    const auto d = std::chrono::duration_cast<milliseconds>(out.segments.back().release - arrival).count();
    lo = std::min(lo, static_cast<long>(d));
    hi = std::max(hi, static_cast<long>(d));
    sum += static_cast<double>(d);
  }
  CHECK(lo >= 80);
  CHECK(hi < 120);
  CHECK(lo <= 82);  // the whole range is used
  CHECK(hi >= 118);
  CHECK(sum / 5000 == Approx(99.5).margin(1.0));
}

TEST_CASE("latency: jitter larger than latency never releases before arrival") {
  auto stage = make(toxic("latency", {attr("latency", 5), attr("jitter", 50)}));
  Recorder out;
  for (int i = 0; i < 1000; ++i) stage->on_data({g_bytes, 1, t0()}, out);
  for (const auto& s : out.segments) CHECK(s.release >= t0());
}

TEST_CASE("bandwidth: bytes leave at the configured rate in slices of at most 100 ms") {
  auto stage = make(toxic("bandwidth", {attr("rate", 100)}));  // 100 KB/s = 100,000 B/s
  Recorder out;
  stage->on_data({g_bytes, 100000, t0()}, out);
  REQUIRE_FALSE(out.segments.empty());
  for (const auto& s : out.segments) CHECK(s.size <= 10000);
  CHECK(out.bytes() == 100000);
  CHECK(out.segments.back().release - t0() == milliseconds(1000));
  // A second chunk arriving early queues behind the first.
  stage->on_data({g_bytes, 50000, t0() + milliseconds(10)}, out);
  CHECK(out.segments.back().release - t0() == milliseconds(1500));
}

TEST_CASE("bandwidth: rate 0 stalls the data until the toxic changes") {
  auto stage = make(toxic("bandwidth", {attr("rate", 0)}));
  Recorder out;
  stage->on_data({g_bytes, 10, t0()}, out);
  REQUIRE(out.segments.size() == 1);
  CHECK(out.segments[0].release == kNever);
}

TEST_CASE("slow_close: data flows, the end is delayed") {
  auto stage = make(toxic("slow_close", {attr("delay", 300)}));
  Recorder out;
  stage->on_data({g_bytes, 10, t0()}, out);
  CHECK(out.segments.size() == 1);
  stage->on_end(EndKind::half_close, t0() + milliseconds(5), out);
  REQUIRE(out.ends.size() == 1);
  CHECK(out.ends[0].at == t0() + milliseconds(305));
  CHECK(out.ends[0].kind == EndKind::half_close);
}

TEST_CASE("timeout: drops everything, closes after the timeout counted from joining, 0 never closes") {
  auto stage = make(toxic("timeout", {attr("timeout", 250)}));
  Recorder out;
  stage->on_start(t0(), out);
  stage->on_data({g_bytes, 10, t0() + milliseconds(1)}, out);
  CHECK(out.segments.empty());
  CHECK(stage->bytes_dropped == 10);
  REQUIRE(out.ends.size() == 1);
  CHECK(out.ends[0].at == t0() + milliseconds(250));
  CHECK(out.ends[0].kind == EndKind::close);
  // A rebuild later re-declares the same deadline, not a new one.
  stage->on_start(t0() + milliseconds(100), out);
  CHECK(out.ends.back().at == t0() + milliseconds(250));

  auto forever = make(toxic("timeout", {attr("timeout", 0)}));
  Recorder out2;
  forever->on_start(t0(), out2);
  CHECK(out2.ends.empty());
}

TEST_CASE("reset_peer: waits for data, drops it, resets after the timeout") {
  auto stage = make(toxic("reset_peer", {attr("timeout", 40)}));
  Recorder out;
  stage->on_start(t0(), out);
  CHECK(out.ends.empty());
  stage->on_data({g_bytes, 10, t0() + milliseconds(7)}, out);
  stage->on_data({g_bytes, 10, t0() + milliseconds(8)}, out);
  CHECK(out.segments.empty());
  REQUIRE(out.ends.size() == 1);
  CHECK(out.ends[0].kind == EndKind::reset);
  CHECK(out.ends[0].at == t0() + milliseconds(47));
}

TEST_CASE("slicer: pieces of average ± variation, in order, delay apart, nothing lost") {
  auto stage = make(toxic("slicer", {attr("average_size", 100), attr("size_variation", 30), attr("delay", 50)}));
  Recorder out;
  stage->on_data({g_bytes, 10000, t0()}, out);
  CHECK(out.bytes() == 10000);
  for (std::size_t i = 0; i < out.segments.size(); ++i) {
    const auto& s = out.segments[i];
    if (i + 1 < out.segments.size()) {
      CHECK(s.size >= 70);
      CHECK(s.size <= 130);
      CHECK(out.segments[i + 1].data == s.data + s.size);
    }
    CHECK(s.release == t0() + std::chrono::microseconds(50 * static_cast<long>(i)));
  }
}

TEST_CASE("limit_data: exactly N bytes, then close, and 0 closes on the first chunk") {
  auto stage = make(toxic("limit_data", {attr("bytes", 25)}));
  Recorder out;
  for (int i = 0; i < 5; ++i) stage->on_data({g_bytes, 10, t0()}, out);
  CHECK(out.bytes() == 25);
  CHECK(out.ends.size() == 1);
  auto zero = make(toxic("limit_data", {attr("bytes", 0)}));
  Recorder out2;
  zero->on_data({g_bytes, 10, t0()}, out2);
  CHECK(out2.bytes() == 0);
  CHECK(out2.ends.size() == 1);
}

TEST_CASE("packet_loss: drops about loss_rate of chunks reproducibly, and correlation raises runs") {
  auto count = [](double loss, double corr, std::uint64_t seed) {
    auto stage = make(toxic("packet_loss", {fattr("loss_rate", loss), fattr("correlation", corr)}), seed);
    Recorder out;
    for (int i = 0; i < 20000; ++i) stage->on_data({g_bytes, 1, t0()}, out);
    return 20000 - static_cast<int>(out.segments.size());
  };
  const int dropped = count(0.3, 0.0, 1);
  CHECK(dropped == Approx(6000).margin(300));
  CHECK(count(0.3, 0.0, 1) == dropped);
  CHECK(count(0.3, 0.5, 1) > dropped + 1000);
  CHECK(count(0.0, 0.0, 1) == 0);
}

TEST_CASE("validation refuses attributes Toxiproxy crashes or hangs on, naming the attribute") {
  auto msg = validate(toxic("bandwidth", {attr("rate", -1)}));
  REQUIRE(msg);
  CHECK(msg->find("rate") != std::string::npos);
  msg = validate(toxic("slicer", {attr("average_size", 0), attr("size_variation", 0), attr("delay", 0)}));
  REQUIRE(msg);
  CHECK(msg->find("average_size") != std::string::npos);
  msg = validate(toxic("slicer", {attr("average_size", 10), attr("size_variation", 10), attr("delay", 0)}));
  REQUIRE(msg);
  CHECK(msg->find("size_variation") != std::string::npos);
  msg = validate(toxic("latency", {attr("latency", 10), attr("jitter", -5)}));
  REQUIRE(msg);
  CHECK(msg->find("jitter") != std::string::npos);
  msg = validate(toxic("packet_loss", {fattr("loss_rate", 1.5), fattr("correlation", 0)}));
  REQUIRE(msg);
  CHECK(msg->find("loss_rate") != std::string::npos);
  CHECK_FALSE(validate(toxic("slicer", {attr("average_size", 10), attr("size_variation", 9), attr("delay", 0)})));
}

TEST_CASE("the registry knows Toxiproxy's toxic types with their attributes") {
  const auto& r = ToxicRegistry::instance();
  for (auto name : {"noop", "latency", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer", "limit_data",
                    "packet_loss"}) {
    INFO(name);
    CHECK(r.find(name) != nullptr);
  }
  CHECK(r.find("latency")->attributes.size() == 4);  // two of them faultline extensions
  CHECK(r.find("slicer")->attributes.size() == 3);
  CHECK(r.find("nope") == nullptr);
}
