// What the data plane shares with the control plane for one proxy: the immutable
// configuration snapshot that live connections pick up at their next chunk, and the
// live counters /metrics reads. No Asio here; the control plane never waits on it.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>
#include <memory>
#include <string>

#include "faults/chain.hpp"
#include "faults/protocol_engine.hpp"

namespace boost::asio::ssl {
class context;
}
namespace faultline::rec {
class Recording;
}

namespace faultline {

// One immutable configuration of a proxy's data path.
struct ProxySnapshot {
  std::string upstream;  // host:port (or http[s]://host[:port]), resolved per connection
  Protocol protocol = Protocol::tcp;
  // TLS towards the upstream (https:// upstreams) and towards clients (a certificate).
  std::shared_ptr<boost::asio::ssl::context> upstream_tls;
  bool upstream_verify = true;
  std::string upstream_server_name;  // SNI and the name verified; the upstream host when empty
  std::shared_ptr<boost::asio::ssl::context> listen_tls;
  std::vector<std::shared_ptr<rec::Recording>> recordings;  // recordings covering this proxy
  ToxicList upstream_toxics;
  ToxicList downstream_toxics;
  std::uint64_t version = 0;
};

struct DirectionStats {
  std::atomic<std::uint64_t> received_bytes{0};  // read from this direction's source
  std::atomic<std::uint64_t> sent_bytes{0};      // written to this direction's destination
  std::atomic<std::uint64_t> dropped_bytes{0};   // dropped on purpose by faults
};

struct ProxyStats {
  DirectionStats direction[2];  // indexed by Stream
  std::atomic<std::uint64_t> connections_active{0};
  std::atomic<std::uint64_t> connections_total{0};
  std::atomic<std::uint64_t> connections_refused_limit{0};
  std::atomic<std::uint64_t> connections_refused_upstream{0};  // closed because the upstream was down
  std::atomic<std::uint64_t> upstream_connect_failures{0};
  std::atomic<std::uint64_t> resets_sent{0};
  // Connections on which the client sent at least one byte: application traffic on a tcp
  // proxy, as a failover verdict counts it (a health check that only connects is not).
  std::atomic<std::uint64_t> data_connections{0};
  // Message-aware proxies.
  std::atomic<std::uint64_t> messages_requests{0};
  std::atomic<std::uint64_t> messages_responses{0};
  std::atomic<std::uint64_t> undecodable_streams{0};  // given up on and passed through as bytes
  // TLS handshake failures by side (0 client, 1 upstream) and kind (kTlsFailureKinds).
  std::atomic<std::uint64_t> tls_failures[2][5] = {};
};

inline constexpr const char* kTlsFailureKinds[5] = {"verification", "protocol", "sni", "closed", "other"};

// One live connection as the API lists it. Counters are written by the connection's
// worker and read by the control thread; the toxic names change rarely, under a mutex.
struct ConnectionInfo {
  std::uint64_t id = 0;
  std::string client;
  TimePoint started{};
  std::atomic<std::uint64_t> bytes[2] = {};  // received from each direction's source
  std::mutex mutex;
  std::vector<std::string> toxics[2];  // guarded by mutex
};

// Counts `n` bytes a connection received from `from`'s source, in the connection's own
// counters and, on its first client byte, as a connection that carried data. One place for
// both session kinds.
inline void count_received(ProxyStats& stats, ConnectionInfo& info, Stream from, std::uint64_t n) {
  const auto before = info.bytes[from == Stream::upstream ? 0 : 1].fetch_add(n, std::memory_order_relaxed);
  if (from == Stream::upstream && before == 0 && n > 0) stats.data_connections.fetch_add(1, std::memory_order_relaxed);
}

// Shared by the control plane and every live connection of one proxy.
class ProxyRuntime {
 public:
  explicit ProxyRuntime(std::string name, std::uint64_t seed) : name_(std::move(name)), seed_(seed) {}

  const std::string& name() const { return name_; }
  std::uint64_t seed() const { return seed_; }

  std::shared_ptr<const ProxySnapshot> snapshot() const { return snapshot_.load(std::memory_order_acquire); }
  std::uint64_t version() const { return version_.load(std::memory_order_acquire); }
  void publish(std::shared_ptr<ProxySnapshot> next) {
    next->version = version_.load(std::memory_order_relaxed) + 1;
    const auto v = next->version;
    snapshot_.store(std::move(next), std::memory_order_release);
    version_.store(v, std::memory_order_release);
  }

  // Bumped when the proxy stops; connections from an older generation are closed.
  std::uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  void next_generation() { generation_.fetch_add(1, std::memory_order_acq_rel); }

  std::uint64_t next_connection_index() { return connection_index_.fetch_add(1, std::memory_order_relaxed); }

  ProxyStats stats;
  std::atomic<std::uint64_t> max_connections{0};  // 0 = no limit

  void add_connection(std::shared_ptr<ConnectionInfo> info) {
    std::lock_guard lock(connections_mutex_);
    connections_.emplace(info->id, std::move(info));
  }
  void remove_connection(std::uint64_t id) {
    std::lock_guard lock(connections_mutex_);
    connections_.erase(id);
  }
  std::vector<std::shared_ptr<ConnectionInfo>> connections() const {
    std::lock_guard lock(connections_mutex_);
    std::vector<std::shared_ptr<ConnectionInfo>> out;
    out.reserve(connections_.size());
    for (const auto& [id, info] : connections_) out.push_back(info);
    return out;
  }

 private:
  mutable std::mutex connections_mutex_;  // held only to add, remove or copy entries
  std::map<std::uint64_t, std::shared_ptr<ConnectionInfo>> connections_;
  std::string name_;
  std::uint64_t seed_;
  std::atomic<std::shared_ptr<const ProxySnapshot>> snapshot_{std::make_shared<const ProxySnapshot>()};
  std::atomic<std::uint64_t> version_{0};
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<std::uint64_t> connection_index_{0};
};

}  // namespace faultline
