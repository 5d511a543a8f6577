// The one way the project writes JSON: a thin layer over rapidjson's Writer, so escaping,
// numbers and nesting are decided in one place. The header does not include rapidjson,
// so including it is cheap.
//
// Strings are UTF-8. A byte that is not part of a valid UTF-8 sequence (a stray
// continuation byte, a truncated sequence, an overlong form, a surrogate, a code point
// above U+10FFFF) is written as the code point with the same number, U+0080..U+00FF (as if
// that one byte were Latin-1): the document stays valid JSON, nothing is dropped, and a
// reader can tell the byte from the text around it. This is what the journal has always
// done, so recorded values do not change. Control characters are escaped; U+2028/U+2029
// are written as they are (valid JSON).
//
// Numbers: integers are exact (64 bits either sign); a double is written in the shortest
// form that reads back as the same double ("0.2", "1", "1e+300"); NaN and infinities have
// no JSON form and are written as null.
#pragma once
#include <concepts>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace faultline {

class JsonWriter {
 public:
  // Writes into a text of its own (text()).
  JsonWriter();
  // Appends to out, which must outlive the writer.
  explicit JsonWriter(std::string& out);
  ~JsonWriter();
  JsonWriter(JsonWriter&&) noexcept;
  JsonWriter& operator=(JsonWriter&&) noexcept;
  JsonWriter(const JsonWriter&) = delete;
  JsonWriter& operator=(const JsonWriter&) = delete;

  // Starts a new document appended to out, keeping the writer's allocations: a hot path
  // (one journal line per chunk) keeps one writer per thread and restarts it per line.
  // What an unfinished document had not yet handed to its target is dropped.
  void restart(std::string& out);

  JsonWriter& key(std::string_view name);
  JsonWriter& string(std::string_view value);
  template <std::integral T>
    requires(!std::same_as<T, bool>)
  JsonWriter& number(T value) {
    if constexpr (std::is_signed_v<T>) return signed_number(static_cast<std::int64_t>(value));
    else return unsigned_number(static_cast<std::uint64_t>(value));
  }
  JsonWriter& number(double value);
  JsonWriter& boolean(bool value);
  JsonWriter& null();
  JsonWriter& begin_object();
  JsonWriter& end_object();
  JsonWriter& begin_array();
  JsonWriter& end_array();
  // An already serialised JSON value, copied as it is (the caller vouches for it).
  JsonWriter& raw(std::string_view json);

  // Everything written so far (for a writer over a caller's string: that whole string).
  // The target receives a document's text when the document is complete, or when text()
  // is called: call it before appending to a caller's string mid-document yourself.
  const std::string& text() const;
  // The text, moved out; the writer then starts again on an empty text of its own.
  std::string take();

 private:
  JsonWriter& signed_number(std::int64_t value);
  JsonWriter& unsigned_number(std::uint64_t value);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A JSON string literal (quotes included) for text, with the policy above: for the odd
// message built around one string. Objects are built with JsonWriter.
std::string json_quote(std::string_view text);
void append_json_quoted(std::string& out, std::string_view text);

// The shortest text that reads back as the same double ("0.2", "1", "1e+300"): how
// JsonWriter writes a finite double, for messages that quote one too.
std::string format_number(double value);

// Whether text is entirely valid UTF-8 (what JsonWriter writes unchanged).
bool valid_utf8(std::string_view text);

}  // namespace faultline
