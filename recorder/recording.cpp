#include "recorder/recording.hpp"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "recorder/journal.hpp"

namespace faultline::rec {

namespace {

// What the data path hands the writer: built outside the lock, moved in.
struct Event {
  enum class Type : std::uint8_t { open, data, end, fault, close };
  Type type = Type::data;
  Stream dir = Stream::upstream;
  EndKind how = EndKind::close;
  Protocol protocol = Protocol::tcp;
  std::uint64_t conn = 0;
  TimePoint at{};
  // Data bytes of this connection dropped (queue full) since its previous queued event,
  // per direction: the writer moves the stream offsets past the hole.
  std::array<std::uint64_t, 2> skipped{0, 0};
  std::string payload;  // data
  std::string a, b, c;  // open: proxy, client, upstream; fault: toxic, type, what
};

// What an event costs in the queue beyond its payload (an estimate: bounds, not accounting).
constexpr std::uint64_t kEventOverhead = sizeof(Event);
// The writer flushes its line buffer when it grows past this within one batch.
constexpr std::size_t kMaxOutBuffer = 4 << 20;
// Connections with dropped bytes not yet attached to a later event; beyond this, holes
// are still counted in gaps but no longer placed in the stream offsets.
constexpr std::size_t kMaxSkipEntries = 1 << 16;

std::size_t idx(Stream s) { return s == Stream::downstream ? 1 : 0; }
Stream dir_of(std::size_t i) { return i == 1 ? Stream::downstream : Stream::upstream; }

std::string random_key() {
  std::string key(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), static_cast<int>(key.size())) != 1) {
    // OpenSSL's generator failing is near impossible; a key from the clock and address
    // still keeps tokens stable within the recording, which is what they are for.
    const auto seed = static_cast<std::uint64_t>(Clock::now().time_since_epoch().count()) ^
                      reinterpret_cast<std::uintptr_t>(&key);
    std::memcpy(key.data(), &seed, sizeof seed);
  }
  return key;
}

struct Direction {
  std::optional<StreamAnnotator> annotator;
  std::string pending;   // bytes not yet final
  std::uint64_t base = 0;  // stream offset of pending[0]
  // Where each delivered chunk of `pending` ends, with its time: held bytes are written
  // with the time they were delivered, piece by piece.
  std::deque<std::pair<std::uint64_t, std::int64_t>> chunks;
  // Annotations waiting until their bytes are written, with the time they were found.
  std::deque<std::pair<Annotation, std::int64_t>> notes;
  bool suppressed = false;  // bytes were lost here and redaction cannot follow the rest
  bool ended = false;
};

struct Conn {
  ConnectionMeta meta;
  std::array<Direction, 2> dirs;
};

}  // namespace

struct Recording::Impl {
  std::string id;
  RecordingOptions options;
  TimePoint started{};
  std::string started_wall;
  std::shared_ptr<Redactor> redactor;
  std::atomic<std::uint64_t> next_conn{1};
  std::atomic<bool> accepting{true};
  std::atomic<std::uint64_t> lost_events{0}, lost_bytes{0};

  // ---- the queue (guarded by mu) ----
  mutable std::mutex mu;
  std::condition_variable cv;
  std::condition_variable space_cv;  // backpressure: producers wait here for room
  std::vector<Event> queue;
  // Written under `mu`; atomic so that would_drop() can read it without taking the lock.
  std::atomic<std::uint64_t> queued_bytes{0};
  std::uint64_t wake_bytes = 1;
  bool stopping = false;
  bool writer_idle = false;
  bool big_notified = false;
  std::uint64_t drop_events = 0, drop_bytes = 0;  // since the writer last took them
  TimePoint first_drop{}, last_drop{};
  std::uint64_t total_drop_events = 0, total_drop_bytes = 0;
  std::unordered_map<std::uint64_t, std::array<std::uint64_t, 2>> skipped;

