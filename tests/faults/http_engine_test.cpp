// The HTTP/1.1 (and MCP) protocol engine driven without sockets: bytes in, decisions out.
#include <catch2/catch.hpp>

#include "tests/faults/engine_support.hpp"

using namespace faultline;
using namespace faultline::test;
using std::chrono::milliseconds;

namespace {

const std::string kGetA = "GET /a HTTP/1.1\r\nHost: example\r\n\r\n";
const std::string kGetB = "GET /b HTTP/1.1\r\nHost: example\r\n\r\n";
const std::string kRespA = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
const std::string kRespB = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nbye";

std::string get(const std::string& target, const std::string& extra = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: example\r\n" + extra + "\r\n";
}

std::string post(const std::string& target, const std::string& body, const std::string& extra = "") {
  return "POST " + target + " HTTP/1.1\r\nHost: example\r\n" + extra + "Content-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::string ok(const std::string& body, const std::string& extra = "") {
  return "HTTP/1.1 200 OK\r\n" + extra + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

// An SSE response whose body runs until the connection closes.
const std::string kSseHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n";
const std::string kEv1 = "data: one\n\n";
const std::string kEv2 = "event: tick\ndata: two\n\n";
const std::string kEv3 = "data: three\n\n";

std::string hex(std::size_t n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%zx", n);
  return buf;
}
std::string chunk(const std::string& payload) { return hex(payload.size()) + "\r\n" + payload + "\r\n"; }
const std::string kSseChunkedHead =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";

bool aborted(const Recording& r) { return r.down().find("HTTP/1.1 418") != std::string::npos; }

// One GET through an engine carrying one abort fault with this match; true when answered locally.
bool abort_matches(const std::string& match, const std::string& request) {
  Driver d(Protocol::http, 1, {fault("http_abort", {{"status", iv(418)}, {"match", jv(match)}})});
  d.client(request);
  const bool local = aborted(d.out);
  if (local) CHECK(d.out.up().empty());
  else CHECK(d.out.up() == request);
  return local;
}

}  // namespace

// ---- passthrough --------------------------------------------------------------------

TEST_CASE("http engine: pipelined GETs pass through unchanged, requests in one read") {
  Driver d(Protocol::http);
  d.client(kGetA + kGetB);
  CHECK(d.out.up() == kGetA + kGetB);
  CHECK(d.out.down().empty());
  d.server(kRespA + kRespB);
  CHECK(d.out.down() == kRespA + kRespB);
  CHECK(d.engine->counters().requests == 2);
  CHECK(d.engine->counters().responses == 2);
  CHECK(d.engine->counters().undecodable == 0);
  CHECK(d.out.ends.empty());
  CHECK(d.out.notes.empty());
}

TEST_CASE("http engine: pipelined requests and responses split at every byte pass through unchanged") {
  const std::string requests = kGetA + kGetB;
  const std::string responses = kRespA + kRespB;
  for (std::size_t i = 0; i <= responses.size(); ++i) {
    Driver d(Protocol::http);
    const std::size_t j = i % (requests.size() + 1);
    d.client(requests.substr(0, j));
    d.client(requests.substr(j));
    d.server(responses.substr(0, i));
    d.server(responses.substr(i));
    INFO("split at " << i << " (requests at " << j << ")");
    CHECK(d.out.up() == requests);
    CHECK(d.out.down() == responses);
    CHECK(d.engine->counters().responses == 2);
    CHECK(d.engine->counters().undecodable == 0);
  }
}

TEST_CASE("http engine: a byte-at-a-time exchange passes through unchanged") {
  const std::string requests = kGetA + kGetB;
  const std::string responses = kRespA + kRespB;
  Driver d(Protocol::http);
  for (char c : requests) d.client(std::string(1, c));
  for (char c : responses) d.server(std::string(1, c));
  CHECK(d.out.up() == requests);
  CHECK(d.out.down() == responses);
  CHECK(d.engine->counters().requests == 2);
  CHECK(d.engine->counters().responses == 2);
}

TEST_CASE("http engine: a chunked response with trailers passes through unchanged") {
  const std::string response =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
      "5\r\nhello\r\n"
      "7;ext=1\r\n, world\r\n"
      "0\r\nX-Checksum: abc\r\n\r\n";
  for (std::size_t i = 0; i <= response.size(); ++i) {
    Driver d(Protocol::http);
    d.client(kGetA + kGetB);
    d.server(response.substr(0, i));
    d.server(response.substr(i));
    d.server(kRespB);
    INFO("split at " << i);
    CHECK(d.out.down() == response + kRespB);
    CHECK(d.engine->counters().responses == 2);
  }
}

TEST_CASE("http engine: a POST body streams through as it arrives") {
  const std::string body(3000, 'x');
  const std::string request = post("/upload", body);
  Driver d(Protocol::http, 1, {fault("http_abort", {{"match", jv(R"({"path":"/other"})")}})});
  const std::size_t head_len = request.size() - body.size();
  d.client(request.substr(0, head_len + 500));
  CHECK(d.out.up() == request.substr(0, head_len + 500));  // not held: the head and the body so far went out
  d.client(request.substr(head_len + 500, 1000));
  CHECK(d.out.up() == request.substr(0, head_len + 1500));
  d.client(request.substr(head_len + 1500));
  CHECK(d.out.up() == request);
}

// ---- http_abort ---------------------------------------------------------------------

TEST_CASE("http_abort answers locally with the exact status line, headers and body and does not forward") {
  Driver d(Protocol::http, 1,
           {fault("http_abort", {{"status", iv(429)}, {"headers", jv(R"({"Retry-After":"2"})")},
                                 {"body", jv(R"({"error":{"code":"1302","message":"busy"}})")}})});
  d.client(post("/api/chat", R"({"model":"glm"})"));
  const std::string body = R"({"error":{"code":"1302","message":"busy"}})";
  CHECK(d.out.down() == "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nRetry-After: 2\r\n"
                        "content-length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  CHECK(d.out.up().empty());
  CHECK(d.out.ends.empty());
  REQUIRE(d.out.notes.size() == 1);
  CHECK(d.out.notes[0].what == "answered 429 to POST /api/chat");
  CHECK(d.engine->counters().requests == 1);
}

TEST_CASE("http_abort defaults: 503 with an empty body, a string body is sent as is") {
  SECTION("default") {
    Driver d(Protocol::http, 1, {fault("http_abort")});
    d.client(kGetA);
    CHECK(d.out.down() == "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
    CHECK(d.out.up().empty());
  }
  SECTION("string body") {
    Driver d(Protocol::http, 1, {fault("http_abort", {{"status", iv(500)}, {"body", jv(R"("upstream exploded")")}})});
    d.client(kGetA);
    CHECK(d.out.down() ==
          "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 17\r\n\r\n"
          "upstream exploded");
  }
  SECTION("a request asking to close gets its answer then the connection closes") {
    Driver d(Protocol::http, 1, {fault("http_abort")});
    d.client(get("/a", "Connection: close\r\n"));
    CHECK(d.out.down() == "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    REQUIRE(d.out.ends.size() == 1);
    CHECK(d.out.ends[0].towards == Stream::downstream);
    CHECK(d.out.ends[0].kind == EndKind::close);
  }
}

TEST_CASE("http_abort on the second pipelined request answers after the first response, in order") {
  Driver d(Protocol::http, 1, {fault("http_abort", {{"status", iv(429)}, {"match", jv(R"({"path":"/b"})")}})});
  d.client(kGetA + kGetB);
  CHECK(d.out.up() == kGetA);  // /b is not forwarded
  CHECK(d.out.down().empty());  // its answer waits for /a's
  const std::string local = "HTTP/1.1 429 Too Many Requests\r\ncontent-length: 0\r\n\r\n";
  const std::size_t part = kRespA.size() - 3;  // the head and 2 bytes of the body
  d.server(kRespA.substr(0, part));
  CHECK(d.out.down() == kRespA.substr(0, part));
  d.advance(milliseconds(5));
  d.server(kRespA.substr(part));
  CHECK(d.out.down() == kRespA + local);
  CHECK(d.out.ordered(Stream::downstream));
  // The connection goes on: a third request is forwarded and answered by the upstream.
  d.client(get("/c"));
  CHECK(d.out.up() == kGetA + get("/c"));
  d.server(kRespB);
  CHECK(d.out.down() == kRespA + local + kRespB);
}

TEST_CASE("http_abort match: method, path prefix, path_regex, header") {
  SECTION("method is exact") {
    CHECK(abort_matches(R"({"method":"GET"})", get("/x")));
    CHECK_FALSE(abort_matches(R"({"method":"POST"})", get("/x")));
    CHECK_FALSE(abort_matches(R"({"method":"get"})", get("/x")));
  }
  SECTION("path is a prefix, query excluded") {
    CHECK(abort_matches(R"({"path":"/v1/chat/"})", get("/v1/chat/completions")));
    CHECK(abort_matches(R"({"path":"/v1/chat/completions"})", get("/v1/chat/completions?stream=true")));
    CHECK_FALSE(abort_matches(R"({"path":"/v1/chat/"})", get("/v1/models")));
    CHECK_FALSE(abort_matches(R"({"path":"/v1/chat?stream"})", get("/v1/chat?stream=true")));
  }
  SECTION("path_regex must match the whole path") {
    CHECK(abort_matches(R"({"path_regex":"/v[0-9]+/chat/.*"})", get("/v1/chat/completions")));
    CHECK_FALSE(abort_matches(R"({"path_regex":"/v[0-9]+"})", get("/v1/chat/completions")));
    CHECK(abort_matches(R"({"path_regex":"/items/[0-9]+"})", get("/items/42?verbose=1")));
  }
  SECTION("header: exact value, names case-insensitive, * means present") {
    CHECK(abort_matches(R"({"header":{"X-Tenant":"a"}})", get("/x", "x-tenant: a\r\n")));
    CHECK_FALSE(abort_matches(R"({"header":{"X-Tenant":"a"}})", get("/x", "x-tenant: b\r\n")));
    CHECK_FALSE(abort_matches(R"({"header":{"X-Tenant":"a"}})", get("/x")));
    CHECK(abort_matches(R"({"header":{"authorization":"*"}})", get("/x", "Authorization: Bearer t\r\n")));
    CHECK_FALSE(abort_matches(R"({"header":{"authorization":"*"}})", get("/x")));
  }
  SECTION("every field given must match") {
    CHECK(abort_matches(R"({"method":"GET","path":"/x","header":{"x-a":"1"}})", get("/x", "X-A: 1\r\n")));
    CHECK_FALSE(abort_matches(R"({"method":"GET","path":"/x","header":{"x-a":"1"}})", get("/y", "X-A: 1\r\n")));
  }
}

TEST_CASE("http_abort toxicity 0.5: the same seed gives the same per-message decisions") {
  auto run = [](std::uint64_t seed) {
    auto f = fault("http_abort", {{"status", iv(418)}}, 0.5);
    Driver d(Protocol::http, seed, {f});
    for (int i = 0; i < 64; ++i) d.client(get("/r" + std::to_string(i)));
    std::vector<std::string> hit;
    for (const auto& n : d.out.notes) hit.push_back(n.what);
    return hit;
  };
  const auto a = run(42);
  const auto b = run(42);
  CHECK(a == b);
  CHECK(a.size() > 16);  // rolled per message, not per connection
  CHECK(a.size() < 48);
  const auto c = run(43);
  CHECK(c != a);
}

// ---- http_delay ---------------------------------------------------------------------

TEST_CASE("http_delay phase request: the request bytes are released at now + delay") {
  Driver d(Protocol::http, 1, {fault("http_delay", {{"delay", iv(250)}})});
  const std::string body = "0123456789";
  const std::string request = post("/slow", body);
  const std::size_t head_len = request.size() - body.size();
  d.client(request.substr(0, head_len + 4));
  d.advance(milliseconds(40));
  d.client(request.substr(head_len + 4));
  CHECK(d.out.up() == request);
  for (const auto& s : d.out.sends(Stream::upstream)) CHECK(s.release == start_time() + milliseconds(250));
  // The answer is not delayed.
  d.advance(milliseconds(300));
  d.server(kRespA);
  CHECK(d.out.down() == kRespA);
  CHECK(d.out.release_of(Stream::downstream, "hello") == d.now);
  REQUIRE(d.out.notes.size() == 1);
}

TEST_CASE("http_delay phase response: the answer is released at its arrival + delay") {
  Driver d(Protocol::http, 1, {fault("http_delay", {{"delay", iv(300)}, {"phase", tv("response")}})});
  d.client(kGetA);
  CHECK(d.out.up() == kGetA);
  CHECK(d.out.release_of(Stream::upstream, "GET /a") == start_time());
  d.advance(milliseconds(100));
  d.server(kRespA);
  CHECK(d.out.down() == kRespA);
  for (const auto& s : d.out.sends(Stream::downstream)) CHECK(s.release == start_time() + milliseconds(400));
}

// ---- http_reset ---------------------------------------------------------------------

TEST_CASE("http_reset after_bytes: exactly N bytes of the answer, then the end of the given kind") {
  const std::string response = ok("0123456789abcdef", "Content-Type: text/plain\r\n");
  const std::size_t head_len = response.size() - 16;
  struct Case {
    std::int64_t n;
    const char* mode;
    EndKind kind;
  };
  for (const Case& c : {Case{0, "reset", EndKind::reset}, Case{10, "reset", EndKind::reset},
                        Case{static_cast<std::int64_t>(head_len) + 5, "close", EndKind::close},
                        Case{static_cast<std::int64_t>(head_len), "close", EndKind::close}}) {
    for (std::size_t split : {std::size_t{0}, head_len + 2, response.size()}) {
      INFO("after_bytes " << c.n << " mode " << c.mode << " split " << split);
      Driver d(Protocol::http, 1, {fault("http_reset", {{"after_bytes", iv(c.n)}, {"mode", tv(c.mode)}})});
      d.client(kGetA);
      d.server(response.substr(0, split));
      d.server(response.substr(split));
      d.server(kRespB);  // nothing after the end goes out
      CHECK(d.out.down() == response.substr(0, static_cast<std::size_t>(c.n)));
      REQUIRE(d.out.ends.size() == 1);
      CHECK(d.out.ends[0].towards == Stream::downstream);
      CHECK(d.out.ends[0].kind == c.kind);
    }
  }
}

TEST_CASE("http_reset after_bytes beyond the answer leaves it whole") {
  const std::string response = ok("abc");
  Driver d(Protocol::http, 1, {fault("http_reset", {{"after_bytes", iv(100000)}})});
  d.client(kGetA);
  d.server(response);
  CHECK(d.out.down() == response);
  CHECK(d.out.ends.empty());
}

// ---- http_replace / http_patch ------------------------------------------------------

TEST_CASE("http_replace status only: the head is rewritten and the body streams through") {
  Driver d(Protocol::http, 1,
           {fault("http_replace", {{"status", iv(503)}, {"headers", jv(R"({"X-Fault":"1","content-type":"text/html"})")}})});
  d.client(kGetA);
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n";
  d.server(head + "01234");
  const std::string new_head =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html\r\nContent-Length: 10\r\nX-Fault: 1\r\n\r\n";
  CHECK(d.out.down() == new_head + "01234");  // the body is not held
  d.server("56789");
  CHECK(d.out.down() == new_head + "0123456789");
  d.server(kRespB);  // the next answer is the upstream's own
  CHECK(d.out.down() == new_head + "0123456789" + kRespB);
}

TEST_CASE("http_replace with a body: content-length follows the new body") {
  SECTION("content-length response") {
    Driver d(Protocol::http, 1, {fault("http_replace", {{"body", jv(R"({"error":"x"})")}})});
    d.client(kGetA);
    d.server("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\":12345}");
    CHECK(d.out.down() == "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"error\":\"x\"}");
    CHECK(d.engine->counters().responses == 1);
  }
  SECTION("chunked response") {
    Driver d(Protocol::http, 1, {fault("http_replace", {{"status", iv(500)}, {"body", jv(R"("nope")")}})});
    d.client(kGetA);
    d.server("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk("hello ") + chunk("world") + "0\r\n\r\n");
    CHECK(d.out.down() == "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\nnope");
    d.server(kRespB);
    CHECK(d.out.down() == "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\nnope" + kRespB);
  }
}

TEST_CASE("http_patch applies the merge patch to the JSON answer") {
  Driver d(Protocol::http, 1,
           {fault("http_patch", {{"patch", jv(R"({"usage":null,"choices":[{"text":"patched"}],"x":{"y":1}})")},
                                 {"headers", jv(R"({"X-Patched":"yes"})")}})});
  d.client(kGetA);
  const std::string body = R"({"id":"c1","choices":[{"text":"real"}],"usage":{"tokens":5}})";
  d.server("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
           body.substr(0, 10));
  CHECK(d.out.down().empty());  // held until the whole body is in
  d.server(body.substr(10));
  const std::string patched = R"({"id":"c1","choices":[{"text":"patched"}],"x":{"y":1}})";
  CHECK(d.out.down() == "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                            std::to_string(patched.size()) + "\r\nX-Patched: yes\r\n\r\n" + patched);
}

TEST_CASE("http_patch leaves compressed answers and event streams alone") {
  Driver d(Protocol::http, 1, {fault("http_patch", {{"patch", jv(R"({"a":2})")}})});
  const std::string gz = "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\n\x1f\x8b\x08\x00";
  d.client(kGetA + kGetB);
  d.server(gz);
  d.server(kSseHead.substr(0, kSseHead.size() - 2) + "Content-Length: " + std::to_string(kEv1.size()) + "\r\n\r\n" + kEv1);
  CHECK(d.out.down() == gz + kSseHead.substr(0, kSseHead.size() - 2) + "Content-Length: " + std::to_string(kEv1.size()) +
                            "\r\n\r\n" + kEv1);
}

// ---- framing corner cases -----------------------------------------------------------

TEST_CASE("http engine: a 100-continue interim answer passes and does not consume the exchange") {
  Driver d(Protocol::http, 1, {fault("http_replace", {{"status", iv(201)}, {"match", jv(R"({"path":"/up"})")}})});
  const std::string head = "POST /up HTTP/1.1\r\nHost: example\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
  d.client(head);
  CHECK(d.out.up() == head);
  const std::string interim = "HTTP/1.1 100 Continue\r\n\r\n";
  d.server(interim);
  CHECK(d.out.down() == interim);
  d.client("hello");
  CHECK(d.out.up() == head + "hello");
  d.server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  // The final answer is the one the fault rewrites.
  CHECK(d.out.down() == interim + "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok");
  CHECK(d.engine->counters().responses == 1);
  CHECK(d.engine->counters().undecodable == 0);
}

TEST_CASE("http engine: a HEAD answer with content-length has no body") {
  Driver d(Protocol::http);
  const std::string head_req = "HEAD /file HTTP/1.1\r\nHost: example\r\n\r\n";
  const std::string head_resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n";
  d.client(head_req + kGetA);
  d.server(head_resp + kRespA);
  CHECK(d.out.up() == head_req + kGetA);
  CHECK(d.out.down() == head_resp + kRespA);
  CHECK(d.engine->counters().responses == 2);
  CHECK(d.engine->counters().undecodable == 0);
}

TEST_CASE("http engine: after a 101 upgrade, bytes pass through both ways untouched") {
  Driver d(Protocol::http, 1, {fault("http_abort", {{"match", jv(R"({"path":"/x"})")}})});
  const std::string upgrade = "GET /ws HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
  const std::string switching = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
  d.client(upgrade);
  const std::string frame_down("\x81\x05hello", 7);
  d.server(switching + frame_down);
  CHECK(d.out.down() == switching + frame_down);
  // Even bytes that look like a request the fault matches are only bytes now.
  const std::string frame_up = std::string("\x81\x85\x01\x02\x03\x04", 6) + get("/x");
  d.client(frame_up);
  d.server(get("/x"));
  CHECK(d.out.up() == upgrade + frame_up);
  CHECK(d.out.down() == switching + frame_down + get("/x"));
  CHECK(d.out.notes.empty());
  CHECK(d.engine->counters().undecodable == 0);
}

TEST_CASE("http engine: traffic that is not HTTP passes through unchanged and counts as undecodable") {
  Driver d(Protocol::http, 1, {fault("http_abort")});
  const std::string hello("\x16\x03\x01\x00\x2f\x01\x00\x00\x2b\x03\x03garbage\r\n\r\n", 21);
  d.client(hello);
  d.client("more client bytes");
  d.server("\x16\x03\x03 server bytes");
  CHECK(d.out.up() == hello + "more client bytes");
  CHECK(d.out.down() == "\x16\x03\x03 server bytes");
  CHECK(d.engine->counters().undecodable == 1);
  CHECK(d.out.notes.empty());
}

// ---- SSE ----------------------------------------------------------------------------

TEST_CASE("sse_cut after 2 events: exactly the bytes up to the end of event 2, then a close") {
  const std::string stream = kSseHead + kEv1 + kEv2 + kEv3;
  for (std::size_t i = 0; i <= stream.size(); ++i) {
    Driver d(Protocol::http, 1, {fault("sse_cut", {{"after_events", iv(2)}})});
    d.client(kGetA);
    d.server(stream.substr(0, i));
    d.server(stream.substr(i));
    INFO("split at " << i);
    CHECK(d.out.down() == kSseHead + kEv1 + kEv2);
    REQUIRE(d.out.ends.size() == 1);
    CHECK(d.out.ends[0].towards == Stream::downstream);
    CHECK(d.out.ends[0].kind == EndKind::close);
  }
}

TEST_CASE("sse_cut with a chunked event stream ends right after event 2's bytes") {
  const std::string stream = kSseChunkedHead + chunk(kEv1) + chunk(kEv2 + kEv3.substr(0, 4)) + chunk(kEv3.substr(4)) + "0\r\n\r\n";
  const std::string expected = kSseChunkedHead + chunk(kEv1) + hex(kEv2.size() + 4) + "\r\n" + kEv2;
  for (std::size_t i = 0; i <= stream.size(); ++i) {
    Driver d(Protocol::http, 1, {fault("sse_cut", {{"after_events", iv(2)}, {"mode", tv("reset")}})});
    d.client(kGetA);
    d.server(stream.substr(0, i));
    d.server(stream.substr(i));
    INFO("split at " << i);
    CHECK(d.out.down() == expected);
    REQUIRE(d.out.ends.size() == 1);
    CHECK(d.out.ends[0].kind == EndKind::reset);
  }
}

TEST_CASE("sse_cut after 0 events ends right after the head") {
  Driver d(Protocol::http, 1, {fault("sse_cut", {{"after_events", iv(0)}})});
  d.client(kGetA);
  d.server(kSseHead + kEv1);
  CHECK(d.out.down() == kSseHead);
  REQUIRE(d.out.ends.size() == 1);
  CHECK(d.out.ends[0].kind == EndKind::close);
}

TEST_CASE("sse faults leave answers that are not event streams alone") {
  Driver d(Protocol::http, 1, {fault("sse_cut", {{"after_events", iv(0)}}), fault("sse_corrupt")});
  d.client(kGetA);
  d.server(kRespA);
  CHECK(d.out.down() == kRespA);
  CHECK(d.out.ends.empty());
}

TEST_CASE("sse_stall: event 3 is released no earlier than event 2 plus the duration") {
  Driver d(Protocol::http, 1, {fault("sse_stall", {{"after_events", iv(2)}, {"duration", iv(5000)}})});
  d.client(kGetA);
  d.server(kSseHead + kEv1);
  d.advance(milliseconds(100));
  d.server(kEv2);
  const TimePoint ev2 = d.out.release_of(Stream::downstream, "two");
  CHECK(ev2 == start_time() + milliseconds(100));
  d.advance(milliseconds(100));
  d.server(kEv3);
  CHECK(d.out.release_of(Stream::downstream, "three") >= ev2 + milliseconds(5000));
  CHECK(d.out.down() == kSseHead + kEv1 + kEv2 + kEv3);
  CHECK(d.out.ordered(Stream::downstream));
}

TEST_CASE("sse_stall with duration 0 never releases the rest") {
  Driver d(Protocol::http, 1, {fault("sse_stall", {{"after_events", iv(1)}})});
  d.client(kGetA);
  d.server(kSseHead + kEv1 + kEv2);
  CHECK(d.out.release_of(Stream::downstream, "one") == start_time());
  CHECK(d.out.release_of(Stream::downstream, "two") == kNever);
}

TEST_CASE("sse_stall forever outlives the answer it stopped and lets go when its fault is removed") {
  // The upstream may finish the stream (and answer the next request) before the fault goes:
  // everything stays held, in order, and the hold ends with the fault, not with the answer.
  Driver d(Protocol::http, 1, {fault("sse_stall", {{"after_events", iv(1)}})});
  d.client(kGetA);
  d.server(kSseChunkedHead + chunk(kEv1) + chunk(kEv2) + "0\r\n\r\n");
  CHECK(d.engine->holds_forever());
  d.client(kGetB);
  d.server(kRespB);
  CHECK(d.engine->holds_forever());
  CHECK(d.out.release_of(Stream::downstream, "two") == kNever);
  CHECK(d.out.release_of(Stream::downstream, "bye") == kNever);
  d.advance(milliseconds(100));
  d.engine->set_faults({});
  CHECK_FALSE(d.engine->holds_forever());
  d.client(kGetA);
  d.server(kRespA);
  CHECK(d.out.release_of(Stream::downstream, "hello") == start_time() + milliseconds(100));
}

TEST_CASE("sse_stall forever keeps holding while other faults change") {
  auto stall = fault("sse_stall", {{"after_events", iv(1)}});
  Driver d(Protocol::http, 1, {stall});
  d.client(kGetA);
  d.server(kSseChunkedHead + chunk(kEv1) + chunk(kEv2) + "0\r\n\r\n");
  d.engine->set_faults({stall, fault("http_abort", {{"status", iv(418)}, {"match", jv("{\"path\": \"/zzz\"}")}})});
  CHECK(d.engine->holds_forever());
  d.client(kGetB);
  d.server(kRespB);
  CHECK(d.out.release_of(Stream::downstream, "bye") == kNever);
}

TEST_CASE("sse_delay spaces events at least delay apart") {
  Driver d(Protocol::http, 1, {fault("sse_delay", {{"delay", iv(300)}})});
  d.client(kGetA);
  d.server(kSseHead + kEv1 + kEv2);
  d.advance(milliseconds(50));
  d.server(kEv3);
  CHECK(d.out.down() == kSseHead + kEv1 + kEv2 + kEv3);
  const TimePoint t1 = d.out.release_of(Stream::downstream, "one");
  const TimePoint t2 = d.out.release_of(Stream::downstream, "two");
  const TimePoint t3 = d.out.release_of(Stream::downstream, "three");
  CHECK(t1 >= start_time());
  CHECK(t2 - t1 >= milliseconds(300));
  CHECK(t3 - t2 >= milliseconds(300));
  CHECK(t3 >= start_time() + milliseconds(50));
  CHECK(t3 - start_time() <= milliseconds(1000));
  CHECK(d.out.ordered(Stream::downstream));
}

TEST_CASE("sse_corrupt keeps the length and breaks only the chosen event") {
  const std::string json1 = "data: {\"text\":\"hello world, this is event one\"}\n\n";
  const std::string json2 = "data: {\"text\":\"event two\"}\n\n";
  auto expect_corrupted = [&](const std::string& out_body) {
    REQUIRE(out_body.size() == json1.size() + json2.size());
    const std::string ev1 = out_body.substr(0, json1.size());
    CHECK(ev1 != json1);
    CHECK(ev1.substr(0, json1.size() / 2) == json1.substr(0, json1.size() / 2));  // first half intact
    CHECK(ev1.find('~') != std::string::npos);
    CHECK(ev1.substr(ev1.size() - 2) == "\n\n");  // still one event
    CHECK(out_body.substr(json1.size()) == json2);
  };
  SECTION("until-close body in one read") {
    Driver d(Protocol::http, 1, {fault("sse_corrupt")});
    d.client(kGetA);
    d.server(kSseHead + json1 + json2);
    const std::string out = d.out.down();
    REQUIRE(out.size() == kSseHead.size() + json1.size() + json2.size());
    CHECK(out.substr(0, kSseHead.size()) == kSseHead);
    expect_corrupted(out.substr(kSseHead.size()));
  }
  SECTION("chunked body: chunk framing intact") {
    Driver d(Protocol::http, 1, {fault("sse_corrupt", {{"after_events", iv(0)}})});
    d.client(kGetA);
    d.server(kSseChunkedHead + chunk(json1) + chunk(json2) + "0\r\n\r\n");
    const std::string out = d.out.down();
    const std::string in = kSseChunkedHead + chunk(json1) + chunk(json2) + "0\r\n\r\n";
    REQUIRE(out.size() == in.size());
    const std::size_t p1 = kSseChunkedHead.size() + hex(json1.size()).size() + 2;
    CHECK(out.substr(0, p1) == in.substr(0, p1));
    const std::size_t p2 = p1 + json1.size();
    CHECK(out.substr(p2) == in.substr(p2));  // framing after event 1, and event 2, untouched
    expect_corrupted(out.substr(p1, json1.size()) + json2);
    CHECK(d.engine->counters().responses == 1);
  }
}

TEST_CASE("sse_corrupt output does not depend on how the event was split across reads", "[sse]") {
  const std::string ev = "data: {\"text\":\"hello world, this is event one\"}\n\n";
  Driver whole(Protocol::http, 1, {fault("sse_corrupt")});
  whole.client(kGetA);
  whole.server(kSseHead + ev);
  const std::string expected = whole.out.down();
  REQUIRE(expected != kSseHead + ev);
  // The last read holds only the blank line that ends the event.
  Driver split(Protocol::http, 1, {fault("sse_corrupt")});
  split.client(kGetA);
  split.server(kSseHead + ev.substr(0, ev.size() - 1));
  split.server(ev.substr(ev.size() - 1));
  CHECK(split.out.down() == expected);
}

TEST_CASE("sse_cut counts comment-only blocks as events") {
  Driver d(Protocol::http, 1, {fault("sse_cut", {{"after_events", iv(2)}})});
  d.client(kGetA);
  d.server(kSseHead + ": keep-alive\n\n" + kEv1 + kEv2);
  CHECK(d.out.down() == kSseHead + ": keep-alive\n\n" + kEv1);
}

// ---- requests held for a body match -------------------------------------------------

TEST_CASE("a body-matching request is held until complete, then matched") {
  const auto f = fault("http_abort", {{"status", iv(400)}, {"match", jv(R"({"body":{"model":"x"}})")}});
  SECTION("matching body: answered locally, never forwarded") {
    Driver d(Protocol::http, 1, {f});
    const std::string request = post("/v1/chat", R"({"model":"x","stream":true})");
    d.client(request.substr(0, request.size() - 10));
    CHECK(d.out.up().empty());
    CHECK(d.out.down().empty());
    d.client(request.substr(request.size() - 10));
    CHECK(d.out.up().empty());
    CHECK(d.out.down() == "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
  }
  SECTION("other body: forwarded whole once complete") {
    Driver d(Protocol::http, 1, {f});
    const std::string request = post("/v1/chat", R"({"model":"y","stream":true})");
    d.client(request.substr(0, request.size() - 10));
    CHECK(d.out.up().empty());
    d.advance(milliseconds(7));
    d.client(request.substr(request.size() - 10));
    CHECK(d.out.up() == request);
    CHECK(d.out.down().empty());
    CHECK(d.out.notes.empty());
  }
  SECTION("nested dotted path") {
    Driver d(Protocol::http, 1,
             {fault("http_abort", {{"status", iv(400)}, {"match", jv(R"({"body":{"messages.0.role":"system"}})")}})});
    d.client(post("/v1/chat", R"({"messages":[{"role":"system","content":"hi"}]})"));
    CHECK(d.out.up().empty());
    CHECK(d.out.down().rfind("HTTP/1.1 400 Bad Request\r\n", 0) == 0);
  }
  SECTION("a bodiless request is not held") {
    Driver d(Protocol::http, 1, {f});
    d.client(kGetA);
    CHECK(d.out.up() == kGetA);
  }
}

TEST_CASE("a request over 1 MiB with a body match is streamed, not held forever") {
  Driver d(Protocol::http, 1, {fault("http_abort", {{"match", jv(R"({"body":{"model":"x"}})")}})});
  const std::size_t size = 3 << 20;
  const std::string head = "POST /upload HTTP/1.1\r\nHost: example\r\nContent-Length: " + std::to_string(size) + "\r\n\r\n";
  d.client(head);
  CHECK(d.out.up().empty());
  const std::string piece(64 * 1024, 'z');
  std::size_t fed = 0;
  while (fed < (1 << 20) + 2 * piece.size()) {
    d.client(piece);
    fed += piece.size();
  }
  // Past 1 MiB, everything so far has gone out.
  CHECK(d.out.up().size() == head.size() + fed);
  while (fed < size) {
    d.client(piece);
    fed += piece.size();
    CHECK(d.out.up().size() == head.size() + fed);
  }
  CHECK(d.out.up() == head + std::string(size, 'z'));
  CHECK(d.out.down().empty());
  CHECK(d.out.notes.empty());
  // The connection goes on.
  d.server(kRespA);
  CHECK(d.out.down() == kRespA);
}

// ---- MCP ----------------------------------------------------------------------------

namespace {
std::string rpc(const std::string& body, const std::string& extra = "") { return post("/mcp", body, extra); }
std::string json_ok(const std::string& body) {
  return "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: " + std::to_string(body.size()) + "\r\n\r\n" +
         body;
}
const std::string kCallList = R"({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"listmodels","arguments":{}}})";
const std::string kCallOther = R"({"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"chat"}})";
}  // namespace

TEST_CASE("jsonrpc_error answers with the live id") {
  auto f = fault("jsonrpc_error", {{"code", iv(-32000)}, {"message", tv("boom")}});
  SECTION("numeric id") {
    Driver d(Protocol::mcp, 1, {f});
    d.client(rpc(kCallList));
    CHECK(d.out.up().empty());
    CHECK(d.out.down() == json_ok(R"({"jsonrpc":"2.0","id":7,"error":{"code":-32000,"message":"boom"}})"));
    REQUIRE(d.out.notes.size() == 1);
    CHECK(d.out.notes[0].what == "failed tools/call listmodels");
  }
  SECTION("string id") {
    Driver d(Protocol::mcp, 1, {f});
    d.client(rpc(R"({"jsonrpc":"2.0","id":"req-\"9\"","method":"ping"})"));
    CHECK(d.out.up().empty());
    CHECK(d.out.down() == json_ok(R"({"jsonrpc":"2.0","id":"req-\"9\"","error":{"code":-32000,"message":"boom"}})"));
  }
  SECTION("as_result: a tool result with isError") {
    Driver d(Protocol::mcp, 1, {fault("jsonrpc_error", {{"message", tv("tool broke")}, {"as_result", jv("true")}})});
    d.client(rpc(kCallList));
    CHECK(d.out.down() ==
          json_ok(R"({"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"tool broke"}],"isError":true}})"));
  }
  SECTION("defaults") {
    Driver d(Protocol::mcp, 1, {fault("jsonrpc_error")});
    d.client(rpc(kCallList));
    CHECK(d.out.down() ==
          json_ok(R"({"jsonrpc":"2.0","id":7,"error":{"code":-32603,"message":"Fault injected by faultline"}})"));
  }
  SECTION("a notification gets 202 Accepted") {
    Driver d(Protocol::mcp, 1, {f});
    d.client(rpc(R"({"jsonrpc":"2.0","method":"notifications/initialized"})"));
    CHECK(d.out.up().empty());
    CHECK(d.out.down() == "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n");
  }
  SECTION("a JSON-RPC response from the client is not failed") {
    Driver d(Protocol::mcp, 1, {f});
    const std::string request = rpc(R"({"jsonrpc":"2.0","id":3,"result":{}})");
    d.client(request);
    CHECK(d.out.up() == request);
    CHECK(d.out.down().empty());
  }
  SECTION("not applied on an http proxy") {
    Driver d(Protocol::http, 1, {f});
    const std::string request = rpc(kCallList);
    d.client(request);
    CHECK(d.out.up() == request);
    CHECK(d.out.down().empty());
  }
}

TEST_CASE("jsonrpc faults match tool and rpc_method") {
  SECTION("tool") {
    Driver d(Protocol::mcp, 1, {fault("jsonrpc_error", {{"match", jv(R"({"tool":"listmodels"})")}})});
    const std::string other = rpc(kCallOther);
    d.client(other);
    CHECK(d.out.up() == other);
    d.client(rpc(kCallList));
    CHECK(d.out.up() == other);  // not forwarded
    CHECK(d.out.down().empty());  // waits for the first answer
    const std::string answer = json_ok(R"({"jsonrpc":"2.0","id":8,"result":{}})");
    d.server(answer);
    CHECK(d.out.down() ==
          answer + json_ok(R"({"jsonrpc":"2.0","id":7,"error":{"code":-32603,"message":"Fault injected by faultline"}})"));
  }
  SECTION("rpc_method") {
    Driver d(Protocol::mcp, 1,
             {fault("http_abort", {{"status", iv(500)}, {"match", jv(R"({"rpc_method":"initialize"})")}})});
    const std::string list = rpc(R"({"jsonrpc":"2.0","id":1,"method":"tools/list"})");
    d.client(list);
    CHECK(d.out.up() == list);
    d.client(rpc(R"({"jsonrpc":"2.0","id":2,"method":"initialize","params":{}})"));
    CHECK(d.out.up() == list);
    d.server(ok("{}"));
    CHECK(d.out.down() == ok("{}") + "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n");
  }
}

TEST_CASE("jsonrpc_drop swallows the call: never forwarded, never answered") {
  Driver d(Protocol::mcp, 1, {fault("jsonrpc_drop", {{"match", jv(R"({"tool":"listmodels"})")}})});
  d.client(rpc(kCallList));
  CHECK(d.out.up().empty());
  CHECK(d.out.down().empty());
  CHECK(d.out.ends.empty());
  REQUIRE(d.out.notes.size() == 1);
  CHECK(d.out.notes[0].what == "dropped tools/call listmodels");
}

TEST_CASE("mcp_session_kill answers 404 for a session, which stays dead") {
  Driver d(Protocol::mcp, 1, {fault("mcp_session_kill")});
  const std::string body = R"({"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}})";
  const std::string not_found = "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: " +
                                std::to_string(body.size()) + "\r\n\r\n" + body;
  d.client(rpc(kCallList, "Mcp-Session-Id: s1\r\n"));
  CHECK(d.out.up().empty());
  CHECK(d.out.down() == not_found);
  d.client(rpc(kCallList, "Mcp-Session-Id: s1\r\n"));
  CHECK(d.out.up().empty());
  CHECK(d.out.down() == not_found + not_found);
  // Requests without a session are not touched.
  const std::string plain = rpc(kCallList);
  d.client(plain);
  CHECK(d.out.up() == plain);
}

