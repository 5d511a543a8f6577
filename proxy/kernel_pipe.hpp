// Kernel pipes for splice(2): bulk data moves socket → pipe → socket without being copied
// to user space (what HAProxy does for plain TCP). Pipes are pooled per thread and held
// only during a burst, so idle connections keep none.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <utility>
#include <vector>

namespace faultline {

struct KernelPipe {
  int read_end = -1;
  int write_end = -1;
  explicit operator bool() const { return read_end >= 0; }
};

class KernelPipePool {
 public:
  static constexpr int kPipeSize = 1 << 20;  // room for one large burst
  static constexpr std::size_t kMaxCached = 16;

  KernelPipe take() {
    if (!free_.empty()) {
      KernelPipe p = free_.back();
      free_.pop_back();
      return p;
    }
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return {};
    ::fcntl(fds[1], F_SETPIPE_SZ, kPipeSize);  // best effort; the default 64 KiB works too
    return {fds[0], fds[1]};
  }
  // Only empty pipes come back; others are closed.
  void give(KernelPipe p, bool empty) {
    if (!p) return;
    if (empty && free_.size() < kMaxCached) {
      free_.push_back(p);
      return;
    }
    ::close(p.read_end);
    ::close(p.write_end);
  }
  ~KernelPipePool() {
    for (auto& p : free_) {
      ::close(p.read_end);
      ::close(p.write_end);
    }
  }
  static KernelPipePool& local() {
    thread_local KernelPipePool pool;
    return pool;
  }

 private:
  std::vector<KernelPipe> free_;
};

}  // namespace faultline