  // ---- the writer's own ----
  std::thread writer;
  std::string dir;
  int fd = -1;
  std::string journal_path;
  std::uint64_t file_no = 0;
  std::uint64_t file_bytes = 0;
  std::uint64_t lines_in_file = 0;  // event lines (not the header), written or buffered
  TimePoint file_started{};
  bool rotate_due = false;
  std::string out;
  std::uint64_t out_lines = 0;
  // Payload of the data lines in `out`, with where each line ends: `bytes` in the status
  // counts payload once its line is on disk, and what never gets there is `lost_bytes`.
  std::uint64_t out_payload = 0;
  std::vector<std::pair<std::size_t, std::uint64_t>> out_data_ends;
  std::unordered_map<std::uint64_t, Conn> conns;
  bool blob_dir_made = false;
  bool failed = false;
  std::vector<Annotation> anns;
  // A gap line waits until the writer catches up (a batch with no new drops).
  std::uint64_t gap_events = 0, gap_bytes = 0;
  std::int64_t gap_since = 0, gap_until = 0;
  IndexFile index;

  // ---- status (guarded by status_mu) ----
  mutable std::mutex status_mu;
  RecordingStatus status;

  std::mutex stop_mu;
  bool stop_done = false;

  std::int64_t t(TimePoint at) const {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(at - started).count();
    return ns < 0 ? 0 : static_cast<std::int64_t>(ns);
  }

  // ---- data path ----

  void drop_locked(const Event& e, std::uint64_t payload) {
    if (drop_events == 0) first_drop = e.at;
    last_drop = e.at;
    ++drop_events;
    drop_bytes += payload;
    ++total_drop_events;
    total_drop_bytes += payload;
    if (e.type == Event::Type::data) {
      auto it = skipped.find(e.conn);
      if (it != skipped.end()) it->second[idx(e.dir)] += payload;
      else if (skipped.size() < kMaxSkipEntries) skipped.emplace(e.conn, std::array<std::uint64_t, 2>{}).first->second[idx(e.dir)] += payload;
    }
  }

  // Would `payload` bytes of data be dropped now (the queue full, no backpressure)? Lets
  // the data path skip copying what would be thrown away; a hint, read without the lock
  // (push() decides for real), so the data path still takes `mu` once per event.
  bool would_drop(std::uint64_t payload) const {
    return !options.backpressure &&
           queued_bytes.load(std::memory_order_relaxed) + payload + kEventOverhead > options.max_queue_bytes;
  }

  void drop_data(std::uint64_t conn, Stream towards, std::uint64_t payload, TimePoint at) {
    Event e;
    e.type = Event::Type::data;
    e.conn = conn;
    e.dir = towards;
    e.at = at;
    std::lock_guard lock(mu);
    if (stopping) return;
    drop_locked(e, payload);
  }

  void push(Event&& e, std::uint64_t payload) {
    const std::uint64_t cost = payload + kEventOverhead + e.a.size() + e.b.size() + e.c.size();
    bool notify = false;
    {
      std::unique_lock lock(mu);
      if (stopping) return;
      if (options.backpressure && queued_bytes + cost > options.max_queue_bytes && queued_bytes > 0) {
        // The user chose to slow traffic rather than lose events: this connection's thread
        // waits for the writer (TCP then pushes back on the peers). A failed or stopping
        // recording never holds anyone.
        if (writer_idle) {
          writer_idle = false;
          cv.notify_one();
        }
        space_cv.wait(lock, [&] {
          return stopping || failed_flag.load(std::memory_order_relaxed) || queued_bytes + cost <= options.max_queue_bytes ||
                 queued_bytes == 0;
        });
        if (stopping || failed_flag.load(std::memory_order_relaxed)) return;
      }
      if (queued_bytes + cost > options.max_queue_bytes) {
        drop_locked(e, payload);  // the writer is behind: drop and count, never grow
        return;
      }
      if (!skipped.empty()) {
        if (auto it = skipped.find(e.conn); it != skipped.end()) {
          e.skipped = it->second;
          skipped.erase(it);
        }
      }
      queued_bytes += cost;
      queue.push_back(std::move(e));
      if (writer_idle) {
        writer_idle = false;
        notify = true;
      } else if (!big_notified && queued_bytes >= wake_bytes) {
        big_notified = true;
        notify = true;
      }
    }
    if (notify) cv.notify_one();
  }

  bool accept(std::uint64_t payload) {
    if (accepting.load(std::memory_order_relaxed)) return true;
    if (failed_flag.load(std::memory_order_relaxed)) {
      lost_events.fetch_add(1, std::memory_order_relaxed);
      lost_bytes.fetch_add(payload, std::memory_order_relaxed);
    }
    return false;
  }
  std::atomic<bool> failed_flag{false};