TEST_CASE("mcp_session_kill spares a session whose initialize response went through the engine") {
  Driver d(Protocol::mcp, 1, {fault("mcp_session_kill")});
  const std::string init = rpc(R"({"jsonrpc":"2.0","id":0,"method":"initialize","params":{}})");
  d.client(init);
  CHECK(d.out.up() == init);
  const std::string init_answer = ok(R"({"jsonrpc":"2.0","id":0,"result":{}})", "Mcp-Session-Id: fresh-1\r\n");
  d.server(init_answer);
  CHECK(d.out.down() == init_answer);
  const std::string call = rpc(kCallList, "Mcp-Session-Id: fresh-1\r\n");
  d.client(call);
  CHECK(d.out.up() == init + call);  // the new session survives
  CHECK(d.out.down() == init_answer);
}

TEST_CASE("mcp_session_kill spares a new session when the initialize body is read for another fault") {
  // A jsonrpc_* fault makes the engine read every call's body, so it knows the initialize.
  auto kill = fault("mcp_session_kill");
  Driver d(Protocol::mcp, 1, {kill, fault("jsonrpc_error", {{"match", jv(R"({"tool":"never"})")}})});
  const std::string init = rpc(R"({"jsonrpc":"2.0","id":0,"method":"initialize","params":{}})");
  d.client(init);
  d.server(ok(R"({"jsonrpc":"2.0","id":0,"result":{}})", "Mcp-Session-Id: fresh-2\r\n"));
  const std::string call = rpc(kCallList, "Mcp-Session-Id: fresh-2\r\n");
  d.client(call);
  CHECK(d.out.up() == init + call);
  // Another connection sees the same toxic: the session survives there too.
  Driver other(Protocol::mcp, 2, {kill});
  other.client(call);
  CHECK(other.out.up() == call);
}

