// A connection's taps into the recordings that cover its proxy. Follows the proxy's
// snapshot, so a recording started (or stopped) through the API picks up connections
// that are already open. Worker thread only; the recordings themselves are thread-safe.
#pragma once
#include <memory>
#include <utility>
#include <vector>

#include "proxy/runtime.hpp"
#include "recorder/recording.hpp"

namespace faultline {

class RecordingTaps {
 public:
  // Opens this connection (of `proxy`, speaking `protocol`, from `client`) in recordings
  // that are new in `snapshot`; forgets those gone.
  void follow(const ProxySnapshot& snapshot, const std::string& proxy, Protocol protocol, const std::string& client,
              TimePoint now) {
    std::erase_if(taps_, [&](const Tap& t) {
      for (const auto& r : snapshot.recordings) {
        if (r == t.recording) return false;
      }
      return true;
    });
    for (const auto& r : snapshot.recordings) {
      bool known = false;
      for (const auto& t : taps_) known = known || t.recording == r;
      if (!known) taps_.push_back({r, r->open_connection({proxy, protocol, client, snapshot.upstream}, now)});
    }
  }
  bool empty() const { return taps_.empty(); }
  void data(Stream towards, const void* bytes, std::size_t size, TimePoint at) {
    for (const auto& t : taps_) t.recording->data(t.connection, towards, bytes, size, at);
  }
  // Whether any recording would keep `size` bytes now (see Recording::wants).
  bool wants(std::size_t size) const {
    for (const auto& t : taps_) {
      if (t.recording->wants(size)) return true;
    }
    return false;
  }
  void lost(Stream towards, std::size_t size, TimePoint at) {
    for (const auto& t : taps_) t.recording->lost(t.connection, towards, size, at);
  }
  void end(Stream towards, EndKind how, TimePoint at) {
    for (const auto& t : taps_) t.recording->end(t.connection, towards, how, at);
  }
  void fault(std::string_view toxic, std::string_view type, std::string_view what, TimePoint at) {
    for (const auto& t : taps_) t.recording->fault(t.connection, toxic, type, what, at);
  }
  void close(TimePoint at) {
    for (const auto& t : taps_) t.recording->close_connection(t.connection, at);
    taps_.clear();
  }

 private:
  struct Tap {
    std::shared_ptr<rec::Recording> recording;
    std::uint64_t connection;
  };
  std::vector<Tap> taps_;
};

}  // namespace faultline
