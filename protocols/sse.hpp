// Server-Sent Events framing inside an HTTP response body (text/event-stream): finds
// where each event ends (the blank line after it, with \n, \r\n or \r line ends) and
// its fields, across arbitrary splits of the body.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace faultline::sse {

struct Event {
  std::string event;  // "event:" field ("" = message)
  std::string data;   // "data:" lines joined with \n (capped at 1 MiB)
  std::string id;     // "id:" field
};

class Splitter {
 public:
  // Feeds body bytes. For each event completed inside `body`, appends the offset just past
  // its terminating blank line (relative to `body`) to `ends` and the event to `events`.
  // Comment-only blocks (": keep-alive") count as events too (they are dispatched nothing
  // by clients, but they are units a fault may cut at); `Event::data` is then empty.
  // An event whose blank line ends with a \r that is the last byte of `body` ends there;
  // a \n at the start of the next feed is the rest of that line end and is skipped.
  void feed(std::string_view body, std::vector<std::size_t>& ends, std::vector<Event>& events);

 private:
  void end_line(std::size_t end, std::vector<std::size_t>& ends, std::vector<Event>& events);
  void process_line();

  // implementation state (chosen by the implementation)
  std::string line_;        // the current line so far (capped), without its line end
  bool last_cr_ = false;    // the last feed ended with \r: a leading \n belongs to it
  bool any_field_ = false;  // the current block has a line (field or comment)
  bool has_data_ = false;   // the current block has a data line
  bool first_line_ = true;  // no line has ended yet (a BOM may lead the stream)
  Event current_;
};

}  // namespace faultline::sse
