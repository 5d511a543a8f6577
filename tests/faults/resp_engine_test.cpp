// The Redis (RESP2/RESP3) protocol engine driven without sockets: bytes in, decisions out.
#include <catch2/catch.hpp>

#include <initializer_list>

#include "tests/faults/engine_support.hpp"

using namespace faultline;
using namespace faultline::test;
using std::chrono::milliseconds;

namespace {

// A command as redis-cli sends it: an array of bulk strings.
std::string cmd(std::initializer_list<std::string> args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}
std::string bulk(const std::string& v) { return "$" + std::to_string(v.size()) + "\r\n" + v + "\r\n"; }

const std::string kLoading = "LOADING Redis is loading the dataset in memory";

std::shared_ptr<const ToxicConfig> error_fault(const std::string& match, const std::string& when = "before",
                                               const std::string& error = kLoading) {
  return fault("resp_error", {{"error", tv(error)}, {"when", tv(when)}, {"match", jv(match)}});
}

}  // namespace

// ---- passthrough --------------------------------------------------------------------

TEST_CASE("resp engine: pipelined commands and replies split at every byte pass through unchanged") {
  const std::string commands = cmd({"GET", "a"}) + cmd({"SET", "b", "1"}) + "PING\r\n" + cmd({"HGETALL", "h"});
  const std::string replies = bulk("x") + "+OK\r\n" + "+PONG\r\n" + "*2\r\n$1\r\nf\r\n:12\r\n";
  const std::size_t n = std::max(commands.size(), replies.size());
  for (std::size_t i = 0; i <= n; ++i) {
    Driver d(Protocol::resp);
    const std::size_t c = std::min(i, commands.size());
    const std::size_t r = std::min(i, replies.size());
    d.client(commands.substr(0, c));
    d.client(commands.substr(c));
    d.server(replies.substr(0, r));
    d.server(replies.substr(r));
    INFO("split at " << i);
    CHECK(d.out.up() == commands);
    CHECK(d.out.down() == replies);
    CHECK(d.engine->counters().requests == 4);
    CHECK(d.engine->counters().responses == 4);
    CHECK(d.engine->counters().undecodable == 0);
    CHECK(d.out.ends.empty());
  }
}

TEST_CASE("resp engine: byte-at-a-time commands and replies pass through unchanged") {
  const std::string commands = cmd({"MGET", "a", "b"}) + cmd({"INCR", "n"});
  const std::string replies = "*2\r\n$-1\r\n$3\r\nabc\r\n:5\r\n";
  Driver d(Protocol::resp, 1, {error_fault(R"({"key":"zzz"})")});
  for (char c : commands) d.client(std::string(1, c));
  for (char c : replies) d.server(std::string(1, c));
  CHECK(d.out.up() == commands);
  CHECK(d.out.down() == replies);
  CHECK(d.engine->counters().responses == 2);
}

// ---- resp_error ---------------------------------------------------------------------

TEST_CASE("resp_error before: a local error reply, the command not forwarded, order kept") {
  Driver d(Protocol::resp, 1, {error_fault(R"({"key":"b"})")});
  d.client(cmd({"GET", "a"}) + cmd({"GET", "b"}) + cmd({"GET", "c"}));
  CHECK(d.out.up() == cmd({"GET", "a"}) + cmd({"GET", "c"}));
  CHECK(d.out.down().empty());  // waits behind a's reply
  d.server(bulk("AAAA").substr(0, 6));  // part of a's reply goes out as it comes
  CHECK(d.out.down() == bulk("AAAA").substr(0, 6));
  d.server(bulk("AAAA").substr(6));
  CHECK(d.out.down() == bulk("AAAA") + "-" + kLoading + "\r\n");
  d.server(bulk("C"));
  CHECK(d.out.down() == bulk("AAAA") + "-" + kLoading + "\r\n" + bulk("C"));
  REQUIRE(d.out.notes.size() == 1);
  CHECK(d.out.notes[0].what == "answered -LOADING to GET b");
  CHECK(d.out.ordered(Stream::downstream));
}

