#include "replay/observation.hpp"

#include "base/ascii.hpp"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace faultline::drill {
namespace {


std::string number_text(double n) {
  if (std::isfinite(n) && n == std::floor(n) && std::fabs(n) < 1e15) return std::to_string(static_cast<long long>(n));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", n);
  return buf;
}

std::string cap(std::string s, std::size_t n = 200) {
  if (s.size() > n) {
    s.resize(n);
    s += "...";
  }
  return s;
}

}  // namespace

const char* to_string(ProbeKind kind) {
  switch (kind) {
    case ProbeKind::http: return "http";
    case ProbeKind::resp: return "resp";
    case ProbeKind::tcp: return "tcp";
    case ProbeKind::metric: return "metric";
    case ProbeKind::command: return "command";
  }
  return "?";
}

std::string Scalar::display() const {
  switch (type) {
    case Type::null: return "null";
    case Type::boolean: return boolean ? "true" : "false";
    case Type::number: return number_text(number);
    case Type::string: {
      std::string out = "\"";
      for (char c : cap(string, 120)) {
        if (c == '"' || c == '\\') out += '\\';
        if (c == '\r') out += "\\r";
        else if (c == '\n') out += "\\n";
        else out += c;
      }
      return out + "\"";
    }
  }
  return "null";
}

std::optional<double> Scalar::as_number() const {
  if (type == Type::number) return number;
  if (type != Type::string || string.empty()) return std::nullopt;
  std::string text = string;
  if (text[0] == ':' || text[0] == ',' || text[0] == '(') text.erase(0, 1);  // RESP integer, double, big number
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  const double n = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size()) return std::nullopt;
  return n;
}

bool operator==(const Scalar& a, const Scalar& b) {
  if (a.type != b.type) return false;
  switch (a.type) {
    case Scalar::Type::null: return true;
    case Scalar::Type::boolean: return a.boolean == b.boolean;
    case Scalar::Type::number: return a.number == b.number;
    case Scalar::Type::string: return a.string == b.string;
  }
  return false;
}

namespace {
void render_json(const RespReply& r, rapidjson::Writer<rapidjson::StringBuffer>& w) {
  if (r.null) {
    w.Null();
    return;
  }
  if (r.type == '*' || r.type == '~' || r.type == '>' || r.type == '%' || r.type == '|') {
    w.StartArray();
    for (const auto& e : r.elements) render_json(e, w);
    w.EndArray();
    return;
  }
  const Scalar s = r.render();
  w.String(s.string.c_str(), static_cast<rapidjson::SizeType>(s.string.size()));
}
}  // namespace

Scalar RespReply::render() const {
  if (null) return Scalar::null();
  switch (type) {
    case '$':
    case '=':
      return Scalar::of(text);
    case '*':
    case '~':
    case '>':
    case '%':
    case '|': {
      rapidjson::StringBuffer buf;
      rapidjson::Writer<rapidjson::StringBuffer> w(buf);
      render_json(*this, w);
      return Scalar::of(std::string(buf.GetString(), buf.GetSize()));
    }
    default:
      return Scalar::of(std::string(1, type) + text);
  }
}

Scalar Observation::primary() const {
  switch (kind) {
    case ProbeKind::http:
    case ProbeKind::command: return answered ? Scalar::of(static_cast<double>(status)) : Scalar::null();
    case ProbeKind::resp: return answered ? reply.render() : Scalar::null();
    case ProbeKind::tcp: return Scalar::of(connected);
    case ProbeKind::metric: return value ? Scalar::of(*value) : Scalar::null();
  }
  return Scalar::null();
}

std::optional<Scalar> Observation::field(std::string_view target) const {
  if (target.empty()) return primary();
  if (target == "latency_ms") return Scalar::of(latency_ms);
  switch (kind) {
    case ProbeKind::http:
      if (target == "status") return primary();
      if (target == "body") return Scalar::of(body);
      if (target.substr(0, 8) == "headers.") {
        const std::string name = ascii_lower(target.substr(8));
        for (const auto& [k, v] : headers)
          if (ascii_lower(k) == name) return Scalar::of(v);
        return Scalar::null();
      }
      break;
    case ProbeKind::resp:
      if (target == "reply") return primary();
      if (target == "type") return answered ? Scalar::of(std::string(1, reply.type)) : Scalar::null();
      break;
    case ProbeKind::tcp:
      if (target == "connected") return primary();
      if (target == "received") return Scalar::of(body);
      break;
    case ProbeKind::metric:
      if (target == "value") return primary();
      break;
    case ProbeKind::command:
      if (target == "status" || target == "exit_code") return primary();
      if (target == "stdout") return Scalar::of(body);
      if (target == "stderr") return Scalar::of(stderr_text);
      break;
  }
  return std::nullopt;
}

bool valid_target(ProbeKind kind, std::string_view target) {
  Observation probe;
  probe.kind = kind;
  return probe.field(target).has_value();
}

std::string valid_targets(ProbeKind kind) {
  switch (kind) {
    case ProbeKind::http: return "status, body, headers.NAME, latency_ms";
    case ProbeKind::resp: return "reply, type, latency_ms";
    case ProbeKind::tcp: return "connected, received, latency_ms";
    case ProbeKind::metric: return "value, latency_ms";
    case ProbeKind::command: return "status, stdout, stderr, latency_ms";
  }
  return "";
}

std::string Observation::summary() const {
  if (!answered) return "error: " + error;
  switch (kind) {
    case ProbeKind::http: return "HTTP " + std::to_string(status) + " (" + std::to_string(body.size()) + " bytes)";
    case ProbeKind::resp: {
      const Scalar s = reply.render();
      return s.type == Scalar::Type::null ? "(nil)" : cap(s.string, 80);
    }
    case ProbeKind::tcp: return connected ? "connected" : error.empty() ? "not connected" : error;
    case ProbeKind::metric: return value ? number_text(*value) : "no such series";
    case ProbeKind::command: return "exit " + std::to_string(status);
  }
  return "";
}

}  // namespace faultline::drill
