#include "proxy/workers.hpp"

#include <spdlog/spdlog.h>

namespace faultline {

WorkerPool::WorkerPool(std::size_t count) {
  for (std::size_t i = 0; i < std::max<std::size_t>(count, 1); ++i) workers_.push_back(std::make_unique<Worker>());
}

WorkerPool::~WorkerPool() { stop(); }

void WorkerPool::start() {
  for (auto& w : workers_) {
    guards_.emplace_back(net::make_work_guard(w->ioc));
    threads_.emplace_back([worker = w.get()] {
      for (;;) {
        try {
          worker->ioc.run();
          return;
        } catch (const std::exception& e) {
          // A bug escaped a handler: log it and keep the loop serving other connections.
          spdlog::error("worker loop: unexpected exception: {}", e.what());
        }
      }
    });
  }
}

void WorkerPool::stop() {
  guards_.clear();
  for (auto& w : workers_) w->ioc.stop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

Worker& WorkerPool::next() {
  Worker& w = *workers_[next_];
  next_ = (next_ + 1) % workers_.size();
  return w;
}

void WorkerPool::broadcast(std::function<void(Worker&)> fn) {
  for (auto& w : workers_) {
    net::post(w->ioc, [fn, worker = w.get()] { fn(*worker); });
  }
}

}  // namespace faultline