  // ---- failure ----

  void fail(std::string error) {
    if (failed) return;
    failed = true;
    failed_flag.store(true, std::memory_order_relaxed);
    accepting.store(false, std::memory_order_relaxed);
    {
      std::lock_guard lock(mu);  // a producer waiting for room must see the failure
    }
    space_cv.notify_all();
    spdlog::error("recording {}: stopped recording: {}", id, error);
    {
      std::lock_guard lock(status_mu);
      status.state = RecordingState::failed;
      status.error = error;
    }
    index.state = "failed";
    index.error = error;
    std::string ignored;
    write_index(dir, index, ignored);  // best effort: the disk may be what failed
  }

  // ---- writing ----

  // Writes `buf` whole, or fails the recording. A write cut short (ENOSPC mid-buffer) is
  // cut back to the last whole line, so the journal never ends in half a line silently.
  bool write_all(const std::string& buf, std::size_t* whole_written = nullptr) {
    std::size_t done = 0;
    while (done < buf.size()) {
      const ssize_t n = ::write(fd, buf.data() + done, buf.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int err = n < 0 ? errno : EIO;
        const std::size_t last_nl = done == 0 ? std::string::npos : buf.rfind('\n', done - 1);
        const std::size_t whole = last_nl == std::string::npos ? 0 : last_nl + 1;
        std::string error = journal_path + ": " + std::strerror(err);
        if (done > whole) {
          if (::ftruncate(fd, static_cast<off_t>(file_bytes + whole)) == 0) {
            error += " (the partial last line was cut off)";
          } else {
            error += " (a partial line remains at byte " + std::to_string(file_bytes + whole) + ")";
          }
        }
        const auto lines = static_cast<std::uint64_t>(std::count(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(whole), '\n'));
        file_bytes += whole;
        {
          std::lock_guard lock(status_mu);
          status.journal_bytes += whole;
          status.events += lines;
        }
        if (whole_written) *whole_written = whole;
        fail(std::move(error));
        return false;
      }
      done += static_cast<std::size_t>(n);
    }
    file_bytes += done;
    std::lock_guard lock(status_mu);
    status.journal_bytes += done;
    return true;
  }

  void flush_out() {
    std::size_t whole = 0;
    if (!out.empty() && !failed && write_all(out, &whole)) {
      std::lock_guard lock(status_mu);
      status.events += out_lines;
      status.bytes += out_payload;
    } else if (!out.empty()) {
      // Not written (the recording failed before or during this write): the lines that
      // reached the disk count as recorded, the rest as lost.
      std::uint64_t written_payload = 0;
      for (const auto& [end, payload] : out_data_ends) {
        if (end <= whole) written_payload += payload;
      }
      const auto written_lines = static_cast<std::uint64_t>(
          std::count(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(whole), '\n'));
      lost_events.fetch_add(out_lines - std::min(out_lines, written_lines), std::memory_order_relaxed);
      lost_bytes.fetch_add(out_payload - written_payload, std::memory_order_relaxed);
      std::lock_guard lock(status_mu);
      status.bytes += written_payload;
    }
    out.clear();
    out_lines = 0;
    out_payload = 0;
    out_data_ends.clear();
  }

  bool open_journal(std::uint64_t n, std::string& error) {
    const std::string name = journal_file_name(n);
    const std::string path = dir + "/" + name;
    // O_EXCL: a journal is never appended to by a second recording.
    const int f = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
    if (f < 0) {
      error = path + ": " + std::strerror(errno);
      return false;
    }
    if (fd >= 0) ::close(fd);
    fd = f;
    journal_path = path;
    file_no = n;
    file_bytes = 0;
    lines_in_file = 0;
    file_started = Clock::now();
    std::string header;
    line::header(header, id, n, started_wall, started.time_since_epoch().count(), redactor != nullptr);
    if (!write_all(header)) {
      error = status_error();
      return false;
    }
    {
      std::lock_guard lock(status_mu);
      status.events += 1;
      status.journals.push_back(name);
    }
    index.journals.push_back(name);
    if (!write_index(dir, index, error)) return false;
    return true;
  }

  std::string status_error() const {
    std::lock_guard lock(status_mu);
    return status.error;
  }

