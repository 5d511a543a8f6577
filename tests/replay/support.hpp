// Helpers for the drill unit tests: parse a drill from text with a fake environment.
#pragma once
#include <map>
#include <optional>
#include <string>

#include "replay/drill.hpp"

namespace drill_test {

inline faultline::drill::ParseOptions options(std::map<std::string, std::string> env = {}) {
  faultline::drill::ParseOptions o;
  o.getenv = [env](const std::string& key) -> std::optional<std::string> {
    auto it = env.find(key);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  return o;
}

// Parses `text`; returns the error ("" when it parsed).
inline std::string parse(const std::string& text, faultline::drill::Drill& out,
                         const faultline::drill::ParseOptions& o = options()) {
  auto error = faultline::drill::parse_drill(text, o, out);
  return error ? *error : std::string();
}

inline std::string error_of(const std::string& text, const faultline::drill::ParseOptions& o = options()) {
  faultline::drill::Drill d;
  return parse(text, d, o);
}

}  // namespace drill_test
