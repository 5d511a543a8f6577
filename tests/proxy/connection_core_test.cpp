// The connection core both session kinds share: registration and the single
// unregistration, the close-once gate, the ends on a stream that fails its Nth operation,
// the deadline idiom (including a timer whose expiry is already queued when the guarded
// operation finishes) and the dial with a timeout, on loopback with port 0.
#include "proxy/connection_core.hpp"

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <catch2/catch.hpp>

#include "proxy/workers.hpp"

using namespace faultline;

namespace {

// A transport that fails its Nth operation (read, write or shutdown, counted together, from
// 1) with a chosen error, as Beast's test::stream does with fail_count, and records the
// ends done to it.
class FailingStream {
 public:
  FailingStream(int fail_at, boost::system::error_code error) : fail_at_(fail_at), error_(error) {}

  std::size_t read_some(boost::system::error_code& ec) { return step(ec) ? 1 : 0; }
  std::size_t write_some(boost::system::error_code& ec) { return step(ec) ? 1 : 0; }
  void shutdown(tcp::socket::shutdown_type, boost::system::error_code& ec) {
    if (step(ec)) ++shutdowns;
  }
  void set_option(const net::socket_base::linger& linger, boost::system::error_code& ec) {
    ec = {};
    linger_zero = linger.enabled() && linger.timeout() == 0;
  }
  void close(boost::system::error_code& ec) {
    ec = {};
    ++closes;
  }

  bool linger_zero = false;
  int closes = 0;
  int shutdowns = 0;

 private:
  bool step(boost::system::error_code& ec) {
    ec = ++operations_ == fail_at_ ? error_ : boost::system::error_code{};
    return !ec;
  }
  int operations_ = 0;
  int fail_at_;
  boost::system::error_code error_;
};

// A connection as a session is one: a core and the close that goes through its gate.
class CoreConnection final : public Connection {
 public:
  CoreConnection(Worker& worker, std::shared_ptr<ProxyRuntime> runtime, FailingStream& a, FailingStream& b)
      : core(worker, std::move(runtime), 0, 7), a_(a), b_(b) {}
  void close(EndKind how) override {
    if (!core.begin_close(how)) return;
    ++closes;
    core.end_transports(how, a_, b_);
  }
  void config_changed() override {}
  ProxyRuntime& runtime() const override { return core.runtime(); }
  std::uint64_t generation() const override { return core.generation(); }

  // Relays one byte at a time from `a` to `b` the way both sessions end a direction: EOF
  // becomes a half-close towards the other side, a failed read ends by
  // end_after_read_error, a failed write (or half-close) resets.
  void relay(int steps, bool eof_at_end) {
    boost::system::error_code ec;
    for (int i = 0; i < steps; ++i) {
      a_.read_some(ec);
      if (ec) {
        if (const auto end = end_after_read_error(ec)) close(*end);
        return;
      }
      b_.write_some(ec);
      if (ec) return close(EndKind::reset);
    }
    if (!eof_at_end) return;
    ConnectionCore::half_close(b_);
  }

  ConnectionCore core;
  int closes = 0;

 private:
  FailingStream& a_;
  FailingStream& b_;
};

struct Fixture {
  Worker worker;
  std::shared_ptr<ProxyRuntime> runtime = std::make_shared<ProxyRuntime>("p", 1);
  tcp::socket client{worker.ioc};
  Fixture() { runtime->stats.connections_active = 1; }  // the listener counted it
};

// Runs `ioc` until `done()` holds, for at most two seconds.
template <class Done>
bool run_until(net::io_context& ioc, Done done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    ioc.restart();
    ioc.run_for(std::chrono::milliseconds(20));
  }
  return done();
}

}  // namespace

