#include "proxy/connection_core.hpp"

#include <spdlog/spdlog.h>

#include "proxy/address.hpp"
#include "proxy/workers.hpp"

namespace faultline {

void spawn_connection(std::shared_ptr<Connection> connection, const net::any_io_executor& ex, awaitable<void> body) {
  net::co_spawn(ex, std::move(body), [connection](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("proxy {}: session failed: {}", connection->runtime().name(), ex.what());
    }
    connection->close(EndKind::reset);
  });
}

std::optional<EndKind> end_after_read_error(const boost::system::error_code& ec) {
  if (ec == net::error::operation_aborted) return std::nullopt;
  if (ec == net::error::connection_reset || ec == net::error::broken_pipe) return EndKind::reset;
  return EndKind::close;
}

Deadline::Deadline(const net::any_io_executor& ex, Duration after, std::function<void()> on_expiry)
    : state_(std::make_shared<State>()), timer_(ex) {
  state_->on_expiry = std::move(on_expiry);
  timer_.expires_after(after);
  timer_.async_wait([state = state_](const boost::system::error_code& ec) {
    if (ec || state->finished) return;
    state->expired = true;
    state->on_expiry();
  });
}

Deadline::~Deadline() {
  // Before the cancel: an expiry already queued behind the guarded operation's completion
  // finds the deadline finished and leaves the socket alone.
  state_->finished = true;
  state_->on_expiry = nullptr;
  timer_.cancel();
}

awaitable<boost::system::error_code> dial_with_timeout(tcp::socket& socket, std::string host, std::string port,
                                                       Duration timeout, const bool& closing) {
  auto ex = socket.get_executor();
  tcp::resolver resolver(ex);  // declared before the deadline, which may cancel it
  boost::system::error_code result;
  {
    Deadline deadline(ex, timeout, [&socket, &resolver] {
      resolver.cancel();
      boost::system::error_code ignored;
      socket.close(ignored);
    });
    boost::system::error_code parse_ec;
    const auto address = net::ip::make_address(host, parse_ec);
    if (!parse_ec) {
      unsigned long number = 70000;
      try {
        number = std::stoul(port);
      } catch (const std::exception&) {
      }
      if (number > 65535) {
        result = net::error::invalid_argument;
      } else {
        auto [ec] = co_await socket.async_connect(tcp::endpoint(address, static_cast<unsigned short>(number)), use_nothrow);
        result = ec;
      }
    } else {
      auto [rec, endpoints] = co_await resolver.async_resolve(host, port, use_nothrow);
      result = rec;
      if (!rec && closing) result = net::error::operation_aborted;
      if (!result && !deadline.expired()) {
        auto [ec, endpoint] = co_await net::async_connect(socket, endpoints, use_nothrow);
        result = ec;
      }
    }
    if (deadline.expired()) result = net::error::timed_out;
  }
  if (result) {
    boost::system::error_code ignored;
    socket.close(ignored);
  }
  co_return result;
}

awaitable<void> wait_until(net::steady_timer& timer, const ActiveToxics& active, TimePoint t) {
  timer.expires_at(std::min(t, active.next_edge()));  // a schedule window may open or close first
  co_await timer.async_wait(use_nothrow);
}

Follow follow_toxics(ActiveToxics& active, std::uint64_t version, const ToxicList& toxics, TimePoint now) {
  const TimePoint edge = active.next_edge();
  if (active.update(version, toxics, now)) return Follow::changed;
  // The same toxics are active (another direction or field changed), but a toxic added with
  // a later window brings an edge: the writer is what wakes for it, idle or not.
  return active.next_edge() != edge ? Follow::new_edge : Follow::same;
}

ConnectionCore::ConnectionCore(Worker& worker, std::shared_ptr<ProxyRuntime> runtime, std::uint64_t generation,
                               std::uint64_t index)
    : worker_(worker), runtime_(std::move(runtime)), generation_(generation), index_(index) {}

ConnectionCore::~ConnectionCore() {
  if (info_) runtime_->remove_connection(info_->id);
  if (enlisted_) worker_.sessions.erase(enlisted_);
  runtime_->stats.connections_active.fetch_sub(1, std::memory_order_relaxed);
}

void ConnectionCore::enlist(Connection& connection) {
  enlisted_ = &connection;
  worker_.sessions.insert(enlisted_);
}

bool ConnectionCore::admit(const tcp::socket& client) {
  if (runtime_->generation() != generation_) return false;
  auto info = std::make_shared<ConnectionInfo>();
  info->id = index_;
  boost::system::error_code ec;
  const auto peer = client.remote_endpoint(ec);
  info->client = ec ? "?" : join_host_port(peer.address().to_string(), peer.port());
  info->started = Clock::now();
  runtime_->add_connection(info);
  info_ = std::move(info);
  return true;
}

bool ConnectionCore::begin_close(EndKind how) {
  if (closing_) return false;
  closing_ = true;
  if (!taps.empty()) {
    const TimePoint now = Clock::now();
    if (how == EndKind::reset) {
      taps.end(Stream::upstream, how, now);
      taps.end(Stream::downstream, how, now);
    }
    taps.close(now);
  }
  return true;
}

void ConnectionCore::follow_recordings(const ProxySnapshot& snapshot, Protocol protocol, TimePoint now) {
  if (info_ && (!snapshot.recordings.empty() || !taps.empty())) {
    taps.follow(snapshot, runtime_->name(), protocol, info_->client, now);
  }
}

Rng ConnectionCore::rng() const { return Rng(runtime_->seed()).derive(runtime_->name()).derive(index_); }

}  // namespace faultline
