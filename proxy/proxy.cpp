#include "proxy/proxy.hpp"

#include <algorithm>

#include <sys/socket.h>

#include <spdlog/spdlog.h>

#include "proxy/address.hpp"
#include "proxy/log_limit.hpp"
#include "proxy/server_context.hpp"
#include "proxy/message_session.hpp"
#include "proxy/session.hpp"
#include "recorder/recording.hpp"

namespace faultline {
namespace {

std::string lower_first(std::string s) {
  if (!s.empty() && s[0] >= 'A' && s[0] <= 'Z') s[0] = static_cast<char>(s[0] - 'A' + 'a');
  return s;
}

// Resolves listen text the way Go's net.Listen does, except that a listen without a host
// ("" or ":PORT") binds loopback, not every interface (Go and Toxiproxy bind every one):
// a chaos proxy reachable from the network by default is an open relay into the upstream.
// "0.0.0.0:PORT" or "[::]:PORT" asks for every interface.
std::optional<tcp::endpoint> resolve_listen(net::io_context& ioc, const std::string& listen, std::string& error) {
  std::optional<HostPort> hp = listen.empty() ? HostPort{"", "0"} : split_host_port(listen);
  if (!hp) {
    error = "listen tcp " + listen + ": address " + listen + ": missing port in address";
    return std::nullopt;
  }
  unsigned long port = 0;
  try {
    std::size_t used = 0;
    port = std::stoul(hp->port, &used);
    if (used != hp->port.size() || port > 65535) throw std::out_of_range("port");
  } catch (const std::exception&) {
    error = "listen tcp " + listen + ": address " + hp->port + ": invalid port";
    return std::nullopt;
  }
  const auto p = static_cast<unsigned short>(port);
  if (hp->host.empty()) return tcp::endpoint(net::ip::address_v4::loopback(), p);
  if (hp->host == "localhost") return tcp::endpoint(net::ip::address_v4::loopback(), p);
  boost::system::error_code ec;
  auto address = net::ip::make_address(hp->host, ec);
  if (!ec) return tcp::endpoint(address, p);
  tcp::resolver resolver(ioc);
  auto results = resolver.resolve(hp->host, hp->port, ec);
  if (ec || results.empty()) {
    error = "listen tcp " + listen + ": lookup " + hp->host + ": " + lower_first(ec ? ec.message() : "no such host");
    return std::nullopt;
  }
  for (const auto& r : results) {
    if (r.endpoint().address().is_v4()) return r.endpoint();
  }
  return results.begin()->endpoint();
}

std::string format_endpoint(const tcp::endpoint& ep) {
  return join_host_port(ep.address().to_string(), ep.port());
}

}  // namespace

// A proxy's listening sockets: one per worker, bound to the same address with
// SO_REUSEPORT, so the kernel spreads new clients over the workers and each is accepted
// on the thread that will serve it (no hand-off between threads). Accept loops run on
// the workers; opening, closing and the refuse-mode probe run on the control thread.
//
// What the accept loops share. Kept apart from the Listener so that the Listener (which
// owns a control-thread timer) is only ever destroyed on the control thread, and so
// that each opening gets its own `closed` flag (a loop of an earlier opening can never
// see it reset).
struct AcceptShared {
  AcceptShared(ServerContext& context, std::shared_ptr<ProxyRuntime> runtime, std::string name)
      : context(context), runtime(std::move(runtime)), name(std::move(name)) {}
  ServerContext& context;
  std::shared_ptr<ProxyRuntime> runtime;
  std::string name;
  std::atomic<bool> closed{false};
  std::function<void()> on_upstream_failure;  // posts to the control thread
  LogLimiter refused_log;       // max_connections refusals: a line a second at most
  LogLimiter accept_error_log;  // accept(2) failures (out of descriptors): the same
};

awaitable<void> accept_loop(std::shared_ptr<AcceptShared> shared, Worker& worker,
                            std::shared_ptr<tcp::acceptor> acceptor);

struct Proxy::Listener : std::enable_shared_from_this<Proxy::Listener> {
  Listener(ServerContext& context, std::shared_ptr<ProxyRuntime> runtime, std::string name)
      : context(context), runtime(std::move(runtime)), name(std::move(name)), probe_timer(context.control) {}

