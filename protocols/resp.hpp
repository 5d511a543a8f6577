// Redis RESP framing (RESP2 and RESP3): the client's commands (arrays of bulk strings, or
// inline commands) and the server's replies. Finds boundaries and the command's name and
// key; values are streamed, never held whole.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocols/framing.hpp"

namespace faultline::resp {

// Where one argument of a command lies in its bytes: from the command's first byte, the
// argument's payload (a bulk string's bytes; an inline word as written, without the quotes
// of a word that is one quoted string).
struct ArgSpan {
  std::size_t offset = 0;
  std::size_t length = 0;
};

// Client -> server. Reports `head` once the command name and its first argument (the key,
// if the command has one) are known, or the command ended with fewer arguments; then
// `end` when the whole command has been consumed. Large arguments are consumed in pieces
// (event none) as they arrive.
//
// The bytes before `head` (array header, name, key; an inline command's whole line) are
// not consumed until `head`, which consumes them all, so a caller deciding at `head` to
// answer or drop the command still holds all of it. Only a name + key region longer than
// 64 KiB is consumed in pieces before `head` (event none). Blank inline lines and `*0`
// between commands are consumed alone with event none: they belong to no command.
// An `error` step consumes nothing: everything not consumed before it is not RESP.
class CommandFramer {
 public:
  FrameStep step(std::string_view data);
  // Valid from `head` until the next command starts: the command name upper-cased
  // (ASCII), and the first argument as sent ("" when there is none).
  const std::string& name() const { return name_; }
  const std::string& key() const { return key_; }
  // Number of arguments including the name (from the array header; inline: word count).
  std::size_t arity() const { return arity_; }
  // The arguments seen in full so far (name first, as sent), each capped at 4 KiB, at
  // most 64: enough for AUTH/HELLO and for matching; bigger values are not kept whole.
  const std::vector<std::string>& args() const { return args_; }
  std::string_view error() const { return error_; }
  // With keep_spans(true) (off by default: a command may have a million arguments), the
  // span of every argument whose header has been read, for the command under way: a
  // caller that must change bytes in place (the recorder's redaction) finds them here.
  // A bulk argument's span is its declared length, which may run past the bytes seen.
  void keep_spans(bool on) { keep_spans_ = on; }
  const std::vector<ArgSpan>& spans() const { return spans_; }

  // Limits: Redis' own (proto-max-bulk-len, PROTO_INLINE_MAX_SIZE) and the brief's.
  static constexpr std::int64_t max_array_count = 1024 * 1024;
  static constexpr std::int64_t max_bulk_length = 512LL * 1024 * 1024;
  static constexpr std::size_t max_inline_length = 64 * 1024;
  static constexpr std::size_t max_kept_args = 64;
  static constexpr std::size_t max_kept_arg_bytes = 4 * 1024;

  // Details of what is accepted, following what redis-server itself does:
  // - An argument longer than 4 KiB is kept as its first 4 KiB (so is key()), enough for
  //   prefix globs such as `thread:*`; arguments after the 64th are not kept at all.
  // - Inline commands are split like Redis' sdssplitargs: spaces/tabs separate words,
  //   "double quotes" take \n \r \t \b \a \xHH and \<char> escapes, 'single quotes' take
  //   \'; unbalanced quotes are an error (Redis answers them with a protocol error too).
  //   A NUL byte in an inline line is an error. Blank lines and `*0` are skipped silently
  //   (event none), as Redis does.
  // - Array commands need exact CRLFs and integers as Redis' string2ll reads them (no
  //   leading zeros, no '+'); negative counts and lengths are errors.

 private:
  enum class State : std::uint8_t { start, arg_header, arg_payload, end_pending, failed };
  FrameStep advance(std::string_view data);
  FrameStep inline_command(std::string_view data);
  FrameStep need_more(std::size_t pos);
  FrameStep fail(std::string message);
  void begin_command();
  void finish_arg();

