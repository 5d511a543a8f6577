#include "protocols/resp.hpp"

#include "base/ascii.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

namespace faultline::resp {
namespace {

enum class Parse : std::uint8_t { ok, more, bad };

// Reads `<integer>\r\n` (the bytes after a type byte) as Redis' string2ll does: optional
// '-', no '+', no leading zeros, no empty number. Bad input is reported as soon as a bad
// byte is seen, so a header never has to be held longer than a few bytes to be rejected.
// 18 digits at most: every limit here is below 10^18, and no arithmetic can overflow.
Parse parse_int_line(std::string_view s, std::int64_t& value, std::size_t& used) {
  std::size_t i = 0;
  bool negative = false;
  if (i < s.size() && s[i] == '-') {
    negative = true;
    ++i;
  }
  const std::size_t first = i;
  std::int64_t v = 0;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c >= '0' && c <= '9') {
      if (i - first >= 18) return Parse::bad;
      if (i > first && s[first] == '0') return Parse::bad;
      v = v * 10 + (c - '0');
      continue;
    }
    if (c != '\r' || i == first) return Parse::bad;
    if (negative && v == 0) return Parse::bad;
    if (i + 1 == s.size()) return Parse::more;
    if (s[i + 1] != '\n') return Parse::bad;
    value = negative ? -v : v;
    used = i + 2;
    return Parse::ok;
  }
  return Parse::more;
}

void keep_prefix(std::string& into, std::string_view bytes, std::size_t cap) {
  if (into.size() < cap) into.append(bytes.substr(0, cap - into.size()));
}


bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

// C's isspace in the "C" locale, which sdssplitargs uses to skip between words.
bool is_c_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// Redis' sdssplitargs on one inline line (CRLF removed). Words end only at space, tab, CR
// or LF (not at \v or \f, which only sdssplitargs' skip between words treats as space);
// a closing quote must be followed by a space or the end of the line. False: unbalanced.
bool split_inline(std::string_view line, std::vector<std::string>& words, std::vector<ArgSpan>* spans) {
  std::size_t p = 0;
  const std::size_t n = line.size();
  for (;;) {
    while (p < n && is_c_space(line[p])) ++p;
    if (p == n) return true;
    const std::size_t word_start = p;
    std::size_t word_end = n;
    std::string word;
    bool in_double = false;
    bool in_single = false;
    bool done = false;
    while (!done) {
      const bool at_end = p == n;
      const char c = at_end ? '\0' : line[p];
      const char next = p + 1 < n ? line[p + 1] : '\0';
      if (in_double) {
        if (at_end) return false;
        if (c == '\\' && next == 'x' && p + 3 < n && is_hex(line[p + 2]) && is_hex(line[p + 3])) {
          word.push_back(static_cast<char>(hex_value(line[p + 2]) * 16 + hex_value(line[p + 3])));
          p += 3;
        } else if (c == '\\' && p + 1 < n) {
          ++p;
          switch (line[p]) {
            case 'n': word.push_back('\n'); break;
            case 'r': word.push_back('\r'); break;
            case 't': word.push_back('\t'); break;
            case 'b': word.push_back('\b'); break;
            case 'a': word.push_back('\a'); break;
            default: word.push_back(line[p]); break;
          }
        } else if (c == '"') {
          if (p + 1 < n && !is_c_space(next)) return false;
          done = true;
          word_end = p + 1;
        } else {
          word.push_back(c);
        }
      } else if (in_single) {
        if (at_end) return false;
        if (c == '\\' && next == '\'') {
          ++p;
          word.push_back('\'');
        } else if (c == '\'') {
          if (p + 1 < n && !is_c_space(next)) return false;
          done = true;
          word_end = p + 1;
        } else {
          word.push_back(c);
        }
      } else {
        switch (c) {
          case ' ':
          case '\n':
          case '\r':
          case '\t':
          case '\0':
            done = true;
            word_end = p;
            break;
          case '"': in_double = true; break;
          case '\'': in_single = true; break;
          default: word.push_back(c); break;
        }
      }
      if (!at_end) ++p;
    }
    words.push_back(std::move(word));
    if (spans) {
      const bool quoted = word_end - word_start >= 2 && (line[word_start] == '"' || line[word_start] == '\'') &&
                          line[word_end - 1] == line[word_start];
      spans->push_back(quoted ? ArgSpan{word_start + 1, word_end - word_start - 2}
                              : ArgSpan{word_start, word_end - word_start});
    }
  }
}

