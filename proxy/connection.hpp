// What a worker and the control plane need from any live connection, whichever session
// kind carries it (byte relay, or message-aware with TLS).
#pragma once
#include <cstdint>

#include "faults/stage.hpp"

namespace faultline {

class ProxyRuntime;

class Connection {
 public:
  virtual ~Connection() = default;
  // Both run on the connection's worker thread.
  virtual void close(EndKind how) = 0;
  virtual void config_changed() = 0;
  virtual ProxyRuntime& runtime() const = 0;
  virtual std::uint64_t generation() const = 0;
};

}  // namespace faultline
