// The protocol fault types: their attribute schemas and the compile step that turns
// attributes (numbers, strings, `match` objects) into a ProtocolFault once per update.
#include "base/ascii.hpp"
#include "faults/protocol_fault.hpp"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cctype>

#include "faults/toxic.hpp"
#include "protocols/http.hpp"

namespace faultline {
namespace {

std::string compact(const rapidjson::Value& v) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  v.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}



bool parse_json(std::string_view text, rapidjson::Document& doc) {
  doc.Parse(text.data(), text.size());
  return !doc.HasParseError();
}

// Reads `headers` ({"Retry-After":"2"} or [{"name":..,"value":..}]) into name/value pairs.
bool parse_headers(std::string_view json, std::vector<HeaderValue>& out, std::string& error) {
  rapidjson::Document doc;
  if (!parse_json(json, doc)) return error = "attribute headers is not JSON", false;
  if (doc.IsNull()) return true;
  if (!doc.IsObject()) return error = "attribute headers must be an object of header name to value", false;
  for (auto it = doc.MemberBegin(); it != doc.MemberEnd(); ++it) {
    const std::string name(it->name.GetString(), it->name.GetStringLength());
    std::string value;
    if (it->value.IsString()) value.assign(it->value.GetString(), it->value.GetStringLength());
    else if (it->value.IsNumber()) value = compact(it->value);
    else return error = "attribute headers." + name + " must be a string or a number", false;
    if (name.empty() || name.find_first_of(" :\r\n\t") != std::string::npos) {
      return error = "attribute headers: \"" + name + "\" is not a valid header name", false;
    }
    if (value.find_first_of("\r\n") != std::string::npos) {
      return error = "attribute headers." + name + " must not contain line breaks", false;
    }
    out.push_back({name, value});
  }
  return true;
}

Duration ms(std::int64_t v) { return std::chrono::milliseconds(v); }

std::optional<std::string> check_range(const ToxicConfig& c, std::string_view name, double lo, double hi) {
  const double v = c.get_double(name);
  if (v < lo || v > hi) {
    return "attribute " + std::string(name) + " must be between " + std::to_string(static_cast<long long>(lo)) + " and " +
           std::to_string(static_cast<long long>(hi));
  }
  return std::nullopt;
}

AttributeSpec match_spec() { return {"match", AttributeKind::json, 0, {}, false, "{}"}; }
AttributeSpec delay_spec(double def) { return {"delay", AttributeKind::integer, def}; }
AttributeSpec jitter_spec() { return {"jitter", AttributeKind::integer, 0}; }

// Every protocol fault shares the compile skeleton: the match, then the type's own fields.
template <typename Fill>
std::function<std::shared_ptr<const ProtocolFault>(const ToxicConfig&, std::string&)> compiler(Fill fill) {
  return [fill](const ToxicConfig& c, std::string& error) -> std::shared_ptr<const ProtocolFault> {
    auto fault = std::make_shared<ProtocolFault>();
    fault->type = c.type;
    auto match = parse_match(c.get_text("match"), error);
    if (!match) return nullptr;
    fault->match = std::move(*match);
    if (c.find("delay")) {
      if (auto e = check_range(c, "delay", 0, kMaxAttribute)) return error = *e, nullptr;
      fault->delay = ms(c.get_int("delay"));
    }
    if (c.find("jitter")) {
      if (auto e = check_range(c, "jitter", 0, kMaxAttribute)) return error = *e, nullptr;
      fault->jitter = ms(c.get_int("jitter"));
    }
    if (!fill(c, *fault, error)) return nullptr;
    return fault;
  };
}

bool no_fill(const ToxicConfig&, ProtocolFault&, std::string&) { return true; }

bool fill_answer(const ToxicConfig& c, ProtocolFault& f, std::string& error, bool replace) {
  const std::int64_t status = c.get_int("status");
  if (!(replace && status == 0) && (status < 200 || status > 599)) {
    error = replace ? "attribute status must be 0 (keep the upstream's) or a final status between 200 and 599"
                    : "attribute status must be a final status between 200 and 599 (a 1xx would leave the client waiting)";
    return false;
  }
  f.status = static_cast<int>(status);
  if (!parse_headers(c.get_text("headers"), f.headers, error)) return false;
  rapidjson::Document body;
  if (!parse_json(c.get_text("body"), body)) return error = "attribute body is not JSON", false;
  if (body.IsString()) f.body = std::string(body.GetString(), body.GetStringLength());
  else if (!body.IsNull()) f.body = compact(body);  // an object or array: sent as JSON
  return true;
}

void register_type(ToxicRegistry& r, std::string_view name, Layer layer, std::vector<AttributeSpec> specs,
                   std::function<std::shared_ptr<const ProtocolFault>(const ToxicConfig&, std::string&)> compile) {
  specs.push_back(match_spec());
  ToxicType t;
  t.name = name;
  t.attributes = std::move(specs);
  t.make = [](const ToxicConfig&, Rng, const StageContext&) { return std::unique_ptr<Stage>(); };
  t.layer = layer;
  t.compile = std::move(compile);
  r.add(std::move(t));
}

}  // namespace

