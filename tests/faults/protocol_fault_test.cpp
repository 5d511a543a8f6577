// Protocol fault types: `match` parsing, JSON merge patch, and the attribute compile step.
#include <catch2/catch.hpp>

#include <chrono>

#include <rapidjson/document.h>

#include "protocols/http.hpp"

#include "tests/faults/engine_support.hpp"
#include "tests/timing.hpp"

using namespace faultline;
using namespace faultline::test;
using Catch::Matchers::Contains;

namespace {

std::string match_error(const std::string& json) {
  std::string error;
  auto m = parse_match(json, error);
  CHECK_FALSE(m.has_value());
  return error;
}

MessageMatch match_ok(const std::string& json) {
  std::string error;
  auto m = parse_match(json, error);
  INFO("error: " << error);
  REQUIRE(m.has_value());
  return *m;
}

// Same JSON value (object member order aside).
bool same_json(const std::string& a, const std::string& b) {
  rapidjson::Document da, db;
  da.Parse(a.data(), a.size());
  db.Parse(b.data(), b.size());
  if (da.HasParseError() || db.HasParseError()) return false;
  return da == db;
}

}  // namespace

// ---- parse_match ----------------------------------------------------------------------

TEST_CASE("parse_match reads every field") {
  const MessageMatch m = match_ok(
      R"({"method":"POST","path":"/v1/","path_regex":"/v1/.*","header":{"X-Tenant":"a","Authorization":"*"},)"
      R"("body":{"model":"glm-4.6","stream":true,"messages.0":{"role":"user"}},"rpc_method":"tools/call","tool":"listmodels",)"
      R"("session":"s1","command":"get","key":"thread:*"})");
  CHECK(m.method == "POST");
  CHECK(m.path == "/v1/");
  CHECK(m.path_regex.has_value());
  CHECK(m.path_regex_text == "/v1/.*");
  REQUIRE(m.headers.size() == 2);
  CHECK(m.headers[0] == std::pair<std::string, std::string>{"x-tenant", "a"});  // names lower-cased
  CHECK(m.headers[1] == std::pair<std::string, std::string>{"authorization", "*"});
  REQUIRE(m.body.size() == 3);
  CHECK(m.body[0] == std::pair<std::string, std::string>{"model", "\"glm-4.6\""});  // compact JSON values
  CHECK(m.body[1] == std::pair<std::string, std::string>{"stream", "true"});
  CHECK(m.body[2] == std::pair<std::string, std::string>{"messages.0", R"({"role":"user"})"});
  CHECK(m.rpc_method == "tools/call");
  CHECK(m.tool == "listmodels");
  CHECK(m.session == "s1");
  CHECK(m.command == "GET");  // upper-cased
  CHECK(m.key == "thread:*");
  CHECK(m.needs_body());
}

TEST_CASE("parse_match: empty, null and aliases") {
  CHECK_FALSE(match_ok("{}").needs_body());
  CHECK(match_ok("{}").method.empty());
  CHECK(match_ok("null").path.empty());
  CHECK(match_ok(R"({"headers":{"A":"1"}})").headers.size() == 1);
  CHECK(match_ok(R"({"json":{"a":1}})").body.size() == 1);
  CHECK(match_ok(R"({"rpc_method":"initialize"})").needs_body());
  CHECK(match_ok(R"({"tool":"x"})").needs_body());
  CHECK_FALSE(match_ok(R"({"session":"x","header":{"a":"b"}})").needs_body());
}

