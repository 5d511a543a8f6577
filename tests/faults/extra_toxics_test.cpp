#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

#include "faults/delay.hpp"
#include "tests/faults/test_support.hpp"

using namespace faultline;
using namespace faultline::test;
using std::chrono::milliseconds;

namespace {
std::unique_ptr<Stage> make(const std::shared_ptr<const ToxicConfig>& c, std::uint64_t seed = 1,
                            StageContext ctx = StageContext{}) {
  const ToxicType* type = ToxicRegistry::instance().find(c->type);
  REQUIRE(type != nullptr);
  REQUIRE_FALSE(type->validate(*c).has_value());
  return type->make(*c, Rng(seed), ctx);
}
Attribute text(std::string name, std::string value) {
  AttributeValue v;
  v.is_text = true;
  v.text = std::move(value);
  return {std::move(name), v};
}
std::uint8_t g_bytes[1 << 16];

struct Moments {
  double mean = 0, sd = 0, median = 0, max = 0, min = 0;
};
Moments sample(Distribution d, double mean, double sd, double corr = 0, int n = 40000) {
  DelayModel model(d, mean, sd, corr);
  Rng rng(11);
  std::vector<double> xs;
  for (int i = 0; i < n; ++i) xs.push_back(model.next(rng));
  Moments m;
  for (double x : xs) m.mean += x;
  m.mean /= n;
  for (double x : xs) m.sd += (x - m.mean) * (x - m.mean);
  m.sd = std::sqrt(m.sd / n);
  std::sort(xs.begin(), xs.end());
  m.median = xs[xs.size() / 2];
  m.max = xs.back();
  m.min = xs.front();
  return m;
}
}  // namespace

TEST_CASE("delay distributions have the configured mean and spread, and their shapes") {
  auto normal = sample(Distribution::normal, 100, 20);
  CHECK(normal.mean == Approx(100).margin(1));
  CHECK(normal.sd == Approx(20).margin(1));
  CHECK(normal.median == Approx(100).margin(1.5));  // symmetric

  auto pareto = sample(Distribution::pareto, 100, 20);
  CHECK(pareto.mean == Approx(100).margin(2));
  CHECK(pareto.median < pareto.mean);  // long right tail
  CHECK(pareto.max > pareto.mean + 5 * 20);

  auto lognormal = sample(Distribution::lognormal, 100, 20);
  CHECK(lognormal.mean == Approx(100).margin(1.5));
  CHECK(lognormal.sd == Approx(20).margin(1.5));
  CHECK(lognormal.median < lognormal.mean);
  CHECK(lognormal.min > 0);

  auto mix = sample(Distribution::paretonormal, 100, 20);
  CHECK(mix.mean == Approx(100).margin(2));

  auto uniform = sample(Distribution::uniform, 100, 20);
  CHECK(uniform.min >= 80);
  CHECK(uniform.max < 120);
  CHECK(uniform.mean == Approx(99.5).margin(0.5));
}

TEST_CASE("delays never go negative, and correlation smooths consecutive delays") {
  auto wide = sample(Distribution::normal, 10, 50);
  CHECK(wide.min >= 0);
  auto step = [](double corr) {
    DelayModel model(Distribution::normal, 100, 20, corr);
    Rng rng(3);
    double prev = model.next(rng), total = 0;
    for (int i = 0; i < 20000; ++i) {
      const double x = model.next(rng);
      total += std::fabs(x - prev);
      prev = x;
    }
    return total / 20000;
  };
  CHECK(step(0.9) < step(0.0) / 3);
}