  void rotate() {
    flush_out();
    if (failed) return;
    std::string error;
    if (!open_journal(file_no + 1, error)) fail(error);
    rotate_due = false;
  }

  // Called before each line is appended to `out`.
  void line_begin() {
    if (lines_in_file > 0 &&
        (rotate_due || file_bytes + out.size() >= options.rotate_bytes)) {
      rotate();
    }
    if (out.size() >= kMaxOutBuffer) flush_out();
    ++lines_in_file;
    ++out_lines;
  }

  // False with `error` set when the blob cannot be written; the caller fails the recording
  // after writing the lines already formatted.
  bool write_blob(std::string_view bytes, const std::string& name, std::string& error) {
    const std::string blobs = dir + "/" + std::string(kBlobDir);
    if (!blob_dir_made) {
      if (::mkdir(blobs.c_str(), 0755) != 0 && errno != EEXIST) {
        error = blobs + ": " + std::strerror(errno);
        return false;
      }
      blob_dir_made = true;
    }
    const std::string path = blobs + "/" + name;
    struct stat st{};
    if (::stat(path.c_str(), &st) == 0) return true;  // content-addressed: written once
    // Written under a temporary name and renamed, so a blob's name always means its bytes.
    const std::string tmp = blobs + "/.tmp-" + name;
    const int f = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f < 0) {
      error = tmp + ": " + std::strerror(errno);
      return false;
    }
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::write(f, bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int err = n < 0 ? errno : EIO;
        ::close(f);
        ::unlink(tmp.c_str());
        error = tmp + ": " + std::strerror(err);
        return false;
      }
      done += static_cast<std::size_t>(n);
    }
    if (::close(f) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
      const int err = errno;
      ::unlink(tmp.c_str());
      error = path + ": " + std::strerror(err);
      return false;
    }
    std::lock_guard lock(status_mu);
    status.journal_bytes += bytes.size();
    return true;
  }

  // ---- events ----

  void writer_drop(std::uint64_t bytes, TimePoint at) {
    if (gap_events == 0) gap_since = t(at);
    gap_until = t(at);
    ++gap_events;
    gap_bytes += bytes;
    std::lock_guard lock(mu);
    ++total_drop_events;
    total_drop_bytes += bytes;
  }

  void write_gap() {
    if (gap_events == 0 || failed) return;
    line_begin();
    line::gap(out, t(Clock::now()), gap_events, gap_bytes, gap_since, gap_until);
    gap_events = 0;
    gap_bytes = 0;
    std::lock_guard lock(status_mu);
    ++status.gaps;
  }

  void flush_notes(std::uint64_t conn, Stream s, Direction& d, bool all) {
    const std::size_t n = d.notes.size();
    for (std::size_t i = 0; i < n; ++i) {
      auto note = std::move(d.notes.front());
      d.notes.pop_front();
      const Annotation& a = note.first;
      if (!all && a.offset + a.length > d.base) {
        d.notes.push_back(std::move(note));  // its bytes are not written yet
        continue;
      }
      line_begin();
      if (a.kind == Annotation::Kind::redaction) {
        line::redaction(out, note.second, conn, s, a.offset, a.length, a.fields);
      } else {
        line::msg(out, note.second, conn, s, a.offset, a.length, a.fields);
      }
    }
  }

  // Writes the first `n` pending bytes (final now) as data lines, one per delivered chunk.
  void emit(std::uint64_t conn, Stream s, Direction& d, std::size_t n, std::int64_t at) {
    const std::uint64_t upto = d.base + n;
    std::size_t pos = 0;
    while (d.base < upto) {
      std::uint64_t chunk_end = upto;
      std::int64_t chunk_t = at;
      if (!d.chunks.empty()) {
        chunk_end = std::min(d.chunks.front().first, upto);
        chunk_t = d.chunks.front().second;
      }
      const auto len = static_cast<std::size_t>(chunk_end - d.base);
      const std::string_view bytes(d.pending.data() + pos, len);
      if (len > options.blob_threshold) {
        const std::string name = content_address(bytes);
        std::string error;
        if (!write_blob(bytes, name, error)) {
          // The lines before this chunk are whole and valid: write them, then stop. What is
          // still pending (this chunk on) is counted lost when the writer ends.
          d.pending.erase(0, pos);
          flush_out();
          fail(std::move(error));
          return;
        }
        line_begin();
        line::data(out, chunk_t, conn, s, d.base, len, {}, name);
      } else {
        line_begin();
        line::data(out, chunk_t, conn, s, d.base, len, bytes, {});
      }
      out_payload += len;
      out_data_ends.emplace_back(out.size(), len);
      pos += len;
      d.base = chunk_end;
      if (!d.chunks.empty() && d.chunks.front().first <= chunk_end) d.chunks.pop_front();
    }
    d.pending.erase(0, n);
  }

  void take_notes(Direction& d, std::int64_t at) {
    for (auto& a : anns) d.notes.emplace_back(std::move(a), at);
    anns.clear();
  }

  // Everything pending in a direction is final (it ended, the connection closed, the
  // recording stops, or bytes were lost after it).
  void settle(std::uint64_t conn, Stream s, Direction& d, std::int64_t at) {
    if (d.annotator) d.annotator->finish(d.pending, d.base, anns);
    take_notes(d, at);
    emit(conn, s, d, d.pending.size(), at);
    flush_notes(conn, s, d, true);
  }

  void skip(std::uint64_t conn, Conn& c, std::size_t i, std::uint64_t bytes, std::int64_t at) {
    Direction& d = c.dirs[i];
    const Stream s = dir_of(i);
    if (d.suppressed) {
      d.base += bytes;
      return;
    }
    settle(conn, s, d, at);
    d.base += bytes;
    d.chunks.clear();
    std::string reason = "gap: " + std::to_string(bytes) + " bytes were not recorded";
    if (redactor && c.meta.protocol != Protocol::tcp) {
      // Decoding cannot resume mid-message, and undecoded HTTP or RESP could carry a
      // secret the rules would have caught: nothing more of this direction is recorded.
      d.suppressed = true;
      reason += "; the rest of this direction is not recorded (redaction cannot follow it)";
    } else {
      d.annotator.emplace(Protocol::tcp, s, redactor);
    }
    line_begin();
    line::msg(out, at, conn, s, d.base, 0, "\"kind\":\"undecodable\",\"reason\":" + json_string(reason));
  }

  void apply_skips(const Event& e, Conn& c, std::int64_t at) {
    for (std::size_t i = 0; i < 2; ++i) {
      if (e.skipped[i]) skip(e.conn, c, i, e.skipped[i], at);
    }
  }

  void handle(Event& e) {
    const std::int64_t at = t(e.at);
    switch (e.type) {
      case Event::Type::open: {
        auto [it, fresh] = conns.try_emplace(e.conn);
        Conn& c = it->second;
        c.meta.proxy = std::move(e.a);
        c.meta.client = std::move(e.b);
        c.meta.upstream = std::move(e.c);
        c.meta.protocol = e.protocol;
        for (std::size_t i = 0; i < 2; ++i) c.dirs[i].annotator.emplace(e.protocol, dir_of(i), redactor);
        StreamAnnotator::pair(*c.dirs[0].annotator, *c.dirs[1].annotator);
        line_begin();
        line::open(out, at, e.conn, c.meta.proxy, protocol_name(c.meta.protocol), c.meta.client, c.meta.upstream);
        if (fresh) {
          std::lock_guard lock(status_mu);
          ++status.connections;
        }
        break;
      }
      case Event::Type::data: {
        auto it = conns.find(e.conn);
        if (it == conns.end()) {  // its open was dropped: nothing of it can be redacted safely
          writer_drop(e.payload.size(), e.at);
          break;
        }
        Conn& c = it->second;
        apply_skips(e, c, at);
        Direction& d = c.dirs[idx(e.dir)];
        if (d.suppressed || e.payload.empty()) {
          if (d.suppressed) writer_drop(e.payload.size(), e.at);
          break;
        }
        // Most of the time nothing is held: take the event's buffer instead of copying it.
        if (d.pending.empty()) d.pending.swap(e.payload);
        else d.pending += e.payload;
        d.chunks.emplace_back(d.base + d.pending.size(), at);
        const std::size_t n = d.annotator->process(d.pending, d.base, anns);
        take_notes(d, at);
        emit(e.conn, e.dir, d, n, at);
        flush_notes(e.conn, e.dir, d, false);
        break;
      }
      case Event::Type::end: {
        auto it = conns.find(e.conn);
        if (it == conns.end()) {
          writer_drop(0, e.at);
          break;
        }
        Conn& c = it->second;
        apply_skips(e, c, at);
        Direction& d = c.dirs[idx(e.dir)];
        if (!d.suppressed) settle(e.conn, e.dir, d, at);
        d.ended = true;
        line_begin();
        line::end(out, at, e.conn, e.dir, e.how);
        break;
      }
      case Event::Type::fault: {
        // Written even for a connection whose open was dropped: a fault line carries no
        // traffic, and it is what the user most wants to see.
        line_begin();
        line::fault(out, at, e.conn, e.a, e.b, e.c);
        break;
      }
      case Event::Type::close: {
        auto it = conns.find(e.conn);
        if (it == conns.end()) {
          writer_drop(0, e.at);
          break;
        }
        Conn& c = it->second;
        apply_skips(e, c, at);
        for (std::size_t i = 0; i < 2; ++i) {
          if (!c.dirs[i].suppressed && !c.dirs[i].ended) settle(e.conn, dir_of(i), c.dirs[i], at);
        }
        line_begin();
        line::close(out, at, e.conn);
        conns.erase(it);
        break;
      }
    }
  }

  void process_batch(std::vector<Event>& batch, std::uint64_t dropped, std::uint64_t dropped_bytes,
                     TimePoint first, TimePoint last) {
    if (failed) {
      std::uint64_t bytes = 0;
      for (const Event& e : batch) bytes += e.payload.size();
      lost_events.fetch_add(batch.size(), std::memory_order_relaxed);
      lost_bytes.fetch_add(bytes, std::memory_order_relaxed);
      return;
    }
    if (dropped) {
      if (gap_events == 0) gap_since = t(first);
      gap_until = t(last);
      gap_events += dropped;
      gap_bytes += dropped_bytes;
    }
    rotate_due = Clock::now() - file_started >= options.rotate_every;
    for (Event& e : batch) {
      if (failed) {  // the rest of the batch is lost, and counted
        lost_events.fetch_add(1, std::memory_order_relaxed);
        lost_bytes.fetch_add(e.payload.size(), std::memory_order_relaxed);
        continue;
      }
      handle(e);
    }
    if (gap_events) {
      // Caught up when nothing was dropped while this batch was written: one gap line
      // then stands for the whole stretch of drops, before anything queued after it.
      bool caught_up = false;
      {
        std::lock_guard lock(mu);
        caught_up = drop_events == 0;
      }
      if (caught_up) write_gap();
    }
    flush_out();
  }

  void run() {
    // Below the proxy's workers: when the cores are busy, traffic goes first and the
    // recording falls behind into counted gaps (or, with backpressure, slows traffic on
    // its own terms), instead of the writer taking CPU the relay needed. Best effort.
    ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10);
    try {
      loop();
    } catch (const std::exception& e) {
      fail(std::string("recorder error: ") + e.what());
    } catch (...) {
      fail("recorder error");
    }
  }

  void loop() {
    std::vector<Event> batch;
    for (;;) {
      std::uint64_t dropped = 0, dropped_bytes = 0;
      TimePoint first{}, last{};
      bool stop_now = false;
      {
        std::unique_lock lock(mu);
        if (!stopping && queue.empty()) {
          writer_idle = true;
          cv.wait(lock, [&] { return stopping || !queue.empty(); });
          writer_idle = false;
        }
        // Let a batch gather: one write every flush_every, or sooner when it is big.
        if (!stopping && queued_bytes < wake_bytes) {
          cv.wait_for(lock, options.flush_every, [&] { return stopping || queued_bytes >= wake_bytes; });
        }
        batch.swap(queue);
        queued_bytes = 0;
        space_cv.notify_all();
        big_notified = false;
        dropped = drop_events;
        dropped_bytes = drop_bytes;
        first = first_drop;
        last = last_drop;
        drop_events = 0;
        drop_bytes = 0;
        stop_now = stopping;
      }
      process_batch(batch, dropped, dropped_bytes, first, last);
      batch.clear();
      if (stop_now) break;
    }
    if (failed) {
      // Bytes the decoders still held when the recording failed never reach the journal.
      std::uint64_t held = 0;
      for (const auto& [conn, c] : conns) {
        for (const Direction& d : c.dirs) held += d.pending.size();
      }
      lost_bytes.fetch_add(held, std::memory_order_relaxed);
      return;
    }
    // Stopping: what connections still hold is written; they are not closed (they were
    // not), so no close lines.
    for (auto& [conn, c] : conns) {
      for (std::size_t i = 0; i < 2; ++i) {
        if (!c.dirs[i].suppressed && !c.dirs[i].ended) settle(conn, dir_of(i), c.dirs[i], t(Clock::now()));
      }
    }
    conns.clear();
    write_gap();
    flush_out();
  }
};

