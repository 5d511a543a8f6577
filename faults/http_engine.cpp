// The HTTP/1.1 engine (also MCP's Streamable HTTP, which adds JSON-RPC awareness).
// Requests and responses are framed as they stream; each request becomes an exchange in a
// FIFO, because HTTP/1.1 answers in order: a locally made answer waits until every answer
// before it has gone out. A request is held whole only when a fault must see its body.
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "faults/engine_common.hpp"
#include "protocols/http.hpp"
#include "protocols/jsonrpc.hpp"
#include "protocols/sse.hpp"

namespace faultline {
namespace {

constexpr std::size_t kMaxHeldRequest = 1 << 20;   // bigger bodies are not matched on
constexpr std::size_t kMaxHeldResponse = 8 << 20;  // http_patch / http_replace body limit
constexpr std::size_t kMaxHeldEvent = 1 << 20;     // an SSE event bigger than this goes out as it comes

// mcp_session_kill's memory across connections: the sessions it killed (they stay dead)
// and those created while it was active (they survive it).
struct SeenSessions final : TypeState {
  std::mutex mutex;
  std::set<std::string> dead;   // guarded by mutex
  std::set<std::string> alive;  // guarded by mutex
};

std::string serialize_head(const http::Head& h) {
  std::string out = "HTTP/1." + std::to_string(h.version % 10) + " " + std::to_string(h.status) + " " + h.reason + "\r\n";
  for (const auto& f : h.fields) out += f.name + ": " + f.value + "\r\n";
  out += "\r\n";
  return out;
}

void set_field(http::Head& h, std::string_view name, std::string value) {
  for (auto& f : h.fields) {
    if (http::iequals(f.name, name)) {
      f.value = std::move(value);
      return;
    }
  }
  h.fields.push_back({std::string(name), std::move(value)});
}

void remove_field(http::Head& h, std::string_view name) {
  std::erase_if(h.fields, [&](const http::Field& f) { return http::iequals(f.name, name); });
}

bool has_field(const std::vector<HeaderValue>& headers, std::string_view name) {
  return std::any_of(headers.begin(), headers.end(), [&](const HeaderValue& h) { return http::iequals(h.name, name); });
}

// Answers that never carry a body (RFC 9110 6.4.1): sending one would be read as the start
// of the next answer on the connection.
bool bodiless_status(int status) { return (status >= 100 && status < 200) || status == 204 || status == 304; }

// A complete response made here, in the upstream's place. The answer to a HEAD request is
// the head alone (its content-length still gives the body's size, as a GET would get it).
std::string make_response(int status, const std::vector<HeaderValue>& headers, std::string_view body,
                          std::string_view default_type, bool close, bool head_only = false) {
  const bool bodiless = bodiless_status(status);
  if (bodiless) body = {};
  http::Head h;
  h.request = false;
  h.status = status;
  h.reason = std::string(reason_phrase(status));
  if (!has_field(headers, "content-type") && !body.empty()) h.fields.push_back({"content-type", std::string(default_type)});
  for (const auto& f : headers) h.fields.push_back({f.name, f.value});
  if (!bodiless) set_field(h, "content-length", std::to_string(body.size()));
  if (close) set_field(h, "connection", "close");
  return head_only ? serialize_head(h) : serialize_head(h) + std::string(body);
}

bool looks_json(std::string_view body) {
  const auto first = body.find_first_not_of(" \t\r\n");
  return first != std::string_view::npos && (body[first] == '{' || body[first] == '[');
}

class HttpEngine final : public EngineBase {
 public:
  HttpEngine(Rng rng, bool mcp) : EngineBase(rng), mcp_(mcp) {}

  bool holds_forever() const override { return stalled_forever_by_ != nullptr; }

  void set_faults(ToxicList faults) override {
    EngineBase::set_faults(std::move(faults));
    auto gone = [&](const ToxicConfig* c) {
      return std::none_of(faults_.begin(), faults_.end(), [&](const auto& f) { return f.get() == c; });
    };
    // A stall ends when its fault is removed or changed, like every other fault.
    if (r_.stall && gone(r_.stall)) {
      r_.stall = nullptr;
      r_.floor = TimePoint{};
    }
    // A "forever" stall outlives the answer it stopped: the answer may have ended upstream
    // (and the next ones queued behind it) before the fault goes. The session releases what
    // it had queued for "never" once this says the hold is over.
    if (stalled_forever_by_ && gone(stalled_forever_by_.get())) {
      stalled_forever_by_.reset();
      if (r_.floor == kNever) r_.floor = TimePoint{};
      if (last_release_[1] == kNever) last_release_[1] = TimePoint{};
    }
  }

