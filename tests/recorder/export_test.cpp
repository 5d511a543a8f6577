// Exporters: journals built with the line builders (an HTTP keep-alive connection with a
// chunked and a JSON exchange and an SSE stream, a RESP connection cut by a reset, a
// HEAD and a binary body, a fault, a redaction, a gap) exported as HAR, pcapng and text,
// and read back: the HAR's structure and values, the pcapng's blocks parsed again (TCP
// sequence continuity, IPv4 and TCP checksums, the payload bytes, the comments) and the
// text lines.
#include <catch2/catch.hpp>

#include <rapidjson/document.h>

#include <map>
#include <sstream>

#include "recorder/export.hpp"
#include "recorder/recording.hpp"
#include "tests/recorder/support.hpp"

using namespace faultline;
using namespace faultline::test;

namespace {

constexpr std::int64_t kMs = 1'000'000;
const std::string kWall = "2025-01-02T03:04:05.000000000Z";
constexpr std::int64_t kWallNs = 1735787045LL * 1'000'000'000;

std::string cmd(std::initializer_list<std::string> args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}

std::string chunk(const std::string& s) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%zx", s.size());
  return std::string(buf) + "\r\n" + s + "\r\n";
}

// Writes a journal's lines, keeping each direction's offsets.
struct Journal {
  std::string text;
  std::map<std::pair<std::uint64_t, int>, std::uint64_t> offs;
  std::map<std::pair<std::uint64_t, int>, std::string> streams;

  Journal() { rec::line::header(text, "rec-test", 0, kWall, 0, true); }
  std::uint64_t data(std::int64_t t, std::uint64_t conn, Stream dir, const std::string& bytes) {
    auto& off = offs[{conn, static_cast<int>(dir)}];
    const std::uint64_t at = off;
    rec::line::data(text, t, conn, dir, off, bytes.size(), bytes, {});
    off += bytes.size();
    streams[{conn, static_cast<int>(dir)}] += bytes;
    return at;
  }
  const std::string& stream(std::uint64_t conn, Stream dir) { return streams[{conn, static_cast<int>(dir)}]; }
};

const std::string kGet = "GET /v1/models?limit=2&q=a%20b HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer REDACTED-0123\r\n\r\n";
const std::string kJson = R"({"model":"m","messages":[{"role":"user","content":"hi"}]})";
const std::string kPost = "POST /v1/chat/completions HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nContent-Length: " +
                          std::to_string(kJson.size()) + "\r\n\r\n" + kJson;
const std::string kBinary = std::string("\x89PNG\r\n\x1a\n\0\xff\xfe", 11);

