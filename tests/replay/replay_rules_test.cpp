// Per-rule policies of the replay server: parsing `MATCH=POLICY`, matching live requests,
// and the JSON form a profile or a drill gives.
#include <catch2/catch.hpp>

#include "replay/replay_rules.hpp"
#include "replay/replay_run.hpp"

using namespace faultline::replay;

namespace {

Rule rule(const std::string& text) {
  Rule r;
  const auto e = parse_rule(text, r);
  INFO(text << ": " << e.value_or(""));
  REQUIRE(!e);
  return r;
}

std::string http_request(const std::string& method, const std::string& target, const std::string& body = "") {
  return method + " " + target + " HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

}  // namespace

TEST_CASE("globs: * spans any run, ? one character") {
  CHECK(glob_match("/v1/chat/*", "/v1/chat/completions"));
  CHECK(glob_match("/v1/*", "/v1/chat/completions"));
  CHECK(!glob_match("/v1/chat/*", "/v1/models"));
  CHECK(glob_match("H?ET", "HGET"));
  CHECK(!glob_match("H?ET", "HGETALL"));
  CHECK(glob_match("*", ""));
  CHECK(glob_match("a*b*c", "axxbyyc"));
  CHECK(!glob_match("a*b*c", "axxbyy"));
}

TEST_CASE("rules parse into the kind of request they match") {
  CHECK(rule("*=forward").kind == Rule::Kind::any);
  const Rule http = rule("POST /v1/chat/*=forward");
  CHECK(http.kind == Rule::Kind::http);
  CHECK(http.method == "POST");
  CHECK(http.pattern == "/v1/chat/*");
  CHECK(http.policy == Unmatched::forward);
  CHECK(rule("/health=closest").method.empty());
  CHECK(rule("* /x=fail").method.empty());
  const Rule rpc = rule("rpc tools/*=closest");
  CHECK(rpc.kind == Rule::Kind::rpc);
  CHECK(rpc.pattern == "tools/*");
  const Rule resp = rule("hget = error");
  CHECK(resp.kind == Rule::Kind::resp);
  CHECK(resp.pattern == "HGET");
  CHECK(resp.policy == Unmatched::error);
}

TEST_CASE("bad rules say what is wrong") {
  Rule r;
  CHECK(parse_rule("POST /x", r)->find("MATCH=POLICY") != std::string::npos);
  CHECK(parse_rule("POST /x=proxy", r)->find("policy must be one of error, closest, fail, forward") != std::string::npos);
  CHECK(parse_rule("=forward", r)->find("empty") != std::string::npos);
  CHECK(parse_rule("POST x=forward", r)->find("starts with /") != std::string::npos);
  CHECK(parse_rule("a b c=forward", r));
}

TEST_CASE("rules match HTTP method and path (no query), JSON-RPC methods and Redis commands") {
  const auto post = http_subject(http_request("POST", "/v1/chat/completions?stream=1", R"({"model":"m"})"));
  CHECK(post.method == "POST");
  CHECK(post.path == "/v1/chat/completions");
  CHECK(post.rpc_method.empty());
  CHECK(rule_matches(rule("POST /v1/chat/*=forward"), post));
  CHECK(rule_matches(rule("post /v1/chat/*=forward"), post));
  CHECK(!rule_matches(rule("GET /v1/chat/*=forward"), post));
  CHECK(rule_matches(rule("/v1/*=forward"), post));
  CHECK(!rule_matches(rule("GET=forward"), post));  // a Redis rule never matches HTTP

  const auto call = http_subject(http_request("POST", "/mcp", R"({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{}})"));
  CHECK(call.rpc_method == "tools/call");
  CHECK(rule_matches(rule("rpc tools/*=closest"), call));
  CHECK(!rule_matches(rule("rpc resources/*=closest"), call));
  CHECK(!rule_matches(rule("rpc tools/*=closest"), post));

  const auto get = resp_subject({"get", "k"});
  CHECK(get.command == "GET");
  CHECK(rule_matches(rule("GET=forward"), get));
  CHECK(rule_matches(rule("G*=forward"), get));
  CHECK(!rule_matches(rule("SET=forward"), get));
  CHECK(!rule_matches(rule("/x=forward"), get));
  CHECK(rule_matches(rule("*=fail"), get));
  CHECK(rule_matches(rule("*=fail"), RequestSubject{}));
}

TEST_CASE("the first matching rule wins, else the default") {
  const std::vector<Rule> rules{rule("POST /v1/chat/*=forward"), rule("POST /*=closest"), rule("rpc tools/*=fail")};
  const Rule* which = nullptr;
  const auto chat = http_subject(http_request("POST", "/v1/chat/completions", "{}"));
  CHECK(policy_for(rules, Unmatched::error, chat, &which) == Unmatched::forward);
  CHECK(which == &rules[0]);
  CHECK(policy_for(rules, Unmatched::error, http_subject(http_request("POST", "/v1/embeddings", "{}"))) ==
        Unmatched::closest);
  CHECK(policy_for(rules, Unmatched::error, http_subject(http_request("GET", "/v1/models")), &which) == Unmatched::error);
  CHECK(which == nullptr);
}

TEST_CASE("the JSON form names the bad field") {
  ServerOptions o;
  CHECK(!server_options_from_json(R"({"journal":"rec","unmatched":"closest","ignore":["id"],"rules":["GET=error"]})",
                                  "/etc/fl", {}, o));
  CHECK(o.journal == "/etc/fl/rec");
  CHECK(o.unmatched == Unmatched::closest);
  CHECK(o.ignore == std::vector<std::string>{"id"});
  CHECK(o.rules.size() == 1);
  ServerOptions abs;
  CHECK(!server_options_from_json(R"({"journal":"/data/rec"})", "/etc/fl", {}, abs));
  CHECK(abs.journal == "/data/rec");

  auto error = [](const std::string& json) {
    ServerOptions x;
    return server_options_from_json(json, "", {"name"}, x).value_or("(no error)");
  };
  CHECK(error(R"({"journal":"j","unmatched":"maybe"})").rfind("unmatched: must be one of error, closest, fail, forward", 0) == 0);
  CHECK(error(R"({"unmatched":"error"})").rfind("journal: missing required field", 0) == 0);
  CHECK(error(R"({"journal":"j","unmatched":"forward"})").rfind("forward: required", 0) == 0);
  CHECK(error(R"({"journal":"j","rules":["GET=forward"]})").rfind("forward: required", 0) == 0);
  CHECK(error(R"({"journal":"j","forward":"nope"})").rfind("forward: expected HOST:PORT", 0) == 0);
  CHECK(error(R"({"journal":"j","rules":["GET"]})").rfind("rules[0]: ", 0) == 0);
  CHECK(error(R"({"journal":"j","ignore":"id"})").rfind("ignore: must be an array", 0) == 0);
  CHECK(error(R"({"journal":"j","protocol":"smtp"})").rfind("protocol: must be one of", 0) == 0);
  CHECK(error(R"({"journal":"j","upstream":"x:1"})").rfind("upstream: unknown field", 0) == 0);
  CHECK(error(R"({"journal":"j","name":"r1"})") == "(no error)");  // an extra key the caller allows
}