TEST_CASE("resp_error before on the first command answers at once") {
  Driver d(Protocol::resp, 1, {fault("resp_error")});
  d.client(cmd({"SET", "k", "v"}));
  CHECK(d.out.up().empty());
  CHECK(d.out.down() == "-ERR Fault injected by faultline\r\n");
}

TEST_CASE("resp_error before swallows a large command arriving in pieces") {
  Driver d(Protocol::resp, 1, {error_fault(R"({"command":"SET"})")});
  const std::string big(100000, 'v');
  const std::string set = cmd({"SET", "k", big});
  for (std::size_t i = 0; i < set.size(); i += 4096) d.client(set.substr(i, 4096));
  d.client(cmd({"GET", "k"}));
  CHECK(d.out.up() == cmd({"GET", "k"}));
  CHECK(d.out.down() == "-" + kLoading + "\r\n");
}

TEST_CASE("resp_error after: the command is forwarded and its reply replaced") {
  const std::string reply = "+OK\r\n";
  for (std::size_t split = 0; split <= reply.size(); ++split) {
    Driver d(Protocol::resp, 1, {error_fault(R"({"command":"SET"})", "after", "-READONLY You can't write against a read only replica.")});
    d.client(cmd({"SET", "k", "v"}) + cmd({"GET", "k"}));
    CHECK(d.out.up() == cmd({"SET", "k", "v"}) + cmd({"GET", "k"}));
    d.server(reply.substr(0, split));
    d.server(reply.substr(split));
    d.server(bulk("v"));
    INFO("split at " << split);
    CHECK(d.out.down() == "-READONLY You can't write against a read only replica.\r\n" + bulk("v"));
    CHECK(d.engine->counters().responses == 2);
  }
}

// ---- resp_delay ---------------------------------------------------------------------

TEST_CASE("resp_delay releases the command at now + delay and keeps order behind it") {
  Driver d(Protocol::resp, 1, {fault("resp_delay", {{"delay", iv(100)}, {"match", jv(R"({"key":"slow"})")}})});
  d.client(cmd({"GET", "slow"}) + cmd({"GET", "fast"}));
  CHECK(d.out.up() == cmd({"GET", "slow"}) + cmd({"GET", "fast"}));
  CHECK(d.out.release_of(Stream::upstream, "slow") == start_time() + milliseconds(100));
  CHECK(d.out.release_of(Stream::upstream, "fast") >= start_time() + milliseconds(100));
  CHECK(d.out.ordered(Stream::upstream));
  // A command long after is not held back.
  d.advance(milliseconds(500));
  d.client(cmd({"GET", "later"}));
  CHECK(d.out.release_of(Stream::upstream, "later") == start_time() + milliseconds(500));
  // Replies are not delayed.
  d.server(bulk("1") + bulk("2") + bulk("3"));
  CHECK(d.out.down() == bulk("1") + bulk("2") + bulk("3"));
  for (const auto& s : d.out.sends(Stream::downstream)) CHECK(s.release == d.now);
  CHECK(d.out.notes.size() == 1);
}

TEST_CASE("resp_delay jitter stays within the range") {
  Driver d(Protocol::resp, 3, {fault("resp_delay", {{"delay", iv(100)}, {"jitter", iv(20)}})});
  for (int i = 0; i < 50; ++i) {
    d.advance(milliseconds(1000));
    const std::string key = "k" + std::to_string(i);
    d.client(cmd({"GET", key}));
    const auto delay = d.out.release_of(Stream::upstream, "$" + std::to_string(key.size()) + "\r\n" + key + "\r\n") - d.now;
    CHECK(delay >= milliseconds(80));
    CHECK(delay <= milliseconds(120));
  }
}

// ---- resp_drop ----------------------------------------------------------------------

