#include <catch2/catch.hpp>

#include "proxy/json_io.hpp"

using namespace faultline;

namespace {
rapidjson::Document parse(const char* text) {
  rapidjson::Document d;
  REQUIRE_FALSE(parse_body(text, d).has_value());
  return d;
}
}  // namespace

TEST_CASE("proxy bodies decode leniently, like Go's encoding/json") {
  auto d = parse(R"({"Name":"redis","UPSTREAM":"localhost:6379","enabled":null,"Logger":{},"toxics":null} trailing)");
  ProxyFields f;
  REQUIRE_FALSE(decode_proxy(d, f));
  CHECK(*f.name == "redis");
  CHECK(*f.upstream == "localhost:6379");
  CHECK_FALSE(f.enabled);
  CHECK(f.toxics == nullptr);
}

TEST_CASE("proxy bodies with wrong types name the field") {
  auto d = parse(R"({"name":"x","enabled":"true"})");
  ProxyFields f;
  auto e = decode_proxy(d, f);
  REQUIRE(e);
  CHECK(e->message.rfind("bad request body", 0) == 0);
  CHECK(e->message.find("enabled") != std::string::npos);
  rapidjson::Document empty;
  auto pe = parse_body("  ", empty);
  REQUIRE(pe);
  CHECK(*pe == "bad request body: EOF");
}

TEST_CASE("toxics get defaults, every attribute, and integral floats are accepted") {
  auto d = parse(R"({"type":"latency","attributes":{"latency":1000.0}})");
  ToxicFields f;
  REQUIRE_FALSE(decode_toxic(d, f));
  ToxicConfig c;
  REQUIRE_FALSE(build_toxic(f, c));
  CHECK(c.name == "latency_downstream");
  CHECK(c.stream == Stream::downstream);
  CHECK(c.toxicity == 1.0);
  CHECK(toxic_json(c) ==
        R"({"attributes":{"latency":1000,"jitter":0},"name":"latency_downstream","type":"latency","stream":"downstream","toxicity":1})");
}

TEST_CASE("toxic errors: stream, type, fractional integers, toxicity range") {
  auto build = [](const char* text) {
    rapidjson::Document d = parse(text);
    ToxicFields f;
    REQUIRE_FALSE(decode_toxic(d, f));
    ToxicConfig c;
    return build_toxic(f, c);
  };
  CHECK(build(R"({"type":"latency","stream":"sideways"})")->message ==
        "stream was invalid, can be either upstream or downstream");
  CHECK(build(R"({"type":"latency","stream":""})")->status == 400);
  CHECK(build(R"({"type":"latncy"})")->message.rfind("invalid toxic type \"latncy\" (did you mean \"latency\"?) (valid types: ", 0) == 0);
  // A misspelt attribute is refused with the type's attributes, not ignored (a latency of 0).
  CHECK(build(R"({"type":"latency","attributes":{"latncy":100}})")->message ==
        "attribute latncy is unknown to latency (did you mean \"latency\"?) (its attributes: latency, jitter, distribution, correlation, dice, schedule)");
  // --lenient: Toxiproxy's behaviour, unknown attributes ignored and its bare error text.
  faultline::set_lenient_toxic_attributes(true);
  CHECK_FALSE(build(R"({"type":"latency","attributes":{"latncy":100}})"));
  CHECK(build(R"({"type":"nope"})")->message == "invalid toxic type");
  faultline::set_lenient_toxic_attributes(false);
  CHECK(build(R"({"type":"latency","attributes":{"latency":10.5}})")->message.find("latency") != std::string::npos);
  CHECK(build(R"({"type":"latency","toxicity":1.5})")->message.find("toxicity") != std::string::npos);
  CHECK_FALSE(build(R"({"type":"latency","stream":"Upstream","toxicity":0.2})"));
}

TEST_CASE("partial toxic updates merge attributes and keep toxicity") {
  rapidjson::Document d = parse(R"({"type":"latency","attributes":{"latency":100,"jitter":7},"toxicity":0.5})");
  ToxicFields f;
  REQUIRE_FALSE(decode_toxic(d, f));
  ToxicConfig c;
  REQUIRE_FALSE(build_toxic(f, c));
  rapidjson::Document u = parse(R"({"attributes":{"latency":250},"type":"bandwidth","name":"renamed"})");
  ToxicFields uf;
  REQUIRE_FALSE(decode_toxic(u, uf));
  REQUIRE_FALSE(update_toxic(uf, c));
  CHECK(c.get_int("latency") == 250);
  CHECK(c.get_int("jitter") == 7);
  CHECK(c.toxicity == 0.5);
  CHECK(c.type == "latency");
  CHECK(c.name == "latency_downstream");
}

TEST_CASE("error replies stay valid JSON whatever bytes the message carries") {
  // A message quoting a client's name: a quote, a control byte and invalid UTF-8.
  const std::string message = std::string("proxy \"a\x01\xff\" not found");
  const std::string reply = error_json(404, message);
  CHECK(reply.back() == '\n');
  rapidjson::Document d;
  d.Parse<rapidjson::kParseValidateEncodingFlag>(reply.data(), reply.size());
  REQUIRE_FALSE(d.HasParseError());
  CHECK(d["status"].GetInt() == 404);
  CHECK(std::string(d["error"].GetString()) == "proxy \"a\x01\u00ff\" not found");
}
