// The data plane's threads: one event loop per core, each owning the connections it
// accepted. Only that thread touches a worker's sessions; others post to it.
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <thread>
#include <unordered_set>
#include <vector>

#include "proxy/asio.hpp"

namespace faultline {

class Connection;

struct Worker {
  // Declared first so it is destroyed last: ~io_context destroys pending coroutines,
  // whose sessions unregister themselves from this set.
  std::unordered_set<Connection*> sessions;  // live connections; this worker's thread only
  net::io_context ioc{1};
};

class WorkerPool {
 public:
  explicit WorkerPool(std::size_t count);
  ~WorkerPool();
  void start();
  void stop();  // stops the loops and joins the threads
  Worker& next();
  Worker& at(std::size_t i) { return *workers_[i]; }
  // Runs `fn` on every worker's thread; returns at once (the control plane never waits).
  void broadcast(std::function<void(Worker&)> fn);
  std::size_t size() const { return workers_.size(); }

 private:
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<net::executor_work_guard<net::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
  std::size_t next_ = 0;
};

}  // namespace faultline
