#include "proxy/session.hpp"

#include <fcntl.h>

#include <cerrno>
#include <cstring>

#include "proxy/fifo.hpp"
#include "proxy/kernel_pipe.hpp"

#include <spdlog/spdlog.h>

#include "proxy/address.hpp"
#include "proxy/workers.hpp"

namespace faultline {
namespace {
constexpr std::size_t kCopyBelow = 16 * 1024;  // small reads are copied out of the big read buffer
// Like the kernel's timer slack: a segment due this soon is written instead of waited for.
// Rates stay exact over time because the faults' own clocks keep advancing.
constexpr Duration kTimerSlack = std::chrono::microseconds(200);
}  // namespace

// Collects what the chain emits for one pipe, keeping release times in order.
class Session::Sink final : public Emitter {
 public:
  explicit Sink(Pipe& pipe) : pipe_(pipe) {}
  void emit(Segment s) override;
  void end(EndKind kind, TimePoint at) override;

 private:
  Pipe& pipe_;
};

struct Session::Pipe {
  Pipe(Stream s, tcp::socket& src, tcp::socket& dst, Rng rng, DirectionStats& st)
      : stream(s), from(src), to(dst), chain(rng), sink(*this), writer_timer(src.get_executor()),
        reader_timer(src.get_executor()), stats(st) {}

  Stream stream;
  tcp::socket& from;
  tcp::socket& to;
  Chain chain;
  Sink sink;
  ActiveToxics active;  // what the chain follows, and when a scheduled toxic next turns on or off

  ~Pipe() {
    if (budget) budget->release(queued_bytes);
  }
  // Bytes in `queue` and `current` change only through these: they count against the
  // server-wide budget too.
  void hold(std::size_t n) {
    queued_bytes += n;
    if (budget) budget->add(n);
  }
  void unhold(std::size_t n) {
    queued_bytes -= n;
    if (budget) budget->release(n);
  }
  // Reading more would only queue more, and the server-wide budget is spent.
  bool over_budget() const { return budget && budget->exhausted(); }

  Fifo<Chunk> queue;              // read, not yet given to the chain
  std::size_t queued_bytes = 0;   // bytes in `queue` and `current`
  std::shared_ptr<BufferBudget> budget;  // serve --max-buffered-bytes (null: none)
  std::optional<Chunk> current;   // chunk whose segments are being written
  Fifo<Segment> scheduled;        // segments of `current` awaiting their release time
  TimePoint last_release{};
  std::vector<PendingEnd> ends;
  bool eof_seen = false;    // the reader saw EOF
  bool eof_in_chain = false;  // the writer handed that EOF to the chain
  TimePoint eof_at{};