TEST_CASE("A connection registers with its worker and proxy and unregisters exactly once") {
  Fixture f;
  FailingStream a(0, {}), b(0, {});
  {
    CoreConnection c(f.worker, f.runtime, a, b);
    c.core.enlist(c);
    REQUIRE(c.core.admit(f.client));
    CHECK(f.worker.sessions.count(&c) == 1);
    REQUIRE(f.runtime->connections().size() == 1);
    CHECK(f.runtime->connections()[0]->id == 7);
    CHECK(f.runtime->connections()[0]->client == "?");  // not connected: no peer address
    c.close(EndKind::close);
    c.close(EndKind::reset);  // the gate holds: nothing happens twice
    CHECK(c.closes == 1);
    CHECK(a.closes == 1);
    CHECK(f.runtime->stats.resets_sent == 0);
    CHECK(f.runtime->stats.connections_active == 1);  // still listed until it goes
  }
  CHECK(f.worker.sessions.empty());
  CHECK(f.runtime->connections().empty());
  CHECK(f.runtime->stats.connections_active == 0);
}

TEST_CASE("A connection of a stopped proxy is not listed and still unregisters once") {
  Fixture f;
  FailingStream a(0, {}), b(0, {});
  f.runtime->next_generation();
  {
    CoreConnection c(f.worker, f.runtime, a, b);
    c.core.enlist(c);
    CHECK_FALSE(c.core.admit(f.client));
    CHECK(f.runtime->connections().empty());
  }
  CHECK(f.worker.sessions.empty());
  CHECK(f.runtime->stats.connections_active == 0);
}

TEST_CASE("Each failure point of a relay leads to its end") {
  Fixture f;
  struct Case {
    const char* what;
    int source_fails_at, destination_fails_at;
    boost::system::error_code error;
    std::optional<EndKind> end;  // nullopt: the direction half-closes and the connection stays open
  };
  const Case cases[] = {
      {"a reset read resets both sides", 3, 0, net::error::connection_reset, EndKind::reset},
      {"a broken pipe on read resets both sides", 1, 0, net::error::broken_pipe, EndKind::reset},
      {"another read error closes both sides", 2, 0, net::error::host_unreachable, EndKind::close},
      {"a cancelled read ends nothing", 2, 0, net::error::operation_aborted, std::nullopt},
      {"a failed write resets both sides", 0, 2, net::error::broken_pipe, EndKind::reset},
      {"a clean end half-closes the destination", 0, 0, {}, std::nullopt},
  };
  for (const Case& k : cases) {
    INFO(k.what);
    FailingStream a(k.source_fails_at, k.error), b(k.destination_fails_at, k.error);
    CoreConnection c(f.worker, f.runtime, a, b);
    const auto resets_before = f.runtime->stats.resets_sent.load();
    c.relay(4, true);
    if (k.end) {
      CHECK(c.closes == 1);
      CHECK(a.closes == 1);
      CHECK(b.closes == 1);
      CHECK(a.linger_zero == (*k.end == EndKind::reset));
      CHECK(b.linger_zero == (*k.end == EndKind::reset));
      CHECK(f.runtime->stats.resets_sent - resets_before == (*k.end == EndKind::reset ? 1u : 0u));
      CHECK(b.shutdowns == 0);
    } else {
      CHECK(c.closes == 0);
      CHECK(a.closes + b.closes == 0);
      CHECK(b.shutdowns == (k.source_fails_at == 0 ? 1 : 0));
    }
  }
}

TEST_CASE("A half-close that fails leaves the socket open for the close that follows") {
  FailingStream s(1, net::error::not_connected);
  ConnectionCore::half_close(s);  // errors are the peer's business: nothing thrown
  CHECK(s.shutdowns == 0);
  CHECK(s.closes == 0);
}

TEST_CASE("A deadline that passes runs its expiry once") {
  net::io_context ioc;
  int fired = 0;
  Deadline deadline(ioc.get_executor(), std::chrono::milliseconds(1), [&] { ++fired; });
  REQUIRE(run_until(ioc, [&] { return fired > 0; }));
  CHECK(deadline.expired());
  ioc.restart();
  ioc.poll();
  CHECK(fired == 1);
}