  void on_bytes(Stream from, std::string_view data, TimePoint now, EngineOutput& out) override {
    if (from == Stream::upstream) on_client_bytes(data, now, out);
    else on_server_bytes(data, now, out);
  }

  void on_eof(Stream from, TimePoint now, EngineOutput& out) override {
    if (from == Stream::upstream) {
      // Whatever was held for a decision can no longer be decided on: it goes as it is.
      if (req_mode_ == ReqMode::holding) send(out, Stream::upstream, held_, std::max(now, req_release_));
      held_.clear();
      send(out, Stream::upstream, req_pending_, now);
      req_pending_.clear();
      end(out, Stream::upstream, EndKind::half_close, now);
      return;
    }
    if (!resp_passthrough_ && resp_.in_message() && resp_.body_until_close() && resp_.finish()) {
      response_end(now, out);
    }
    flush_response_hold(now, out);
    if (!resp_dead_) send(out, Stream::downstream, resp_pending_, now);
    resp_pending_.clear();
    end(out, Stream::downstream, EndKind::half_close, now);
  }

 private:
  enum class ReqMode { idle, holding, forwarding, swallowing };
  enum class Kind { upstream, local, never };

  struct Exchange {
    Kind kind = Kind::upstream;
    std::string method;
    std::string rpc_method;
    std::string local;  // the answer made here
    bool close_after = false;
    TimePoint not_before{};
    Duration response_delay{};
    std::vector<std::shared_ptr<const ToxicConfig>> response_faults;
  };

  // ---- requests ----------------------------------------------------------------------

  void on_client_bytes(std::string_view data, TimePoint now, EngineOutput& out) {
    if (req_passthrough_) {
      if (!resp_dead_) send(out, Stream::upstream, data, now);
      return;
    }
    req_pending_.append(data);
    std::string_view view = req_pending_;
    std::size_t offset = 0;
    for (int guard = 0; guard < 1 << 20 && offset <= view.size(); ++guard) {
      const FrameStep s = req_.step(view.substr(offset));
      if (s.event == FrameEvent::error) {
        give_up(now, out, view.substr(offset));
        offset = view.size();
        break;
      }
      const std::string_view chunk = view.substr(offset, s.consumed);
      offset += s.consumed;
      if (s.event == FrameEvent::head) request_head(now, out);
      route_request(chunk, now, out);
      if (s.event == FrameEvent::body && req_mode_ == ReqMode::holding && held_body_.size() < kMaxHeldRequest) {
        held_body_.append(s.payload);
      }
      if (s.event == FrameEvent::end) request_end(now, out);
      if (req_passthrough_) {  // an upgrade answered while we stepped
        send(out, Stream::upstream, view.substr(offset), now);
        offset = view.size();
        break;
      }
      if (s.consumed == 0 && s.event == FrameEvent::none) break;
    }
    req_pending_.erase(0, offset);
  }

  // Not HTTP (or no longer): the rest of the connection is bytes, both ways.
  void give_up(TimePoint now, EngineOutput& out, std::string_view rest) {
    ++counters_.undecodable;
    if (req_mode_ == ReqMode::holding) send(out, Stream::upstream, held_, now);
    held_.clear();
    send(out, Stream::upstream, rest, now);
    req_passthrough_ = true;
    resp_passthrough_ = true;
    flush_response_hold(now, out);
    send(out, Stream::downstream, resp_pending_, now);
    resp_pending_.clear();
  }

