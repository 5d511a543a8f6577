// Drives an http::Framer the way the proxy does (keep the unconsumed bytes, append what
// arrives, step until a step neither consumes nor reports) and traps on any broken
// promise of the FrameStep contract.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/check.hpp"
#include "protocols/http.hpp"

namespace faultline::fuzz {

class HttpDriver {
 public:
  explicit HttpDriver(bool request) : framer_(request) {}

  http::Framer& framer() { return framer_; }

  void feed(std::string_view bytes) {
    if (errored_) return;
    pending_.append(bytes);
    // Every step either consumes, or reports one of at most two zero-length events (an
    // end, an error) per message; more than this is a step that loops in place.
    const std::size_t bound = 4 * pending_.size() + 8;
    for (std::size_t steps = 0;; ++steps) {
      check(steps <= bound);
      const FrameStep s = framer_.step(pending_);
      check(s.consumed <= pending_.size());
      if (s.consumed == 0 && s.event == FrameEvent::none) break;
      switch (s.event) {
        case FrameEvent::none:
          check(s.payload.empty());
          break;
        case FrameEvent::head:
          check(!in_message_);
          check(!framer_.upgraded());
          check(framer_.in_message());
          check(s.consumed > 0);
          in_message_ = true;
          break;
        case FrameEvent::body:
          check(in_message_);
          check(!s.payload.empty());
          check(s.payload.data() >= pending_.data());
          check(s.payload.data() + s.payload.size() <= pending_.data() + s.consumed);
          break;
        case FrameEvent::end:
          check(in_message_);
          check(!framer_.in_message());
          in_message_ = false;
          break;
        case FrameEvent::error:
          check(s.consumed == 0);
          check(!framer_.error().empty());
          errored_ = true;
          // Once in error, it stays so.
          check(framer_.step(pending_).event == FrameEvent::error);
          return;
      }
      if (framer_.upgraded()) check(s.event == FrameEvent::end || s.event == FrameEvent::none);
      pending_.erase(0, s.consumed);
    }
  }

  void finish() {
    if (errored_) return;
    const bool until_close = in_message_ && framer_.body_until_close();
    const bool ended = framer_.finish();
    if (until_close) check(ended);
    if (ended) check(!framer_.in_message());
  }

 private:
  http::Framer framer_;
  std::string pending_;
  bool in_message_ = false;
  bool errored_ = false;
};

// The first byte picks how the rest is cut: with its top bit set, into pieces of
// (low bits + 1) bytes; otherwise once, at a point proportional to its value.
template <class Feed>
void feed_split(const std::uint8_t* data, std::size_t size, Feed&& feed) {
  if (size == 0) return;
  const std::uint8_t hint = data[0];
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  if (hint & 0x80) {
    const std::size_t piece = (hint & 0x7f) + 1u;
    for (std::size_t i = 0; i < rest.size(); i += piece) feed(rest.substr(i, piece));
  } else {
    const std::size_t cut = rest.size() * hint / 128;
    feed(rest.substr(0, cut));
    feed(rest.substr(cut));
  }
}

}  // namespace faultline::fuzz
