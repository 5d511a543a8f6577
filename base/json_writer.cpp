#include "base/json_writer.hpp"

#include <charconv>
#include <cmath>
#include <cstring>
#include <utility>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace faultline {

namespace {

// Length of the valid UTF-8 sequence at s[i] (which is >= 0x80), or 0 when it is not one:
// overlongs, surrogates and code points above U+10FFFF are not valid.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  const std::size_t left = s.size() - i;
  const auto cont = [&](std::size_t k) { return k < left && (b(k) & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;   // overlong
    if (c == 0xED && b(1) >= 0xA0) return 0;  // surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;  // overlong
    if (c == 0xF4 && b(1) >= 0x90) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
constexpr std::uint64_t kHighs = 0x8080808080808080ULL;
constexpr std::uint64_t has_zero_byte(std::uint64_t v) { return (v - kOnes) & ~v & kHighs; }

// Whether any of the eight bytes needs a JSON escape or is not ASCII: below 0x20, '"',
// '\\', or 0x80 and above.
constexpr bool word_needs_attention(std::uint64_t v) {
  const std::uint64_t below_space = (v - kOnes * 0x20) & ~v & kHighs;
  return (v & kHighs) | below_space | has_zero_byte(v ^ (kOnes * '"')) | has_zero_byte(v ^ (kOnes * '\\'));
}

struct StringScan {
  std::size_t first_invalid;  // offset of the first byte that is not valid UTF-8, or size
  bool needs_escape;          // a control character, '"' or '\\' somewhere
};

StringScan scan(std::string_view s) {
  StringScan result{s.size(), false};
  std::size_t i = 0;
  while (i < s.size()) {
    // Most text is plain ASCII: skip it eight bytes at a time.
    std::uint64_t word;
    if (i + sizeof word <= s.size()) {
      std::memcpy(&word, s.data() + i, sizeof word);
      if (!word_needs_attention(word)) {
        i += sizeof word;
        continue;
      }
    }
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c < 0x20 || c == '"' || c == '\\') result.needs_escape = true;
      ++i;
      continue;
    }
    const std::size_t n = utf8_sequence_length(s, i);
    if (n == 0) {
      result.first_invalid = i;
      return result;
    }
    i += n;
  }
  return result;
}

std::size_t first_invalid_utf8(std::string_view s) { return scan(s).first_invalid; }

// text with every invalid byte replaced by the UTF-8 form of U+0080..U+00FF of the same
// number (the header's policy); `from` is the first invalid byte.
std::string repaired_utf8(std::string_view s, std::size_t from) {
  std::string out;
  out.reserve(s.size() + 16);
  out.append(s.data(), from);
  std::size_t i = from;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    if (const std::size_t n = utf8_sequence_length(s, i)) {
      out.append(s.data() + i, n);
      i += n;
      continue;
    }
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
    ++i;
  }
  return out;
}

// std::to_chars gives the shortest text that reads back as the same double, and writes
// integral values without a fraction ("1", as Go's encoding/json and Toxiproxy do);
// rapidjson's Grisu2 writes "1.0" and is not always shortest. 32 bytes hold any double.
constexpr std::size_t kNumberChars = 32;
std::size_t shortest_text(double value, char (&buf)[kNumberChars]) {
  const auto [end, ec] = std::to_chars(buf, buf + kNumberChars, value);
  return ec == std::errc() ? static_cast<std::size_t>(end - buf) : 0;
}

}  // namespace

// rapidjson writes into its StringBuffer (unchecked stores after one reserve per value),
// and a finished document is appended to the target in one copy: a stream appending to a
// std::string a byte at a time made journal lines five times slower.
struct JsonWriter::Impl {
  std::string own;
  std::string* out = &own;
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer{buffer};

  Impl() = default;
  explicit Impl(std::string& target) : out(&target) {}

  void flush() {
    if (buffer.GetSize() == 0) return;
    out->append(buffer.GetString(), buffer.GetSize());
    buffer.Clear();
  }
  void flush_if_complete() {
    if (writer.IsComplete()) flush();
  }

