// The journal format: encoders, line builders, index.json and the reader's handling of
// versions, truncated and broken lines.
#include <catch2/catch.hpp>

#include <rapidjson/document.h>

#include "tests/recorder/support.hpp"

using namespace faultline;
using namespace faultline::test;

namespace {

std::string header(int version = 1) {
  std::string out;
  rec::line::header(out, "rec-1", 0, "2025-01-02T03:04:05.000000001Z", 42, true);
  if (version != 1) {
    const std::string from = "\"version\":1";
    out.replace(out.find(from), from.size(), "\"version\":" + std::to_string(version));
  }
  return out;
}

std::string some_lines() {
  std::string out;
  rec::line::open(out, 10, 1, "redis", "resp", "127.0.0.1:5555", "redis:6379");
  rec::line::data(out, 20, 1, Stream::upstream, 0, 5, "hello", {});
  rec::line::data(out, 30, 1, Stream::downstream, 0, 3, std::string("\0\xff\n", 3), {});
  rec::line::msg(out, 31, 1, Stream::downstream, 0, 3, "\"kind\":\"resp_reply\",\"reply_type\":\"+\"");
  rec::line::redaction(out, 32, 1, Stream::upstream, 0, 5, "\"rule\":\"resp:auth\"");
  rec::line::fault(out, 40, 1, "latency_downstream", "latency", "delayed 100 ms");
  rec::line::end(out, 50, 1, Stream::upstream, EndKind::half_close);
  rec::line::gap(out, 55, 3, 300, 51, 54);
  rec::line::close(out, 60, 1);
  return out;
}

bool valid_json(const std::string& line) {
  rapidjson::Document doc;
  doc.Parse(line.data(), line.size());
  return !doc.HasParseError() && doc.IsObject();
}

}  // namespace

TEST_CASE("journal: base64 round-trips every length and rejects bad input") {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (std::size_t n = 0; n <= all.size(); ++n) {
    std::string back;
    REQUIRE(rec::base64_decode(rec::base64_encode(all.substr(0, n)), back));
    CHECK(back == all.substr(0, n));
  }
  CHECK(rec::base64_encode("hello") == "aGVsbG8=");
  std::string out;
  CHECK_FALSE(rec::base64_decode("aGVsbG8", out));
  CHECK_FALSE(rec::base64_decode("aGV=bG8=", out));
  CHECK_FALSE(rec::base64_decode("aGVs bG8", out));
}

TEST_CASE("journal: strings with control bytes and invalid UTF-8 stay valid JSON") {
  static const char kNasty[] = "q\"b\\s\n\t\x01 caf\xc3\xa9 bad\xff\xc3 end";
  const std::string nasty(kNasty, sizeof kNasty - 1);
  const std::string line = "{\"s\":" + rec::json_string(nasty) + "}";
  CHECK(valid_json(line));
  CHECK(line.find("caf\xc3\xa9") != std::string::npos);  // valid UTF-8 is kept as is
  // An invalid byte reads back as the code point of the same number (0xFF: U+00FF).
  rapidjson::Document doc;
  doc.Parse(line.data(), line.size());
  REQUIRE(doc.HasMember("s"));
  CHECK(std::string(doc["s"].GetString(), doc["s"].GetStringLength()) ==
        "q\"b\\s\n\t\x01 caf\xc3\xa9 bad\u00ff\u00c3 end");
  CHECK(rec::json_string("plain") == "\"plain\"");
}

TEST_CASE("journal: every line builder writes one complete JSON line") {
  const std::string text = header() + some_lines();
  std::size_t lines = 0;
  std::size_t p = 0;
  while (p < text.size()) {
    const std::size_t nl = text.find('\n', p);
    REQUIRE(nl != std::string::npos);
    INFO(text.substr(p, nl - p));
    CHECK(valid_json(text.substr(p, nl - p)));
    p = nl + 1;
    ++lines;
  }
  CHECK(lines == 10);
  CHECK(rec::rfc3339_ns(std::chrono::system_clock::time_point(std::chrono::nanoseconds(1'700'000'000'123456789))) ==
        "2023-11-14T22:13:20.123456789Z");
}