TEST_CASE("resp_drop before: the connection closes at the dropped command") {
  Driver d(Protocol::resp, 1, {fault("resp_drop", {{"match", jv(R"({"key":"b"})")}})});
  d.client(cmd({"GET", "a"}) + cmd({"GET", "b"}) + cmd({"GET", "c"}));
  CHECK(d.out.up().rfind(cmd({"GET", "a"}), 0) == 0);
  CHECK(d.out.up().find("$1\r\nc\r\n") == std::string::npos);  // nothing after the drop
  REQUIRE_FALSE(d.out.ends.empty());
  for (const auto& e : d.out.ends) CHECK(e.kind == EndKind::close);
  // The end towards the server closes the connection once GET a went out whole.
  REQUIRE(d.out.ends_towards(Stream::upstream).size() == 1);
  CHECK(d.out.ends_towards(Stream::upstream)[0].at >= d.out.release_of(Stream::upstream, "$1\r\na\r\n"));
  const std::string up = d.out.up();
  d.client(cmd({"GET", "d"}));
  d.server(bulk("A"));
  CHECK(d.out.up() == up);
  REQUIRE(d.out.notes.size() == 1);
  CHECK(d.out.notes[0].what == "closed the connection before GET b");
}

TEST_CASE("resp_drop before: the dropped command is not forwarded", "[resp]") {
  Driver d(Protocol::resp, 1, {fault("resp_drop", {{"match", jv(R"({"key":"b"})")}})});
  d.client(cmd({"GET", "a"}) + cmd({"GET", "b"}) + cmd({"GET", "c"}));
  CHECK(d.out.up() == cmd({"GET", "a"}));
}

TEST_CASE("resp_drop after: the command is forwarded whole, then the connection closes before its reply") {
  Driver d(Protocol::resp, 1, {fault("resp_drop", {{"when", tv("after")}, {"match", jv(R"({"command":"set"})")}})});
  const std::string set = cmd({"SET", "k", std::string(5000, 'v')});
  d.client(set.substr(0, 20));
  CHECK(d.out.ends.empty());
  d.advance(milliseconds(3));
  d.client(set.substr(20) + cmd({"GET", "k"}));
  CHECK(d.out.up() == set);
  REQUIRE_FALSE(d.out.ends.empty());
  for (const auto& e : d.out.ends) CHECK(e.kind == EndKind::close);
  REQUIRE(d.out.ends_towards(Stream::upstream).size() == 1);
  CHECK(d.out.ends_towards(Stream::upstream)[0].at == d.now);
  d.server("+OK\r\n");
  CHECK(d.out.down().empty());
}

// ---- matching -----------------------------------------------------------------------

TEST_CASE("resp faults leave AUTH, HELLO and PING alone unless match.command names them") {
  SECTION("no command named") {
    Driver d(Protocol::resp, 1, {fault("resp_error")});
    const std::string untouched = cmd({"AUTH", "secret"}) + cmd({"HELLO", "3"}) + cmd({"PING"}) + "PING\r\n";
    d.client(untouched + cmd({"GET", "x"}));
    CHECK(d.out.up() == untouched);
    CHECK(d.out.down().empty());
    d.server("+OK\r\n%1\r\n+server\r\n+redis\r\n+PONG\r\n+PONG\r\n");
    CHECK(d.out.down() == "+OK\r\n%1\r\n+server\r\n+redis\r\n+PONG\r\n+PONG\r\n-ERR Fault injected by faultline\r\n");
  }
  SECTION("command named") {
    Driver d(Protocol::resp, 1, {error_fault(R"({"command":"ping"})")});
    d.client(cmd({"PING"}) + cmd({"GET", "x"}));
    CHECK(d.out.up() == cmd({"GET", "x"}));
    CHECK(d.out.down() == "-" + kLoading + "\r\n");
  }
}

