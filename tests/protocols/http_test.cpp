#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "protocols/http.hpp"

using namespace faultline;
using http::Framer;

namespace {

struct Event {
  FrameEvent kind;
  std::size_t at = 0;           // stream offset just past the step's consumed prefix
  std::size_t payload_at = 0;   // body: stream offset of the payload
  std::string payload;
  http::Head head;              // head: the head as reported
};

// Does exactly what a real caller does: keeps the unconsumed bytes, appends what
// arrives, steps until a step neither consumes nor reports, forwards the consumed prefix.
struct Driver {
  explicit Driver(bool request) : framer(request) {}

  Framer framer;
  std::string stream;   // every byte fed so far
  std::string pending;  // bytes not yet consumed
  std::size_t base = 0; // stream offset of pending[0]
  std::vector<Event> events;
  bool errored = false;

  void feed(std::string_view bytes) {
    stream += bytes;
    pending += bytes;
    run();
  }

  void run() {
    for (int guard = 0;; ++guard) {
      REQUIRE(guard < 1000000);
      const FrameStep s = framer.step(pending);
      REQUIRE(s.consumed <= pending.size());
      if (s.consumed == 0 && s.event == FrameEvent::none) break;
      if (s.event == FrameEvent::error) {
        CHECK(s.consumed == 0);
        if (!errored) events.push_back({s.event, base, 0, {}, {}});
        errored = true;
        break;
      }
      if (s.event == FrameEvent::body) {
        REQUIRE(!s.payload.empty());
        REQUIRE(s.payload.data() >= pending.data());
        REQUIRE(s.payload.data() + s.payload.size() <= pending.data() + s.consumed);
        const std::size_t at = base + static_cast<std::size_t>(s.payload.data() - pending.data());
        // Body payloads are not copies: they are the stream's own bytes.
        CHECK(stream.substr(at, s.payload.size()) == s.payload);
        events.push_back({s.event, base + s.consumed, at, std::string(s.payload), {}});
      } else if (s.event != FrameEvent::none) {
        Event e{s.event, base + s.consumed, 0, {}, {}};
        if (s.event == FrameEvent::head) e.head = framer.head();
        events.push_back(std::move(e));
      }
      pending.erase(0, s.consumed);
      base += s.consumed;
    }
  }

  // One line per message: its head, its body (pieces joined) and where it ended.
  std::vector<std::string> messages() const {
    std::vector<std::string> out;
    std::string cur;
    for (const auto& e : events) {
      switch (e.kind) {
        case FrameEvent::head:
          cur = e.head.request ? e.head.method + " " + e.head.target
                               : std::to_string(e.head.status) + " " + e.head.reason;
          cur += " head@" + std::to_string(e.at) + " body=";
          break;
        case FrameEvent::body:
          cur += e.payload;
          break;
        case FrameEvent::end:
          out.push_back(cur + " end@" + std::to_string(e.at));
          cur.clear();
          break;
        case FrameEvent::error:
          out.push_back("error@" + std::to_string(e.at));
          break;
        case FrameEvent::none:
          break;
      }
    }
    if (!cur.empty()) out.push_back(cur + " (open)");
    return out;
  }

  std::vector<FrameEvent> kinds() const {
    std::vector<FrameEvent> k;
    for (const auto& e : events) k.push_back(e.kind);
    return k;
  }
};

std::vector<std::string> whole(bool request, std::string_view bytes) {
  Driver d(request);
  d.feed(bytes);
  return d.messages();
}

std::vector<std::string> byte_by_byte(bool request, std::string_view bytes) {
  Driver d(request);
  for (char c : bytes) d.feed(std::string_view(&c, 1));
  return d.messages();
}

// The same messages, heads and ends at the same offsets, whatever the split.
void check_every_split(bool request, std::string_view bytes) {
  const auto expected = whole(request, bytes);
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    Driver d(request);
    d.feed(bytes.substr(0, cut));
    d.feed(bytes.substr(cut));
    INFO("cut at " << cut);
    REQUIRE(d.messages() == expected);
  }
  REQUIRE(byte_by_byte(request, bytes) == expected);
}

using K = FrameEvent;

}  // namespace

