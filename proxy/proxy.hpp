// One proxy as the control plane owns it: its spec, its toxics, its listener (on the
// control thread's loop) and the runtime it shares with its live connections. Every
// method runs on the control thread and returns without waiting for traffic.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "faults/toxic.hpp"
#include "proxy/runtime.hpp"

namespace faultline {

class ServerContext;

struct ProxySpec {
  std::string name;
  std::string listen;
  std::string upstream;
  bool enabled = true;
  bool refuse_when_down = false;             // "on_upstream_down": "refuse"
  std::optional<std::uint64_t> max_connections;
  Protocol protocol = Protocol::tcp;
  // TLS as configured (`tls` object, compact JSON; "" = none) and the contexts made from it.
  std::string tls_json;
  std::shared_ptr<boost::asio::ssl::context> upstream_tls;
  bool upstream_verify = true;
  std::string upstream_server_name;
  std::shared_ptr<boost::asio::ssl::context> listen_tls;
  // `replay` as configured (compact JSON; "" = a real upstream) and the embedded replay
  // server `upstream` points at, stopped when the proxy goes.
  std::string replay_json;
  std::shared_ptr<void> replay_owner;
};

class Proxy {
 public:
  Proxy(ServerContext& context, ProxySpec spec);
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  const ProxySpec& spec() const { return spec_; }
  ProxySpec& spec() { return spec_; }
  // The bound address while running (Go's formatting), else the listen text as given.
  std::string listen_text() const;
  bool running() const { return listener_ != nullptr; }

  // Binds and starts accepting. Returns Go-style error text on failure.
  std::optional<std::string> start();
  // Closes the listener and every live connection of this proxy.
  void stop();
  // Closes only the listener (graceful shutdown keeps connections).
  void stop_accepting();
  // Would `listen` bind somewhere other than where this proxy is now? (Toxiproxy's Differs)
  bool listen_differs(const std::string& listen) const;
  // Go-style error text when `listen` cannot be resolved to an address.
  std::optional<std::string> check_listen(const std::string& listen) const;

  // Toxics in insertion order, both streams.
  std::vector<std::shared_ptr<const ToxicConfig>>& toxics() { return toxics_; }
  const std::vector<std::shared_ptr<const ToxicConfig>>& toxics() const { return toxics_; }
  // Toxics taken out (deleted, or replaced by /populate) whose counters /metrics keeps, with
  // state="removed", until POST /reset: a drill reads what a fault did after it has gone.
  // Bounded: past kMaxRetiredToxics the oldest are forgotten.
  static constexpr std::size_t kMaxRetiredToxics = 512;
  const std::vector<std::shared_ptr<const ToxicConfig>>& retired_toxics() const { return retired_; }
  void retire(std::shared_ptr<const ToxicConfig> toxic);
  // Replaces the toxic list, retiring those not kept.
  void replace_toxics(std::vector<std::shared_ptr<const ToxicConfig>> next);
  void forget_retired() { retired_.clear(); }
  // Hands the current spec and toxics to the data plane as a new immutable snapshot.
  void publish();

  ProxyRuntime& runtime() { return *runtime_; }
  const ProxyRuntime& runtime() const { return *runtime_; }
  std::uint64_t next_revision() { return ++revision_; }

 private:
  struct Listener;
  void upstream_failed();

  ServerContext& context_;
  ProxySpec spec_;
  std::vector<std::shared_ptr<const ToxicConfig>> toxics_;
  std::vector<std::shared_ptr<const ToxicConfig>> retired_;
  std::shared_ptr<ProxyRuntime> runtime_;
  std::shared_ptr<Listener> listener_;
  std::uint64_t revision_ = 0;
};

}  // namespace faultline
