// A recording Emitter and helpers for driving chains with a fake clock.
#pragma once
#include <memory>
#include <vector>

#include "faults/chain.hpp"

namespace faultline::test {

struct Recorder final : Emitter {
  struct End {
    EndKind kind;
    TimePoint at;
  };
  std::vector<Segment> segments;
  std::vector<End> ends;
  void emit(Segment s) override { segments.push_back(s); }
  void end(EndKind kind, TimePoint at) override { ends.push_back({kind, at}); }
  std::size_t bytes() const {
    std::size_t n = 0;
    for (const auto& s : segments) n += s.size;
    return n;
  }
};

inline std::shared_ptr<const ToxicConfig> toxic(std::string type, std::vector<Attribute> attributes,
                                                double toxicity = 1.0, std::uint64_t revision = 1,
                                                std::string name = "") {
  auto c = std::make_shared<ToxicConfig>();
  c->type = type;
  c->name = name.empty() ? type + "_downstream" : name;
  c->stream_text = "downstream";
  c->toxicity = toxicity;
  c->attributes = std::move(attributes);
  c->revision = revision;
  return c;
}

inline Attribute attr(std::string name, std::int64_t v) { return {std::move(name), AttributeValue::of_int(v)}; }
inline Attribute fattr(std::string name, double v) { return {std::move(name), AttributeValue::of_number(v)}; }

// A fixed point on the fake clock.
inline TimePoint t0() { return TimePoint(std::chrono::seconds(1000)); }

}  // namespace faultline::test