TEST_CASE("http: pipelined keep-alive GETs in one buffer are two messages") {
  const std::string a = "GET /a?x=1 HTTP/1.1\r\nHost: example.com\r\nX-Many: 1\r\nx-many: 2\r\n\r\n";
  const std::string b = "GET /b HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n";
  Driver d(true);
  d.feed(a + b);
  REQUIRE(d.kinds() == std::vector<K>{K::head, K::end, K::head, K::end});
  CHECK(d.events[0].at == a.size());
  CHECK(d.events[1].at == a.size());
  CHECK(d.events[2].at == a.size() + b.size());
  CHECK(d.events[3].at == a.size() + b.size());

  const http::Head& h = d.events[0].head;
  CHECK(h.request);
  CHECK(h.method == "GET");
  CHECK(h.target == "/a?x=1");
  CHECK(h.path() == "/a");
  CHECK(h.version == 11);
  REQUIRE(h.fields.size() == 3);
  CHECK(h.fields[0].name == "Host");
  CHECK(h.fields[2].name == "x-many");
  CHECK(h.field("HOST") == "example.com");
  CHECK(h.field("x-MANY") == "1");
  CHECK_FALSE(h.field("content-length").has_value());
  CHECK(d.events[2].head.path() == "/b");
  CHECK(d.pending.empty());
  CHECK_FALSE(d.framer.in_message());
  check_every_split(true, a + b);
}

TEST_CASE("http: a POST with Content-Length fed one byte at a time") {
  const std::string head = "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n";
  const std::string body = "hello world";
  const std::string next = "GET /next HTTP/1.1\r\n\r\n";
  const std::string all = head + body + next;
  Driver d(true);
  std::size_t fed = 0;
  for (char c : all) {
    d.feed(std::string_view(&c, 1));
    ++fed;
    // The head is reported whole, with all of its bytes consumed at once.
    if (fed < head.size()) {
      CHECK(d.events.empty());
      CHECK(d.pending.size() == fed);
      CHECK_FALSE(d.framer.in_message());
    }
  }
  REQUIRE(d.events.size() == 1 + body.size() + 1 + 2);
  CHECK(d.events[0].kind == K::head);
  CHECK(d.events[0].at == head.size());
  CHECK(d.events[0].head.field("content-length") == "11");
  for (std::size_t i = 0; i < body.size(); ++i) {
    CHECK(d.events[1 + i].kind == K::body);
    CHECK(d.events[1 + i].payload_at == head.size() + i);
    CHECK(d.events[1 + i].payload == body.substr(i, 1));
  }
  CHECK(d.events[1 + body.size()].kind == K::end);
  CHECK(d.events[1 + body.size()].at == head.size() + body.size());
  CHECK(d.events.back().kind == K::end);
  CHECK(d.events.back().at == all.size());
  check_every_split(true, all);
}

TEST_CASE("http: chunked body with extensions and trailers is de-chunked in place") {
  const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n";
  const std::string chunks =
      "5;name=value\r\nhello\r\n"
      "6;a=\"quoted;str\";b\r\n world\r\n"
      "1A\r\nabcdefghijklmnopqrstuvwxyz\r\n"
      "0;last\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n";
  const std::string next = "HTTP/1.1 204 No Content\r\n\r\n";
  const std::string all = head + chunks + next;
  Driver d(false);
  d.feed(all);
  REQUIRE(d.events.size() >= 5);
  CHECK(d.events[0].kind == K::head);
  CHECK_FALSE(d.framer.body_until_close());
  std::string payload;
  std::size_t i = 1;
  for (; d.events[i].kind == K::body; ++i) {
    // Each payload is the very bytes at its offset in the stream.
    CHECK(all.substr(d.events[i].payload_at, d.events[i].payload.size()) == d.events[i].payload);
    payload += d.events[i].payload;
  }
  CHECK(payload == "hello worldabcdefghijklmnopqrstuvwxyz");
  CHECK(d.events[1].payload_at == all.find("hello"));
  CHECK(d.events[2].payload_at == all.find(" world"));
  CHECK(d.events[i].kind == K::end);
  CHECK(d.events[i].at == head.size() + chunks.size());
  // Trailers are not head fields.
  CHECK_FALSE(d.events[0].head.field("x-trailer").has_value());
  CHECK(d.events[0].head.field("content-type") == "text/plain");
  REQUIRE(d.events.size() == i + 3);
  CHECK(d.events[i + 1].head.status == 204);
  CHECK(d.events[i + 2].at == all.size());
  check_every_split(false, all);
}

