// What both session kinds (the byte relay `Session` and the message-aware `MessageSession`)
// share about one connection: its registration with the worker and the ProxyRuntime, the
// close-once gate, the ends (half-close, close, reset with linger 0), the upstream dial
// guarded by --connect-timeout-ms, the deadline idiom the TLS handshakes use too, and the
// per-direction writer's wait that a config change or a schedule edge cuts short.
// Included only inside proxy/ (it needs Asio).
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "faults/chain.hpp"
#include "proxy/asio.hpp"
#include "proxy/buffer_budget.hpp"
#include "proxy/connection.hpp"
#include "proxy/recording_taps.hpp"
#include "proxy/runtime.hpp"

namespace faultline {

struct Worker;

struct SessionSettings {
  Duration connect_timeout = std::chrono::seconds(5);
  std::size_t max_queued_bytes = 16 * 1024 * 1024;
  bool splice = true;  // zero-copy relay for bulk data while no fault is active
  std::shared_ptr<BufferBudget> budget;  // server-wide bytes held by faults (null: no limit)
  // Called on the worker thread when the upstream could not be reached.
  std::function<void()> on_upstream_failure;
};

// Runs a connection's coroutine on its worker. An exception there is a bug: it is logged
// at this boundary and the connection is reset.
void spawn_connection(std::shared_ptr<Connection> connection, const net::any_io_executor& ex, awaitable<void> body);

// How a failed read from a peer ends the connection: a reset from one peer becomes a reset
// towards the other; any other failure a plain close. Nothing for a cancelled read (the
// connection is closing already).
std::optional<EndKind> end_after_read_error(const boost::system::error_code& ec);

// Runs `on_expiry` if the deadline passes while this object lives. A timer whose expiry was
// already queued when the guarded operation finished does nothing: the object marks itself
// finished first, so a late timer can never close a socket that has moved on.
class Deadline {
 public:
  Deadline(const net::any_io_executor& ex, Duration after, std::function<void()> on_expiry);
  ~Deadline();
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;
  bool expired() const { return state_->expired; }

 private:
  struct State {
    bool finished = false;
    bool expired = false;
    std::function<void()> on_expiry;
  };
  std::shared_ptr<State> state_;
  net::steady_timer timer_;
};

// Resolves `host` (a numeric address skips the resolver, whose getaddrinfo runs on a helper
// thread) and connects `socket`, all within `timeout`; timed_out when it passes. The one
// dial both session kinds use. `closing` is the connection's gate: once it closed, a
// resolved name is not connected (connecting would reopen the socket close() just closed).
awaitable<boost::system::error_code> dial_with_timeout(tcp::socket& socket, std::string host, std::string port,
                                                       Duration timeout, const bool& closing);

// A direction writer's wait for `t`, never past the next schedule edge of the toxics it
// follows; any config change cancels `timer` and so ends the wait early.
awaitable<void> wait_until(net::steady_timer& timer, const ActiveToxics& active, TimePoint t);

// The end a direction's writer meets first among its pending ends (each has `at` and
// `kind`): the earliest, a reset winning a tie; {kNever, close} when there is none.
struct FirstEnd {
  TimePoint at = kNever;
  EndKind kind = EndKind::close;
};
template <class Ends>
FirstEnd first_end(const Ends& ends) {
  FirstEnd first;
  for (const auto& e : ends) {
    if (e.at < first.at || (e.at == first.at && e.kind == EndKind::reset)) first = {e.at, e.kind};
  }
  return first;
}

// An end a fault made due by the time the connection starts (drop_connections): the
// connection ends with it before the upstream is dialled, so the upstream never sees the
// client. A half-close waits for traffic like any other.
template <class Ends>
std::optional<EndKind> end_due_at_start(const Ends& ends, TimePoint now) {
  for (const auto& e : ends) {
    if (e.at <= now && e.kind != EndKind::half_close) return e.kind;
  }
  return std::nullopt;
}

// Whether a direction must rebuild its chain after looking at its toxics again.
enum class Follow {
  same,      // nothing to do
  new_edge,  // same toxics active, but the next window edge moved: wake the writer
  changed,   // the active set changed: rebuild the chain
};
// Looks at `toxics` of config `version` for one direction (ActiveToxics::update) and says
// what the direction must do.
Follow follow_toxics(ActiveToxics& active, std::uint64_t version, const ToxicList& toxics, TimePoint now);

// One connection's membership in its worker and its proxy, its recordings and its
// close-once gate. A session owns one; its destructor unregisters exactly once.
class ConnectionCore {
 public:
  // connections_active was counted when the listener admitted the client.
  ConnectionCore(Worker& worker, std::shared_ptr<ProxyRuntime> runtime, std::uint64_t generation, std::uint64_t index);
  ~ConnectionCore();
  ConnectionCore(const ConnectionCore&) = delete;
  ConnectionCore& operator=(const ConnectionCore&) = delete;

  // Joins the worker's set of live connections (what shutdown and config notes reach).
  void enlist(Connection& connection);
  // False when the proxy stopped since the client was accepted (close it); otherwise lists
  // the connection with its proxy (GET /proxies/{p}/connections) under `client`'s address.
  bool admit(const tcp::socket& client);

  // The close-once gate: true only the first time. Reports the end to the recordings.
  bool begin_close(EndKind how);
  const bool& closing() const { return closing_; }

  // Closes both transports (their lowest layers); with `reset`, linger 0 first so the
  // peers get an RST, counted in resets_sent. Templated so a test stream fits.
  template <class Socket>
  void end_transports(EndKind how, Socket& a, Socket& b) {
    boost::system::error_code ec;
    if (how == EndKind::reset) {
      a.set_option(net::socket_base::linger(true, 0), ec);
      b.set_option(net::socket_base::linger(true, 0), ec);
      runtime_->stats.resets_sent.fetch_add(1, std::memory_order_relaxed);
    }
    a.close(ec);
    b.close(ec);
  }
  // Half-close towards a peer: shutdown(SHUT_WR), so the other direction keeps flowing.
  template <class Socket>
  static void half_close(Socket& s) {
    boost::system::error_code ec;
    s.shutdown(tcp::socket::shutdown_send, ec);
  }

  ProxyRuntime& runtime() const { return *runtime_; }
  std::uint64_t generation() const { return generation_; }
  std::uint64_t index() const { return index_; }
  // This connection's seeded stream: Rng(seed).derive(proxy name).derive(accept index).
  Rng rng() const;
  const std::shared_ptr<ConnectionInfo>& info() const { return info_; }
  // Starts and stops this connection's recordings to match the snapshot's, so a recording
  // started through the API reaches connections already open. Nothing before admit().
  void follow_recordings(const ProxySnapshot& snapshot, Protocol protocol, TimePoint now);

  RecordingTaps taps;

 private:
  Worker& worker_;
  std::shared_ptr<ProxyRuntime> runtime_;
  std::uint64_t generation_;
  std::uint64_t index_;
  Connection* enlisted_ = nullptr;
  bool closing_ = false;
  std::shared_ptr<ConnectionInfo> info_;
};

}  // namespace faultline
