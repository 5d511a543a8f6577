#include <catch2/catch.hpp>

#include "replay/json_path.hpp"
#include "replay/prometheus.hpp"
#include "replay/stats.hpp"
#include "replay/wire.hpp"

using namespace faultline::drill;

TEST_CASE("http URLs split into host, port, target and Host header") {
  auto u = parse_http_url("http://127.0.0.1:8474/proxies/a?x=1");
  REQUIRE(u);
  CHECK(u->host == "127.0.0.1");
  CHECK(u->port == "8474");
  CHECK(u->target == "/proxies/a?x=1");
  CHECK(u->host_header == "127.0.0.1:8474");
  u = parse_http_url("http://[::1]:80");
  REQUIRE(u);
  CHECK(u->host == "::1");
  CHECK(u->target == "/");
  CHECK(u->host_header == "[::1]:80");
  CHECK(parse_http_url("http://example.com")->port == "80");
  CHECK_FALSE(parse_http_url("https://x"));
  CHECK_FALSE(parse_http_url("http://:80/"));
  CHECK_FALSE(parse_http_url("http://u:p@h/"));
  CHECK_FALSE(parse_http_url("http://h:x/"));
  CHECK(escape_segment("kafka:9092") == "kafka:9092");
  CHECK(escape_segment("a b/c") == "a%20b%2Fc");
}

TEST_CASE("RESP: commands encode as arrays, replies decode to what tolerances compare") {
  CHECK(encode_command({"SET", "k", ""}) == "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
  CHECK(parse_reply("+PONG\r\n")->render() == Scalar::of(std::string("+PONG")));
  CHECK(parse_reply(":42\r\n")->render() == Scalar::of(std::string(":42")));
  CHECK(parse_reply("$5\r\nhel\r\n\r\n")->render() == Scalar::of(std::string("hel\r\n")));
  CHECK(parse_reply("$-1\r\n")->render() == Scalar::null());
  CHECK(parse_reply("-LOADING x\r\n")->is_error());
  CHECK(parse_reply("*2\r\n$1\r\na\r\n:1\r\n")->render() == Scalar::of(std::string(R"(["a",":1"])")));
  CHECK(parse_reply("%1\r\n+k\r\n_\r\n")->render() == Scalar::of(std::string(R"(["+k",null])")));
  CHECK_FALSE(parse_reply("+PONG\r\nextra"));
  CHECK_FALSE(parse_reply("$5\r\nab\r\n"));
  CHECK(expand_index("SET drill:{i} v{i}", 7) == "SET drill:7 v7");
}

TEST_CASE("Prometheus text: labels, escapes, filtering by name, sums") {
  const std::string text =
      "# HELP x y\n# TYPE faultline_proxy_requests_total counter\n"
      "faultline_proxy_requests_total{proxy=\"a\"} 10\n"
      "faultline_proxy_requests_total{proxy=\"b\"} 5\n"
      "toxiproxy_proxy_received_bytes_total{direction=\"upstream\",listener=\"127.0.0.1:1\",proxy=\"a\",upstream=\"x\\\"y\"} 100\n"
      "toxiproxy_proxy_received_bytes_total{direction=\"downstream\",listener=\"127.0.0.1:1\",proxy=\"a\",upstream=\"x\"} 7\n"
      "process_resident_memory_bytes 1e+06\n";
  const auto all = parse_prometheus(text);
  REQUIRE(all.size() == 5);
  CHECK(all[2].labels.at("upstream") == "x\"y");
  CHECK(all[4].value == 1e6);
  const auto kept = parse_prometheus(text, {"faultline_proxy_requests_total"});
  CHECK(kept.size() == 2);
  CHECK(sum_matching(all, "faultline_proxy_requests_total", {}) == 15);
  CHECK(sum_matching(all, "faultline_proxy_requests_total", {{"proxy", "b"}}) == 5);
  CHECK(sum_matching(all, "toxiproxy_proxy_received_bytes_total", {{"proxy", "a"}, {"direction", "upstream"}}) == 100);
  CHECK_FALSE(sum_matching(all, "faultline_proxy_requests_total", {{"proxy", "c"}}));
}

TEST_CASE("nearest-rank percentiles report latencies that were observed") {
  std::vector<double> ms;
  for (int i = 1; i <= 100; ++i) ms.push_back(i);
  const auto s = latency_stats(ms);
  CHECK(s.count == 100);
  CHECK(s.avg == 50.5);
  CHECK(s.p50 == 50);
  CHECK(s.p95 == 95);
  CHECK(s.p99 == 99);
  CHECK(s.max == 100);
  CHECK(latency_stats({7}).p99 == 7);
  CHECK(latency_stats({}).count == 0);
  CHECK(percentile_sorted({1, 2, 3}, 50) == 2);
}

TEST_CASE("JSON paths: keys, indexes, wildcards, and unsupported syntax is an error") {
  rapidjson::Document doc;
  doc.Parse(R"({"a": {"b c": [1, {"d": 2}, 3]}, "list": [{"x": 1}, {"x": 2}]})");
  std::string error;
  auto p = JsonPath::compile("$.a['b c'][1].d", error);
  REQUIRE(p);
  REQUIRE(p->select(doc).size() == 1);
  CHECK(p->select(doc)[0]->GetInt() == 2);
  CHECK(JsonPath::compile("$.list[*].x", error)->select(doc).size() == 2);
  CHECK(JsonPath::compile("$.a['b c'][-1]", error)->select(doc)[0]->GetInt() == 3);
  CHECK(JsonPath::compile("$", error)->select(doc).size() == 1);
  CHECK(JsonPath::compile("$.nope.x", error)->select(doc).empty());
  CHECK_FALSE(JsonPath::compile("a.b", error));
  CHECK_FALSE(JsonPath::compile("$.list[?(@.x)]", error));
  CHECK(error.find("filters") != std::string::npos);
}
