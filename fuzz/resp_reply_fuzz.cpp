// Server -> client RESP2/RESP3 replies. Byte 0 is a split hint: the rest is fed in two
// parts, as a proxy would get it from two reads, and must frame exactly as when fed whole.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocols/resp.hpp"

using faultline::FrameEvent;
using faultline::FrameStep;
using faultline::resp::ReplyFramer;

namespace {

#define CHECK(cond) \
  do {              \
    if (!(cond)) __builtin_trap(); \
  } while (0)

struct Event {
  std::size_t offset;
  char type;
  std::string line;
  bool operator==(const Event&) const = default;
};

struct Run {
  std::vector<Event> events;
  bool failed = false;
};

constexpr std::string_view kTypes = "+-:$*_#,(!=%~>";

Run frame(std::string_view input, std::size_t split) {
  Run run;
  ReplyFramer framer;
  std::string pending;
  std::size_t offset = 0;
  const std::string_view parts[2] = {input.substr(0, split), input.substr(split)};
  for (std::string_view part : parts) {
    pending.append(part);
    // A reply ends on a byte it consumed, so every step consumes something or stops.
    const std::size_t bound = pending.size() + 1;
    for (std::size_t guard = 0;; ++guard) {
      CHECK(guard <= bound);
      const FrameStep s = framer.step(pending);
      CHECK(s.consumed <= pending.size());
      CHECK(s.payload.empty());
      CHECK(s.event == FrameEvent::none || s.event == FrameEvent::end ||
            s.event == FrameEvent::error);
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
        continue;
      }
      CHECK(s.consumed > 0);
      CHECK(kTypes.find(framer.type()) != std::string_view::npos);
      CHECK(framer.is_push() == (framer.type() == '>'));
      CHECK(framer.line().size() <= ReplyFramer::max_line_kept);
      if (framer.type() != '+' && framer.type() != '-') CHECK(framer.line().empty());
      run.events.push_back({offset, framer.type(), framer.line()});
    }
    // Only a partial length line (type byte, 18 digits at most, CR) is ever left over.
    CHECK(pending.size() <= 24);
  }
  return run;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::size_t split = input.empty() ? 0 : data[0] % (input.size() + 1);

  const Run whole = frame(input, input.size());
  const Run parts = frame(input, split);
  CHECK(whole.failed == parts.failed);
  CHECK(whole.events == parts.events);
  return 0;
}
