// What the exporters share: the recording read into memory and indexed per connection,
// a direction's bytes joined back into one stream with the time each byte arrived, and
// a small JSON writer. Internal to recorder/export*.cpp.
#pragma once
#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "recorder/export.hpp"
#include "recorder/journal.hpp"

namespace faultline::rec::xp {

inline std::size_t dir_index(Stream s) { return s == Stream::upstream ? 0 : 1; }

// One connection's lines, pointing into Model::events.
struct Conn {
  std::uint64_t id = 0;
  const JournalEvent* open = nullptr;     // null when the recording began after it opened
  std::vector<const JournalEvent*> data[2];  // [0] up, [1] down; in offset order
  std::vector<const JournalEvent*> ends[2];
  const JournalEvent* close = nullptr;
  std::vector<const JournalEvent*> msgs[2];        // in offset order
  std::vector<const JournalEvent*> redactions[2];  // in offset order
  std::vector<const JournalEvent*> faults;         // in time order
  std::vector<const JournalEvent*> all;   // every line of it, in journal order
  std::int64_t first_t = 0;               // earliest `t` of any of its lines
  std::string_view protocol() const { return open ? std::string_view(open->protocol) : std::string_view(); }
};

struct Model {
  std::vector<JournalEvent> events;  // every line read, in journal order (data lines without `raw`)
  std::string recording;             // the recording id from the first header
  std::string started_wall;
  std::int64_t wall_ns = 0;          // started_wall as ns since the epoch (0 when unknown)
  bool redacted = false;
  int version = 0;
  std::map<std::uint64_t, Conn> conns;
  std::uint64_t gaps = 0;
};

// ns since the epoch of "2025-01-02T03:04:05.123456789Z" (any number of fraction digits,
// Z or ±hh:mm). False when it is not such a time.
bool parse_wall(std::string_view text, std::int64_t& ns);
// "2025-01-02T03:04:05.123Z": ISO 8601 with milliseconds, as browsers write HAR times.
std::string iso_ms(std::int64_t epoch_ns);

// A direction's recorded bytes joined into one stream. Recorded data lines are contiguous
// per direction except where a gap dropped bytes (or a blob is missing): the stream stops
// at the first hole, since no decoder can resume in the middle of a message.
struct Joined {
  std::string bytes;        // stream bytes [base, base + bytes.size())
  std::uint64_t base = 0;   // stream offset of bytes[0]
  struct Piece {
    std::size_t pos;        // index into bytes
    std::int64_t t;
  };
  std::vector<Piece> pieces;  // where each data line's bytes start, and when they arrived
  bool hole = false;          // bytes after the end were not recorded (later data lines exist)
  // When the byte at `pos` (index into bytes) arrived; pos == bytes.size() answers for the
  // last byte. 0 for an empty stream.
  std::int64_t time_at(std::size_t pos) const;
};
Joined join(const std::vector<const JournalEvent*>& data);

// Minimal JSON output with two-space indentation, for HAR. Strings go through
// append_json_string, so whatever bytes a peer sent the document stays valid JSON.
class JsonWriter {
 public:
  explicit JsonWriter(std::string& out) : out_(out) {}
  void begin_object() { open('{'); }
  void end_object() { close('}'); }
  void begin_array() { open('['); }
  void end_array() { close(']'); }
  void key(std::string_view name);
  void string(std::string_view value);
  void integer(std::int64_t value);
  void number(double value);  // three decimals: HAR times are in ms
  void boolean(bool value);
  // `name` then a value, the common case.
  void field(std::string_view name, std::string_view value) {
    key(name);
    string(value);
  }
  void field_int(std::string_view name, std::int64_t value) {
    key(name);
    integer(value);
  }

 private:
  void open(char c);
  void close(char c);
  void before_value();
  void newline();

  std::string& out_;
  struct Level {
    bool any = false;
  };
  std::vector<Level> levels_;
  bool after_key_ = false;
};

// The exporters, on a model already read and filtered.
bool write_har(const Model& model, std::ostream& out, const ExportOptions& options, ExportSummary& summary,
               std::string& error);
bool write_pcapng(const Model& model, std::ostream& out, const ExportOptions& options, ExportSummary& summary,
                  std::string& error);
bool write_text(const Model& model, std::ostream& out, const ExportOptions& options, ExportSummary& summary,
                std::string& error);

inline void warn(const ExportOptions& options, const std::string& message) {
  if (options.warn) options.warn(message);
}

}  // namespace faultline::rec::xp
