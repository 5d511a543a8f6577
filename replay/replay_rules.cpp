#include "replay/replay_rules.hpp"

#include "base/ascii.hpp"

#include <algorithm>
#include <cctype>

#include <rapidjson/document.h>

#include "replay/replay_model.hpp"

namespace faultline::replay {
namespace {


std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '*' || c == '?' || c == '.' ||
           c == ':' || c == '|';
  });
}

}  // namespace

std::optional<Unmatched> parse_unmatched(std::string_view name) {
  if (name == "error") return Unmatched::error;
  if (name == "closest") return Unmatched::closest;
  if (name == "fail") return Unmatched::fail;
  if (name == "forward") return Unmatched::forward;
  return std::nullopt;
}

const char* to_string(Unmatched u) {
  switch (u) {
    case Unmatched::error: return "error";
    case Unmatched::closest: return "closest";
    case Unmatched::fail: return "fail";
    case Unmatched::forward: return "forward";
  }
  return "?";
}

bool glob_match(std::string_view p, std::string_view t) {
  // Iterative with one backtrack point: linear enough for request paths, no recursion.
  std::size_t pi = 0, ti = 0, star = std::string_view::npos, mark = 0;
  while (ti < t.size()) {
    if (pi < p.size() && (p[pi] == '?' || p[pi] == t[ti])) {
      ++pi;
      ++ti;
    } else if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = ti;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      ti = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

RequestSubject http_subject(std::string_view bytes) {
  RequestSubject s;
  std::string head, body;
  bool chunked = false;
  if (!split_http(bytes, head, body, chunked)) return s;
  const std::string_view line = std::string_view(head).substr(0, head.find("\r\n"));
  const auto sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return s;
  s.method = std::string(line.substr(0, sp1));
  const auto sp2 = line.find(' ', sp1 + 1);
  const std::string_view target = line.substr(sp1 + 1, sp2 == std::string_view::npos ? std::string_view::npos : sp2 - sp1 - 1);
  s.path = std::string(target.substr(0, target.find('?')));
  if (!body.empty()) {
    rapidjson::Document doc;
    doc.Parse(body.data(), body.size());
    if (!doc.HasParseError() && doc.IsObject() && doc.HasMember("jsonrpc") && doc.HasMember("method") &&
        doc["method"].IsString())
      s.rpc_method.assign(doc["method"].GetString(), doc["method"].GetStringLength());
  }
  return s;
}

RequestSubject resp_subject(const std::vector<std::string>& args) {
  RequestSubject s;
  if (!args.empty()) s.command = ascii_upper(args[0]);
  return s;
}

std::optional<std::string> parse_rule(std::string_view text, Rule& out) {
  out = Rule{};
  out.text = std::string(text);
  const auto eq = text.rfind('=');
  if (eq == std::string_view::npos)
    return "\"" + std::string(text) + "\": expected MATCH=POLICY, e.g. 'POST /v1/chat/*=forward'";
  const std::string_view match = trim(text.substr(0, eq));
  const std::string_view policy = trim(text.substr(eq + 1));
  const auto u = parse_unmatched(policy);
  if (!u) return "\"" + std::string(text) + "\": policy must be one of error, closest, fail, forward (got \"" +
                  std::string(policy) + "\")";
  out.policy = *u;
  if (match.empty()) return "\"" + std::string(text) + "\": the MATCH part is empty (use * for every request)";
  if (match == "*") {
    out.kind = Rule::Kind::any;
    return std::nullopt;
  }
  const auto sp = match.find(' ');
  if (sp == std::string_view::npos) {
    if (match.front() == '/') {
      out.kind = Rule::Kind::http;
      out.pattern = std::string(match);
      return std::nullopt;
    }
    if (!is_token(match))
      return "\"" + std::string(text) + "\": \"" + std::string(match) +
             "\" is neither a Redis command, an HTTP path (/...) nor `METHOD /path` or `rpc METHOD`";
    out.kind = Rule::Kind::resp;
    out.pattern = ascii_upper(match);
    return std::nullopt;
  }
  const std::string_view first = match.substr(0, sp);
  const std::string_view rest = trim(match.substr(sp + 1));
  if (rest.empty() || rest.find(' ') != std::string_view::npos)
    return "\"" + std::string(text) + "\": expected `METHOD /path` or `rpc METHOD` before the =";
  if (first == "rpc" || first == "RPC" || first == "jsonrpc") {
    out.kind = Rule::Kind::rpc;
    out.pattern = std::string(rest);
    return std::nullopt;
  }
  if (!is_token(first) || rest.front() != '/')
    return "\"" + std::string(text) + "\": expected `METHOD /path` (the path starts with /) or `rpc METHOD`";
  out.kind = Rule::Kind::http;
  out.method = first == "*" ? "" : ascii_upper(first);
  out.pattern = std::string(rest);
  return std::nullopt;
}

bool rule_matches(const Rule& rule, const RequestSubject& s) {
  switch (rule.kind) {
    case Rule::Kind::any: return true;
    case Rule::Kind::http:
      if (s.method.empty()) return false;
      if (!rule.method.empty() && ascii_upper(s.method) != rule.method) return false;
      return glob_match(rule.pattern, s.path);
    case Rule::Kind::rpc: return !s.rpc_method.empty() && glob_match(rule.pattern, s.rpc_method);
    case Rule::Kind::resp: return !s.command.empty() && glob_match(rule.pattern, s.command);
  }
  return false;
}

Unmatched policy_for(const std::vector<Rule>& rules, Unmatched fallback, const RequestSubject& subject,
                     const Rule** which) {
  for (const auto& r : rules) {
    if (rule_matches(r, subject)) {
      if (which) *which = &r;
      return r.policy;
    }
  }
  if (which) *which = nullptr;
  return fallback;
}

}  // namespace faultline::replay
