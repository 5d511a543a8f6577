// Random bytes as an event-stream body, cut anywhere: the cut must not change the events,
// and every reported end must lie inside the piece that completed it.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocols/sse.hpp"
#include "fuzz/check.hpp"

namespace {

using faultline::fuzz::check;

struct Run {
  std::vector<std::size_t> ends;  // stream offsets
  std::vector<faultline::sse::Event> events;
};

void feed(faultline::sse::Splitter& s, Run& run, std::string_view stream, std::size_t from, std::size_t to) {
  std::vector<std::size_t> ends;
  const std::size_t before = run.events.size();
  s.feed(stream.substr(from, to - from), ends, run.events);
  check(ends.size() == run.events.size() - before);
  for (std::size_t i = 0; i < ends.size(); ++i) {
    check(ends[i] <= to - from);
    if (i > 0) check(ends[i] > ends[i - 1]);
    run.ends.push_back(from + ends[i]);
  }
  for (std::size_t i = before; i < run.events.size(); ++i) check(run.events[i].data.size() <= 1024 * 1024);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t hint = data[0];
  const std::string_view stream(reinterpret_cast<const char*>(data + 1), size - 1);

  faultline::sse::Splitter whole_splitter;
  Run whole;
  feed(whole_splitter, whole, stream, 0, stream.size());

  faultline::sse::Splitter cut_splitter;
  Run cut;
  std::vector<std::size_t> cuts;
  if (hint & 0x80) {
    const std::size_t piece = (hint & 0x7f) + 1u;
    for (std::size_t i = piece; i < stream.size(); i += piece) cuts.push_back(i);
  } else {
    cuts.push_back(stream.size() * hint / 128);
  }
  std::size_t from = 0;
  for (auto c : cuts) {
    feed(cut_splitter, cut, stream, from, c);
    from = c;
  }
  feed(cut_splitter, cut, stream, from, stream.size());

  check(cut.events.size() == whole.events.size());
  for (std::size_t i = 0; i < cut.events.size(); ++i) {
    check(cut.events[i].data == whole.events[i].data);
    check(cut.events[i].event == whole.events[i].event);
    check(cut.events[i].id == whole.events[i].id);
    // A \r\n cut between its \r and \n ends the event at the \r.
    const std::size_t want = whole.ends[i];
    const bool at_cr = want >= 2 && stream[want - 2] == '\r' && stream[want - 1] == '\n' &&
                       cut.ends[i] == want - 1;
    check(cut.ends[i] == want || at_cr);
  }
  return 0;
}