  void route_request(std::string_view chunk, TimePoint now, EngineOutput& out) {
    switch (req_mode_) {
      case ReqMode::forwarding:
      case ReqMode::idle:
        send(out, Stream::upstream, chunk, std::max(now, req_release_));
        break;
      case ReqMode::holding:
        held_.append(chunk);
        if (held_.size() > kMaxHeldRequest) {
          // Too big to match on its body: decide on the head alone and stream the rest.
          held_body_.clear();
          decide(now, out, false);
          if (req_mode_ == ReqMode::forwarding) send(out, Stream::upstream, held_, std::max(now, req_release_));
          held_.clear();
        }
        break;
      case ReqMode::swallowing:
        break;
    }
  }

  bool needs_body() const {
    for (const auto& c : faults_) {
      if (!c->compiled) continue;
      if (c->compiled->match.needs_body()) return true;
      if (mcp_ && (c->type == "jsonrpc_error" || c->type == "jsonrpc_delay" || c->type == "jsonrpc_drop")) return true;
      // mcp_session_kill spares the sessions created while it is active: it must see which
      // requests are an `initialize` to spare the session id their answer carries.
      if (mcp_ && c->type == "mcp_session_kill") return true;
    }
    return false;
  }

  void request_head(TimePoint now, EngineOutput& out) {
    ++counters_.requests;
    head_ = req_.head();
    req_release_ = now;
    const bool has_body = head_.field("transfer-encoding").has_value() ||
                          (head_.field("content-length") && *head_.field("content-length") != "0");
    if (has_body && needs_body()) {
      req_mode_ = ReqMode::holding;
      held_.clear();
      held_body_.clear();
      // The client waits for a 100 before sending the body we must see; the upstream has
      // not seen the request yet, so say it here (a second 100 from upstream is harmless).
      auto expect = head_.field("expect");
      if (expect && http::iequals(*expect, "100-continue") && exchanges_.empty()) {
        send(out, Stream::downstream, "HTTP/1.1 100 Continue\r\n\r\n", now);
      }
      return;
    }
    held_body_.clear();
    decide(now, out, false);
  }

  void request_end(TimePoint now, EngineOutput& out) {
    if (req_mode_ == ReqMode::holding) {
      decide(now, out, true);
      if (req_mode_ == ReqMode::forwarding) send(out, Stream::upstream, held_, std::max(now, req_release_));
      held_.clear();
    }
    if (req_.upgraded()) req_passthrough_ = true;
    req_mode_ = ReqMode::idle;
  }

  bool body_matches(const MessageMatch& m, const jsonrpc::Message& rpc, bool have_body) const {
    if (!m.needs_body()) return true;
    if (!have_body) return false;
    if (!m.rpc_method.empty() && (!rpc.valid || rpc.method != m.rpc_method)) return false;
    if (!m.tool.empty() && (!rpc.valid || rpc.method != "tools/call" || rpc.tool != m.tool)) return false;
    for (const auto& [path, value] : m.body) {
      auto have = jsonrpc::value_at(held_body_, path);
      if (!have || *have != value) return false;
    }
    return true;
  }

