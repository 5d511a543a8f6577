// Random bytes as a journal file (JSON Lines: a header, then events): JournalReader must
// read what it can and stop with an error or at the end, never crash, and number the events
// by the lines they came from. A journal is read back from disk (`faultline export`,
// `replay`, a proxy's "replay"), so every byte of it may have been edited by hand or cut.
#include <cstdint>
#include <string>

#include "fuzz/scratch_dir.hpp"
#include "recorder/journal.hpp"
#include "fuzz/check.hpp"

namespace {

using faultline::fuzz::check;

const faultline::fuzz::ScratchDir& scratch() {
  static const faultline::fuzz::ScratchDir dir("journal");
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = scratch().write("journal-000000.jsonl", data, size);
  faultline::rec::JournalReader reader;
  std::string error;
  if (!reader.open(path, error)) {
    check(!error.empty());
    return 0;
  }
  faultline::rec::JournalEvent event;
  std::uint64_t last_line = 0;
  std::size_t events = 0;
  while (reader.next(event)) {
    check(event.line > last_line);  // one event per line, in file order
    last_line = event.line;
    ++events;
    check(events <= size + 1);  // every event is a line of its own
  }
  return 0;
}
