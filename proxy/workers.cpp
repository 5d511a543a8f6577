#include "proxy/workers.hpp"

#include <spdlog/spdlog.h>

namespace faultline {

WorkerPool::WorkerPool(std::size_t count) {
  for (std::size_t i = 0; i < std::max<std::size_t>(count, 1); ++i) workers_.push_back(std::make_unique<Worker>());
}

std::size_t run_catching(net::io_context& io, const char* loop) {
  std::size_t escaped = 0;
  for (;;) {
    try {
      io.run();
      return escaped;
    } catch (const std::exception& e) {
      ++escaped;
      spdlog::error("{}: unexpected exception: {}", loop, e.what());
    }
  }
}

WorkerPool::~WorkerPool() { stop(); }

void WorkerPool::start() {
  for (auto& w : workers_) {
    guards_.emplace_back(net::make_work_guard(w->ioc));
    threads_.emplace_back([worker = w.get()] { run_catching(worker->ioc, "worker loop"); });
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