Journal sample() {
  Journal j;
  std::string& o = j.text;
  // conn 1: HTTP keep-alive; a chunked answer, then a JSON POST answered by SSE.
  rec::line::open(o, 1 * kMs, 1, "api", "http", "127.0.0.1:50000", "127.0.0.1:8080");
  j.data(1 * kMs, 1, Stream::upstream, kGet);
  rec::line::msg(o, 1 * kMs, 1, Stream::upstream, 0, kGet.size(),
                 R"("kind":"http_request","method":"GET","target":"/v1/models?limit=2&q=a%20b")");
  const std::size_t secret = kGet.find("REDACTED-0123");
  rec::line::redaction(o, 1 * kMs, 1, Stream::upstream, secret, 13, R"("rule":"header:authorization")");
  j.data(3 * kMs, 1, Stream::downstream,
         "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk("hello"));
  rec::line::msg(o, 3 * kMs, 1, Stream::downstream, 0, 10, R"("kind":"http_response","status":200,"reason":"OK")");
  j.data(4 * kMs, 1, Stream::downstream, chunk(" world") + "0\r\n\r\n");
  j.data(10 * kMs, 1, Stream::upstream, kPost);
  rec::line::fault(o, 11 * kMs, 1, "slow", "latency", "delayed 100 ms");
  j.data(111 * kMs, 1, Stream::downstream,
         "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n");
  j.data(112 * kMs, 1, Stream::downstream, chunk("event: delta\nid: 1\ndata: {\"a\":1}\n\n"));
  j.data(212 * kMs, 1, Stream::downstream, chunk(": keep-alive\n\n") + chunk("data: two\n\n"));
  j.data(312 * kMs, 1, Stream::downstream, chunk("id: 3\ndata: three\ndata: lines\n\n") + "0\r\n\r\n");
  rec::line::end(o, 400 * kMs, 1, Stream::upstream, EndKind::half_close);
  rec::line::close(o, 401 * kMs, 1);

  // conn 2: RESP, a reply bigger than one segment, then a reset.
  rec::line::open(o, 500 * kMs, 2, "redis", "resp", "127.0.0.1:50001", "localhost:6379");
  j.data(501 * kMs, 2, Stream::upstream, cmd({"SET", "k", "v"}));
  rec::line::msg(o, 501 * kMs, 2, Stream::upstream, 0, cmd({"SET", "k", "v"}).size(),
                 R"("kind":"resp_command","command":"SET","key":"k","argc":3)");
  j.data(502 * kMs, 2, Stream::downstream, "+OK\r\n");
  rec::line::msg(o, 502 * kMs, 2, Stream::downstream, 0, 5, R"("kind":"resp_reply","reply_type":"+","line":"OK")");
  j.data(503 * kMs, 2, Stream::upstream, cmd({"GET", "big"}));
  const std::string big(4000, 'x');
  j.data(504 * kMs, 2, Stream::downstream, "$4000\r\n" + big + "\r\n");
  rec::line::fault(o, 505 * kMs, 2, "cut", "reset_peer", "reset the connection");
  rec::line::end(o, 505 * kMs, 2, Stream::upstream, EndKind::reset);

  // conn 3: HEAD (a Content-Length but no body follows) and a binary body; hostname upstream.
  rec::line::open(o, 600 * kMs, 3, "files", "http", "[::1]:50002", "https://files.example:8443");
  j.data(601 * kMs, 3, Stream::upstream, "HEAD /logo.png HTTP/1.1\r\nHost: files\r\n\r\n");
  j.data(602 * kMs, 3, Stream::downstream, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nContent-Type: image/png\r\n\r\n");
  j.data(603 * kMs, 3, Stream::upstream, "GET /logo.png HTTP/1.1\r\nHost: files\r\n\r\n");
  j.data(604 * kMs, 3, Stream::downstream,
         "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nContent-Type: image/png\r\n\r\n" + kBinary);
  j.data(605 * kMs, 3, Stream::upstream, "GET /never HTTP/1.1\r\nHost: files\r\n\r\n");
  rec::line::end(o, 700 * kMs, 3, Stream::downstream, EndKind::close);
  rec::line::close(o, 700 * kMs, 3);

  rec::line::gap(o, 800 * kMs, 4, 1000, 790 * kMs, 800 * kMs);
  return j;
}

// A recording directory holding `text` as its only journal.
void write_recording(const TempDir& dir, const std::string& text) {
  spit(dir.sub("journal-000000.jsonl"), text);
  rec::IndexFile index;
  index.id = "rec-test";
  index.journals = {"journal-000000.jsonl"};
  index.state = "stopped";
  index.started_wall = kWall;
  std::string error;
  REQUIRE(rec::write_index(dir.path(), index, error));
}

struct Result {
  bool ok = false;
  std::string out, error;
  std::vector<std::string> warnings;
  rec::ExportSummary summary;
};

Result run(rec::Format format, const std::string& input, rec::ExportOptions options = {}) {
  Result r;
  options.summary = &r.summary;
  options.warn = [&](const std::string& w) { r.warnings.push_back(w); };
  std::ostringstream out;
  r.ok = rec::export_recording(format, input, out, options, r.error);
  r.out = out.str();
  return r;
}

const rapidjson::Value& at(const rapidjson::Value& v, const char* name) {
  INFO(name);
  REQUIRE(v.IsObject());
  REQUIRE(v.HasMember(name));
  return v[name];
}
std::string s(const rapidjson::Value& v, const char* name) { return at(v, name).GetString(); }

// ---- a pcapng reader, enough to check what the exporter writes ----

std::uint32_t le32(const std::string& b, std::size_t at) {
  return static_cast<std::uint32_t>(static_cast<unsigned char>(b[at])) |
         static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 1])) << 8 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 2])) << 16 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 3])) << 24;
}
std::uint16_t le16(const std::string& b, std::size_t at) {
  return static_cast<std::uint16_t>(static_cast<unsigned char>(b[at]) | static_cast<unsigned char>(b[at + 1]) << 8);
}
std::uint32_t be(const std::string& b, std::size_t at, int n) {
  std::uint32_t v = 0;
  for (int i = 0; i < n; ++i) v = v << 8 | static_cast<unsigned char>(b[at + static_cast<std::size_t>(i)]);
  return v;
}

// The one's-complement sum over `b` (with `sum` carried in), folded.
std::uint16_t csum(const std::string& b, std::uint32_t sum = 0) {
  for (std::size_t i = 0; i + 1 < b.size(); i += 2) sum += be(b, i, 2);
  if (b.size() % 2) sum += static_cast<std::uint32_t>(static_cast<unsigned char>(b.back())) << 8;
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<std::uint16_t>(sum);
}

struct Pkt {
  std::uint64_t ts = 0;
  std::string src, dst;  // "a.b.c.d:port"
  std::uint32_t seq = 0, ack = 0;
  std::uint8_t flags = 0;
  std::string payload;
  std::vector<std::string> comments;
  bool ip_ok = false, tcp_ok = false;
};

struct Capture {
  std::vector<std::uint32_t> types;
  std::uint16_t linktype = 0;
  std::string tsresol;
  std::vector<std::string> shb_comments;
  std::vector<Pkt> packets;
};

std::vector<std::pair<std::uint16_t, std::string>> options_at(const std::string& b, std::size_t at, std::size_t end) {
  std::vector<std::pair<std::uint16_t, std::string>> out;
  while (at + 4 <= end) {
    const std::uint16_t code = le16(b, at), len = le16(b, at + 2);
    if (code == 0) break;
    out.emplace_back(code, b.substr(at + 4, len));
    at += 4 + (len + 3u) / 4 * 4;
  }
  return out;
}

std::string addr(const std::string& ip, std::size_t at, std::uint32_t port) {
  return std::to_string(static_cast<unsigned char>(ip[at])) + "." + std::to_string(static_cast<unsigned char>(ip[at + 1])) +
         "." + std::to_string(static_cast<unsigned char>(ip[at + 2])) + "." +
         std::to_string(static_cast<unsigned char>(ip[at + 3])) + ":" + std::to_string(port);
}

