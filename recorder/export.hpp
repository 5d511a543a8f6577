// Exporters: a recording (a directory or one journal) turned into something other tools
// open. `har` rebuilds the HTTP exchanges (HAR 1.2, SSE events and faults in `_` fields),
// `pcapng` makes up TCP/IP packets around the recorded bytes so Wireshark decodes them
// (faults and redactions as packet comments), `text` prints a timeline for a terminal.
// Everything is read through JournalReader; docs/export.md says what maps to what.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace faultline::rec {

enum class Format : std::uint8_t { har, pcapng, text };

// "har", "pcapng", "text"; nullopt for anything else.
std::optional<Format> parse_format(std::string_view name);
std::string_view format_name(Format format);

// Why an export failed, so a caller can pick an exit code without reading messages.
enum class ExportFailure : std::uint8_t {
  none,
  unreadable,  // the recording could not be opened or read (a missing file, a broken line)
  version,     // a journal or index is of a version this build does not know
  output,      // writing the output failed
};

// What an export did, for the caller to report.
struct ExportSummary {
  ExportFailure failure = ExportFailure::none;
  std::uint64_t events = 0;       // journal lines read (headers included)
  std::uint64_t connections = 0;  // connections seen (after the filter)
  std::uint64_t exported = 0;     // har: entries; pcapng: packets; text: lines
  std::uint64_t skipped = 0;      // har: connections that are not HTTP
  std::uint64_t truncated = 0;    // journals whose last line was incomplete
};

struct ExportOptions {
  // Only this connection (the journal's `conn`); lines that belong to no connection
  // (gaps) are kept. Every format honours it.
  std::optional<std::uint64_t> connection;
  // text: ANSI colours. The library never looks at the terminal; the caller decides.
  bool color = false;
  // har: log.creator.version.
  std::string creator_version = "unknown";
  // Things the user should know that do not stop the export (an incomplete last line,
  // a connection that is not HTTP in a HAR, bytes missing from a recording). One message
  // per call, no trailing newline. Unset: warnings are dropped.
  std::function<void(const std::string&)> warn;
  // Filled in when set.
  ExportSummary* summary = nullptr;
};

// Reads `input` (a recording directory holding index.json, or one .jsonl journal) and
// writes it to `out` in `format`. False + `error` (the reader's message for unreadable or
// unknown-version input) when nothing useful could be written; `out` may then hold part
// of an export, so callers writing a file should write it aside and rename on success.
// Never throws.
bool export_recording(Format format, const std::string& input, std::ostream& out, const ExportOptions& options,
                      std::string& error);

}  // namespace faultline::rec
