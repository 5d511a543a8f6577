#include "recorder/recording.hpp"

#include <fcntl.h>
#include <openssl/rand.h>
#include <pthread.h>
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
  TimePoint queued{};  // when it was handed to the recording: its age for the time bound
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
  bool strict = false;      // a hole suppresses the rest (a message protocol, redacted)
  bool ended = false;
  // Bytes the writer dropped itself (too old to write in time), placed in the offsets with
  // the next event of the connection, as a hole the data path left is.
  std::uint64_t hole = 0;
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
  // Held from numbering a connection to queueing its open line: two workers opening
  // connections at once must not queue them out of order (a journal's connections are
  // numbered in the order their open lines appear).
  std::mutex open_mu;
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
  TimePoint first_drop_queued{};  // when the first of them was dropped (steady clock)
  std::uint64_t total_drop_events = 0, total_drop_bytes = 0;
  std::unordered_map<std::uint64_t, std::array<std::uint64_t, 2>> skipped;
  // Steady-clock ns of the oldest queued event's time, 0 while the queue is empty. Written
  // under `mu`; atomic so that would_drop() can read it without the lock.
  std::atomic<std::int64_t> queue_oldest_ns{0};
  // The time bound (options.max_lag), in parts (start()): a batch gathers at most `gather`
  // after its first event; every event must be written by `deadline` after it was queued
  // (max_lag less a margin for the write itself and the scheduler), and one that the writer
  // cannot write by then (at the speed it has been going) is dropped instead, counted in a
  // gap; formatted lines are written once the oldest is `flush_after` old, or sooner when
  // the next event would make them late; the data path drops new data while the oldest
  // queued event is `stuck_after` old (the writer is not taking the queue).
  Duration gather{}, deadline{}, flush_after{}, stuck_after{};
  // The writer's speed, measured (moving averages, writer only): an event costs it
  // `per_event_ns` plus `per_byte_ns` per payload byte. Published (rounded) for the data
  // path, which adds up what the queue holds in the same terms: the queue takes no more
  // than the writer can write in 3/10 of the bound (`work_budget_ns`), whatever the bytes.
  double per_event_ns = 2000, per_byte_ns = 1.0;
  double write_byte_ns = 0.5;  // a write(2) of formatted lines, per byte of them
  std::atomic<std::int64_t> cost_event_ns{2000}, cost_byte_ps{1000};
  std::atomic<std::int64_t> queued_work_ns{0};  // written under `mu`
  std::int64_t work_budget_ns = 0;
  // Events and bytes the writer dropped itself (read by status() without the lock).
  std::atomic<std::uint64_t> writer_drop_events{0}, writer_drop_bytes{0};

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
  // The time of the oldest event whose lines are in `out` (set when `out_dated`).
  TimePoint out_oldest{};
  bool out_dated = false;
  std::string out;
  std::uint64_t out_lines = 0;
  // Payload of the data lines in `out`, with where each line ends: `bytes` in the status
  // counts payload once its line is on disk, and what never gets there is `lost_bytes`.
  std::uint64_t out_payload = 0;
  std::vector<std::pair<std::size_t, std::uint64_t>> out_data_ends;
  std::unordered_map<std::uint64_t, Conn> conns;
  int dir_fd = -1;    // the recording directory: every file is created in it, by name
  int blobs_fd = -1;  // blobs/, once made
  bool reserve_held = false;  // kReserveFile holds room for the last index (see fail())
  // A blob still being written after this is abandoned (its event becomes a hole): a slow
  // disk must not make the lines waiting behind it late.
  TimePoint blob_deadline = TimePoint::max();
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

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() {
    for (int f : {fd, blobs_fd, dir_fd}) {
      if (f >= 0) ::close(f);
    }
  }

  TimePoint steady_time() const { return options.steady_now ? options.steady_now() : Clock::now(); }
  std::chrono::system_clock::time_point wall_time() const {
    return options.wall_now ? options.wall_now() : std::chrono::system_clock::now();
  }

  std::int64_t t(TimePoint at) const {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(at - started).count();
    return ns < 0 ? 0 : static_cast<std::int64_t>(ns);
  }

  // ---- data path ----

  void drop_locked(const Event& e, std::uint64_t payload) {
    if (drop_events == 0) {
      first_drop = e.at;
      first_drop_queued = steady_time();
      if (writer_idle) {  // the gap line is due within max_lag even if nothing else comes
        writer_idle = false;
        cv.notify_one();
      }
    }
    last_drop = e.at;
    ++drop_events;
    drop_bytes += payload;
    ++total_drop_events;
    total_drop_bytes += payload;
    // The hole is handed to the connection's next queued event, which places it in the
    // stream offsets. No cap: a connection's close is never dropped (see push()), so an
    // entry lives at most as long as its connection.
    if (e.type == Event::Type::data) skipped[e.conn][idx(e.dir)] += payload;
  }

  static std::int64_t ns_of(TimePoint at) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch()).count();
  }

  // The oldest queued event is older than `limit` at `now`: the writer is not keeping up.
  bool queue_older_than(Duration limit, TimePoint now) const {
    const std::int64_t oldest = queue_oldest_ns.load(std::memory_order_relaxed);
    return oldest != 0 &&
           ns_of(now) - oldest > std::chrono::duration_cast<std::chrono::nanoseconds>(limit).count();
  }

  // Would `payload` bytes of data be dropped now (the queue full, or so old that the writer
  // could not write them in time; no backpressure)? Lets the data path skip copying what
  // would be thrown away; a hint, read without the lock (push() decides for real), so the
  // data path still takes `mu` once per event.
  bool would_drop(std::uint64_t payload, TimePoint now) const {
    return !options.backpressure &&
           (queued_bytes.load(std::memory_order_relaxed) + payload + kEventOverhead > options.max_queue_bytes ||
            over_budget(work_of(payload)) || queue_older_than(stuck_after, now));
  }

  // What writing an event of `payload` bytes will cost the writer, as last measured.
  std::int64_t work_of(std::uint64_t payload) const {
    return cost_event_ns.load(std::memory_order_relaxed) +
           cost_byte_ps.load(std::memory_order_relaxed) * static_cast<std::int64_t>(payload) / 1000;
  }
  // The queue, with `work` more, would hold more than the writer can write in time (an
  // event alone always fits an empty queue).
  bool over_budget(std::int64_t work) const {
    const std::int64_t queued = queued_work_ns.load(std::memory_order_relaxed);
    return queued > 0 && queued + work > work_budget_ns;
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
    e.queued = steady_time();
    bool notify = false;
    {
      std::unique_lock lock(mu);
      if (stopping) return;
      const std::int64_t work = work_of(payload);
      if (options.backpressure && queued_bytes > 0 &&
          (queued_bytes + cost > options.max_queue_bytes || over_budget(work) || queue_older_than(flush_after, e.queued))) {
        // The user chose to slow traffic rather than lose events: this connection's thread
        // waits for the writer (TCP then pushes back on the peers), when the queue is full
        // or its oldest event is getting old. A failed or stopping recording never holds
        // anyone.
        if (writer_idle) {
          writer_idle = false;
          cv.notify_one();
        }
        space_cv.wait(lock, [&] {
          return stopping || failed_flag.load(std::memory_order_relaxed) || queued_bytes == 0 ||
                 (queued_bytes + cost <= options.max_queue_bytes && !over_budget(work) &&
                  !queue_older_than(flush_after, steady_time()));
        });
        if (stopping || failed_flag.load(std::memory_order_relaxed)) return;
      }
      // The writer is behind: drop and count, never grow (beyond what it can write within
      // the bound, at most max_queue_bytes). A data event is dropped too while the writer is
      // not taking the queue at all. A close is never dropped (a few dozen bytes, once per
      // connection): it frees the writer's state of the connection and takes the
      // connection's last hole, so neither outlives the connection.
      if (e.type != Event::Type::close &&
          (queued_bytes + cost > options.max_queue_bytes ||
           (!options.backpressure && e.type == Event::Type::data &&
            (over_budget(work) || queue_older_than(stuck_after, e.queued))))) {
        drop_locked(e, payload);
        return;
      }
      if (!skipped.empty()) {
        if (auto it = skipped.find(e.conn); it != skipped.end()) {
          e.skipped = it->second;
          skipped.erase(it);
        }
      }
      queued_bytes += cost;
      queued_work_ns.store(queued_work_ns.load(std::memory_order_relaxed) + work, std::memory_order_relaxed);
      if (queue.empty()) queue_oldest_ns.store(ns_of(e.queued), std::memory_order_relaxed);
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
    write_last_index(ignored);  // the disk may be what failed: the reserve is for this
  }

  // ---- the room kept for the last index ----
  // A full disk must still be able to say so: when the recording starts, kReserveBytes are
  // allocated in a file of their own; writing the index that says why the recording failed
  // (or that it stopped) frees them first if the index cannot be written otherwise.
  void make_reserve() {
    const std::string name(kReserveFile);
    const int f = create_file_at(dir_fd, name, O_WRONLY, true);
    if (f < 0) return;  // best effort: the recording works without it
    const int err = ::posix_fallocate(f, 0, kReserveBytes);
    ::close(f);
    if (err != 0) {
      ::unlinkat(dir_fd, name.c_str(), 0);
      return;
    }
    reserve_held = true;
  }

  void release_reserve() {
    if (!reserve_held) return;
    ::unlinkat(dir_fd, std::string(kReserveFile).c_str(), 0);
    reserve_held = false;
  }

  bool write_last_index(std::string& error) {
    if (dir_fd < 0) return false;
    if (write_index_at(dir_fd, dir, index, error)) return true;
    if (!reserve_held) return false;
    release_reserve();
    return write_index_at(dir_fd, dir, index, error);
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
    {
      std::lock_guard lock(status_mu);
      status.journal_bytes += done;
    }
    if (options.on_write) options.on_write(done);
    return true;
  }

  void flush_out() {
    std::size_t whole = 0;
    const TimePoint began = steady_time();
    if (!out.empty() && !failed && write_all(out, &whole)) {
      learn_write(out.size(), steady_time() - began);
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
    out_dated = false;
  }

  bool open_journal(std::uint64_t n, std::string& error) {
    const std::string name = journal_file_name(n);
    const std::string path = dir + "/" + name;
    // O_EXCL: a journal is never appended to by a second recording (nor written through a
    // symlink planted under its name).
    const int f = create_file_at(dir_fd, name, O_WRONLY | O_APPEND, false);
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
    file_started = steady_time();
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
    if (!write_index_at(dir_fd, dir, index, error)) return false;
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
  // after writing the lines already formatted. False with `late` set (and no error) when
  // it could not be written by blob_deadline: nothing of it is left.
  bool write_blob(std::string_view bytes, const std::string& name, std::string& error, bool& late) {
    late = false;
    const std::string blobs = dir + "/" + std::string(kBlobDir);
    if (blobs_fd < 0) {
      if (::mkdirat(dir_fd, std::string(kBlobDir).c_str(), 0755) != 0 && errno != EEXIST) {
        error = blobs + ": " + std::strerror(errno);
        return false;
      }
      // O_NOFOLLOW: a symlink planted as blobs/ is refused, not written through.
      blobs_fd = ::openat(dir_fd, std::string(kBlobDir).c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (blobs_fd < 0) {
        const int err = errno;
        struct stat link{};
        const bool symlink = ::fstatat(dir_fd, std::string(kBlobDir).c_str(), &link, AT_SYMLINK_NOFOLLOW) == 0 &&
                             S_ISLNK(link.st_mode);
        error = blobs + ": " + (symlink ? std::string("is a symlink, not a directory") : std::strerror(err));
        return false;
      }
    }
    const std::string path = blobs + "/" + name;
    struct stat st{};
    if (::fstatat(blobs_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (S_ISREG(st.st_mode)) return true;  // content-addressed: written once
      ::unlinkat(blobs_fd, name.c_str(), 0);  // not ours (a symlink): replaced below
    }
    // Written under a temporary name and renamed, so a blob's name always means its bytes.
    const std::string tmp_name = ".tmp-" + name;
    const std::string tmp = blobs + "/" + tmp_name;
    const int f = create_file_at(blobs_fd, tmp_name, O_WRONLY, true);
    if (f < 0) {
      error = tmp + ": " + std::strerror(errno);
      return false;
    }
    std::size_t done = 0;
    while (done < bytes.size()) {
      // In pieces, so that a disk slower than the time bound is noticed in the middle.
      const ssize_t n = ::write(f, bytes.data() + done, std::min<std::size_t>(bytes.size() - done, 256 << 10));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int err = n < 0 ? errno : EIO;
        ::close(f);
        ::unlinkat(blobs_fd, tmp_name.c_str(), 0);
        error = tmp + ": " + std::strerror(err);
        return false;
      }
      done += static_cast<std::size_t>(n);
      if (done < bytes.size() && steady_time() > blob_deadline) {
        ::close(f);
        ::unlinkat(blobs_fd, tmp_name.c_str(), 0);
        late = true;
        return false;
      }
    }
    if (::close(f) != 0 || ::renameat(blobs_fd, tmp_name.c_str(), blobs_fd, name.c_str()) != 0) {
      const int err = errno;
      ::unlinkat(blobs_fd, tmp_name.c_str(), 0);
      error = path + ": " + std::strerror(err);
      return false;
    }
    std::lock_guard lock(status_mu);
    status.journal_bytes += bytes.size();
    return true;
  }

  // ---- events ----

  void writer_drop(std::uint64_t bytes, TimePoint at) { count_drop(bytes, t(at)); }

  void count_drop(std::uint64_t bytes, std::int64_t at) {
    if (gap_events == 0) gap_since = at;
    gap_until = std::max(gap_until, at);
    ++gap_events;
    gap_bytes += bytes;
    writer_drop_events.fetch_add(1, std::memory_order_relaxed);
    writer_drop_bytes.fetch_add(bytes, std::memory_order_relaxed);
  }

  // A data event too old to be written in time: counted in the gap, its bytes (and the
  // hole handed to it) placed as a hole with the connection's next event.
  void drop_stale(const Event& e) {
    writer_drop(e.payload.size(), e.at);
    auto it = conns.find(e.conn);
    if (it == conns.end()) return;
    Conn& c = it->second;
    for (std::size_t i = 0; i < 2; ++i) c.dirs[i].hole += e.skipped[i];
    c.dirs[idx(e.dir)].hole += e.payload.size();
  }

  void write_gap() {
    if (gap_events == 0 || failed) return;
    line_begin();
    line::gap(out, t(steady_time()), gap_events, gap_bytes, gap_since, gap_until);
    gap_events = 0;
    gap_bytes = 0;
    gap_until = 0;
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
        bool late = false;
        if (!write_blob(bytes, name, error, late) && late) {
          // Too slow to be written in time: a hole, as if the writer had dropped it.
          count_drop(len, chunk_t);
          pos += len;
          d.base = chunk_end;
          if (!d.chunks.empty() && d.chunks.front().first <= chunk_end) d.chunks.pop_front();
          std::string reason = "gap: " + std::to_string(len) + " bytes were not recorded";
          if (d.strict) reason += "; the rest of this direction is not recorded (redaction cannot follow it)";
          line_begin();
          line::msg(out, at, conn, s, d.base, 0, "\"kind\":\"undecodable\",\"reason\":" + json_string(reason));
          if (d.strict) {
            const std::size_t rest = d.pending.size() - pos;
            if (rest) count_drop(rest, at);
            d.base += rest;
            d.pending.clear();
            d.chunks.clear();
            d.suppressed = true;
            return;
          }
          continue;
        }
        if (!late && !error.empty()) {
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

  // Places the holes before an event of the connection: what the data path dropped since
  // the connection's previous queued event (handed to this one) and what the writer dropped.
  void place_holes(std::uint64_t conn, const std::array<std::uint64_t, 2>& skipped, Conn& c, std::int64_t at) {
    for (std::size_t i = 0; i < 2; ++i) {
      const std::uint64_t bytes = skipped[i] + std::exchange(c.dirs[i].hole, 0);
      if (bytes) skip(conn, c, i, bytes, at);
    }
  }
  void apply_skips(const Event& e, Conn& c, std::int64_t at) { place_holes(e.conn, e.skipped, c, at); }

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
        for (std::size_t i = 0; i < 2; ++i) {
          c.dirs[i].annotator.emplace(e.protocol, dir_of(i), redactor);
          c.dirs[i].strict = redactor && e.protocol != Protocol::tcp;
        }
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
        // A hole handed to this event (bytes of the connection dropped before it) is placed
        // first, as for any other event of the connection: the offsets of later data lines
        // must jump over it.
        if (auto it = conns.find(e.conn); it != conns.end()) apply_skips(e, it->second, at);
        // Written even for a connection whose open was dropped: a fault line carries no
        // traffic, and it is what the user most wants to see. Its description names the
        // message (`delayed GET /x?token=…`): redacted as the message is.
        if (redactor) redactor->redact_description(e.c);
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

  // ---- the writer's speed ----

  Duration estimate(const Event& e) const {
    return std::chrono::nanoseconds(static_cast<std::int64_t>(
        per_event_ns + (per_byte_ns + 1.4 * write_byte_ns) * static_cast<double>(e.payload.size())));
  }

  Duration write_cost(std::size_t bytes) const {
    return std::chrono::microseconds(20) + std::chrono::nanoseconds(static_cast<std::int64_t>(
                                               write_byte_ns * static_cast<double>(bytes)));
  }

  // What a write(2) of the lines took (the page cache, or the kernel holding the writer back
  // because the disk lags behind), per byte: the estimates then count it too, so a disk
  // that cannot keep up makes the writer drop more instead of writing late.
  void learn_write(std::size_t bytes, Duration took) {
    if (bytes < 4096) return;
    const double cap = static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(deadline).count());
    const double ns = std::min(cap, static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(took).count()));
    const double sample = ns / static_cast<double>(bytes);
    write_byte_ns = std::clamp(write_byte_ns + (sample > write_byte_ns ? 0.25 : 1.0 / 32) * (sample - write_byte_ns), 0.01, 1e4);
    publish_budget();
  }

  // What handling `e` took, into the moving averages (a sample is capped, so that one long
  // preemption does not make the writer drop everything for a while).
  void learn(std::size_t payload, Duration took) {
    const double cap = static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(deadline).count()) / 4;
    const double ns =
        std::min(cap, static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(took).count()));
    // Per byte (what the disk takes): quick to believe the writer got slower, slow to believe
    // it got faster. Per event (the CPU): an even average of samples capped near the current
    // figure, since a long one is mostly the scheduler's doing, not the event's.
    const auto step = [](double now, double sample) { return now + (sample > now ? 0.25 : 1.0 / 32) * (sample - now); };
    const auto size = static_cast<double>(payload);
    if (size < 4096) {
      const double sample = std::min(ns, 4 * per_event_ns + 20000);
      per_event_ns = std::clamp(per_event_ns + (sample - per_event_ns) / 32, 100.0, cap);
    } else {
      per_byte_ns = std::clamp(step(per_byte_ns, std::max(0.0, ns - per_event_ns) / size), 0.01, 1e4);
    }
    publish_budget();
  }

  void publish_budget() {
    cost_event_ns.store(static_cast<std::int64_t>(per_event_ns), std::memory_order_relaxed);
    // A payload byte becomes about 1.4 bytes of line (base64) when it is not a blob.
    cost_byte_ps.store(static_cast<std::int64_t>((per_byte_ns + 1.4 * write_byte_ns) * 1000), std::memory_order_relaxed);
  }

  // Takes the drops the data path counted since the writer last looked, into the gap line
  // to come: it is written with the next write, before anything queued after the drops.
  void take_drops() {
    std::lock_guard lock(mu);
    if (drop_events == 0) return;
    if (gap_events == 0) gap_since = t(first_drop);
    gap_until = std::max(gap_until, t(last_drop));
    gap_events += drop_events;
    gap_bytes += drop_bytes;
    drop_events = 0;
    drop_bytes = 0;
  }

  // Every write of a batch: the gap line first (drops counted until now), then the lines.
  void write_out() {
    take_drops();
    write_gap();
    flush_out();
  }

  void process_batch(std::vector<Event>& batch) {
    if (failed) {
      std::uint64_t bytes = 0;
      for (const Event& e : batch) bytes += e.payload.size();
      lost_events.fetch_add(batch.size(), std::memory_order_relaxed);
      lost_bytes.fetch_add(bytes, std::memory_order_relaxed);
      return;
    }
    take_drops();
    write_gap();
    rotate_due = steady_time() - file_started >= options.rotate_every;
    bool sweeping = false;  // dropping a run of events too late to write in time
    TimePoint swept_at{};
    // What the rest of the batch will take, and by when its last event is due: when the
    // writer cannot finish in time, it sheds the oldest events (cheap to drop) until it can.
    Duration remaining{};
    for (const Event& e : batch) remaining += estimate(e);
    const TimePoint last_due = batch.empty() ? TimePoint::max() : batch.back().queued + deadline;
    for (Event& e : batch) {
      if (failed) {  // the rest of the batch is lost, and counted
        lost_events.fetch_add(1, std::memory_order_relaxed);
        lost_bytes.fetch_add(e.payload.size(), std::memory_order_relaxed);
        continue;
      }
      TimePoint now = steady_time();
      const Duration cost = estimate(e);
      remaining -= cost;
      // Dropped: data that would itself reach the disk late, or that the writer has no time
      // for because the events behind it would then be late. A writer that was only held up
      // for a moment (the scheduler) drops nothing: writing a small event takes microseconds.
      if (!options.backpressure && e.type == Event::Type::data &&
          (now + cost > e.queued + deadline || now + cost + remaining > last_due)) {
        if (!sweeping) {
          sweeping = true;
          swept_at = now;
        }
        drop_stale(e);
        if (now - swept_at > std::chrono::milliseconds(1)) {  // a long run: say so as it goes
          write_out();
          swept_at = now;
        }
        continue;
      }
      if (sweeping) {
        // The dropped events were about to be late: their gap line is written at once.
        sweeping = false;
        write_out();
        now = steady_time();
      }
      // The lines waiting in `out` must not be made late by this event.
      if (out_dated && now + cost + write_cost(out.size()) > out_oldest + deadline) {
        write_out();
        now = steady_time();
      }
      if (!out_dated) {
        out_oldest = e.queued;
        out_dated = true;
      }
      const std::size_t size = e.payload.size();  // handle() may take the buffer
      const bool data = e.type == Event::Type::data;
      if (options.on_format) options.on_format(size);
      blob_deadline = options.backpressure ? TimePoint::max() : e.queued + deadline;
      handle(e);
      blob_deadline = TimePoint::max();
      const TimePoint after = steady_time();
      if (data) learn(size, after - now);
      if (out_dated && !out.empty() && after - out_oldest > flush_after) write_out();
    }
    write_out();
  }

  void run() {
    // At the workers' priority: the time bound (max_lag) needs the writer to run every few
    // milliseconds, which a lower priority does not give it when the cores are busy (it
    // then waits for tens of milliseconds between turns). What it costs the relay is bounded
    // by the bound itself: what cannot be written in time is dropped, cheaply, and the data
    // path stops copying bytes once the queue holds what the writer can write in time.
    ::pthread_setname_np(::pthread_self(), "fl-recorder");
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
      bool stop_now = false;
      {
        std::unique_lock lock(mu);
        if (!stopping && queue.empty() && drop_events == 0) {
          writer_idle = true;
          cv.wait(lock, [&] { return stopping || !queue.empty() || drop_events > 0; });
          writer_idle = false;
        }
        // Let a batch gather: at most `gather` after its first event (or its first drop: the
        // gap line is due too), or less when it is big.
        if (!stopping && queued_bytes < wake_bytes) {
          TimePoint oldest = drop_events ? first_drop_queued : TimePoint::max();
          if (const std::int64_t q = queue_oldest_ns.load(std::memory_order_relaxed); q != 0) {
            oldest = std::min(oldest, TimePoint(std::chrono::duration_cast<Duration>(std::chrono::nanoseconds(q))));
          }
          if (oldest != TimePoint::max()) {
            // Relative to the recording's clock (a test's may be far from the real one).
            cv.wait_for(lock, oldest + gather - steady_time(), [&] { return stopping || queued_bytes >= wake_bytes; });
          }
        }
        batch.swap(queue);
        queued_bytes = 0;
        queued_work_ns.store(0, std::memory_order_relaxed);
        queue_oldest_ns.store(0, std::memory_order_relaxed);
        space_cv.notify_all();
        big_notified = false;
        stop_now = stopping;
      }
      process_batch(batch);
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
    // Stopping: what connections still hold is written, and the holes no later event took
    // are placed; they are not closed (they were not), so no close lines.
    std::unordered_map<std::uint64_t, std::array<std::uint64_t, 2>> left;
    {
      std::lock_guard lock(mu);
      left.swap(skipped);
    }
    const std::int64_t now = t(steady_time());
    for (auto& [conn, c] : conns) {
      std::array<std::uint64_t, 2> holes{0, 0};
      if (auto it = left.find(conn); it != left.end()) holes = it->second;
      place_holes(conn, holes, c, now);
      for (std::size_t i = 0; i < 2; ++i) {
        if (!c.dirs[i].suppressed && !c.dirs[i].ended) settle(conn, dir_of(i), c.dirs[i], now);
      }
    }
    conns.clear();
    write_out();
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
    if (m.options.max_lag <= Duration::zero()) m.options.max_lag = std::chrono::milliseconds(10);
    // A batch gathers for at most a fifth of the bound; every event is to be written within
    // 7/10 of it (the rest is for the write itself); what is formatted is written once its
    // oldest event is a quarter of the bound old; the queue takes what the writer can write
    // in 3/10 of it; the data path stops queueing data when the writer has not taken the
    // queue for the whole bound (it is blocked: what comes now could not be written in time
    // either). A writer that is only held up for a moment (the scheduler) drops nothing:
    // only what would be written too late is dropped.
    m.gather = std::min(m.options.flush_every, m.options.max_lag / 5);
    m.deadline = m.options.max_lag * 7 / 10;
    m.flush_after = m.options.max_lag / 4;
    m.stuck_after = m.options.max_lag;
    m.work_budget_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(m.options.max_lag * 3 / 10).count();
    m.publish_budget();

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
    m.dir_fd = ::open(m.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (m.dir_fd < 0) {
      error = m.dir + ": " + std::strerror(errno);
      return nullptr;
    }
    struct stat st{};
    if (::fstatat(m.dir_fd, std::string(kIndexFile).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      error = m.dir + ": already holds a recording (index.json)";
      return nullptr;
    }
    if (m.options.redact) {
      m.redactor = Redactor::make(random_key(), m.options.rules, error);
      if (!m.redactor) return nullptr;
    }
    m.started = m.steady_time();
    m.started_wall = rfc3339_ns(m.wall_time());
    m.index.id = m.id;
    m.index.state = "recording";
    m.index.started_wall = m.started_wall;
    m.index.redacted = m.options.redact;
    m.status.id = m.id;
    m.status.dir = m.dir;
    m.status.started = m.started;
    m.make_reserve();
    if (!m.open_journal(0, error)) {
      m.release_reserve();
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
  std::lock_guard order(m.open_mu);
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
  if (m.would_drop(size, m.steady_time())) {  // counted as a gap without copying a byte
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

bool Recording::wants(std::size_t size) const {
  return impl_->accepting.load(std::memory_order_relaxed) && !impl_->would_drop(size, impl_->steady_time());
}

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
  const auto stopped_wall = rfc3339_ns(m.wall_time());
  m.index.stopped_wall = stopped_wall;
  if (!m.failed) {
    m.index.state = "stopped";
    std::string error;
    if (!m.write_last_index(error)) m.fail(error);
  } else {
    std::string ignored;
    m.write_last_index(ignored);
  }
  m.release_reserve();
  if (m.fd >= 0) {
    ::close(m.fd);
    m.fd = -1;
  }
  std::lock_guard lock(m.status_mu);
  if (!m.failed) m.status.state = RecordingState::stopped;
  m.status.stopped = m.steady_time();
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
  s.gap_events += m.writer_drop_events.load(std::memory_order_relaxed);
  s.gap_bytes += m.writer_drop_bytes.load(std::memory_order_relaxed);
  s.lost_events = m.lost_events.load(std::memory_order_relaxed);
  s.lost_bytes = m.lost_bytes.load(std::memory_order_relaxed);
  return s;
}

}  // namespace faultline::rec
