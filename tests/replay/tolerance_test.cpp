#include <catch2/catch.hpp>

#include <chrono>

#include "replay/drill.hpp"
#include "support.hpp"
#include "tests/timing.hpp"

using namespace faultline::drill;

namespace {

// The tolerance of a one-probe hypothesis of the given provider, parsed like a real drill.
std::optional<Tolerance> tolerance(const std::string& provider, const std::string& tol) {
  Drill d;
  const std::string text = R"({"title": "t", "steady-state-hypothesis": {"probes": [{"name": "p", "provider": )" + provider +
                           (tol.empty() ? "" : R"(, "tolerance": )" + tol) + R"(}]}, "method": []})";
  const auto error = drill_test::parse(text, d);
  INFO(error);
  REQUIRE(error.empty());
  return d.hypothesis.at(0).tolerance;
}

const std::string kHttp = R"({"type": "http", "url": "http://h:1/"})";
const std::string kResp = R"({"type": "resp", "address": "h:1", "command": ["PING"]})";
const std::string kTcp = R"({"type": "tcp", "address": "h:1"})";
const std::string kMetric = R"({"type": "metric", "name": "m"})";
const std::string kCommand = R"({"type": "command", "path": "true"})";

Observation http(int status, std::string body = "", double ms = 1) {
  Observation o;
  o.kind = ProbeKind::http;
  o.answered = true;
  o.status = status;
  o.body = std::move(body);
  o.latency_ms = ms;
  o.headers = {{"Content-Type", "application/json"}};
  return o;
}

Observation resp(char type, std::string text) {
  Observation o;
  o.kind = ProbeKind::resp;
  o.answered = true;
  o.reply.type = type;
  o.reply.text = std::move(text);
  return o;
}

}  // namespace

TEST_CASE("scalar and list tolerances compare with the probe's primary value") {
  const auto t200 = tolerance(kHttp, "200");
  CHECK(check(t200, http(200)).ok);
  const auto r = check(t200, http(503));
  CHECK_FALSE(r.ok);
  CHECK(r.why == "status 503, expected 200");
  const auto list = tolerance(kHttp, "[200, 204]");
  CHECK(check(list, http(204)).ok);
  CHECK(check(list, http(201)).why == "status 201, expected one of [200, 204]");

  const auto pong = tolerance(kResp, R"("+PONG")");
  CHECK(check(pong, resp('+', "PONG")).ok);
  CHECK(check(pong, resp('-', "LOADING x")).why == "reply \"-LOADING x\", expected \"+PONG\"");
  CHECK(check(tolerance(kResp, R"(":1")"), resp(':', "1")).ok);
  CHECK(check(tolerance(kResp, R"("hello")"), resp('$', "hello")).ok);  // a bulk string is its value
  RespReply nil;
  nil.type = '$';
  nil.null = true;
  Observation o = resp('$', "");
  o.reply = nil;
  CHECK(check(tolerance(kResp, "null"), o).ok);

  Observation refused;
  refused.kind = ProbeKind::tcp;
  refused.answered = true;
  refused.error = "connection refused";
  CHECK(check(tolerance(kTcp, "false"), refused).ok);  // "the service is down" is checkable
  CHECK_FALSE(check(tolerance(kTcp, "true"), refused).ok);
}