std::shared_ptr<Recording> Recording::start(std::string id, RecordingOptions options, std::string& error) {
  try {
    auto impl = std::make_unique<Impl>();
    Impl& m = *impl;
    m.id = std::move(id);
    m.options = std::move(options);
    m.dir = m.options.dir;
    if (m.dir.empty()) {
      error = "recording: no directory given";
      return nullptr;
    }
    if (m.options.max_queue_bytes == 0) m.options.max_queue_bytes = 1;
    m.wake_bytes = std::max<std::uint64_t>(1, m.options.max_queue_bytes / 4);
    if (m.options.rotate_bytes == 0) m.options.rotate_bytes = 1;
    if (m.options.flush_every <= Duration::zero()) m.options.flush_every = std::chrono::milliseconds(1);

    std::error_code ec;
    std::filesystem::create_directories(m.dir, ec);
    if (ec) {
      error = m.dir + ": " + ec.message();
      return nullptr;
    }
    if (!std::filesystem::is_directory(m.dir, ec)) {
      error = m.dir + ": " + std::strerror(ENOTDIR);
      return nullptr;
    }
    if (std::filesystem::exists(m.dir + "/" + std::string(kIndexFile), ec)) {
      error = m.dir + ": already holds a recording (index.json)";
      return nullptr;
    }
    if (m.options.redact) {
      m.redactor = Redactor::make(random_key(), m.options.rules, error);
      if (!m.redactor) return nullptr;
    }
    m.started = Clock::now();
    m.started_wall = rfc3339_ns(std::chrono::system_clock::now());
    m.index.id = m.id;
    m.index.state = "recording";
    m.index.started_wall = m.started_wall;
    m.index.redacted = m.options.redact;
    m.status.id = m.id;
    m.status.dir = m.dir;
    m.status.started = m.started;
    if (!m.open_journal(0, error)) {
      if (m.fd >= 0) ::close(m.fd);
      return nullptr;
    }
    if (!m.options.redact) {
      spdlog::warn("recording {}: redaction is OFF: credentials and secrets are written to {} as sent", m.id, m.dir);
    }
    m.writer = std::thread([p = impl.get()] { p->run(); });
    return std::shared_ptr<Recording>(new Recording(std::move(impl)));
  } catch (const std::exception& e) {
    error = "recording: " + std::string(e.what());
    return nullptr;
  }
}

