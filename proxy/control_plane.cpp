#include "proxy/control_plane.hpp"

#include "base/ascii.hpp"
#include "base/json_writer.hpp"

#include <algorithm>
#include <fstream>
#include <map>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <spdlog/spdlog.h>

#include "faults/protocol_fault.hpp"
#include "proxy/address.hpp"
#include "proxy/api_checks.hpp"
#include "proxy/json_io.hpp"
#include "proxy/server_context.hpp"
#include "proxy/tls.hpp"

namespace faultline {
namespace {

constexpr const char* kToxiproxyVersion = "2.12.0";

ApiResponse json_response(int status, std::string body) { return ApiResponse{status, "application/json", std::move(body)}; }
ApiResponse error_response(int status, std::string_view message) {
  return ApiResponse{status, "application/json", error_json(status, message)};
}
ApiResponse error_response(const ApiError& e) { return error_response(e.status, e.message); }

// Toxiproxy's listing order: upstream toxics first, then downstream, each as added
// (then faultline's "both").
void write_toxics(JsonWriter& w, const Proxy& proxy) {
  w.begin_array();
  for (Stream s : {Stream::upstream, Stream::downstream, Stream::both}) {
    for (const auto& t : proxy.toxics()) {
      if (t->stream == s) write_toxic(w, *t);
    }
  }
  w.end_array();
}

// A proxy as the API shows it.
void write_proxy(JsonWriter& w, const Proxy& p) {
  w.begin_object();
  w.key("name").string(p.spec().name);
  w.key("listen").string(p.listen_text());
  w.key("upstream").string(p.spec().upstream);
  w.key("enabled").boolean(p.running());
  w.key("toxics");
  write_toxics(w, p);
  if (p.spec().refuse_when_down) w.key("on_upstream_down").string("refuse");
  if (p.spec().max_connections) w.key("max_connections").number(*p.spec().max_connections);
  if (p.spec().protocol != Protocol::tcp) w.key("protocol").string(protocol_name(p.spec().protocol));
  // Stored as the compact JSON the client sent.
  if (!p.spec().tls_json.empty()) w.key("tls").raw(p.spec().tls_json);
  if (!p.spec().replay_json.empty()) w.key("replay").raw(p.spec().replay_json);
  w.end_object();
}

std::string proxy_json(const Proxy& p) {
  JsonWriter w;
  write_proxy(w, p);
  return w.take();
}

ApiResponse no_content() { return ApiResponse{204, "", ""}; }

// Toxiproxy's text first (clients may match on it), then what it is about; with --lenient,
// Toxiproxy's text alone.
std::string naming(std::string_view toxiproxy_text, const std::string& what) {
  if (lenient_toxic_attributes()) return std::string(toxiproxy_text);
  return std::string(toxiproxy_text) + ": " + what;
}
std::string quoted(std::string_view name) { return "\"" + std::string(name) + "\""; }
ApiResponse proxy_not_found(const std::string& name) { return error_response(404, naming("proxy not found", quoted(name))); }
ApiResponse toxic_not_found(const std::string& proxy, const std::string& toxic) {
  return error_response(404, naming("toxic not found", quoted(toxic) + " on proxy " + quoted(proxy)));
}
std::string toxic_exists(const std::string& proxy, const std::string& toxic) {
  return naming("toxic already exists", quoted(toxic) + " on proxy " + quoted(proxy));
}

// An error of the API's decoders at a JSON path of a config file: the path says where, so
// "bad request body" (the API's words) goes, and "field X ..." becomes "PATH.X: ...".
std::string at_path(const std::string& path, std::string message) {
  const std::string prefix = "bad request body: ";
  if (message.rfind(prefix, 0) == 0) message.erase(0, prefix.size());
  if (message.rfind("field ", 0) == 0) {
    const auto end = message.find_first_of(" :", 6);
    if (end != std::string::npos && end > 6) {
      std::string rest = message.substr(end);
      if (rest.rfind(": ", 0) == 0) rest.erase(0, 2);
      else rest.erase(0, 1);
      return path + "." + message.substr(6, end - 6) + ": " + rest;
    }
  }
  return path + ": " + message;
}

std::optional<std::string> upstream_error(const std::optional<std::string>& upstream) {
  if (!upstream || upstream->empty()) return std::nullopt;  // missing: reported as such
  if (auto e = check_upstream(*upstream)) return "field upstream: " + *e + " (got \"" + *upstream + "\")";
  return std::nullopt;
}

std::string percent_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
      };
      const int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += in[i];
  }
  return out;
}