  ServerContext& context;
  std::shared_ptr<ProxyRuntime> runtime;
  std::string name;
  tcp::endpoint bound;
  std::vector<std::pair<Worker*, std::shared_ptr<tcp::acceptor>>> acceptors;
  std::shared_ptr<AcceptShared> shared;  // of the current opening
  // Control thread only.
  Proxy* owner = nullptr;  // cleared when the proxy stops
  bool probing = false;
  net::steady_timer probe_timer;

  // Binds every worker's socket; on failure nothing stays bound.
  boost::system::error_code open(tcp::endpoint at) {
    boost::system::error_code ec;
    if (at.port() != 0) {
      // SO_REUSEPORT would let us share a port another program listens on: check first
      // with a plain socket, so "address already in use" is still reported.
      tcp::acceptor probe(context.control);
      probe.open(at.protocol(), ec);
      if (!ec) probe.set_option(tcp::acceptor::reuse_address(true), ec);
      if (!ec && at.address().is_v6() && at.address().is_unspecified()) probe.set_option(net::ip::v6_only(false), ec);
      if (!ec) probe.bind(at, ec);
      boost::system::error_code ignored;
      probe.close(ignored);
      if (ec) return ec;
    }
    for (std::size_t i = 0; i < context.workers.size(); ++i) {
      Worker& worker = context.workers.at(i);
      auto acceptor = std::make_shared<tcp::acceptor>(worker.ioc);
      acceptor->open(at.protocol(), ec);
      if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
      if (!ec) acceptor->set_option(net::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>(true), ec);
      if (!ec && at.address().is_v6() && at.address().is_unspecified()) {
        acceptor->set_option(net::ip::v6_only(false), ec);  // "[::]" serves IPv4 too, as in Go
      }
      if (!ec) acceptor->bind(at, ec);
      if (!ec) acceptor->listen(4096, ec);
      if (!ec && i == 0) at = acceptor->local_endpoint(ec);  // port 0: the others join the port we got
      if (ec) {
        boost::system::error_code ignored;
        acceptor->close(ignored);
        close();
        return ec;
      }
      acceptors.emplace_back(&worker, std::move(acceptor));
    }
    bound = at;
    shared = std::make_shared<AcceptShared>(context, runtime, name);
    std::weak_ptr<Listener> weak = weak_from_this();
    shared->on_upstream_failure = [weak, &control = context.control] {
      net::post(control, [weak] {
        if (auto listener = weak.lock(); listener && listener->owner) listener->owner->upstream_failed();
      });
    };
    return ec;
  }

  void start_accepting() {
    for (auto& [worker, acceptor] : acceptors) {
      net::co_spawn(worker->ioc, accept_loop(shared, *worker, acceptor), net::detached);
    }
  }

  // Stops listening at once (new clients are refused from here on) and lets each worker
  // close its own socket. shutdown(2) on the descriptor is safe from this thread; the
  // Asio object itself is only touched by its worker.
  void close() {
    if (shared) shared->closed.store(true, std::memory_order_release);
    for (auto& entry : acceptors) {
      std::shared_ptr<tcp::acceptor> acceptor = entry.second;  // (clang 14 cannot capture bindings)
      ::shutdown(acceptor->native_handle(), SHUT_RDWR);
      net::post(entry.first->ioc, [acceptor] {
        boost::system::error_code ignored;
        acceptor->close(ignored);
      });
    }
    acceptors.clear();
  }

