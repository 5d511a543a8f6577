#include "replay/drill.hpp"

#include "base/ascii.hpp"

#include "base/suggest.hpp"
#include "proxy/json_io.hpp"

#include <algorithm>
#include <cctype>
#include <type_traits>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "replay/record.hpp"
#include "replay/replay_run.hpp"
#include "replay/wire.hpp"

namespace faultline::drill {

const char* to_string(Provider p) {
  switch (p) {
    case Provider::http: return "http";
    case Provider::resp: return "resp";
    case Provider::tcp: return "tcp";
    case Provider::metric: return "metric";
    case Provider::command: return "command";
    case Provider::toxic_add: return "toxic.add";
    case Provider::toxic_update: return "toxic.update";
    case Provider::toxic_remove: return "toxic.remove";
    case Provider::proxy_disable: return "proxy.disable";
    case Provider::proxy_enable: return "proxy.enable";
    case Provider::faultline_reset: return "faultline.reset";
    case Provider::wait: return "wait";
    case Provider::load: return "load";
    case Provider::replay_start: return "replay.start";
    case Provider::replay_stop: return "replay.stop";
    case Provider::replay_client: return "replay.client";
  }
  return "?";
}

bool is_probe_provider(Provider p) {
  return p == Provider::http || p == Provider::resp || p == Provider::tcp || p == Provider::metric || p == Provider::command;
}

ProbeKind probe_kind(Provider p) {
  switch (p) {
    case Provider::resp: return ProbeKind::resp;
    case Provider::tcp: return ProbeKind::tcp;
    case Provider::metric: return ProbeKind::metric;
    case Provider::command: return ProbeKind::command;
    default: return ProbeKind::http;
  }
}

const char* to_string(HypothesisStrategy s) {
  switch (s) {
    case HypothesisStrategy::default_: return "default";
    case HypothesisStrategy::before_method_only: return "before-method-only";
    case HypothesisStrategy::after_method_only: return "after-method-only";
    case HypothesisStrategy::during_method_only: return "during-method-only";
    case HypothesisStrategy::continuously: return "continuously";
  }
  return "?";
}

const char* to_string(RollbackStrategy s) {
  switch (s) {
    case RollbackStrategy::default_: return "default";
    case RollbackStrategy::always: return "always";
    case RollbackStrategy::never: return "never";
    case RollbackStrategy::deviated: return "deviated";
  }
  return "?";
}

const char* to_string(VerdictType t) {
  switch (t) {
    case VerdictType::success_rate: return "success_rate";
    case VerdictType::error_recovery: return "error_recovery";
    case VerdictType::latency: return "latency";
    case VerdictType::failover: return "failover";
    case VerdictType::no_critical_errors: return "no_critical_errors";
    case VerdictType::aggregate: return "aggregate";
  }
  return "?";
}

std::vector<std::string> Drill::faultline_urls() const {
  std::vector<std::string> urls;
  auto add = [&](const std::string& u) {
    if (!u.empty() && std::find(urls.begin(), urls.end(), u) == urls.end()) urls.push_back(u);
  };
  for (const auto* list : {&hypothesis, &method, &rollbacks}) {
    for (const auto& a : *list) {
      if (const auto* t = std::get_if<ToxicSpec>(&a.spec)) add(t->faultline);
      if (const auto* p = std::get_if<ProxySpec>(&a.spec)) add(p->faultline);
      if (const auto* m = std::get_if<MetricSpec>(&a.spec)) add(m->faultline);
    }
  }
  for (const auto& v : verdicts) {
    if (v.type == VerdictType::failover) {
      add(v.primary.faultline);
      add(v.backup.faultline);
    }
    if (v.retries) add(v.retries->proxy.faultline);
  }
  return urls;
}

std::vector<std::pair<std::string, ProxyRef>> Drill::proxies_used() const {
  std::vector<std::pair<std::string, ProxyRef>> out;
  for (const auto* list : {&method, &rollbacks}) {
    for (const auto& a : *list) {
      if (const auto* t = std::get_if<ToxicSpec>(&a.spec)) out.push_back({a.path + ".provider.proxy", {t->faultline, t->proxy}});
      if (const auto* p = std::get_if<ProxySpec>(&a.spec); p && !p->proxy.empty())
        out.push_back({a.path + ".provider.proxy", {p->faultline, p->proxy}});
    }
  }
  return out;
}

namespace {

using rapidjson::Value;

struct ParseError {
  std::string path;
  std::string message;
};

[[noreturn]] void fail(const std::string& path, const std::string& why) { throw ParseError{path, why}; }

const char* kind_of(const Value& v) {
  if (v.IsNull()) return "null";
  if (v.IsBool()) return "a boolean";
  if (v.IsNumber()) return "a number";
  if (v.IsString()) return "a string";
  if (v.IsArray()) return "an array";
  return "an object";
}

std::string member_path(const std::string& base, std::string_view key) {
  const bool plain = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
  if (plain) return base + "." + std::string(key);
  return base + "[\"" + std::string(key) + "\"]";
}

std::string index_path(const std::string& base, std::size_t i) { return base + "[" + std::to_string(i) + "]"; }

std::string json_text(const Value& v) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  v.Accept(w);
  return std::string(buf.GetString(), buf.GetSize());
}

std::string number_text(double n) { return Scalar::of(n).display(); }

// An object being read: unknown keys are errors (a misspelt "tolerance" must not silently
// mean "no tolerance"), null means absent.
class Obj {
 public:
  Obj(const Value& v, std::string path, std::initializer_list<const char*> allowed)
      : Obj(v, std::move(path), std::vector<const char*>(allowed)) {}
  Obj(const Value& v, std::string path, const std::vector<const char*>& allowed) : v_(v), path_(std::move(path)) {
    if (!v.IsObject()) fail(path_, std::string("expected an object, got ") + kind_of(v));
    for (const auto& m : v.GetObject()) {
      const std::string key = m.name.GetString();
      bool ok = false;
      for (const char* a : allowed) ok = ok || key == a;
      if (!ok) fail(member_path(path_, key), unknown_field(key, std::vector<std::string_view>(allowed.begin(), allowed.end())));
    }
  }
  const std::string& path() const { return path_; }
  std::string path(std::string_view key) const { return member_path(path_, key); }
  const Value* get(const char* key) const {
    auto it = v_.FindMember(key);
    if (it == v_.MemberEnd() || it->value.IsNull()) return nullptr;
    return &it->value;
  }
  const Value& require(const char* key) const {
    const Value* v = get(key);
    if (!v) fail(path(key), "missing required field");
    return *v;
  }
  std::optional<std::string> opt_string(const char* key) const {
    const Value* v = get(key);
    if (!v) return std::nullopt;
    if (!v->IsString()) fail(path(key), std::string("expected a string, got ") + kind_of(*v));
    return std::string(v->GetString(), v->GetStringLength());
  }
  std::string string(const char* key) const {
    require(key);
    auto s = *opt_string(key);
    if (s.empty()) fail(path(key), "must not be empty");
    return s;
  }
  std::string string_or(const char* key, std::string def) const { return opt_string(key).value_or(std::move(def)); }
  std::optional<double> opt_number(const char* key, double min, double max = HUGE_VAL) const {
    const Value* v = get(key);
    if (!v) return std::nullopt;
    if (!v->IsNumber()) fail(path(key), std::string("expected a number, got ") + kind_of(*v));
    const double d = v->GetDouble();
    if (d < min || d > max || !std::isfinite(d)) {
      if (max == HUGE_VAL) fail(path(key), "must be at least " + number_text(min) + ", got " + number_text(d));
      fail(path(key), "must be between " + number_text(min) + " and " + number_text(max) + ", got " + number_text(d));
    }
    return d;
  }
  double number(const char* key, double def, double min, double max = HUGE_VAL) const {
    return opt_number(key, min, max).value_or(def);
  }
  std::optional<std::uint64_t> opt_count(const char* key, std::uint64_t min) const {
    const Value* v = get(key);
    if (!v) return std::nullopt;
    if (!v->IsUint64()) fail(path(key), std::string("expected a non-negative integer, got ") + (v->IsNumber() ? json_text(*v) : kind_of(*v)));
    if (v->GetUint64() < min) fail(path(key), "must be at least " + std::to_string(min));
    return v->GetUint64();
  }
  bool boolean(const char* key, bool def) const {
    const Value* v = get(key);
    if (!v) return def;
    if (!v->IsBool()) fail(path(key), std::string("expected true or false, got ") + kind_of(*v));
    return v->GetBool();
  }
  // A string or an array of strings.
  std::vector<std::string> names(const char* key) const {
    const Value* v = get(key);
    std::vector<std::string> out;
    if (!v) return out;
    if (v->IsString()) {
      out.emplace_back(v->GetString(), v->GetStringLength());
      return out;
    }
    if (!v->IsArray()) fail(path(key), std::string("expected a name or a list of names, got ") + kind_of(*v));
    for (rapidjson::SizeType i = 0; i < v->Size(); ++i) {
      if (!(*v)[i].IsString()) fail(index_path(path(key), i), std::string("expected a string, got ") + kind_of((*v)[i]));
      out.emplace_back((*v)[i].GetString(), (*v)[i].GetStringLength());
    }
    return out;
  }
  Labels labels(const char* key) const {
    Labels out;
    const Value* v = get(key);
    if (!v) return out;
    if (!v->IsObject()) fail(path(key), std::string("expected an object of strings, got ") + kind_of(*v));
    for (const auto& m : v->GetObject()) {
      if (!m.value.IsString()) fail(member_path(path(key), m.name.GetString()), std::string("expected a string, got ") + kind_of(m.value));
      out[m.name.GetString()] = m.value.GetString();
    }
    return out;
  }

