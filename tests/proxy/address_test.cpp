#include <catch2/catch.hpp>

#include "proxy/address.hpp"

using namespace faultline;

TEST_CASE("host:port forms Toxiproxy users write") {
  auto a = split_host_port("127.0.0.1:8080");
  REQUIRE(a);
  CHECK(a->host == "127.0.0.1");
  CHECK(a->port == "8080");
  auto b = split_host_port("[::1]:80");
  REQUIRE(b);
  CHECK(b->host == "::1");
  auto c = split_host_port(":0");
  REQUIRE(c);
  CHECK(c->host.empty());
  CHECK(split_host_port("localhost:6379")->host == "localhost");
  CHECK_FALSE(split_host_port("nohost"));
  CHECK_FALSE(split_host_port("host:"));
  CHECK_FALSE(split_host_port("::1:80"));
  CHECK_FALSE(split_host_port(""));
}

TEST_CASE("addresses print as Go prints them") {
  CHECK(join_host_port("127.0.0.1", 80) == "127.0.0.1:80");
  CHECK(join_host_port("::", 20000) == "[::]:20000");
}

TEST_CASE("loopback names") {
  CHECK(is_loopback_name("localhost"));
  CHECK(is_loopback_name("127.0.0.1"));
  CHECK(is_loopback_name("127.8.9.1"));
  CHECK(is_loopback_name("::1"));
  CHECK_FALSE(is_loopback_name("evil.example"));
  CHECK_FALSE(is_loopback_name("10.0.0.1"));
  CHECK_FALSE(is_loopback_name("localhost.evil.example"));
  CHECK_FALSE(is_loopback_name("127.0.0.1.evil.example"));  // DNS rebinding names are not loopback
  CHECK_FALSE(is_loopback_name("127.0.0"));
  CHECK_FALSE(is_loopback_name("127.0.0.256"));
  CHECK(is_loopback_name("LOCALHOST"));
  CHECK(is_loopback_name("localhost."));
}