std::optional<MessageMatch> parse_match(std::string_view json, std::string& error) {
  MessageMatch m;
  rapidjson::Document doc;
  if (!parse_json(json, doc)) return error = "attribute match is not JSON", std::nullopt;
  if (doc.IsNull()) return m;
  if (!doc.IsObject()) return error = "attribute match must be an object, e.g. {\"path\":\"/v1/chat/completions\"}", std::nullopt;
  auto text = [&](const rapidjson::Value& v, const std::string& key, std::string& out) {
    if (!v.IsString()) return error = "attribute match." + key + " must be a string", false;
    out.assign(v.GetString(), v.GetStringLength());
    return true;
  };
  for (auto it = doc.MemberBegin(); it != doc.MemberEnd(); ++it) {
    const std::string key(it->name.GetString(), it->name.GetStringLength());
    const rapidjson::Value& v = it->value;
    if (key == "method") {
      if (!text(v, key, m.method)) return std::nullopt;
    } else if (key == "path") {
      if (!text(v, key, m.path)) return std::nullopt;
    } else if (key == "path_regex") {
      if (!text(v, key, m.path_regex_text)) return std::nullopt;
      std::string why;
      m.path_regex = Regex::compile(m.path_regex_text, why);
      if (!m.path_regex) return error = "attribute match.path_regex is not a valid regular expression: " + why, std::nullopt;
    } else if (key == "header" || key == "headers") {
      if (!v.IsObject()) return error = "attribute match." + key + " must be an object of header name to value", std::nullopt;
      for (auto h = v.MemberBegin(); h != v.MemberEnd(); ++h) {
        const std::string name = ascii_lower(std::string_view(h->name.GetString(), h->name.GetStringLength()));
        if (!h->value.IsString()) return error = "attribute match." + key + "." + name + " must be a string", std::nullopt;
        m.headers.emplace_back(name, std::string(h->value.GetString(), h->value.GetStringLength()));
      }
    } else if (key == "body" || key == "json") {
      if (!v.IsObject()) return error = "attribute match." + key + " must be an object of dotted JSON path to value", std::nullopt;
      for (auto b = v.MemberBegin(); b != v.MemberEnd(); ++b) {
        m.body.emplace_back(std::string(b->name.GetString(), b->name.GetStringLength()), compact(b->value));
      }
    } else if (key == "rpc_method") {
      if (!text(v, key, m.rpc_method)) return std::nullopt;
    } else if (key == "tool") {
      if (!text(v, key, m.tool)) return std::nullopt;
    } else if (key == "session") {
      if (!text(v, key, m.session)) return std::nullopt;
    } else if (key == "command") {
      if (!text(v, key, m.command)) return std::nullopt;
      m.command = ascii_upper(m.command);
    } else if (key == "key") {
      if (!text(v, key, m.key)) return std::nullopt;
    } else {
      error = "attribute match." + key +
              " is unknown (expected method, path, path_regex, header, body, rpc_method, tool, session, command, key)";
      return std::nullopt;
    }
  }
  return m;
}