TEST_CASE("parse_match errors name the field") {
  CHECK_THAT(match_error(R"({"nope":1})"), Contains("match.nope") && Contains("unknown"));
  CHECK_THAT(match_error(R"({"method":5})"), Contains("match.method must be a string"));
  CHECK_THAT(match_error(R"({"path":["/a"]})"), Contains("match.path must be a string"));
  CHECK_THAT(match_error(R"({"rpc_method":null})"), Contains("match.rpc_method must be a string"));
  CHECK_THAT(match_error(R"({"tool":true})"), Contains("match.tool must be a string"));
  CHECK_THAT(match_error(R"({"session":1})"), Contains("match.session must be a string"));
  CHECK_THAT(match_error(R"({"command":{}})"), Contains("match.command must be a string"));
  CHECK_THAT(match_error(R"({"key":2})"), Contains("match.key must be a string"));
  CHECK_THAT(match_error(R"({"header":"x-a"})"), Contains("match.header must be an object"));
  CHECK_THAT(match_error(R"({"header":{"X-A":1}})"), Contains("match.header.x-a must be a string"));
  CHECK_THAT(match_error(R"({"body":[1]})"), Contains("match.body must be an object"));
  CHECK_THAT(match_error(R"({"path_regex":"(unclosed"})"), Contains("match.path_regex is not a valid regular expression"));
  CHECK_THAT(match_error(R"({"path_regex":"[z-a]"})"), Contains("match.path_regex"));
  CHECK_THAT(match_error(R"({"path_regex":3})"), Contains("match.path_regex must be a string"));
  CHECK_THAT(match_error(R"(["method"])"), Contains("attribute match must be an object"));
  CHECK_THAT(match_error(R"("GET")"), Contains("attribute match must be an object"));
  CHECK_THAT(match_error("{oops"), Contains("attribute match is not JSON"));
}

TEST_CASE("parse_match: a pattern RE2 does not support is refused, naming match.path_regex") {
  CHECK_THAT(match_error(R"({"path_regex":"/v1/(?!admin).*"})"), Contains("attribute match.path_regex") && Contains("(?!"));
  CHECK_THAT(match_error(R"({"path_regex":"/(a)/\\1"})"), Contains("attribute match.path_regex") && Contains("\\1"));
}

// std::regex recursed once per character: a long path could overflow a worker's stack.
TEST_CASE("path_regex over a 1 MiB path neither crashes nor takes long, and still matches the whole path") {
  const MessageMatch m = match_ok(R"({"path_regex":"/v1/[a-z]+"})");
  http::Head head;
  head.method = "GET";
  head.target = "/v1/" + std::string(1024 * 1024, 'a') + "?q=1";
  const auto start = std::chrono::steady_clock::now();
  CHECK(m.matches_head(head));
  head.target = "/v1/" + std::string(1024 * 1024, 'a') + "/x";
  CHECK_FALSE(m.matches_head(head));  // a full match, not a search
  CHECK(std::chrono::steady_clock::now() - start < quick(std::chrono::seconds(2)));
}

// ---- merge_patch (RFC 7396) -----------------------------------------------------------

TEST_CASE("merge_patch follows RFC 7396's example") {
  const std::string target =
      R"({"title":"Goodbye!","author":{"givenName":"John","familyName":"Doe"},"tags":["example","sample"],)"
      R"("content":"This will be unchanged"})";
  const std::string patch =
      R"({"title":"Hello!","phoneNumber":"+01-234-567-8901","author":{"familyName":null},"tags":["example"]})";
  auto out = merge_patch(target, patch);
  REQUIRE(out.has_value());
  CHECK(*out ==
        R"({"title":"Hello!","author":{"givenName":"John"},"tags":["example"],"content":"This will be unchanged",)"
        R"("phoneNumber":"+01-234-567-8901"})");
}

TEST_CASE("merge_patch follows RFC 7396 appendix A") {
  struct Case {
    const char* target;
    const char* patch;
    const char* result;
  };
  const Case cases[] = {
      {R"({"a":"b"})", R"({"a":"c"})", R"({"a":"c"})"},
      {R"({"a":"b"})", R"({"b":"c"})", R"({"a":"b","b":"c"})"},
      {R"({"a":"b"})", R"({"a":null})", R"({})"},
      {R"({"a":"b","b":"c"})", R"({"a":null})", R"({"b":"c"})"},
      {R"({"a":["b"]})", R"({"a":"c"})", R"({"a":"c"})"},
      {R"({"a":"c"})", R"({"a":["b"]})", R"({"a":["b"]})"},
      {R"({"a":{"b":"c"}})", R"({"a":{"b":"d","c":null}})", R"({"a":{"b":"d"}})"},
      {R"({"a":[{"b":"c"}]})", R"({"a":[1]})", R"({"a":[1]})"},
      {R"(["a","b"])", R"(["c","d"])", R"(["c","d"])"},
      {R"({"a":"b"})", R"(["c"])", R"(["c"])"},
      {R"({"a":"foo"})", "null", "null"},
      {R"({"a":"foo"})", R"("bar")", R"("bar")"},
      {R"({"e":null})", R"({"a":1})", R"({"e":null,"a":1})"},
      {R"([1,2])", R"({"a":"b","c":null})", R"({"a":"b"})"},
      {R"({})", R"({"a":{"bb":{"ccc":null}}})", R"({"a":{"bb":{}}})"},
  };
  for (const Case& c : cases) {
    INFO(c.target << " + " << c.patch);
    auto out = merge_patch(c.target, c.patch);
    REQUIRE(out.has_value());
    CHECK(same_json(*out, c.result));
    CHECK(*out == c.result);  // these results have one spelling as compact JSON
  }
}

TEST_CASE("merge_patch: null removes wherever it is, a non-object patch replaces") {
  auto out = merge_patch(R"({"a":{"b":{"c":1,"d":2},"e":3},"f":4})", R"({"a":{"b":{"c":null},"e":null},"f":null,"g":[null]})");
  REQUIRE(out.has_value());
  CHECK(same_json(*out, R"({"a":{"b":{"d":2}},"g":[null]})"));  // a null inside an array is a value
  CHECK(merge_patch(R"({"a":1})", "42") == std::optional<std::string>("42"));
  CHECK(merge_patch(R"({"a":1})", "{}") == std::optional<std::string>(R"({"a":1})"));
  CHECK(merge_patch(R"("text")", R"({"a":1})") == std::optional<std::string>(R"({"a":1})"));
  CHECK_FALSE(merge_patch("not json", R"({"a":1})").has_value());
  CHECK_FALSE(merge_patch(R"({"a":1})", "{bad").has_value());
}

TEST_CASE("reason_phrase knows the usual statuses") {
  CHECK(reason_phrase(429) == "Too Many Requests");
  CHECK(reason_phrase(503) == "Service Unavailable");
  CHECK(reason_phrase(200) == "OK");
  CHECK(reason_phrase(599).empty());
}

// ---- compile ------------------------------------------------------------------------

TEST_CASE("every protocol fault compiles with its defaults") {
  for (const char* type : {"http_abort", "http_replace", "http_patch", "http_delay", "http_reset", "http_header_faults",
                           "sse_cut", "sse_stall", "sse_delay", "sse_corrupt", "resp_error", "resp_delay", "resp_drop",
                           "jsonrpc_error", "jsonrpc_delay", "jsonrpc_drop", "mcp_session_kill"}) {
    INFO(type);
    CHECK(compile_error(type, {}).empty());
    CHECK(ToxicRegistry::instance().find(type)->layer != Layer::bytes);
  }
}

TEST_CASE("compiled defaults follow the documentation") {
  auto abort = fault("http_abort");
  CHECK(abort->compiled->status == 503);
  CHECK(abort->compiled->headers.empty());
  CHECK_FALSE(abort->compiled->body.has_value());
  auto http_delay = fault("http_delay");
  CHECK(http_delay->compiled->delay == std::chrono::milliseconds(1000));
  CHECK_FALSE(http_delay->compiled->before_response);
  auto reset = fault("http_reset");
  CHECK(reset->compiled->end == EndKind::reset);
  CHECK(reset->compiled->after_bytes == 0);
  auto cut = fault("sse_cut");
  CHECK(cut->compiled->end == EndKind::close);
  CHECK(cut->compiled->after_events == 1);
  CHECK(fault("sse_delay")->compiled->delay == std::chrono::milliseconds(500));
  CHECK(fault("resp_delay")->compiled->delay == std::chrono::milliseconds(100));
  auto resp_error = fault("resp_error");
  CHECK(resp_error->compiled->error_line == "ERR Fault injected by faultline");
  CHECK_FALSE(resp_error->compiled->after_forward);
  auto rpc = fault("jsonrpc_error");
  CHECK(rpc->compiled->code == -32603);
  CHECK(rpc->compiled->message == "Fault injected by faultline");
  CHECK_FALSE(rpc->compiled->as_result);
}

TEST_CASE("compile reads the attributes") {
  auto abort = fault("http_abort", {{"status", iv(429)}, {"headers", jv(R"({"Retry-After":2,"X-A":"b"})")},
                                    {"body", jv(R"({"error" : {"code" : 1}})")}, {"match", jv(R"({"method":"POST"})")}});
  const ProtocolFault& f = *abort->compiled;
  CHECK(f.type == "http_abort");
  CHECK(f.status == 429);
  REQUIRE(f.headers.size() == 2);
  CHECK(f.headers[0].name == "Retry-After");
  CHECK(f.headers[0].value == "2");  // numbers become their text
  CHECK(f.body == std::optional<std::string>(R"({"error":{"code":1}})"));  // sent as compact JSON
  CHECK(f.match.method == "POST");
  CHECK(fault("http_abort", {{"body", jv(R"("plain text")")}})->compiled->body == std::optional<std::string>("plain text"));
  CHECK(fault("http_delay", {{"phase", tv("response")}, {"jitter", iv(10)}})->compiled->before_response);
  CHECK(fault("http_delay", {{"jitter", iv(10)}})->compiled->jitter == std::chrono::milliseconds(10));
  CHECK(fault("http_reset", {{"mode", tv("close")}, {"after_bytes", iv(9)}})->compiled->end == EndKind::close);
  CHECK(fault("sse_cut", {{"mode", tv("reset")}})->compiled->end == EndKind::reset);
  CHECK(fault("sse_stall", {{"duration", iv(250)}})->compiled->stall == std::chrono::milliseconds(250));
  CHECK(fault("resp_error", {{"error", tv("-READONLY replica")}})->compiled->error_line == "READONLY replica");
  CHECK(fault("resp_error", {{"when", tv("after")}})->compiled->after_forward);
  CHECK(fault("resp_drop", {{"when", tv("after")}})->compiled->after_forward);
  CHECK(fault("jsonrpc_error", {{"as_result", jv("true")}})->compiled->as_result);
  CHECK(fault("http_replace", {{"status", iv(0)}})->compiled->status == 0);
  CHECK(fault("http_patch", {{"patch", jv(R"({"a":null})")}})->compiled->patch == R"({"a":null})");
}

TEST_CASE("compile errors name the attribute") {
  CHECK_THAT(compile_error("http_abort", {{"status", iv(99)}}), Contains("status") && Contains("between 200 and 599"));
  CHECK_THAT(compile_error("http_abort", {{"status", iv(100)}}), Contains("between 200 and 599"));
  CHECK_THAT(compile_error("http_replace", {{"status", iv(101)}}), Contains("between 200 and 599"));
  CHECK_THAT(compile_error("http_abort", {{"status", iv(600)}}), Contains("status"));
  CHECK_THAT(compile_error("http_abort", {{"status", iv(0)}}), Contains("status"));
  CHECK_THAT(compile_error("http_replace", {{"status", iv(99)}}), Contains("status"));
  CHECK_THAT(compile_error("http_abort", {{"headers", jv(R"({"X-A":"a\r\nInjected: 1"})")}}),
             Contains("headers.X-A") && Contains("line breaks"));
  CHECK_THAT(compile_error("http_abort", {{"headers", jv(R"({"X-A":"a\nb"})")}}), Contains("line breaks"));
  CHECK_THAT(compile_error("http_replace", {{"headers", jv(R"({"Bad Name":"a"})")}}), Contains("headers"));
  CHECK_THAT(compile_error("http_replace", {{"headers", jv(R"({"X\r\nY":"a"})")}}), Contains("headers"));
  CHECK_THAT(compile_error("http_abort", {{"headers", jv(R"(["X-A"])")}}), Contains("headers"));
  CHECK_THAT(compile_error("http_abort", {{"headers", jv(R"({"X-A":{"b":1}})")}}), Contains("headers.X-A"));
  CHECK_THAT(compile_error("http_patch", {{"headers", jv(R"({"X-A":"a\r\nb"})")}}), Contains("line breaks"));
  CHECK_THAT(compile_error("resp_error", {{"error", tv("ERR two\nlines")}}), Contains("attribute error"));
  CHECK_THAT(compile_error("resp_error", {{"error", tv("ERR cr\r")}}), Contains("attribute error"));
  CHECK_THAT(compile_error("resp_error", {{"error", tv("")}}), Contains("attribute error"));
  CHECK_THAT(compile_error("resp_error", {{"error", tv("-")}}), Contains("attribute error"));
  CHECK_THAT(compile_error("jsonrpc_error", {{"as_result", jv("1")}}), Contains("as_result"));
  CHECK_THAT(compile_error("jsonrpc_error", {{"as_result", jv(R"("true")")}}), Contains("as_result"));
  CHECK_THAT(compile_error("http_patch", {{"patch", jv("[1]")}}), Contains("patch"));
  CHECK_THAT(compile_error("http_patch", {{"patch", jv("null")}}), Contains("patch"));
  CHECK_THAT(compile_error("http_delay", {{"delay", iv(-1)}}), Contains("delay"));
  CHECK_THAT(compile_error("resp_delay", {{"jitter", iv(-5)}}), Contains("jitter"));
  CHECK_THAT(compile_error("http_reset", {{"after_bytes", iv(-1)}}), Contains("after_bytes"));
  CHECK_THAT(compile_error("sse_cut", {{"after_events", iv(-1)}}), Contains("after_events"));
  CHECK_THAT(compile_error("sse_stall", {{"duration", iv(-1)}}), Contains("duration"));
  CHECK_THAT(compile_error("sse_corrupt", {{"after_events", iv(-2)}}), Contains("after_events"));
  // A bad match is reported through every type's compile.
  CHECK_THAT(compile_error("resp_drop", {{"match", jv(R"({"cmd":"GET"})")}}), Contains("match.cmd"));
  CHECK_THAT(compile_error("jsonrpc_drop", {{"match", jv(R"({"path_regex":"*"})")}}), Contains("match.path_regex"));
}
