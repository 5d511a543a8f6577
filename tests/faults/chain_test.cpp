#include <catch2/catch.hpp>

#include "tests/faults/test_support.hpp"

using namespace faultline;
using namespace faultline::test;
using std::chrono::milliseconds;

TEST_CASE("an empty chain passes segments and ends through untouched") {
  Chain chain(Rng(1));
  Recorder out;
  CHECK_FALSE(chain.rebuild({}, t0(), out));
  CHECK(chain.empty());
  std::uint8_t bytes[4] = {1, 2, 3, 4};
  chain.push({bytes, 4, t0()}, out);
  chain.end(EndKind::half_close, t0(), out);
  REQUIRE(out.segments.size() == 1);
  CHECK(out.segments[0].data == bytes);
  CHECK(out.segments[0].release == t0());
  REQUIRE(out.ends.size() == 1);
  CHECK(out.ends[0].kind == EndKind::half_close);
}

TEST_CASE("toxicity 0 never applies, toxicity 1 always does") {
  Recorder out;
  Chain never(Rng(5));
  never.rebuild({toxic("latency", {attr("latency", 100), attr("jitter", 0)}, 0.0)}, t0(), out);
  CHECK(never.empty());
  Chain always(Rng(5));
  always.rebuild({toxic("latency", {attr("latency", 100), attr("jitter", 0)}, 1.0)}, t0(), out);
  CHECK_FALSE(always.empty());
  CHECK(always.active_names() == std::vector<std::string>{"latency_downstream"});
}

TEST_CASE("toxicity is drawn per connection: about the right share, and reproducible under a seed") {
  auto config = toxic("noop", {}, 0.3);
  auto count_applied = [&](std::uint64_t seed) {
    int applied = 0;
    std::vector<bool> pattern;
    for (std::uint64_t conn = 0; conn < 2000; ++conn) {
      Chain chain(Rng(seed).derive(conn));
      Recorder out;
      chain.rebuild({config}, t0(), out);
      applied += chain.empty() ? 0 : 1;
      pattern.push_back(!chain.empty());
    }
    return std::pair{applied, pattern};
  };
  auto [a, pattern_a] = count_applied(99);
  auto [b, pattern_b] = count_applied(99);
  auto [c, pattern_c] = count_applied(100);
  CHECK(a == Approx(600).margin(80));
  CHECK(pattern_a == pattern_b);
  CHECK(pattern_a != pattern_c);
}

TEST_CASE("two stages compose in order: latency then limit_data") {
  Chain chain(Rng(1));
  Recorder out;
  chain.rebuild({toxic("latency", {attr("latency", 50), attr("jitter", 0)}, 1, 1, "lat"),
                 toxic("limit_data", {attr("bytes", 6)}, 1, 1, "lim")},
                t0(), out);
  std::uint8_t bytes[10] = {};
  chain.push({bytes, 4, t0()}, out);
  chain.push({bytes + 4, 4, t0() + milliseconds(1)}, out);
  REQUIRE(out.segments.size() == 2);
  CHECK(out.segments[0].release == t0() + milliseconds(50));
  CHECK(out.segments[1].size == 2);  // truncated at the limit
  CHECK(out.segments[1].release == t0() + milliseconds(51));
  REQUIRE(out.ends.size() == 1);
  CHECK(out.ends[0].kind == EndKind::close);
}

TEST_CASE("a rebuild keeps unchanged stages' state and re-declares their ends") {
  Chain chain(Rng(1));
  Recorder out;
  auto limit = toxic("limit_data", {attr("bytes", 5)}, 1, 1, "lim");
  chain.rebuild({limit}, t0(), out);
  std::uint8_t bytes[8] = {};
  chain.push({bytes, 3, t0()}, out);
  // An unrelated toxic joins: limit_data keeps its count of 3.
  Recorder out2;
  chain.rebuild({limit, toxic("noop", {}, 1, 2, "n")}, t0(), out2);
  chain.push({bytes, 3, t0()}, out2);
  REQUIRE(out2.segments.size() == 1);
  CHECK(out2.segments[0].size == 2);
  REQUIRE(out2.ends.size() == 1);
  // Rebuilt again after the limit tripped: the close is declared again.
  Recorder out3;
  chain.rebuild({limit}, t0(), out3);
  REQUIRE(out3.ends.size() == 1);
  CHECK(out3.ends[0].kind == EndKind::close);
}

TEST_CASE("removing a stage that dropped data reports the stream as broken") {
  Chain chain(Rng(1));
  Recorder out;
  chain.rebuild({toxic("timeout", {attr("timeout", 0)})}, t0(), out);
  std::uint8_t bytes[8] = {};
  chain.push({bytes, 8, t0()}, out);
  CHECK(out.segments.empty());
  CHECK(chain.bytes_dropped() == 8);
  CHECK(chain.rebuild({}, t0(), out));
  // Removing a stage that dropped nothing is harmless.
  Chain clean(Rng(1));
  clean.rebuild({toxic("latency", {attr("latency", 1), attr("jitter", 0)})}, t0(), out);
  CHECK_FALSE(clean.rebuild({}, t0(), out));
}

TEST_CASE("an updated toxic (new revision) gets a fresh stage, the same revision keeps it") {
  Chain chain(Rng(1));
  Recorder out;
  chain.rebuild({toxic("limit_data", {attr("bytes", 4)}, 1, 1, "lim")}, t0(), out);
  std::uint8_t bytes[8] = {};
  chain.push({bytes, 4, t0()}, out);
  REQUIRE(out.ends.size() == 1);
  Recorder out2;
  chain.rebuild({toxic("limit_data", {attr("bytes", 4)}, 1, 2, "lim")}, t0(), out2);
  CHECK(out2.ends.empty());  // fresh count
  chain.push({bytes, 4, t0()}, out2);
  CHECK(out2.bytes() == 4);
}

TEST_CASE("an end declared at start travels through the stages after it") {
  // timeout (declares a close at start) followed by slow_close (delays ends).
  Chain chain(Rng(1));
  Recorder out;
  chain.rebuild({toxic("timeout", {attr("timeout", 100)}, 1, 1, "t"), toxic("slow_close", {attr("delay", 50)}, 1, 1, "s")},
                t0(), out);
  REQUIRE(out.ends.size() == 1);
  CHECK(out.ends[0].at == t0() + milliseconds(150));
}

TEST_CASE("a stalled segment stays stalled through a second bandwidth stage") {
  Chain chain(Rng(1));
  Recorder out;
  chain.rebuild({toxic("bandwidth", {attr("rate", 0)}, 1, 1, "a"), toxic("bandwidth", {attr("rate", 100)}, 1, 1, "b")},
                t0(), out);
  std::uint8_t bytes[10] = {};
  chain.push({bytes, 10, t0()}, out);
  REQUIRE(out.segments.size() == 1);
  CHECK(out.segments[0].release == kNever);
}
