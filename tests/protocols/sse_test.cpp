#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "protocols/sse.hpp"

using namespace faultline;

namespace {

struct Result {
  std::vector<std::size_t> ends;  // stream offsets
  std::vector<sse::Event> events;
};

// Feeds `stream` cut at the given offsets and turns each feed's relative ends into
// stream offsets.
Result feed_cut(std::string_view stream, const std::vector<std::size_t>& cuts) {
  sse::Splitter s;
  Result r;
  std::size_t from = 0;
  auto feed = [&](std::size_t to) {
    std::vector<std::size_t> ends;
    const std::string piece(stream.substr(from, to - from));
    s.feed(piece, ends, r.events);
    for (auto e : ends) {
      REQUIRE(e <= piece.size());
      r.ends.push_back(from + e);
    }
    from = to;
  };
  for (auto c : cuts) feed(c);
  feed(stream.size());
  REQUIRE(r.ends.size() == r.events.size());
  return r;
}

Result whole(std::string_view stream) { return feed_cut(stream, {}); }

bool same(const sse::Event& a, const sse::Event& b) {
  return a.event == b.event && a.data == b.data && a.id == b.id;
}

// Every split in two, and one byte at a time, gives the same events ending at the same
// offsets; only a \r\n blank line cut between its \r and \n ends at the \r.
void check_every_split(std::string_view stream) {
  const Result expected = whole(stream);
  auto check = [&](const Result& got, const std::vector<std::size_t>& cuts) {
    REQUIRE(got.events.size() == expected.events.size());
    for (std::size_t i = 0; i < got.events.size(); ++i) {
      CHECK(same(got.events[i], expected.events[i]));
      const std::size_t want = expected.ends[i];
      const bool crlf_cut = want >= 2 && stream.substr(want - 2, 2) == "\r\n" &&
                            std::find(cuts.begin(), cuts.end(), want - 1) != cuts.end();
      CHECK(got.ends[i] == (crlf_cut ? want - 1 : want));
    }
  };
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    INFO("cut at " << cut);
    check(feed_cut(stream, {cut}), {cut});
  }
  std::vector<std::size_t> every;
  for (std::size_t i = 1; i < stream.size(); ++i) every.push_back(i);
  check(feed_cut(stream, every), every);
}

}  // namespace

TEST_CASE("sse: events end after their blank line, with LF line ends") {
  const std::string s = "event: greet\ndata: hello\nid: 1\n\ndata: second\n\n";
  const auto r = whole(s);
  REQUIRE(r.events.size() == 2);
  CHECK(r.ends[0] == s.find("data: second"));
  CHECK(r.ends[1] == s.size());
  CHECK(r.events[0].event == "greet");
  CHECK(r.events[0].data == "hello");
  CHECK(r.events[0].id == "1");
  CHECK(r.events[1].event.empty());
  CHECK(r.events[1].data == "second");
  CHECK(r.events[1].id.empty());
  check_every_split(s);
}

TEST_CASE("sse: CRLF and bare CR line ends, mixed") {
  const std::string crlf = "data: a\r\ndata: b\r\n\r\nevent: x\r\ndata: c\r\n\r\n";
  const auto r = whole(crlf);
  REQUIRE(r.events.size() == 2);
  CHECK(r.events[0].data == "a\nb");
  CHECK(r.ends[0] == crlf.find("event"));
  CHECK(r.events[1].event == "x");
  CHECK(r.ends[1] == crlf.size());
  check_every_split(crlf);

  const std::string cr = "data: a\rdata: b\r\rdata: c\r\r";
  const auto q = whole(cr);
  REQUIRE(q.events.size() == 2);
  CHECK(q.events[0].data == "a\nb");
  CHECK(q.ends[0] == cr.find("data: c"));
  CHECK(q.events[1].data == "c");
  check_every_split(cr);

  const std::string mixed = "data: 1\r\ndata: 2\rdata: 3\n\r\ndata: 4\n\r";
  const auto m = whole(mixed);
  REQUIRE(m.events.size() == 2);
  CHECK(m.events[0].data == "1\n2\n3");
  CHECK(m.events[1].data == "4");
  CHECK(m.ends[1] == mixed.size());
  check_every_split(mixed);
}