  bool broken = false;  // a removed fault had dropped bytes: close
  bool bulk = false;    // recent reads filled the buffer: move data with splice(2)
  std::uint64_t dropped_reported = 0;
  bool writing = false;
  bool writer_running = false;  // the writer coroutine exists only while faults are in play
  bool done = false;
  net::steady_timer writer_timer;
  net::steady_timer reader_timer;
  DirectionStats& stats;
};

void Session::Sink::emit(Segment s) {
  if (s.size == 0) return;
  s.release = std::max(s.release, pipe_.last_release);  // never reorder bytes
  pipe_.last_release = s.release;
  pipe_.scheduled.push_back(s);
}

// An end never overtakes bytes emitted before it (limit_data followed by latency).
void Session::Sink::end(EndKind kind, TimePoint at) { pipe_.ends.push_back({kind, std::max(at, pipe_.last_release)}); }

Session::Session(Worker& worker, std::shared_ptr<ProxyRuntime> runtime, tcp::socket client, SessionSettings settings,
                 std::uint64_t generation, std::uint64_t index)
    : core_(worker, runtime, generation, index),
      runtime_(*runtime),
      client_(std::move(client)),
      upstream_(client_.get_executor()),
      settings_(std::move(settings)) {}

Session::~Session() = default;

void Session::start(std::shared_ptr<Session> session) {
  session->core_.enlist(*session);
  auto ex = session->client_.get_executor();
  spawn_connection(session, ex, session->run());
}

awaitable<void> Session::run() {
  auto self = shared_from_this();
  if (!core_.admit(client_)) {
    close(EndKind::close);
    co_return;
  }
  boost::system::error_code ec;

  // The chains exist before the upstream is dialled: a fault may end the connection first.
  Rng rng = core_.rng();
  up_ = std::make_unique<Pipe>(Stream::upstream, client_, upstream_, rng.derive("upstream"),
                               runtime_.stats.direction[static_cast<int>(Stream::upstream)]);
  down_ = std::make_unique<Pipe>(Stream::downstream, upstream_, client_, rng.derive("downstream"),
                                 runtime_.stats.direction[static_cast<int>(Stream::downstream)]);
  up_->budget = down_->budget = settings_.budget;
  for (Pipe* p : {up_.get(), down_.get()}) refresh(*p, true);
  const TimePoint now = Clock::now();
  for (Pipe* p : {up_.get(), down_.get()}) {
    if (const auto due = end_due_at_start(p->ends, now)) {
      close(*due);
      co_return;
    }
  }

  if (!co_await connect_upstream() || core_.closing()) {
    close(EndKind::close);
    co_return;
  }
  for (tcp::socket* s : {&client_, &upstream_}) {
    s->set_option(tcp::no_delay(true), ec);
    s->non_blocking(true, ec);
  }
  for (Pipe* p : {up_.get(), down_.get()}) {
    auto on_done = [self](std::exception_ptr e) {
      if (e) self->close(EndKind::reset);
    };
    net::co_spawn(client_.get_executor(), read_loop(*p), on_done);
  }
}

awaitable<bool> Session::connect_upstream() {
  auto snapshot = runtime_.snapshot();
  auto target = split_host_port(snapshot->upstream);
  if (!target) {
    spdlog::warn("proxy {}: upstream \"{}\" is not host:port", runtime_.name(), snapshot->upstream);
    runtime_.stats.upstream_connect_failures.fetch_add(1, std::memory_order_relaxed);
    if (settings_.on_upstream_failure) settings_.on_upstream_failure();
    co_return false;
  }
  const boost::system::error_code cec =
      co_await dial_with_timeout(upstream_, target->host, target->port, settings_.connect_timeout, core_.closing());
  if (cec) {
    if (!core_.closing()) {
      runtime_.stats.upstream_connect_failures.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("proxy {}: upstream {} unreachable: {}", runtime_.name(), snapshot->upstream, cec.message());
      if (settings_.on_upstream_failure) settings_.on_upstream_failure();
    }
    co_return false;
  }
  co_return true;
}

namespace {

// Reads exactly `n` bytes a pipe already holds (never waits: the caller knows they are there).
bool read_exactly(int fd, char* out, std::size_t n) {
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::read(fd, out + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    got += static_cast<std::size_t>(r);
  }
  return true;
}

// While a connection is recorded, a burst tees what it spliced into a second pipe (`tap`,
// no copy: tee(2) shares the pages) and reads that for the recording. The relay stays
// zero-copy; the one copy left is the one a recording needs. False when the bytes could not
// be had this way (the source pipe still holds them all: the caller copies instead).
bool tee_to_taps(RecordingTaps& taps, Stream towards, int source, const KernelPipe& tap, std::size_t n) {
  if (!taps.wants(n)) {
    // Every recording is behind and drops: nothing to copy. The bytes become a counted gap.
    taps.lost(towards, n, Clock::now());
    return true;
  }
  const ssize_t teed = ::tee(source, tap.write_end, n, SPLICE_F_NONBLOCK);
  thread_local std::vector<char> scratch;  // only within this call, which never suspends
  if (scratch.size() < n) scratch.resize(n);
  const std::size_t teed_bytes = teed > 0 ? static_cast<std::size_t>(teed) : 0;
  if (!read_exactly(tap.read_end, scratch.data(), teed_bytes)) return false;
  if (teed_bytes != n) return false;  // the tap pipe was drained of the part that came
  taps.data(towards, scratch.data(), n, Clock::now());
  return true;
}

int pipe_capacity(int fd) {
  const int n = ::fcntl(fd, F_GETPIPE_SZ);
  return n > 0 ? n : 0;
}

}  // namespace

// Moves bytes from p.from to p.to through a kernel pipe until the source is drained, ends,
// or faults arrive. The pipe is empty whenever this returns, so switching back to the
// buffered path never reorders bytes.
awaitable<Session::SpliceOutcome> Session::splice_burst(Pipe& p) {
  auto self = shared_from_this();
  KernelPipePool& pool = KernelPipePool::local();
  KernelPipe pipe = pool.take();
  if (!pipe) {
    p.bulk = false;
    co_return SpliceOutcome::fallback;
  }
  constexpr std::size_t kBurst = 1 << 20;
  std::size_t moved = 0;
  SpliceOutcome outcome = SpliceOutcome::drained;
  KernelPipe tap;  // while recording (see tee_to_taps); taken when a recording appears
  auto give_back = [&](bool empty) {
    pool.give(pipe, empty);
    pool.give(tap, true);  // always drained by tee_to_taps, or closed below when it was not
  };
  for (;;) {
    if (!core_.taps.empty() && !tap) {
      tap = pool.take();
      // tee(2) must fit all the source pipe holds into the empty tap: same room or more.
      if (!tap || pipe_capacity(tap.write_end) < pipe_capacity(pipe.write_end)) {
        give_back(true);
        p.bulk = false;
        co_return SpliceOutcome::fallback;
      }
    }
    const ssize_t n = ::splice(p.from.native_handle(), nullptr, pipe.write_end, nullptr, kBurst,
                               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n == 0) {  // EOF
      give_back(true);
      p.eof_seen = true;
      p.eof_at = Clock::now();
      p.eof_in_chain = true;
      execute_end(p, EndKind::half_close);
      co_return SpliceOutcome::done;
    }
    if (n < 0) {
      const int err = errno;
      give_back(true);
      if (err == EAGAIN) break;
      if (err == EINVAL || err == ENOSYS) {
        p.bulk = false;  // this pair of sockets cannot splice: use buffers
        co_return SpliceOutcome::fallback;
      }
      on_read_error(boost::system::error_code(err, boost::system::system_category()));
      co_return SpliceOutcome::done;
    }
    p.stats.received_bytes.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
    count_received(runtime_.stats, *core_.info(), p.stream, static_cast<std::uint64_t>(n));
    std::size_t left = static_cast<std::size_t>(n);
    if (!core_.taps.empty() && !tee_to_taps(core_.taps, p.stream, pipe.read_end, tap, left)) {
      // Not expected (the tap had room for all of it): take the bytes out of the pipe the
      // ordinary way, record and send them, and let buffers carry this connection on.
      std::vector<char> bytes(left);
      const bool whole = read_exactly(pipe.read_end, bytes.data(), left);
      pool.give(pipe, whole);
      pool.give(tap, false);
      if (!whole) {
        on_read_error(boost::system::error_code(EIO, boost::system::system_category()));
        co_return SpliceOutcome::done;
      }
      core_.taps.data(p.stream, bytes.data(), left, Clock::now());
      p.writing = true;
      auto [wec, written] = co_await net::async_write(p.to, net::buffer(bytes.data(), left), use_nothrow);
      p.writing = false;
      if (core_.closing()) co_return SpliceOutcome::done;
      if (wec) {
        on_write_error(wec);
        co_return SpliceOutcome::done;
      }
      p.stats.sent_bytes.fetch_add(written, std::memory_order_relaxed);
      p.bulk = false;
      co_return SpliceOutcome::fallback;
    }
    while (left > 0) {
      const ssize_t m = ::splice(pipe.read_end, nullptr, p.to.native_handle(), nullptr, left,
                                 SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (m > 0) {
        left -= static_cast<std::size_t>(m);
        p.stats.sent_bytes.fetch_add(static_cast<std::uint64_t>(m), std::memory_order_relaxed);
        continue;
      }
      const int err = m < 0 ? errno : EPIPE;
      if (err == EAGAIN) {
        p.writing = true;
        auto [wec] = co_await p.to.async_wait(tcp::socket::wait_write, use_nothrow);
        p.writing = false;
        if (core_.closing() || wec) {
          give_back(false);
          if (!core_.closing()) on_write_error(wec);
          co_return SpliceOutcome::done;
        }
        continue;
      }
      give_back(false);
      on_write_error(boost::system::error_code(err, boost::system::system_category()));
      co_return SpliceOutcome::done;
    }
    moved += static_cast<std::size_t>(n);
    refresh(p, false);
    if (!fast_path(p)) {
      give_back(true);
      outcome = SpliceOutcome::fallback;
      break;
    }
  }
  // A burst that found little to move means small talk again: buffers are cheaper there.
  if (outcome == SpliceOutcome::drained && moved > 0 && moved < 16 * 1024) p.bulk = false;
  co_return outcome;
}

bool Session::inline_path(const Pipe& p) const {
  return p.queue.empty() && !p.current && p.scheduled.empty() && !p.writing;
}

bool Session::end_due_before(const Pipe& p, TimePoint t) const {
  for (const auto& e : p.ends) {
    if (e.at < t) return true;
  }
  return false;
}

bool Session::fast_path(const Pipe& p) const {
  return p.chain.empty() && p.queue.empty() && !p.current && p.scheduled.empty() && p.ends.empty() && !p.writing &&
         p.active.next_edge() == kNever;
}

void Session::refresh(Pipe& p, bool force) {
  const std::uint64_t version = runtime_.version();
  const TimePoint now = Clock::now();
  if (!force && !p.active.stale(version, now)) return;
  auto snapshot = runtime_.snapshot();
  core_.follow_recordings(*snapshot, Protocol::tcp, now);
  const ToxicList& toxics = p.stream == Stream::upstream ? snapshot->upstream_toxics : snapshot->downstream_toxics;
  const Follow follow = follow_toxics(p.active, version, toxics, now);
  if (follow != Follow::changed) {
    if (follow == Follow::new_edge) {
      p.writer_timer.cancel();
      if (!fast_path(p)) ensure_writer(p);
    }
    return;
  }

  // Like an interrupted Toxiproxy stub: what a fault was holding goes out now, and the
  // new chain applies from the next chunk on.
  p.scheduled.for_each([now](Segment& s) { s.release = now; });
  p.last_release = std::min(p.last_release, now);
  p.ends.clear();
  // Once a removed fault has lost bytes, the stream stays condemned across later rebuilds.
  p.broken = p.chain.rebuild(toxics, now, p.sink) || p.broken;
  if (p.broken) p.ends.push_back({EndKind::close, now});
  if (p.eof_in_chain) p.chain.end(EndKind::half_close, p.eof_at, p.sink);
  p.writer_timer.cancel();
  if (core_.info()) {
    auto names = p.chain.active_names();
    if (!core_.taps.empty()) {
      for (const auto& t : toxics) {
        if (std::find(names.begin(), names.end(), t->name) == names.end()) continue;
        core_.taps.fault(t->name, t->type, std::string("active on the ") + (p.stream == Stream::upstream ? "upstream" : "downstream") +
                                         " direction", now);
      }
    }
    std::lock_guard lock(core_.info()->mutex);
    core_.info()->toxics[static_cast<int>(p.stream)] = std::move(names);
  }
  if (!fast_path(p)) ensure_writer(p);
}

void Session::ensure_writer(Pipe& p) {
  if (p.writer_running || core_.closing() || p.done) return;
  p.writer_running = true;
  auto self = shared_from_this();
  net::co_spawn(client_.get_executor(), write_loop(p), [self](std::exception_ptr e) {
    if (e) self->close(EndKind::reset);
  });
}

void Session::config_changed() {
  if (core_.closing() || !up_) return;
  refresh(*up_, false);
  refresh(*down_, false);
}

void Session::enqueue(Pipe& p, Chunk chunk) {
  p.hold(chunk.size);
  p.queue.push_back(std::move(chunk));
  p.writer_timer.cancel();
  ensure_writer(p);
}

awaitable<void> Session::read_loop(Pipe& p) {
  auto self = shared_from_this();
  BufferPool& pool = BufferPool::local();
  while (!core_.closing() && !p.eof_seen) {
    if (p.bulk) {
      refresh(p, false);
      if (fast_path(p)) {
        const SpliceOutcome outcome = co_await splice_burst(p);
        if (outcome == SpliceOutcome::done) co_return;
        if (outcome == SpliceOutcome::drained) {
          // Wait for more without holding anything; the next burst splices again.
          auto [wait_ec] = co_await p.from.async_wait(tcp::socket::wait_read, use_nothrow);
          if (core_.closing()) co_return;
          if (wait_ec) {
            on_read_error(wait_ec);
            co_return;
          }
        }
        continue;
      }
      p.bulk = false;  // faults arrived: bytes must go through the chain
    }
    if (p.queued_bytes >= settings_.max_queued_bytes) {
      // Backpressure: stop reading until the writer frees room; TCP pushes back on the sender.
      p.reader_timer.expires_at(TimePoint::max());
      co_await p.reader_timer.async_wait(use_nothrow);
      continue;
    }
    if (!fast_path(p) && p.over_budget()) {
      // The server-wide budget is spent (by any connection): pause the same way, and look
      // again shortly, since what frees it may be another connection's writer.
      p.budget->count_pause();
      p.reader_timer.expires_after(BufferBudget::kRecheck);
      co_await p.reader_timer.async_wait(use_nothrow);
      continue;
    }
    // Wait without a buffer: an idle connection holds no read memory.
    auto [wait_ec] = co_await p.from.async_wait(tcp::socket::wait_read, use_nothrow);
    if (core_.closing()) co_return;
    if (wait_ec) {
      on_read_error(wait_ec);
      co_return;
    }
    Block block = pool.take();
    while (!core_.closing()) {
      boost::system::error_code ec;
      const std::size_t n = p.from.read_some(net::buffer(block.data(), block.capacity()), ec);
      if (ec == net::error::would_block || ec == net::error::try_again) break;
      if (ec == net::error::eof) {
        p.eof_seen = true;
        p.eof_at = Clock::now();
        refresh(p, false);  // a slow_close published a moment ago must see this FIN
        if (fast_path(p)) {
          p.eof_in_chain = true;
          execute_end(p, EndKind::half_close);
        } else {
          Chunk marker;
          marker.eof = true;
          marker.arrived = p.eof_at;
          enqueue(p, std::move(marker));
        }
        break;
      }
      if (ec) {
        pool.give(std::move(block));
        on_read_error(ec);
        co_return;
      }
      p.stats.received_bytes.fetch_add(n, std::memory_order_relaxed);
      count_received(runtime_.stats, *core_.info(), p.stream, n);
      refresh(p, false);
      if (fast_path(p)) {
        // A large read: bulk transfer under way (splice(2); a recording gets its copy by tee(2)).
        p.bulk = settings_.splice && n >= 64 * 1024;
        if (!core_.taps.empty()) core_.taps.data(p.stream, block.data(), n, Clock::now());
        p.writing = true;
        auto [wec, written] = co_await net::async_write(p.to, net::buffer(block.data(), n), use_nothrow);
        p.writing = false;
        if (core_.closing()) break;
        if (wec) {
          pool.give(std::move(block));
          on_write_error(wec);
          co_return;
        }
        p.stats.sent_bytes.fetch_add(written, std::memory_order_relaxed);
        if (n < block.capacity()) break;  // the socket is drained; wait for readiness again
        continue;
      }
      if (inline_path(p)) {
        // Faults are active but nothing is pending: run the chain here and write what is
        // due at once, from the read buffer. Only what must wait goes to the writer.
        const TimePoint now = Clock::now();
        p.chain.push(Segment{block.data(), n, now}, p.sink);
        p.chain.report();
        bool failed = false;
        // Bytes due within the timer slack go now: a wait that short costs more than it models.
        while (!p.scheduled.empty() && p.scheduled.front().release <= now + kTimerSlack &&
               !end_due_before(p, p.scheduled.front().release)) {
          const Segment s = p.scheduled.front();
          if (!core_.taps.empty()) core_.taps.data(p.stream, s.data, s.size, Clock::now());
          p.writing = true;
          auto [wec, written] = co_await net::async_write(p.to, net::buffer(s.data, s.size), use_nothrow);
          p.writing = false;
          if (core_.closing() || wec) {
            if (!core_.closing()) on_write_error(wec);
            failed = true;
            break;
          }
          p.stats.sent_bytes.fetch_add(written, std::memory_order_relaxed);
          if (!p.scheduled.empty()) p.scheduled.pop_front();
        }
        if (failed) break;
        if (!p.scheduled.empty()) {
          // The rest lives in this block: hand both to the writer. (Before waking it: a
          // writer started now may run at once and must find the bytes it writes owned.)
          Chunk held;
          held.size = n;
          held.arrived = now;
          held.block = std::move(block);
          block = pool.take();
          p.hold(n);
          p.current = std::move(held);
        }
        if (!p.scheduled.empty() || !p.ends.empty()) {
          p.writer_timer.cancel();  // waiting segments and ends are the writer's
          ensure_writer(p);
        }
        if (n < block.capacity()) break;
        continue;
      }
      Chunk chunk;
      chunk.size = n;
      chunk.arrived = Clock::now();
      if (n <= kCopyBelow) {
        chunk.block = Block(std::make_unique_for_overwrite<std::uint8_t[]>(n), n);
        std::memcpy(chunk.block.data(), block.data(), n);
      } else {
        chunk.block = std::move(block);
        block = pool.take();
      }
      enqueue(p, std::move(chunk));
      if (p.queued_bytes >= settings_.max_queued_bytes || p.over_budget() || n < block.capacity()) break;
    }
    pool.give(std::move(block));
  }
}

awaitable<void> Session::write_loop(Pipe& p) {
  auto self = shared_from_this();
  struct Running {  // however the loop ends, the next fault starts a new writer
    Pipe& p;
    ~Running() { p.writer_running = false; }
  } running{p};
  while (!core_.closing() && !p.done) {
    refresh(p, false);
    const TimePoint now = Clock::now();
    const FirstEnd first = first_end(p.ends);
    const TimePoint end_at = first.at;
    const EndKind end_kind = first.kind;
    const bool has_end = !p.ends.empty();

    if (p.writing) {
      // The reader is writing inline; it hands over whatever it cannot write itself.
      co_await wait_until(p.writer_timer, p.active, kNever);
      continue;
    }
    if (!p.scheduled.empty()) {
      const Segment s = p.scheduled.front();
      if (has_end && end_at < s.release) {  // bytes due at the same instant go first
        if (end_at > now) {
          co_await wait_until(p.writer_timer, p.active, end_at);
          continue;
        }
        execute_end(p, end_kind);
        co_return;
      }
      if (s.release > now) {
        co_await wait_until(p.writer_timer, p.active, s.release);
        continue;
      }
      if (!core_.taps.empty()) core_.taps.data(p.stream, s.data, s.size, Clock::now());
      p.writing = true;
      auto [ec, written] = co_await net::async_write(p.to, net::buffer(s.data, s.size), use_nothrow);
      p.writing = false;
      if (core_.closing()) co_return;
      if (ec) {
        on_write_error(ec);
        co_return;
      }
      p.stats.sent_bytes.fetch_add(written, std::memory_order_relaxed);
      if (!p.scheduled.empty()) p.scheduled.pop_front();  // a refresh may have flushed, never cleared
      continue;
    }
    if (p.current) {
      p.unhold(p.current->size);
      BufferPool::local().give(std::move(p.current->block));
      p.current.reset();
      p.reader_timer.cancel();  // room for the reader again
      continue;
    }
    if (has_end && end_at <= now) {
      execute_end(p, end_kind);
      co_return;
    }
    if (!p.queue.empty()) {
      p.current = std::move(p.queue.front());
      p.queue.pop_front();
      if (p.current->eof) {
        p.eof_in_chain = true;
        p.chain.end(EndKind::half_close, p.current->arrived, p.sink);
      } else {
        p.chain.push(Segment{p.current->block.data(), p.current->size, p.current->arrived}, p.sink);
        p.chain.report();
      }
      continue;
    }
    if (has_end) {
      co_await wait_until(p.writer_timer, p.active, end_at);
      continue;
    }
    if (p.chain.empty() && p.active.next_edge() == kNever) co_return;  // back to the fast path
    co_await wait_until(p.writer_timer, p.active, kNever);
  }
}

void Session::execute_end(Pipe& p, EndKind kind) {
  if (core_.closing()) return;
  report_dropped(p);
  if (!core_.taps.empty()) core_.taps.end(p.stream, kind, Clock::now());
  if (kind == EndKind::half_close) {
    ConnectionCore::half_close(p.to);
    p.done = true;
    p.writer_timer.cancel();
    direction_done(p);
    return;
  }
  close(kind);
}

void Session::report_dropped(Pipe& p) {
  p.chain.report();
  const std::uint64_t total = p.chain.bytes_dropped();
  p.stats.dropped_bytes.fetch_add(total - p.dropped_reported, std::memory_order_relaxed);
  p.dropped_reported = total;
}

void Session::direction_done(Pipe&) {
  if (up_->done && down_->done) close(EndKind::close);
}

void Session::on_read_error(const boost::system::error_code& ec) {
  if (const auto end = end_after_read_error(ec)) close(*end);
}

void Session::on_write_error(const boost::system::error_code& ec) {
  if (core_.closing() || ec == net::error::operation_aborted) return;
  close(EndKind::reset);
}

void Session::close(EndKind how) {
  if (!core_.begin_close(how)) return;
  core_.end_transports(how, client_, upstream_);
  for (Pipe* p : {up_.get(), down_.get()}) {
    if (!p) continue;
    report_dropped(*p);
    p->writer_timer.cancel();
    p->reader_timer.cancel();
  }
}

}  // namespace faultline
