#include <catch2/catch.hpp>

#include <rapidjson/document.h>

#include <string>

#include "protocols/jsonrpc.hpp"

using namespace faultline;
using jsonrpc::describe;

namespace {
bool parses(const std::string& json) {
  rapidjson::Document d;
  d.Parse(json.c_str(), json.size());
  return !d.HasParseError();
}
}  // namespace

TEST_CASE("jsonrpc: a request has a method and an id as raw JSON") {
  const auto m = describe(R"({"jsonrpc":"2.0","id":7,"method":"initialize","params":{"protocolVersion":"2025-03-26"}})");
  CHECK(m.valid);
  CHECK_FALSE(m.batch);
  CHECK(m.method == "initialize");
  CHECK(m.id == "7");
  CHECK(m.tool.empty());
  CHECK_FALSE(m.is_response);
  CHECK_FALSE(m.is_error);

  const auto s = describe(R"(  {"method":"ping","id":"a\"b","jsonrpc":"2.0"}  )" "\n");
  CHECK(s.valid);
  CHECK(s.id == R"("a\"b")");
}

TEST_CASE("jsonrpc: a notification has no id") {
  const auto m = describe(R"({"jsonrpc":"2.0","method":"notifications/initialized"})");
  CHECK(m.valid);
  CHECK(m.method == "notifications/initialized");
  CHECK_FALSE(m.id.has_value());
  CHECK_FALSE(m.is_response);
}

TEST_CASE("jsonrpc: responses and errors") {
  const auto r = describe(R"({"jsonrpc":"2.0","id":"abc","result":{"tools":[]}})");
  CHECK(r.valid);
  CHECK(r.is_response);
  CHECK_FALSE(r.is_error);
  CHECK(r.method.empty());
  CHECK(r.id == "\"abc\"");

  const auto e = describe(R"({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}})");
  CHECK(e.valid);
  CHECK(e.is_response);
  CHECK(e.is_error);
  CHECK(e.id == "null");

  const auto big = describe(R"({"jsonrpc":"2.0","id":12345678901234567890,"result":null})");
  CHECK(big.valid);
  CHECK(big.id == "12345678901234567890");
}

TEST_CASE("jsonrpc: tools/call names its tool") {
  const auto m = describe(
      R"({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_weather","arguments":{"city":"Oslo"}}})");
  CHECK(m.valid);
  CHECK(m.method == "tools/call");
  CHECK(m.tool == "get_weather");

  const auto other = describe(R"({"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"p"}})");
  CHECK(other.tool.empty());
  const auto no_params = describe(R"({"jsonrpc":"2.0","id":3,"method":"tools/call"})");
  CHECK(no_params.valid);
  CHECK(no_params.tool.empty());
}

TEST_CASE("jsonrpc: a batch is described by its first element") {
  const auto m = describe(R"([{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"}])");
  CHECK(m.valid);
  CHECK(m.batch);
  CHECK(m.method == "a");
  CHECK(m.id == "1");

  const auto empty = describe("[]");
  CHECK(empty.batch);
  CHECK_FALSE(empty.valid);
}

TEST_CASE("jsonrpc: what is not a JSON-RPC message is invalid") {
  for (const char* text : {"", "{", "not json", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"} trailing",
                           "42", "\"string\"", "[1,2]", "{\"model\":\"gpt-4o\",\"messages\":[]}",
                           "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"x\"}",
                           "{\"jsonrpc\":\"2.0\",\"id\":1}", "{\"id\":1,\"method\":\"x\"}"}) {
    INFO(text);
    CHECK_FALSE(describe(text).valid);
  }
  // A million brackets neither crash nor parse.
  CHECK_FALSE(describe(std::string(1000000, '[')).valid);
}

TEST_CASE("jsonrpc: error_response and error_result are valid JSON with escaped text") {
  const std::string message = "bad \"quote\" \\ back\nline\ttab \x01 ctl, ünïcode";
  const std::string r = jsonrpc::error_response("7", -32000, message);
  CHECK(parses(r));
  CHECK(r.rfind(R"({"jsonrpc":"2.0","id":7,"error":{"code":-32000,"message":")", 0) == 0);
  rapidjson::Document d;
  d.Parse(r.c_str(), r.size());
  REQUIRE(d.IsObject());
  CHECK(std::string(d["error"]["message"].GetString()) == message);
  CHECK(d["error"]["code"].GetInt() == -32000);

  const auto described = describe(r);
  CHECK(described.valid);
  CHECK(described.is_error);
  CHECK(described.id == "7");

  CHECK(jsonrpc::error_response("", 1, "x") == R"({"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"x"}})");
  CHECK(jsonrpc::error_response(R"("s-1")", -32601, "Method not found") ==
        R"({"jsonrpc":"2.0","id":"s-1","error":{"code":-32601,"message":"Method not found"}})");

  const std::string res = jsonrpc::error_result("\"q\"", message);
  CHECK(parses(res));
  rapidjson::Document e;
  e.Parse(res.c_str(), res.size());
  REQUIRE(e.IsObject());
  CHECK(std::string(e["id"].GetString()) == "q");
  CHECK(e["result"]["isError"].GetBool());
  CHECK(std::string(e["result"]["content"][0]["type"].GetString()) == "text");
  CHECK(std::string(e["result"]["content"][0]["text"].GetString()) == message);
  CHECK(jsonrpc::error_result("", "x") ==
        R"({"jsonrpc":"2.0","id":null,"result":{"content":[{"type":"text","text":"x"}],"isError":true}})");

  // An embedded NUL survives as an escape.
  const std::string nul = jsonrpc::error_response("1", 0, std::string_view("a\0b", 3));
  CHECK(nul.find("a\\u0000b") != std::string::npos);
}