TEST_CASE("http: a chunked request fed one byte at a time gives its payload in order") {
  const std::string all =
      "POST /upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n"
      "GET / HTTP/1.1\r\n\r\n";
  const auto msgs = byte_by_byte(true, all);
  REQUIRE(msgs.size() == 2);
  CHECK(msgs[0] == "POST /upload head@" + std::to_string(all.find("3\r\n")) +
                       " body=abc0123456789abcdef end@" + std::to_string(all.find("GET")));
  check_every_split(true, all);
}

TEST_CASE("http: a chunked body that is only its last chunk, in pieces") {
  // Beast asserts on fewer than 5 bytes after "0\r\n"; the framer waits for them.
  const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string first = head + "0\r\n\r\n";
  const std::string all = first + head + "0\r\nX-T: 1\r\n\r\n";
  const auto msgs = byte_by_byte(false, all);
  REQUIRE(msgs.size() == 2);
  CHECK(msgs[0] == "200 OK head@" + std::to_string(head.size()) + " body= end@" + std::to_string(first.size()));
  CHECK(msgs[1] == "200 OK head@" + std::to_string(first.size() + head.size()) +
                       " body= end@" + std::to_string(all.size()));
  check_every_split(false, all);
}

TEST_CASE("http: finish delivers an end that was not stepped yet") {
  Framer f(false);
  const auto s = f.step("HTTP/1.1 304 Not Modified\r\n\r\n");
  REQUIRE(s.event == K::head);
  CHECK(f.in_message());
  CHECK(f.finish());
  CHECK_FALSE(f.in_message());
  CHECK(f.step({}).event == K::none);
}

TEST_CASE("http: 100 Continue is a message of its own and the real response follows") {
  const std::string all =
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  Driver d(false);
  d.framer.answering("POST");
  d.feed(all);
  REQUIRE(d.kinds() == std::vector<K>{K::head, K::end, K::head, K::body, K::end});
  CHECK(d.events[0].head.status == 100);
  CHECK(d.events[0].head.reason == "Continue");
  CHECK(d.events[1].at == 25);
  CHECK(d.events[2].head.status == 200);
  CHECK(d.events[3].payload == "ok");
  CHECK_FALSE(d.framer.upgraded());
  check_every_split(false, all);
}

TEST_CASE("http: a response to HEAD has a Content-Length but no body") {
  const std::string a = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
  const std::string b = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
  Driver d(false);
  d.framer.answering("HEAD");
  d.feed(a);
  REQUIRE(d.kinds() == std::vector<K>{K::head, K::end});
  CHECK(d.events[1].at == a.size());
  // The method applies to one response; the next answers a GET unless told otherwise.
  d.feed(b);
  REQUIRE(d.kinds() == std::vector<K>{K::head, K::end, K::head, K::body, K::end});
  CHECK(d.events[3].payload == "hello");
  CHECK(d.events[4].at == a.size() + b.size());
}

TEST_CASE("http: 204 and 304 responses have no body even with length fields") {
  const std::string all =
      "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"
      "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: \"x\"\r\n\r\n"
      "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  Driver d(false);
  d.feed(all);
  REQUIRE(d.kinds() == std::vector<K>{K::head, K::end, K::head, K::end, K::head, K::end, K::head, K::end});
  CHECK(d.events[0].head.status == 204);
  CHECK(d.events[2].head.status == 304);
  CHECK(d.events[4].head.status == 304);
  CHECK(d.events[6].head.status == 200);
  CHECK(d.events[7].at == all.size());
  check_every_split(false, all);
}

