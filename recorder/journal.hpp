// The journal format, version 1 (docs/journal.md): JSON Lines, one event per line, each
// line a complete JSON object ending in `\n`. This file is the one place that knows the
// line layouts: the recorder formats lines with the `line::` builders, and every reader
// (exporters, replay, tests) goes through JournalReader. Field names are short and
// stable; readers ignore fields and line types they do not know, so adding either is not
// a version change. Removing or changing the meaning of one is.
#pragma once
#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/vocabulary.hpp"

namespace faultline::rec {

inline constexpr int kJournalVersion = 1;
inline constexpr int kIndexVersion = 1;
inline constexpr std::string_view kIndexFile = "index.json";
inline constexpr std::string_view kBlobDir = "blobs";
// Room kept (allocated, zeros) while a recording runs, freed to write the last index when
// the disk is full, so the folder says the recording failed and why. Removed at stop; a
// crash leaves it behind.
inline constexpr std::string_view kReserveFile = "index.json.reserve";
inline constexpr long kReserveBytes = 64 << 10;

// ---- small encoders shared by the writer, the reader and the tests ----------------------

// Appends `s` as a JSON string. Bytes that are not valid UTF-8 are written as the code
// point of the same value (\u0080..\u00ff), so every line stays valid JSON whatever a peer
// sent; payload bytes never go through here (they are base64).
void append_json_string(std::string& out, std::string_view s);
std::string json_string(std::string_view s);
std::string base64_encode(std::string_view bytes);
// Strict: padding required, no whitespace. False on anything else.
bool base64_decode(std::string_view text, std::string& out);
// A blob's file name: XXH3-128 of its bytes, 32 lower-case hex digits (canonical order).
std::string content_address(std::string_view bytes);
// "2025-01-02T03:04:05.123456789Z"
std::string rfc3339_ns(std::chrono::system_clock::time_point at);
// The same for ns since the epoch, with 1 to 9 digits of fraction ("….123Z" with 3).
std::string utc_text(std::int64_t epoch_ns, int fraction_digits);
std::string_view dir_name(Stream towards);  // "up" (towards the server) or "down"
std::string_view end_name(EndKind how);     // "half_close", "close", "reset"
// "journal-000000.jsonl"
std::string journal_file_name(std::uint64_t n);

// ---- line builders (each appends one complete line, `\n` included) ----------------------
namespace line {
void header(std::string& out, std::string_view recording, std::uint64_t file, std::string_view started_wall,
            std::int64_t started_mono_ns, bool redacted);
void open(std::string& out, std::int64_t t, std::uint64_t conn, std::string_view proxy, std::string_view protocol,
          std::string_view client, std::string_view upstream);
// Exactly one of `inline_bytes` (written as b64) or `blob` (its content_address) is used.
void data(std::string& out, std::int64_t t, std::uint64_t conn, Stream dir, std::uint64_t off, std::uint64_t len,
          std::string_view inline_bytes, std::string_view blob);
// `fields`: further JSON members, starting with "kind" (see Annotation in redaction.hpp).
void msg(std::string& out, std::int64_t t, std::uint64_t conn, Stream dir, std::uint64_t off, std::uint64_t len,
         std::string_view fields);
void redaction(std::string& out, std::int64_t t, std::uint64_t conn, Stream dir, std::uint64_t off,
               std::uint64_t len, std::string_view fields);
void end(std::string& out, std::int64_t t, std::uint64_t conn, Stream dir, EndKind how);
void fault(std::string& out, std::int64_t t, std::uint64_t conn, std::string_view toxic, std::string_view type,
           std::string_view what);
void close(std::string& out, std::int64_t t, std::uint64_t conn);
void gap(std::string& out, std::int64_t t, std::uint64_t events, std::uint64_t bytes, std::int64_t since,
         std::int64_t until);
}  // namespace line

// ---- index.json ---------------------------------------------------------------------------
struct IndexFile {
  int version = kIndexVersion;
  std::string id;
  std::vector<std::string> journals;  // file names in the recording directory, in order
  std::string state;                  // "recording", "stopped", "failed"
  std::string started_wall;
  std::optional<std::string> stopped_wall;
  bool redacted = true;
  std::string error;                  // why it failed ("" otherwise)
};

std::string format_index(const IndexFile& index);
// Written to index.json.tmp and renamed over index.json, so a reader (or a crash) never
// sees half an index. False + error (path and reason) on failure. The temporary file is
// created with create_file_at(…, replace = true): a symlink planted under its name is
// removed, never followed.
bool write_index(const std::string& dir, const IndexFile& index, std::string& error);
// The same in the directory open as `dirfd` (`dir` only names it in errors).
bool write_index_at(int dirfd, const std::string& dir, const IndexFile& index, std::string& error);

// Creates the file `name` in the directory open as `dirfd` and opens it with `flags` (plus
// O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode 0644): never through a symlink, never a
// file that was there before. With `replace`, an entry already under that name (a temporary
// file a crash left, a planted symlink) is unlinked first (the link itself, not what it
// points to) and the creation tried again. -1 with errno set on failure. Every file the
// recorder creates is created this way.
int create_file_at(int dirfd, const std::string& name, int flags, bool replace);
// Writes `text` to `name`.tmp in `dirfd` (created as above) and renames it over `name`: a
// reader (or a crash) never sees half a file, and nothing is written through a symlink.
// `dir` only names the directory in errors. write_file_replacing is the same for a path
// (relative to the working directory): port files, drill reports.
bool write_file_at(int dirfd, const std::string& dir, const std::string& name, std::string_view text, std::string& error);
bool write_file_replacing(const std::string& path, std::string_view text, std::string& error);
bool read_index(const std::string& dir, IndexFile& out, std::string& error);

// ---- reading --------------------------------------------------------------------------------
enum class EventType : std::uint8_t { header, open, data, msg, redaction, end, fault, close, gap, unknown };

struct JournalEvent {
  EventType type = EventType::unknown;
  std::string type_name;   // as written ("data", …; a newer writer's types keep theirs)
  std::string file;        // the journal file it came from (path as opened)
  std::uint64_t line = 0;  // 1-based line number in that file
  std::int64_t t = 0;      // ns since the recording started
  std::uint64_t conn = 0;
  Stream dir = Stream::upstream;
  std::uint64_t off = 0;
  std::uint64_t len = 0;
  std::string bytes;       // data: the payload, from b64 or read from its blob
  std::string blob;        // data: the blob's name (content_address) when the payload is a side file
  bool blob_missing = false;  // data: the blob could not be read (bytes empty)
  std::string kind;        // msg
  std::string rule;        // redaction
  EndKind how = EndKind::close;                    // end
  std::string proxy, protocol, client, upstream;   // open
  std::string toxic, fault, what;                  // fault
  std::uint64_t gap_events = 0, gap_bytes = 0;     // gap
  // header
  int version = 0;
  std::string recording;
  std::uint64_t file_no = 0;
  std::string started_wall;
  std::int64_t started_mono_ns = 0;
  bool redacted = false;
  // The line as written, without its `\n`: a msg's decoded fields and anything this
  // reader does not name are read from it (jsonrpc::value_at(raw, "method")).
  std::string raw;
};

// A last line that is not complete: what a crash (kill -9 mid-write) or a full disk leaves.
struct Truncation {
  std::string file;
  std::uint64_t line = 0;         // 1-based number of the partial line
  std::uint64_t byte_offset = 0;  // where it starts in the file
  std::string reason;             // "no trailing newline", "not JSON: …"
};

// Reads one journal file, or a whole recording directory (its journals in index order).
// Never throws: errors are returned; a partial last line is a Truncation, not an error,
// and every complete line before it is returned.
class JournalReader {
 public:
  JournalReader();
  ~JournalReader();
  JournalReader(const JournalReader&) = delete;
  JournalReader& operator=(const JournalReader&) = delete;