TEST_CASE("resp match: command case-insensitive, key as a Redis glob") {
  Driver d(Protocol::resp, 1, {error_fault(R"({"command":"get","key":"thread:*"})")});
  d.client(cmd({"get", "thread:1"}));
  CHECK(d.out.up().empty());
  CHECK(d.out.down() == "-" + kLoading + "\r\n");
  const std::string pass = cmd({"GET", "user:1"}) + cmd({"SET", "thread:2", "x"}) + cmd({"GET", "xthread:1"}) + cmd({"GET"});
  d.client(pass);
  CHECK(d.out.up() == pass);
  d.client("get thread:9\r\n");  // inline command
  CHECK(d.out.up() == pass);
  SECTION("glob classes") {
    Driver g(Protocol::resp, 1, {error_fault(R"({"key":"user:[0-4]?"})")});
    g.client(cmd({"GET", "user:3a"}));
    CHECK(g.out.up().empty());
    g.client(cmd({"GET", "user:5a"}) + cmd({"GET", "user:3"}));
    CHECK(g.out.up() == cmd({"GET", "user:5a"}) + cmd({"GET", "user:3"}));
  }
}

TEST_CASE("resp toxicity is rolled per command from the seed") {
  auto run = [](std::uint64_t seed) {
    Driver d(Protocol::resp, seed, {fault("resp_error", {}, 0.5)});
    for (int i = 0; i < 64; ++i) d.client(cmd({"GET", "k" + std::to_string(i)}));
    std::vector<std::string> hit;
    for (const auto& n : d.out.notes) hit.push_back(n.what);
    return hit;
  };
  CHECK(run(5) == run(5));
  CHECK(run(5).size() > 16);
  CHECK(run(5).size() < 48);
  CHECK(run(5) != run(6));
}

// ---- connection modes ---------------------------------------------------------------

TEST_CASE("resp engine: after SUBSCRIBE the connection passes through untouched") {
  Driver d(Protocol::resp, 1, {error_fault(R"({"command":"GET"})")});
  d.client(cmd({"SUBSCRIBE", "news"}));
  CHECK(d.out.up() == cmd({"SUBSCRIBE", "news"}));
  const std::string confirm = "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n";
  const std::string message = "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n";
  d.server(confirm + message + message);
  CHECK(d.out.down() == confirm + message + message);
  // A matching command now is just bytes.
  d.client(cmd({"GET", "x"}) + cmd({"UNSUBSCRIBE"}));
  CHECK(d.out.up() == cmd({"SUBSCRIBE", "news"}) + cmd({"GET", "x"}) + cmd({"UNSUBSCRIBE"}));
  d.server("-ERR Can't execute 'get'\r\n");
  CHECK(d.out.down() == confirm + message + message + "-ERR Can't execute 'get'\r\n");
  CHECK(d.out.notes.empty());
}

TEST_CASE("resp engine: a RESP3 push reply does not consume an exchange") {
  const std::string push = ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n";
  SECTION("plain passthrough") {
    Driver d(Protocol::resp);
    d.client(cmd({"GET", "a"}) + cmd({"GET", "b"}));
    d.server(push + bulk("A") + push + bulk("B"));
    CHECK(d.out.down() == push + bulk("A") + push + bulk("B"));
    CHECK(d.engine->counters().responses == 2);
  }
  SECTION("a local answer still waits for the real reply, not the push") {
    Driver d(Protocol::resp, 1, {error_fault(R"({"key":"b"})")});
    d.client(cmd({"GET", "a"}) + cmd({"GET", "b"}));
    d.server(push);
    CHECK(d.out.down() == push);
    d.server(bulk("A"));
    CHECK(d.out.down() == push + bulk("A") + "-" + kLoading + "\r\n");
  }
}

TEST_CASE("resp_error after: a RESP3 push arriving before the replaced reply passes through", "[resp]") {
  const std::string push = ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n";
  Driver d(Protocol::resp, 1, {error_fault(R"({"command":"SET"})", "after")});
  d.client(cmd({"SET", "k", "v"}));
  d.server(push + "+OK\r\n");
  CHECK(d.out.down() == push + "-" + kLoading + "\r\n");
}