  // Decides what the active faults do to the current request (head_, and its body when held).
  void decide(TimePoint now, EngineOutput& out, bool have_body) {
    Exchange x;
    x.method = head_.method;
    jsonrpc::Message rpc;
    if (have_body && looks_json(held_body_)) rpc = jsonrpc::describe(held_body_);
    if (rpc.valid) x.rpc_method = rpc.method;
    const bool wants_close = head_.version == 10 || (head_.field("connection") && http::iequals(*head_.field("connection"), "close"));
    // An answer made before the body arrived: a client waiting on 100-continue may never send it.
    const bool body_unread = !have_body && req_.in_message() && head_.field("expect").has_value();
    Duration request_delay{};
    std::optional<Exchange> local;

    for (const auto& config : faults_) {
      const ProtocolFault* f = config->compiled.get();
      if (!f || local || !config->active_at(now)) continue;
      const std::string& type = config->type;
      const bool rpc_type = type.rfind("jsonrpc_", 0) == 0 || type == "mcp_session_kill";
      if (rpc_type && !mcp_) continue;
      if (!f->match.matches_head(head_) || !body_matches(f->match, rpc, have_body)) continue;
      if (type == "jsonrpc_error" || type == "jsonrpc_delay" || type == "jsonrpc_drop") {
        if (!rpc.valid || rpc.is_response || rpc.method.empty()) continue;  // only calls are failed
        // A batch (2025-03-26) is described by its first message only: answering or dropping
        // it for that one would lose the others, so batches go through untouched.
        if (rpc.batch) continue;
      }
      if (type == "mcp_session_kill" && !kills_session(*config)) continue;
      if (type == "http_header_faults") {
        header_faults(*config, out, request_delay, local, wants_close || body_unread);
        continue;
      }
      if (!roll(*config)) continue;

      if (type == "http_abort") {
        Exchange a;
        a.kind = Kind::local;
        a.close_after = wants_close || body_unread;
        a.local = make_response(f->status, f->headers, f->body.value_or(""),
                                looks_json(f->body.value_or("")) ? "application/json" : "text/plain; charset=utf-8",
                                a.close_after, head_.method == "HEAD");
        local = std::move(a);
        report(out, *config, "answered " + std::to_string(f->status) + " to " + head_.method + " " + head_.target);
      } else if (type == "http_delay" || type == "jsonrpc_delay") {
        const Duration d = draw_delay(*f);
        if (f->before_response) x.response_delay += d;
        else request_delay += d;
        report(out, *config, "delayed " + head_.method + " " + head_.target);
      } else if (type == "jsonrpc_error") {
        Exchange a;
        a.kind = Kind::local;
        a.close_after = wants_close;
        if (!rpc.id) {
          a.local = make_response(202, {}, "", "", a.close_after);
        } else {
          const std::string body = f->as_result ? jsonrpc::error_result(*rpc.id, f->message)
                                                : jsonrpc::error_response(*rpc.id, f->code, f->message);
          a.local = make_response(200, {}, body, "application/json", a.close_after);
        }
        local = std::move(a);
        report(out, *config, "failed " + rpc.method + (rpc.tool.empty() ? "" : " " + rpc.tool));
      } else if (type == "jsonrpc_drop") {
        Exchange a;
        if (rpc.id) {
          a.kind = Kind::never;
        } else {
          // A notification has no answer to withhold: it is lost, and its POST accepted as the
          // server would (clients await that 202 without a timeout).
          a.kind = Kind::local;
          a.close_after = wants_close;
          a.local = make_response(202, {}, "", "", a.close_after);
        }
        local = std::move(a);
        report(out, *config, "dropped " + rpc.method + (rpc.tool.empty() ? "" : " " + rpc.tool));
      } else if (type == "mcp_session_kill") {
        const std::string id(*head_.field("mcp-session-id"));
        {
          SeenSessions& seen = config->shared->state<SeenSessions>();
          std::lock_guard lock(seen.mutex);
          seen.dead.insert(id);
        }
        Exchange a;
        a.kind = Kind::local;
        a.close_after = wants_close || body_unread;
        a.local = make_response(404, {}, "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32001,\"message\":\"Session not found\"}}",
                                "application/json", a.close_after);
        local = std::move(a);
        report(out, *config, "killed session " + id);
      } else {
        x.response_faults.push_back(config);  // acts on the answer
      }
    }

    if (local) {
      req_mode_ = ReqMode::swallowing;
      local->method = x.method;
      local->not_before = now + request_delay;
      exchanges_.push_back(std::move(*local));
      emit_ready(now, out);
      return;
    }
    req_mode_ = ReqMode::forwarding;
    req_release_ = now + request_delay;
    exchanges_.push_back(std::move(x));
  }

  // mcp_session_kill ends each session it sees once (it stays dead); sessions created
  // while the fault is active survive, so a client that re-initializes can go on.
  bool kills_session(const ToxicConfig& config) const {
    auto id = head_.field("mcp-session-id");
    if (!id) return false;
    SeenSessions& seen = config.shared->state<SeenSessions>();
    std::lock_guard lock(seen.mutex);
    const std::string key(*id);
    if (seen.dead.count(key)) return true;
    return !seen.alive.count(key);
  }