Recording::Recording(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Recording::~Recording() { stop(); }

const std::string& Recording::id() const { return impl_->id; }
const RecordingOptions& Recording::options() const { return impl_->options; }

bool Recording::covers(std::string_view proxy) const {
  const auto& p = impl_->options.proxies;
  return p.empty() || std::find(p.begin(), p.end(), proxy) != p.end();
}

std::uint64_t Recording::open_connection(const ConnectionMeta& meta, TimePoint at) {
  Impl& m = *impl_;
  const std::uint64_t conn = m.next_conn.fetch_add(1, std::memory_order_relaxed);
  if (!m.accept(0)) return conn;
  try {
    Event e;
    e.type = Event::Type::open;
    e.conn = conn;
    e.at = at;
    e.protocol = meta.protocol;
    e.a = meta.proxy;
    e.b = meta.client;
    e.c = meta.upstream;
    m.push(std::move(e), 0);
  } catch (...) {
    // Out of memory on the data path: the event is lost, the traffic is not.
    m.lost_events.fetch_add(1, std::memory_order_relaxed);
  }
  return conn;
}

void Recording::data(std::uint64_t connection, Stream towards, const void* bytes, std::size_t size, TimePoint at) {
  Impl& m = *impl_;
  if (!m.accept(size)) return;
  if (m.would_drop(size)) {  // counted as a gap without copying a byte
    m.drop_data(connection, towards == Stream::downstream ? Stream::downstream : Stream::upstream, size, at);
    return;
  }
  try {
    Event e;
    e.type = Event::Type::data;
    e.conn = connection;
    e.dir = towards == Stream::downstream ? Stream::downstream : Stream::upstream;
    e.at = at;
    e.payload.assign(static_cast<const char*>(bytes), size);
    m.push(std::move(e), size);
  } catch (...) {
    m.lost_events.fetch_add(1, std::memory_order_relaxed);
    m.lost_bytes.fetch_add(size, std::memory_order_relaxed);
  }
}

bool Recording::wants(std::size_t size) const { return impl_->accepting.load(std::memory_order_relaxed) && !impl_->would_drop(size); }

void Recording::lost(std::uint64_t connection, Stream towards, std::size_t size, TimePoint at) {
  Impl& m = *impl_;
  if (!m.accept(size)) return;
  m.drop_data(connection, towards == Stream::downstream ? Stream::downstream : Stream::upstream, size, at);
}

void Recording::end(std::uint64_t connection, Stream towards, EndKind how, TimePoint at) {
  Impl& m = *impl_;
  if (!m.accept(0)) return;
  try {
    Event e;
    e.type = Event::Type::end;
    e.conn = connection;
    e.dir = towards == Stream::downstream ? Stream::downstream : Stream::upstream;
    e.how = how;
    e.at = at;
    m.push(std::move(e), 0);
  } catch (...) {
    m.lost_events.fetch_add(1, std::memory_order_relaxed);
  }
}

void Recording::fault(std::uint64_t connection, std::string_view toxic, std::string_view type, std::string_view what,
                      TimePoint at) {
  Impl& m = *impl_;
  if (!m.accept(0)) return;
  try {
    Event e;
    e.type = Event::Type::fault;
    e.conn = connection;
    e.at = at;
    e.a = toxic;
    e.b = type;
    e.c = what;
    m.push(std::move(e), 0);
  } catch (...) {
    m.lost_events.fetch_add(1, std::memory_order_relaxed);
  }
}

void Recording::close_connection(std::uint64_t connection, TimePoint at) {
  Impl& m = *impl_;
  if (!m.accept(0)) return;
  try {
    Event e;
    e.type = Event::Type::close;
    e.conn = connection;
    e.at = at;
    m.push(std::move(e), 0);
  } catch (...) {
    m.lost_events.fetch_add(1, std::memory_order_relaxed);
  }
}

void Recording::stop() {
  Impl& m = *impl_;
  std::lock_guard stop_lock(m.stop_mu);
  if (m.stop_done) return;
  m.stop_done = true;
  {
    std::lock_guard lock(m.mu);
    m.stopping = true;
  }
  m.cv.notify_one();
  m.space_cv.notify_all();
  if (m.writer.joinable()) m.writer.join();
  m.accepting.store(false, std::memory_order_relaxed);
  const auto stopped_wall = rfc3339_ns(std::chrono::system_clock::now());
  m.index.stopped_wall = stopped_wall;
  if (!m.failed) {
    m.index.state = "stopped";
    std::string error;
    if (!write_index(m.dir, m.index, error)) m.fail(error);
  } else {
    std::string ignored;
    write_index(m.dir, m.index, ignored);
  }
  if (m.fd >= 0) {
    ::close(m.fd);
    m.fd = -1;
  }
  std::lock_guard lock(m.status_mu);
  if (!m.failed) m.status.state = RecordingState::stopped;
  m.status.stopped = Clock::now();
}

RecordingStatus Recording::status() const {
  const Impl& m = *impl_;
  RecordingStatus s;
  {
    std::lock_guard lock(m.status_mu);
    s = m.status;
  }
  {
    std::lock_guard lock(m.mu);
    s.gap_events = m.total_drop_events;
    s.gap_bytes = m.total_drop_bytes;
  }
  s.lost_events = m.lost_events.load(std::memory_order_relaxed);
  s.lost_bytes = m.lost_bytes.load(std::memory_order_relaxed);
  return s;
}

}  // namespace faultline::rec