  State state_ = State::start;
  std::size_t arity_ = 0;
  std::size_t next_arg_ = 0;      // index of the argument being read
  std::int64_t bulk_left_ = 0;    // bytes (incl. CRLF) left of the current bulk argument
  std::size_t scanned_ = 0;       // inline: bytes already searched for the line end
  std::size_t held_ = 0;          // array: bytes before `head` parsed but not yet consumed
  bool head_spilled_ = false;     // a huge name or key: bytes before `head` were consumed
  std::string name_;
  std::string key_;
  std::string partial_;           // the kept prefix of the argument being read
  std::vector<std::string> args_;
  std::string error_;
  bool keep_spans_ = false;
  std::size_t command_consumed_ = 0;  // bytes of the current command consumed by earlier steps
  std::vector<ArgSpan> spans_;
};

// The spans of the arguments of the command that starts at `bytes`' first byte, as far as it is there
// (CommandFramer's; the last one cut to the bytes present). An inline command without its
// line end is read as if the line (and a quote left open) ended with the bytes. Empty when
// nothing is readable.
std::vector<ArgSpan> command_args(std::string_view bytes);

// What a ReplyFramer reports about each element as it reads it, for a caller that wants
// the values and not only the boundaries (resp::parse_value). The framer stays the one
// parser: a visitor only sees what it has already validated.
class ReplyVisitor {
 public:
  virtual ~ReplyVisitor() = default;
  // An element's header was read. Simple lines (+ - : , ( _ #): `count` 0, the line
  // follows as payload. Bulk types ($ ! =): `count` is the length, or -1 for a null.
  // Aggregates (* ~ > % |): `count` is the number of entries (pairs for % and |), or -1.
  virtual void element(char type, std::int64_t count) = 0;
  // The next piece of the element's line or bulk payload (no type byte, no CRLF).
  virtual void payload(std::string_view piece) = 0;
};

// Server -> client. Reports `end` at the end of each complete top-level reply (aggregates
// of any depth, RESP3 attributes belong to the reply they precede). Bulk payloads are
// consumed in pieces as they arrive.
class ReplyFramer {
 public:
  FrameStep step(std::string_view data);
  // Valid at `end`: the type byte of the reply ('+', '-', ':', '$', '*', '>', '%', ...).
  char type() const { return type_; }
  // Valid at `end`: true for an out-of-band RESP3 push ('>'), which answers no command.
  bool is_push() const { return type_ == '>'; }
  // Valid at `end` for '+' and '-' replies: the line without type byte and CRLF (capped 4 KiB).
  const std::string& line() const { return line_; }
  std::string_view error() const { return error_; }
  // Every element read from now on is also reported to `visitor` (null: none, the default).
  void visit(ReplyVisitor* visitor) { visitor_ = visitor; }

  static constexpr std::size_t max_depth = 1024;
  static constexpr std::size_t max_line_kept = 4 * 1024;

  // Details: lengths and counts are read like hiredis does (string2ll, -1 is a null for
  // any bulk or aggregate type, up to 18 digits); simple lines (+ - : , ( _ #) of any
  // length are consumed in pieces; CRLFs must be exact. RESP3 streamed strings and
  // aggregates (`$?`, `*?`), which Redis never sends, are errors.

 private:
  enum class State : std::uint8_t { element, line, bulk, failed };
  struct Frame {
    std::int64_t left;  // elements still to come at this depth
    bool attribute;     // an attribute map: it precedes an element, it is not one
  };
  FrameStep fail(std::string message);
  void begin_element(char type);
  bool element_done();

  State state_ = State::element;
  std::vector<Frame> pending_;
  std::int64_t bulk_left_ = 0;  // bytes (incl. CRLF) left of the current bulk payload
  std::int64_t bulk_length_ = 0;
  char line_type_ = 0;          // type of the simple line or bulk being read
  std::size_t line_length_ = 0;
  bool line_cr_ = false;        // the line's CR was consumed, its LF is next
  bool line_digit_ = false;     // an integer line has seen a digit
  char type_ = 0;
  bool in_reply_ = false;
  std::string line_;
  std::string error_;
  ReplyVisitor* visitor_ = nullptr;
};

// A decoded reply: simple lines keep their line in `text`, bulk strings their payload (a
// verbatim string's too, its "txt:" format included), aggregates their `elements` (a map's
// as key, value, key, value...). RESP3 attributes are left out: they decorate the element
// after them, which stands in their place.
struct Value {
  char type = 0;      // the type byte: '+', '-', ':', '$', '*', '%', '~', '>', '_', ',', '#', '(', '=', '!'
  bool null = false;  // $-1, *-1 (any bulk or aggregate type with -1) or RESP3 `_`
  std::string text;
  std::vector<Value> elements;
};
// Decodes exactly one complete reply, framed by ReplyFramer; nullopt when `bytes` are not
// one well-formed reply (incomplete, more than one, or not RESP).
std::optional<Value> parse_value(std::string_view bytes);

// `-` + line + CRLF: an error reply exactly as Redis writes it.
std::string error_reply(std::string_view line);

// Redis-style glob match (`*`, `?`, `[abc]`, `[a-z]`, `[^a]`, `\` escapes), case-sensitive.
// Follows Redis' stringmatchlen, quirks included (`[a-]` is the range a..']', an unclosed
// `[` runs to the end of the pattern, a trailing `\` is a literal), with two differences:
// bytes compare unsigned (Redis compares plain chars, signed on x86), and a pattern of only
// `*`s matches the empty text (stringmatchlen says no; KEYS and SCAN special-case `*`).
// Linear in pattern x text: `*` backtracks to the last star only.
bool glob_match(std::string_view pattern, std::string_view text);

}  // namespace faultline::resp