  // Envoy's x-envoy-fault-* request headers, honoured only while this fault is active.
  void header_faults(const ToxicConfig& config, EngineOutput& out, Duration& delay, std::optional<Exchange>& local,
                     bool close) {
    if (auto v = head_.field("x-envoy-fault-delay-request")) {
      const long long d = std::atoll(std::string(*v).c_str());
      if (d > 0 && d < 10'000'000'000LL) {
        delay += std::chrono::milliseconds(d);
        report(out, config, "header-requested delay of " + std::to_string(d) + " ms");
      }
    }
    if (auto v = head_.field("x-envoy-fault-abort-request")) {
      const int status = std::atoi(std::string(*v).c_str());
      if (status >= 200 && status < 600) {
        Exchange a;
        a.kind = Kind::local;
        a.close_after = close;
        a.local = make_response(status, {}, "fault filter abort", "text/plain", close, head_.method == "HEAD");
        local = std::move(a);
        report(out, config, "header-requested abort " + std::to_string(status));
      }
    }
  }

  // Sends the answers made here that are next in line.
  void emit_ready(TimePoint now, EngineOutput& out) {
    while (!exchanges_.empty() && exchanges_.front().kind == Kind::local) {
      Exchange& x = exchanges_.front();
      send(out, Stream::downstream, x.local, std::max(now, x.not_before));
      if (x.close_after) {
        end(out, Stream::downstream, EndKind::close, std::max(now, x.not_before));
        resp_dead_ = true;
      }
      exchanges_.pop_front();
    }
  }

  // ---- responses ---------------------------------------------------------------------

  Exchange* answering() {
    for (auto& x : exchanges_) {
      if (x.kind == Kind::upstream) return &x;
      if (x.kind == Kind::never) return nullptr;
    }
    return nullptr;
  }

  void on_server_bytes(std::string_view data, TimePoint now, EngineOutput& out) {
    if (resp_dead_) return;
    if (resp_passthrough_) {
      send(out, Stream::downstream, data, now);
      return;
    }
    resp_pending_.append(data);
    std::string_view view = resp_pending_;
    std::size_t offset = 0;
    for (int guard = 0; guard < 1 << 20 && offset <= view.size() && !resp_dead_; ++guard) {
      if (!resp_.in_message()) {
        Exchange* x = answering();
        resp_.answering(x ? x->method : "GET");
      }
      const FrameStep s = resp_.step(view.substr(offset));
      if (s.event == FrameEvent::error) {
        flush_response_hold(now, out);
        ++counters_.undecodable;
        resp_passthrough_ = true;
        send(out, Stream::downstream, view.substr(offset), now);
        offset = view.size();
        break;
      }
      const std::string_view chunk = view.substr(offset, s.consumed);
      offset += s.consumed;
      if (s.event == FrameEvent::head) response_head(chunk, now, out);
      else route_response(chunk, now, out);
      if (s.event == FrameEvent::body) response_body(chunk, s.payload, now, out);
      if (s.event == FrameEvent::end) response_end(now, out);
      if (resp_passthrough_) {
        send(out, Stream::downstream, view.substr(offset), now);
        offset = view.size();
        break;
      }
      if (s.consumed == 0 && s.event == FrameEvent::none) break;
    }
    if (resp_dead_) offset = view.size();
    resp_pending_.erase(0, offset);
  }

  struct Response {
    Exchange* exchange = nullptr;
    bool interim = false;
    TimePoint floor{};
    // http_reset
    std::optional<std::int64_t> reset_left;
    EndKind reset_kind = EndKind::reset;
    const ToxicConfig* reset_config = nullptr;
    // A HEAD answer, a 204 or a 304: a head without a body, whatever its length fields say.
    bool bodiless = false;
    // http_replace / http_patch with a body: the answer is rebuilt at its end
    bool rebuild = false;
    http::Head head;
    std::string body;
    std::string raw;  // http_patch: the original, should the body be too big (or not JSON)
    std::size_t raw_head = 0;  // the head's bytes at the start of raw
    const ProtocolFault* replace = nullptr;
    const ProtocolFault* patch = nullptr;
    const ToxicConfig* patch_config = nullptr;
    std::shared_ptr<const ToxicConfig> rebuild_config;
    // SSE faults
    bool sse = false;
    sse::Splitter splitter;
    std::int64_t events = 0;
    // Raw bytes (body framing included) from the end of the last event sent, and where in them
    // the body payload lies ([begin, end) offsets), so a fault can tell the event's text from
    // the chunk framing around and inside it.
    std::string hold;
    std::vector<std::pair<std::size_t, std::size_t>> payload;
    const ToxicConfig* cut = nullptr;
    const ToxicConfig* stall = nullptr;
    const ToxicConfig* delay = nullptr;
    const ToxicConfig* corrupt = nullptr;
    TimePoint last_event_release{};
  };

