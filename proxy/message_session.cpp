#include "proxy/message_session.hpp"

#include <deque>

#include <spdlog/spdlog.h>

#include "proxy/address.hpp"
#include "proxy/tls.hpp"
#include "proxy/workers.hpp"
#include "recorder/redaction.hpp"

namespace faultline {
namespace {

constexpr std::size_t kReadSize = 16 * 1024;
constexpr std::size_t kMaxBatchItems = 64;
constexpr std::size_t kMaxBatchBytes = 256 * 1024;
constexpr Duration kTimerSlack = std::chrono::microseconds(200);
constexpr Duration kHandshakeTimeout = std::chrono::seconds(10);

// An upstream as users write it: host:port, or http(s)://host[:port][/...].
struct Target {
  bool tls = false;
  std::string host;
  std::string port;
};

std::optional<Target> parse_target(std::string_view text) {
  Target t;
  std::string_view default_port;
  if (text.rfind("https://", 0) == 0) {
    t.tls = true;
    text.remove_prefix(8);
    default_port = "443";
  } else if (text.rfind("http://", 0) == 0) {
    text.remove_prefix(7);
    default_port = "80";
  }
  if (auto slash = text.find('/'); slash != std::string_view::npos) text = text.substr(0, slash);
  if (auto hp = split_host_port(text); hp && !hp->port.empty()) {
    t.host = hp->host;
    t.port = hp->port;
    return t;
  }
  if (default_port.empty() || text.empty()) return std::nullopt;
  if (text.front() == '[' && text.back() == ']') text = text.substr(1, text.size() - 2);
  t.host = std::string(text);
  t.port = std::string(default_port);
  return t;
}

}  // namespace

// side 0: the client's handshake, 1: the upstream's.
static void count_tls_failure(ProxyStats& stats, int side, std::string_view kind) {
  for (int k = 0; k < 5; ++k) {
    if (kind == kTlsFailureKinds[k]) stats.tls_failures[side][k].fetch_add(1, std::memory_order_relaxed);
  }
}

bool is_message_proxy(const ProxySnapshot& s) {
  return s.protocol != Protocol::tcp || s.listen_tls || s.upstream.rfind("https://", 0) == 0;
}

// One side's transport: a plain socket, or TLS over it.
struct MessageSession::Peer {
  Peer(tcp::socket s) : plain(std::move(s)), pause(plain->get_executor()) {}
  std::optional<tcp::socket> plain;
  std::unique_ptr<ssl::stream<tcp::socket>> tls;
  net::steady_timer pause;  // the reader waits here while the writers are full