TEST_CASE("range, regex, jsonpath and latency tolerances, with targets") {
  CHECK(check(tolerance(kHttp, R"({"type": "range", "range": [200, 299]})"), http(204)).ok);
  CHECK(check(tolerance(kHttp, R"({"type": "range", "range": [200, 299]})"), http(302)).why == "status 302, expected in [200, 299]");
  Observation m;
  m.kind = ProbeKind::metric;
  m.answered = true;
  m.value = 12;
  CHECK(check(tolerance(kMetric, R"({"type": "range", "min": 10})"), m).ok);
  CHECK(check(tolerance(kMetric, R"({"type": "range", "max": 10})"), m).why == "value 12, expected in [*, 10]");
  CHECK(check(tolerance(kResp, R"({"type": "range", "range": [0, 5]})"), resp(':', "3")).ok);  // ":3" counts as 3

  const auto re = tolerance(kHttp, R"({"type": "regex", "pattern": "\"status\":\\s*\"ok\""})");
  CHECK(check(re, http(200, R"({"status": "ok"})")).ok);
  CHECK_FALSE(check(re, http(200, R"({"status": "down"})")).ok);
  const auto header = tolerance(kHttp, R"({"type": "regex", "pattern": "json", "target": "headers.content-type"})");
  CHECK(check(header, http(200)).ok);

  const auto jp = tolerance(kHttp, R"({"type": "jsonpath", "path": "$.items[*].state", "expect": "ready"})");
  CHECK(check(jp, http(200, R"({"items": [{"state": "busy"}, {"state": "ready"}]})")).ok);
  CHECK(check(jp, http(200, R"({"items": [{"state": "busy"}]})")).why == "$.items[*].state = \"busy\", expected \"ready\"");
  CHECK(check(jp, http(200, R"({"other": 1})")).why == "$.items[*].state matches nothing");
  CHECK(check(jp, http(200, "not json")).why == "the body is not JSON: \"not json\"");
  const auto exists = tolerance(kHttp, R"({"type": "jsonpath", "path": "$.ok"})");
  CHECK(check(exists, http(200, R"({"ok": false})")).ok);

  const auto lat = tolerance(kHttp, R"([{"type": "range", "range": [200, 200]}, {"type": "latency", "max_ms": 50}])");
  CHECK(check(lat, http(200, "", 10)).ok);
  CHECK(check(lat, http(200, "", 80)).why == "latency 80 ms, expected at most 50 ms");
  CHECK(check(lat, http(500, "", 10)).why == "status 500, expected in [200, 200]");

  Observation cmd;
  cmd.kind = ProbeKind::command;
  cmd.answered = true;
  cmd.status = 0;
  cmd.body = "version 7.0.15\n";
  CHECK(check(tolerance(kCommand, R"({"type": "regex", "pattern": "^version 7\\.", "target": "stdout"})"), cmd).ok);
  CHECK(check(tolerance(kCommand, "0"), cmd).ok);
}

// std::regex recursed once per character, so only the first 64 KiB were searched (and a
// long match there could still exhaust the stack): a large body is now searched whole.
TEST_CASE("a regex tolerance over a 1 MiB body searches all of it, quickly") {
  const auto re = tolerance(kHttp, R"({"type": "regex", "pattern": "\\[a+\\]"})");
  const std::string body = "[" + std::string(1024 * 1024, 'a') + "]";
  const auto start = std::chrono::steady_clock::now();
  CHECK(check(re, http(200, body)).ok);
  CHECK_FALSE(check(re, http(200, body.substr(0, body.size() - 1))).ok);
  CHECK(std::chrono::steady_clock::now() - start < faultline::test::quick(std::chrono::seconds(2)));
}

TEST_CASE("a regex RE2 does not support is refused with the pattern's JSON path") {
  for (const std::string pattern : {R"(ok(?=\\s))", R"((a)\\1)", R"((unclosed)"}) {
    Drill d;
    const auto error = drill_test::parse(
        R"({"title": "t", "steady-state-hypothesis": {"probes": [{"name": "p", "provider": {"type": "http", "url": "http://h:1/"},
            "tolerance": {"type": "regex", "pattern": ")" + pattern + R"("}}]}, "method": []})",
        d);
    INFO(pattern);
    CHECK_THAT(error, Catch::Matchers::StartsWith("$.steady-state-hypothesis.probes[0].tolerance.pattern: not a valid regular expression"));
  }
}

TEST_CASE("default tolerances and unanswered probes") {
  CHECK(check(std::nullopt, http(302)).ok);
  CHECK(check(std::nullopt, http(404)).why == "HTTP 404");
  CHECK(check(std::nullopt, resp('+', "OK")).ok);
  CHECK(check(std::nullopt, resp('-', "ERR x")).why == "error reply \"-ERR x\"");
  Observation none;
  none.kind = ProbeKind::http;
  none.error = "connection refused";
  CHECK(check(tolerance(kHttp, "200"), none).why == "connection refused");
  Observation m;
  m.kind = ProbeKind::metric;
  m.answered = true;
  CHECK(check(std::nullopt, m).why == "no such series");
}

TEST_CASE("a target a probe kind does not have is refused when the drill is parsed") {
  Drill d;
  const auto error = drill_test::parse(
      R"({"title": "t", "steady-state-hypothesis": {"probes": [{"name": "p", "provider": {"type": "resp", "address": "h:1", "command": ["PING"]},
          "tolerance": {"type": "regex", "pattern": "x", "target": "body"}}]}, "method": []})",
      d);
  CHECK(error == "$.steady-state-hypothesis.probes[0].tolerance.target: a resp result has no field \"body\" (it has reply, type, latency_ms)");
}