TEST_CASE("http: a response without length runs until close and finish ends it") {
  const std::string all = "HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\ndata: 2\n\n";
  Driver d(false);
  d.feed(all.substr(0, 60));
  CHECK(d.framer.body_until_close());
  CHECK(d.framer.in_message());
  CHECK(d.framer.head().version == 10);
  d.feed(all.substr(60));
  REQUIRE(d.kinds() == std::vector<K>{K::head, K::body, K::body});
  CHECK(d.events[1].payload + d.events[2].payload == "data: 1\n\ndata: 2\n\n");
  CHECK(d.framer.finish());
  CHECK_FALSE(d.framer.in_message());
  // Nothing is pending after the message ended with the close.
  CHECK_FALSE(d.framer.finish());
}

TEST_CASE("http: finish reports false for a partial message or nothing pending") {
  Framer idle(false);
  CHECK_FALSE(idle.finish());

  Driver partial(false);
  partial.feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
  CHECK_FALSE(partial.framer.body_until_close());
  CHECK_FALSE(partial.framer.finish());

  Driver half_head(false);
  half_head.feed("HTTP/1.1 200 OK\r\nContent-");
  CHECK_FALSE(half_head.framer.finish());
}

TEST_CASE("http: a message that ends with its head still ends when the data runs out") {
  // A caller that stops at empty data still gets the end by stepping once more.
  Framer f(true);
  const std::string req = "GET / HTTP/1.1\r\n\r\n";
  auto s = f.step(req);
  CHECK(s.event == K::head);
  CHECK(s.consumed == req.size());
  CHECK(f.in_message());
  s = f.step({});
  CHECK(s.event == K::end);
  CHECK(s.consumed == 0);
  CHECK_FALSE(f.in_message());
  s = f.step({});
  CHECK(s.event == K::none);
  CHECK(s.consumed == 0);
}

TEST_CASE("http: 101 Switching Protocols upgrades and the rest passes through") {
  const std::string head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
  const std::string frames = "\x81\x05hello";
  Driver d(false);
  d.feed(head + frames);
  REQUIRE(d.kinds() == std::vector<K>{K::head, K::end});
  CHECK(d.events[1].at == head.size());
  CHECK(d.framer.upgraded());
  CHECK(d.pending.empty());
  CHECK(d.base == head.size() + frames.size());
  d.feed("more");
  CHECK(d.events.size() == 2);
  CHECK(d.pending.empty());
}

TEST_CASE("http: a 2xx answer to CONNECT starts a tunnel, a 407 does not") {
  Driver ok(false);
  ok.framer.answering("CONNECT");
  ok.feed("HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x01");
  REQUIRE(ok.kinds() == std::vector<K>{K::head, K::end});
  CHECK(ok.framer.upgraded());
  CHECK_FALSE(ok.framer.body_until_close());

  Driver denied(false);
  denied.framer.answering("CONNECT");
  denied.feed("HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 2\r\n\r\nnoHTTP/1.1 200 OK\r\n\r\n");
  REQUIRE(denied.kinds() == std::vector<K>{K::head, K::body, K::end, K::head});
  CHECK_FALSE(denied.framer.upgraded());
  CHECK(denied.framer.body_until_close());
}

TEST_CASE("http: a request asking for an upgrade is not itself upgraded") {
  const std::string all =
      "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
      "GET /next HTTP/1.1\r\n\r\n";
  Driver d(true);
  d.feed(all);
  REQUIRE(d.kinds() == std::vector<K>{K::head, K::end, K::head, K::end});
  CHECK_FALSE(d.framer.upgraded());
}

TEST_CASE("http: blank lines between messages are skipped") {
  const std::string all = "POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx\r\nGET / HTTP/1.1\r\n\r\n";
  Driver d(true);
  d.feed(all);
  REQUIRE(d.kinds() == std::vector<K>{K::head, K::body, K::end, K::head, K::end});
  CHECK(d.events.back().at == all.size());
}

