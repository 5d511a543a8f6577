// Toxic configuration as the control API sees it (Toxiproxy's JSON model) and the
// registry of toxic types: attribute schemas, defaults, validation, and the factory
// that turns an immutable config into a per-connection Stage.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "faults/rng.hpp"
#include "faults/stage.hpp"
#include "base/vocabulary.hpp"

namespace faultline {

// A toxic on Stream::both applies to each direction (one instance per direction).
inline bool applies_to(Stream toxic, Stream direction) { return toxic == Stream::both || toxic == direction; }

// An attribute value; Toxiproxy's are integers, ours may be floats or strings too.
struct AttributeValue {
  bool integral = true;
  std::int64_t integer = 0;
  double number = 0.0;
  bool is_text = false;
  bool is_json = false;  // `text` holds compact JSON (objects, arrays, booleans, strings)
  std::string text;
  double as_double() const { return integral ? static_cast<double>(integer) : number; }
  std::int64_t as_int() const { return integral ? integer : static_cast<std::int64_t>(number); }

  static AttributeValue of_int(std::int64_t v) {
    AttributeValue a;
    a.integer = v;
    return a;
  }
  static AttributeValue of_number(double v) {
    AttributeValue a;
    a.integral = false;
    a.number = v;
    return a;
  }
  static AttributeValue of_text(std::string v) {
    AttributeValue a;
    a.is_text = true;
    a.text = std::move(v);
    return a;
  }
  static AttributeValue of_json(std::string compact) {
    AttributeValue a;
    a.is_json = true;
    a.text = std::move(compact);
    return a;
  }
};

// "Active only in windows": from `after` ms after creation, for `for_ms` (0 = open-ended),
// repeating every `every` ms (0 = once).
struct Schedule {
  std::int64_t after_ms = 0;
  std::int64_t for_ms = 0;
  std::int64_t every_ms = 0;
  bool active(Duration since_created) const;
  // The next instant (as time since creation) at which active() changes; nullopt = never.
  std::optional<Duration> next_change(Duration since_created) const;
};

// What one fault type keeps across every connection of one toxic and across its updates
// (shared_bandwidth's virtual clock, drop_connections' count of connections, the sessions
// mcp_session_kill has seen). Each type derives its own from this, in its own file, and
// reaches it through ToxicShared::state<ItsState>(); no shared struct names a type's fields.
struct TypeState {
  TypeState() = default;
  TypeState(const TypeState&) = delete;
  TypeState& operator=(const TypeState&) = delete;
  virtual ~TypeState() = default;
};

// State one toxic shares across all its connections (and its updates): what it did, for
// /metrics (the same counters for every type), and its type's own TypeState.
struct ToxicShared {
  std::atomic<std::uint64_t> connections{0};    // connections it applied to
  std::atomic<std::uint64_t> bytes_dropped{0};
  std::atomic<std::uint64_t> bytes_delayed{0};
  std::atomic<std::uint64_t> resets{0};
  std::atomic<std::uint64_t> applied{0};        // protocol faults: messages the fault acted on

  // This toxic's type state, made on first use by whichever worker gets there first. A
  // toxic's type never changes (an update keeps it), so every caller on one ToxicShared
  // names the same State: the type's code is the only code that asks for it.
  template <typename State>
  State& state() {
    static_assert(std::is_base_of_v<TypeState, State>);
    std::call_once(state_made_, [this] { state_ = std::make_unique<State>(); });
    return static_cast<State&>(*state_);
  }

