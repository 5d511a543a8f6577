// A connection of a message-aware proxy (protocol http, resp or mcp) or of a proxy that
// speaks TLS on either side. Bytes go through the protocol engine, which decides per
// message, then through the proxy's byte faults, to a writer per direction that releases
// them at their time. TLS is terminated towards the client and/or originated towards
// the upstream, so faults (and the recorder) see plain messages.
#pragma once
#include <memory>

#include "proxy/asio.hpp"
#include "proxy/connection.hpp"
#include "proxy/connection_core.hpp"
#include "proxy/recording_taps.hpp"
#include "proxy/runtime.hpp"
#include "proxy/session.hpp"

namespace faultline {

struct Worker;

// Whether connections of this proxy need a MessageSession (else the byte relay serves them).
bool is_message_proxy(const ProxySnapshot& snapshot);

class MessageSession final : public Connection, public std::enable_shared_from_this<MessageSession> {
 public:
  MessageSession(Worker& worker, std::shared_ptr<ProxyRuntime> runtime, tcp::socket client, SessionSettings settings,
                 std::uint64_t generation, std::uint64_t index);
  ~MessageSession() override;

  static void start(std::shared_ptr<MessageSession> session);

  void close(EndKind how) override;
  void config_changed() override;
  ProxyRuntime& runtime() const override { return core_.runtime(); }
  std::uint64_t generation() const override { return core_.generation(); }

 private:
  struct Peer;
  struct Outbound;
  class Output;

  awaitable<void> run();
  awaitable<bool> handshake_client();
  awaitable<bool> connect_upstream();
  awaitable<bool> handshake_upstream(std::string host);
  void upstream_unreachable(const std::string& reason);
  awaitable<void> read_loop(Stream from);
  awaitable<void> write_loop(Stream towards);
  void refresh(bool force);
  void wake(Outbound& o);
  void execute_end(Stream towards, EndKind kind);
  void fail_upstream(const std::string& reason);
  Outbound& towards(Stream s) { return s == Stream::upstream ? *to_upstream_ : *to_client_; }
  Peer& source(Stream from) { return from == Stream::upstream ? *client_ : *upstream_; }
  Peer& destination(Stream towards) { return towards == Stream::upstream ? *upstream_ : *client_; }

  ConnectionCore core_;  // registration, close-once, recordings (declared first: unregisters last)
  ProxyRuntime& runtime_;
  std::shared_ptr<const ProxySnapshot> snapshot_;
  SessionSettings settings_;
  std::uint64_t seen_version_ = ~std::uint64_t{0};
  bool closing_after_reply_ = false;  // the upstream failed: the 502 goes out, then we close
  std::unique_ptr<Peer> client_;
  std::unique_ptr<Peer> upstream_;
  std::unique_ptr<Outbound> to_upstream_;
  std::unique_ptr<Outbound> to_client_;
  std::unique_ptr<Output> output_;
  std::unique_ptr<ProtocolEngine> engine_;
  EngineCounters reported_{};
};

}  // namespace faultline