TEST_CASE("jsonrpc: value_at walks objects and arrays by dotted path") {
  const std::string doc = R"({
    "model": "gpt-4o",
    "temperature": 0.5,
    "stream": true,
    "messages": [
      {"role": "system", "content": "be brief"},
      {"role": "user", "content": "hi \"there\""}
    ],
    "params": {"arguments": {"model": "m", "n": [1, 2, {"deep": null}], "empty": {}}},
    "0": "zero key"
  })";
  CHECK(jsonrpc::value_at(doc, "model") == "\"gpt-4o\"");
  CHECK(jsonrpc::value_at(doc, "temperature") == "0.5");
  CHECK(jsonrpc::value_at(doc, "stream") == "true");
  CHECK(jsonrpc::value_at(doc, "messages.0.role") == "\"system\"");
  CHECK(jsonrpc::value_at(doc, "messages.1.content") == R"("hi \"there\"")");
  CHECK(jsonrpc::value_at(doc, "messages.1") == R"({"role":"user","content":"hi \"there\""})");
  CHECK(jsonrpc::value_at(doc, "params.arguments.model") == "\"m\"");
  CHECK(jsonrpc::value_at(doc, "params.arguments.n") == R"([1,2,{"deep":null}])");
  CHECK(jsonrpc::value_at(doc, "params.arguments.n.2.deep") == "null");
  CHECK(jsonrpc::value_at(doc, "params.arguments.empty") == "{}");
  CHECK(jsonrpc::value_at(doc, "0") == "\"zero key\"");
  CHECK(jsonrpc::value_at("[10,[20,30]]", "1.0") == "20");
  CHECK(jsonrpc::value_at(R"({"a":1})", "") == R"({"a":1})");

  CHECK_FALSE(jsonrpc::value_at(doc, "missing").has_value());
  CHECK_FALSE(jsonrpc::value_at(doc, "messages.2").has_value());
  CHECK_FALSE(jsonrpc::value_at(doc, "messages.x").has_value());
  CHECK_FALSE(jsonrpc::value_at(doc, "messages.-1").has_value());
  CHECK_FALSE(jsonrpc::value_at(doc, "messages.").has_value());
  CHECK_FALSE(jsonrpc::value_at(doc, "model.length").has_value());
  CHECK_FALSE(jsonrpc::value_at(doc, "messages.99999999999999999999").has_value());
  CHECK_FALSE(jsonrpc::value_at("{not json", "a").has_value());
  CHECK(jsonrpc::value_at(R"({"a":{"":5}})", "a.") == "5");
}

TEST_CASE("jsonrpc: numbers of hundreds of digits are read without crashing") {
  // fuzz_jsonrpc found RapidJSON's full-precision reader running off a table on these.
  const std::string zeros(400, '0');
  const std::string tiny = std::string(35, '2') + "." + std::string(20, '2') + "0e-378";
  const auto t = describe(R"({"jsonrpc":"2.0","id":4,"method":"m","params":{"x":)" + tiny + "}}");
  CHECK(t.valid);
  CHECK(t.method == "m");
  CHECK(jsonrpc::value_at(R"({"x":)" + tiny + "}", "x") == std::optional<std::string>("0.0"));
  CHECK(jsonrpc::value_at(R"({"x":0.1})", "x") == std::optional<std::string>("0.1"));
  CHECK_FALSE(describe(R"({"jsonrpc":"2.0","id":5,"method":"m","params":[1e999]})").valid);  // beyond a double
  const auto m = describe(R"({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"t","arguments":{"x":0.)" +
                          zeros + R"(1}}})");
  CHECK(m.valid);
  CHECK(m.id == "3");
  CHECK(m.tool == "t");
  const std::string long_id = "1" + std::string(69, '0') + "7";  // longer than the full-precision cap
  const auto big = describe(R"({"jsonrpc":"2.0","id":)" + long_id + R"(,"result":{}})");
  CHECK(big.valid);
  CHECK(big.id == long_id);  // as sent, not rounded
  const auto v = jsonrpc::value_at(R"({"a":[0.)" + zeros + R"(5]})", "a");
  REQUIRE(v);
  CHECK(parses(*v));
}