  awaitable<void> probe_loop();
};

awaitable<void> accept_loop(std::shared_ptr<AcceptShared> shared, Worker& worker,
                            std::shared_ptr<tcp::acceptor> acceptor) {
  ServerContext& context = shared->context;
  const auto& runtime = shared->runtime;
  const std::string& name = shared->name;
  net::steady_timer backoff(worker.ioc);
  while (!shared->closed.load(std::memory_order_acquire)) {
    auto [ec, socket] = co_await acceptor->async_accept(use_nothrow);
    if (shared->closed.load(std::memory_order_acquire) || ec == net::error::operation_aborted) co_return;
    if (ec) {
      // Out of descriptors or similar: back off briefly instead of spinning.
      if (const auto n = shared->accept_error_log.admit()) {
        spdlog::warn("proxy {}: accept failed: {}{}", name, ec.message(),
                     n > 1 ? " (" + std::to_string(n) + " times since the last report)" : std::string());
      }
      backoff.expires_after(std::chrono::milliseconds(50));
      co_await backoff.async_wait(use_nothrow);
      continue;
    }
    ProxyStats& stats = runtime->stats;
    stats.connections_total.fetch_add(1, std::memory_order_relaxed);
    const std::uint64_t limit = runtime->max_connections.load(std::memory_order_relaxed);
    if (limit > 0 && stats.connections_active.load(std::memory_order_relaxed) >= limit) {
      stats.connections_refused_limit.fetch_add(1, std::memory_order_relaxed);
      if (const auto n = shared->refused_log.admit()) {
        spdlog::warn("proxy {}: refused {}: max_connections is {} (faultline_proxy_connections_refused_total counts "
                     "every one)",
                     name, n > 1 ? std::to_string(n) + " connections since the last report" : std::string("a connection"),
                     limit);
      }
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    stats.connections_active.fetch_add(1, std::memory_order_relaxed);
    SessionSettings settings;
    settings.connect_timeout = context.connect_timeout;
    settings.max_queued_bytes = context.max_queued_bytes;
    settings.budget = context.budget;
    settings.splice = context.splice;
    settings.on_upstream_failure = [shared] {
      shared->runtime->stats.connections_refused_upstream.fetch_add(1, std::memory_order_relaxed);
      shared->on_upstream_failure();
    };
    if (is_message_proxy(*runtime->snapshot())) {
      MessageSession::start(std::make_shared<MessageSession>(worker, runtime, std::move(socket), std::move(settings),
                                                             runtime->generation(), runtime->next_connection_index()));
    } else {
      Session::start(std::make_shared<Session>(worker, runtime, std::move(socket), std::move(settings),
                                               runtime->generation(), runtime->next_connection_index()));
    }
  }
}

// "refuse" mode: the listener stays closed while the upstream is down; probe it and
// reopen on the same address once it answers.
awaitable<void> Proxy::Listener::probe_loop() {
  auto self = shared_from_this();
  while (owner) {
    probe_timer.expires_after(context.upstream_probe_interval);
    co_await probe_timer.async_wait(use_nothrow);
    if (!owner) co_return;
    auto target = split_host_port(runtime->snapshot()->upstream);
    if (!target) continue;
    auto& ioc = context.control;
    tcp::resolver resolver(ioc);
    auto [rec, endpoints] = co_await resolver.async_resolve(target->host, target->port, use_nothrow);
    if (!owner) co_return;
    if (rec) continue;
    // The deadline may fire as the connect completes: it owns the probe socket with us.
    auto probe = std::make_shared<tcp::socket>(ioc);
    net::steady_timer deadline(ioc);
    deadline.expires_after(std::chrono::seconds(1));
    deadline.async_wait([probe](const boost::system::error_code& ec) {
      if (!ec) {
        boost::system::error_code ignored;
        probe->close(ignored);
      }
    });
    auto [cec, ep] = co_await net::async_connect(*probe, endpoints, use_nothrow);
    deadline.cancel();
    if (!owner) co_return;
    if (cec) continue;
    boost::system::error_code ignored;
    probe->close(ignored);
    if (auto ec = open(bound)) {
      spdlog::warn("proxy {}: upstream is back but re-listening on {} failed: {}", name, format_endpoint(bound),
                   ec.message());
      continue;
    }
    spdlog::info("proxy {}: upstream {} is back; accepting again", name, owner->spec_.upstream);
    probing = false;
    start_accepting();
    co_return;
  }
}

Proxy::Proxy(ServerContext& context, ProxySpec spec)
    : context_(context), spec_(std::move(spec)), runtime_(std::make_shared<ProxyRuntime>(spec_.name, context.seed)) {
  publish();
}

Proxy::~Proxy() { stop(); }

std::string Proxy::listen_text() const {
  if (!listener_) return spec_.listen;
  return format_endpoint(listener_->bound);
}

std::optional<std::string> Proxy::start() {
  if (listener_) return std::nullopt;
  std::string error;
  auto endpoint = resolve_listen(context_.control, spec_.listen, error);
  if (!endpoint) return error;
  auto listener = std::make_shared<Listener>(context_, runtime_, spec_.name);
  if (auto ec = listener->open(*endpoint)) {
    return "listen tcp " + format_endpoint(*endpoint) + ": bind: " + lower_first(ec.message());
  }
  listener->owner = this;
  listener_ = listener;
  // Like Toxiproxy, remember where we bound: re-enabling a ":0" proxy keeps its port.
  spec_.listen = format_endpoint(listener->bound);
  listener->start_accepting();
  spdlog::info("proxy {}: listening on {}, upstream {}", spec_.name, listen_text(), spec_.upstream);
  return std::nullopt;
}

void Proxy::stop_accepting() {
  if (!listener_) return;
  listener_->owner = nullptr;
  listener_->close();
  listener_->probe_timer.cancel();
  listener_.reset();
}

void Proxy::stop() {
  const bool was_running = listener_ != nullptr;
  stop_accepting();
  runtime_->next_generation();
  auto runtime = runtime_;
  // Fire and forget: each worker closes its own connections of this proxy.
  context_.workers.broadcast([runtime](Worker& worker) {
    std::vector<Connection*> doomed;
    for (Connection* s : worker.sessions) {
      if (&s->runtime() == runtime.get() && s->generation() < runtime->generation()) doomed.push_back(s);
    }
    for (Connection* s : doomed) s->close(EndKind::close);
  });
  if (was_running) spdlog::info("proxy {}: stopped", spec_.name);
}

bool Proxy::listen_differs(const std::string& listen) const {
  std::string error;
  auto endpoint = resolve_listen(context_.control, listen, error);
  if (!endpoint) return true;
  return format_endpoint(*endpoint) != listen_text();
}

std::optional<std::string> Proxy::check_listen(const std::string& listen) const {
  std::string error;
  if (!resolve_listen(context_.control, listen, error)) return error;
  return std::nullopt;
}

void Proxy::upstream_failed() {
  if (!spec_.refuse_when_down || !listener_ || listener_->probing) return;
  spdlog::warn("proxy {}: upstream {} is down; refusing new connections until it answers", spec_.name,
               spec_.upstream);
  listener_->probing = true;
  listener_->close();
  net::co_spawn(context_.control, listener_->probe_loop(), net::detached);
}

void Proxy::retire(std::shared_ptr<const ToxicConfig> toxic) {
  if (retired_.size() >= kMaxRetiredToxics) retired_.erase(retired_.begin());
  retired_.push_back(std::move(toxic));
}

void Proxy::replace_toxics(std::vector<std::shared_ptr<const ToxicConfig>> next) {
  for (auto& t : toxics_) {
    const bool kept = std::any_of(next.begin(), next.end(), [&](const auto& n) { return n->shared == t->shared; });
    if (!kept) retire(std::move(t));
  }
  toxics_ = std::move(next);
}

void Proxy::publish() {
  auto snapshot = std::make_shared<ProxySnapshot>();
  snapshot->upstream = spec_.upstream;
  snapshot->protocol = spec_.protocol;
  snapshot->upstream_tls = spec_.upstream_tls;
  snapshot->upstream_verify = spec_.upstream_verify;
  snapshot->upstream_server_name = spec_.upstream_server_name;
  snapshot->listen_tls = spec_.listen_tls;
  for (const auto& r : context_.recordings) {
    if (r->covers(spec_.name)) snapshot->recordings.push_back(r);
  }
  for (const auto& t : toxics_) {
    if (applies_to(t->stream, Stream::upstream)) snapshot->upstream_toxics.push_back(t);
    if (applies_to(t->stream, Stream::downstream)) snapshot->downstream_toxics.push_back(t);
  }
  runtime_->max_connections.store(spec_.max_connections.value_or(context_.max_connections), std::memory_order_relaxed);
  runtime_->publish(std::move(snapshot));
  auto runtime = runtime_;
  context_.workers.broadcast([runtime](Worker& worker) {
    std::vector<Connection*> affected;
    for (Connection* s : worker.sessions) {
      if (&s->runtime() == runtime.get()) affected.push_back(s);
    }
    for (Connection* s : affected) s->config_changed();
  });
}

}  // namespace faultline
