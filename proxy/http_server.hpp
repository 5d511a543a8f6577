// The control API's HTTP/1.1 transport (Boost.Beast): keep-alive, a 1 MiB body limit,
// idle timeouts. Hands each request to the ControlPlane on the control thread.
#pragma once
#include "proxy/asio.hpp"

namespace faultline {

class ControlPlane;

// Accepts API connections on `acceptor` until it is closed.
void start_http_server(tcp::acceptor& acceptor, ControlPlane& control_plane);

}  // namespace faultline