bool MessageMatch::matches_head(const http::Head& head) const {
  if (!method.empty() && head.method != method) return false;
  const std::string_view p = head.path();
  if (!path.empty() && p.substr(0, path.size()) != path) return false;
  if (path_regex && !path_regex->full_match(p)) return false;
  for (const auto& [name, value] : headers) {
    auto have = head.field(name);
    if (!have || (value != "*" && *have != value)) return false;
  }
  if (!session.empty()) {
    auto have = head.field("mcp-session-id");
    if (!have || *have != session) return false;
  }
  return true;
}

namespace {
void merge_into(rapidjson::Value& target, const rapidjson::Value& patch, rapidjson::Document::AllocatorType& a) {
  if (!patch.IsObject()) {
    target.CopyFrom(patch, a);
    return;
  }
  if (!target.IsObject()) target.SetObject();
  for (auto it = patch.MemberBegin(); it != patch.MemberEnd(); ++it) {
    auto found = target.FindMember(it->name);
    if (it->value.IsNull()) {
      if (found != target.MemberEnd()) target.RemoveMember(found);
      continue;
    }
    if (found == target.MemberEnd()) {
      rapidjson::Value name(it->name, a);
      rapidjson::Value value(rapidjson::kObjectType);
      merge_into(value, it->value, a);
      target.AddMember(name, value, a);
    } else {
      merge_into(found->value, it->value, a);
    }
  }
}
}  // namespace

std::optional<std::string> merge_patch(std::string_view document, std::string_view patch) {
  rapidjson::Document doc, p;
  if (!parse_json(document, doc) || !parse_json(patch, p)) return std::nullopt;
  merge_into(doc, p, doc.GetAllocator());
  return compact(doc);
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "";
  }
}

