// The one JSON writer: shapes, numbers, and strings that try to break the document.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>

#include <rapidjson/document.h>

#include "base/json_writer.hpp"

using namespace faultline;

namespace {

// The value of a one-string document, read back by rapidjson's parser (which validates UTF-8).
std::string read_back(const std::string& json) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseValidateEncodingFlag>(json.data(), json.size());
  REQUIRE_FALSE(doc.HasParseError());
  REQUIRE(doc.IsObject());
  const auto& v = doc["s"];
  REQUIRE(v.IsString());
  return std::string(v.GetString(), v.GetStringLength());
}

std::string object_with(std::string_view s) {
  JsonWriter w;
  w.begin_object().key("s").string(s).end_object();
  return w.text();
}

}  // namespace

TEST_CASE("json writer: objects and arrays nest with commas where JSON puts them") {
  JsonWriter w;
  w.begin_object();
  w.key("a").number(1);
  w.key("b").begin_array().boolean(true).boolean(false).null().string("x").end_array();
  w.key("c").begin_object().end_object();
  w.key("d").raw(R"({"pre":[1,2]})");
  w.end_object();
  CHECK(w.text() == R"({"a":1,"b":[true,false,null,"x"],"c":{},"d":{"pre":[1,2]}})");
}

TEST_CASE("format_number: numbers print in shortest round-trip form") {
  CHECK(format_number(0.2) == "0.2");
  CHECK(format_number(1.0) == "1");
  CHECK(format_number(static_cast<double>(0.7f)) != "0.7");  // why toxicity is stored as double
}

TEST_CASE("json writer: integers are exact at both ends of 64 bits") {
  JsonWriter w;
  w.begin_array();
  w.number(std::numeric_limits<std::int64_t>::min());
  w.number(std::numeric_limits<std::uint64_t>::max());
  w.number(-1);
  w.number(std::uint16_t{7});
  w.end_array();
  CHECK(w.text() == "[-9223372036854775808,18446744073709551615,-1,7]");
}

TEST_CASE("json writer: doubles are shortest round-trip and NaN or infinity become null") {
  JsonWriter w;
  w.begin_array();
  w.number(0.2).number(1.0).number(-0.5).number(1e300).number(0.1 + 0.2);
  w.number(std::nan("")).number(std::numeric_limits<double>::infinity());
  w.end_array();
  CHECK(w.text() == "[0.2,1,-0.5,1e+300,0.30000000000000004,null,null]");
  rapidjson::Document doc;
  doc.Parse(w.text().c_str());
  REQUIRE_FALSE(doc.HasParseError());
  CHECK(doc[4].GetDouble() == 0.1 + 0.2);
}

TEST_CASE("json writer: hostile strings round-trip through a validating parser") {
  const std::string quotes = "say \"hi\" \\ back\\";
  const std::string controls = std::string("\0\x01\b\f\n\r\t\x1f\x7f", 9);
  const std::string line_separators = "a\u2028b\u2029c";
  const std::string four_byte = "\xF0\x9F\x98\x80";  // U+1F600
  for (const std::string& s : {quotes, controls, line_separators, four_byte, std::string()}) {
    const std::string json = object_with(s);
    INFO(json);
    CHECK(read_back(json) == s);
    CHECK(json.find('\n') == std::string::npos);  // one line stays one line
  }
}

TEST_CASE("json writer: every ASCII byte at every position of a long string round-trips") {
  // The plain-text fast path looks at eight bytes at a time: an escape anywhere in a word
  // must still be seen.
  for (int c = 0; c < 0x80; ++c) {
    for (std::size_t at = 0; at < 17; ++at) {
      std::string s(17, 'x');
      s[at] = static_cast<char>(c);
      CHECK(read_back(object_with(s)) == s);
    }
  }
}

TEST_CASE("json writer: invalid UTF-8 bytes become U+0080..U+00FF of the same number") {
  // A stray continuation byte, a truncated sequence, an overlong '/', a surrogate, a
  // code point above U+10FFFF, and 0xFF, each between valid text.
  const std::string bad = "a\x80" "b\xE2\x82" "c\xC0\xAF" "d\xED\xA0\x80" "e\xF4\x90\x80\x80" "f\xFF" "\xC3\xA9";
  const std::string json = object_with(bad);
  INFO(json);
  CHECK_FALSE(valid_utf8(bad));
  CHECK(valid_utf8(json));
  const std::string expected = "a\u0080b\u00E2\u0082c\u00C0\u00AFd\u00ED\u00A0\u0080e\u00F4\u0090\u0080\u0080f\u00FF\u00E9";
  CHECK(read_back(json) == expected);
}

TEST_CASE("json writer: keys follow the same string rules") {
  JsonWriter w;
  w.begin_object().key("k\"\xFF").number(1).end_object();
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseValidateEncodingFlag>(w.text().c_str());
  REQUIRE_FALSE(doc.HasParseError());
  CHECK(doc.HasMember("k\"\u00FF"));
}

TEST_CASE("json writer: restart appends a new document to a caller's text") {
  std::string out = "prefix ";
  JsonWriter w(out);
  w.begin_object().key("n").number(1).end_object();
  w.restart(out);
  w.begin_array().end_array();
  CHECK(out == R"(prefix {"n":1}[])");
  CHECK(json_quote("a\"b") == R"("a\"b")");
  std::string quoted = "x=";
  append_json_quoted(quoted, "\t");
  CHECK(quoted == R"(x="\t")");
}

TEST_CASE("json writer: a caller's text receives a document when it completes or on text()") {
  std::string out;
  JsonWriter w(out);
  w.begin_object().key("a").string("plain");
  CHECK(out.empty());  // still in the writer's buffer
  CHECK(w.text() == R"({"a":"plain")");
  out += ",\"b\":2";
  w.end_object();
  CHECK(out == R"({"a":"plain","b":2})");
}

TEST_CASE("json writer: plain and escaped strings are placed alike in objects and arrays") {
  JsonWriter w;
  w.begin_object().key("p").string("x").key("e\n").string("y\"").key("arr");
  w.begin_array().string("a").string("\\").string("b").end_array().end_object();
  CHECK(w.text() == R"({"p":"x","e\n":"y\"","arr":["a","\\","b"]})");
}

TEST_CASE("json writer: take hands over the text and starts again empty") {
  JsonWriter w;
  w.begin_array().number(1).end_array();
  CHECK(w.take() == "[1]");
  CHECK(w.text().empty());
  w.begin_array().end_array();
  CHECK(w.text() == "[]");
}