  void response_head(std::string_view head_bytes, TimePoint now, EngineOutput& out) {
    r_ = Response{};
    const http::Head& h = resp_.head();
    r_.interim = h.status >= 100 && h.status < 200 && h.status != 101;
    r_.floor = now;
    Exchange* x = r_.interim ? nullptr : answering();
    r_.exchange = x;
    r_.bodiless = (x && x->method == "HEAD") || h.status == 204 || h.status == 304;
    if (x) {
      r_.floor = now + x->response_delay;
      if (mcp_ && x->rpc_method == "initialize") {
        if (auto id = h.field("mcp-session-id")) spare_session(std::string(*id));
      }
      for (const auto& config : x->response_faults) apply_response_fault(config, h, now, out);
    }
    if (r_.rebuild) {
      r_.head = h;
      if (keeps_body()) {
        r_.raw.assign(head_bytes);
        r_.raw_head = head_bytes.size();
      }
      return;
    }
    std::string changed;
    if (r_.replace) {
      // Status and headers only: the head is rewritten, the body streams through.
      http::Head rewritten = h;
      rewrite_head(rewritten, *r_.replace);
      changed = serialize_head(rewritten);
      head_bytes = changed;
    }
    if (r_.sse) {
      // The head goes at once (a client waits for it before reading the stream); the SSE
      // faults act on the events that follow.
      forward(head_bytes, now, out);
      if (r_.cut && r_.cut->compiled->after_events == 0) cut_now(*r_.cut, now, out);
      return;
    }
    route_response(head_bytes, now, out);
  }

  // http_patch needs the upstream's body; a replaced body is dropped as it comes.
  bool keeps_body() const { return r_.rebuild && !(r_.replace && r_.replace->body); }

  static void rewrite_head(http::Head& h, const ProtocolFault& f) {
    if (f.status != 0) {
      h.status = f.status;
      h.reason = std::string(reason_phrase(f.status));
    }
    for (const auto& field : f.headers) set_field(h, field.name, field.value);
  }

  void apply_response_fault(const std::shared_ptr<const ToxicConfig>& config, const http::Head& h, TimePoint,
                            EngineOutput& out) {
    const ProtocolFault& f = *config->compiled;
    const std::string& type = config->type;
    const bool event_stream = h.field("content-type") && h.field("content-type")->find("text/event-stream") != std::string_view::npos;
    const bool encoded = h.field("content-encoding") && !http::iequals(*h.field("content-encoding"), "identity");
    if (type == "http_reset") {
      r_.reset_left = f.after_bytes;
      r_.reset_kind = f.end;
      r_.reset_config = config.get();  // counted when it cuts: a shorter answer goes whole
    } else if (type == "http_replace") {
      r_.replace = &f;
      if (f.body && !r_.bodiless) {  // an answer without a body keeps having none
        r_.rebuild = true;
        r_.rebuild_config = config;
      }
      report(out, *config, "replaced the response");
    } else if (type == "http_patch") {
      if (encoded || event_stream || r_.bodiless) return;  // a compressed, streamed or absent body is not patched
      r_.patch = &f;
      r_.patch_config = config.get();  // counted at the end, if the body was JSON
      r_.rebuild = true;
      r_.rebuild_config = config;
    } else if (event_stream) {
      r_.sse = true;
      if (type == "sse_cut" && !r_.cut) r_.cut = config.get();
      if (type == "sse_stall" && !r_.stall) r_.stall = config.get();
      if (type == "sse_delay" && !r_.delay) r_.delay = config.get();
      if (type == "sse_corrupt" && !r_.corrupt) r_.corrupt = config.get();
    }
  }

  void spare_session(const std::string& id) {
    for (const auto& c : faults_) {
      if (c->type != "mcp_session_kill") continue;
      SeenSessions& seen = c->shared->state<SeenSessions>();
      std::lock_guard lock(seen.mutex);
      seen.alive.insert(id);
    }
  }