  // Keys and strings: the UTF-8 policy, then rapidjson's escaping. A string that needs
  // neither (most keys and values) is copied in one piece: rapidjson still places it
  // (comma, colon, nesting) through an empty raw value, and the bytes follow at once,
  // where its escaper would look at each byte.
  void quoted(std::string_view text, bool is_key) {
    const StringScan found = scan(text);
    if (found.first_invalid != text.size()) {
      const std::string repaired = repaired_utf8(text, found.first_invalid);
      escaped(repaired, is_key);
    } else if (found.needs_escape) {
      escaped(text, is_key);
    } else {
      writer.RawValue("", 0, rapidjson::kStringType);
      char* at = buffer.Push(text.size() + 2);
      at[0] = '"';
      std::memcpy(at + 1, text.data(), text.size());
      at[text.size() + 1] = '"';
    }
    flush_if_complete();
  }
  void escaped(std::string_view text, bool is_key) {
    const auto n = static_cast<rapidjson::SizeType>(text.size());
    if (is_key) writer.Key(text.data(), n);
    else writer.String(text.data(), n);
  }
};

JsonWriter::JsonWriter() : impl_(std::make_unique<Impl>()) {}
JsonWriter::JsonWriter(std::string& out) : impl_(std::make_unique<Impl>(out)) {}
JsonWriter::~JsonWriter() = default;
JsonWriter::JsonWriter(JsonWriter&&) noexcept = default;
JsonWriter& JsonWriter::operator=(JsonWriter&&) noexcept = default;

void JsonWriter::restart(std::string& out) {
  impl_->flush_if_complete();
  impl_->out = &out;
  impl_->writer.Reset(impl_->buffer);
}

JsonWriter& JsonWriter::key(std::string_view name) {
  impl_->quoted(name, true);
  return *this;
}

JsonWriter& JsonWriter::string(std::string_view value) {
  impl_->quoted(value, false);
  return *this;
}

JsonWriter& JsonWriter::signed_number(std::int64_t value) {
  impl_->writer.Int64(value);
  impl_->flush_if_complete();
  return *this;
}

JsonWriter& JsonWriter::unsigned_number(std::uint64_t value) {
  impl_->writer.Uint64(value);
  impl_->flush_if_complete();
  return *this;
}

JsonWriter& JsonWriter::number(double value) {
  if (!std::isfinite(value)) return null();
  char buf[kNumberChars];
  const std::size_t n = shortest_text(value, buf);
  impl_->writer.RawValue(buf, n, rapidjson::kNumberType);
  impl_->flush_if_complete();
  return *this;
}

std::string format_number(double value) {
  char buf[kNumberChars];
  return std::string(buf, shortest_text(value, buf));
}

JsonWriter& JsonWriter::boolean(bool value) {
  impl_->writer.Bool(value);
  impl_->flush_if_complete();
  return *this;
}

JsonWriter& JsonWriter::null() {
  impl_->writer.Null();
  impl_->flush_if_complete();
  return *this;
}

JsonWriter& JsonWriter::begin_object() {
  impl_->writer.StartObject();
  impl_->flush_if_complete();
  return *this;
}

JsonWriter& JsonWriter::end_object() {
  impl_->writer.EndObject();
  impl_->flush_if_complete();
  return *this;
}

JsonWriter& JsonWriter::begin_array() {
  impl_->writer.StartArray();
  impl_->flush_if_complete();
  return *this;
}

JsonWriter& JsonWriter::end_array() {
  impl_->writer.EndArray();
  impl_->flush_if_complete();
  return *this;
}

JsonWriter& JsonWriter::raw(std::string_view json) {
  // rapidjson places the value (comma, colon); the bytes follow in one copy.
  impl_->writer.RawValue("", 0, rapidjson::kObjectType);
  std::memcpy(impl_->buffer.Push(json.size()), json.data(), json.size());
  impl_->flush_if_complete();
  return *this;
}

const std::string& JsonWriter::text() const {
  impl_->flush();
  return *impl_->out;
}

std::string JsonWriter::take() {
  impl_->flush();
  std::string out = std::move(*impl_->out);
  impl_->own.clear();
  restart(impl_->own);
  return out;
}

void append_json_quoted(std::string& out, std::string_view text) {
  thread_local JsonWriter writer;
  writer.restart(out);
  writer.string(text);
}

std::string json_quote(std::string_view text) {
  std::string out;
  append_json_quoted(out, text);
  return out;
}

bool valid_utf8(std::string_view text) { return first_invalid_utf8(text) == text.size(); }

}  // namespace faultline