 private:
  const Value& v_;
  std::string path_;
};

// Words of a command line given as one string: spaces separate, '...' and "..." group.
std::vector<std::string> split_args(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  bool in_word = false;
  char quote = 0;
  for (char c : text) {
    if (quote) {
      if (c == quote) quote = 0;
      else cur += c;
    } else if (c == '\'' || c == '"') {
      quote = c;
      in_word = true;
    } else if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word) out.push_back(cur);
      cur.clear();
      in_word = false;
    } else {
      cur += c;
      in_word = true;
    }
  }
  if (in_word) out.push_back(cur);
  return out;
}

std::string normalize_url(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  if (url.find("://") == std::string::npos) url = "http://" + url;
  return url;
}

// A replay server's name: it becomes part of ${replay.NAME.address}.
std::string replay_name(const Obj& o) {
  const std::string n = o.string("name");
  for (char c : n)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'))
      fail(o.path("name"), "use letters, digits, _ and - (it is part of ${replay." + n + ".address})");
  return n;
}

// A reference to a replay server's address, resolved when the activity runs.
bool has_replay_ref(std::string_view s) { return s.find("${replay.") != std::string_view::npos; }

std::string address_of(const Obj& o) {
  const std::string a = o.string("address");
  if (has_replay_ref(a)) return a;
  const auto colon = a.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == a.size() ||
      a.find_first_not_of("0123456789", colon + 1) != std::string::npos)
    fail(o.path("address"), "expected host:port, got \"" + a + "\"");
  return a;
}

class Parser {
 public:
  Parser(const ParseOptions& options) : options_(options) {}

  void parse(rapidjson::Document& doc, Drill& out) {
    if (!doc.IsObject()) fail("$", std::string("expected a drill object, got ") + kind_of(doc));
    Obj top(doc, "$",
            {"title", "description", "version", "tags", "configuration", "secrets", "contributions", "extensions",
             "controls", "runtime", "steady-state-hypothesis", "method", "rollbacks", "verdicts", "$schema"});
    if (top.get("controls")) fail(top.path("controls"), "controls are not supported by faultline drill");
    if (const Value* s = top.get("secrets"); s && !(s->IsObject() && s->ObjectEmpty()))
      fail(top.path("secrets"), "secrets are not supported; use configuration with {\"type\": \"env\"}");
    resolve_configuration(top, out);
    substitute(doc, "$", doc.GetAllocator(), true);

    out.title = top.string("title");
    out.description = top.string_or("description", "");
    out.seed = options_.seed;
    if (const Value* rt = top.get("runtime")) parse_runtime(*rt, top.path("runtime"), out.runtime);

    if (const Value* h = top.get("steady-state-hypothesis")) {
      Obj hyp(*h, top.path("steady-state-hypothesis"), {"title", "probes", "controls"});
      if (hyp.get("controls")) fail(hyp.path("controls"), "controls are not supported by faultline drill");
      out.hypothesis_title = hyp.string_or("title", "");
      const Value& probes = hyp.require("probes");
      if (!probes.IsArray()) fail(hyp.path("probes"), std::string("expected an array, got ") + kind_of(probes));
      for (rapidjson::SizeType i = 0; i < probes.Size(); ++i) {
        out.hypothesis.push_back(activity(probes[i], index_path(hyp.path("probes"), i), Section::hypothesis));
      }
    }
    const Value& method = top.require("method");
    if (!method.IsArray()) fail(top.path("method"), std::string("expected an array, got ") + kind_of(method));
    for (rapidjson::SizeType i = 0; i < method.Size(); ++i)
      out.method.push_back(activity(method[i], index_path(top.path("method"), i), Section::method));
    if (const Value* rb = top.get("rollbacks")) {
      if (!rb->IsArray()) fail(top.path("rollbacks"), std::string("expected an array, got ") + kind_of(*rb));
      for (rapidjson::SizeType i = 0; i < rb->Size(); ++i)
        out.rollbacks.push_back(activity((*rb)[i], index_path(top.path("rollbacks"), i), Section::rollbacks));
    }
    if (const Value* v = top.get("verdicts")) parse_verdicts(*v, top.path("verdicts"), out);
  }

 private:
  enum class Section { hypothesis, method, rollbacks };

  // ---- configuration and ${var} ---------------------------------------------------------------

  std::optional<std::string> env(const std::string& key) const {
    if (options_.getenv) return options_.getenv(key);
    const char* v = std::getenv(key.c_str());
    return v ? std::optional<std::string>(v) : std::nullopt;
  }

  // Converts a text to the type `like` has (a number, a boolean or a string).
  void typed(const std::string& text, const std::string& type, Value& out, const std::string& path, const std::string& what) {
    if (type == "number") {
      char* end = nullptr;
      const double d = std::strtod(text.c_str(), &end);
      if (text.empty() || end != text.c_str() + text.size()) fail(path, what + "=\"" + text + "\" is not a number");
      if (d == std::floor(d) && std::fabs(d) < 9e15) out.SetInt64(static_cast<std::int64_t>(d));
      else out.SetDouble(d);
    } else if (type == "bool") {
      if (text == "true" || text == "1") out.SetBool(true);
      else if (text == "false" || text == "0") out.SetBool(false);
      else fail(path, what + "=\"" + text + "\" is not true or false");
    } else if (type == "json") {
      rapidjson::Document d(&vars_.GetAllocator());
      d.Parse(text.c_str(), text.size());
      if (d.HasParseError()) fail(path, what + " is not valid JSON");
      out.CopyFrom(d, vars_.GetAllocator());
    } else {
      out.SetString(text.c_str(), static_cast<rapidjson::SizeType>(text.size()), vars_.GetAllocator());
    }
  }

  static std::string type_like(const Value& v) {
    if (v.IsNumber()) return "number";
    if (v.IsBool()) return "bool";
    return "string";
  }