  void route_response(std::string_view chunk, TimePoint now, EngineOutput& out) {
    if (chunk.empty() || resp_dead_) return;
    if (r_.rebuild) {
      if (!keeps_body()) return;  // replaced: the upstream's body is not needed
      r_.raw.append(chunk);
      if (r_.raw.size() > kMaxHeldResponse) {  // too big to patch: the original goes through
        r_.rebuild = false;
        r_.patch = nullptr;
        r_.body.clear();
        if (r_.replace) {  // a status / header replacement still applies
          http::Head h = r_.head;
          rewrite_head(h, *r_.replace);
          r_.raw.replace(0, r_.raw_head, serialize_head(h));
        }
        forward(r_.raw, now, out);
        r_.raw.clear();
      }
      return;
    }
    if (r_.sse) {
      r_.hold.append(chunk);  // response_body sends it, event by event
      return;
    }
    forward(chunk, now, out);
  }

  // Sends response bytes, honouring http_reset's byte budget.
  void forward(std::string_view bytes, TimePoint at, EngineOutput& out) {
    at = std::max(at, r_.floor);
    if (r_.reset_left) {
      const auto left = static_cast<std::size_t>(std::max<std::int64_t>(*r_.reset_left, 0));
      if (bytes.size() >= left) {
        send(out, Stream::downstream, bytes.substr(0, left), at);
        end(out, Stream::downstream, r_.reset_kind, at);
        resp_dead_ = true;
        report(out, *r_.reset_config, (r_.reset_kind == EndKind::reset ? "reset" : "closed") +
                                          std::string(" the response after ") +
                                          std::to_string(r_.reset_config->compiled->after_bytes) + " bytes");
        return;
      }
      *r_.reset_left -= static_cast<std::int64_t>(bytes.size());
    }
    send(out, Stream::downstream, bytes, at);
  }

  void response_body(std::string_view chunk, std::string_view payload, TimePoint now, EngineOutput& out) {
    if (r_.rebuild) {
      if (keeps_body() && r_.body.size() + payload.size() <= kMaxHeldResponse) r_.body.append(payload);
      return;
    }
    if (!r_.sse || resp_dead_) return;
    // route_response appended the chunk to hold; the payload is a part of it.
    const std::size_t chunk_start = r_.hold.size() - chunk.size();
    const std::size_t payload_at = chunk_start + static_cast<std::size_t>(payload.data() - chunk.data());
    r_.payload.emplace_back(payload_at, payload_at + payload.size());
    std::vector<std::size_t> ends;
    std::vector<sse::Event> events;
    r_.splitter.feed(payload, ends, events);
    std::size_t sent = 0;  // bytes of hold already sent: the events before end there
    for (std::size_t i = 0; i < ends.size() && !resp_dead_; ++i) {
      const std::size_t event_end = payload_at + ends[i];
      ++r_.events;
      if (r_.corrupt && r_.events == r_.corrupt->compiled->after_events + 1) {
        corrupt_event(sent, event_end);
        report(out, *r_.corrupt, "corrupted event " + std::to_string(r_.events));
      }
      TimePoint at = std::max(now, r_.floor);
      if (r_.delay) {
        at = std::max(at, r_.last_event_release) + draw_delay(*r_.delay->compiled);
        r_.last_event_release = at;
        report(out, *r_.delay, "delayed event " + std::to_string(r_.events));
      }
      forward(std::string_view(r_.hold).substr(sent, event_end - sent), at, out);
      sent = event_end;
      if (r_.cut && r_.events == r_.cut->compiled->after_events) cut_now(*r_.cut, at, out);
      if (r_.stall && r_.events == r_.stall->compiled->after_events) {
        const Duration d = r_.stall->compiled->stall;
        r_.floor = d.count() == 0 ? kNever : at + d;
        if (d.count() == 0) {
          for (const auto& f : faults_) {
            if (f.get() == r_.stall) stalled_forever_by_ = f;
          }
        }
        report(out, *r_.stall, "stalled the stream after " + std::to_string(r_.events) + " events");
      }
    }
    if (resp_dead_) return;
    drop_held(sent);
    // An event too big to hold goes out as it comes (a fault then only sees its rest).
    if (r_.hold.size() > kMaxHeldEvent) {
      forward(r_.hold, now, out);
      drop_held(r_.hold.size());
    }
  }