TEST_CASE("schedules: windows after T, for D, every P") {
  Schedule flapping{0, 5000, 30000};
  CHECK(flapping.active(milliseconds(0)));
  CHECK(flapping.active(milliseconds(4999)));
  CHECK_FALSE(flapping.active(milliseconds(5000)));
  CHECK_FALSE(flapping.active(milliseconds(29999)));
  CHECK(flapping.active(milliseconds(30000)));
  CHECK(*flapping.next_change(milliseconds(1000)) == milliseconds(5000));
  CHECK(*flapping.next_change(milliseconds(6000)) == milliseconds(30000));

  Schedule later{2000, 0, 0};  // from 2 s on, for good
  CHECK_FALSE(later.active(milliseconds(1999)));
  CHECK(later.active(milliseconds(100000)));
  CHECK(*later.next_change(milliseconds(0)) == milliseconds(2000));
  CHECK_FALSE(later.next_change(milliseconds(3000)).has_value());

  Schedule once{1000, 500, 0};
  CHECK(once.active(milliseconds(1200)));
  CHECK_FALSE(once.active(milliseconds(1500)));
  CHECK_FALSE(once.next_change(milliseconds(1600)).has_value());
}

TEST_CASE("a scheduled toxic is in the chain only inside its window") {
  auto c = std::make_shared<ToxicConfig>(*toxic("latency", {attr("latency", 100), attr("jitter", 0)}));
  c->created = t0();
  c->schedule = Schedule{0, 300, 600};
  const ToxicList list{c};
  Chain chain(Rng(1));
  Recorder out;
  chain.rebuild(list, t0() + milliseconds(100), out);
  CHECK_FALSE(chain.empty());
  CHECK(next_schedule_change(list, t0() + milliseconds(100)) == t0() + milliseconds(300));
  chain.rebuild(list, t0() + milliseconds(400), out);
  CHECK(chain.empty());
  CHECK(next_schedule_change(list, t0() + milliseconds(400)) == t0() + milliseconds(600));
}

// Both session kinds follow their toxics through ActiveToxics: a connection that is already
// open must see a window edge even when the config version has not changed since.
TEST_CASE("ActiveToxics: stale on a new version or a passed edge, changed only when the active set is") {
  auto scheduled = std::make_shared<ToxicConfig>(*toxic("latency", {attr("latency", 500), attr("jitter", 0)}));
  scheduled->name = "lat";
  scheduled->created = t0();
  scheduled->schedule = Schedule{1000, 1500, 0};  // active from 1 s to 2.5 s
  ActiveToxics active;
  CHECK(active.stale(1, t0()));  // never looked
  CHECK(active.update(1, {}, t0()));  // the first look always builds the chain
  CHECK(active.next_edge() == kNever);
  CHECK_FALSE(active.stale(1, t0() + milliseconds(10)));

  // The toxic arrives before its window: a new version, the same (empty) active set, an edge.
  const ToxicList list{scheduled};
  CHECK(active.stale(2, t0() + milliseconds(10)));
  CHECK_FALSE(active.update(2, list, t0() + milliseconds(10)));
  CHECK(active.next_edge() == t0() + milliseconds(1000));
  CHECK_FALSE(active.stale(2, t0() + milliseconds(999)));
  CHECK(active.stale(2, t0() + milliseconds(1000)));  // the same version: the edge alone
  CHECK(active.update(2, list, t0() + milliseconds(1000)));
  CHECK(active.next_edge() == t0() + milliseconds(2500));
  CHECK_FALSE(active.update(2, list, t0() + milliseconds(1200)));
  CHECK(active.update(2, list, t0() + milliseconds(2500)));  // the window closes
  CHECK(active.next_edge() == kNever);
  CHECK_FALSE(active.stale(2, t0() + milliseconds(100000)));

  // A new revision of an active toxic is a change; another toxic's inactive one is not.
  auto plain = std::make_shared<ToxicConfig>(*toxic("latency", {attr("latency", 5), attr("jitter", 0)}));
  plain->name = "plain";
  CHECK(active.update(3, {plain}, t0() + milliseconds(3000)));
  auto revised = std::make_shared<ToxicConfig>(*plain);
  revised->revision = plain->revision + 1;
  CHECK(active.update(4, {revised}, t0() + milliseconds(3000)));
  CHECK_FALSE(active.update(5, {revised, scheduled}, t0() + milliseconds(3000)));
}

