// The words every layer uses to speak of a connection: which way bytes travel, how a
// direction ends, which protocol a proxy speaks, and the clock everything is timed by.
// They live at the bottom of the layering so the recorder, the proxy and the replayers
// share them without linking the fault chain.
#pragma once
#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

namespace faultline {

// Time as the data path and the fault stages see it: a monotonic clock passed in as a
// value, so pure decision logic can be driven by a fake clock in tests.
using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Duration = Clock::duration;
using std::chrono::microseconds;
using std::chrono::milliseconds;
inline constexpr TimePoint kNever = TimePoint::max();

// Which way bytes travel: `upstream` is client -> server, `downstream` server -> client.
// `both` is only meaningful for a toxic that applies to either direction.
enum class Stream : std::uint8_t { upstream, downstream, both };

// How a direction ends.
enum class EndKind : std::uint8_t {
  half_close,  // FIN towards this direction's destination; the other direction keeps flowing
  close,       // close the whole connection with FIN on both sides
  reset,       // abort the whole connection with RST on both sides
};

// What a proxy speaks: `tcp` relays bytes; the others decode messages.
enum class Protocol : std::uint8_t { tcp, http, resp, mcp };

// "tcp" (or empty), "http", "resp" (or "redis"), "mcp"; nullopt for anything else.
std::optional<Protocol> parse_protocol(std::string_view text);
std::string_view protocol_name(Protocol p);

}  // namespace faultline
