// The control API's HTTP/1.1 transport (Boost.Beast): keep-alive, a 1 MiB body limit,
// idle and request timeouts, a cap on concurrent connections. Hands each request to the
// ControlPlane on the control thread.
#pragma once
#include <chrono>
#include <cstddef>

#include "proxy/asio.hpp"

namespace faultline {

class ControlPlane;

struct ApiServerLimits {
  // Connections served at once; beyond it a new one gets 503 and is closed.
  std::size_t max_connections = 256;
  // A keep-alive connection waiting for its next request (Toxiproxy's idle timeout).
  std::chrono::milliseconds idle_timeout{60000};
  // From a request's first byte to its last: a half-sent request is cut after this.
  std::chrono::milliseconds request_timeout{10000};
};

// Accepts API connections on `acceptor` until it is closed.
void start_http_server(tcp::acceptor& acceptor, ControlPlane& control_plane, ApiServerLimits limits = {});

}  // namespace faultline