  tcp::socket& lowest() { return tls ? tls->next_layer() : *plain; }
  void secure(ssl::context& context) {
    tls = std::make_unique<ssl::stream<tcp::socket>>(std::move(*plain), context);
    plain.reset();
  }
  awaitable<std::tuple<boost::system::error_code, std::size_t>> read_some(net::mutable_buffer b) {
    if (tls) co_return co_await tls->async_read_some(b, use_nothrow);
    co_return co_await plain->async_read_some(b, use_nothrow);
  }
  awaitable<std::tuple<boost::system::error_code, std::size_t>> write(const std::vector<net::const_buffer>& b) {
    if (tls) co_return co_await net::async_write(*tls, b, use_nothrow);
    co_return co_await net::async_write(*plain, b, use_nothrow);
  }
  // Before a half-close towards a TLS peer: our close_notify, which RFC 8446 (6.1) wants
  // before the write side closes; without it the peer sees a truncation. Asio's shutdown
  // would also wait for the peer's close_notify, reading the stream that read_loop reads,
  // so the peer's is marked as received just while SSL_shutdown runs (synchronously, as
  // the operation starts); reading goes on afterwards.
  awaitable<void> send_close_notify() {
    if (!tls) co_return;
    SSL* ssl = tls->native_handle();
    const int state = SSL_get_shutdown(ssl);
    if (state & SSL_SENT_SHUTDOWN) co_return;
    auto sent = std::make_shared<bool>(false);
    net::steady_timer wait(lowest().get_executor());
    wait.expires_at(TimePoint::max());
    SSL_set_shutdown(ssl, state | SSL_RECEIVED_SHUTDOWN);
    tls->async_shutdown([sent, &wait](const boost::system::error_code&) {
      *sent = true;
      wait.cancel();
    });
    SSL_set_shutdown(ssl, (SSL_get_shutdown(ssl) & ~SSL_RECEIVED_SHUTDOWN) | (state & SSL_RECEIVED_SHUTDOWN));
    while (!*sent) co_await wait.async_wait(use_nothrow);
  }
  bool truncated = false;  // its TLS ended with a bare FIN, no close_notify: relayed as such
};

// One direction's output: the byte faults' chain and the bytes waiting for their time.
struct MessageSession::Outbound final : Emitter {
  Outbound(Stream s, Rng rng, const net::any_io_executor& ex) : stream(s), chain(rng), timer(ex) {}
  ~Outbound() {
    if (budget) budget->release(queued);
  }
  struct Item {
    std::shared_ptr<std::string> owner;
    Segment segment;
  };
  struct End {
    EndKind kind;
    TimePoint at;
    bool from_engine;  // survives chain rebuilds (the chain's stages re-declare theirs)
  };
  void emit(Segment s) override {
    if (s.size == 0) return;
    s.release = std::max(s.release, last_release);
    last_release = s.release;
    items.push_back({owner, s});
    queued += s.size;
    if (budget) budget->add(s.size);
  }
  void end(EndKind kind, TimePoint at) override { ends.push_back({kind, std::max(at, last_release), false}); }

  Stream stream;
  Chain chain;
  ActiveToxics active;  // the byte faults the chain follows, and their next schedule edge
  std::shared_ptr<std::string> owner;  // the bytes being pushed through the chain
  std::deque<Item> items;
  std::vector<End> ends;
  std::size_t queued = 0;
  std::shared_ptr<BufferBudget> budget;  // serve --max-buffered-bytes: `queued` counts against it
  TimePoint last_release{};
  bool done = false;
  net::steady_timer timer;
};

class MessageSession::Output final : public EngineOutput {
 public:
  explicit Output(MessageSession& s) : s_(s) {}
  void send(Stream towards, std::string bytes, TimePoint release) override {
    Outbound& o = s_.towards(towards);
    if (o.done || s_.core_.closing()) return;
    o.owner = std::make_shared<std::string>(std::move(bytes));
    o.chain.push(Segment{reinterpret_cast<std::uint8_t*>(o.owner->data()), o.owner->size(), release}, o);
    o.chain.report();
    o.owner.reset();
    s_.wake(o);
  }
  void end(Stream towards, EndKind kind, TimePoint at) override {
    Outbound& o = s_.towards(towards);
    o.ends.push_back({kind, std::max(at, o.last_release), true});
    s_.wake(o);
  }
  void applied(const ToxicConfig& fault, std::string_view what) override {
    // The description names the request ("delayed GET /x?token=..."): redacted like the
    // recording, and only scanned when the line is logged at all.
    if (spdlog::should_log(spdlog::level::debug))
      spdlog::debug("proxy {}: {} {}: {}", s_.runtime_.name(), fault.type, fault.name, rec::redact_description_for_log(what));
    if (!s_.core_.taps.empty()) s_.core_.taps.fault(fault.name, fault.type, what, Clock::now());
  }

