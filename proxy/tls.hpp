// TLS building blocks: contexts for originating TLS to an upstream and terminating TLS
// from clients (with a given certificate, or leaves minted per SNI name by a local CA),
// short reasons for failed handshakes, and creation of that local CA.
// Asio stays out of this header: it is included by app/ as well as proxy/.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <boost/system/error_code.hpp>
#include <openssl/types.h>

namespace boost::asio::ssl {
class context;
}  // namespace boost::asio::ssl

namespace faultline {
namespace ssl = boost::asio::ssl;

namespace tls {

struct ClientOptions {       // faultline -> upstream (originate)
  bool verify = true;        // verify the chain against the system store (or `ca_file`) and the host name
  std::string ca_file;       // PEM bundle; empty = system default paths
  std::string server_name;   // SNI + name checked; the upstream host by default (set by caller)
};

struct ServerOptions {                // client -> faultline (terminate)
  std::string cert_file, key_file;    // a given certificate (chain) + key (PEM)
  std::string ca_dir;                 // or: mint leaves per SNI name with the CA in this dir (ca.pem, ca-key.pem)
};

// Each returns the context, or nullptr with `error` naming the file/option and the OpenSSL reason.
// The contexts are safe to share between worker threads.
std::shared_ptr<ssl::context> make_client_context(const ClientOptions& options, std::string& error);
std::shared_ptr<ssl::context> make_server_context(const ServerOptions& options, std::string& error);

// Prepares an ssl::stream's native handle for a client handshake: SNI (not for IP
// literals, RFC 6066) and, when verifying, the host name or IP address to check.
void prepare_client(SSL* ssl, const ClientOptions& options);

// A short, user-facing reason for a failed handshake ("certificate verify failed:
// self-signed certificate", "TLS version mismatch: ...", "peer closed the connection
// during the handshake"...). `ssl` may be null; when given, its verify result is used.
std::string handshake_failure_reason(const boost::system::error_code& ec, SSL* ssl);

// A stable metric label for the same: "verification", "protocol", "sni", "closed", "other".
std::string_view handshake_failure_kind(const boost::system::error_code& ec, SSL* ssl);

// Writes a new CA (EC P-256, CN "faultline local CA", 10 years) to dir/ca.pem and
// dir/ca-key.pem (mode 0600), creating dir. Refuses to overwrite existing files unless
// `force`. Returns false with `error` set on failure.
bool init_ca(const std::string& dir, bool force, std::string& error);

// Where `faultline ca init` writes by default: $FAULTLINE_CA_DIR, else
// $XDG_DATA_HOME/faultline/ca, else ~/.local/share/faultline/ca.
std::string default_ca_dir();

inline constexpr const char* kCaCertFile = "ca.pem";
// The largest certificate, key or CA file faultline reads (a CA bundle is a few hundred KiB).
inline constexpr std::uint64_t kMaxTlsFileBytes = 4 << 20;
inline constexpr const char* kCaKeyFile = "ca-key.pem";

}  // namespace tls
}  // namespace faultline
