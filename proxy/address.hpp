// host:port text as Toxiproxy users write it: "127.0.0.1:8080", "[::1]:80", ":0",
// "localhost:6379". Pure string handling; resolution happens elsewhere.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace faultline {

struct HostPort {
  std::string host;  // without brackets; empty means "all interfaces"
  std::string port;
};

// Splits "host:port" / "[v6]:port" / ":port". Returns nullopt when there is no port.
std::optional<HostPort> split_host_port(std::string_view text);

// Formats an address the way Go does: "127.0.0.1:80", "[::]:80".
std::string join_host_port(std::string_view host, unsigned short port);

// True for localhost, 127.0.0.0/8 and ::1 (the Host-header allowlist's built-ins).
bool is_loopback_name(std::string_view host);

}  // namespace faultline