 private:
  std::once_flag state_made_;
  std::unique_ptr<TypeState> state_;
};

struct ProtocolFault;  // a protocol fault's attributes, compiled once (faults/protocol_fault.hpp)

struct Attribute {
  std::string name;
  AttributeValue value;
};

// The immutable, shared configuration of one toxic.
struct ToxicConfig {
  std::string name;
  std::string type;
  std::string stream_text;  // the spelling the client used ("Upstream" stays "Upstream")
  Stream stream = Stream::downstream;
  double toxicity = 1.0;
  std::vector<Attribute> attributes;  // every attribute of the type, schema order
  std::uint64_t revision = 0;         // bumped on every update; stages are rebuilt when it changes
  bool per_chunk_dice = false;        // "dice": "chunk": toxicity rolled per chunk, not per connection
  std::optional<Schedule> schedule;
  TimePoint created{};                // the schedule's origin
  std::shared_ptr<const ProtocolFault> compiled;  // protocol faults only
  std::shared_ptr<ToxicShared> shared = std::make_shared<ToxicShared>();

  bool active_at(TimePoint now) const { return !schedule || schedule->active(now - created); }
  const std::string& get_text(std::string_view attribute) const;

  const AttributeValue* find(std::string_view attribute) const;
  std::int64_t get_int(std::string_view attribute) const;
  double get_double(std::string_view attribute) const;
};

// text: one of `choices`; string: free text; json: any JSON value (objects for `match`, ...).
enum class AttributeKind : std::uint8_t { integer, number, text, string, json };

// Which traffic a fault type understands: bytes (every proxy) or one protocol's messages.
enum class Layer : std::uint8_t { bytes, http, resp, jsonrpc };

struct AttributeSpec {
  std::string_view name;
  AttributeKind kind = AttributeKind::integer;
  double default_value = 0;
  std::vector<std::string_view> choices = {};  // text: allowed values, the first is the default
  // faultline's additions to a Toxiproxy type: shown in responses only when not the default,
  // so Toxiproxy clients (and their golden tests) see Toxiproxy's exact shapes.
  bool extension = false;
  std::string_view default_text = {};  // string and json kinds (json: compact JSON text)
};

// The value an attribute has when a toxic is created without it.
AttributeValue default_value(const AttributeSpec& spec);

// What a stage needs to know about where it is made.
struct StageContext {
  bool connection_start = true;  // false when the toxic joins a connection already open
};

// Everything the proxy needs to know about one toxic type.
struct ToxicType {
  std::string_view name;
  std::vector<AttributeSpec> attributes;
  // Returns an error message naming the attribute, or nullopt when valid.
  std::function<std::optional<std::string>(const ToxicConfig&)> validate;
  // Makes the per-connection stage. `rng` is this toxic's own stream on this connection.
  std::function<std::unique_ptr<Stage>(const ToxicConfig&, Rng rng, const StageContext&)> make;
  Layer layer = Layer::bytes;
  // Protocol faults: checks and compiles the attributes once; on failure returns null and
  // sets `error` (naming the attribute).
  std::function<std::shared_ptr<const ProtocolFault>(const ToxicConfig&, std::string& error)> compile = {};
};

// The registry of toxic types. Filled before main() by the FaultRegistrar of each fault
// file, and only read after that.
class ToxicRegistry {
 public:
  static const ToxicRegistry& instance();
  const ToxicType* find(std::string_view type) const;
  const std::vector<ToxicType>& types() const { return types_; }
  // Two types of one name are a bug in the fault files: reported, then abort().
  void add(ToxicType type);

 private:
  friend struct FaultRegistrar;
  static ToxicRegistry& filling();
  std::vector<ToxicType> types_;
};

// How a fault file adds its types: one static object per file,
//   const FaultRegistrar registrar([](ToxicRegistry& r) { r.add({...}); });
// so a new fault touches no shared list. faults/CMakeLists.txt links the library whole
// (a static library would drop a file nothing calls into, registrar and all).
struct FaultRegistrar {
  explicit FaultRegistrar(void (*add_types)(ToxicRegistry&)) { add_types(ToxicRegistry::filling()); }
};

// Parses a stream name case-insensitively ("upstream"/"downstream"/"both").
std::optional<Stream> parse_stream(std::string_view text);

// Durations, counts and rates above this are refused rather than left to overflow the
// clock arithmetic (10^10 ms is about 115 days; a timeout of 0 already means "forever").
inline constexpr double kMaxAttribute = 1e10;

}  // namespace faultline
