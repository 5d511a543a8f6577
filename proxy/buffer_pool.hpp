// Read buffers are taken from a per-thread pool only while data is in flight, so an
// idle connection holds no buffer at all (the memory-per-idle-connection budget).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace faultline {

// A heap block of bytes with a size; moves only.
class Block {
 public:
  Block() = default;
  Block(std::unique_ptr<std::uint8_t[]> bytes, std::size_t capacity) : bytes_(std::move(bytes)), capacity_(capacity) {}
  std::uint8_t* data() const { return bytes_.get(); }
  std::size_t capacity() const { return capacity_; }
  explicit operator bool() const { return static_cast<bool>(bytes_); }
  std::unique_ptr<std::uint8_t[]> release() {
    capacity_ = 0;
    return std::move(bytes_);
  }

 private:
  std::unique_ptr<std::uint8_t[]> bytes_;
  std::size_t capacity_ = 0;
};

// Not thread-safe on purpose: one pool per worker thread.
class BufferPool {
 public:
  static constexpr std::size_t kReadSize = 256 * 1024;  // large reads matter most for bulk throughput
  static constexpr std::size_t kMaxCached = 32;

  Block take() {
    if (free_.empty()) return Block(std::make_unique_for_overwrite<std::uint8_t[]>(kReadSize), kReadSize);
    Block b(std::move(free_.back()), kReadSize);
    free_.pop_back();
    return b;
  }
  void give(Block b) {
    if (b.capacity() == kReadSize && free_.size() < kMaxCached) free_.push_back(b.release());
  }
  static BufferPool& local() {
    thread_local BufferPool pool;
    return pool;
  }

 private:
  std::vector<std::unique_ptr<std::uint8_t[]>> free_;
};

}  // namespace faultline