// Simple reply lines are validated where a real client would choke: RESP3 null and
// boolean have fixed contents, integers and big numbers are an optional sign and digits.
bool simple_bytes_ok(char type, std::size_t length_before, std::string_view run, bool& digit) {
  switch (type) {
    case '_':
      return run.empty();
    case '#':
      return length_before + run.size() <= 1 && (run.empty() || run[0] == 't' || run[0] == 'f');
    case ':':
    case '(':
      for (std::size_t i = 0; i < run.size(); ++i) {
        const char c = run[i];
        if (c >= '0' && c <= '9') {
          digit = true;
        } else if (!(length_before + i == 0 && (c == '-' || c == '+'))) {
          return false;
        }
      }
      return true;
    default:
      return true;
  }
}

bool simple_line_complete(char type, std::size_t length, bool digit) {
  switch (type) {
    case '_': return length == 0;
    case '#': return length == 1;
    case ':':
    case '(': return digit;
    default: return true;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------
// CommandFramer

FrameStep CommandFramer::fail(std::string message) {
  state_ = State::failed;
  error_ = std::move(message);
  return {0, FrameEvent::error, {}};
}

void CommandFramer::begin_command() {
  name_.clear();
  key_.clear();
  args_.clear();
  partial_.clear();
  arity_ = 0;
  next_arg_ = 0;
  held_ = 0;
  head_spilled_ = false;
  command_consumed_ = 0;
  spans_.clear();
}

void CommandFramer::finish_arg() {
  if (next_arg_ == 0) name_ = ascii_upper(partial_);
  if (next_arg_ == 1) key_ = partial_;
  if (next_arg_ < max_kept_args) args_.push_back(std::move(partial_));
  partial_.clear();
  ++next_arg_;
}

FrameStep CommandFramer::inline_command(std::string_view data) {
  // Only the new bytes are searched on each re-presentation: a long line trickling in a
  // byte at a time stays linear.
  const std::size_t from = std::min(scanned_, data.size());
  const void* hit = std::memchr(data.data() + from, '\n', data.size() - from);
  const std::size_t newline =
      hit ? static_cast<std::size_t>(static_cast<const char*>(hit) - data.data()) : data.size();
  if (std::memchr(data.data() + from, '\0', newline - from) != nullptr) {
    return fail("NUL byte in an inline command");
  }
  if (!hit) {
    scanned_ = data.size();
    if (scanned_ > max_inline_length) return fail("inline command longer than 64 KiB");
    return {0, FrameEvent::none, {}};
  }
  scanned_ = 0;
  std::string_view line = data.substr(0, newline);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() > max_inline_length) return fail("inline command longer than 64 KiB");
  std::vector<std::string> words;
  std::vector<ArgSpan> spans;
  if (!split_inline(line, words, keep_spans_ ? &spans : nullptr)) return fail("unbalanced quotes in an inline command");
  // A blank line is no command: the last command's fields stay as they were.
  if (words.empty()) return {newline + 1, FrameEvent::none, {}};
  begin_command();
  spans_ = std::move(spans);
  arity_ = words.size();
  name_ = ascii_upper(words[0]);
  if (words.size() > 1) keep_prefix(key_, words[1], max_kept_arg_bytes);
  for (std::size_t i = 0; i < words.size() && i < max_kept_args; ++i) {
    std::string kept;
    keep_prefix(kept, words[i], max_kept_arg_bytes);
    args_.push_back(std::move(kept));
  }
  next_arg_ = arity_;
  state_ = State::end_pending;
  return {newline + 1, FrameEvent::head, {}};
}

// Before `head`, parsed bytes are held (reported unconsumed) so the caller still has the
// whole command so far when it decides what to do with it; `held_` remembers how far the
// re-presented bytes were parsed, so nothing is parsed twice. Past 64 KiB (a huge name or
// key) holding stops and those bytes are consumed in pieces like any large argument.
FrameStep CommandFramer::need_more(std::size_t pos) {
  const bool before_head =
      (state_ == State::arg_header || state_ == State::arg_payload) &&
      next_arg_ < std::min<std::size_t>(2, arity_);
  if (before_head && !head_spilled_ && pos <= max_inline_length) {
    held_ = pos;
    return {0, FrameEvent::none, {}};
  }
  if (before_head && pos > 0) head_spilled_ = true;
  held_ = 0;
  return {pos, FrameEvent::none, {}};
}

FrameStep CommandFramer::step(std::string_view data) {
  // A command starts at a step's first byte (every event returns), so the bytes consumed
  // since it began place its arguments.
  const FrameStep result = advance(data);
  command_consumed_ += result.consumed;
  return result;
}

FrameStep CommandFramer::advance(std::string_view data) {
  if (held_ > data.size()) return fail("held bytes were not presented again");
  std::size_t pos = held_;
  for (;;) {
    switch (state_) {
      case State::failed:
        return {0, FrameEvent::error, {}};

      case State::end_pending:
        // The command was complete when `head` was reported; its end gets its own step.
        state_ = State::start;
        return {pos, FrameEvent::end, {}};

      case State::start: {
        if (pos == data.size()) return {pos, FrameEvent::none, {}};
        if (data[pos] != '*') {
          // Commands start at a step's beginning (every event returns), so pos is 0 here
          // and the scan position kept between re-presentations stays meaningful.
          FrameStep result = inline_command(data.substr(pos));
          result.consumed += pos;
          return result;
        }
        std::int64_t count = 0;
        std::size_t used = 0;
        switch (parse_int_line(data.substr(pos + 1), count, used)) {
          case Parse::more: return {pos, FrameEvent::none, {}};
          case Parse::bad: return fail("invalid multibulk length");
          case Parse::ok: break;
        }
        if (count < 0 || count > max_array_count) return fail("invalid multibulk length");
        pos += 1 + used;
        if (count == 0) return {pos, FrameEvent::none, {}};
        begin_command();
        arity_ = static_cast<std::size_t>(count);
        state_ = State::arg_header;
        break;
      }

      case State::arg_header: {
        if (pos == data.size()) return need_more(pos);
        if (data[pos] != '$') return fail("expected '$' before a command argument");
        std::int64_t length = 0;
        std::size_t used = 0;
        switch (parse_int_line(data.substr(pos + 1), length, used)) {
          case Parse::more: return need_more(pos);
          case Parse::bad: return fail("invalid bulk length");
          case Parse::ok: break;
        }
        if (length < 0 || length > max_bulk_length) return fail("invalid bulk length");
        pos += 1 + used;
        if (keep_spans_) spans_.push_back({command_consumed_ + pos, static_cast<std::size_t>(length)});
        bulk_left_ = length + 2;
        partial_.clear();
        state_ = State::arg_payload;
        break;
      }

      case State::arg_payload: {
        const std::size_t avail = data.size() - pos;
        if (bulk_left_ > 2) {
          const std::size_t take = std::min(avail, static_cast<std::size_t>(bulk_left_ - 2));
          if (next_arg_ < max_kept_args) {
            keep_prefix(partial_, data.substr(pos, take), max_kept_arg_bytes);
          }
          pos += take;
          bulk_left_ -= static_cast<std::int64_t>(take);
        }
        while (bulk_left_ > 0 && bulk_left_ <= 2 && pos < data.size()) {
          if (data[pos] != (bulk_left_ == 2 ? '\r' : '\n')) {
            return fail("bulk argument not followed by CRLF");
          }
          ++pos;
          --bulk_left_;
        }
        if (bulk_left_ > 0) return need_more(pos);
        finish_arg();
        const bool complete = next_arg_ == arity_;
        if (next_arg_ == std::min<std::size_t>(2, arity_)) {
          held_ = 0;
          state_ = complete ? State::end_pending : State::arg_header;
          return {pos, FrameEvent::head, {}};
        }
        if (complete) {
          state_ = State::start;
          return {pos, FrameEvent::end, {}};
        }
        state_ = State::arg_header;
        break;
      }
    }
  }
}

std::vector<ArgSpan> command_args(std::string_view bytes) {
  auto read = [](std::string_view data, bool& ended) {
    CommandFramer framer;
    framer.keep_spans(true);
    std::size_t pos = 0;
    ended = false;
    for (;;) {
      const FrameStep step = framer.step(data.substr(pos));
      pos += step.consumed;
      if (step.event == FrameEvent::end) {
        ended = true;
        break;
      }
      if (step.event == FrameEvent::error || (step.consumed == 0 && step.event == FrameEvent::none)) break;
    }
    return framer.spans();
  };
  bool ended = false;
  std::vector<ArgSpan> spans = read(bytes, ended);
  if (!ended && !bytes.empty() && bytes[0] != '*') {
    // An inline line still open: the bytes so far, as if the line ended there (and a quote
    // still open closed there: a cut-off `AUTH "secret` still has its password found).
    const std::string_view line = bytes.substr(0, bytes.find('\n'));
    for (std::string_view close : {"\n", "\"\n", "'\n"}) {
      spans = read(std::string(line).append(close), ended);
      if (ended) break;
    }
  }
  for (auto& s : spans) {
    if (s.offset > bytes.size()) s.offset = bytes.size();
    s.length = std::min(s.length, bytes.size() - s.offset);
  }
  return spans;
}

// ---------------------------------------------------------------------------------------
// ReplyFramer

FrameStep ReplyFramer::fail(std::string message) {
  state_ = State::failed;
  error_ = std::move(message);
  return {0, FrameEvent::error, {}};
}

// Called once an element's header is consumed: a new top-level reply starts when nothing
// is open, and its type is the first non-attribute element's.
void ReplyFramer::begin_element(char type) {
  if (pending_.empty()) {
    if (!in_reply_) {
      in_reply_ = true;
      type_ = 0;
      line_.clear();
    }
    if (type != '|') type_ = type;
  }
}

// One element is complete; closes every aggregate it completes. True when that ends the
// top-level reply.
bool ReplyFramer::element_done() {
  while (!pending_.empty()) {
    Frame& top = pending_.back();
    if (--top.left > 0) return false;
    const bool attribute = top.attribute;
    pending_.pop_back();
    // An attribute only decorates the element after it, which is still to come.
    if (attribute) return false;
  }
  in_reply_ = false;
  return true;
}

FrameStep ReplyFramer::step(std::string_view data) {
  std::size_t pos = 0;
  for (;;) {
    switch (state_) {
      case State::failed:
        return {0, FrameEvent::error, {}};

      case State::element: {
        if (pos == data.size()) return {pos, FrameEvent::none, {}};
        const char type = data[pos];
        switch (type) {
          case '+':
          case '-':
          case ':':
          case ',':
          case '(':
          case '_':
          case '#':
            begin_element(type);
            if (visitor_) visitor_->element(type, 0);
            ++pos;
            line_type_ = type;
            line_length_ = 0;
            line_cr_ = false;
            line_digit_ = false;
            state_ = State::line;
            continue;
          case '$':
          case '!':
          case '=':
          case '*':
          case '~':
          case '>':
          case '%':
          case '|':
            break;
          default:
            return fail("unknown RESP type byte");
        }
        std::int64_t n = 0;
        std::size_t used = 0;
        switch (parse_int_line(data.substr(pos + 1), n, used)) {
          case Parse::more: return {pos, FrameEvent::none, {}};
          case Parse::bad: return fail("invalid length or count");
          case Parse::ok: break;
        }
        if (n < -1) return fail("invalid length or count");
        const bool bulk = type == '$' || type == '!' || type == '=';
        if (type == '|' && n < 0) return fail("null attribute");
        if (type == '=' && n >= 0 && n < 4) return fail("verbatim string without its format");
        if (!bulk && n > 0 && pending_.size() >= max_depth) {
          return fail("replies nested deeper than 1024");
        }
        begin_element(type);
        if (visitor_) visitor_->element(type, n);
        pos += 1 + used;
        if (bulk && n >= 0) {
          line_type_ = type;
          bulk_length_ = n;
          bulk_left_ = n + 2;
          state_ = State::bulk;
          continue;
        }
        if (n > 0) {
          const bool pairs = type == '%' || type == '|';
          pending_.push_back({pairs ? n * 2 : n, type == '|'});
          continue;
        }
        if (type == '|') continue;  // an empty attribute: the element itself follows
        if (element_done()) return {pos, FrameEvent::end, {}};
        continue;
      }

      case State::line: {
        while (pos < data.size() && state_ == State::line) {
          if (line_cr_) {
            if (data[pos] != '\n') return fail("CR not followed by LF");
            ++pos;
            if (!simple_line_complete(line_type_, line_length_, line_digit_)) {
              return fail("malformed simple reply");
            }
            state_ = State::element;
            if (element_done()) return {pos, FrameEvent::end, {}};
            break;
          }
          if (data[pos] == '\r') {
            line_cr_ = true;
            ++pos;
            continue;
          }
          const void* cr = std::memchr(data.data() + pos, '\r', data.size() - pos);
          const std::size_t stop =
              cr ? static_cast<std::size_t>(static_cast<const char*>(cr) - data.data())
                 : data.size();
          const std::string_view run = data.substr(pos, stop - pos);
          if (run.find('\n') != std::string_view::npos) {
            return fail("LF without CR in a simple reply");
          }
          if (!simple_bytes_ok(line_type_, line_length_, run, line_digit_)) {
            return fail("malformed simple reply");
          }
          if (pending_.empty() && (line_type_ == '+' || line_type_ == '-')) {
            keep_prefix(line_, run, max_line_kept);
          }
          if (visitor_ && !run.empty()) visitor_->payload(run);
          line_length_ += run.size();
          pos = stop;
        }
        if (state_ == State::line) return {pos, FrameEvent::none, {}};
        break;
      }

      case State::bulk: {
        const std::size_t avail = data.size() - pos;
        if (bulk_left_ > 2) {
          const std::size_t take = std::min(avail, static_cast<std::size_t>(bulk_left_ - 2));
          const std::int64_t offset = bulk_length_ - (bulk_left_ - 2);
          // A verbatim string's payload starts with a 3-byte format and ':' ("txt:").
          if (line_type_ == '=' && offset <= 3 && offset + static_cast<std::int64_t>(take) > 3) {
            if (data[pos + static_cast<std::size_t>(3 - offset)] != ':') {
              return fail("verbatim string without its format");
            }
          }
          if (visitor_ && take > 0) visitor_->payload(data.substr(pos, take));
          pos += take;
          bulk_left_ -= static_cast<std::int64_t>(take);
        }
        while (bulk_left_ > 0 && bulk_left_ <= 2 && pos < data.size()) {
          if (data[pos] != (bulk_left_ == 2 ? '\r' : '\n')) {
            return fail("bulk reply not followed by CRLF");
          }
          ++pos;
          --bulk_left_;
        }
        if (bulk_left_ > 0) return {pos, FrameEvent::none, {}};
        state_ = State::element;
        if (element_done()) return {pos, FrameEvent::end, {}};
        break;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// parse_value: a tree built from what the ReplyFramer reports.

namespace {

class ValueBuilder final : public ReplyVisitor {
 public:
  void element(char type, std::int64_t count) override {
    while (!open_.empty() && open_.back().left == 0) open_.pop_back();
    std::vector<Value>& siblings = open_.empty() ? roots_ : open_.back().value->elements;
    // An attribute is no entry of its parent: the element after it is.
    if (!open_.empty() && type != '|') --open_.back().left;
    Value& v = siblings.emplace_back();
    v.type = type;
    v.null = type == '_' || count < 0;
    scalar_ = nullptr;
    const bool aggregate = type == '*' || type == '~' || type == '>' || type == '%' || type == '|';
    if (!aggregate) {
      scalar_ = &v;
    } else if (count > 0) {
      open_.push_back({&v, (type == '%' || type == '|') ? count * 2 : count});
    }
  }
  void payload(std::string_view piece) override {
    if (scalar_) scalar_->text.append(piece);
  }
  // The reply: the last top-level element (attributes before it dropped), attributes
  // removed at every depth.
  Value take() {
    Value out = std::move(roots_.back());
    drop_attributes(out);
    return out;
  }

 private:
  static void drop_attributes(Value& v) {
    std::erase_if(v.elements, [](const Value& e) { return e.type == '|'; });
    for (auto& e : v.elements) drop_attributes(e);
  }
  struct Open {
    Value* value;
    std::int64_t left;  // entries still to come
  };
  std::vector<Value> roots_;
  std::vector<Open> open_;
  Value* scalar_ = nullptr;
};

}  // namespace

std::optional<Value> parse_value(std::string_view bytes) {
  ReplyFramer framer;
  ValueBuilder builder;
  framer.visit(&builder);
  std::size_t pos = 0;
  for (;;) {
    const FrameStep step = framer.step(bytes.substr(pos));
    pos += step.consumed;
    if (step.event == FrameEvent::error) return std::nullopt;
    if (step.event == FrameEvent::end) {
      if (pos != bytes.size()) return std::nullopt;
      return builder.take();
    }
    if (step.consumed == 0) return std::nullopt;  // incomplete
  }
}

// ---------------------------------------------------------------------------------------

std::string error_reply(std::string_view line) {
  std::string out;
  out.reserve(line.size() + 3);
  out.push_back('-');
  out.append(line);
  out.append("\r\n");
  return out;
}

namespace {

// Matches one non-star token of a Redis glob at pattern[p] against c; sets `next` to the
// token's end. Mirrors stringmatchlen's per-character cases, quirks included.
bool token_matches(std::string_view pattern, std::size_t p, unsigned char c, std::size_t& next) {
  const std::size_t n = pattern.size();
  const auto at = [&](std::size_t i) { return static_cast<unsigned char>(pattern[i]); };
  switch (pattern[p]) {
    case '?':
      next = p + 1;
      return true;
    case '[': {
      std::size_t i = p + 1;
      const bool negate = i < n && pattern[i] == '^';
      if (negate) ++i;
      bool match = false;
      for (;;) {
        if (i >= n) {
          // Unclosed: the class runs to the end of the pattern.
          break;
        }
        if (pattern[i] == '\\' && n - i >= 2) {
          ++i;
          if (at(i) == c) match = true;
        } else if (pattern[i] == ']') {
          break;
        } else if (n - i >= 3 && pattern[i + 1] == '-') {
          unsigned char lo = at(i);
          unsigned char hi = at(i + 2);
          if (lo > hi) std::swap(lo, hi);
          if (c >= lo && c <= hi) match = true;
          i += 2;
        } else if (at(i) == c) {
          match = true;
        }
        ++i;
      }
      next = std::min(i + 1, n);
      return negate ? !match : match;
    }
    case '\\':
      if (n - p >= 2) {
        next = p + 2;
        return at(p + 1) == c;
      }
      [[fallthrough]];
    default:
      next = p + 1;
      return at(p) == c;
  }
}

}  // namespace

bool glob_match(std::string_view pattern, std::string_view text) {
  // Every token but `*` matches exactly one byte, so when a token fails it is enough to
  // retry from the latest star, one byte further on: earlier stars can only absorb what
  // the latest one could, which keeps the match O(pattern x text) instead of exponential.
  std::size_t p = 0;
  std::size_t t = 0;
  std::size_t star = std::string_view::npos;  // pattern index just past the latest star
  std::size_t star_text = 0;                  // text index that star's attempt starts at
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      while (p < pattern.size() && pattern[p] == '*') ++p;
      if (p == pattern.size()) return true;
      star = p;
      star_text = t;
      continue;
    }
    std::size_t next = 0;
    if (p < pattern.size() && token_matches(pattern, p, static_cast<unsigned char>(text[t]), next)) {
      p = next;
      ++t;
      continue;
    }
    if (star == std::string_view::npos) return false;
    p = star;
    t = ++star_text;
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace faultline::resp
