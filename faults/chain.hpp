// One direction's chain of fault stages on one connection. Rebuilt from the proxy's
// immutable toxic snapshot whenever that changes (or a scheduled toxic's window opens or
// closes); stages whose config is unchanged keep their state (limit_data keeps counting
// across unrelated updates).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
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

// When a direction's chain must follow its toxics again: the proxy published a new config
// (its version changed) or a scheduled toxic's window opens or closes (docs/ARCHITECTURE.md,
// "Schedules"). Both session kinds keep one per direction, look again when stale(),
// rebuild the chain when update() says the active set changed, and keep that direction's
// writer waiting no later than next_edge(), so an edge applies when it passes whether or
// not traffic comes.
class ActiveToxics {
 public:
  // Whether `toxics` must be looked at again at `now` for config `version`.
  bool stale(std::uint64_t version, TimePoint now) const { return !looked_ || version != version_ || now >= next_edge_; }
  // Looks at `toxics` (of config `version`) at `now`: remembers the next edge, and returns
  // true when the toxics active now (names and revisions) differ from the last look's, or
  // this is the first look.
  bool update(std::uint64_t version, const ToxicList& toxics, TimePoint now);
  // The next window edge of the toxics last looked at (kNever: none is scheduled).
  TimePoint next_edge() const { return next_edge_; }

 private:
  bool looked_ = false;
  std::uint64_t version_ = 0;
  TimePoint next_edge_ = kNever;
  std::vector<std::pair<std::string, std::uint64_t>> active_;
};

}  // namespace faultline
