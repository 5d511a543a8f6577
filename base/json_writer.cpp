#include "base/json_writer.hpp"

#include <charconv>
#include <cmath>
#include <utility>

#include <rapidjson/stream.h>
#include <rapidjson/writer.h>

namespace faultline {

namespace {

// rapidjson output stream that appends to a std::string, so a caller's buffer (a journal
// batch) receives the text directly instead of through a second buffer and a copy.
struct AppendStream {
  using Ch = char;
  std::string* out = nullptr;
  void Put(char c) { out->push_back(c); }
  void Flush() {}
};

// Found by argument-dependent lookup from rapidjson's Writer, ahead of its generic
// versions: one reserve per value and unchecked appends after it.
inline void PutReserve(AppendStream& stream, std::size_t count) { stream.out->reserve(stream.out->size() + count); }
inline void PutUnsafe(AppendStream& stream, char c) { stream.out->push_back(c); }

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

// Offset of the first byte that is not valid UTF-8, or s.size().
std::size_t first_invalid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const std::size_t n = utf8_sequence_length(s, i);
    if (n == 0) return i;
    i += n;
  }
  return s.size();
}

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

}  // namespace

struct JsonWriter::Impl {
  std::string own;
  AppendStream stream;
  rapidjson::Writer<AppendStream> writer;

  Impl() : stream{&own}, writer(stream) {}
  explicit Impl(std::string& out) : stream{&out}, writer(stream) {}

  // Keys and strings both go through the UTF-8 policy.
  template <typename Write>
  void with_valid_utf8(std::string_view text, Write write) {
    const std::size_t bad = first_invalid_utf8(text);
    if (bad == text.size()) {
      write(text.data(), text.size());
      return;
    }
    const std::string repaired = repaired_utf8(text, bad);
    write(repaired.data(), repaired.size());
  }
};

JsonWriter::JsonWriter() : impl_(std::make_unique<Impl>()) {}
JsonWriter::JsonWriter(std::string& out) : impl_(std::make_unique<Impl>(out)) {}
JsonWriter::~JsonWriter() = default;
JsonWriter::JsonWriter(JsonWriter&&) noexcept = default;
JsonWriter& JsonWriter::operator=(JsonWriter&&) noexcept = default;

void JsonWriter::restart(std::string& out) {
  impl_->stream.out = &out;
  impl_->writer.Reset(impl_->stream);
}

JsonWriter& JsonWriter::key(std::string_view name) {
  impl_->with_valid_utf8(name, [&](const char* p, std::size_t n) {
    impl_->writer.Key(p, static_cast<rapidjson::SizeType>(n));
  });
  return *this;
}

JsonWriter& JsonWriter::string(std::string_view value) {
  impl_->with_valid_utf8(value, [&](const char* p, std::size_t n) {
    impl_->writer.String(p, static_cast<rapidjson::SizeType>(n));
  });
  return *this;
}

JsonWriter& JsonWriter::signed_number(std::int64_t value) {
  impl_->writer.Int64(value);
  return *this;
}

JsonWriter& JsonWriter::unsigned_number(std::uint64_t value) {
  impl_->writer.Uint64(value);
  return *this;
}

JsonWriter& JsonWriter::number(double value) {
  if (!std::isfinite(value)) return null();
  // std::to_chars gives the shortest text that reads back as the same double, and writes
  // integral values without a fraction ("1", as Go's encoding/json and Toxiproxy do);
  // rapidjson's Grisu2 writes "1.0" and is not always shortest.
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  if (ec != std::errc()) return null();  // cannot happen: 32 bytes hold any double
  impl_->writer.RawValue(buf, static_cast<std::size_t>(end - buf), rapidjson::kNumberType);
  return *this;
}

JsonWriter& JsonWriter::boolean(bool value) {
  impl_->writer.Bool(value);
  return *this;
}

JsonWriter& JsonWriter::null() {
  impl_->writer.Null();
  return *this;
}

JsonWriter& JsonWriter::begin_object() {
  impl_->writer.StartObject();
  return *this;
}

JsonWriter& JsonWriter::end_object() {
  impl_->writer.EndObject();
  return *this;
}

JsonWriter& JsonWriter::begin_array() {
  impl_->writer.StartArray();
  return *this;
}

JsonWriter& JsonWriter::end_array() {
  impl_->writer.EndArray();
  return *this;
}

JsonWriter& JsonWriter::raw(std::string_view json) {
  impl_->writer.RawValue(json.data(), json.size(), rapidjson::kObjectType);
  return *this;
}

const std::string& JsonWriter::text() const { return *impl_->stream.out; }

std::string JsonWriter::take() {
  std::string out = std::move(*impl_->stream.out);
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
