#include "faults/chain.hpp"

#include <algorithm>

namespace faultline {

// Carries one stage's output into the next active stage, or to the pipe's sink after the
// last. A stage whose toxicity is rolled per chunk may be stepped over for a segment.
class Chain::Link final : public Emitter {
 public:
  Link(Chain& chain, Entry* next, Link* after) : chain_(chain), next_(next), after_(after) {}
  void bind_sink(Emitter* sink) { sink_ = sink; }
  void emit(Segment segment) override {
    if (!next_) {
      sink_->emit(segment);
      return;
    }
    const ToxicConfig& c = *next_->config;
    if (c.per_chunk_dice && c.toxicity < 1.0 && !(chain_.dice_.uniform() < c.toxicity)) {
      after_->emit(segment);  // this chunk's roll says: not this time
      return;
    }
    next_->stage->on_data(segment, *after_);
  }
  void end(EndKind kind, TimePoint at) override {
    if (next_) next_->stage->on_end(kind, at, *after_); else sink_->end(kind, at);
  }

 private:
  Chain& chain_;
  Entry* next_;
  Link* after_;
  Emitter* sink_ = nullptr;
};

Chain::Chain(Rng connection_rng) : rng_(connection_rng), dice_(connection_rng.derive("dice")) {}
Chain::~Chain() = default;

bool Chain::rebuild(const ToxicList& toxics, TimePoint now, Emitter& out) {
  report();  // before stages move or go away
  const StageContext context{!started_};
  started_ = true;
  std::vector<Entry> next;
  next.reserve(toxics.size());
  for (const auto& config : toxics) {
    if (!config->active_at(now)) continue;  // outside its schedule's window: as if absent
    auto same = std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) {
      return e.config && e.config->name == config->name && e.config->revision == config->revision &&
             e.config->type == config->type;
    });
    if (same != entries_.end()) {
      next.push_back(std::move(*same));
      same->config.reset();
      continue;
    }
    Entry entry{config, nullptr};
    // Toxicity is drawn once per connection, toxic and revision: reproducible under a seed.
    // With per-chunk dice the stage always exists and each chunk rolls instead.
    Rng toxic_rng = rng_.derive(config->name).derive(config->revision);
    const bool applies = config->per_chunk_dice || config->toxicity >= 1.0 || toxic_rng.uniform() < config->toxicity;
    if (applies) {
      if (const ToxicType* type = ToxicRegistry::instance().find(config->type)) {
        entry.stage = type->make(*config, toxic_rng.derive("stage"), context);
        config->shared->connections.fetch_add(1, std::memory_order_relaxed);
      }
    }
    next.push_back(std::move(entry));
  }
  bool broken = false;
  for (const auto& old : entries_) {
    if (old.config && old.stage) {
      dropped_by_removed_ += old.stage->bytes_dropped;
      const bool removed = std::none_of(toxics.begin(), toxics.end(),
                                        [&](const auto& t) { return t->name == old.config->name; });
      broken = broken || (removed && old.stage->bytes_dropped > 0);
    }
  }
  entries_ = std::move(next);
  rebuild_links();
  // Every stage (re)declares its scheduled ends; what it emits flows through the stages after it.
  head_->bind_sink(&out);
  for (auto& link : links_) link->bind_sink(&out);
  for (std::size_t i = 0; i < active_.size(); ++i) active_[i]->stage->on_start(now, *links_[i]);
  return broken;
}

void Chain::rebuild_links() {
  active_.clear();
  for (auto& e : entries_) {
    if (e.stage) active_.push_back(&e);
  }
  links_.clear();
  links_.resize(active_.size());
  for (std::size_t i = active_.size(); i-- > 0;) {
    Entry* next = i + 1 < active_.size() ? active_[i + 1] : nullptr;
    Link* after = i + 1 < active_.size() ? links_[i + 1].get() : nullptr;
    links_[i] = std::make_unique<Link>(*this, next, after);
  }
  head_ = std::make_unique<Link>(*this, active_.empty() ? nullptr : active_.front(),
                                 links_.empty() ? nullptr : links_.front().get());
}

std::vector<std::string> Chain::active_names() const {
  std::vector<std::string> names;
  for (const Entry* e : active_) names.push_back(e->config->name);
  return names;
}

void Chain::push(Segment segment, Emitter& out) {
  if (active_.empty()) {
    out.emit(segment);
    return;
  }
  head_->bind_sink(&out);
  for (auto& link : links_) link->bind_sink(&out);
  head_->emit(segment);
}

void Chain::end(EndKind kind, TimePoint at, Emitter& out) {
  if (active_.empty()) {
    out.end(kind, at);
    return;
  }
  head_->bind_sink(&out);
  for (auto& link : links_) link->bind_sink(&out);
  head_->end(kind, at);
}

std::uint64_t Chain::bytes_dropped() const {
  std::uint64_t total = dropped_by_removed_;
  for (const Entry* e : active_) total += e->stage->bytes_dropped;
  return total;
}

void Chain::report() {
  for (Entry* e : active_) {
    Stage& s = *e->stage;
    ToxicShared& shared = *e->config->shared;
    shared.bytes_dropped.fetch_add(s.bytes_dropped - e->reported_dropped, std::memory_order_relaxed);
    shared.bytes_delayed.fetch_add(s.bytes_delayed - e->reported_delayed, std::memory_order_relaxed);
    shared.resets.fetch_add(s.resets - e->reported_resets, std::memory_order_relaxed);
    e->reported_dropped = s.bytes_dropped;
    e->reported_delayed = s.bytes_delayed;
    e->reported_resets = s.resets;
  }
}

TimePoint next_schedule_change(const ToxicList& toxics, TimePoint now) {
  TimePoint next = kNever;
  for (const auto& t : toxics) {
    if (!t->schedule) continue;
    if (auto change = t->schedule->next_change(now - t->created)) next = std::min(next, t->created + *change);
  }
  return next;
}

bool ActiveToxics::update(std::uint64_t version, const ToxicList& toxics, TimePoint now) {
  std::vector<std::pair<std::string, std::uint64_t>> active;
  active.reserve(toxics.size());
  for (const auto& t : toxics) {
    if (t->active_at(now)) active.emplace_back(t->name, t->revision);
  }
  version_ = version;
  next_edge_ = next_schedule_change(toxics, now);
  if (looked_ && active == active_) return false;
  looked_ = true;
  active_ = std::move(active);
  return true;
}

}  // namespace faultline