// Splits a path into segments; an empty segment (double or trailing slash) is kept so
// that "/proxies/" does not match "/proxies/{name}", as with gorilla/mux.
std::vector<std::string> split_path(std::string_view target) {
  const auto q = target.find('?');
  std::string path = percent_decode(target.substr(0, q));
  std::vector<std::string> segments;
  if (path.empty() || path[0] != '/') return segments;
  std::size_t start = 1;
  for (;;) {
    const auto slash = path.find('/', start);
    segments.push_back(path.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return segments;
}

std::string host_without_port(std::string_view host) {
  if (host.empty()) return "";
  if (host.front() == '[') {
    const auto close = host.find(']');
    return std::string(host.substr(1, close == std::string_view::npos ? std::string_view::npos : close - 1));
  }
  const auto colon = host.rfind(':');
  if (colon != std::string_view::npos && host.find(':') == colon) return std::string(host.substr(0, colon));
  return std::string(host);
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::string prom_escape(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

// A new proxy's spec from a validated body (name and upstream present).
ProxySpec spec_from(const ProxyFields& f) {
  ProxySpec spec;
  spec.name = *f.name;
  spec.listen = f.listen.value_or("");
  spec.upstream = *f.upstream;
  spec.enabled = f.enabled.value_or(true);
  spec.refuse_when_down = f.on_upstream_down.value_or("close") == "refuse";
  spec.max_connections = f.max_connections;
  return spec;
}


// A TLS error under the field that named the file it is about ("certificate file '...': ..."
// is tls.listen.cert's), else under the object.
std::string tls_field(const std::string& object, const std::string& error) {
  static const struct {
    const char* prefix;
    const char* field;
  } files[] = {{"certificate file '", ".cert"}, {"key file '", ".key"}, {"CA file '", ".ca"}};
  for (const auto& f : files) {
    if (error.rfind(f.prefix, 0) == 0) return "field " + object + f.field + ": " + error;
  }
  return "field " + object + ": " + error;
}

// Applies `protocol` and `tls` of a body to a spec: the TLS contexts are made here, so a
// bad certificate path is a 400 naming it, not a failure on the first connection.
std::optional<std::string> configure_protocol(const ProxyFields& f, const std::string& ca_dir, ProxySpec& spec) {
  if (f.protocol) spec.protocol = *parse_protocol(*f.protocol);
  const bool https = spec.upstream.rfind("https://", 0) == 0;
  const rapidjson::Value* tls = f.tls;
  rapidjson::Document stored;
  if (!tls && !spec.tls_json.empty()) {  // an update that leaves tls alone keeps it
    stored.Parse(spec.tls_json.c_str());
    tls = &stored;
  }
  const rapidjson::Value* up = tls ? find_member(*tls, "upstream") : nullptr;
  const rapidjson::Value* listen = tls ? find_member(*tls, "listen") : nullptr;
  if (tls) {
    for (auto it = tls->MemberBegin(); it != tls->MemberEnd(); ++it) {
      const std::string key = it->name.GetString();
      if (key != "upstream" && key != "listen") return "field tls." + key + " is unknown (expected upstream, listen)";
    }
  }
  auto text = [](const rapidjson::Value* obj, const char* key, const std::string& where, std::string& out) -> std::optional<std::string> {
    const rapidjson::Value* v = obj ? find_member(*obj, key) : nullptr;
    if (!v) return std::nullopt;
    if (!v->IsString()) return "field " + where + "." + key + " must be a string";
    out = v->GetString();
    return std::nullopt;
  };
  auto flag = [](const rapidjson::Value* obj, const char* key, const std::string& where, bool& out) -> std::optional<std::string> {
    const rapidjson::Value* v = obj ? find_member(*obj, key) : nullptr;
    if (!v) return std::nullopt;
    if (!v->IsBool()) return "field " + where + "." + key + " must be true or false";
    out = v->GetBool();
    return std::nullopt;
  };
  if (up && !up->IsObject()) return std::string("field tls.upstream must be an object like {\"verify\":true,\"ca\":\"ca.pem\"}");
  if (listen && !listen->IsObject()) return std::string("field tls.listen must be an object like {\"mint\":true}");
  spec.upstream_tls.reset();
  spec.listen_tls.reset();
  spec.upstream_verify = true;
  spec.upstream_server_name.clear();
  if (https || up) {
    tls::ClientOptions options;
    if (auto e = flag(up, "verify", "tls.upstream", options.verify)) return e;
    if (auto e = text(up, "ca", "tls.upstream", options.ca_file)) return e;
    if (auto e = text(up, "server_name", "tls.upstream", options.server_name)) return e;
    if (up && !https) return std::string("field tls.upstream needs an https:// upstream (got \"" + spec.upstream + "\")");
    std::string error;
    spec.upstream_tls = tls::make_client_context(options, error);
    if (!spec.upstream_tls) return tls_field("tls.upstream", error);
    spec.upstream_verify = options.verify;
    spec.upstream_server_name = options.server_name;
  }
  if (listen) {
    tls::ServerOptions options;
    bool mint = false;
    if (auto e = text(listen, "cert", "tls.listen", options.cert_file)) return e;
    if (auto e = text(listen, "key", "tls.listen", options.key_file)) return e;
    if (auto e = flag(listen, "mint", "tls.listen", mint)) return e;
    if (mint == !options.cert_file.empty()) {
      return std::string("field tls.listen needs either \"cert\" (and \"key\", unless the key is in the same file), or \"mint\": true");
    }
    if (mint) options.ca_dir = ca_dir;
    std::string error;
    spec.listen_tls = tls::make_server_context(options, error);
    if (!spec.listen_tls) {
      return tls_field("tls.listen", error) + (mint ? " (create the CA with: faultline ca init --dir " + ca_dir + ")" : "");
    }
  }
  if (f.tls) spec.tls_json = compact_json(*f.tls);
  return std::nullopt;
}

// Protocol faults only make sense on a proxy that decodes their protocol.
std::optional<std::string> check_layers(Protocol protocol, const std::vector<std::shared_ptr<const ToxicConfig>>& toxics) {
  for (const auto& t : toxics) {
    const ToxicType* type = ToxicRegistry::instance().find(t->type);
    if (t->compiled) {
      // A match field the proxy cannot see would silently match nothing (or everything).
      const MessageMatch& m = t->compiled->match;
      const bool http = protocol == Protocol::http || protocol == Protocol::mcp;
      const struct {
        const char* field;
        bool given;
        bool seen;
        const char* needs;
      } fields[] = {
          {"method", !m.method.empty(), http, "http or mcp"},
          {"path", !m.path.empty(), http, "http or mcp"},
          {"path_regex", m.path_regex.has_value(), http, "http or mcp"},
          {"header", !m.headers.empty(), http, "http or mcp"},
          {"body", !m.body.empty(), http, "http or mcp"},
          {"rpc_method", !m.rpc_method.empty(), protocol == Protocol::mcp, "mcp"},
          {"tool", !m.tool.empty(), protocol == Protocol::mcp, "mcp"},
          {"session", !m.session.empty(), protocol == Protocol::mcp, "mcp"},
          {"command", !m.command.empty(), protocol == Protocol::resp, "resp"},
          {"key", !m.key.empty(), protocol == Protocol::resp, "resp"},
      };
      for (const auto& f : fields) {
        if (f.given && !f.seen) {
          return "toxic " + t->name + ": attribute match." + f.field + " needs a proxy with protocol " + f.needs +
                 " (this proxy's protocol is " + std::string(protocol_name(protocol)) + ")";
        }
      }
    }
    if (!type || protocol_accepts(protocol, type->layer)) continue;
    const std::string_view needs = type->layer == Layer::http ? "http or mcp" : type->layer == Layer::resp ? "resp" : "mcp";
    return "toxic " + t->name + ": type " + t->type + " needs a proxy with protocol " + std::string(needs) +
           " (this proxy's protocol is " + std::string(protocol_name(protocol)) + ")";
  }
  return std::nullopt;
}

}  // namespace

ControlPlane::ControlPlane(ServerContext& context, ApiSecurity security)
    : context_(context), security_(std::move(security)) {}

ControlPlane::~ControlPlane() { stop_all(); }

ApiResponse ControlPlane::handle(const ApiRequest& request) {
  if (security_.enforce_host || !security_.allowed_hosts.empty()) {
    const std::string host = ascii_lower(host_without_port(request.host));
    const bool allowed =
        (security_.enforce_host && is_loopback_name(host)) ||
        std::find(security_.allowed_hosts.begin(), security_.allowed_hosts.end(), host) != security_.allowed_hosts.end();
    if (!allowed) {
      spdlog::warn("control API: refused a request for Host \"{}\" (allow it with --allow-host)", request.host);
      return error_response(403, "host not allowed: " + host);
    }
  }
  // A page on another site that a local browser opens can send simple requests (a form POST)
  // without a preflight; its Origin header says where it comes from.
  if (!origin_allowed(request.origin, request.host, security_.allowed_origins)) {
    spdlog::warn("control API: refused a request from Origin \"{}\" (allow it with --allow-origin)", request.origin);
    return error_response(403, "origin not allowed: " + request.origin +
                                   " (pages of other sites may not drive the API; allow one with --allow-origin)");
  }
  if (request.method == "OPTIONS" && cross_origin_allowed(request)) return no_content();  // CORS preflight
  const auto segments = split_path(request.target);
  const bool is_version = segments.size() == 1 && segments[0] == "version";
  if (security_.token && !is_version) {
    const std::string prefix = "Bearer ";
    const bool ok = request.authorization.rfind(prefix, 0) == 0 &&
                    constant_time_equal(std::string_view(request.authorization).substr(prefix.size()), *security_.token);
    if (!ok) return error_response(401, "missing or invalid bearer token");
  }
  return route(request, segments);
}

std::optional<std::string> ControlPlane::cross_origin_allowed(const ApiRequest& request) const {
  if (request.origin.empty() || security_.allowed_origins.empty()) return std::nullopt;
  if (!origin_allowed(request.origin, "", security_.allowed_origins)) return std::nullopt;
  return request.origin;
}

ApiResponse ControlPlane::route(const ApiRequest& req, const std::vector<std::string>& seg) {
  const std::string& m = req.method;
  auto not_found = [] { return ApiResponse{404, "text/plain; charset=utf-8", "404 page not found\n"}; };
  auto bad_method = [] { return ApiResponse{405, "", ""}; };
  auto browser = [&] {
    return security_.block_browsers && req.user_agent.rfind("Mozilla/", 0) == 0;
  };
  auto browser_refused = [] { return ApiResponse{403, "text/plain; charset=utf-8", "User agent not allowed\n"}; };
  const bool update = m == "POST" || m == "PATCH";

  if (seg.size() == 1 && seg[0] == "metrics") {
    return ApiResponse{200, "text/plain; version=0.0.4; charset=utf-8", metrics_text(true)};
  }
  if (seg.size() == 1 && seg[0] == "version") {
    if (m != "GET") return bad_method();
    if (browser()) return browser_refused();
    return ApiResponse{200, "application/json;charset=utf-8", std::string("{\"version\": \"") + kToxiproxyVersion + "\"}\n"};
  }
  if (seg.size() == 1 && seg[0] == "reset") {
    if (m != "POST") return bad_method();
    if (browser()) return browser_refused();
    return reset();
  }
  if (seg.size() == 1 && seg[0] == "populate") {
    if (m != "POST") return bad_method();
    if (browser()) return browser_refused();
    return populate_route(req.body);
  }
  if (!seg.empty() && seg[0] == "recordings") {
    if (browser()) return browser_refused();
    return recordings_route(req, seg);
  }
  if (seg.empty() || seg[0] != "proxies") return not_found();
  if (seg.size() == 1) {
    if (m != "GET" && m != "POST") return bad_method();
    if (browser()) return browser_refused();
    return m == "GET" ? list_proxies() : create_proxy(req.body);
  }
  for (std::size_t i = 1; i < seg.size(); ++i) {
    if (seg[i].empty()) return not_found();
  }
  const std::string& name = seg[1];
  if (seg.size() == 3 && seg[2] == "connections") {
    if (m != "GET") return bad_method();
    if (browser()) return browser_refused();
    auto it = proxies_.find(name);
    if (it == proxies_.end()) return proxy_not_found(name);
    return list_connections(*it->second);
  }
  if (seg.size() > 4 || (seg.size() >= 3 && seg[2] != "toxics")) return not_found();
  if (seg.size() == 2) {
    if (m != "GET" && !update && m != "DELETE") return bad_method();
    if (browser()) return browser_refused();
    auto it = proxies_.find(name);
    if (it == proxies_.end()) return proxy_not_found(name);
    if (m == "GET") return json_response(200, proxy_json(*it->second));
    if (m == "DELETE") return delete_proxy(name);
    if (m == "POST") spdlog::warn("POST /proxies/{} is deprecated (Toxiproxy 2.6.0); use PATCH", name);
    return update_proxy(*it->second, req.body);
  }
  if (seg.size() == 3) {
    if (m != "GET" && m != "POST") return bad_method();
    if (browser()) return browser_refused();
    auto it = proxies_.find(name);
    if (it == proxies_.end()) return proxy_not_found(name);
    return m == "GET" ? list_toxics(*it->second) : create_toxic(*it->second, req.body);
  }
  if (m != "GET" && !update && m != "DELETE") return bad_method();
  if (browser()) return browser_refused();
  auto it = proxies_.find(name);
  if (it == proxies_.end()) return proxy_not_found(name);
  Proxy& proxy = *it->second;
  const std::string& toxic = seg[3];
  if (m == "GET") {
    for (const auto& t : proxy.toxics()) {
      if (t->name == toxic) return json_response(200, toxic_json(*t));
    }
    return toxic_not_found(name, toxic);
  }
  if (m == "DELETE") return delete_toxic(proxy, toxic);
  return update_toxic_route(proxy, toxic, req.body);
}

ApiResponse ControlPlane::list_proxies() {
  JsonWriter w;
  w.begin_object();
  for (const auto& [name, proxy] : proxies_) write_proxy(w.key(name), *proxy);
  w.end_object();
  return json_response(200, w.take());
}

std::optional<ApiError> ControlPlane::build_toxics(const rapidjson::Value& list, const std::string& where,
                                                   std::vector<std::shared_ptr<const ToxicConfig>>& out) {
  for (rapidjson::SizeType i = 0; i < list.Size(); ++i) {
    const std::string path = where + "[" + std::to_string(i) + "]";
    const bool in_file = !where.empty() && where[0] == '$';
    auto at = [&](const std::string& message) { return in_file ? at_path(path, message) : path + ": " + message; };
    ToxicFields fields;
    if (auto e = decode_toxic(list[i], fields)) return ApiError{400, at(e->message)};
    auto config = std::make_shared<ToxicConfig>();
    if (auto e = build_toxic(fields, *config)) return ApiError{e->status, at(e->message)};
    if (auto e = unaddressable_name("toxic", config->name)) return ApiError{400, at(*e)};
    for (const auto& existing : out) {
      if (existing->name == config->name) {
        return ApiError{409, at(naming("toxic already exists", quoted(config->name)))};
      }
    }
    config->revision = ++toxic_revision_;
    out.push_back(std::move(config));
  }
  return std::nullopt;
}

std::optional<std::string> ControlPlane::start_replay(ProxyFields& f, const std::string& base_dir,
                                                     std::string& replay_json, std::shared_ptr<void>& owner) {
  if (!f.replay) return std::nullopt;
  if (f.upstream && !f.upstream->empty())
    return std::string("upstream: a proxy with replay has no upstream of its own (its replay server is the upstream)");
  if (!context_.start_replay) return std::string("replay: not available in this server");
  replay_json = compact_json(*f.replay);
  if (f.name) {
    // /populate with the same entry again keeps the running replay server (and its queues).
    auto it = proxies_.find(*f.name);
    if (it != proxies_.end() && it->second->spec().replay_json == replay_json && it->second->spec().replay_owner) {
      owner = it->second->spec().replay_owner;
      f.upstream = it->second->spec().upstream;
      return std::nullopt;
    }
  }
  // The journal is read (and indexed) on this thread when the replay server starts: refuse
  // what is not a recording, or too big to read in a moment, before it is opened.
  if (const rapidjson::Value* journal = find_member(*f.replay, "journal"); journal && journal->IsString()) {
    std::string path(journal->GetString(), journal->GetStringLength());
    if (path.find('\0') != std::string::npos) return std::string("replay.journal: must not contain a NUL byte");
    if (!path.empty() && path[0] != '/' && !base_dir.empty()) path = base_dir + "/" + path;
    if (auto e = check_bounded_tree(path, kMaxReplayJournalBytes)) {
      return "replay.journal: " + *e + " (a larger recording can be served by `faultline replay server --journal " +
             path + "`)";
    }
  }
  std::string upstream;
  if (auto e = context_.start_replay(replay_json, base_dir, upstream, owner)) return "replay." + *e;
  f.upstream = upstream;
  return std::nullopt;
}

ApiResponse ControlPlane::create_proxy(const std::string& body) {
  rapidjson::Document doc;
  if (auto e = parse_body(body, doc)) return error_response(400, *e);
  ProxyFields f;
  if (auto e = decode_proxy(doc, f)) return error_response(400, e->message);
  if (!f.name || f.name->empty()) return error_response(400, "missing required field: name");
  if (auto e = unaddressable_name("proxy", *f.name)) return error_response(400, *e);
  if (proxies_.count(*f.name)) return error_response(409, naming("proxy already exists", quoted(*f.name)));
  if (auto e = upstream_error(f.upstream)) return error_response(400, "bad request body: " + *e);
  std::string replay_json;
  std::shared_ptr<void> replay_owner;
  if (auto e = start_replay(f, "", replay_json, replay_owner)) return error_response(400, "bad request body: field " + *e);
  if (!f.upstream || f.upstream->empty()) return error_response(400, "missing required field: upstream");
  std::vector<std::shared_ptr<const ToxicConfig>> toxics;
  if (f.toxics) {
    if (auto e = build_toxics(*f.toxics, "toxics", toxics)) return error_response(*e);
  }
  ProxySpec spec = spec_from(f);
  spec.replay_json = replay_json;
  spec.replay_owner = replay_owner;
  if (auto e = configure_protocol(f, context_.ca_dir, spec)) return error_response(400, "bad request body: " + *e);
  if (auto e = check_layers(spec.protocol, toxics)) return error_response(400, *e);
  auto proxy = std::make_unique<Proxy>(context_, spec);
  proxy->toxics() = std::move(toxics);
  proxy->publish();  // toxics are in place before the first client is accepted (#148)
  if (spec.enabled) {
    if (auto e = proxy->start()) return error_response(500, *e);
  }
  auto& stored = proxies_[spec.name];
  stored = std::move(proxy);
  return json_response(201, proxy_json(*stored));
}

ControlPlane::PopulateResult ControlPlane::populate(const rapidjson::Value& entries, const std::string* json_base,
                                                    const std::string& relative_to) {
  PopulateResult result;
  const bool with_paths = json_base != nullptr;
  const std::string base = with_paths ? *json_base : "";
  // Validate every entry before anything changes.
  std::vector<ProxyFields> fields(entries.Size());
  std::vector<std::vector<std::shared_ptr<const ToxicConfig>>> toxics(entries.Size());
  std::vector<ProxySpec> specs(entries.Size());
  for (rapidjson::SizeType i = 0; i < entries.Size(); ++i) {
    const std::string path = base + "[" + std::to_string(i) + "]";
    if (auto e = decode_proxy(entries[i], fields[i])) {
      result.error = ApiError{400, with_paths ? at_path(path, e->message) : e->message + " at proxy " + std::to_string(i + 1)};
      return result;
    }
    if (auto e = upstream_error(fields[i].upstream)) {
      result.error = ApiError{400, with_paths ? at_path(path, *e) : "bad request body: " + *e + " at proxy " + std::to_string(i + 1)};
      return result;
    }
    if (fields[i].name && !fields[i].name->empty()) {  // (a missing one is reported below)
      if (auto e = unaddressable_name("proxy", *fields[i].name)) {
        result.error = ApiError{400, with_paths ? path + ".name: " + *e : *e + " at proxy " + std::to_string(i + 1)};
        return result;
      }
    }
    if (auto e = start_replay(fields[i], relative_to, specs[i].replay_json, specs[i].replay_owner)) {
      result.error = ApiError{400, with_paths ? path + "." + *e : "bad request body: field " + *e + " at proxy " + std::to_string(i + 1)};
      return result;
    }
    for (auto [key, value] : {std::pair{"name", &fields[i].name}, std::pair{"upstream", &fields[i].upstream}}) {
      if (!*value || (*value)->empty()) {
        result.error = ApiError{400, with_paths ? path + "." + key + ": missing required field"
                                                : std::string("missing required field: ") + key + " at proxy " +
                                                      std::to_string(i + 1)};
        return result;
      }
    }
    if (fields[i].toxics) {
      if (auto e = build_toxics(*fields[i].toxics, with_paths ? path + ".toxics" : "proxy " + std::to_string(i + 1) + " toxics",
                                toxics[i])) {
        result.error = *e;
        return result;
      }
    }
    ProxySpec spec = spec_from(fields[i]);
    spec.replay_json = std::move(specs[i].replay_json);
    spec.replay_owner = std::move(specs[i].replay_owner);
    specs[i] = std::move(spec);
    std::optional<std::string> e = configure_protocol(fields[i], context_.ca_dir, specs[i]);
    if (!e) e = check_layers(specs[i].protocol, toxics[i]);
    if (e) {
      result.error = ApiError{400, with_paths ? at_path(path, *e) : *e + " at proxy " + std::to_string(i + 1)};
      return result;
    }
  }
  for (rapidjson::SizeType i = 0; i < entries.Size(); ++i) {
    const ProxyFields& f = fields[i];
    auto it = proxies_.find(*f.name);
    const std::string listen = f.listen.value_or("");
    if (it != proxies_.end() && !it->second->listen_differs(listen) && it->second->spec().upstream == *f.upstream &&
        it->second->spec().protocol == specs[i].protocol && it->second->spec().tls_json == specs[i].tls_json &&
        it->second->spec().replay_json == specs[i].replay_json) {
      // Unchanged: keep its state and toxics, unless the entry brings toxics of its own.
      if (f.toxics) {
        it->second->replace_toxics(std::move(toxics[i]));
        it->second->publish();
      }
      result.proxies.push_back(it->second.get());
      continue;
    }
    if (it != proxies_.end()) proxies_.erase(it);  // stops it and closes its connections
    const ProxySpec& spec = specs[i];
    auto proxy = std::make_unique<Proxy>(context_, spec);
    proxy->toxics() = std::move(toxics[i]);
    proxy->publish();
    if (spec.enabled) {
      if (auto e = proxy->start()) {
        result.error = ApiError{500, with_paths ? base + "[" + std::to_string(i) + "]: " + *e : *e};
        return result;
      }
    }
    auto& stored = proxies_[spec.name];
    stored = std::move(proxy);
    result.proxies.push_back(stored.get());
  }
  return result;
}

ApiResponse ControlPlane::populate_route(const std::string& body) {
  rapidjson::Document doc;
  if (auto e = parse_body(body, doc)) return error_response(400, *e);
  if (!doc.IsArray()) return error_response(400, "bad request body: expected a JSON array of proxies");
  auto result = populate(doc, nullptr);
  JsonWriter w;
  w.begin_object();
  if (result.error) w.key("error").string(result.error->message).key("status").number(result.error->status);
  w.key("proxies").begin_array();
  for (const Proxy* proxy : result.proxies) write_proxy(w, *proxy);
  w.end_array().end_object();
  std::string out = w.take();
  if (result.error) return json_response(result.error->status, out + "\n");
  return json_response(201, out);
}

ApiResponse ControlPlane::update_proxy(Proxy& proxy, const std::string& body) {
  rapidjson::Document doc;
  if (auto e = parse_body(body, doc)) return error_response(400, *e);
  ProxyFields f;
  if (auto e = decode_proxy(doc, f)) return error_response(400, e->message);
  if (f.upstream && f.upstream->empty()) return error_response(400, "bad request body: field upstream must not be empty");
  if (auto e = upstream_error(f.upstream)) return error_response(400, "bad request body: " + *e);
  ProxySpec& spec = proxy.spec();
  if (f.replay && compact_json(*f.replay) != spec.replay_json)
    return error_response(400, "bad request body: field replay can only be set when the proxy is created "
                               "(POST /proxies, /populate or a config file)");
  const std::string listen = f.listen.value_or(proxy.listen_text());
  const std::string upstream = f.upstream.value_or(spec.upstream);
  const bool enabled = f.enabled.value_or(proxy.running());
  if (f.on_upstream_down) spec.refuse_when_down = *f.on_upstream_down == "refuse";
  if (f.protocol || f.tls || upstream != spec.upstream) {
    ProxySpec next = spec;
    next.upstream = upstream;
    if (auto e = configure_protocol(f, context_.ca_dir, next)) return error_response(400, "bad request body: " + *e);
    if (auto e = check_layers(next.protocol, proxy.toxics())) return error_response(400, *e);
    spec.protocol = next.protocol;
    spec.tls_json = next.tls_json;
    spec.upstream_tls = next.upstream_tls;
    spec.upstream_verify = next.upstream_verify;
    spec.upstream_server_name = next.upstream_server_name;
    spec.listen_tls = next.listen_tls;
    proxy.publish();  // new connections speak the new protocol; open ones keep theirs
  }
  if (f.max_connections) {
    spec.max_connections = f.max_connections;
    proxy.publish();  // the listeners read the limit from the runtime
  }
  if (f.listen) {
    // Check the new address before touching the running proxy, so a typo does not take it down.
    if (auto e = proxy.check_listen(listen)) return error_response(500, *e);
  }
  if (proxy.listen_differs(listen) || upstream != spec.upstream) {
    proxy.stop();
    spec.listen = listen;
    if (upstream != spec.upstream) {
      // A real upstream replaces the journal: its replay server goes with the old address.
      spec.replay_json.clear();
      spec.replay_owner.reset();
    }
    spec.upstream = upstream;
    proxy.publish();
  }
  spec.enabled = enabled;
  if (enabled && !proxy.running()) {
    if (auto e = proxy.start()) return error_response(500, *e);
  } else if (!enabled && proxy.running()) {
    proxy.stop();
  }
  return json_response(200, proxy_json(proxy));
}

ApiResponse ControlPlane::delete_proxy(const std::string& name) {
  proxies_.erase(name);
  return no_content();
}

ApiResponse ControlPlane::list_toxics(const Proxy& proxy) {
  JsonWriter w;
  write_toxics(w, proxy);
  return json_response(200, w.take());
}

ApiResponse ControlPlane::list_connections(const Proxy& proxy) {
  const TimePoint now = Clock::now();
  JsonWriter w;
  w.begin_array();
  for (const auto& c : proxy.runtime().connections()) {
    const auto age = std::chrono::duration_cast<milliseconds>(now - c->started).count();
    w.begin_object();
    w.key("id").number(c->id);
    w.key("client").string(c->client);
    w.key("age_ms").number(age);
    w.key("bytes_upstream").number(c->bytes[static_cast<int>(Stream::upstream)].load());
    w.key("bytes_downstream").number(c->bytes[static_cast<int>(Stream::downstream)].load());
    w.key("toxics").begin_object();
    std::lock_guard lock(c->mutex);
    for (Stream s : {Stream::upstream, Stream::downstream}) {
      w.key(s == Stream::upstream ? "upstream" : "downstream").begin_array();
      for (const auto& name : c->toxics[static_cast<int>(s)]) w.string(name);
      w.end_array();
    }
    w.end_object().end_object();
  }
  w.end_array();
  return json_response(200, w.take());
}

ApiResponse ControlPlane::create_toxic(Proxy& proxy, const std::string& body) {
  rapidjson::Document doc;
  if (auto e = parse_body(body, doc)) return error_response(400, *e);
  ToxicFields f;
  if (auto e = decode_toxic(doc, f)) return error_response(400, e->message);
  auto config = std::make_shared<ToxicConfig>();
  if (auto e = build_toxic(f, *config)) return error_response(e->status, e->message);
  if (auto e = unaddressable_name("toxic", config->name)) return error_response(400, *e);
  if (auto e = check_layers(proxy.spec().protocol, {config})) return error_response(400, *e);
  for (const auto& t : proxy.toxics()) {
    if (t->name == config->name) return error_response(409, toxic_exists(proxy.spec().name, config->name));
  }
  config->revision = ++toxic_revision_;
  proxy.toxics().push_back(config);
  proxy.publish();
  return json_response(200, toxic_json(*config));
}

ApiResponse ControlPlane::update_toxic_route(Proxy& proxy, const std::string& toxic, const std::string& body) {
  auto& toxics = proxy.toxics();
  auto it = std::find_if(toxics.begin(), toxics.end(), [&](const auto& t) { return t->name == toxic; });
  if (it == toxics.end()) return toxic_not_found(proxy.spec().name, toxic);
  rapidjson::Document doc;
  if (auto e = parse_body(body, doc)) return error_response(400, *e);
  ToxicFields f;
  if (auto e = decode_toxic(doc, f)) return error_response(400, e->message);
  auto next = std::make_shared<ToxicConfig>(**it);  // the live one stays untouched: connections read it
  if (auto e = update_toxic(f, *next)) return error_response(e->status, e->message);
  next->revision = ++toxic_revision_;
  *it = next;
  proxy.publish();
  return json_response(200, toxic_json(*next));
}

ApiResponse ControlPlane::delete_toxic(Proxy& proxy, const std::string& toxic) {
  auto& toxics = proxy.toxics();
  auto it = std::find_if(toxics.begin(), toxics.end(), [&](const auto& t) { return t->name == toxic; });
  if (it == toxics.end()) return toxic_not_found(proxy.spec().name, toxic);
  proxy.retire(*it);
  toxics.erase(it);
  proxy.publish();
  return no_content();
}

ApiResponse ControlPlane::reset() {
  for (auto& [name, proxy] : proxies_) {
    if (!proxy->running()) {
      proxy->spec().enabled = true;
      if (auto e = proxy->start()) return error_response(500, *e);
    }
    proxy->toxics().clear();
    proxy->forget_retired();
    proxy->publish();
  }
  return no_content();
}

std::string ControlPlane::metrics_text(bool runtime_metrics) const {
  std::string out;
  auto family = [&](const char* name, const char* type, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  family("toxiproxy_proxy_received_bytes_total", "counter", "The total bytes received from the source of a link.");
  for (const auto& [name, p] : proxies_) {
    for (Stream s : {Stream::downstream, Stream::upstream}) {
      const auto& d = p->runtime().stats.direction[static_cast<int>(s)];
      out += "toxiproxy_proxy_received_bytes_total{direction=\"" + std::string(s == Stream::upstream ? "upstream" : "downstream") +
             "\",listener=\"" + prom_escape(p->listen_text()) + "\",proxy=\"" + prom_escape(name) + "\",upstream=\"" +
             prom_escape(p->spec().upstream) + "\"} " + std::to_string(d.received_bytes.load()) + "\n";
    }
  }
  family("toxiproxy_proxy_sent_bytes_total", "counter", "The total bytes sent to the destination of a link.");
  for (const auto& [name, p] : proxies_) {
    for (Stream s : {Stream::downstream, Stream::upstream}) {
      const auto& d = p->runtime().stats.direction[static_cast<int>(s)];
      out += "toxiproxy_proxy_sent_bytes_total{direction=\"" + std::string(s == Stream::upstream ? "upstream" : "downstream") +
             "\",listener=\"" + prom_escape(p->listen_text()) + "\",proxy=\"" + prom_escape(name) + "\",upstream=\"" +
             prom_escape(p->spec().upstream) + "\"} " + std::to_string(d.sent_bytes.load()) + "\n";
    }
  }
  auto per_proxy = [&](const char* metric, const char* type, const char* help, auto value) {
    family(metric, type, help);
    for (const auto& [name, p] : proxies_) {
      out += std::string(metric) + "{proxy=\"" + prom_escape(name) + "\"} " + std::to_string(value(p->runtime().stats)) + "\n";
    }
  };
  per_proxy("faultline_proxy_connections_active", "gauge", "Connections open right now.",
            [](const ProxyStats& s) { return s.connections_active.load(); });
  per_proxy("faultline_proxy_connections_total", "counter", "Connections accepted.",
            [](const ProxyStats& s) { return s.connections_total.load(); });
  family("faultline_proxy_connections_refused_total", "counter", "Connections closed at once, by reason.");
  for (const auto& [name, p] : proxies_) {
    const auto& s = p->runtime().stats;
    out += "faultline_proxy_connections_refused_total{proxy=\"" + prom_escape(name) + "\",reason=\"limit\"} " +
           std::to_string(s.connections_refused_limit.load()) + "\n";
    out += "faultline_proxy_connections_refused_total{proxy=\"" + prom_escape(name) + "\",reason=\"upstream_down\"} " +
           std::to_string(s.connections_refused_upstream.load()) + "\n";
  }
  per_proxy("faultline_proxy_upstream_connect_failures_total", "counter", "Upstream connects that failed or timed out.",
            [](const ProxyStats& s) { return s.upstream_connect_failures.load(); });
  per_proxy("faultline_proxy_resets_sent_total", "counter", "Connections aborted with RST.",
            [](const ProxyStats& s) { return s.resets_sent.load(); });
  per_proxy("faultline_proxy_data_connections_total", "counter",
            "Connections on which the client sent at least one byte (a check that only connects is not one).",
            [](const ProxyStats& s) { return s.data_connections.load(); });
  // What each fault did, per toxic.
  // Removed toxics keep their counters (state="removed", one series per name and type, summed
  // over every removal) until /reset, so what a fault did can be read after it has gone.
  auto per_toxic = [&](const char* metric, const char* help, auto value) {
    family(metric, "counter", help);
    auto line = [&](const std::string& proxy, const std::string& toxic, const std::string& type, const char* state,
                    std::uint64_t v) {
      // Appended piece by piece: GCC 12 misreads long temporary concatenations (-Warray-bounds).
      out.append(metric).append("{proxy=\"").append(prom_escape(proxy)).append("\",state=\"").append(state);
      out.append("\",toxic=\"").append(prom_escape(toxic)).append("\",type=\"").append(prom_escape(type)).append("\"} ");
      out.append(std::to_string(v)).append("\n");
    };
    for (const auto& [name, p] : proxies_) {
      for (const auto& t : p->toxics()) line(name, t->name, t->type, "active", value(*t->shared));
      std::map<std::pair<std::string, std::string>, std::uint64_t> removed;
      for (const auto& t : p->retired_toxics()) removed[{t->name, t->type}] += value(*t->shared);
      for (const auto& [key, v] : removed) line(name, key.first, key.second, "removed", v);
    }
  };
  per_toxic("faultline_toxic_connections_total", "Connection directions a fault applied to.",
            [](const ToxicShared& s) { return s.connections.load(); });
  per_toxic("faultline_toxic_bytes_dropped_total", "Bytes a fault dropped.",
            [](const ToxicShared& s) { return s.bytes_dropped.load(); });
  per_toxic("faultline_toxic_bytes_delayed_total", "Bytes a fault held back or slowed.",
            [](const ToxicShared& s) { return s.bytes_delayed.load(); });
  per_toxic("faultline_toxic_resets_total", "Connections a fault reset.",
            [](const ToxicShared& s) { return s.resets.load(); });
  per_toxic("faultline_toxic_messages_total", "Messages (requests, responses, events, commands) a protocol fault acted on.",
            [](const ToxicShared& s) { return s.applied.load(); });
  per_proxy("faultline_proxy_requests_total", "counter", "Requests (HTTP requests, Redis commands) decoded.",
            [](const ProxyStats& s) { return s.messages_requests.load(); });
  per_proxy("faultline_proxy_responses_total", "counter", "Responses (HTTP responses, Redis replies) decoded.",
            [](const ProxyStats& s) { return s.messages_responses.load(); });
  per_proxy("faultline_proxy_undecodable_streams_total", "counter",
            "Connection directions that did not parse as the proxy's protocol and were passed through as bytes.",
            [](const ProxyStats& s) { return s.undecodable_streams.load(); });
  if (context_.budget) {
    family("faultline_buffered_bytes", "gauge", "Bytes held by faults right now, over every connection.");
    out.append("faultline_buffered_bytes ").append(std::to_string(context_.budget->held())).append("\n");
    family("faultline_buffered_bytes_limit", "gauge", "The server-wide budget of bytes held by faults (--max-buffered-bytes; 0: none).");
    out.append("faultline_buffered_bytes_limit ").append(std::to_string(context_.budget->limit())).append("\n");
    family("faultline_buffer_budget_pauses_total", "counter",
           "Times a connection stopped reading because the server-wide budget was spent.");
    out.append("faultline_buffer_budget_pauses_total ").append(std::to_string(context_.budget->pauses())).append("\n");
  }
  family("faultline_tls_handshake_failures_total", "counter", "TLS handshakes that failed, by side and reason.");
  for (const auto& [name, p] : proxies_) {
    const auto& s = p->runtime().stats;
    for (int side = 0; side < 2; ++side) {
      for (int k = 0; k < 5; ++k) {
        out.append("faultline_tls_handshake_failures_total{proxy=\"").append(prom_escape(name));
        out.append(side == 0 ? "\",side=\"client\",reason=\"" : "\",side=\"upstream\",reason=\"");
        out.append(kTlsFailureKinds[k]).append("\"} ").append(std::to_string(s.tls_failures[side][k].load())).append("\n");
      }
    }
  }
  family("faultline_recording_events_total", "counter", "Journal lines a recording wrote.");
  for (const auto& [id, r] : recordings_) {
    const auto s = r->status();
    out.append("faultline_recording_events_total{recording=\"").append(prom_escape(id)).append("\"} ");
    out.append(std::to_string(s.events)).append("\n");
  }
  family("faultline_recording_bytes_total", "counter", "Payload bytes a recording captured.");
  for (const auto& [id, r] : recordings_) {
    out.append("faultline_recording_bytes_total{recording=\"").append(prom_escape(id)).append("\"} ");
    out.append(std::to_string(r->status().bytes)).append("\n");
  }
  family("faultline_recording_dropped_events_total", "counter",
         "Events a recording did not write: its writer fell behind (gaps) or it had failed.");
  for (const auto& [id, r] : recordings_) {
    const auto s = r->status();
    out.append("faultline_recording_dropped_events_total{recording=\"").append(prom_escape(id)).append("\"} ");
    out.append(std::to_string(s.gap_events + s.lost_events)).append("\n");
  }
  family("faultline_recording_failed", "gauge", "1 when a recording stopped on an error (see GET /recordings/{id}).");
  for (const auto& [id, r] : recordings_) {
    out.append("faultline_recording_failed{recording=\"").append(prom_escape(id)).append("\"} ");
    out.append(r->status().state == rec::RecordingState::failed ? "1\n" : "0\n");
  }
  if (runtime_metrics) {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("VmRSS:", 0) == 0) {
        family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        out += "process_resident_memory_bytes " + std::to_string(std::stoull(line.substr(6)) * 1024) + "\n";
      }
    }
  }
  return out;
}

void ControlPlane::stop_accepting() {
  for (auto& [name, proxy] : proxies_) proxy->stop_accepting();
}

void ControlPlane::stop_all() {
  for (auto& [name, proxy] : proxies_) proxy->stop();
  stop_recordings();
}

std::uint64_t ControlPlane::active_connections() const {
  std::uint64_t total = 0;
  for (const auto& [name, proxy] : proxies_) total += proxy->runtime().stats.connections_active.load();
  return total;
}

}  // namespace faultline
