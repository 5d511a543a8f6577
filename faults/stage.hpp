// The one interface every fault implements. A stage sees one direction of one
// connection as a sequence of byte segments, each with the earliest time it may be
// released. It forwards (possibly later, possibly in pieces), drops, or ends the
// direction. It never touches a socket: the proxy's pipe executes what it emits.
#pragma once
#include <cstddef>
#include <cstdint>

#include "base/vocabulary.hpp"

namespace faultline {

// A run of bytes owned by the pipe; stages may shrink or split it, never grow it.
struct Segment {
  std::uint8_t* data = nullptr;
  std::size_t size = 0;
  TimePoint release{};  // earliest time the bytes may be written
};

// Where a stage puts its output. The pipe keeps emitted segments in order.
class Emitter {
 public:
  virtual void emit(Segment segment) = 0;
  virtual void end(EndKind kind, TimePoint at) = 0;

 protected:
  ~Emitter() = default;
};

// One fault instance for one direction of one connection. Made from an immutable,
// shared configuration by the toxic registry; holds only per-connection state.
class Stage {
 public:
  virtual ~Stage() = default;
  // The stage joins a live direction at `now` (connection start, added later) or the
  // chain around it changed. It must (re)declare every end it has scheduled, because
  // the pipe forgets pending ends whenever the chain is rebuilt.
  virtual void on_start(TimePoint /*now*/, Emitter& /*out*/) {}
  // Bytes arrived from the previous stage.
  virtual void on_data(Segment in, Emitter& out) = 0;
  // The previous stage ended the direction at `at`. Default: pass the end on.
  virtual void on_end(EndKind kind, TimePoint at, Emitter& out) { out.end(kind, at); }
  // What this stage did, for metrics (the chain reports deltas to the toxic's counters).
  std::uint64_t bytes_dropped = 0;
  std::uint64_t bytes_delayed = 0;
  std::uint64_t resets = 0;
};

}  // namespace faultline
