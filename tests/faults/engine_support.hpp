// Helpers for driving the protocol engines (faults/protocol_engine.hpp) without the proxy:
// protocol fault configs compiled like the control API does (defaults, then overrides,
// then the type's compile hook), and a recording EngineOutput.
#pragma once
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "faults/protocol_engine.hpp"
#include "faults/protocol_fault.hpp"
#include "faults/toxic.hpp"

namespace faultline::test {

using Overrides = std::vector<std::pair<std::string, AttributeValue>>;

inline AttributeValue jv(std::string compact) { return AttributeValue::of_json(std::move(compact)); }
inline AttributeValue iv(std::int64_t v) { return AttributeValue::of_int(v); }
inline AttributeValue tv(std::string v) { return AttributeValue::of_text(std::move(v)); }

// A ToxicConfig of `type` with every attribute at its default (as proxy/json_io.cpp's
// build_toxic makes them), then `overrides` applied. Not compiled.
inline std::shared_ptr<ToxicConfig> config_of(const std::string& type, const Overrides& overrides, double toxicity = 1.0,
                                              std::string name = "") {
  const ToxicType* t = ToxicRegistry::instance().find(type);
  REQUIRE(t != nullptr);
  auto c = std::make_shared<ToxicConfig>();
  c->type = type;
  c->name = name.empty() ? type + "_downstream" : std::move(name);
  c->stream_text = "downstream";
  c->toxicity = toxicity;
  c->revision = 1;
  for (const auto& spec : t->attributes) {
    c->attributes.push_back({std::string(spec.name), default_value(spec)});
  }
  for (const auto& [name_, value] : overrides) {
    bool found = false;
    for (auto& a : c->attributes) {
      if (a.name == name_) {
        a.value = value;
        found = true;
      }
    }
    INFO("attribute " << name_ << " of " << type);
    REQUIRE(found);
  }
  return c;
}

// Compiles; returns the error ("" when it compiled).
inline std::string compile_error(const std::string& type, const Overrides& overrides) {
  auto c = config_of(type, overrides);
  std::string error;
  auto compiled = ToxicRegistry::instance().find(type)->compile(*c, error);
  if (compiled) return "";
  REQUIRE_FALSE(error.empty());
  return error;
}

// A compiled protocol fault, ready for set_faults.
inline std::shared_ptr<const ToxicConfig> fault(const std::string& type, const Overrides& overrides = {},
                                                double toxicity = 1.0, std::string name = "") {
  auto c = config_of(type, overrides, toxicity, std::move(name));
  std::string error;
  c->compiled = ToxicRegistry::instance().find(type)->compile(*c, error);
  INFO("compile error: " << error);
  REQUIRE(c->compiled != nullptr);
  return c;
}

// Records what an engine decided.
struct Recording final : EngineOutput {
  struct Sent {
    Stream towards;
    std::string bytes;
    TimePoint release;
  };
  struct Ended {
    Stream towards;
    EndKind kind;
    TimePoint at;
  };
  struct Note {
    std::string toxic;
    std::string what;
  };
  std::vector<Sent> sent;
  std::vector<Ended> ends;
  std::vector<Note> notes;

  void send(Stream towards, std::string bytes, TimePoint release) override {
    sent.push_back({towards, std::move(bytes), release});
  }
  void end(Stream towards, EndKind kind, TimePoint at) override { ends.push_back({towards, kind, at}); }
  void applied(const ToxicConfig& fault, std::string_view what) override { notes.push_back({fault.name, std::string(what)}); }

  // Everything sent towards one side, concatenated.
  std::string bytes(Stream towards) const {
    std::string out;
    for (const auto& s : sent)
      if (s.towards == towards) out += s.bytes;
    return out;
  }
  std::string up() const { return bytes(Stream::upstream); }
  std::string down() const { return bytes(Stream::downstream); }
  std::vector<Sent> sends(Stream towards) const {
    std::vector<Sent> out;
    for (const auto& s : sent)
      if (s.towards == towards) out.push_back(s);
    return out;
  }
  std::vector<Ended> ends_towards(Stream towards) const {
    std::vector<Ended> out;
    for (const auto& e : ends)
      if (e.towards == towards) out.push_back(e);
    return out;
  }
  // The release time of the first send towards `towards` whose bytes contain `needle`.
  TimePoint release_of(Stream towards, std::string_view needle) const {
    for (const auto& s : sent)
      if (s.towards == towards && s.bytes.find(needle) != std::string::npos) return s.release;
    FAIL("nothing sent contains " << needle);
    return {};
  }
  // Release times never go backwards in one direction.
  bool ordered(Stream towards) const {
    TimePoint last{};
    for (const auto& s : sent) {
      if (s.towards != towards) continue;
      if (s.release < last) return false;
      last = s.release;
    }
    return true;
  }
};

// An engine with a fake clock.
struct Driver {
  std::unique_ptr<ProtocolEngine> engine;
  Recording out;
  TimePoint now = TimePoint(std::chrono::seconds(1000));

  explicit Driver(Protocol p, std::uint64_t seed = 7, ToxicList faults = {}) : engine(make_engine(p, Rng(seed))) {
    REQUIRE(engine != nullptr);
    engine->set_faults(std::move(faults));
  }
  // Bytes from the client, towards the server.
  void client(std::string_view data) { engine->on_bytes(Stream::upstream, data, now, out); }
  // Bytes from the server, towards the client.
  void server(std::string_view data) { engine->on_bytes(Stream::downstream, data, now, out); }
  void client_eof() { engine->on_eof(Stream::upstream, now, out); }
  void server_eof() { engine->on_eof(Stream::downstream, now, out); }
  void advance(std::chrono::milliseconds d) { now += d; }
};

inline TimePoint start_time() { return TimePoint(std::chrono::seconds(1000)); }

}  // namespace faultline::test
