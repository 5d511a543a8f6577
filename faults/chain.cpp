#include "faults/chain.hpp"

#include <algorithm>

namespace faultline {

// Connects stage i's output to stage i+1's input; the last one to the pipe's emitter.
class Chain::Link final : public Emitter {
 public:
  Link(Stage* next, Link* after) : next_(next), after_(after) {}
  void bind_sink(Emitter* sink) { sink_ = sink; }
  void emit(Segment segment) override {
    if (next_) next_->on_data(segment, *after_); else sink_->emit(segment);
  }
  void end(EndKind kind, TimePoint at) override {
    if (next_) next_->on_end(kind, at, *after_); else sink_->end(kind, at);
  }

 private:
  Stage* next_;
  Link* after_;
  Emitter* sink_ = nullptr;
};

Chain::Chain(Rng connection_rng) : rng_(connection_rng) {}
Chain::~Chain() = default;

bool Chain::rebuild(const ToxicList& toxics, TimePoint now, Emitter& out) {
  std::vector<Entry> next;
  next.reserve(toxics.size());
  for (const auto& config : toxics) {
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
    Rng toxic_rng = rng_.derive(config->name).derive(config->revision);
    const bool applies = config->toxicity >= 1.0 || toxic_rng.uniform() < config->toxicity;
    if (applies) {
      if (const ToxicType* type = ToxicRegistry::instance().find(config->type)) {
        entry.stage = type->make(*config, toxic_rng.derive("stage"));
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
  rebuild_active();
  // Every stage (re)declares its scheduled ends; what it emits flows through the stages after it.
  for (auto& link : links_) link->bind_sink(&out);  // an end may travel through later stages
  for (std::size_t i = 0; i < active_.size(); ++i) active_[i]->on_start(now, *links_[i]);
  return broken;
}

void Chain::rebuild_active() {
  active_.clear();
  for (auto& e : entries_) {
    if (e.stage) active_.push_back(e.stage.get());
  }
  links_.clear();
  links_.resize(active_.size());
  // links_[i] is the output of active_[i]; build from the back so each knows its successor.
  for (std::size_t i = active_.size(); i-- > 0;) {
    Stage* next = i + 1 < active_.size() ? active_[i + 1] : nullptr;
    Link* after = i + 1 < active_.size() ? links_[i + 1].get() : nullptr;
    links_[i] = std::make_unique<Link>(next, after);
  }
}

std::vector<std::string> Chain::active_names() const {
  std::vector<std::string> names;
  for (const auto& e : entries_) {
    if (e.stage) names.push_back(e.config->name);
  }
  return names;
}

void Chain::push(Segment segment, Emitter& out) {
  if (active_.empty()) {
    out.emit(segment);
    return;
  }
  for (auto& link : links_) link->bind_sink(&out);
  active_.front()->on_data(segment, *links_.front());
}

void Chain::end(EndKind kind, TimePoint at, Emitter& out) {
  if (active_.empty()) {
    out.end(kind, at);
    return;
  }
  for (auto& link : links_) link->bind_sink(&out);
  active_.front()->on_end(kind, at, *links_.front());
}

std::uint64_t Chain::bytes_dropped() const {
  std::uint64_t total = dropped_by_removed_;
  for (const auto& e : entries_) {
    if (e.stage) total += e.stage->bytes_dropped;
  }
  return total;
}

}  // namespace faultline
