// One direction's chain of fault stages on one connection. Rebuilt from the proxy's
// immutable toxic snapshot whenever that changes (or a scheduled toxic's window opens or
// closes); stages whose config is unchanged keep their state (limit_data keeps counting
// across unrelated updates).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "faults/stage.hpp"
#include "faults/toxic.hpp"

namespace faultline {

using ToxicList = std::vector<std::shared_ptr<const ToxicConfig>>;

class Chain {
 public:
  // `connection_rng` is this connection's stream; each toxic derives its own from it.
  explicit Chain(Rng connection_rng);
  Chain(const Chain&) = delete;
  Chain& operator=(const Chain&) = delete;
  ~Chain();

  // Makes the chain follow the toxics of `toxics` that are active at `now` (in order).
  // Every active stage then gets on_start(now) to (re)declare its scheduled ends into
  // `out`; the caller has dropped the ends it held before. Returns true when a removed
  // stage had dropped data: the stream is already broken and the caller should close it.
  bool rebuild(const ToxicList& toxics, TimePoint now, Emitter& out);

  // True when no stage is active (no toxic, or every toxicity draw failed).
  bool empty() const { return active_.empty(); }
  // Names of the toxics active on this direction (toxicity draw won, in their window).
  std::vector<std::string> active_names() const;

  void push(Segment segment, Emitter& out);
  void end(EndKind kind, TimePoint at, Emitter& out);

  std::uint64_t bytes_dropped() const;
  // Adds what the stages did since the last call to their toxics' shared counters.
  void report();

 private:
  struct Entry {
    std::shared_ptr<const ToxicConfig> config;
    std::unique_ptr<Stage> stage;  // null when the toxicity draw decided "not on this connection"
    std::uint64_t reported_dropped = 0, reported_delayed = 0, reported_resets = 0;
  };
  class Link;

  void rebuild_links();

  Rng rng_;
  Rng dice_;  // per-chunk toxicity rolls
  bool started_ = false;
  std::vector<Entry> entries_;
  std::vector<Entry*> active_;
  std::unique_ptr<Link> head_;                // feeds active_[0]
  std::vector<std::unique_ptr<Link>> links_;  // links_[i] carries active_[i]'s output
  std::uint64_t dropped_by_removed_ = 0;
};

// The earliest instant after `now` at which a scheduled toxic of `toxics` turns on or off.
TimePoint next_schedule_change(const ToxicList& toxics, TimePoint now);

}  // namespace faultline