TEST_CASE("journal: the reader returns every event with its fields") {
  TempDir dir;
  const std::string path = dir.sub("journal-000000.jsonl");
  spit(path, header() + some_lines());
  const auto got = rec::read_journal(path);
  CHECK(got.error.empty());
  CHECK(got.truncations.empty());
  REQUIRE(got.events.size() == 10);
  CHECK(got.events[0].type == rec::EventType::header);
  CHECK(got.events[0].recording == "rec-1");
  CHECK(got.events[0].started_mono_ns == 42);
  CHECK(got.events[0].redacted);
  CHECK(got.events[1].type == rec::EventType::open);
  CHECK(got.events[1].proxy == "redis");
  CHECK(got.events[1].protocol == "resp");
  CHECK(got.events[2].bytes == "hello");
  CHECK(got.events[3].bytes == std::string("\0\xff\n", 3));
  CHECK(got.events[3].dir == Stream::downstream);
  CHECK(got.events[4].kind == "resp_reply");
  CHECK(got.events[5].rule == "resp:auth");
  CHECK(got.events[6].fault == "latency");
  CHECK(got.events[6].what == "delayed 100 ms");
  CHECK(got.events[7].how == EndKind::half_close);
  CHECK(got.events[8].gap_events == 3);
  CHECK(got.events[8].gap_bytes == 300);
  CHECK(got.events[9].type == rec::EventType::close);
  CHECK(got.events[9].t == 60);
  CHECK(got.events[9].line == 10);
}

TEST_CASE("journal: a partial last line is reported with its line and offset, the rest is read") {
  TempDir dir;
  const std::string path = dir.sub("j.jsonl");
  const std::string whole = header() + some_lines();
  spit(path, whole + "{\"type\":\"data\",\"t\":70,\"conn\":1,\"di");
  const auto got = rec::read_journal(path);
  CHECK(got.error.empty());
  CHECK(got.events.size() == 10);
  REQUIRE(got.truncations.size() == 1);
  CHECK(got.truncations[0].line == 11);
  CHECK(got.truncations[0].byte_offset == whole.size());
  CHECK(got.truncations[0].file == path);
}

TEST_CASE("journal: a broken last line with its newline is a truncation, one before others is an error") {
  TempDir dir;
  const std::string path = dir.sub("j.jsonl");
  spit(path, header() + some_lines() + "{not json\n");
  auto got = rec::read_journal(path);
  CHECK(got.error.empty());
  CHECK(got.events.size() == 10);
  REQUIRE(got.truncations.size() == 1);
  CHECK(got.truncations[0].line == 11);

  spit(path, header() + "{not json\n" + some_lines());
  got = rec::read_journal(path);
  CHECK(got.events.size() == 1);
  CHECK(got.error.find(":2 (byte ") != std::string::npos);
}

TEST_CASE("journal: an unknown version is refused with a clear message") {
  TempDir dir;
  const std::string path = dir.sub("j.jsonl");
  spit(path, header(2) + some_lines());
  const auto got = rec::read_journal(path);
  CHECK(got.events.empty());
  CHECK(got.error == path + ": journal version 2 is newer than this faultline understands (1)");

  spit(path, some_lines());
  CHECK(rec::read_journal(path).error.find("not a faultline journal") != std::string::npos);
}

TEST_CASE("journal: unknown line types and fields are passed on, not refused") {
  TempDir dir;
  const std::string path = dir.sub("j.jsonl");
  spit(path, header() + "{\"type\":\"hologram\",\"t\":5,\"shiny\":true}\n" + some_lines());
  const auto got = rec::read_journal(path);
  CHECK(got.error.empty());
  REQUIRE(got.events.size() == 11);
  CHECK(got.events[1].type == rec::EventType::unknown);
  CHECK(got.events[1].type_name == "hologram");
  CHECK(jsonrpc::value_at(got.events[1].raw, "shiny") == "true");
}

