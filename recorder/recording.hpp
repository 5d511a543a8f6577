// One recording: what the proxies it covers carried, written as a JSON Lines journal
// (docs/journal.md) into a directory. The data path only copies bytes into a bounded
// queue; a writer thread of the recording's own decodes, redacts, formats and writes in
// batches, so a slow disk never stalls traffic. Crash-safe: lines are written whole,
// a batch at most every few milliseconds, and whatever the load every event is in the
// journal or counted in a gap line of it within max_lag (10 ms): a kill -9 loses at most
// that much (and what redaction was holding back).
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/vocabulary.hpp"
#include "recorder/redaction.hpp"

namespace faultline::rec {

struct RecordingOptions {
  std::string dir;                   // created if missing; must be empty or hold no index.json
  std::vector<std::string> proxies;  // empty: every proxy
  bool redact = true;                // `--no-redact` turns it off (loudly)
  RedactionRules rules;              // added to the built-in rules
  std::uint64_t rotate_bytes = 64ull << 20;  // a new journal file after this many bytes…
  Duration rotate_every = std::chrono::hours(1);  // …or this long
  std::uint64_t max_queue_bytes = 64ull << 20;    // queued but unwritten; beyond: a gap…
  bool backpressure = false;  // …or, when true, the connection waits for the writer instead
  std::uint64_t blob_threshold = 64 << 10;        // data chunks above this go to blobs/<xxh3-128 hex>
  Duration flush_every = std::chrono::milliseconds(5);  // a batch gathers this long at most…
  // …and, whatever the load, every event older than this is in the journal or counted in a
  // gap line of it (a kill -9 loses at most this much): the writer drops what it cannot
  // write in time (counted, as for a full queue), and gathers and writes within it. With
  // backpressure the connection waits instead, once the oldest queued event is this old.
  Duration max_lag = std::chrono::milliseconds(10);
  // For tests, on the writer thread: before an event is formatted (with its payload size:
  // sleeping there makes a writer slower than the traffic), and after each whole write(2) to
  // a journal (with its size: when the bytes reached the file).
  std::function<void(std::size_t)> on_format;
  std::function<void(std::size_t)> on_write;
  // The clocks the recorder reads: steady time for queueing, the lag bound, batching and
  // rotation; wall time for the index's started/stopped. Empty: the real clocks (the data
  // path then pays a branch, no call). Tests set them to drive time instead of sleeping.
  std::function<TimePoint()> steady_now;
  std::function<std::chrono::system_clock::time_point()> wall_now;
};

enum class RecordingState : std::uint8_t { recording, stopped, failed };

struct RecordingStatus {
  std::string id;
  std::string dir;
  RecordingState state = RecordingState::recording;
  std::string error;  // why it failed (disk full, unwritable directory, …)
  std::uint64_t connections = 0;
  std::uint64_t events = 0;        // journal lines written
  std::uint64_t bytes = 0;         // payload bytes recorded
  std::uint64_t journal_bytes = 0; // bytes of journal files (and blobs) written
  std::uint64_t gaps = 0;          // gap markers written
  std::uint64_t gap_events = 0;    // events dropped because the writer fell behind
  std::uint64_t gap_bytes = 0;
  std::uint64_t lost_events = 0;   // not recorded because the recording had failed
  std::uint64_t lost_bytes = 0;
  std::vector<std::string> journals;  // file names, in order
  TimePoint started{};
  std::optional<TimePoint> stopped;
};

// What the recorder is told about a connection when it opens.
struct ConnectionMeta {
  std::string proxy;
  Protocol protocol = Protocol::tcp;
  std::string client;    // host:port
  std::string upstream;  // as configured
};

class Recording {
 public:
  // Creates the directory, writes index.json and the first journal's header, starts the
  // writer thread. nullptr + `error` (naming the path and the reason) on failure.
  static std::shared_ptr<Recording> start(std::string id, RecordingOptions options, std::string& error);
  ~Recording();  // stops (as stop()) if still recording

  const std::string& id() const;
  const RecordingOptions& options() const;
  bool covers(std::string_view proxy) const;  // options().proxies empty or containing it

  // ---- data path: any thread, never blocks on I/O, copies what it keeps ----
  // Returns the recording-wide connection id to pass to the calls below.
  std::uint64_t open_connection(const ConnectionMeta& meta, TimePoint at);
  // Bytes delivered towards `towards` (upstream: to the server) at `at`.
  void data(std::uint64_t connection, Stream towards, const void* bytes, std::size_t size, TimePoint at);
  // Whether data() of `size` bytes would be kept now (a hint: false when the queue is full
  // and the recording drops rather than waits, or it stopped). Lets a caller that would
  // have to copy the bytes out of the kernel first skip that and call lost() instead.
  bool wants(std::size_t size) const;
  // `size` bytes delivered but not given to the recording: counted as a gap, as a drop.
  void lost(std::uint64_t connection, Stream towards, std::size_t size, TimePoint at);
  void end(std::uint64_t connection, Stream towards, EndKind how, TimePoint at);
  void fault(std::uint64_t connection, std::string_view toxic, std::string_view type, std::string_view what,
             TimePoint at);
  void close_connection(std::uint64_t connection, TimePoint at);

  // ---- control ----
  // Drains the queue, writes the last lines and the final index; idempotent.
  void stop();
  RecordingStatus status() const;

 private:
  struct Impl;
  explicit Recording(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace faultline::rec
