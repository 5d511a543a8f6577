// The one stepping contract every decoder here follows. A framer looks at the bytes a
// peer sent, from a message boundary on, and reports where messages and their parts
// begin and end. It never changes or keeps the bytes it is given (except a header it
// must see whole); the caller forwards, holds or replaces them.
//
// Contract: `step(data)` consumes a prefix of `data` (possibly empty) and reports at most
// one event at the end of that prefix. Bytes not consumed must be presented again, with
// whatever arrived since appended. A step that consumes nothing and reports nothing means
// "need more bytes". After `error`, the framer is done: the caller passes the rest of the
// stream through as bytes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace faultline {

enum class FrameEvent : std::uint8_t {
  none,   // bytes consumed (or, with consumed == 0, more are needed)
  head,   // the message's describing fields are known (HTTP head, RESP command name + key)
  body,   // `payload` holds message body bytes (HTTP: chunked framing removed)
  end,    // the message ends at the end of the consumed prefix
  error,  // not this protocol: pass the rest through as bytes
};

struct FrameStep {
  std::size_t consumed = 0;
  FrameEvent event = FrameEvent::none;
  // For `body`: a view into the `data` given to step(), inside the consumed prefix, so a
  // caller can map body offsets to stream offsets: payload.data() - data.data().
  std::string_view payload;
};

}  // namespace faultline
