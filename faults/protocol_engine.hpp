// One connection's protocol engine: it reads both directions' bytes as messages, pairs
// requests with their answers (HTTP and Redis answer in order), and decides per message
// what the active protocol faults do: forward, delay, answer in the upstream's place,
// rewrite the answer, or end the connection at a precise point. Bytes are forwarded
// unchanged unless a fault changes them; what it cannot parse passes through as bytes.
// Pure: no sockets and no clock of its own (times come with the bytes).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "faults/chain.hpp"
#include "faults/rng.hpp"
#include "faults/stage.hpp"

namespace faultline {

// Whether faults of `layer` make sense on a proxy speaking `p`.
bool protocol_accepts(Protocol p, Layer layer);

// Where the engine's decisions go. `Stream::upstream` is towards the server.
class EngineOutput {
 public:
  virtual void send(Stream towards, std::string bytes, TimePoint release) = 0;
  // Ends the connection once everything sent towards `towards` before it is written.
  virtual void end(Stream towards, EndKind kind, TimePoint at) = 0;
  // A fault acted on a message (for logs, metrics and the recorder).
  virtual void applied(const ToxicConfig& fault, std::string_view what) = 0;

 protected:
  ~EngineOutput() = default;
};

// Message counters a proxy keeps for its protocol.
struct EngineCounters {
  std::uint64_t requests = 0;
  std::uint64_t responses = 0;
  std::uint64_t undecodable = 0;  // streams given up on and passed through as bytes
};

class ProtocolEngine {
 public:
  virtual ~ProtocolEngine() = default;
  // The protocol faults active now, in toxic order (both streams; a protocol fault acts on an
  // exchange, so its `stream` does not matter).
  virtual void set_faults(ToxicList faults) = 0;
  // Bytes read from the client (`from` = upstream: they travel upstream) or from the server.
  virtual void on_bytes(Stream from, std::string_view data, TimePoint now, EngineOutput& out) = 0;
  // That side closed its sending half.
  virtual void on_eof(Stream from, TimePoint now, EngineOutput& out) = 0;
  virtual const EngineCounters& counters() const = 0;
  // True while the engine holds bytes with no release time (a stall "until removed").
  virtual bool holds_forever() const { return false; }
};

// `rng` is this connection's stream; per-message toxicity rolls come from it.
std::unique_ptr<ProtocolEngine> make_engine(Protocol protocol, Rng rng);

}  // namespace faultline
