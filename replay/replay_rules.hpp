// What the stand-in server does with a request the recording does not cover: one policy by
// default (`--unmatched`) and per-rule overrides (`--rule 'MATCH=POLICY'`, first match wins).
// Pure: parsing and matching on a request's bytes, unit-tested (tests/replay/replay_rules_test.cpp).
//
// MATCH is one of:
//   *                     every request
//   METHOD /PATH-GLOB     HTTP (METHOD may be *), e.g. `POST /v1/chat/*`
//   /PATH-GLOB            HTTP, any method; the query string is not part of the path
//   rpc METHOD-GLOB       a JSON-RPC request (HTTP body) by its method, e.g. `rpc tools/*`
//   COMMAND-GLOB          a Redis command by name, case-insensitive, e.g. `GET`, `H*`
// Globs: `*` any run of characters (including `/`), `?` one character.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace faultline::replay {

enum class Unmatched : std::uint8_t { error, closest, fail, forward };
std::optional<Unmatched> parse_unmatched(std::string_view name);  // "error", "closest", "fail", "forward"
const char* to_string(Unmatched u);

// The parts of a live request a rule can look at (empty when the protocol has no such part).
struct RequestSubject {
  std::string method;      // HTTP method as sent
  std::string path;        // HTTP target without the query string
  std::string rpc_method;  // JSON-RPC method of an HTTP body
  std::string command;     // Redis command name, upper-cased
};
RequestSubject http_subject(std::string_view request_bytes);
RequestSubject resp_subject(const std::vector<std::string>& args);

struct Rule {
  enum class Kind : std::uint8_t { any, http, rpc, resp };
  std::string text;    // as written, for logs
  Kind kind = Kind::any;
  std::string method;  // http: upper-cased, "" = any
  std::string pattern; // the glob (resp: upper-cased)
  Unmatched policy = Unmatched::error;
};

// Parses "MATCH=POLICY" (the last `=` splits). Returns why it is wrong.
std::optional<std::string> parse_rule(std::string_view text, Rule& out);
bool rule_matches(const Rule& rule, const RequestSubject& subject);
// The first matching rule's policy, else `fallback`; `which` (when given) gets the rule or nullptr.
Unmatched policy_for(const std::vector<Rule>& rules, Unmatched fallback, const RequestSubject& subject,
                     const Rule** which = nullptr);

bool glob_match(std::string_view pattern, std::string_view text);

}  // namespace faultline::replay