// ---- more exchanges -----------------------------------------------------------------

TEST_CASE("http_delay on one pipelined request holds back the requests behind it") {
  Driver d(Protocol::http, 1, {fault("http_delay", {{"delay", iv(200)}, {"match", jv(R"({"path":"/a"})")}})});
  d.client(kGetA + kGetB);
  CHECK(d.out.up() == kGetA + kGetB);
  CHECK(d.out.release_of(Stream::upstream, "GET /a") == start_time() + milliseconds(200));
  CHECK(d.out.release_of(Stream::upstream, "GET /b") >= start_time() + milliseconds(200));
  CHECK(d.out.ordered(Stream::upstream));
}

TEST_CASE("http_abort of a request expecting 100-continue closes after its answer") {
  Driver d(Protocol::http, 1, {fault("http_abort", {{"status", iv(413)}})});
  d.client("PUT /big HTTP/1.1\r\nHost: example\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n");
  CHECK(d.out.up().empty());
  CHECK(d.out.down() == "HTTP/1.1 413 Content Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
  REQUIRE(d.out.ends.size() == 1);
  CHECK(d.out.ends[0].kind == EndKind::close);
}

TEST_CASE("http_header_faults honours Envoy's fault headers") {
  Driver d(Protocol::http, 1, {fault("http_header_faults")});
  d.client(get("/a", "x-envoy-fault-delay-request: 150\r\n"));
  CHECK(d.out.release_of(Stream::upstream, "GET /a") == start_time() + milliseconds(150));
  d.server(kRespA);
  d.client(get("/b", "x-envoy-fault-abort-request: 503\r\n"));
  CHECK(d.out.up() == get("/a", "x-envoy-fault-delay-request: 150\r\n"));
  CHECK(d.out.down() == kRespA +
                            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 18\r\n\r\n"
                            "fault filter abort");
  d.client(kGetB);  // no header: untouched
  CHECK(d.out.up() == get("/a", "x-envoy-fault-delay-request: 150\r\n") + kGetB);
}

TEST_CASE("http engine: an answer whose body runs until close ends with the server's EOF") {
  const std::string response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it";
  SECTION("passthrough") {
    Driver d(Protocol::http);
    d.client(kGetA);
    d.server(response);
    d.server_eof();
    CHECK(d.out.down() == response);
    REQUIRE(d.out.ends.size() == 1);
    CHECK(d.out.ends[0].towards == Stream::downstream);
    CHECK(d.out.ends[0].kind == EndKind::half_close);
    CHECK(d.engine->counters().responses == 1);
  }
  SECTION("http_replace rebuilds it with a content-length") {
    Driver d(Protocol::http, 1, {fault("http_replace", {{"body", jv(R"("new")")}})});
    d.client(kGetA);
    d.server(response);
    CHECK(d.out.down().empty());
    d.server_eof();
    CHECK(d.out.down() == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: 3\r\n\r\nnew");
  }
}

TEST_CASE("jsonrpc_delay delays the call once its body is in") {
  Driver d(Protocol::mcp, 1, {fault("jsonrpc_delay", {{"delay", iv(700)}, {"match", jv(R"({"tool":"listmodels"})")}})});
  const std::string call = post("/mcp", R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"listmodels"}})");
  d.client(call.substr(0, call.size() - 5));
  CHECK(d.out.up().empty());
  d.advance(milliseconds(10));
  d.client(call.substr(call.size() - 5));
  CHECK(d.out.up() == call);
  for (const auto& s : d.out.sends(Stream::upstream)) CHECK(s.release == start_time() + milliseconds(710));
}

TEST_CASE("http faults outside their schedule window do nothing") {
  auto c = config_of("http_abort", {});
  c->created = start_time();
  c->schedule = Schedule{0, 500, 0};
  std::string error;
  c->compiled = ToxicRegistry::instance().find("http_abort")->compile(*c, error);
  REQUIRE(c->compiled);
  Driver d(Protocol::http, 1, {c});
  d.client(kGetA);
  CHECK(d.out.up().empty());
  d.advance(milliseconds(600));
  d.client(kGetB);
  CHECK(d.out.up() == kGetB);
}

TEST_CASE("http engine: a server that does not answer HTTP is passed through and counted once") {
  Driver d(Protocol::http, 1, {fault("http_replace", {{"status", iv(500)}})});
  d.client(kGetA);
  d.server("SSH-2.0-OpenSSH_9.6\r\n");
  d.server("more");
  CHECK(d.out.down() == "SSH-2.0-OpenSSH_9.6\r\nmore");
  CHECK(d.out.up().rfind(kGetA, 0) == 0);
  CHECK(d.engine->counters().undecodable == 1);
}