namespace {

void add_protocol_faults(ToxicRegistry& r) {
  const auto headers = AttributeSpec{"headers", AttributeKind::json, 0, {}, false, "{}"};
  const auto body = AttributeSpec{"body", AttributeKind::json, 0, {}, false, "null"};
  const auto end_mode = [](std::string_view first) {
    return AttributeSpec{"mode", AttributeKind::text, 0,
                         first == "reset" ? std::vector<std::string_view>{"reset", "close"}
                                          : std::vector<std::string_view>{"close", "reset"}};
  };
  const auto when = AttributeSpec{"when", AttributeKind::text, 0, {"before", "after"}};

  register_type(r, "http_abort", Layer::http, {{"status", AttributeKind::integer, 503}, headers, body},
                compiler([](const ToxicConfig& c, ProtocolFault& f, std::string& e) { return fill_answer(c, f, e, false); }));
  register_type(r, "http_replace", Layer::http, {{"status", AttributeKind::integer, 0}, headers, body},
                compiler([](const ToxicConfig& c, ProtocolFault& f, std::string& e) { return fill_answer(c, f, e, true); }));
  register_type(r, "http_patch", Layer::http, {{"patch", AttributeKind::json, 0, {}, false, "{}"}, headers},
                compiler([](const ToxicConfig& c, ProtocolFault& f, std::string& e) {
                  rapidjson::Document doc;
                  if (!parse_json(c.get_text("patch"), doc) || !doc.IsObject()) {
                    e = "attribute patch must be a JSON object (a JSON merge patch for the response body)";
                    return false;
                  }
                  f.patch = c.get_text("patch");
                  return parse_headers(c.get_text("headers"), f.headers, e);
                }));
  register_type(r, "http_delay", Layer::http,
                {delay_spec(1000), jitter_spec(), {"phase", AttributeKind::text, 0, {"request", "response"}}},
                compiler([](const ToxicConfig& c, ProtocolFault& f, std::string&) {
                  f.before_response = c.get_text("phase") == "response";
                  return true;
                }));
  register_type(r, "http_reset", Layer::http, {{"after_bytes", AttributeKind::integer, 0}, end_mode("reset")},
                compiler([](const ToxicConfig& c, ProtocolFault& f, std::string& e) {
                  if (auto err = check_range(c, "after_bytes", 0, kMaxAttribute)) return e = *err, false;
                  f.after_bytes = c.get_int("after_bytes");
                  f.end = c.get_text("mode") == "close" ? EndKind::close : EndKind::reset;
                  return true;
                }));
  // Envoy's header-controlled faults: the client asks for its own abort or delay.
  register_type(r, "http_header_faults", Layer::http, {}, compiler(no_fill));

  register_type(r, "sse_cut", Layer::http, {{"after_events", AttributeKind::integer, 1}, end_mode("close")},
                compiler([](const ToxicConfig& c, ProtocolFault& f, std::string& e) {
                  if (auto err = check_range(c, "after_events", 0, kMaxAttribute)) return e = *err, false;
                  f.after_events = c.get_int("after_events");
                  f.end = c.get_text("mode") == "reset" ? EndKind::reset : EndKind::close;
                  return true;
                }));
  register_type(r, "sse_stall", Layer::http,
                {{"after_events", AttributeKind::integer, 1}, {"duration", AttributeKind::integer, 0}},
                compiler([](const ToxicConfig& c, ProtocolFault& f, std::string& e) {
                  if (auto err = check_range(c, "after_events", 0, kMaxAttribute)) return e = *err, false;
                  if (auto err = check_range(c, "duration", 0, kMaxAttribute)) return e = *err, false;
                  f.after_events = c.get_int("after_events");
                  f.stall = ms(c.get_int("duration"));
                  return true;
                }));
  register_type(r, "sse_delay", Layer::http, {delay_spec(500), jitter_spec()}, compiler(no_fill));
  register_type(r, "sse_corrupt", Layer::http, {{"after_events", AttributeKind::integer, 0}},
                compiler([](const ToxicConfig& c, ProtocolFault& f, std::string& e) {
                  if (auto err = check_range(c, "after_events", 0, kMaxAttribute)) return e = *err, false;
                  f.after_events = c.get_int("after_events");
                  return true;
                }));

  register_type(r, "resp_error", Layer::resp,
                {{"error", AttributeKind::string, 0, {}, false, "ERR Fault injected by faultline"}, when},
                compiler([](const ToxicConfig& c, ProtocolFault& f, std::string& e) {
                  f.error_line = c.get_text("error");
                  if (!f.error_line.empty() && f.error_line.front() == '-') f.error_line.erase(0, 1);
                  if (f.error_line.empty() || f.error_line.find_first_of("\r\n") != std::string::npos) {
                    e = "attribute error must be one line like \"LOADING Redis is loading the dataset in memory\"";
                    return false;
                  }
                  f.after_forward = c.get_text("when") == "after";
                  return true;
                }));
  register_type(r, "resp_delay", Layer::resp, {delay_spec(100), jitter_spec()}, compiler(no_fill));
  register_type(r, "resp_drop", Layer::resp, {when}, compiler([](const ToxicConfig& c, ProtocolFault& f, std::string&) {
                  f.after_forward = c.get_text("when") == "after";
                  f.end = EndKind::close;
                  return true;
                }));

  register_type(r, "jsonrpc_error", Layer::jsonrpc,
                {{"code", AttributeKind::integer, -32603},
                 {"message", AttributeKind::string, 0, {}, false, "Fault injected by faultline"},
                 {"as_result", AttributeKind::json, 0, {}, false, "false"}},
                compiler([](const ToxicConfig& c, ProtocolFault& f, std::string& e) {
                  if (auto err = check_range(c, "code", -2147483648.0, 2147483647.0)) return e = *err, false;
                  f.code = static_cast<int>(c.get_int("code"));
                  f.message = c.get_text("message");
                  const std::string& as_result = c.get_text("as_result");
                  if (as_result != "true" && as_result != "false") return e = "attribute as_result must be true or false", false;
                  f.as_result = as_result == "true";
                  return true;
                }));
  register_type(r, "jsonrpc_delay", Layer::jsonrpc, {delay_spec(1000), jitter_spec()}, compiler(no_fill));
  register_type(r, "jsonrpc_drop", Layer::jsonrpc, {}, compiler(no_fill));
  register_type(r, "mcp_session_kill", Layer::jsonrpc, {}, compiler(no_fill));
}

const FaultRegistrar registrar(add_protocol_faults);

}  // namespace

}  // namespace faultline
