// One proxied connection: an upstream connect with a timeout, then two pipes
// (client→upstream and upstream→client). Each pipe reads into a bounded queue of
// timestamped chunks; a writer releases them through the fault chain. With no fault
// active the reader writes straight through (no queue, no timestamps, no copies).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "faults/chain.hpp"
#include "proxy/asio.hpp"
#include "proxy/buffer_budget.hpp"
#include "proxy/buffer_pool.hpp"
#include "proxy/connection.hpp"
#include "proxy/connection_core.hpp"
#include "proxy/recording_taps.hpp"
#include "proxy/runtime.hpp"

namespace faultline {

struct Worker;

class Session final : public Connection, public std::enable_shared_from_this<Session> {
 public:
  Session(Worker& worker, std::shared_ptr<ProxyRuntime> runtime, tcp::socket client, SessionSettings settings,
          std::uint64_t generation, std::uint64_t index);
  ~Session();

  // Starts the session on its worker's thread.
  static void start(std::shared_ptr<Session> session);

  // Both run on the worker thread.
  void close(EndKind how) override;
  void config_changed() override;

  ProxyRuntime& runtime() const override { return core_.runtime(); }
  std::uint64_t generation() const override { return core_.generation(); }

 private:
  struct Chunk {
    Block block;
    std::size_t size = 0;
    TimePoint arrived{};
    bool eof = false;
  };
  struct PendingEnd {
    EndKind kind;
    TimePoint at;
  };
  struct Pipe;
  class Sink;

  awaitable<void> run();
  awaitable<bool> connect_upstream();
  enum class SpliceOutcome { drained, fallback, done };
  awaitable<void> read_loop(Pipe& p);
  awaitable<SpliceOutcome> splice_burst(Pipe& p);
  awaitable<void> write_loop(Pipe& p);
  void ensure_writer(Pipe& p);
  void report_dropped(Pipe& p);
  void refresh(Pipe& p, bool force);
  void enqueue(Pipe& p, Chunk chunk);
  void execute_end(Pipe& p, EndKind kind);
  void on_read_error(const boost::system::error_code& ec);
  void on_write_error(const boost::system::error_code& ec);
  void direction_done(Pipe& p);
  bool fast_path(const Pipe& p) const;
  bool inline_path(const Pipe& p) const;
  bool end_due_before(const Pipe& p, TimePoint t) const;

  ConnectionCore core_;  // registration, close-once, recordings (declared first: unregisters last)
  ProxyRuntime& runtime_;
  tcp::socket client_;
  tcp::socket upstream_;
  SessionSettings settings_;
  std::unique_ptr<Pipe> up_;
  std::unique_ptr<Pipe> down_;
};

}  // namespace faultline