TEST_CASE("A deadline whose expiry is already queued when the operation finishes does nothing") {
  net::io_context ioc;
  int fired = 0;
  auto deadline = std::make_unique<Deadline>(ioc.get_executor(), Duration::zero(), [&] { ++fired; });
  // Expires before the deadline: the loop collects both timers in one turn, in that order,
  // so this handler finishes the guarded operation while the deadline's expiry is queued.
  net::steady_timer finish(ioc);
  finish.expires_at(std::chrono::steady_clock::now() - std::chrono::hours(1));
  bool finished = false;
  finish.async_wait([&](const boost::system::error_code&) {
    deadline.reset();
    finished = true;
  });
  ioc.run_for(std::chrono::seconds(2));
  CHECK(finished);
  CHECK(fired == 0);
}

namespace {
// Runs `dial_with_timeout` on `ioc` to completion (bounded) and returns its result.
boost::system::error_code dial(net::io_context& ioc, tcp::socket& socket, std::string host, std::string port,
                               Duration timeout, const bool& closing = false) {
  std::optional<boost::system::error_code> result;
  net::co_spawn(ioc, dial_with_timeout(socket, std::move(host), std::move(port), timeout, closing),
                [&](std::exception_ptr, boost::system::error_code ec) { result = ec; });
  REQUIRE(run_until(ioc, [&] { return result.has_value(); }));
  return *result;
}
}  // namespace

TEST_CASE("The dial connects to a numeric address and to a name") {
  net::io_context ioc;
  tcp::acceptor acceptor(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  const std::string port = std::to_string(acceptor.local_endpoint().port());
  tcp::socket numeric(ioc), named(ioc);
  CHECK_FALSE(dial(ioc, numeric, "127.0.0.1", port, std::chrono::seconds(2)));
  CHECK(numeric.is_open());
  CHECK_FALSE(dial(ioc, named, "localhost", port, std::chrono::seconds(2)));
  CHECK(named.is_open());
}

TEST_CASE("The dial reports a refused connect and a bad port, and leaves the socket closed") {
  net::io_context ioc;
  std::string port;
  {
    tcp::acceptor gone(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    port = std::to_string(gone.local_endpoint().port());
  }
  tcp::socket socket(ioc);
  CHECK(dial(ioc, socket, "127.0.0.1", port, std::chrono::seconds(2)) == net::error::connection_refused);
  CHECK_FALSE(socket.is_open());
  CHECK(dial(ioc, socket, "127.0.0.1", "70000", std::chrono::seconds(2)) == net::error::invalid_argument);
}

TEST_CASE("The dial does not connect a name once the connection is closing") {
  net::io_context ioc;
  tcp::acceptor acceptor(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  tcp::socket socket(ioc);
  const bool closing = true;
  CHECK(dial(ioc, socket, "localhost", std::to_string(acceptor.local_endpoint().port()), std::chrono::seconds(2),
             closing) == net::error::operation_aborted);
  CHECK_FALSE(socket.is_open());
}

TEST_CASE("A writer wait ends at the next schedule edge or when its timer is cancelled") {
  net::io_context ioc;
  net::steady_timer timer(ioc);
  ActiveToxics none;  // nothing scheduled: next_edge() is kNever
  bool woke = false;
  net::co_spawn(ioc, wait_until(timer, none, kNever), [&](std::exception_ptr) { woke = true; });
  ioc.poll();
  CHECK_FALSE(woke);
  timer.cancel();  // what a config change does
  CHECK(run_until(ioc, [&] { return woke; }));

  woke = false;
  net::co_spawn(ioc, wait_until(timer, none, Clock::now() + std::chrono::milliseconds(5)),
                [&](std::exception_ptr) { woke = true; });
  CHECK(run_until(ioc, [&] { return woke; }));
}
