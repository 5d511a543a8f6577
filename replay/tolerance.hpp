// Tolerances: whether a probe's observation is acceptable. Chaos Toolkit's forms (a scalar,
// a list meaning "one of", {"type": "range" | "regex" | "jsonpath"}) plus faultline's
// {"type": "latency"} and a list of tolerance objects meaning "all of these". Pure.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <rapidjson/document.h>

#include "base/regex.hpp"
#include "replay/json_path.hpp"
#include "replay/observation.hpp"

namespace faultline::drill {

struct Tolerance {
  enum class Kind { equals, one_of, range, regex, jsonpath, latency, all };
  Kind kind = Kind::equals;
  std::vector<Scalar> values;              // equals (one), one_of
  std::optional<double> lo, hi;            // range; a missing bound is open
  std::string pattern;                     // regex (RE2 syntax, searched anywhere)
  std::optional<Regex> regex;
  std::optional<JsonPath> path;            // jsonpath
  std::shared_ptr<const rapidjson::Document> expect;  // jsonpath: optional expected value
  double max_ms = 0;                       // latency
  std::string target;                      // field to test; empty: the kind's default
  std::vector<Tolerance> all;              // all

  std::string describe() const;
};

struct CheckResult {
  bool ok = false;
  std::string why;  // when !ok: what was seen against what was expected
};

// `tolerance` absent: the kind's default (http status < 400, RESP reply not an error, tcp
// connected, metric present, command exit 0). An observation without an answer fails every
// tolerance (a tcp probe always has one: "refused" is what it observed).
CheckResult check(const std::optional<Tolerance>& tolerance, const Observation& observed);

}  // namespace faultline::drill