  void resolve_configuration(const Obj& top, Drill& out) {
    vars_.SetObject();
    auto& alloc = vars_.GetAllocator();
    if (const Value* cfg = top.get("configuration")) {
      if (!cfg->IsObject()) fail(top.path("configuration"), std::string("expected an object, got ") + kind_of(*cfg));
      for (const auto& m : cfg->GetObject()) {
        const std::string name = m.name.GetString();
        const std::string path = member_path(top.path("configuration"), name);
        Value value;
        if (m.value.IsObject()) {
          Obj e(m.value, path, {"type", "key", "default", "env_var_type"});
          const std::string type = e.string("type");
          if (type != "env") fail(e.path("type"), "unsupported configuration type \"" + type + "\" (only \"env\")");
          const std::string key = e.string("key");
          const Value* def = e.get("default");
          std::string as = def ? type_like(*def) : "string";
          if (auto t = e.opt_string("env_var_type")) {
            static const std::map<std::string, std::string> kinds{{"str", "string"}, {"int", "number"}, {"float", "number"},
                                                                  {"bool", "bool"}, {"json", "json"}};
            auto it = kinds.find(*t);
            if (it == kinds.end()) fail(e.path("env_var_type"), "expected str, int, float, bool or json");
            as = it->second;
          }
          if (auto text = env(key)) {
            typed(*text, as, value, path, "environment variable " + key);
          } else if (def) {
            value.CopyFrom(*def, alloc);
          } else if (options_.placeholders) {
            // drill --check in CI, without the stack's environment: check the rest of the file.
            // A URL where the name says so, else an address; 1 fits most bounded numbers.
            const std::string lower = ascii_lower(name + " " + key);
            const std::string placeholder = lower.find("url") != std::string::npos ? "http://127.0.0.1:9" : "127.0.0.1:9";
            if (as == "number") value.SetInt(1);
            else if (as == "bool") value.SetBool(false);
            else value.SetString(placeholder.c_str(), static_cast<rapidjson::SizeType>(placeholder.size()), alloc);
            out.notes.push_back(path + ": environment variable " + key + " is not set and there is no default; checked with " +
                                (as == "number" ? std::string("1") : as == "bool" ? std::string("false") : "\"" + placeholder + "\""));
          } else {
            fail(path, "environment variable " + key + " is not set and there is no default");
          }
        } else if (m.value.IsArray()) {
          fail(path, "expected a value or {\"type\": \"env\", ...}, got an array");
        } else {
          value.CopyFrom(m.value, alloc);
        }
        vars_.AddMember(Value(name.c_str(), alloc), value, alloc);
      }
    }
    for (const auto& [name, text] : options_.vars) {
      Value value;
      auto it = vars_.FindMember(name.c_str());
      typed(text, it != vars_.MemberEnd() ? type_like(it->value) : "string", value, "--var " + name, "--var " + name);
      if (it != vars_.MemberEnd()) it->value = value;
      else vars_.AddMember(Value(name.c_str(), alloc), value, alloc);
    }
    if (options_.seed && !vars_.HasMember("seed")) vars_.AddMember("seed", static_cast<std::uint64_t>(*options_.seed), alloc);
    for (const auto& m : vars_.GetObject()) out.configuration.emplace_back(m.name.GetString(), json_text(m.value));

    std::string url;
    if (auto it = vars_.FindMember("faultline_url"); it != vars_.MemberEnd()) {
      if (!it->value.IsString()) fail(top.path("configuration") + ".faultline_url", "expected a string");
      url = it->value.GetString();
    } else if (auto e = env("TOXIPROXY_URL"); e && !e->empty()) {
      url = *e;
    } else {
      url = "http://127.0.0.1:8474";
    }
    faultline_url_ = normalize_url(url);
    out.faultline_url = faultline_url_;
  }

  // Replaces ${name} in every string outside `configuration`. A string that is exactly
  // "${name}" takes the variable's JSON value (so numbers stay numbers); "$${" is a literal "${".
  void substitute(Value& v, const std::string& path, rapidjson::Document::AllocatorType& alloc, bool top = false) {
    if (v.IsObject()) {
      for (auto& m : v.GetObject()) {
        const std::string key = m.name.GetString();
        if (top && key == "configuration") continue;
        substitute(m.value, member_path(path, key), alloc);
      }
    } else if (v.IsArray()) {
      for (rapidjson::SizeType i = 0; i < v.Size(); ++i) substitute(v[i], index_path(path, i), alloc);
    } else if (v.IsString()) {
      const std::string s(v.GetString(), v.GetStringLength());
      if (s.find("${") == std::string::npos) return;
      if (s.size() > 3 && s.rfind("${", 0) == 0 && s.find('}') == s.size() - 1 && s.find("${", 2) == std::string::npos) {
        if (runtime_ref(s.substr(2, s.size() - 3), path)) return;
        v.CopyFrom(variable(s.substr(2, s.size() - 3), path), alloc);
        return;
      }
      std::string out;
      for (std::size_t i = 0; i < s.size();) {
        if (s.compare(i, 3, "$${") == 0) {
          out += "${";
          i += 3;
        } else if (s.compare(i, 2, "${") == 0) {
          const auto close = s.find('}', i);
          if (close == std::string::npos) fail(path, "unterminated ${ in \"" + s + "\"");
          if (runtime_ref(s.substr(i + 2, close - i - 2), path)) {
            out += s.substr(i, close + 1 - i);  // kept for the runner (resolve_replay_refs)
            i = close + 1;
            continue;
          }
          const Value& var = variable(s.substr(i + 2, close - i - 2), path);
          out += var.IsString() ? std::string(var.GetString(), var.GetStringLength()) : json_text(var);
          i = close + 1;
        } else {
          out += s[i++];
        }
      }
      v.SetString(out.c_str(), static_cast<rapidjson::SizeType>(out.size()), alloc);
    }
  }

  // ${replay.NAME.address}: known only once replay.start NAME has run, so it is left in place.
  static bool runtime_ref(const std::string& name, const std::string& path) {
    if (name.rfind("replay.", 0) != 0) return false;
    const auto dot = name.rfind('.');
    if (dot <= 7 || name.substr(dot) != ".address")
      fail(path, "unknown reference ${" + name + "} (a replay server's address is ${replay.NAME.address})");
    return true;
  }

  const Value& variable(const std::string& name, const std::string& path) {
    auto it = vars_.FindMember(name.c_str());
    if (it == vars_.MemberEnd())
      fail(path, "unknown configuration variable \"" + name + "\" (define it under configuration or with --var)");
    return it->value;
  }

  // ---- tolerances ------------------------------------------------------------------------

  Scalar scalar(const Value& v, const std::string& path) {
    if (v.IsBool()) return Scalar::of(v.GetBool());
    if (v.IsNumber()) return Scalar::of(v.GetDouble());
    if (v.IsString()) return Scalar::of(std::string(v.GetString(), v.GetStringLength()));
    if (v.IsNull()) return Scalar::null();
    fail(path, std::string("expected a value, got ") + kind_of(v));
  }

  std::string target(const Obj& o, ProbeKind kind) {
    auto t = o.opt_string("target");
    if (!t) return "";
    if (!valid_target(kind, *t))
      fail(o.path("target"), "a " + std::string(to_string(kind)) + " result has no field \"" + *t + "\" (it has " + valid_targets(kind) + ")");
    return *t;
  }

