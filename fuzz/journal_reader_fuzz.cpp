// Random bytes as a journal file (JSON Lines: a header, then events): JournalReader must
// read what it can and stop with an error or at the end, never crash, and number the events
// by the lines they came from. A journal is read back from disk (`faultline export`,
// `replay`, a proxy's "replay"), so every byte of it may have been edited by hand or cut.
#include <cstdint>
#include <fstream>
#include <string>

#include "fuzz/scratch_dir.hpp"
#include "recorder/journal.hpp"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

const std::string& journal_path() {
  static const faultline::fuzz::ScratchDir dir("journal");
  static const std::string path = (dir.path() / "journal-000000.jsonl").string();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string& path = journal_path();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    check(static_cast<bool>(out));
  }
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