TEST_CASE("sse: a CRLF split across feeds is one line end") {
  sse::Splitter s;
  std::vector<std::size_t> ends;
  std::vector<sse::Event> events;
  s.feed("data: a\r", ends, events);
  CHECK(events.empty());
  // Were the \n a second line end, this blank line would end the event here.
  s.feed("\n", ends, events);
  CHECK(events.empty());
  s.feed("\r", ends, events);
  REQUIRE(events.size() == 1);
  CHECK(ends == std::vector<std::size_t>{1});
  ends.clear();
  events.clear();
  s.feed("\ndata: b\n\n", ends, events);
  REQUIRE(events.size() == 1);
  CHECK(events[0].data == "b");
  CHECK(ends == std::vector<std::size_t>{10});
}

TEST_CASE("sse: comments, comment-only blocks and extra blank lines") {
  const std::string s = ": keep-alive\n\n\n\ndata: x\n: in the middle\ndata: y\n\n:\r\n\r\n";
  const auto r = whole(s);
  REQUIRE(r.events.size() == 3);
  CHECK(r.events[0].data.empty());
  CHECK(r.events[0].event.empty());
  CHECK(r.ends[0] == 14);
  CHECK(r.events[1].data == "x\ny");
  CHECK(r.events[2].data.empty());
  CHECK(r.ends[2] == s.size());
  check_every_split(s);
}

TEST_CASE("sse: field parsing follows the spec") {
  const std::string s =
      "data:no space\n"
      "data:  two spaces\n"
      "data\n"
      "data:\n"
      "event:ping\n"
      "id\n"
      "retry: 100\n"
      "unknown: field\n"
      "data: a: colon\n"
      "\n";
  const auto r = whole(s);
  REQUIRE(r.events.size() == 1);
  CHECK(r.events[0].data == "no space\n two spaces\n\n\na: colon");
  CHECK(r.events[0].event == "ping");
  CHECK(r.events[0].id.empty());
  check_every_split(s);
}

TEST_CASE("sse: a block with only unknown fields or a lone data line with empty value") {
  const std::string s = "retry: 5\n\ndata\n\n";
  const auto r = whole(s);
  REQUIRE(r.events.size() == 2);
  CHECK(r.events[0].data.empty());
  CHECK(r.events[1].data.empty());
}

TEST_CASE("sse: an unfinished event is not reported") {
  sse::Splitter s;
  std::vector<std::size_t> ends;
  std::vector<sse::Event> events;
  s.feed("data: {\"a\":1}\n", ends, events);
  s.feed("data: more", ends, events);
  CHECK(events.empty());
  s.feed("\n\n", ends, events);
  REQUIRE(events.size() == 1);
  CHECK(events[0].data == "{\"a\":1}\nmore");
  CHECK(ends == std::vector<std::size_t>{2});
}

TEST_CASE("sse: a byte order mark at the start of the stream is ignored") {
  const std::string s = "\xEF\xBB\xBF" "data: x\n\n";
  const auto r = whole(s);
  REQUIRE(r.events.size() == 1);
  CHECK(r.events[0].data == "x");
  check_every_split(s);
}

TEST_CASE("sse: data is capped at 1 MiB but the event still ends in the right place") {
  const std::string big(1536 * 1024, 'q');
  const std::string s = "data: " + big + "\ndata: tail\n\ndata: next\n\n";
  const auto r = feed_cut(s, {100, 700000, 1400000});
  REQUIRE(r.events.size() == 2);
  CHECK(r.events[0].data.size() == 1024 * 1024);
  CHECK(r.ends[0] == s.find("data: next"));
  CHECK(r.events[1].data == "next");
}
