#include "replay/tolerance.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace faultline::drill {
namespace {

std::string json_text(const rapidjson::Value& v) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  v.Accept(w);
  std::string s(buf.GetString(), buf.GetSize());
  if (s.size() > 120) {
    s.resize(120);
    s += "...";
  }
  return s;
}

std::string bound_text(const std::optional<double>& v) { return v ? Scalar::of(*v).display() : "*"; }

CheckResult pass() { return {true, {}}; }
CheckResult fail(std::string why) { return {false, std::move(why)}; }

std::string target_name(const Tolerance& t, const Observation& o) {
  if (!t.target.empty()) return t.target;
  switch (o.kind) {
    case ProbeKind::http: return "status";
    case ProbeKind::resp: return "reply";
    case ProbeKind::tcp: return "connected";
    case ProbeKind::metric: return "value";
    case ProbeKind::command: return "exit code";
  }
  return "value";
}

// The text a regex or a JSON path looks at when no target is named.
Scalar text_target(const Tolerance& t, const Observation& o) {
  if (!t.target.empty()) return o.field(t.target).value_or(Scalar::null());
  switch (o.kind) {
    case ProbeKind::http:
    case ProbeKind::command:
    case ProbeKind::tcp: return Scalar::of(o.body);
    default: return o.primary();
  }
}

CheckResult check_one(const Tolerance& t, const Observation& o) {
  switch (t.kind) {
    case Tolerance::Kind::equals:
    case Tolerance::Kind::one_of: {
      const Scalar v = o.field(t.target).value_or(Scalar::null());
      for (const auto& want : t.values)
        if (v == want) return pass();
      return fail(target_name(t, o) + " " + v.display() + ", expected " + t.describe());
    }
    case Tolerance::Kind::range: {
      const Scalar v = o.field(t.target).value_or(Scalar::null());
      const auto n = v.as_number();
      if (!n) return fail(target_name(t, o) + " " + v.display() + " is not a number, expected " + t.describe());
      if ((t.lo && *n < *t.lo) || (t.hi && *n > *t.hi))
        return fail(target_name(t, o) + " " + Scalar::of(*n).display() + ", expected " + t.describe());
      return pass();
    }
    case Tolerance::Kind::regex: {
      const Scalar v = text_target(t, o);
      if (v.type != Scalar::Type::string) return fail("no text to match /" + t.pattern + "/ against (" + v.display() + ")");
      // RE2 runs in linear time without recursion: the whole text is searched, however long.
      if (t.regex->search(v.string)) return pass();
      return fail(v.display() + " does not match /" + t.pattern + "/");
    }
    case Tolerance::Kind::jsonpath: {
      const Scalar v = text_target(t, o);
      if (v.type != Scalar::Type::string) return fail("no JSON to apply " + t.path->text() + " to (" + v.display() + ")");
      rapidjson::Document doc;
      doc.Parse(v.string.c_str(), v.string.size());
      if (doc.HasParseError()) return fail("the " + (t.target.empty() ? std::string("body") : t.target) + " is not JSON: " + v.display());
      const auto found = t.path->select(doc);
      if (found.empty()) return fail(t.path->text() + " matches nothing");
      if (!t.expect) return pass();
      for (const auto* f : found)
        if (*f == *t.expect) return pass();
      return fail(t.path->text() + " = " + json_text(*found.front()) + ", expected " + json_text(*t.expect));
    }
    case Tolerance::Kind::latency:
      if (o.latency_ms <= t.max_ms) return pass();
      return fail("latency " + Scalar::of(o.latency_ms).display() + " ms, expected at most " + Scalar::of(t.max_ms).display() + " ms");
    case Tolerance::Kind::all:
      for (const auto& sub : t.all) {
        auto r = check_one(sub, o);
        if (!r.ok) return r;
      }
      return pass();
  }
  return fail("unknown tolerance");
}

CheckResult check_default(const Observation& o) {
  switch (o.kind) {
    case ProbeKind::http:
      if (o.status < 400) return pass();
      return fail("HTTP " + std::to_string(o.status));
    case ProbeKind::resp:
      if (!o.reply.is_error()) return pass();
      return fail("error reply " + o.reply.render().display());
    case ProbeKind::tcp:
      if (o.connected) return pass();
      return fail(o.error.empty() ? "not connected" : o.error);
    case ProbeKind::metric:
      if (o.value) return pass();
      return fail("no such series");
    case ProbeKind::command:
      if (o.status == 0) return pass();
      return fail("exit code " + std::to_string(o.status));
  }
  return fail("unknown probe kind");
}

}  // namespace

std::string Tolerance::describe() const {
  std::string prefix = target.empty() ? "" : target + " ";
  switch (kind) {
    case Kind::equals: return prefix + (values.empty() ? "?" : values.front().display());
    case Kind::one_of: {
      std::string out = prefix + "one of [";
      for (std::size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + values[i].display();
      return out + "]";
    }
    case Kind::range: return prefix + "in [" + bound_text(lo) + ", " + bound_text(hi) + "]";
    case Kind::regex: return prefix + "matching /" + pattern + "/";
    case Kind::jsonpath: return prefix + (path ? path->text() : "?") + (expect ? " = " + json_text(*expect) : " exists");
    case Kind::latency: return "latency <= " + Scalar::of(max_ms).display() + " ms";
    case Kind::all: {
      std::string out;
      for (std::size_t i = 0; i < all.size(); ++i) out += (i ? " and " : "") + all[i].describe();
      return out;
    }
  }
  return "?";
}

CheckResult check(const std::optional<Tolerance>& tolerance, const Observation& observed) {
  // Chaos Toolkit fails a probe whose provider raised; an unanswered probe has nothing a
  // tolerance could accept, so it fails with the transport error (a tcp probe is always
  // answered: "refused" is its observation).
  if (!observed.answered) return fail(observed.error.empty() ? "no answer" : observed.error);
  if (!tolerance) return check_default(observed);
  return check_one(*tolerance, observed);
}

}  // namespace faultline::drill