TEST_CASE("per-chunk dice: each chunk rolls, about the right share is affected") {
  auto c = std::make_shared<ToxicConfig>(*toxic("latency", {attr("latency", 100), attr("jitter", 0)}, 0.25));
  c->per_chunk_dice = true;
  Chain chain(Rng(5));
  Recorder out;
  chain.rebuild({c}, t0(), out);
  REQUIRE_FALSE(chain.empty());
  int delayed = 0;
  for (int i = 0; i < 4000; ++i) {
    chain.push({g_bytes, 1, t0()}, out);
    delayed += out.segments.back().release > t0() ? 1 : 0;
  }
  CHECK(delayed == Approx(1000).margin(120));
}

TEST_CASE("slow_open delays only the first chunk") {
  auto stage = make(toxic("slow_open", {attr("delay", 250)}));
  Recorder out;
  stage->on_data({g_bytes, 10, t0()}, out);
  stage->on_data({g_bytes, 10, t0() + milliseconds(1)}, out);
  CHECK(out.segments[0].release == t0() + milliseconds(250));
  CHECK(out.segments[1].release == t0() + milliseconds(1));  // the pipe keeps order on its own
}

TEST_CASE("limit_time passes data and closes at the limit counted from joining") {
  auto stage = make(toxic("limit_time", {attr("time", 400)}));
  Recorder out;
  stage->on_start(t0(), out);
  stage->on_data({g_bytes, 10, t0() + milliseconds(5)}, out);
  CHECK(out.bytes() == 10);
  REQUIRE(out.ends.size() == 1);
  CHECK(out.ends[0].at == t0() + milliseconds(400));
  stage->on_start(t0() + milliseconds(200), out);  // a rebuild keeps the original deadline
  CHECK(out.ends.back().at == t0() + milliseconds(400));
}

TEST_CASE("blackhole drops everything and never ends") {
  auto stage = make(toxic("blackhole", {}));
  Recorder out;
  stage->on_start(t0(), out);
  stage->on_data({g_bytes, 100, t0()}, out);
  CHECK(out.segments.empty());
  CHECK(out.ends.empty());
  CHECK(stage->bytes_dropped == 100);
}

TEST_CASE("corrupt flips one bit in each chosen byte, about probability of them") {
  std::vector<std::uint8_t> data(50000, 0);
  auto stage = make(toxic("corrupt", {fattr("probability", 0.1)}));
  Recorder out;
  stage->on_data({data.data(), data.size(), t0()}, out);
  int changed = 0;
  for (auto b : data) {
    if (b) {
      ++changed;
      CHECK(__builtin_popcount(b) == 1);
    }
  }
  CHECK(changed == Approx(5000).margin(300));
  std::vector<std::uint8_t> all(1000, 0);
  auto always = make(toxic("corrupt", {fattr("probability", 1.0)}));
  always->on_data({all.data(), all.size(), t0()}, out);
  CHECK(std::all_of(all.begin(), all.end(), [](std::uint8_t b) { return b != 0; }));
}

TEST_CASE("drop_connections: the first N new connections end at once, existing ones are spared") {
  auto c = toxic("drop_connections", {attr("first", 2), fattr("fraction", 1.0), text("mode", "reset")});
  int dropped = 0;
  for (int i = 0; i < 5; ++i) {
    auto stage = make(c, static_cast<std::uint64_t>(i));
    Recorder out;
    stage->on_start(t0(), out);
    if (!out.ends.empty()) {
      CHECK(out.ends[0].kind == EndKind::reset);
      ++dropped;
    }
  }
  CHECK(dropped == 2);
  auto spared = make(toxic("drop_connections", {attr("first", 0), fattr("fraction", 1.0), text("mode", "close")}), 1,
                     StageContext{false});
  Recorder out;
  spared->on_start(t0(), out);
  CHECK(out.ends.empty());
}

TEST_CASE("shared_bandwidth: connections share one budget") {
  auto c = toxic("shared_bandwidth", {attr("rate", 100)});  // 100,000 B/s for everyone
  auto a = make(c, 1), b = make(c, 2);
  Recorder oa, ob;
  a->on_data({g_bytes, 50000, t0()}, oa);
  b->on_data({g_bytes, 50000, t0()}, ob);
  // Together 100,000 bytes: the later one finishes at 1 s, not 0.5 s.
  CHECK(std::max(oa.segments.back().release, ob.segments.back().release) == t0() + milliseconds(1000));
}
