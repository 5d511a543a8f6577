#include <catch2/catch.hpp>

#include <set>

#include "faults/rng.hpp"

using faultline::Rng;

TEST_CASE("the same seed gives the same stream, another seed another") {
  Rng a(42), b(42), c(43);
  std::vector<std::uint64_t> xa, xb, xc;
  for (int i = 0; i < 100; ++i) {
    xa.push_back(a.next());
    xb.push_back(b.next());
    xc.push_back(c.next());
  }
  CHECK(xa == xb);
  CHECK(xa != xc);
}

TEST_CASE("derived streams are reproducible and independent of each other") {
  Rng root(7);
  CHECK(root.derive("latency_downstream").next() == Rng(7).derive("latency_downstream").next());
  CHECK(root.derive("a").next() != root.derive("b").next());
  CHECK(root.derive(1).next() != root.derive(2).next());
}

TEST_CASE("uniform stays within 0..1 with mean near 0.5, below() stays under its bound") {
  Rng r(1);
  double sum = 0;
  constexpr int n = 100000;
  for (int i = 0; i < n; ++i) {
    const double u = r.uniform();
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    sum += u;
  }
  CHECK(sum / n == Approx(0.5).margin(0.01));
  std::set<std::uint64_t> seen;
  for (int i = 0; i < 10000; ++i) {
    const auto v = r.below(10);
    REQUIRE(v < 10);
    seen.insert(v);
  }
  CHECK(seen.size() == 10);
  CHECK(r.below(0) == 0);
}