Capture parse(const std::string& b) {
  Capture c;
  std::size_t at = 0;
  while (at < b.size()) {
    REQUIRE(at + 12 <= b.size());
    const std::uint32_t type = le32(b, at), len = le32(b, at + 4);
    REQUIRE(len % 4 == 0);
    REQUIRE(len >= 12);
    REQUIRE(at + len <= b.size());
    REQUIRE(le32(b, at + len - 4) == len);  // the trailing length repeats the leading one
    c.types.push_back(type);
    const std::size_t body = at + 8, end = at + len - 4;
    if (type == 0x0A0D0D0A) {
      CHECK(le32(b, body) == 0x1A2B3C4D);
      CHECK(le16(b, body + 4) == 1);
      CHECK(le16(b, body + 6) == 0);
      CHECK(le32(b, body + 8) == 0xFFFFFFFF);
      CHECK(le32(b, body + 12) == 0xFFFFFFFF);
      for (const auto& [code, v] : options_at(b, body + 16, end))
        if (code == 1) c.shb_comments.push_back(v);
    } else if (type == 1) {
      c.linktype = le16(b, body);
      for (const auto& [code, v] : options_at(b, body + 8, end))
        if (code == 9) c.tsresol = v;
    } else if (type == 6) {
      Pkt p;
      CHECK(le32(b, body) == 0);
      p.ts = static_cast<std::uint64_t>(le32(b, body + 4)) << 32 | le32(b, body + 8);
      const std::uint32_t caplen = le32(b, body + 12);
      CHECK(le32(b, body + 16) == caplen);
      const std::string ip = b.substr(body + 20, caplen);
      REQUIRE(ip.size() >= 40);
      CHECK(static_cast<unsigned char>(ip[0]) == 0x45);
      CHECK(be(ip, 2, 2) == ip.size());
      CHECK(static_cast<unsigned char>(ip[9]) == 6);
      p.ip_ok = csum(ip.substr(0, 20)) == 0xFFFF;
      std::string pseudo = ip.substr(12, 8) + std::string("\0\x06", 2);
      pseudo += static_cast<char>((ip.size() - 20) >> 8);
      pseudo += static_cast<char>((ip.size() - 20) & 0xFF);
      p.tcp_ok = csum(ip.substr(20), csum(pseudo)) == 0xFFFF;
      p.src = addr(ip, 12, be(ip, 20, 2));
      p.dst = addr(ip, 16, be(ip, 22, 2));
      p.seq = be(ip, 24, 4);
      p.ack = be(ip, 28, 4);
      CHECK((static_cast<unsigned char>(ip[32]) >> 4) == 5);
      p.flags = static_cast<std::uint8_t>(ip[33]);
      CHECK(be(ip, 34, 2) == 65535);
      p.payload = ip.substr(40);
      for (const auto& [code, v] : options_at(b, body + 20 + (caplen + 3) / 4 * 4, end))
        if (code == 1) p.comments.push_back(v);
      c.packets.push_back(std::move(p));
    }
    at += len;
  }
  return c;
}

constexpr std::uint8_t kFin = 1, kSyn = 2, kRst = 4, kAck = 16;

// Every packet of the flow `src` -> `dst` in order: sequence numbers must follow on from
// each other (SYN and FIN count one) and the payloads joined must be `expected`.
void check_flow(const Capture& c, const std::string& src, const std::string& dst, const std::string& expected) {
  INFO(src << " -> " << dst);
  std::string joined;
  std::optional<std::uint32_t> next;
  std::size_t n = 0;
  for (const Pkt& p : c.packets) {
    if (p.src != src || p.dst != dst) continue;
    ++n;
    if (next) CHECK(p.seq == *next);
    next = p.seq + static_cast<std::uint32_t>(p.payload.size()) + ((p.flags & (kSyn | kFin)) ? 1 : 0);
    CHECK(p.payload.size() <= 1460);
    joined += p.payload;
  }
  CHECK(n > 0);
  CHECK(joined == expected);
}

