// A FIFO that allocates nothing until the first push (std::deque allocates a map and a
// node on construction, ~600 bytes, which idle connections cannot afford).
#pragma once
#include <cstddef>
#include <vector>

namespace faultline {

template <class T>
class Fifo {
 public:
  bool empty() const { return head_ == items_.size(); }
  std::size_t size() const { return items_.size() - head_; }
  T& front() { return items_[head_]; }
  void push_back(T value) { items_.push_back(std::move(value)); }
  void pop_front() {
    items_[head_] = T{};
    if (++head_ == items_.size()) {
      items_.clear();
      head_ = 0;
    } else if (head_ >= 32 && 2 * head_ >= items_.size()) {
      // A queue that is never empty (a steady stream behind a delay) must not grow forever.
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }
  template <class F>
  void for_each(F f) {
    for (std::size_t i = head_; i < items_.size(); ++i) f(items_[i]);
  }

 private:
  std::vector<T> items_;
  std::size_t head_ = 0;
};

}  // namespace faultline