TEST_CASE("journal: index.json is written atomically and read back, newer versions are refused") {
  TempDir dir;
  rec::IndexFile index;
  index.id = "r1";
  index.journals = {"journal-000000.jsonl", "journal-000001.jsonl"};
  index.state = "stopped";
  index.started_wall = "2025-01-01T00:00:00.000000000Z";
  index.stopped_wall = "2025-01-01T00:00:01.000000000Z";
  std::string error;
  REQUIRE(rec::write_index(dir.path(), index, error));
  CHECK_FALSE(std::filesystem::exists(dir.sub("index.json.tmp")));
  rec::IndexFile back;
  REQUIRE(rec::read_index(dir.path(), back, error));
  CHECK(back.id == "r1");
  CHECK(back.journals == index.journals);
  CHECK(back.state == "stopped");
  CHECK(back.stopped_wall == index.stopped_wall);

  spit(dir.sub("index.json"), R"({"version":3,"id":"x","journals":[]})");
  CHECK_FALSE(rec::read_index(dir.path(), back, error));
  CHECK(error.find("recording index version 3 is newer than this faultline understands (1)") != std::string::npos);

  spit(dir.sub("index.json"), R"({"version":1,"id":"x","journals":["../etc/passwd"]})");
  CHECK_FALSE(rec::read_index(dir.path(), back, error));
}

TEST_CASE("journal: a recording directory is read through its index, journals in order") {
  TempDir dir;
  std::string first = header();
  rec::line::open(first, 1, 1, "p", "tcp", "c", "u");
  std::string second;
  rec::line::header(second, "rec-1", 1, "w", 0, true);
  rec::line::close(second, 2, 1);
  spit(dir.sub("journal-000000.jsonl"), first);
  spit(dir.sub("journal-000001.jsonl"), second);
  rec::IndexFile index;
  index.id = "rec-1";
  index.journals = {"journal-000000.jsonl", "journal-000001.jsonl"};
  index.state = "stopped";
  std::string error;
  REQUIRE(rec::write_index(dir.path(), index, error));
  const auto got = rec::read_journal(dir.path());
  CHECK(got.error.empty());
  REQUIRE(got.events.size() == 4);
  CHECK(got.events[1].type == rec::EventType::open);
  CHECK(got.events[2].file_no == 1);
  CHECK(got.events[3].type == rec::EventType::close);
}

TEST_CASE("journal: a small file (a port file, a drill report) is replaced whole and never written through a symlink") {
  TempDir dir;
  const std::string victim = dir.sub("victim");
  spit(victim, "keep me");
  const std::string report = dir.sub("report.json");
  // Planted under the temporary name and under the final one: neither target is written.
  std::filesystem::create_symlink(victim, report + ".tmp");
  std::string error;
  REQUIRE(rec::write_file_replacing(report, "{\"result\":\"pass\"}\n", error));
  CHECK(slurp(victim) == "keep me");
  CHECK(slurp(report) == "{\"result\":\"pass\"}\n");
  CHECK_FALSE(std::filesystem::exists(report + ".tmp"));
  std::filesystem::remove(report);
  std::filesystem::create_symlink(victim, report);
  REQUIRE(rec::write_file_replacing(report, "second\n", error));
  CHECK(slurp(victim) == "keep me");
  CHECK_FALSE(std::filesystem::is_symlink(report));
  CHECK(slurp(report) == "second\n");
  CHECK_FALSE(rec::write_file_replacing(dir.sub("no/such/dir/file"), "x", error));
  CHECK(error.find("no/such/dir/file.tmp") != std::string::npos);
}