bool has_line(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("export: formats by name") {
  CHECK(rec::parse_format("har") == rec::Format::har);
  CHECK(rec::parse_format("pcapng") == rec::Format::pcapng);
  CHECK(rec::parse_format("text") == rec::Format::text);
  CHECK_FALSE(rec::parse_format("pcap"));
  CHECK(rec::format_name(rec::Format::pcapng) == "pcapng");
}

TEST_CASE("export: har rebuilds the HTTP exchanges with timings, SSE events, faults and redactions") {
  TempDir dir;
  Journal j = sample();
  write_recording(dir, j.text);
  rec::ExportOptions o;
  o.creator_version = "9.9.9";
  const Result r = run(rec::Format::har, dir.path(), o);
  REQUIRE(r.ok);
  INFO(r.out);
  rapidjson::Document doc;
  doc.Parse(r.out.data(), r.out.size());
  REQUIRE_FALSE(doc.HasParseError());
  const auto& log = at(doc, "log");
  CHECK(s(log, "version") == "1.2");
  CHECK(s(at(log, "creator"), "name") == "faultline");
  CHECK(s(at(log, "creator"), "version") == "9.9.9");
  const auto& entries = at(log, "entries");
  REQUIRE(entries.IsArray());
  REQUIRE(entries.Size() == 5);
  CHECK(r.summary.exported == 5);
  CHECK(r.summary.skipped == 1);  // the RESP connection
  REQUIRE(r.warnings.size() == 1);
  CHECK(r.warnings[0] == "har: skipped 1 connection without HTTP exchanges (resp: 1)");

  // Ordered by start time.
  std::string last;
  for (const auto& e : entries.GetArray()) {
    CHECK(s(e, "startedDateTime") >= last);
    last = s(e, "startedDateTime");
  }

  SECTION("a GET answered with a chunked body") {
    const auto& e = entries[0];
    CHECK(s(e, "startedDateTime") == "2025-01-02T03:04:05.001Z");
    CHECK(s(e, "connection") == "1");
    CHECK(s(e, "serverIPAddress") == "127.0.0.1");
    const auto& rq = at(e, "request");
    CHECK(s(rq, "method") == "GET");
    CHECK(s(rq, "url") == "http://127.0.0.1:8080/v1/models?limit=2&q=a%20b");
    CHECK(s(rq, "httpVersion") == "HTTP/1.1");
    CHECK(at(rq, "headersSize").GetInt() == static_cast<int>(kGet.size()));
    CHECK(at(rq, "bodySize").GetInt() == 0);
    CHECK_FALSE(rq.HasMember("postData"));
    CHECK(at(rq, "cookies").Size() == 0);
    REQUIRE(at(rq, "headers").Size() == 2);
    CHECK(s(at(rq, "headers")[1], "name") == "Authorization");
    CHECK(s(at(rq, "headers")[1], "value") == "Bearer REDACTED-0123");
    const auto& qs = at(rq, "queryString");
    REQUIRE(qs.Size() == 2);
    CHECK(s(qs[0], "name") == "limit");
    CHECK(s(qs[0], "value") == "2");
    CHECK(s(qs[1], "value") == "a b");
    const auto& rs = at(e, "response");
    CHECK(at(rs, "status").GetInt() == 200);
    CHECK(s(rs, "statusText") == "OK");
    CHECK(s(rs, "redirectURL").empty());
    const auto& content = at(rs, "content");
    CHECK(at(content, "size").GetInt() == 11);
    CHECK(s(content, "mimeType") == "text/plain");
    CHECK(s(content, "text") == "hello world");
    CHECK_FALSE(content.HasMember("encoding"));
    // The body as transferred: chunk framing included.
    CHECK(at(rs, "bodySize").GetInt() == static_cast<int>((chunk("hello") + chunk(" world") + "0\r\n\r\n").size()));
    const auto& t = at(e, "timings");
    CHECK(at(t, "blocked").GetInt() == -1);
    CHECK(at(t, "dns").GetInt() == -1);
    CHECK(at(t, "connect").GetInt() == -1);
    CHECK(at(t, "send").GetDouble() == 0);
    CHECK(at(t, "wait").GetDouble() == 2);     // request at 1 ms, first response byte at 3 ms
    CHECK(at(t, "receive").GetDouble() == 1);  // last byte at 4 ms
    CHECK(at(e, "time").GetDouble() == 3);
    CHECK(at(e, "cache").IsObject());
    REQUIRE(at(e, "_redactions").Size() == 1);
    CHECK(s(at(e, "_redactions")[0], "rule") == "header:authorization");
    CHECK(s(at(e, "_redactions")[0], "in") == "request");
    CHECK_FALSE(e.HasMember("_faults"));
    CHECK_FALSE(e.HasMember("_error"));
  }

  SECTION("a JSON POST answered by an SSE stream, with the fault under way") {
    const auto& e = entries[1];
    CHECK(s(e, "startedDateTime") == "2025-01-02T03:04:05.010Z");
    const auto& rq = at(e, "request");
    CHECK(s(rq, "method") == "POST");
    CHECK(s(rq, "url") == "http://127.0.0.1:8080/v1/chat/completions");
    const auto& post = at(rq, "postData");
    CHECK(s(post, "mimeType") == "application/json");
    CHECK(s(post, "text") == kJson);
    CHECK(at(rq, "bodySize").GetInt() == static_cast<int>(kJson.size()));
    const auto& rs = at(e, "response");
    CHECK(s(at(rs, "content"), "mimeType") == "text/event-stream");
    const auto& events = at(rs, "_sse_events");
    REQUIRE(events.Size() == 3);  // the keep-alive comment is not an event
    CHECK(at(events[0], "t_ms").GetDouble() == 1);  // response began at 111 ms
    CHECK(s(events[0], "event") == "delta");
    CHECK(s(events[0], "id") == "1");
    CHECK(s(events[0], "data") == "{\"a\":1}");
    CHECK(at(events[1], "t_ms").GetDouble() == 101);
    CHECK(s(events[1], "event") == "message");
    CHECK(s(events[1], "data") == "two");
    CHECK(at(events[2], "t_ms").GetDouble() == 201);
    CHECK(s(events[2], "id") == "3");
    CHECK(s(events[2], "data") == "three\nlines");
    const auto& faults = at(e, "_faults");
    REQUIRE(faults.Size() == 1);
    CHECK(s(faults[0], "fault") == "latency");
    CHECK(s(faults[0], "toxic") == "slow");
    CHECK(s(faults[0], "what") == "delayed 100 ms");
    CHECK(at(faults[0], "t_ms").GetDouble() == 1);
    CHECK(at(at(e, "timings"), "wait").GetDouble() == 101);
    CHECK(at(at(e, "timings"), "receive").GetDouble() == 201);
  }

  SECTION("HEAD, a binary body, a request that got no answer, a named https upstream") {
    const auto& head = entries[2];
    CHECK(s(at(head, "request"), "method") == "HEAD");
    CHECK(s(at(head, "request"), "url") == "https://files.example:8443/logo.png");
    CHECK_FALSE(head.HasMember("serverIPAddress"));
    CHECK(at(at(at(head, "response"), "content"), "size").GetInt() == 0);
    CHECK(at(at(head, "response"), "bodySize").GetInt() == 0);

    const auto& bin = entries[3];
    const auto& content = at(at(bin, "response"), "content");
    CHECK(s(content, "encoding") == "base64");
    std::string decoded;
    REQUIRE(rec::base64_decode(s(content, "text"), decoded));
    CHECK(decoded == kBinary);
    CHECK(at(content, "size").GetInt() == 11);

    const auto& lost = entries[4];
    CHECK(s(at(lost, "request"), "url") == "https://files.example:8443/never");
    CHECK(at(at(lost, "response"), "status").GetInt() == 0);
    CHECK(s(lost, "_error") == "no response: the connection was closed");
    CHECK(at(at(lost, "timings"), "wait").GetDouble() == 95);  // sent at 605 ms, closed at 700 ms
  }
}

TEST_CASE("export: pcapng blocks, handshakes, sequence numbers, checksums, payloads and comments") {
  TempDir dir;
  Journal j = sample();
  write_recording(dir, j.text);
  const Result r = run(rec::Format::pcapng, dir.path());
  REQUIRE(r.ok);
  CHECK(r.warnings.empty());
  const Capture c = parse(r.out);
  REQUIRE(c.types.size() >= 3);
  CHECK(c.types[0] == 0x0A0D0D0A);
  CHECK(c.types[1] == 1);
  for (std::size_t i = 2; i < c.types.size(); ++i) CHECK(c.types[i] == 6);
  CHECK(c.linktype == 101);
  CHECK(c.tsresol == std::string(1, '\x09'));
  REQUIRE(c.shb_comments.size() == 1);
  CHECK(has_line(c.shb_comments[0], "synthetic"));
  CHECK(r.summary.exported == c.packets.size());

  for (const Pkt& p : c.packets) {
    CHECK(p.ip_ok);
    CHECK(p.tcp_ok);
  }
  // Time order, nanoseconds from the wall-clock anchor.
  for (std::size_t i = 1; i < c.packets.size(); ++i) CHECK(c.packets[i - 1].ts <= c.packets[i].ts);
  CHECK(c.packets[0].ts == static_cast<std::uint64_t>(kWallNs + 1 * kMs));

  const std::string http_client = "127.0.0.1:50000", http_server = "127.0.0.1:80";
  const std::string redis_client = "127.0.0.1:50001", redis_server = "127.0.0.1:6379";
  check_flow(c, http_client, http_server, j.stream(1, Stream::upstream));
  check_flow(c, http_server, http_client, j.stream(1, Stream::downstream));
  check_flow(c, redis_client, redis_server, j.stream(2, Stream::upstream));
  check_flow(c, redis_server, redis_client, j.stream(2, Stream::downstream));
  // conn 3: an IPv6 client and a hostname upstream get stand-ins.
  check_flow(c, "10.0.0.4:50002", "10.0.1.1:80", j.stream(3, Stream::upstream));
  check_flow(c, "10.0.1.1:80", "10.0.0.4:50002", j.stream(3, Stream::downstream));

  // The handshake: SYN (ack 0), SYN/ACK, ACK; the SYN names the real endpoints.
  std::vector<const Pkt*> http;
  for (const Pkt& p : c.packets)
    if (p.src == http_client || p.dst == http_client) http.push_back(&p);
  REQUIRE(http.size() > 3);
  CHECK(http[0]->flags == kSyn);
  CHECK(http[0]->ack == 0);
  CHECK(http[1]->flags == (kSyn | kAck));
  CHECK(http[1]->ack == http[0]->seq + 1);
  CHECK(http[2]->flags == kAck);
  REQUIRE_FALSE(http[0]->comments.empty());
  CHECK(has_line(http[0]->comments[0], "upstream 127.0.0.1:8080"));
  CHECK(has_line(http[0]->comments[0], "shown as 127.0.0.1:80"));
  // Both sides FIN at the end and the last FIN is acknowledged.
  int fins = 0;
  for (const Pkt* p : http) fins += (p->flags & kFin) ? 1 : 0;
  CHECK(fins == 2);
  CHECK(http.back()->flags == kAck);
  // Every ACK acknowledges no more than the other side has sent.
  std::map<std::string, std::uint32_t> sent;
  for (const Pkt& p : c.packets) {
    const std::uint32_t end = p.seq + static_cast<std::uint32_t>(p.payload.size()) + ((p.flags & (kSyn | kFin)) ? 1 : 0);
    if ((p.flags & kAck) && sent.count(p.dst + ">" + p.src)) CHECK(p.ack <= sent[p.dst + ">" + p.src]);
    sent[p.src + ">" + p.dst] = end;
  }

  // The 4000-byte reply is cut into segments of at most 1460 bytes.
  std::size_t redis_segments = 0;
  bool rst = false;
  for (const Pkt& p : c.packets) {
    if (p.src == redis_server && !p.payload.empty()) ++redis_segments;
    if (p.src == redis_client && (p.flags & kRst)) rst = true;
  }
  CHECK(redis_segments == 4);  // "+OK" and three pieces of the bulk reply
  CHECK(rst);

  // Comments: the fault on the packet nearest in time, the redaction on the packet with
  // the redacted bytes, the gap somewhere near 800 ms.
  std::map<std::string, const Pkt*> by_comment;
  for (const Pkt& p : c.packets)
    for (const auto& comment : p.comments) by_comment[comment] = &p;
  REQUIRE(by_comment.count("fault latency slow: delayed 100 ms"));
  CHECK(by_comment["fault latency slow: delayed 100 ms"]->ts == static_cast<std::uint64_t>(kWallNs + 10 * kMs));
  REQUIRE(by_comment.count("redacted: header:authorization"));
  CHECK(has_line(by_comment["redacted: header:authorization"]->payload, "REDACTED-0123"));
  REQUIRE(by_comment.count("fault reset_peer cut: reset the connection"));
  bool gap = false, upstream_note = false;
  for (const auto& [comment, p] : by_comment) {
    gap = gap || has_line(comment, "gap:");
    upstream_note = upstream_note || has_line(comment, "upstream https://files.example:8443 shown as 10.0.1.1:80");
  }
  CHECK(gap);
  CHECK(upstream_note);
}

TEST_CASE("export: text prints a timeline, one connection on request, colours only when asked") {
  TempDir dir;
  Journal j = sample();
  write_recording(dir, j.text);
  const Result r = run(rec::Format::text, dir.path());
  REQUIRE(r.ok);
  INFO(r.out);
  CHECK(has_line(r.out, "recording rec-test started " + kWall));
  CHECK(has_line(r.out, "+0.001000s conn 1 ● open  api (http) 127.0.0.1:50000 → 127.0.0.1:8080"));
  // Sizes are right-aligned to the widest (the 4009-byte RESP reply).
  CHECK(has_line(r.out, "+0.001000s conn 1 ▶ up     " + std::to_string(kGet.size()) +
                            " B  GET /v1/models?limit=2&q=a%20b\n"));
  CHECK(has_line(r.out, "+0.003000s conn 1 ◀ down "));
  CHECK(has_line(r.out, " B  200 OK\n"));
  CHECK(has_line(r.out, "conn 1 ▶ up   redacted header:authorization (bytes "));
  CHECK(has_line(r.out, "+0.011000s conn 1 ⚡ fault latency slow: delayed 100 ms\n"));
  // Without a decoded message starting in it, a chunk is previewed as sent.
  CHECK(has_line(r.out, "+0.004000s conn 1 ◀ down   16 B  \"6\\r\\n world\\r\\n0\\r\\n\\r\\n\"\n"));
  CHECK(has_line(r.out, "SET k (3 args)"));
  CHECK(has_line(r.out, "+OK"));
  CHECK(has_line(r.out, "■ reset"));
  CHECK(has_line(r.out, "■ close"));
  CHECK(has_line(r.out, "⚠ gap: the recorder fell behind; 4 events (1000 B) not recorded"));
  CHECK(has_line(r.out, "\"HEAD /logo.png HTTP/1.1\\r\\nHost: files\\r\\n\\r\\n\""));
  CHECK_FALSE(has_line(r.out, "\x1b["));
  // Lines are in time order.
  CHECK(r.out.find("conn 2") > r.out.rfind("conn 1"));

  rec::ExportOptions only;
  only.connection = 2;
  const Result two = run(rec::Format::text, dir.path(), only);
  REQUIRE(two.ok);
  CHECK(has_line(two.out, "conn 2"));
  CHECK_FALSE(has_line(two.out, "conn 1"));
  CHECK_FALSE(has_line(two.out, "conn 3"));
  CHECK(has_line(two.out, "gap"));  // a gap belongs to no connection and may hide its bytes

  rec::ExportOptions colour;
  colour.color = true;
  CHECK(has_line(run(rec::Format::text, dir.path(), colour).out, "\x1b["));

  rec::ExportOptions missing;
  missing.connection = 99;
  const Result none = run(rec::Format::text, dir.path(), missing);
  CHECK(none.ok);
  REQUIRE(none.warnings.size() == 1);
  CHECK(none.warnings[0] == "connection 99 is not in this recording");
}

TEST_CASE("export: one journal file, a truncated last line, unknown versions and unreadable input") {
  TempDir dir;
  Journal j = sample();
  const std::string path = dir.sub("journal-000000.jsonl");
  std::size_t lines = 0;
  for (char ch : j.text) lines += ch == '\n';
  spit(path, j.text + R"({"type":"data","t":900000000,"conn":1,"di)");
  for (const auto format : {rec::Format::har, rec::Format::pcapng, rec::Format::text}) {
    const Result r = run(format, path);
    INFO(rec::format_name(format));
    CHECK(r.ok);
    CHECK(r.summary.truncated == 1);
    REQUIRE_FALSE(r.warnings.empty());
    CHECK(r.warnings[0] == "journal-000000.jsonl: line " + std::to_string(lines + 1) +
                               " is incomplete (a crash?); exported everything before it");
  }

  std::string newer = j.text;
  newer.replace(newer.find("\"version\":1"), 11, "\"version\":7");
  spit(path, newer);
  Result r = run(rec::Format::har, path);
  CHECK_FALSE(r.ok);
  CHECK(r.summary.failure == rec::ExportFailure::version);
  CHECK(r.error == path + ": journal version 7 is newer than this faultline understands (1)");
  CHECK(r.out.empty());

  r = run(rec::Format::text, dir.sub("nothing-here"));
  CHECK_FALSE(r.ok);
  CHECK(r.summary.failure == rec::ExportFailure::unreadable);
  CHECK(has_line(r.error, "nothing-here"));

  spit(path, "hello\n");
  r = run(rec::Format::pcapng, path);
  CHECK_FALSE(r.ok);
  CHECK(r.summary.failure == rec::ExportFailure::unreadable);
}

TEST_CASE("export: a gap in a direction stops HTTP framing there and keeps pcapng sequence numbers whole") {
  TempDir dir;
  std::string o;
  rec::line::header(o, "r", 0, kWall, 0, false);
  rec::line::open(o, 0, 1, "api", "http", "127.0.0.1:40000", "127.0.0.1:80");
  const std::string a = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
  const std::string b = "GET /b HTTP/1.1\r\nHost: h\r\n\r\n";
  rec::line::data(o, 1 * kMs, 1, Stream::upstream, 0, a.size(), a, {});
  // 100 bytes lost to a gap, then a later request.
  rec::line::data(o, 3 * kMs, 1, Stream::upstream, a.size() + 100, b.size(), b, {});
  rec::line::close(o, 4 * kMs, 1);
  write_recording(dir, o);

  const Result har = run(rec::Format::har, dir.path());
  REQUIRE(har.ok);
  rapidjson::Document doc;
  doc.Parse(har.out.data(), har.out.size());
  REQUIRE(at(at(doc, "log"), "entries").Size() == 1);
  bool warned = false;
  for (const auto& w : har.warnings) warned = warned || has_line(w, "were not recorded");
  CHECK(warned);

  const Result pcap = run(rec::Format::pcapng, dir.path());
  REQUIRE(pcap.ok);
  const Capture c = parse(pcap.out);
  check_flow(c, "127.0.0.1:40000", "127.0.0.1:80", a + b);
  bool noted = false;
  for (const Pkt& p : c.packets)
    for (const auto& comment : p.comments) noted = noted || has_line(comment, "100 bytes before this were not recorded");
  CHECK(noted);
}

TEST_CASE("export: a recording written by rec::Recording (redacted, with a blob) exports without its secrets") {
  TempDir dir;
  rec::RecordingOptions ro;
  ro.dir = dir.sub("r");
  ro.flush_every = std::chrono::milliseconds(2);
  ro.max_lag = std::chrono::seconds(10);  // every event is expected, however busy the machine
  std::string error;
  auto recording = rec::Recording::start("live", ro, error);
  INFO(error);
  REQUIRE(recording);
  const TimePoint t0 = Clock::now();
  const auto when = [&](int ms) { return t0 + std::chrono::milliseconds(ms); };
  const std::string bearer = "sk-live-abcdefghijklmnop0123";
  const std::string api_key = "k-supersecretvalue42";
  const std::string password = "hunter2-very-secret";

  const auto http = recording->open_connection({"api", Protocol::http, "127.0.0.1:40100", "127.0.0.1:8080"}, when(1));
  const std::string body = R"({"model":"m","api_key":")" + api_key + R"("})";
  const std::string post = "POST /v1/chat/completions HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer " + bearer +
                           "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                           "\r\n\r\n" + body;
  recording->data(http, Stream::upstream, post.data(), post.size(), when(2));
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
  recording->data(http, Stream::downstream, head.data(), head.size(), when(50));
  for (int i = 0; i < 3; ++i) {
    const std::string ev = chunk("data: {\"n\":" + std::to_string(i) + "}\n\n");
    recording->data(http, Stream::downstream, ev.data(), ev.size(), when(100 + 100 * i));
  }
  recording->data(http, Stream::downstream, "0\r\n\r\n", 5, when(400));
  recording->fault(http, "slow", "latency", "delayed 50 ms", when(3));
  // A body bigger than the blob threshold: stored as a side file, read back by the reader.
  const std::string get = "GET /big HTTP/1.1\r\nHost: api\r\n\r\n";
  recording->data(http, Stream::upstream, get.data(), get.size(), when(500));
  const std::string big_body(100000, 'b');
  const std::string big = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n" + big_body;
  recording->data(http, Stream::downstream, big.data(), big.size(), when(510));
  recording->end(http, Stream::upstream, EndKind::half_close, when(600));
  recording->close_connection(http, when(601));

  const auto redis = recording->open_connection({"cache", Protocol::resp, "127.0.0.1:40101", "127.0.0.1:6379"}, when(700));
  const std::string auth = cmd({"AUTH", password}) + cmd({"SET", "k", "v"});
  recording->data(redis, Stream::upstream, auth.data(), auth.size(), when(701));
  recording->data(redis, Stream::downstream, "+OK\r\n+OK\r\n", 10, when(702));
  recording->end(redis, Stream::downstream, EndKind::reset, when(703));
  recording->stop();

  const auto contents = rec::read_journal(ro.dir);
  REQUIRE(contents.error.empty());
  std::map<std::pair<std::uint64_t, int>, std::string> streams;
  bool blob = false;
  for (const auto& e : contents.events) {
    if (e.type != rec::EventType::data) continue;
    streams[{e.conn, static_cast<int>(e.dir)}] += e.bytes;
    blob = blob || !e.blob.empty();
  }
  CHECK(blob);

  std::string all;
  const Result har = run(rec::Format::har, ro.dir);
  REQUIRE(har.ok);
  all += har.out;
  rapidjson::Document doc;
  doc.Parse(har.out.data(), har.out.size());
  REQUIRE_FALSE(doc.HasParseError());
  const auto& entries = at(at(doc, "log"), "entries");
  REQUIRE(entries.Size() == 2);
  const auto& events = at(at(entries[0], "response"), "_sse_events");
  REQUIRE(events.Size() == 3);
  CHECK(at(events[0], "t_ms").GetDouble() == 50);  // the response began at 50 ms, the event came at 100
  CHECK(at(events[2], "t_ms").GetDouble() == 250);
  CHECK(s(at(entries[0], "_faults")[0], "what") == "delayed 50 ms");
  CHECK(at(entries[0], "_redactions").Size() >= 2);  // the bearer token and the api_key
  CHECK(s(at(at(entries[1], "response"), "content"), "text") == big_body);

  const Result pcap = run(rec::Format::pcapng, ro.dir);
  REQUIRE(pcap.ok);
  all += pcap.out;
  const Capture c = parse(pcap.out);
  for (const Pkt& p : c.packets) CHECK((p.ip_ok && p.tcp_ok));
  check_flow(c, "127.0.0.1:40100", "127.0.0.1:80", streams[{http, 0}]);
  check_flow(c, "127.0.0.1:80", "127.0.0.1:40100", streams[{http, 1}]);
  check_flow(c, "127.0.0.1:40101", "127.0.0.1:6379", streams[{redis, 0}]);
  std::size_t redacted = 0;
  for (const Pkt& p : c.packets)
    for (const auto& comment : p.comments) redacted += comment.rfind("redacted: ", 0) == 0 ? 1 : 0;
  CHECK(redacted >= 3);

  const Result text = run(rec::Format::text, ro.dir);
  REQUIRE(text.ok);
  all += text.out;
  INFO(text.out);
  CHECK(has_line(text.out, "B  POST /v1/chat/completions"));
  CHECK(has_line(text.out, "B  200 OK"));
  CHECK(has_line(text.out, "B  AUTH REDACTED-"));  // the recorder names the token as the key
  CHECK(has_line(text.out, "SET k (3 args)"));
  CHECK(has_line(text.out, "◀ down     10 B  +OK, +OK\n"));
  CHECK(has_line(text.out, "redacted resp:auth"));

  for (const std::string& secret : {bearer, api_key, password}) {
    INFO(secret);
    CHECK_FALSE(has_line(all, secret));
  }
}

TEST_CASE("export: har pairs responses by time, keeps requests a fault answered, files faults by exchange") {
  TempDir dir;
  std::string o;
  rec::line::header(o, "r", 0, kWall, 0, true);
  rec::line::open(o, 0, 1, "api", "http", "127.0.0.1:40000", "127.0.0.1:8080");
  const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  const std::string no = "HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n";
  const std::string a = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n", c = "GET /c HTTP/1.1\r\nHost: h\r\n\r\n";
  std::uint64_t up = 0, down = 0;
  rec::line::data(o, 1 * kMs, 1, Stream::upstream, up, a.size(), a, {});
  up += a.size();
  rec::line::data(o, 2 * kMs, 1, Stream::downstream, down, ok.size(), ok, {});
  down += ok.size();
  // GET /b never went upstream: faultline answered it.
  rec::line::fault(o, 3 * kMs, 1, "nope", "http_abort", "answered 429 to GET /b?x=1");
  rec::line::data(o, 3 * kMs, 1, Stream::downstream, down, no.size(), no, {});
  down += no.size();
  // GET /c was held 30 ms by a request-phase fault journaled when it arrived.
  rec::line::fault(o, 4 * kMs, 1, "slow", "http_delay", "delayed GET /c");
  rec::line::data(o, 34 * kMs, 1, Stream::upstream, up, c.size(), c, {});
  rec::line::data(o, 35 * kMs, 1, Stream::downstream, down, ok.size(), ok, {});
  rec::line::close(o, 36 * kMs, 1);
  write_recording(dir, o);

  const Result r = run(rec::Format::har, dir.path());
  REQUIRE(r.ok);
  INFO(r.out);
  rapidjson::Document doc;
  doc.Parse(r.out.data(), r.out.size());
  REQUIRE_FALSE(doc.HasParseError());
  const auto& entries = at(at(doc, "log"), "entries");
  REQUIRE(entries.Size() == 3);
  CHECK(s(at(entries[0], "request"), "url") == "http://127.0.0.1:8080/a");
  CHECK(at(at(entries[0], "response"), "status").GetInt() == 200);
  CHECK_FALSE(entries[0].HasMember("_faults"));

  const auto& b = entries[1];
  CHECK(s(at(b, "request"), "method") == "GET");
  CHECK(s(at(b, "request"), "url") == "http://127.0.0.1:8080/b?x=1");
  CHECK(at(at(b, "request"), "queryString").Size() == 1);
  CHECK(at(at(b, "response"), "status").GetInt() == 429);
  CHECK(has_line(s(b, "_error"), "faultline answered this request itself"));
  REQUIRE(at(b, "_faults").Size() == 1);
  CHECK(s(at(b, "_faults")[0], "fault") == "http_abort");

  const auto& cx = entries[2];
  CHECK(s(at(cx, "request"), "url") == "http://127.0.0.1:8080/c");
  CHECK(at(at(cx, "response"), "status").GetInt() == 200);
  REQUIRE(at(cx, "_faults").Size() == 1);
  CHECK(s(at(cx, "_faults")[0], "what") == "delayed GET /c");
  CHECK(at(at(cx, "_faults")[0], "t_ms").GetDouble() == -30);  // it arrived 30 ms before it went upstream
}
