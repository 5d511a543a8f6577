// What one probe or one load call saw, independent of how it was obtained: the network
// clients fill these in, tolerances and verdicts read them. Pure data.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace faultline::drill {

enum class ProbeKind { http, resp, tcp, metric, command };
const char* to_string(ProbeKind kind);

// A value a tolerance compares with: JSON's scalars.
struct Scalar {
  enum class Type { null, boolean, number, string };
  Type type = Type::null;
  bool boolean = false;
  double number = 0;
  std::string string;

  static Scalar null() { return {}; }
  static Scalar of(bool b) { return {Type::boolean, b, 0, {}}; }
  static Scalar of(double n) { return {Type::number, false, n, {}}; }
  static Scalar of(std::string s) { return {Type::string, false, 0, std::move(s)}; }
  // As JSON would print it: null, true, 200, 0.5, "+PONG" (strings quoted and capped).
  std::string display() const;
  // The number this value stands for: a number, or a string holding one (":42" from a
  // RESP integer reply counts too); nullopt otherwise.
  std::optional<double> as_number() const;
};
bool operator==(const Scalar& a, const Scalar& b);

// A decoded RESP reply. Simple strings, errors, integers and other one-line types keep
// their line in `text`; bulk strings their payload; aggregates their elements.
struct RespReply {
  char type = 0;     // '+', '-', ':', '$', '*', '%', '~', '>', '_', ',', '#', '(', '=', '!'
  bool null = false; // $-1, *-1 or RESP3 _
  std::string text;
  std::vector<RespReply> elements;

  // How a drill writes a reply in a tolerance: "+PONG", "-ERR x", ":1", a bulk string's
  // value as is, null for a null; an aggregate as a JSON array of its rendered elements.
  Scalar render() const;
  bool is_error() const { return type == '-' || type == '!'; }
};

struct Observation {
  ProbeKind kind = ProbeKind::http;
  // False when no answer came at all (connection refused, timeout, bad address); `error`
  // says why. A tcp probe that was refused is answered (connected = false).
  bool answered = false;
  std::string error;
  double latency_ms = 0;

  int status = 0;  // http: status code; command: exit code (-1 when killed by a signal)
  std::vector<std::pair<std::string, std::string>> headers;  // http
  std::string body;    // http body; command stdout; tcp: bytes received
  std::string stderr_text;  // command
  RespReply reply;     // resp
  bool connected = false;   // tcp
  std::optional<double> value;  // metric

  // The value a scalar, list or range tolerance compares with (Chaos Toolkit: the
  // `status` of a provider's result): http status, the rendered RESP reply, tcp
  // `connected`, the metric value, the command's exit code.
  Scalar primary() const;
  // A named field for a tolerance's `target`; nullopt if the kind has no such field.
  std::optional<Scalar> field(std::string_view target) const;
  // One short line for progress output and reports.
  std::string summary() const;
};

// The targets a probe kind offers (for checking drill files).
bool valid_target(ProbeKind kind, std::string_view target);
std::string valid_targets(ProbeKind kind);

}  // namespace faultline::drill