TEST_CASE("http: input that is not HTTP is an error at once, and stays one") {
  SECTION("a TLS client hello to a request framer") {
    Driver d(true);
    d.feed(std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11));
    REQUIRE(d.kinds() == std::vector<K>{K::error});
    CHECK(d.events[0].at == 0);
    CHECK_FALSE(d.framer.error().empty());
    const auto s = d.framer.step("GET / HTTP/1.1\r\n\r\n");
    CHECK(s.event == K::error);
    CHECK(s.consumed == 0);
  }
  SECTION("a bad version") {
    Driver d(true);
    d.feed("GET / HTTP/2.0\r\n\r\n");
    CHECK(d.kinds() == std::vector<K>{K::error});
  }
  SECTION("a response framer given a request") {
    Driver d(false);
    d.feed("GET / HTTP/1.1\r\n");
    CHECK(d.kinds() == std::vector<K>{K::error});
  }
  SECTION("a bad chunk size after a good head") {
    Driver d(false);
    d.feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n");
    REQUIRE(d.kinds() == std::vector<K>{K::head, K::body, K::error});
    // The CRLF closing "hello" belongs to that chunk and is passed on; the error is at "zz".
    CHECK(d.events[2].at == d.stream.find("zz"));
  }
  SECTION("a bad content length") {
    Driver d(true);
    d.feed("POST / HTTP/1.1\r\nContent-Length: 12x\r\n\r\n");
    CHECK(d.kinds() == std::vector<K>{K::error});
  }
  SECTION("a head larger than 64 KiB") {
    Driver d(true);
    d.feed("GET / HTTP/1.1\r\n");
    const std::string field = "X-Big: " + std::string(1000, 'a') + "\r\n";
    for (int i = 0; i < 70 && !d.errored; ++i) d.feed(field);
    CHECK(d.kinds() == std::vector<K>{K::error});
  }
}

TEST_CASE("http: a head just under the limit is fine") {
  std::string head = "GET / HTTP/1.1\r\n";
  while (head.size() < 60 * 1024) head += "X-Pad: " + std::string(200, 'p') + "\r\n";
  head += "\r\n";
  Driver d(true);
  for (std::size_t i = 0; i < head.size(); i += 1000) d.feed(std::string_view(head).substr(i, 1000));
  REQUIRE(d.kinds() == std::vector<K>{K::head, K::end});
  CHECK(d.events[0].at == head.size());
}

TEST_CASE("http: a large Content-Length body is not limited") {
  const std::size_t size = 20 * 1024 * 1024;
  Driver d(false);
  d.feed("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(size) + "\r\n\r\n");
  const std::string block(64 * 1024, 'z');
  for (std::size_t sent = 0; sent < size; sent += block.size()) d.feed(block);
  CHECK(d.events.back().kind == K::end);
  std::size_t got = 0;
  for (const auto& e : d.events) got += e.payload.size();
  CHECK(got == size);
}

TEST_CASE("http: iequals compares ASCII case-insensitively") {
  CHECK(http::iequals("Content-Length", "content-length"));
  CHECK(http::iequals("", ""));
  CHECK_FALSE(http::iequals("Host", "Hos"));
  CHECK_FALSE(http::iequals("a-b", "a_b"));
}

TEST_CASE("http: a moved framer keeps going") {
  Framer a(true);
  auto s = a.step("GET /x HTTP/1.1\r\nContent-Length: 3\r\n\r\n");
  REQUIRE(s.event == K::head);
  Framer b(std::move(a));
  CHECK(b.head().target == "/x");
  s = b.step("abc");
  CHECK(s.event == K::body);
  CHECK(s.payload == "abc");
  Framer c(false);
  c = std::move(b);
  CHECK(c.step({}).event == K::end);
}

TEST_CASE("http: split_message decodes one whole message and maps its body to the bytes") {
  const std::string chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
  const auto m = http::split_message(chunked);
  REQUIRE(m);
  CHECK(m->head.status == 200);
  CHECK(m->chunked);
  CHECK(m->complete);
  CHECK(m->body == "abcde");
  REQUIRE(m->pieces.size() == 2);
  CHECK(chunked.substr(m->pieces[1].second, 2) == "de");
  CHECK(m->pieces[1].first == 3);
  const auto req = http::split_message("POST /x HTTP/1.1\r\nContent-Length: 4\r\n\r\nab");
  REQUIRE(req);
  CHECK(req->head.method == "POST");
  CHECK(req->body == "ab");
  CHECK_FALSE(req->complete);
  CHECK_FALSE(http::split_message("GET / HTTP/1.1\r\nHost: x\r\n"));
}
