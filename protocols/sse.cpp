#include "protocols/sse.hpp"

namespace faultline::sse {

namespace {

constexpr std::size_t kDataCap = 1024 * 1024;
// A line is kept only as far as any field needs it: the name, the colon and a capped
// value. Longer lines (a huge data line, a long comment) are still found and ended.
constexpr std::size_t kLineCap = kDataCap + 64;

void append_capped(std::string& to, std::string_view s, std::size_t cap) {
  if (to.size() >= cap) return;
  to.append(s.substr(0, cap - to.size()));
}

}  // namespace

void Splitter::process_line() {
  const std::string_view line = line_;
  any_field_ = true;
  // A comment only makes the block count as a unit; it sets no field.
  if (!line.empty() && line.front() == ':') return;
  const std::size_t colon = line.find(':');
  const std::string_view name = line.substr(0, colon);
  std::string_view value;
  if (colon != std::string_view::npos) {
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (name == "data") {
    if (has_data_) append_capped(current_.data, "\n", kDataCap);
    append_capped(current_.data, value, kDataCap);
    has_data_ = true;
  } else if (name == "event") {
    current_.event.assign(value);
  } else if (name == "id") {
    // The spec ignores an id that contains NUL.
    if (value.find('\0') == std::string_view::npos) current_.id.assign(value);
  }
}

void Splitter::end_line(std::size_t end, std::vector<std::size_t>& ends, std::vector<Event>& events) {
  if (first_line_) {
    first_line_ = false;
    // The stream may start with a UTF-8 byte order mark, which is not part of the line.
    if (line_.compare(0, 3, "\xEF\xBB\xBF") == 0) line_.erase(0, 3);
  }
  if (line_.empty()) {
    // A blank line: it ends the block, if there was one.
    if (any_field_) {
      ends.push_back(end);
      events.push_back(std::move(current_));
    }
    current_ = Event{};
    any_field_ = false;
    has_data_ = false;
  } else {
    process_line();
  }
  line_.clear();
}

void Splitter::feed(std::string_view body, std::vector<std::size_t>& ends,
                    std::vector<Event>& events) {
  std::size_t i = 0;
  if (last_cr_ && !body.empty()) {
    last_cr_ = false;
    // The \n of a \r\n split across feeds: that line has already ended at the \r.
    if (body.front() == '\n') i = 1;
  }
  while (i < body.size()) {
    const std::size_t eol = body.find_first_of("\r\n", i);
    if (eol == std::string_view::npos) {
      append_capped(line_, body.substr(i), kLineCap);
      break;
    }
    append_capped(line_, body.substr(i, eol - i), kLineCap);
    std::size_t next = eol + 1;
    if (body[eol] == '\r') {
      if (next < body.size()) {
        if (body[next] == '\n') ++next;
      } else {
        last_cr_ = true;
      }
    }
    end_line(next, ends, events);
    i = next;
  }
}

}  // namespace faultline::sse