  // `path`: a journal file (.jsonl) or a recording directory holding index.json.
  bool open(const std::string& path, std::string& error);
  // The next event (header lines included). False at the end or on an error (error()).
  bool next(JournalEvent& event);
  // Set when a line could not be read (unknown version, a broken line before the last,
  // a missing journal). Reading stops there.
  const std::string& error() const { return error_; }
  const std::vector<Truncation>& truncations() const { return truncations_; }
  // The index when a directory was opened.
  const std::optional<IndexFile>& index() const { return index_; }

 private:
  bool open_file(std::size_t i);
  bool parse_line(std::string_view text, JournalEvent& event, std::string& why);

  std::string dir_;  // recording directory ("" when one file was opened)
  std::vector<std::string> files_;
  std::size_t current_ = 0;
  std::ifstream in_;
  bool in_open_ = false;
  std::uint64_t line_no_ = 0;
  std::uint64_t offset_ = 0;
  bool saw_header_ = false;
  std::string error_;
  std::vector<Truncation> truncations_;
  std::optional<IndexFile> index_;
};

// Convenience: every event of a journal or recording, with what went wrong.
struct JournalContents {
  std::vector<JournalEvent> events;
  std::vector<Truncation> truncations;
  std::string error;
};
JournalContents read_journal(const std::string& path);

}  // namespace faultline::rec