  // Forgets the first `n` bytes of hold (they were sent), keeping the payload offsets right.
  void drop_held(std::size_t n) {
    r_.hold.erase(0, n);
    std::vector<std::pair<std::size_t, std::size_t>> kept;
    for (const auto& [b, e] : r_.payload) {
      if (e > n) kept.emplace_back(std::max(b, n) - n, e - n);
    }
    r_.payload = std::move(kept);
  }

  // sse_corrupt: the second half of the event's text in hold[from, to) becomes '~', line ends
  // and body framing kept, so the length and the transfer framing stay valid.
  void corrupt_event(std::size_t from, std::size_t to) {
    std::vector<std::size_t> at;  // offsets in hold of the event's text bytes
    for (const auto& [b, e] : r_.payload) {
      for (std::size_t k = std::max(b, from); k < std::min(e, to); ++k) at.push_back(k);
    }
    for (std::size_t i = at.size() / 2; i < at.size(); ++i) {
      char& c = r_.hold[at[i]];
      if (c != '\n' && c != '\r') c = '~';
    }
  }

  void cut_now(const ToxicConfig& cut, TimePoint at, EngineOutput& out) {
    end(out, Stream::downstream, cut.compiled->end, std::max(at, r_.floor));
    report(out, cut, "cut the stream after " + std::to_string(r_.events) + " events");
    resp_dead_ = true;
  }

  void flush_response_hold(TimePoint now, EngineOutput& out) {
    if (resp_dead_) return;
    if (!r_.hold.empty()) forward(r_.hold, now, out);
    r_.hold.clear();
    r_.payload.clear();
  }

  void response_end(TimePoint now, EngineOutput& out) {
    if (resp_dead_) return;
    if (r_.rebuild) {
      http::Head h = r_.head;
      std::string body = r_.body;
      bool as_it_came = false;
      if (r_.replace) rewrite_head(h, *r_.replace);  // with or without a body of its own
      if (r_.replace && r_.replace->body) {
        body = *r_.replace->body;
      } else if (r_.patch) {
        if (auto patched = merge_patch(body, r_.patch->patch)) {
          body = std::move(*patched);
          for (const auto& field : r_.patch->headers) set_field(h, field.name, field.value);
          report(out, *r_.patch_config, "patched the response body");
        } else {
          as_it_came = !r_.replace;  // not JSON: nothing to patch
        }
      }
      r_.rebuild = false;
      if (as_it_came) {
        forward(r_.raw, now, out);
      } else {
        remove_field(h, "transfer-encoding");
        set_field(h, "content-length", std::to_string(body.size()));
        forward(serialize_head(h) + body, now, out);
      }
    } else {
      flush_response_hold(now, out);
    }
    if (r_.interim) return;  // the real answer follows
    ++counters_.responses;
    if (r_.exchange) {
      for (auto it = exchanges_.begin(); it != exchanges_.end(); ++it) {
        if (&*it == r_.exchange) {
          exchanges_.erase(it);
          break;
        }
      }
    }
    r_ = Response{};
    if (resp_.upgraded()) {
      // A WebSocket (or CONNECT tunnel) now: bytes both ways, untouched.
      resp_passthrough_ = true;
      req_passthrough_ = true;
      send(out, Stream::upstream, req_pending_, now);
      req_pending_.clear();
    }
    emit_ready(now, out);
  }

  bool mcp_;
  http::Framer req_{true};
  http::Framer resp_{false};
  std::string req_pending_, resp_pending_;
  bool req_passthrough_ = false, resp_passthrough_ = false;
  bool resp_dead_ = false;  // a fault ended the connection: nothing more goes out
  ReqMode req_mode_ = ReqMode::idle;
  http::Head head_;
  std::string held_, held_body_;
  // The sse_stall holding everything at "never" (owned, so a new fault cannot reuse its address).
  std::shared_ptr<const ToxicConfig> stalled_forever_by_;
  TimePoint req_release_{};
  std::deque<Exchange> exchanges_;
  Response r_;
};

}  // namespace

std::unique_ptr<ProtocolEngine> make_http_engine(Rng rng, bool mcp) { return std::make_unique<HttpEngine>(rng, mcp); }

}  // namespace faultline