  Tolerance tolerance(const Value& v, const std::string& path, ProbeKind kind) {
    Tolerance t;
    if (v.IsBool() || v.IsNumber() || v.IsString()) {
      t.kind = Tolerance::Kind::equals;
      t.values.push_back(scalar(v, path));
      return t;
    }
    if (v.IsArray()) {
      if (v.Empty()) fail(path, "an empty list accepts nothing");
      const bool objects = v[0].IsObject();
      for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
        if (v[i].IsObject() != objects)
          fail(index_path(path, i), "a list is either values (one of) or tolerance objects (all of), not both");
        if (objects) t.all.push_back(tolerance(v[i], index_path(path, i), kind));
        else t.values.push_back(scalar(v[i], index_path(path, i)));
      }
      t.kind = objects ? Tolerance::Kind::all : Tolerance::Kind::one_of;
      return t;
    }
    if (!v.IsObject()) fail(path, std::string("expected a value, a list or a tolerance object, got ") + kind_of(v));
    const Value* type_v = v.FindMember("type") != v.MemberEnd() ? &v["type"] : nullptr;
    if (!type_v || !type_v->IsString()) fail(path + ".type", "missing required field (range, regex, jsonpath or latency)");
    const std::string type = type_v->GetString();
    if (type == "range") {
      Obj o(v, path, {"type", "range", "min", "max", "target"});
      t.kind = Tolerance::Kind::range;
      if (const Value* r = o.get("range")) {
        if (!r->IsArray() || r->Size() != 2) fail(o.path("range"), "expected [low, high] (null for an open end)");
        for (rapidjson::SizeType i = 0; i < 2; ++i) {
          if (!(*r)[i].IsNull() && !(*r)[i].IsNumber()) fail(index_path(o.path("range"), i), std::string("expected a number or null, got ") + kind_of((*r)[i]));
        }
        if ((*r)[0].IsNumber()) t.lo = (*r)[0].GetDouble();
        if ((*r)[1].IsNumber()) t.hi = (*r)[1].GetDouble();
      } else {
        t.lo = o.opt_number("min", -HUGE_VAL);
        t.hi = o.opt_number("max", -HUGE_VAL);
        if (!t.lo && !t.hi) fail(o.path("range"), "missing required field (or min / max)");
      }
      if (t.lo && t.hi && *t.lo > *t.hi) fail(o.path("range"), "low bound is above the high bound");
      t.target = target(o, kind);
    } else if (type == "regex") {
      Obj o(v, path, {"type", "pattern", "target"});
      t.kind = Tolerance::Kind::regex;
      t.pattern = o.string("pattern");
      std::string why;
      t.regex = Regex::compile(t.pattern, why);
      if (!t.regex) fail(o.path("pattern"), "not a valid regular expression: " + why);
      t.target = target(o, kind);
    } else if (type == "jsonpath") {
      Obj o(v, path, {"type", "path", "expect", "target"});
      t.kind = Tolerance::Kind::jsonpath;
      std::string error;
      t.path = JsonPath::compile(o.string("path"), error);
      if (!t.path) fail(o.path("path"), error);
      if (auto it = v.FindMember("expect"); it != v.MemberEnd()) {
        auto doc = std::make_shared<rapidjson::Document>();
        doc->CopyFrom(it->value, doc->GetAllocator());
        t.expect = doc;
      }
      t.target = target(o, kind);
    } else if (type == "latency") {
      Obj o(v, path, {"type", "max_ms"});
      t.kind = Tolerance::Kind::latency;
      if (!o.get("max_ms")) fail(o.path("max_ms"), "missing required field");
      t.max_ms = o.number("max_ms", 0, 0);
    } else if (type == "probe") {
      fail(path + ".type", "probe tolerances (Python functions) are not supported");
    } else {
      fail(path + ".type", "unknown tolerance type \"" + type + "\" (expected range, regex, jsonpath or latency)");
    }
    return t;
  }

  // ---- providers ----------------------------------------------------------------------------

  HttpSpec http_spec(const Obj& o, std::optional<Tolerance>* expected) {
    HttpSpec s;
    s.url = o.string("url");
    if (s.url.rfind("https://", 0) == 0) fail(o.path("url"), "https URLs are not supported by drill probes yet");
    if (!has_replay_ref(s.url) && !parse_http_url(s.url)) fail(o.path("url"), "expected an http://host[:port]/path URL, got \"" + s.url + "\"");
    s.method = o.string_or("method", "GET");
    s.method = ascii_upper(s.method);
    for (const auto& [k, v] : o.labels("headers")) s.headers.emplace_back(k, v);
    const Value* body = o.get("body");
    if (!body) body = o.get("arguments");  // Chaos Toolkit's http provider sends `arguments` as the JSON body
    if (body) {
      if (body->IsString()) {
        s.body = std::string(body->GetString(), body->GetStringLength());
      } else {
        s.body = json_text(*body);
        const bool has_type = std::any_of(s.headers.begin(), s.headers.end(), [](const auto& h) {
          return ascii_lower(h.first) == "content-type";
        });
        if (!has_type) s.headers.emplace_back("Content-Type", "application/json");
      }
    }
    if (const Value* t = o.get("timeout")) {
      if (t->IsArray()) {  // Chaos Toolkit: [connect, read]
        if (t->Size() != 2 || !(*t)[0].IsNumber() || !(*t)[1].IsNumber() || (*t)[0].GetDouble() <= 0 || (*t)[1].GetDouble() <= 0)
          fail(o.path("timeout"), "expected seconds or [connect, read] seconds");
        s.connect_timeout = (*t)[0].GetDouble();
        s.timeout = (*t)[0].GetDouble() + (*t)[1].GetDouble();
      } else {
        s.timeout = o.number("timeout", 5, 0.001);
        s.connect_timeout = s.timeout;
      }
    }
    if (expected) {
      if (const Value* e = o.get("expected_status")) *expected = tolerance(*e, o.path("expected_status"), ProbeKind::http);
    }
    return s;
  }

  RespSpec resp_spec(const Obj& o) {
    RespSpec s;
    s.address = address_of(o);
    const Value& cmd = o.require("command");
    if (cmd.IsString()) s.command = split_args(cmd.GetString());
    else if (cmd.IsArray()) {
      for (rapidjson::SizeType i = 0; i < cmd.Size(); ++i) {
        if (cmd[i].IsString()) s.command.emplace_back(cmd[i].GetString(), cmd[i].GetStringLength());
        else if (cmd[i].IsNumber()) s.command.push_back(json_text(cmd[i]));
        else fail(index_path(o.path("command"), i), std::string("expected a string, got ") + kind_of(cmd[i]));
      }
    } else {
      fail(o.path("command"), std::string("expected an array of strings, got ") + kind_of(cmd));
    }
    if (s.command.empty()) fail(o.path("command"), "must not be empty");
    s.timeout = o.number("timeout", 5, 0.001);
    return s;
  }

  TcpSpec tcp_spec(const Obj& o) {
    TcpSpec s;
    s.address = address_of(o);
    s.timeout = o.number("timeout", 5, 0.001);
    s.send = o.string_or("send", "");
    s.expect = o.string_or("expect", "");
    return s;
  }

  CommandSpec command_spec(const Obj& o) {
    CommandSpec s;
    s.path = o.string("path");
    if (const Value* a = o.get("arguments")) {
      if (a->IsString()) s.arguments = split_args(a->GetString());
      else if (a->IsArray()) {
        for (rapidjson::SizeType i = 0; i < a->Size(); ++i) {
          if ((*a)[i].IsString()) s.arguments.emplace_back((*a)[i].GetString(), (*a)[i].GetStringLength());
          else if ((*a)[i].IsNumber()) s.arguments.push_back(json_text((*a)[i]));
          else fail(index_path(o.path("arguments"), i), std::string("expected a string, got ") + kind_of((*a)[i]));
        }
      } else {
        fail(o.path("arguments"), std::string("expected an array of strings or a string, got ") + kind_of(*a));
      }
    }
    for (const auto& [k, v] : o.labels("env")) s.env.emplace_back(k, v);
    s.timeout = o.number("timeout", 60, 0.001);
    s.steps = o.boolean("steps", false);
    return s;
  }

  std::string faultline(const Obj& o) {
    if (auto u = o.opt_string("faultline")) return normalize_url(*u);
    return faultline_url_;
  }

  Activity provider(Activity a, const Value& pv, const std::string& ppath) {
    if (!pv.IsObject()) fail(ppath, std::string("expected an object, got ") + kind_of(pv));
    auto it = pv.FindMember("type");
    if (it == pv.MemberEnd() || !it->value.IsString()) fail(ppath + ".type", "missing required field");
    const std::string type = it->value.GetString();
    std::optional<Tolerance> expected;
    if (type == "http") {
      Obj o(pv, ppath, {"type", "url", "method", "headers", "body", "arguments", "timeout", "expected_status"});
      a.provider = Provider::http;
      a.spec = http_spec(o, &expected);
    } else if (type == "resp") {
      Obj o(pv, ppath, {"type", "address", "command", "timeout"});
      a.provider = Provider::resp;
      a.spec = resp_spec(o);
    } else if (type == "tcp") {
      Obj o(pv, ppath, {"type", "address", "timeout", "send", "expect"});
      a.provider = Provider::tcp;
      a.spec = tcp_spec(o);
    } else if (type == "metric") {
      Obj o(pv, ppath, {"type", "faultline", "name", "labels", "window"});
      a.provider = Provider::metric;
      MetricSpec s;
      s.faultline = faultline(o);
      s.name = o.string("name");
      s.labels = o.labels("labels");
      s.window = o.number("window", 0, 0);
      a.spec = s;
    } else if (type == "command" || type == "process") {
      Obj o(pv, ppath, {"type", "path", "arguments", "env", "timeout", "steps"});
      a.provider = Provider::command;
      a.spec = command_spec(o);
    } else if (type == "toxic.add") {
      Obj o(pv, ppath, {"type", "faultline", "proxy", "toxic", "duration"});
      a.provider = Provider::toxic_add;
      ToxicSpec s;
      s.faultline = faultline(o);
      s.proxy = o.string("proxy");
      const Value& toxic = o.require("toxic");
      if (!toxic.IsObject()) fail(o.path("toxic"), std::string("expected a toxic object, got ") + kind_of(toxic));
      auto ty = toxic.FindMember("type");
      if (ty == toxic.MemberEnd() || !ty->value.IsString()) fail(o.path("toxic") + ".type", "missing required field");
      auto nm = toxic.FindMember("name");
      if (nm != toxic.MemberEnd() && !nm->value.IsNull()) {
        if (!nm->value.IsString()) fail(o.path("toxic") + ".name", "expected a string");
        s.toxic = nm->value.GetString();
      } else {
        auto st = toxic.FindMember("stream");
        const std::string stream = st != toxic.MemberEnd() && st->value.IsString() ? st->value.GetString() : "downstream";
        s.toxic = std::string(ty->value.GetString()) + "_" + stream;
      }
      s.body = json_text(toxic);
      s.duration = o.number("duration", 0, 0);
      // Checked against the toxic registry here, so drill --check catches a misspelt type or
      // attribute without a server (a fault that does nothing would otherwise PASS a drill).
      ToxicFields fields;
      ToxicConfig config;
      if (auto e = decode_toxic(toxic, fields)) fail(o.path("toxic"), e->message);
      if (auto e = build_toxic(fields, config)) fail(o.path("toxic"), strip_prefix(e->message));
      toxic_types_[s.proxy + "\n" + s.toxic] = config.type;
      a.spec = s;
    } else if (type == "toxic.update") {
      Obj o(pv, ppath, {"type", "faultline", "proxy", "toxic", "attributes", "toxicity"});
      a.provider = Provider::toxic_update;
      ToxicSpec s;
      s.faultline = faultline(o);
      s.proxy = o.string("proxy");
      s.toxic = o.string("toxic");
      rapidjson::Document body;
      body.SetObject();
      if (const Value* attrs = o.get("attributes")) {
        if (!attrs->IsObject()) fail(o.path("attributes"), std::string("expected an object, got ") + kind_of(*attrs));
        Value copy(*attrs, body.GetAllocator());
        body.AddMember("attributes", copy, body.GetAllocator());
      }
      if (auto tox = o.opt_number("toxicity", 0, 1)) body.AddMember("toxicity", *tox, body.GetAllocator());
      if (body.ObjectEmpty()) fail(ppath, "nothing to update: give attributes and/or toxicity");
      // A toxic the drill added itself has a known type: its attribute names are checked too.
      if (auto known = toxic_types_.find(s.proxy + "\n" + s.toxic); known != toxic_types_.end()) {
        if (const Value* attrs = o.get("attributes")) {
          rapidjson::Document probe;
          probe.SetObject();
          probe.AddMember("type", Value(known->second.c_str(), probe.GetAllocator()), probe.GetAllocator());
          probe.AddMember("attributes", Value(*attrs, probe.GetAllocator()), probe.GetAllocator());
          ToxicFields fields;
          ToxicConfig config;
          if (!decode_toxic(probe, fields))
            if (auto e = build_toxic(fields, config); e && e->message.find("is unknown to") != std::string::npos)
              fail(o.path("attributes"), strip_prefix(e->message));
        }
      }
      s.body = json_text(body);
      a.spec = s;
    } else if (type == "toxic.remove") {
      Obj o(pv, ppath, {"type", "faultline", "proxy", "toxic", "missing_ok"});
      a.provider = Provider::toxic_remove;
      ToxicSpec s;
      s.faultline = faultline(o);
      s.proxy = o.string("proxy");
      s.toxic = o.string("toxic");
      s.missing_ok = o.boolean("missing_ok", true);
      a.spec = s;
    } else if (type == "proxy.disable" || type == "proxy.enable") {
      Obj o(pv, ppath, {"type", "faultline", "proxy"});
      a.provider = type == "proxy.disable" ? Provider::proxy_disable : Provider::proxy_enable;
      a.spec = ProxySpec{faultline(o), o.string("proxy")};
    } else if (type == "faultline.reset") {
      Obj o(pv, ppath, {"type", "faultline"});
      a.provider = Provider::faultline_reset;
      a.spec = ProxySpec{faultline(o), ""};
    } else if (type == "wait") {
      Obj o(pv, ppath, {"type", "seconds"});
      a.provider = Provider::wait;
      o.require("seconds");
      a.spec = WaitSpec{o.number("seconds", 0, 0)};
    } else if (type == "load") {
      a.provider = Provider::load;
      a.spec = load_spec(pv, ppath);
    } else if (type == "replay.start") {
      Obj o(pv, ppath, {"type", "name", "journal", "listen", "protocol", "unmatched", "forward", "ignore", "rules"});
      a.provider = Provider::replay_start;
      ReplaySpec s;
      s.raw = json_text(pv);
      s.name = replay_name(o);
      replay::ServerOptions checked;
      if (auto e = replay::server_options_from_json(s.raw, "", {"type", "name"}, checked)) {
        const auto colon = e->find(": ");
        if (colon == std::string::npos) fail(ppath, *e);
        fail(ppath + "." + e->substr(0, colon), e->substr(colon + 2));
      }
      a.spec = std::move(s);
    } else if (type == "replay.stop") {
      Obj o(pv, ppath, {"type", "name"});
      a.provider = Provider::replay_stop;
      ReplaySpec s;
      s.raw = json_text(pv);
      s.name = replay_name(o);
      a.spec = std::move(s);
    } else if (type == "replay.client") {
      Obj o(pv, ppath, {"type", "journal", "target", "protocol", "speed", "open_loop", "concurrency_scale", "threshold",
                        "timeout", "ignore", "headers", "redis_password"});
      a.provider = Provider::replay_client;
      ReplaySpec s;
      s.raw = json_text(pv);
      s.journal = o.string("journal");
      s.target = o.string("target");
      if (!has_replay_ref(s.target)) {
        const auto colon = s.target.rfind(':');
        if (colon == std::string::npos || colon + 1 == s.target.size() ||
            s.target.find_first_not_of("0123456789", colon + 1) != std::string::npos)
          fail(o.path("target"), "expected host:port, got \"" + s.target + "\"");
      }
      s.protocol = o.string_or("protocol", "auto");
      if (s.protocol != "auto" && (s.protocol.empty() || !parse_protocol(s.protocol)))
        fail(o.path("protocol"), "expected auto, http, resp, mcp or tcp, got \"" + s.protocol + "\"");
      if (const Value* sp = o.get("speed"); sp && sp->IsString()) {
        if (std::string(sp->GetString()) != "max") fail(o.path("speed"), "expected a positive number or \"max\"");
        s.speed = 0;
      } else {
        s.speed = o.number("speed", 1, 1e-6);
      }
      s.open_loop = o.boolean("open_loop", false);
      s.concurrency_scale = static_cast<unsigned>(o.opt_count("concurrency_scale", 1).value_or(1));
      s.threshold = o.number("threshold", 0, 0, 1);
      s.timeout = o.number("timeout", 10, 0.001);
      s.ignore = o.names("ignore");
      for (const auto& [name, value] : o.labels("headers")) {
        if (auto why = replay::header_problem(name, value)) fail(member_path(o.path("headers"), name.c_str()), *why);
        s.headers.emplace_back(name, value);
      }
      s.redis_password = o.opt_string("redis_password");
      a.spec = std::move(s);
    } else if (type == "python") {
      fail(ppath + ".type", "python providers are not supported; use command (process), http, resp, tcp or metric");
    } else {
      fail(ppath + ".type", "unknown provider type \"" + type +
                                "\" (probes: http, resp, tcp, metric, command; actions: toxic.add, toxic.update, "
                                "toxic.remove, proxy.disable, proxy.enable, faultline.reset, wait, load, command, http, "
                                "replay.start, replay.stop, replay.client)");
    }
    if (expected && !a.tolerance) a.tolerance = std::move(expected);
    return a;
  }

  LoadSpec load_spec(const Value& pv, const std::string& ppath) {
    Obj o(pv, ppath, {"type", "target", "requests", "duration", "concurrency", "rate", "success", "verify"});
    LoadSpec s;
    const Value& tv = o.require("target");
    const std::string tpath = o.path("target");
    if (!tv.IsObject()) fail(tpath, std::string("expected an object, got ") + kind_of(tv));
    auto ty = tv.FindMember("type");
    if (ty == tv.MemberEnd() || !ty->value.IsString()) fail(tpath + ".type", "missing required field (http, resp or tcp)");
    const std::string type = ty->value.GetString();
    if (type == "http") {
      Obj t(tv, tpath, {"type", "url", "method", "headers", "body", "arguments", "timeout"});
      s.target = ProbeKind::http;
      s.http = http_spec(t, nullptr);
    } else if (type == "resp") {
      Obj t(tv, tpath, {"type", "address", "command", "timeout"});
      s.target = ProbeKind::resp;
      s.resp = resp_spec(t);
    } else if (type == "tcp") {
      Obj t(tv, tpath, {"type", "address", "timeout", "send", "expect"});
      s.target = ProbeKind::tcp;
      s.tcp = tcp_spec(t);
    } else {
      fail(tpath + ".type", "a load drives http, resp or tcp, not \"" + type + "\"");
    }
    s.requests = o.opt_count("requests", 1);
    s.duration = o.number("duration", 0, 0);
    if (!s.requests && s.duration <= 0) fail(ppath, "give requests (a count) and/or duration (seconds)");
    s.concurrency = static_cast<unsigned>(o.opt_count("concurrency", 1).value_or(1));
    if (s.concurrency > 10000) fail(o.path("concurrency"), "at most 10000");
    s.rate = o.number("rate", 0, 0);
    if (const Value* t = o.get("success")) s.success = tolerance(*t, o.path("success"), s.target);
    if (const Value* vv = o.get("verify")) {
      if (s.target != ProbeKind::resp) fail(o.path("verify"), "verify reads writes back and needs a resp target");
      Obj v(*vv, o.path("verify"), {"address", "command", "expect"});
      LoadSpec::Verify verify;
      verify.address = v.get("address") ? address_of(v) : s.resp.address;
      verify.command = resp_spec_command(v);
      verify.expect = v.string("expect");
      s.verify = verify;
    }
    return s;
  }

  std::vector<std::string> resp_spec_command(const Obj& o) {
    const Value& cmd = o.require("command");
    std::vector<std::string> out;
    if (!cmd.IsArray() || cmd.Empty()) fail(o.path("command"), "expected a non-empty array of strings");
    for (rapidjson::SizeType i = 0; i < cmd.Size(); ++i) {
      if (!cmd[i].IsString()) fail(index_path(o.path("command"), i), std::string("expected a string, got ") + kind_of(cmd[i]));
      out.emplace_back(cmd[i].GetString(), cmd[i].GetStringLength());
    }
    return out;
  }

  // ---- activities -----------------------------------------------------------------------------

  Activity activity(const Value& v, const std::string& path, Section section) {
    if (!v.IsObject()) fail(path, std::string("expected an activity object, got ") + kind_of(v));
    if (auto r = v.FindMember("ref"); r != v.MemberEnd()) {
      Obj o(v, path, {"ref"});
      const std::string name = o.string("ref");
      auto it = declared_.find(name);
      if (it == declared_.end()) fail(o.path("ref"), "no activity named \"" + name + "\" is declared before this reference");
      Activity a = it->second;
      if (section == Section::hypothesis && !a.probe) fail(o.path("ref"), "\"" + name + "\" is an action; the hypothesis takes probes");
      a.path = path;
      if (section != Section::hypothesis) timed_.insert(a.name);  // a hypothesis probe run in the method has times too
      return a;
    }
    Obj o(v, path,
          {"type", "name", "provider", "tolerance", "pauses", "background", "critical", "on_failure", "description",
           "controls", "configuration", "secrets"});
    if (o.get("controls")) fail(o.path("controls"), "controls are not supported by faultline drill");
    if (o.get("secrets")) fail(o.path("secrets"), "secrets are not supported; use configuration with {\"type\": \"env\"}");
    if (o.get("configuration")) fail(o.path("configuration"), "per-activity configuration is not supported; use the drill's");
    Activity a;
    a.path = path;
    a.name = o.string("name");
    std::string type = o.string_or("type", section == Section::hypothesis ? "probe" : "");
    if (type.empty()) fail(o.path("type"), "missing required field (action or probe)");
    if (type != "action" && type != "probe") fail(o.path("type"), "expected \"action\" or \"probe\", got \"" + type + "\"");
    if (section == Section::hypothesis && type != "probe") fail(o.path("type"), "the steady-state hypothesis takes probes only");
    a.probe = type == "probe";
    a = provider(std::move(a), o.require("provider"), o.path("provider"));
    if (a.probe && !is_probe_provider(a.provider))
      fail(o.path("provider") + ".type", "\"" + std::string(to_string(a.provider)) + "\" is an action; declare it with \"type\": \"action\"");
    if (const Value* t = o.get("tolerance")) {
      if (!is_probe_provider(a.provider)) fail(o.path("tolerance"), std::string(to_string(a.provider)) + " takes no tolerance");
      a.tolerance = tolerance(*t, o.path("tolerance"), probe_kind(a.provider));
    }
    if (const Value* p = o.get("pauses")) {
      Obj po(*p, o.path("pauses"), {"before", "after"});
      a.pause_before = po.number("before", 0, 0);
      a.pause_after = po.number("after", 0, 0);
    }
    a.background = o.boolean("background", false);
    if (a.background && section == Section::hypothesis) fail(o.path("background"), "hypothesis probes cannot run in the background");
    a.critical = o.boolean("critical", false);
    if (a.critical && !a.probe) fail(o.path("critical"), "only probes can be critical");
    const std::string on_failure = o.string_or("on_failure", a.probe ? "continue" : "abort");
    if (on_failure != "continue" && on_failure != "abort") fail(o.path("on_failure"), "expected \"continue\" or \"abort\"");
    a.abort_on_failure = on_failure == "abort";
    if (auto [it, fresh] = declared_.emplace(a.name, a); !fresh)
      fail(o.path("name"), "\"" + a.name + "\" is already the name of " + it->second.path + " (names must be unique)");
    if (section != Section::hypothesis) timed_.insert(a.name);
    return a;
  }

  // ---- runtime ------------------------------------------------------------------------------

  void parse_runtime(const Value& v, const std::string& path, Runtime& rt) {
    Obj o(v, path, {"hypothesis", "rollbacks", "metrics"});
    if (const Value* h = o.get("hypothesis")) {
      Obj ho(*h, o.path("hypothesis"), {"strategy", "frequency", "fail_fast"});
      const std::string s = ho.string_or("strategy", "default");
      static const std::map<std::string, HypothesisStrategy> names{
          {"default", HypothesisStrategy::default_},
          {"before-method-only", HypothesisStrategy::before_method_only},
          {"after-method-only", HypothesisStrategy::after_method_only},
          {"during-method-only", HypothesisStrategy::during_method_only},
          {"continuously", HypothesisStrategy::continuously}};
      auto it = names.find(s);
      if (it == names.end())
        fail(ho.path("strategy"), "expected default, before-method-only, after-method-only, during-method-only or continuously");
      rt.hypothesis = it->second;
      rt.frequency = ho.number("frequency", 1, 0.01);
      rt.fail_fast = ho.boolean("fail_fast", false);
    }
    if (const Value* r = o.get("rollbacks")) {
      Obj ro(*r, o.path("rollbacks"), {"strategy"});
      const std::string s = ro.string_or("strategy", "default");
      static const std::map<std::string, RollbackStrategy> names{{"default", RollbackStrategy::default_},
                                                                 {"always", RollbackStrategy::always},
                                                                 {"never", RollbackStrategy::never},
                                                                 {"deviated", RollbackStrategy::deviated}};
      auto it = names.find(s);
      if (it == names.end()) fail(ro.path("strategy"), "expected default, always, never or deviated");
      rt.rollbacks = it->second;
    }
    if (const Value* m = o.get("metrics")) {
      Obj mo(*m, o.path("metrics"), {"interval"});
      rt.metrics_interval = mo.number("interval", 0.1, 0.01);
    }
  }

  // ---- verdicts -------------------------------------------------------------------------------

  // An event key: "NAME" (its end), "NAME.start", "NAME.end", "NAME.removed" (a toxic.add
  // with a duration), "method.start", "method.end".
  std::string event(const Obj& o, const char* key, bool required) {
    auto text = o.opt_string(key);
    if (!text) {
      if (required) fail(o.path(key), "missing required field (an activity name, NAME.start or NAME.end)");
      return "";
    }
    // "NAME+2s", "NAME.removed-500ms": the event, moved (no marker activities needed).
    if (!known_event(*text)) {
      if (auto split = split_offset(*text); split && known_event(split->first)) {
        const auto sign = text->find_last_of("+-");
        return event_key(o, key, split->first) + text->substr(sign);
      }
    }
    return event_key(o, key, *text);
  }

  bool known_event(const std::string& text) const {
    if (text == "method.start" || text == "method.end" || timed_.count(text)) return true;
    const auto [name, edge] = split_edge(text);
    return !edge.empty() && timed_.count(name);
  }

  // The event as the runner records it: an activity's plain name is its end.
  std::string event_key(const Obj& o, const char* key, const std::string& text) {
    if (text == "method.start" || text == "method.end") return text;
    if (timed_.count(text)) return text + ".end";
    const auto [name, edge] = split_edge(text);
    if (edge.empty() || !timed_.count(name))
      fail(o.path(key), "no method or rollback activity named \"" + text +
                            "\" (or use method.start / method.end; an offset is written NAME+2s or NAME-500ms)");
    if (edge == ".removed") {
      const auto& a = declared_.at(name);
      const auto* t = std::get_if<ToxicSpec>(&a.spec);
      if (a.provider != Provider::toxic_add || !t || t->duration <= 0)
        fail(o.path(key), "\"" + name + "\" is not a toxic.add with a duration, so it has no .removed");
    }
    return text;
  }

  std::vector<std::string> sources(const Obj& o, const char* key, bool required) {
    auto names = o.names(key);
    if (names.empty() && required) fail(o.path(key), "missing required field (names of load or probe activities)");
    for (std::size_t i = 0; i < names.size(); ++i) {
      auto it = declared_.find(names[i]);
      if (it == declared_.end() || !(it->second.provider == Provider::load || is_probe_provider(it->second.provider)))
        fail(o.get(key)->IsArray() ? index_path(o.path(key), i) : o.path(key),
             "no load or probe named \"" + names[i] + "\"");
    }
    return names;
  }

  ProxyRef proxy_ref(const Obj& o, const char* key) {
    const Value& v = o.require(key);
    if (v.IsString()) return {faultline_url_, v.GetString()};
    Obj p(v, o.path(key), {"proxy", "faultline"});
    return {faultline(p), p.string("proxy")};
  }

  // The activities that inject a verdict's fault: `fault` (a name or a list), else the
  // activity `after` names when that is a fault. With require_failure, one is needed.
  std::vector<FaultRef> fault_refs(const Obj& o, const std::string& after, bool required) {
    std::vector<std::string> names = o.names("fault");
    const bool given = !names.empty();
    if (!given) {
      std::string base = after;
      if (auto split = split_offset(base); split && !timed_.count(base)) base = split->first;
      base = split_edge(base).first;
      if (auto it = declared_.find(base); it != declared_.end() &&
          (it->second.provider == Provider::toxic_add || it->second.provider == Provider::proxy_disable))
        names.push_back(base);
    }
    std::vector<FaultRef> out;
    for (std::size_t i = 0; i < names.size(); ++i) {
      const std::string where = given ? (o.get("fault")->IsArray() ? index_path(o.path("fault"), i) : o.path("fault")) : o.path("after");
      auto it = declared_.find(names[i]);
      if (it == declared_.end() || !(it->second.provider == Provider::toxic_add || it->second.provider == Provider::proxy_disable))
        fail(where, "no toxic.add or proxy.disable activity named \"" + names[i] + "\"");
      FaultRef f;
      f.activity = names[i];
      f.provider = it->second.provider;
      if (const auto* t = std::get_if<ToxicSpec>(&it->second.spec)) {
        f.proxy = {t->faultline, t->proxy};
        f.toxic = t->toxic;
      } else {
        const auto& p = std::get<ProxySpec>(it->second.spec);
        f.proxy = {p.faultline, p.proxy};
        for (const auto& [name, a] : declared_) {
          const auto* q = std::get_if<ProxySpec>(&a.spec);
          if (a.provider == Provider::proxy_enable && q && q->faultline == p.faultline && q->proxy == p.proxy) f.enables.push_back(name);
        }
      }
      out.push_back(std::move(f));
    }
    if (out.empty() && required)
      fail(o.path("after"), "which fault is recovered from? \"" + after +
                                "\" is not a toxic.add or proxy.disable: name it in \"fault\" (its effect is read from faultline's "
                                "counters), or set \"require_failure\": false");
    return out;
  }

  void parse_verdicts(const Value& v, const std::string& path, Drill& out) {
    if (!v.IsArray()) fail(path, std::string("expected an array, got ") + kind_of(v));
    std::map<std::string, std::string> names;
    for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
      const std::string vpath = index_path(path, i);
      const Value& item = v[i];
      if (!item.IsObject()) fail(vpath, std::string("expected a verdict object, got ") + kind_of(item));
      auto ty = item.FindMember("type");
      if (ty == item.MemberEnd() || !ty->value.IsString()) fail(vpath + ".type", "missing required field");
      const std::string type = ty->value.GetString();
      VerdictSpec s;
      s.path = vpath;
      auto common = [&](std::initializer_list<const char*> extra) {
        std::vector<const char*> keys{"type", "name", "criterion", "description"};
        keys.insert(keys.end(), extra.begin(), extra.end());
        return keys;
      };
      std::unique_ptr<Obj> op;
      auto make = [&](std::initializer_list<const char*> extra) {
        op = std::make_unique<Obj>(item, vpath, common(extra));
      };
      if (type == "success_rate") {
        s.type = VerdictType::success_rate;
        make({"source", "threshold", "min_samples", "from", "until"});
      } else if (type == "error_recovery") {
        s.type = VerdictType::error_recovery;
        make({"source", "after", "fault", "within", "later_success_rate", "success_rate", "max_recovery", "require_failure",
              "retries", "from", "until"});
      } else if (type == "latency") {
        s.type = VerdictType::latency;
        make({"source", "avg", "p50", "p95", "p99", "max", "calls", "min_samples", "from", "until"});
      } else if (type == "failover") {
        s.type = VerdictType::failover;
        if (item.HasMember("primary_max_delta"))
          fail(vpath + ".primary_max_delta",
               "replaced by primary_max_share: the share of application traffic still on the primary after the move "
               "(a byte total grows with the drill's length)");
        make({"primary", "backup", "after", "until", "within", "traffic", "min_requests", "primary_max_share", "metric",
              "labels", "min_delta", "health", "writes"});
      } else if (type == "no_critical_errors") {
        s.type = VerdictType::no_critical_errors;
        make({"no_5xx", "max"});
      } else if (type == "aggregate") {
        s.type = VerdictType::aggregate;
        make({"of", "min_ratio"});
      } else {
        fail(vpath + ".type", "unknown verdict type \"" + type +
                                  "\" (expected success_rate, error_recovery, latency, failover, no_critical_errors or aggregate)");
      }
      Obj& o = *op;
      s.name = o.string_or("name", type);
      s.criterion = o.string_or("criterion", "");
      if (auto [it, fresh] = names.emplace(s.name, vpath); !fresh)
        fail(o.path("name"), "\"" + s.name + "\" is already the name of " + it->second + " (give each verdict a name)");
      switch (s.type) {
        case VerdictType::success_rate:
          s.sources = sources(o, "source", true);
          s.threshold = o.number("threshold", 0.95, 0, 1);
          s.min_samples = o.opt_count("min_samples", 1).value_or(1);
          s.from = event(o, "from", false);
          s.until = event(o, "until", false);
          break;
        case VerdictType::error_recovery:
          s.sources = sources(o, "source", true);
          s.after = event(o, "after", true);
          s.within = o.number("within", 1, 0);
          s.later_success_rate = o.number("later_success_rate", 1, 0, 1);
          s.success_rate = o.number("success_rate", 1, 0, 1);
          s.max_recovery = o.opt_number("max_recovery", 0);
          s.require_failure = o.boolean("require_failure", true);
          s.from = event(o, "from", false);
          s.until = event(o, "until", false);
          s.faults = fault_refs(o, s.after, s.require_failure);
          if (const Value* r = o.get("retries")) {
            Obj ro(*r, o.path("retries"), {"proxy", "faultline", "metric", "min", "max"});
            VerdictSpec::Retries retries;
            retries.proxy = {faultline(ro), ro.string("proxy")};
            retries.metric = ro.string_or("metric", retries.metric);
            retries.min = ro.opt_number("min", 0);
            retries.max = ro.opt_number("max", 0);
            if (!retries.min && !retries.max) fail(o.path("retries"), "give min (proof that retries happened) and/or max (a budget)");
            s.retries = retries;
          }
          break;
        case VerdictType::latency: {
          s.sources = sources(o, "source", true);
          s.avg = o.opt_number("avg", 0);
          s.p50 = o.opt_number("p50", 0);
          s.p95 = o.opt_number("p95", 0);
          s.p99 = o.opt_number("p99", 0);
          s.max = o.opt_number("max", 0);
          if (!s.avg && !s.p50 && !s.p95 && !s.p99 && !s.max) fail(vpath, "give at least one bound: avg, p50, p95, p99 or max (ms)");
          const std::string calls = o.string_or("calls", "all");
          if (calls != "all" && calls != "ok") fail(o.path("calls"), "expected \"all\" or \"ok\"");
          s.ok_only = calls == "ok";
          s.min_samples = o.opt_count("min_samples", 1).value_or(1);
          s.from = event(o, "from", false);
          s.until = event(o, "until", false);
          break;
        }
        case VerdictType::failover: {
          s.primary = proxy_ref(o, "primary");
          s.backup = proxy_ref(o, "backup");
          s.after = event(o, "after", true);
          s.until = event(o, "until", false);
          s.within = o.number("within", 5, 0);
          if (auto m = o.opt_string("metric")) {
            s.custom_metric = true;
            s.metric = *m;
            s.labels = o.labels("labels");
            s.min_requests = o.number("min_delta", 1, 0);
            if (o.get("traffic")) fail(o.path("traffic"), "traffic counts requests; with a custom metric there is nothing to exclude");
            if (o.get("min_requests")) fail(o.path("min_requests"), "with a custom metric, the threshold is min_delta");
          } else {
            if (o.get("labels")) fail(o.path("labels"), "labels select a custom metric's series: give metric too");
            if (o.get("min_delta")) fail(o.path("min_delta"), "min_delta goes with a custom metric; application traffic uses min_requests");
            s.min_requests = o.number("min_requests", 1, 0);
            if (const Value* t = o.get("traffic")) {
              Obj to(*t, o.path("traffic"), {"exclude"});
              if (const Value* ex = to.get("exclude")) {
                if (!ex->IsArray()) fail(to.path("exclude"), std::string("expected an array of match objects, got ") + kind_of(*ex));
                for (rapidjson::SizeType k = 0; k < ex->Size(); ++k) {
                  if (!(*ex)[k].IsObject() || (*ex)[k].ObjectEmpty())
                    fail(index_path(to.path("exclude"), k), "expected a match object, e.g. {\"path\": \"/health\"}");
                  s.traffic_exclude.push_back(json_text((*ex)[k]));
                }
              }
            }
          }
          s.primary_max_share = o.number("primary_max_share", 0.05, 0, 1);
          if (const Value* h = o.get("health")) {
            Obj ho(*h, o.path("health"), {"source", "min"});
            VerdictSpec::Health health;
            health.sources = sources(ho, "source", true);
            health.min = ho.number("min", 0.75, 0, 1);
            s.health = health;
          }
          if (auto w = o.opt_string("writes")) {
            auto it = declared_.find(*w);
            const auto* load = it == declared_.end() ? nullptr : std::get_if<LoadSpec>(&it->second.spec);
            if (!load || !load->verify) fail(o.path("writes"), "no resp load with verify named \"" + *w + "\"");
            s.writes = *w;
          }
          break;
        }
        case VerdictType::no_critical_errors: {
          s.no_5xx = sources(o, "no_5xx", false);
          for (std::size_t k = 0; k < s.no_5xx.size(); ++k) {
            const auto& a = declared_.at(s.no_5xx[k]);
            const auto* load = std::get_if<LoadSpec>(&a.spec);
            if (a.provider != Provider::http && !(load && load->target == ProbeKind::http))
              fail(o.path("no_5xx"), "\"" + s.no_5xx[k] + "\" is not an http probe or http load");
          }
          s.max_errors = o.opt_count("max", 0).value_or(0);
          const bool any_critical = std::any_of(declared_.begin(), declared_.end(), [](const auto& d) { return d.second.critical; });
          if (!any_critical && s.no_5xx.empty())
            fail(vpath, "nothing to check: mark probes \"critical\": true and/or list http series in no_5xx");
          break;
        }
        case VerdictType::aggregate:
          s.of = o.names("of");
          s.min_ratio = o.number("min_ratio", 1, 0, 1);
          break;
      }
      out.verdicts.push_back(std::move(s));
    }
    // Aggregates may name any verdict (before or after them), but not themselves.
    for (const auto& s : out.verdicts) {
      if (s.type != VerdictType::aggregate) continue;
      for (const auto& n : s.of) {
        if (n == s.name) fail(s.path + ".of", "an aggregate cannot include itself");
        auto it = std::find_if(out.verdicts.begin(), out.verdicts.end(), [&](const auto& o) { return o.name == n; });
        if (it == out.verdicts.end()) fail(s.path + ".of", "no verdict named \"" + n + "\"");
        if (it->type == VerdictType::aggregate) fail(s.path + ".of", "\"" + n + "\" is an aggregate; list what it aggregates instead");
      }
    }
  }

  static std::string strip_prefix(const std::string& message) {
    constexpr std::string_view prefix = "bad request body: ";
    return message.rfind(prefix, 0) == 0 ? message.substr(prefix.size()) : message;
  }

  std::map<std::string, std::string> toxic_types_;  // "proxy\ntoxic" -> type, for toxic.add activities
  const ParseOptions& options_;
  rapidjson::Document vars_;
  std::string faultline_url_;
  std::map<std::string, Activity> declared_;
  std::set<std::string> timed_;  // method and rollback activity names: they have events
};

}  // namespace

