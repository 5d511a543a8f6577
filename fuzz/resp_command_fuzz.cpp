// Client -> server RESP (arrays and inline commands), and glob_match. Byte 0 chooses which
// and where to split the rest: commands are fed in two parts, as a proxy would get them
// from two reads, and must frame exactly as when fed whole; a glob input is split into
// pattern and text and checked against a transcription of Redis' own matcher.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocols/resp.hpp"

using faultline::FrameEvent;
using faultline::FrameStep;
using faultline::resp::CommandFramer;

namespace {

#define CHECK(cond) \
  do {              \
    if (!(cond)) __builtin_trap(); \
  } while (0)

struct Event {
  FrameEvent event;
  std::size_t offset;
  std::string name;
  std::string key;
  std::size_t arity;
  std::size_t kept;
  bool operator==(const Event&) const = default;
};

struct Run {
  std::vector<Event> events;
  bool failed = false;
};

Run frame(std::string_view input, std::size_t split) {
  Run run;
  CommandFramer framer;
  std::string pending;
  std::size_t offset = 0;
  FrameEvent last = FrameEvent::end;  // the previous head/end, for their alternation
  bool zero_event = false;            // the previous step reported an event, consuming 0
  const std::string_view parts[2] = {input.substr(0, split), input.substr(split)};
  for (std::string_view part : parts) {
    pending.append(part);
    // Every step consumes a byte or reports an event, and events that consume nothing
    // never follow one another: the steps are bounded by twice the bytes, plus one.
    const std::size_t bound = 2 * pending.size() + 2;
    for (std::size_t guard = 0;; ++guard) {
      CHECK(guard <= bound);
      const FrameStep s = framer.step(pending);
      CHECK(s.consumed <= pending.size());
      CHECK(s.payload.empty());
      CHECK(s.event != FrameEvent::body);
      if (s.event == FrameEvent::error) {
        CHECK(s.consumed == 0);
        CHECK(!framer.error().empty());
        const FrameStep again = framer.step(pending);
        CHECK(again.consumed == 0 && again.event == FrameEvent::error);
        run.failed = true;
        return run;
      }
      pending.erase(0, s.consumed);
      offset += s.consumed;
      if (s.event == FrameEvent::none) {
        if (s.consumed == 0) break;
        zero_event = false;
        continue;
      }
      if (s.consumed == 0) {
        CHECK(!zero_event);
        zero_event = true;
      } else {
        zero_event = false;
      }
      // head, end, head, end...: never an end without its head.
      CHECK(s.event == (last == FrameEvent::end ? FrameEvent::head : FrameEvent::end));
      last = s.event;
      CHECK(framer.arity() >= 1);
      CHECK(framer.arity() <= static_cast<std::size_t>(CommandFramer::max_array_count));
      CHECK(framer.key().size() <= CommandFramer::max_kept_arg_bytes);
      CHECK(framer.args().size() <= CommandFramer::max_kept_args);
      CHECK(framer.args().size() <= framer.arity());
      for (const auto& arg : framer.args()) CHECK(arg.size() <= CommandFramer::max_kept_arg_bytes);
      for (char c : framer.name()) CHECK(!(c >= 'a' && c <= 'z'));
      if (framer.arity() < 2) CHECK(framer.key().empty());
      if (s.event == FrameEvent::end) {
        const std::size_t want = framer.arity() < CommandFramer::max_kept_args
                                     ? framer.arity()
                                     : CommandFramer::max_kept_args;
        CHECK(framer.args().size() == want);
        if (!framer.args().empty() && framer.arity() >= 2) CHECK(framer.args()[1] == framer.key());
      }
      run.events.push_back({s.event, offset, framer.name(), framer.key(), framer.arity(),
                            framer.args().size()});
    }
    // What the caller must keep: a partial header line, or a held command head / inline
    // line, never more than the 64 KiB it may grow to before being consumed or rejected.
    CHECK(pending.size() <= CommandFramer::max_inline_length + 64);
  }
  return run;
}

// Redis' stringmatchlen (util.c), transcribed for the comparison: recursive on '*' with
// its skipLongerMatches cut, bytes compared unsigned.
int redis_match(const unsigned char* pattern, int plen, const unsigned char* string, int slen,
                int* skip_longer, int nesting) {
  if (nesting > 1000) return 0;
  while (plen && slen) {
    switch (pattern[0]) {
      case '*':
        while (plen > 1 && pattern[1] == '*') {
          pattern++;
          plen--;
        }
        if (plen == 1) return 1;
        while (slen) {
          if (redis_match(pattern + 1, plen - 1, string, slen, skip_longer, nesting + 1)) return 1;
          if (*skip_longer) return 0;
          string++;
          slen--;
        }
        *skip_longer = 1;
        return 0;
      case '?':
        string++;
        slen--;
        break;
      case '[': {
        pattern++;
        plen--;
        const bool negate = plen > 0 && pattern[0] == '^';
        if (negate) {
          pattern++;
          plen--;
        }
        bool match = false;
        for (;;) {
          if (plen >= 2 && pattern[0] == '\\') {
            pattern++;
            plen--;
            if (pattern[0] == string[0]) match = true;
          } else if (plen == 0) {
            pattern--;
            plen++;
            break;
          } else if (pattern[0] == ']') {
            break;
          } else if (plen >= 3 && pattern[1] == '-') {
            int lo = pattern[0];
            int hi = pattern[2];
            if (lo > hi) std::swap(lo, hi);
            pattern += 2;
            plen -= 2;
            if (string[0] >= lo && string[0] <= hi) match = true;
          } else if (pattern[0] == string[0]) {
            match = true;
          }
          pattern++;
          plen--;
        }
        if (negate) match = !match;
        if (!match) return 0;
        string++;
        slen--;
        break;
      }
      case '\\':
        if (plen >= 2) {
          pattern++;
          plen--;
        }
        [[fallthrough]];
      default:
        if (pattern[0] != string[0]) return 0;
        string++;
        slen--;
        break;
    }
    pattern++;
    plen--;
    if (slen == 0) {
      while (plen && pattern[0] == '*') {
        pattern++;
        plen--;
      }
      break;
    }
  }
  return plen == 0 && slen == 0;
}

void fuzz_glob(std::string_view pattern, std::string_view text) {
  const bool got = faultline::resp::glob_match(pattern, text);
  // A pattern with every byte escaped matches exactly its text.
  std::string literal;
  for (char c : text) {
    literal.push_back('\\');
    literal.push_back(c);
  }
  CHECK(faultline::resp::glob_match(literal, text));
  CHECK(faultline::resp::glob_match("*", text));
  if (pattern.size() > 200 || text.size() > 200) return;  // keep the reference cheap
  bool want = false;
  if (text.empty()) {
    // The one documented difference: only-stars patterns match the empty text.
    want = pattern.find_first_not_of('*') == std::string_view::npos;
  } else {
    int skip_longer = 0;
    want = redis_match(reinterpret_cast<const unsigned char*>(pattern.data()),
                       static_cast<int>(pattern.size()),
                       reinterpret_cast<const unsigned char*>(text.data()),
                       static_cast<int>(text.size()), &skip_longer, 0) != 0;
  }
  CHECK(got == want);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  // Bit 0 picks what is fuzzed, so glob inputs and command inputs each grow a corpus of
  // their own; the other bits say where to split.
  const std::size_t split = input.empty() ? 0 : (data[0] >> 1) % (input.size() + 1);
  if (data[0] & 1) {
    fuzz_glob(input.substr(0, split), input.substr(split));
    return 0;
  }
  const Run whole = frame(input, input.size());
  const Run parts = frame(input, split);
  CHECK(whole.failed == parts.failed);
  CHECK(whole.events == parts.events);
  return 0;
}