TEST_CASE("resp engine: traffic that is not RESP passes through and counts as undecodable") {
  Driver d(Protocol::resp, 1, {fault("resp_error")});
  const std::string junk = "*2\r\n$3\r\nGET\r\n$x\r\nbroken";
  d.client(junk);
  d.client("more");
  CHECK(d.out.up() == junk + "more");
  CHECK(d.engine->counters().undecodable == 1);
  CHECK(d.out.notes.empty());
}

TEST_CASE("resp engine: client EOF forwards what is pending and half-closes upstream") {
  Driver d(Protocol::resp);
  d.client(cmd({"GET", "a"}));
  d.client_eof();
  CHECK(d.out.up() == cmd({"GET", "a"}));
  REQUIRE(d.out.ends.size() == 1);
  CHECK(d.out.ends[0].towards == Stream::upstream);
  CHECK(d.out.ends[0].kind == EndKind::half_close);
}

TEST_CASE("resp engine: CLIENT REPLY turns the connection into bytes") {
  Driver d(Protocol::resp, 1, {error_fault(R"({"command":"GET"})")});
  d.client(cmd({"CLIENT", "REPLY", "OFF"}) + cmd({"GET", "x"}));
  CHECK(d.out.up() == cmd({"CLIENT", "REPLY", "OFF"}) + cmd({"GET", "x"}));
  CHECK(d.out.down().empty());
  CHECK(d.out.notes.empty());
}

TEST_CASE("resp engine: CLIENT REPLY is recognised whatever the case of its argument") {
  // Redis reads subcommands case-insensitively: `client Reply off` switches replies off too.
  Driver d(Protocol::resp, 1, {error_fault(R"({"command":"GET"})")});
  d.client(cmd({"client", "Reply", "off"}) + cmd({"GET", "x"}));
  CHECK(d.out.up() == cmd({"client", "Reply", "off"}) + cmd({"GET", "x"}));
  CHECK(d.out.down().empty());
}

TEST_CASE("resp engine: MONITOR turns the connection into bytes") {
  Driver d(Protocol::resp, 1, {error_fault(R"({"command":"GET"})")});
  d.client(cmd({"MONITOR"}));
  d.server("+OK\r\n+1700000000.1 [0 127.0.0.1:1] \"GET\" \"x\"\r\n");
  d.client(cmd({"GET", "x"}));
  CHECK(d.out.up() == cmd({"MONITOR"}) + cmd({"GET", "x"}));
  CHECK(d.out.down() == "+OK\r\n+1700000000.1 [0 127.0.0.1:1] \"GET\" \"x\"\r\n");
}

TEST_CASE("resp engine: answers queued before a SUBSCRIBE still go out in order", "[resp]") {
  Driver d(Protocol::resp, 1, {error_fault(R"({"key":"b"})")});
  d.client(cmd({"GET", "a"}) + cmd({"GET", "b"}) + cmd({"SUBSCRIBE", "news"}));
  CHECK(d.out.up() == cmd({"GET", "a"}) + cmd({"SUBSCRIBE", "news"}));
  const std::string confirm = "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n";
  d.server(bulk("A") + confirm);
  CHECK(d.out.down() == bulk("A") + "-" + kLoading + "\r\n" + confirm);
}

TEST_CASE("resp faults outside their schedule window do nothing") {
  auto c = config_of("resp_error", {});
  c->created = start_time();
  c->schedule = Schedule{1000, 0, 0};
  std::string error;
  c->compiled = ToxicRegistry::instance().find("resp_error")->compile(*c, error);
  REQUIRE(c->compiled);
  Driver d(Protocol::resp, 1, {c});
  d.client(cmd({"GET", "a"}));
  CHECK(d.out.up() == cmd({"GET", "a"}));
  d.advance(milliseconds(1000));
  d.client(cmd({"GET", "b"}));
  CHECK(d.out.up() == cmd({"GET", "a"}));
  d.server(bulk("A"));
  CHECK(d.out.down() == bulk("A") + "-ERR Fault injected by faultline\r\n");
}