std::optional<std::string> parse_drill(std::string_view text, const ParseOptions& options, Drill& out) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag>(text.data(), text.size());
  if (doc.HasParseError()) {
    // Line and column: what a person finds in an editor.
    const auto [line, column] = line_and_column(text, doc.GetErrorOffset());
    return "line " + std::to_string(line) + ", column " + std::to_string(column) + ": not valid JSON: " +
           rapidjson::GetParseError_En(doc.GetParseError());
  }
  Drill drill;
  try {
    Parser parser(options);
    parser.parse(doc, drill);
  } catch (const ParseError& e) {
    return e.path + ": " + e.message;
  }
  drill.file = out.file;
  out = std::move(drill);
  return std::nullopt;
}

std::optional<std::string> load_drill(const std::string& path, const ParseOptions& options, Drill& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return path + ": cannot open the file";
  std::stringstream buffer;
  buffer << in.rdbuf();
  out.file = path;
  if (auto error = parse_drill(buffer.str(), options, out)) return path + ": " + *error;
  return std::nullopt;
}

}  // namespace faultline::drill

namespace faultline::drill {

std::optional<std::string> resolve_replay_refs(Activity& a,
                                               const std::function<std::optional<std::string>(const std::string&)>& address) {
  std::optional<std::string> error;
  auto fix = [&](std::string& s) {
    for (std::size_t at = s.find("${replay."); at != std::string::npos && !error; at = s.find("${replay.", at)) {
      const auto close = s.find('}', at);
      if (close == std::string::npos) return;
      const std::string ref = s.substr(at + 2, close - at - 2);  // replay.NAME.address
      const std::string name = ref.substr(7, ref.rfind('.') - 7);
      const auto value = address(name);
      if (!value) {
        error = "${" + ref + "}: no replay server named " + name + " is running (start it with replay.start first)";
        return;
      }
      s.replace(at, close + 1 - at, *value);
      at += value->size();
    }
  };
  auto fix_all = [&](std::vector<std::string>& v) {
    for (auto& s : v) fix(s);
  };
  auto fix_headers = [&](Headers& h) {
    for (auto& kv : h) fix(kv.second);
  };
  auto fix_http = [&](HttpSpec& s) {
    fix(s.url);
    fix_headers(s.headers);
    if (s.body) fix(*s.body);
  };
  auto fix_tcp = [&](TcpSpec& s) {
    fix(s.address);
    fix(s.send);
    fix(s.expect);
  };
  std::visit(
      [&](auto& s) {
        using T = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<T, HttpSpec>) {
          fix_http(s);
        } else if constexpr (std::is_same_v<T, RespSpec>) {
          fix(s.address);
          fix_all(s.command);
        } else if constexpr (std::is_same_v<T, TcpSpec>) {
          fix_tcp(s);
        } else if constexpr (std::is_same_v<T, MetricSpec>) {
          fix(s.faultline);
        } else if constexpr (std::is_same_v<T, CommandSpec>) {
          fix(s.path);
          fix_all(s.arguments);
          fix_headers(s.env);
        } else if constexpr (std::is_same_v<T, ToxicSpec>) {
          fix(s.faultline);
          fix(s.proxy);
          fix(s.body);
        } else if constexpr (std::is_same_v<T, ProxySpec>) {
          fix(s.faultline);
          fix(s.proxy);
        } else if constexpr (std::is_same_v<T, LoadSpec>) {
          fix_http(s.http);
          fix(s.resp.address);
          fix_all(s.resp.command);
          fix_tcp(s.tcp);
          if (s.verify) {
            fix(s.verify->address);
            fix_all(s.verify->command);
          }
        } else if constexpr (std::is_same_v<T, ReplaySpec>) {
          fix(s.raw);
          fix(s.target);
          fix(s.journal);
        }
      },
      a.spec);
  return error;
}

}  // namespace faultline::drill