 private:
  MessageSession& s_;
};

MessageSession::MessageSession(Worker& worker, std::shared_ptr<ProxyRuntime> runtime, tcp::socket client,
                               SessionSettings settings, std::uint64_t generation, std::uint64_t index)
    : core_(worker, runtime, generation, index), runtime_(*runtime), settings_(std::move(settings)) {
  auto ex = client.get_executor();
  client_ = std::make_unique<Peer>(std::move(client));
  upstream_ = std::make_unique<Peer>(tcp::socket(ex));
  Rng rng = core_.rng();
  to_upstream_ = std::make_unique<Outbound>(Stream::upstream, rng.derive("upstream"), ex);
  to_client_ = std::make_unique<Outbound>(Stream::downstream, rng.derive("downstream"), ex);
  to_upstream_->budget = to_client_->budget = settings_.budget;
  output_ = std::make_unique<Output>(*this);
  snapshot_ = runtime_.snapshot();
  engine_ = make_engine(snapshot_->protocol, rng.derive("protocol"));
}

MessageSession::~MessageSession() = default;

void MessageSession::start(std::shared_ptr<MessageSession> session) {
  session->core_.enlist(*session);
  auto ex = session->client_->lowest().get_executor();
  spawn_connection(session, ex, session->run());
}

awaitable<void> MessageSession::run() {
  auto self = shared_from_this();
  if (!core_.admit(client_->lowest())) {
    close(EndKind::close);
    co_return;
  }
  boost::system::error_code ec;
  refresh(true);
  const TimePoint now = Clock::now();
  for (Outbound* o : {to_upstream_.get(), to_client_.get()}) {
    if (const auto due = end_due_at_start(o->ends, now)) {
      close(*due);
      co_return;
    }
  }
  client_->lowest().set_option(tcp::no_delay(true), ec);
  if (snapshot_->listen_tls && !co_await handshake_client()) {
    close(EndKind::close);
    co_return;
  }
  if (!co_await connect_upstream() || core_.closing()) {
    if (!closing_after_reply_) close(EndKind::close);
    co_return;
  }
  auto ex = client_->lowest().get_executor();
  auto on_done = [self](std::exception_ptr e) {
    if (e) self->close(EndKind::reset);
  };
  for (Stream s : {Stream::upstream, Stream::downstream}) {
    net::co_spawn(ex, write_loop(s), on_done);
    net::co_spawn(ex, read_loop(s), on_done);
  }
}

namespace {
// A handshake's deadline closes the transport's socket, which fails the handshake.
std::function<void()> close_on_expiry(tcp::socket& socket) {
  return [&socket] {
    boost::system::error_code ignored;
    socket.close(ignored);
  };
}
}  // namespace

awaitable<bool> MessageSession::handshake_client() {
  auto self = shared_from_this();
  client_->secure(*snapshot_->listen_tls);
  Deadline deadline(client_->lowest().get_executor(), kHandshakeTimeout, close_on_expiry(client_->lowest()));
  auto [ec] = co_await client_->tls->async_handshake(ssl::stream_base::server, use_nothrow);
  if (!ec) co_return true;
  if (core_.closing()) co_return false;
  SSL* native = client_->tls->native_handle();
  const std::string reason = deadline.expired() ? "timed out" : tls::handshake_failure_reason(ec, native);
  const std::string_view kind = deadline.expired() ? "other" : tls::handshake_failure_kind(ec, native);
  count_tls_failure(runtime_.stats, 0, kind);
  spdlog::warn("proxy {}: TLS handshake with client {} failed: {}", runtime_.name(), core_.info()->client, reason);
  co_return false;
}

void MessageSession::upstream_unreachable(const std::string& reason) {
  runtime_.stats.upstream_connect_failures.fetch_add(1, std::memory_order_relaxed);
  spdlog::warn("proxy {}: upstream {} unreachable: {}", runtime_.name(), snapshot_->upstream, reason);
  if (settings_.on_upstream_failure) settings_.on_upstream_failure();
  fail_upstream(reason);
}

awaitable<bool> MessageSession::handshake_upstream(std::string host) {
  auto self = shared_from_this();
  upstream_->secure(*snapshot_->upstream_tls);
  tls::ClientOptions options;
  options.verify = snapshot_->upstream_verify;
  options.server_name = snapshot_->upstream_server_name.empty() ? host : snapshot_->upstream_server_name;
  tls::prepare_client(upstream_->tls->native_handle(), options);
  Deadline deadline(upstream_->lowest().get_executor(), kHandshakeTimeout, close_on_expiry(upstream_->lowest()));
  auto [ec] = co_await upstream_->tls->async_handshake(ssl::stream_base::client, use_nothrow);
  if (core_.closing()) co_return false;
  if (!ec) co_return true;
  SSL* native = upstream_->tls->native_handle();
  const std::string reason = deadline.expired() ? "timed out" : tls::handshake_failure_reason(ec, native);
  const std::string_view kind = deadline.expired() ? "other" : tls::handshake_failure_kind(ec, native);
  count_tls_failure(runtime_.stats, 1, kind);
  spdlog::warn("proxy {}: TLS handshake with upstream {} failed: {}", runtime_.name(), snapshot_->upstream, reason);
  runtime_.stats.upstream_connect_failures.fetch_add(1, std::memory_order_relaxed);
  fail_upstream("TLS handshake failed: " + reason);
  co_return false;
}

awaitable<bool> MessageSession::connect_upstream() {
  auto self = shared_from_this();
  const auto target = parse_target(snapshot_->upstream);
  if (!target) {
    upstream_unreachable("not host:port or http(s)://host[:port]");
    co_return false;
  }
  const boost::system::error_code ec =
      co_await dial_with_timeout(upstream_->lowest(), target->host, target->port, settings_.connect_timeout, core_.closing());
  if (core_.closing()) co_return false;
  if (ec) {
    upstream_unreachable(ec.message());
    co_return false;
  }
  boost::system::error_code ignored;
  upstream_->lowest().set_option(tcp::no_delay(true), ignored);
  if (!target->tls) co_return true;
  if (!snapshot_->upstream_tls) {
    upstream_unreachable("no TLS context for an https upstream");
    co_return false;
  }
  co_return co_await handshake_upstream(target->host);
}

// An HTTP client is told why, in a 502, instead of seeing a bare close.
void MessageSession::fail_upstream(const std::string& reason) {
  if (snapshot_->protocol != Protocol::http && snapshot_->protocol != Protocol::mcp) return;
  const std::string body = "faultline: upstream " + snapshot_->upstream + ": " + reason + "\n";
  output_->send(Stream::downstream,
                "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: " +
                    std::to_string(body.size()) + "\r\nconnection: close\r\n\r\n" + body,
                Clock::now());
  output_->end(Stream::downstream, EndKind::close, Clock::now());
  // The writer is what sends it: start it, and let it close the connection.
  auto self = shared_from_this();
  net::co_spawn(client_->lowest().get_executor(), write_loop(Stream::downstream), [self](std::exception_ptr) {});
  closing_after_reply_ = true;
}

void MessageSession::refresh(bool force) {
  const std::uint64_t version = runtime_.version();
  const TimePoint now = Clock::now();
  const bool new_config = force || version != seen_version_;
  // A schedule edge of a byte fault passing is a reason too (protocol faults check their
  // window per message, in the engine).
  if (!new_config && !to_upstream_->active.stale(version, now) && !to_client_->active.stale(version, now)) return;
  if (new_config) {
    seen_version_ = version;
    snapshot_ = runtime_.snapshot();
    core_.follow_recordings(*snapshot_, snapshot_->protocol, now);
  }
  ToxicList protocol_faults;
  for (const ToxicList* list : {&snapshot_->upstream_toxics, &snapshot_->downstream_toxics}) {
    for (const auto& t : *list) {
      const ToxicType* type = ToxicRegistry::instance().find(t->type);
      if (!type || type->layer == Layer::bytes) continue;
      if (!protocol_accepts(snapshot_->protocol, type->layer)) continue;
      if (std::none_of(protocol_faults.begin(), protocol_faults.end(), [&](const auto& p) { return p->name == t->name; })) {
        protocol_faults.push_back(t);
      }
    }
  }
  if (engine_ && new_config) {
    const bool held = engine_->holds_forever();
    engine_->set_faults(protocol_faults);
    // Bytes the engine held "forever" (sse_stall with duration 0) go once it lets go.
    const bool let_go = held && !engine_->holds_forever();
    for (Outbound* o : {to_upstream_.get(), to_client_.get()}) {
      if (!let_go) break;
      bool released = false;
      for (auto& item : o->items) {
        if (item.segment.release == kNever) item.segment.release = now, released = true;
      }
      // An end that came in behind the held bytes (the upstream closed meanwhile) goes after them.
      for (auto& e : o->ends) {
        if (e.at == kNever && e.from_engine) e.at = now, released = true;
      }
      if (o->last_release == kNever) o->last_release = now;
      if (released) wake(*o);
    }
  }
  std::vector<std::string> names[2];
  for (Outbound* o : {to_upstream_.get(), to_client_.get()}) {
    const ToxicList& all = o->stream == Stream::upstream ? snapshot_->upstream_toxics : snapshot_->downstream_toxics;
    ToxicList bytes;
    for (const auto& t : all) {
      const ToxicType* type = ToxicRegistry::instance().find(t->type);
      if (type && type->layer == Layer::bytes) bytes.push_back(t);
    }
    const Follow follow = follow_toxics(o->active, version, bytes, now);
    if (follow == Follow::changed || force) {
      for (auto& item : o->items) item.segment.release = std::min(item.segment.release, now);
      o->last_release = std::min(o->last_release, now);
      std::erase_if(o->ends, [](const Outbound::End& e) { return !e.from_engine; });
      if (o->chain.rebuild(bytes, now, *o)) o->ends.push_back({EndKind::close, now, true});
      wake(*o);
    } else if (follow == Follow::new_edge) {
      wake(*o);  // its writer waits for the new edge
    }
    names[o->stream == Stream::upstream ? 0 : 1] = o->chain.active_names();
  }
  if (core_.info()) {
    std::lock_guard lock(core_.info()->mutex);
    for (int i = 0; i < 2; ++i) {
      core_.info()->toxics[i] = names[i];
      for (const auto& p : protocol_faults) core_.info()->toxics[i].push_back(p->name);
    }
  }
}

void MessageSession::config_changed() {
  if (core_.closing()) return;
  refresh(false);
}

void MessageSession::wake(Outbound& o) { o.timer.cancel(); }

awaitable<void> MessageSession::read_loop(Stream from) {
  auto self = shared_from_this();
  Peer& peer = source(from);
  std::unique_ptr<char[]> buffer(new char[kReadSize]);
  DirectionStats& stats = runtime_.stats.direction[from == Stream::upstream ? 0 : 1];
  while (!core_.closing()) {
    if (to_upstream_->queued + to_client_->queued >= settings_.max_queued_bytes) {
      // Backpressure: stop reading until a writer frees room; TCP pushes back on the sender.
      peer.pause.expires_at(TimePoint::max());
      co_await peer.pause.async_wait(use_nothrow);
      continue;
    }
    if (settings_.budget && settings_.budget->exhausted() && to_upstream_->queued + to_client_->queued > 0) {
      // The server-wide budget is spent: pause too while this connection holds bytes, and
      // look again shortly (what frees the budget may be another connection's writer).
      settings_.budget->count_pause();
      peer.pause.expires_after(BufferBudget::kRecheck);
      co_await peer.pause.async_wait(use_nothrow);
      continue;
    }
    auto [ec, n] = co_await peer.read_some(net::buffer(buffer.get(), kReadSize));
    if (core_.closing()) co_return;
    const TimePoint now = Clock::now();
    refresh(false);
    if (n > 0) {
      stats.received_bytes.fetch_add(n, std::memory_order_relaxed);
      count_received(runtime_.stats, *core_.info(), from, n);
      const std::string_view data(buffer.get(), n);
      if (engine_) {
        engine_->on_bytes(from, data, now, *output_);
        const EngineCounters& c = engine_->counters();
        runtime_.stats.messages_requests.fetch_add(c.requests - reported_.requests, std::memory_order_relaxed);
        runtime_.stats.messages_responses.fetch_add(c.responses - reported_.responses, std::memory_order_relaxed);
        runtime_.stats.undecodable_streams.fetch_add(c.undecodable - reported_.undecodable, std::memory_order_relaxed);
        reported_ = c;
      } else {
        output_->send(from, std::string(data), now);
      }
    }
    if (ec) {
      if (core_.closing()) co_return;
      if (ec == net::error::eof || ec == ssl::error::stream_truncated) {
        if (ec == ssl::error::stream_truncated) peer.truncated = true;
        if (engine_) engine_->on_eof(from, now, *output_);
        else output_->end(from, EndKind::half_close, now);
        co_return;
      }
      close(end_after_read_error(ec).value_or(EndKind::close));
      co_return;
    }
  }
}

awaitable<void> MessageSession::write_loop(Stream dir) {
  auto self = shared_from_this();
  Outbound& o = towards(dir);
  DirectionStats& stats = runtime_.stats.direction[dir == Stream::upstream ? 0 : 1];
  // A half-close relays the end of the other side: to a TLS peer as close_notify when that
  // end was clean, as a bare FIN (a truncation) when it was one.
  auto end_tls = [this](Stream towards, EndKind kind) -> awaitable<void> {
    if (kind != EndKind::half_close || closing_after_reply_ || source(towards).truncated) co_return;
    co_await destination(towards).send_close_notify();
  };
  while (!core_.closing() && !o.done) {
    refresh(false);  // a schedule edge that passed while this writer waited applies now
    const TimePoint now = Clock::now();
    const FirstEnd first = first_end(o.ends);
    const TimePoint end_at = first.at;
    const EndKind end_kind = first.kind;
    const bool has_end = !o.ends.empty();
    if (!o.items.empty()) {
      const Outbound::Item item = o.items.front();  // holds the bytes while they are written
      if (has_end && end_at < item.segment.release) {
        if (end_at > now) {
          co_await wait_until(o.timer, o.active, end_at);
          continue;
        }
        co_await end_tls(dir, end_kind);
        execute_end(dir, end_kind);
        co_return;
      }
      if (item.segment.release > now + kTimerSlack) {
        co_await wait_until(o.timer, o.active, item.segment.release);
        continue;
      }
      // Everything already due goes in one gathered write: an answer's head and body, or
      // pipelined answers, leave in one segment instead of one syscall each.
      std::vector<net::const_buffer> batch;
      std::size_t count = 0, bytes = 0;
      for (const auto& next : o.items) {
        if (count == kMaxBatchItems || bytes >= kMaxBatchBytes || next.segment.release > now + kTimerSlack ||
            (has_end && end_at < next.segment.release)) {
          break;
        }
        batch.emplace_back(next.segment.data, next.segment.size);
        if (!core_.taps.empty()) core_.taps.data(dir, next.segment.data, next.segment.size, now);
        ++count;
        bytes += next.segment.size;
      }
      auto [ec, written] = co_await destination(dir).write(batch);
      if (core_.closing()) co_return;
      if (ec) {
        close(EndKind::reset);
        co_return;
      }
      stats.sent_bytes.fetch_add(written, std::memory_order_relaxed);
      o.queued -= bytes;
      if (o.budget) o.budget->release(bytes);
      for (std::size_t i = 0; i < count; ++i) o.items.pop_front();
      client_->pause.cancel();
      upstream_->pause.cancel();
      continue;
    }
    if (has_end) {
      if (end_at <= now) {
        co_await end_tls(dir, end_kind);
        execute_end(dir, end_kind);
        co_return;
      }
      co_await wait_until(o.timer, o.active, end_at);
      continue;
    }
    co_await wait_until(o.timer, o.active, kNever);
  }
}

void MessageSession::execute_end(Stream dir, EndKind kind) {
  if (core_.closing()) return;
  Outbound& o = towards(dir);
  if (!core_.taps.empty()) core_.taps.end(dir, kind, Clock::now());
  if (kind == EndKind::half_close && !closing_after_reply_) {
    ConnectionCore::half_close(destination(dir).lowest());
    o.done = true;
    if (to_upstream_->done && to_client_->done) close(EndKind::close);
    return;
  }
  close(kind == EndKind::half_close ? EndKind::close : kind);
}

void MessageSession::close(EndKind how) {
  if (!core_.begin_close(how)) return;
  core_.end_transports(how, client_->lowest(), upstream_->lowest());
  for (Outbound* o : {to_upstream_.get(), to_client_.get()}) {
    o->chain.report();
    o->timer.cancel();
  }
  client_->pause.cancel();
  upstream_->pause.cancel();
}

}  // namespace faultline
