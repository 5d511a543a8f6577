// TLS contexts, minting and failure reasons, exercised with in-memory BIO pairs (no
// sockets) except for one check that Asio's own error codes map the same way.
#include "proxy/tls.hpp"

#include <stdlib.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>

#include <catch2/catch.hpp>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "proxy/asio.hpp"

namespace fs = std::filesystem;
using faultline::tls::ClientOptions;
using faultline::tls::ServerOptions;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "faultline-tls-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string str() const { return path.string(); }
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
using SslPtr = std::unique_ptr<SSL, SslFree>;
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

SslPtr new_ssl(const std::shared_ptr<faultline::ssl::context>& ctx) {
  REQUIRE(ctx);
  return SslPtr(SSL_new(ctx->native_handle()));
}

struct Side {
  bool done = false;
  bool failed = false;
  boost::system::error_code ec;  // shaped as Asio reports it: first queued OpenSSL error
};

void step(SSL* ssl, Side& side) {
  if (side.done || side.failed) return;
  ERR_clear_error();
  const int rc = SSL_do_handshake(ssl);
  if (rc == 1) {
    side.done = true;
    return;
  }
  const int err = SSL_get_error(ssl, rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return;
  side.failed = true;
  side.ec = boost::system::error_code(static_cast<int>(ERR_get_error()), faultline::net::error::get_ssl_category());
  ERR_clear_error();
}

struct Handshake {
  Side client, server;
  bool ok() const { return client.done && server.done; }
};

// Runs both ends of a handshake over a memory BIO pair until both finish or fail.
Handshake handshake(SSL* client, SSL* server) {
  BIO* cb = nullptr;
  BIO* sb = nullptr;
  REQUIRE(BIO_new_bio_pair(&cb, 0, &sb, 0) == 1);
  SSL_set_bio(client, cb, cb);
  SSL_set_bio(server, sb, sb);
  SSL_set_connect_state(client);
  SSL_set_accept_state(server);
  Handshake h;
  for (int i = 0; i < 50; ++i) {
    step(client, h.client);
    step(server, h.server);
    if ((h.client.done || h.client.failed) && (h.server.done || h.server.failed)) break;
  }
  return h;
}

std::string common_name(X509* cert) {
  char buf[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf);
  return buf;
}

std::string serial_hex(X509* cert) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(cert), nullptr);
  char* hex = BN_bn2hex(bn);
  std::string out = hex;
  OPENSSL_free(hex);
  BN_free(bn);
  return out;
}

bool extension_critical(X509* cert, int nid) {
  const int i = X509_get_ext_by_NID(cert, nid, -1);
  return i >= 0 && X509_EXTENSION_get_critical(X509_get_ext(cert, i)) == 1;
}

std::shared_ptr<faultline::ssl::context> client_ctx(const ClientOptions& o) {
  std::string error;
  auto ctx = faultline::tls::make_client_context(o, error);
  INFO(error);
  REQUIRE(ctx);
  return ctx;
}

std::shared_ptr<faultline::ssl::context> minting_server(const std::string& ca_dir) {
  std::string error;
  ServerOptions so;
  so.ca_dir = ca_dir;
  auto ctx = faultline::tls::make_server_context(so, error);
  INFO(error);
  REQUIRE(ctx);
  return ctx;
}

std::string make_ca(const TempDir& dir) {
  std::string error;
  INFO(error);
  REQUIRE(faultline::tls::init_ca(dir.str(), false, error));
  return dir.str();
}

ClientOptions trusting(const std::string& ca_dir, const std::string& name) {
  ClientOptions o;
  o.ca_file = (fs::path(ca_dir) / "ca.pem").string();
  o.server_name = name;
  return o;
}

}  // namespace

TEST_CASE("tls init_ca writes a P-256 CA and only overwrites with force", "[tls]") {
  TempDir tmp;
  const std::string dir = (tmp.path / "nested" / "ca").string();
  std::string error;
  REQUIRE(faultline::tls::init_ca(dir, false, error));
  const fs::path cert_path = fs::path(dir) / "ca.pem";
  const fs::path key_path = fs::path(dir) / "ca-key.pem";
  REQUIRE(fs::exists(cert_path));
  REQUIRE(fs::exists(key_path));

  struct stat st {};
  REQUIRE(::stat(key_path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  FILE* f = std::fopen(cert_path.c_str(), "r");
  REQUIRE(f);
  X509Ptr ca(PEM_read_X509(f, nullptr, nullptr, nullptr));
  std::fclose(f);
  REQUIRE(ca);
  CHECK(common_name(ca.get()) == "faultline local CA");
  CHECK(X509_check_ca(ca.get()) >= 1);
  CHECK(extension_critical(ca.get(), NID_basic_constraints));
  CHECK((X509_get_key_usage(ca.get()) & (KU_KEY_CERT_SIGN | KU_CRL_SIGN)) == (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  int days = 0, secs = 0;
  REQUIRE(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(ca.get()), X509_get0_notAfter(ca.get())) == 1);
  CHECK(days >= 3650);
  CHECK(days <= 3653);
  EVP_PKEY* pub = X509_get0_pubkey(ca.get());
  REQUIRE(EVP_PKEY_get_base_id(pub) == EVP_PKEY_EC);
  char group[64] = {};
  REQUIRE(EVP_PKEY_get_group_name(pub, group, sizeof group, nullptr) == 1);
  CHECK(std::string(group) == "prime256v1");

  const std::string before = slurp(key_path);
  error.clear();
  CHECK_FALSE(faultline::tls::init_ca(dir, false, error));
  CHECK(error.find("already exists") != std::string::npos);
  CHECK(error.find("ca") != std::string::npos);
  CHECK(slurp(key_path) == before);

  error.clear();
  REQUIRE(faultline::tls::init_ca(dir, true, error));
  CHECK(slurp(key_path) != before);
  REQUIRE(::stat(key_path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
}

TEST_CASE("tls init_ca reports a directory it cannot create", "[tls]") {
  TempDir tmp;
  std::ofstream(tmp.path / "file") << "x";
  std::string error;
  CHECK_FALSE(faultline::tls::init_ca((tmp.path / "file" / "ca").string(), false, error));
  CHECK(error.find((tmp.path / "file").string()) != std::string::npos);
}

TEST_CASE("tls minted leaf for the SNI name verifies against the CA", "[tls]") {
  TempDir tmp;
  const std::string ca_dir = make_ca(tmp);
  auto server_ctx = minting_server(ca_dir);
  const ClientOptions opts = trusting(ca_dir, "api.example.test");
  auto client_ctx_ = client_ctx(opts);
  auto client = new_ssl(client_ctx_);
  auto server = new_ssl(server_ctx);
  faultline::tls::prepare_client(client.get(), opts);

  const Handshake h = handshake(client.get(), server.get());
  INFO("client: " << faultline::tls::handshake_failure_reason(h.client.ec, client.get()));
  INFO("server: " << faultline::tls::handshake_failure_reason(h.server.ec, server.get()));
  REQUIRE(h.ok());
  CHECK(SSL_get_verify_result(client.get()) == X509_V_OK);

  X509* leaf = SSL_get0_peer_certificate(client.get());
  REQUIRE(leaf);
  CHECK(common_name(leaf) == "api.example.test");
  CHECK(X509_check_host(leaf, "api.example.test", 0, 0, nullptr) == 1);
  CHECK(X509_check_ca(leaf) == 0);
  CHECK((X509_get_extended_key_usage(leaf) & XKU_SSL_SERVER) != 0);
  CHECK(X509_get0_subject_key_id(leaf) != nullptr);
  CHECK(X509_get0_authority_key_id(leaf) != nullptr);
  CHECK(X509_get_signature_nid(leaf) == NID_ecdsa_with_SHA256);
  int days = 0, secs = 0;
  REQUIRE(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(leaf), X509_get0_notAfter(leaf)) == 1);
  CHECK(days == 397);
  CHECK(secs == 3600);
  CHECK(serial_hex(leaf).size() > 16);  // a random 128-bit serial, not a counter

  // The CA travels as a chain certificate.
  STACK_OF(X509)* chain = SSL_get_peer_cert_chain(client.get());
  REQUIRE(chain);
  CHECK(sk_X509_num(chain) == 2);

  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(client.get(), &alpn, &alpn_len);
  CHECK(std::string(reinterpret_cast<const char*>(alpn), alpn_len) == "http/1.1");
  CHECK(SSL_version(client.get()) >= TLS1_2_VERSION);
}

TEST_CASE("tls each SNI name gets its own leaf, cached per context", "[tls]") {
  TempDir tmp;
  const std::string ca_dir = make_ca(tmp);
  auto server_ctx = minting_server(ca_dir);

  auto connect = [&](const std::string& name) {
    const ClientOptions opts = trusting(ca_dir, name);
    auto cctx = client_ctx(opts);
    auto client = new_ssl(cctx);
    auto server = new_ssl(server_ctx);
    faultline::tls::prepare_client(client.get(), opts);
    const Handshake h = handshake(client.get(), server.get());
    INFO(faultline::tls::handshake_failure_reason(h.client.ec, client.get()));
    REQUIRE(h.ok());
    X509* leaf = SSL_get0_peer_certificate(client.get());
    REQUIRE(leaf);
    return std::make_pair(common_name(leaf), serial_hex(leaf));
  };
  const auto other = connect("other.test");
  CHECK(other.first == "other.test");
  const auto api = connect("api.example.test");
  CHECK(api.first == "api.example.test");
  CHECK(api.second != other.second);
  CHECK(connect("other.test").second == other.second);
  CHECK(connect("OTHER.test").second == other.second);  // names are case-insensitive
}

TEST_CASE("tls a client without SNI gets the localhost leaf", "[tls]") {
  TempDir tmp;
  const std::string ca_dir = make_ca(tmp);
  auto server_ctx = minting_server(ca_dir);
  for (const std::string name : {"127.0.0.1", "localhost"}) {
    const ClientOptions opts = trusting(ca_dir, name);
    auto cctx = client_ctx(opts);
    auto client = new_ssl(cctx);
    auto server = new_ssl(server_ctx);
    faultline::tls::prepare_client(client.get(), opts);
    const Handshake h = handshake(client.get(), server.get());
    INFO(name << ": " << faultline::tls::handshake_failure_reason(h.client.ec, client.get()));
    REQUIRE(h.ok());
    CHECK(common_name(SSL_get0_peer_certificate(client.get())) == "localhost");
    if (name == "127.0.0.1") CHECK(SSL_get_servername(server.get(), TLSEXT_NAMETYPE_host_name) == nullptr);
  }
}

TEST_CASE("tls verification failures are reported as such", "[tls]") {
  TempDir tmp;
  const std::string ca_dir = make_ca(tmp);
  auto server_ctx = minting_server(ca_dir);

  SECTION("the system store does not know the local CA") {
    ClientOptions opts;
    opts.server_name = "api.example.test";
    auto cctx = client_ctx(opts);
    auto client = new_ssl(cctx);
    auto server = new_ssl(server_ctx);
    faultline::tls::prepare_client(client.get(), opts);
    const Handshake h = handshake(client.get(), server.get());
    REQUIRE(h.client.failed);
    const std::string reason = faultline::tls::handshake_failure_reason(h.client.ec, client.get());
    INFO(reason);
    CHECK(reason.rfind("certificate verify failed: ", 0) == 0);
    CHECK(reason.find("self-signed certificate") != std::string::npos);  // the CA travels in the chain
    CHECK(faultline::tls::handshake_failure_kind(h.client.ec, client.get()) == "verification");
    // The server learns it from the client's alert.
    REQUIRE(h.server.failed);
    INFO(faultline::tls::handshake_failure_reason(h.server.ec, server.get()));
    CHECK(faultline::tls::handshake_failure_kind(h.server.ec, server.get()) == "verification");
  }

  SECTION("verify off accepts the same certificate") {
    ClientOptions opts;
    opts.verify = false;
    opts.server_name = "api.example.test";
    auto cctx = client_ctx(opts);
    auto client = new_ssl(cctx);
    auto server = new_ssl(server_ctx);
    faultline::tls::prepare_client(client.get(), opts);
    CHECK(handshake(client.get(), server.get()).ok());
  }

  SECTION("a certificate for another name") {
    const ClientOptions opts = trusting(ca_dir, "api.example.test");
    auto cctx = client_ctx(opts);
    auto client = new_ssl(cctx);
    auto server = new_ssl(server_ctx);
    faultline::tls::prepare_client(client.get(), opts);
    SSL_set_tlsext_host_name(client.get(), "other.test");  // ask for one name, check another
    const Handshake h = handshake(client.get(), server.get());
    REQUIRE(h.client.failed);
    const std::string reason = faultline::tls::handshake_failure_reason(h.client.ec, client.get());
    CHECK(reason == "certificate verify failed: hostname mismatch (expected api.example.test)");
    CHECK(faultline::tls::handshake_failure_kind(h.client.ec, client.get()) == "verification");
  }
}

TEST_CASE("tls a given certificate and key", "[tls]") {
  TempDir tmp;
  const std::string ca_dir = make_ca(tmp);
  // Mint a leaf through a handshake and keep the server's certificate and key.
  const fs::path cert_path = tmp.path / "leaf.pem";
  const fs::path key_path = tmp.path / "leaf-key.pem";
  const fs::path combined_path = tmp.path / "combined.pem";
  {
    auto server_ctx = minting_server(ca_dir);
    const ClientOptions opts = trusting(ca_dir, "api.example.test");
    auto cctx = client_ctx(opts);
    auto client = new_ssl(cctx);
    auto server = new_ssl(server_ctx);
    faultline::tls::prepare_client(client.get(), opts);
    REQUIRE(handshake(client.get(), server.get()).ok());
    for (const auto& [path, with_key, with_cert] :
         {std::tuple{cert_path, false, true}, {key_path, true, false}, {combined_path, true, true}}) {
      BIO* out = BIO_new_file(path.c_str(), "w");
      REQUIRE(out);
      if (with_cert) REQUIRE(PEM_write_bio_X509(out, SSL_get_certificate(server.get())) == 1);
      if (with_key) {
        REQUIRE(PEM_write_bio_PrivateKey(out, SSL_get_privatekey(server.get()), nullptr, nullptr, 0, nullptr,
                                         nullptr) == 1);
      }
      BIO_free(out);
    }
  }
  ServerOptions so;
  so.cert_file = cert_path.string();
  so.key_file = key_path.string();
  SECTION("separate files") {}
  SECTION("one combined file") {
    so.cert_file = combined_path.string();
    so.key_file.clear();
  }
  std::string error;
  auto server_ctx = faultline::tls::make_server_context(so, error);
  INFO(error);
  REQUIRE(server_ctx);
  const ClientOptions opts = trusting(ca_dir, "api.example.test");
  auto cctx = client_ctx(opts);
  auto client = new_ssl(cctx);
  auto server = new_ssl(server_ctx);
  faultline::tls::prepare_client(client.get(), opts);
  const Handshake h = handshake(client.get(), server.get());
  INFO(faultline::tls::handshake_failure_reason(h.client.ec, client.get()));
  REQUIRE(h.ok());
  CHECK(common_name(SSL_get0_peer_certificate(client.get())) == "api.example.test");
}

TEST_CASE("tls bad files produce errors naming them", "[tls]") {
  TempDir tmp;
  const std::string ca_dir = make_ca(tmp);
  const std::string missing = (tmp.path / "missing.pem").string();
  const std::string garbage = (tmp.path / "garbage.pem").string();
  std::ofstream(garbage) << "not a certificate\n";
  std::string error;

  SECTION("client CA file missing") {
    ClientOptions o;
    o.ca_file = missing;
    CHECK_FALSE(faultline::tls::make_client_context(o, error));
    CHECK(error == "CA file '" + missing + "': No such file or directory");
  }
  SECTION("client CA file without certificates") {
    ClientOptions o;
    o.ca_file = garbage;
    CHECK_FALSE(faultline::tls::make_client_context(o, error));
    CHECK(error.rfind("CA file '" + garbage + "': ", 0) == 0);
  }
  SECTION("server certificate missing") {
    ServerOptions o;
    o.cert_file = missing;
    o.key_file = (fs::path(ca_dir) / "ca-key.pem").string();
    CHECK_FALSE(faultline::tls::make_server_context(o, error));
    CHECK(error == "certificate file '" + missing + "': No such file or directory");
  }
  SECTION("server certificate not PEM") {
    ServerOptions o;
    o.cert_file = garbage;
    o.key_file = garbage;
    CHECK_FALSE(faultline::tls::make_server_context(o, error));
    CHECK(error.rfind("certificate file '" + garbage + "': not a PEM certificate", 0) == 0);
  }
  SECTION("server key missing") {
    ServerOptions o;
    o.cert_file = (fs::path(ca_dir) / "ca.pem").string();
    o.key_file = missing;
    CHECK_FALSE(faultline::tls::make_server_context(o, error));
    CHECK(error == "key file '" + missing + "': No such file or directory");
  }
  SECTION("server key of another certificate") {
    TempDir other;
    make_ca(other);
    ServerOptions o;
    o.cert_file = (fs::path(ca_dir) / "ca.pem").string();
    o.key_file = (other.path / "ca-key.pem").string();
    CHECK_FALSE(faultline::tls::make_server_context(o, error));
    INFO(error);
    CHECK(error.find(o.key_file) != std::string::npos);
  }
  SECTION("CA directory without a CA") {
    ServerOptions o;
    o.ca_dir = (tmp.path / "empty").string();
    CHECK_FALSE(faultline::tls::make_server_context(o, error));
    CHECK(error == "CA certificate '" + (tmp.path / "empty" / "ca.pem").string() + "': No such file or directory");
  }
  SECTION("neither or both") {
    CHECK_FALSE(faultline::tls::make_server_context(ServerOptions{}, error));
    CHECK_FALSE(error.empty());
    ServerOptions o;
    o.cert_file = garbage;
    o.ca_dir = ca_dir;
    error.clear();
    CHECK_FALSE(faultline::tls::make_server_context(o, error));
    CHECK(error.find("not both") != std::string::npos);
  }
  CHECK(ERR_peek_error() == 0);  // nothing stale left for the next TLS call on this thread
}

TEST_CASE("tls ALPN agrees to http/1.1 only", "[tls]") {
  TempDir tmp;
  auto server_ctx = minting_server(make_ca(tmp));
  ClientOptions opts;
  opts.verify = false;
  auto cctx = client_ctx(opts);
  auto offer = [&](const std::string& wire) {
    auto client = new_ssl(cctx);
    auto server = new_ssl(server_ctx);
    REQUIRE(SSL_set_alpn_protos(client.get(), reinterpret_cast<const unsigned char*>(wire.data()),
                                static_cast<unsigned int>(wire.size())) == 0);
    REQUIRE(handshake(client.get(), server.get()).ok());
    const unsigned char* alpn = nullptr;
    unsigned int len = 0;
    SSL_get0_alpn_selected(client.get(), &alpn, &len);
    return std::string(reinterpret_cast<const char*>(alpn), len);
  };
  CHECK(offer(std::string("\x02h2\x08http/1.1", 12)) == "http/1.1");
  CHECK(offer(std::string("\x02h2", 3)).empty());
}

TEST_CASE("tls protocol failures", "[tls]") {
  TempDir tmp;
  auto server_ctx = minting_server(make_ca(tmp));

  SECTION("a TLS 1.1 client") {
    SSL_CTX* old = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_security_level(old, 0);
    SSL_CTX_set_min_proto_version(old, TLS1_VERSION);
    SSL_CTX_set_max_proto_version(old, TLS1_1_VERSION);
    SslPtr client(SSL_new(old));
    SSL_CTX_free(old);
    auto server = new_ssl(server_ctx);
    const Handshake h = handshake(client.get(), server.get());
    REQUIRE(h.server.failed);
    INFO(faultline::tls::handshake_failure_reason(h.server.ec, server.get()));
    CHECK(faultline::tls::handshake_failure_kind(h.server.ec, server.get()) == "protocol");
    CHECK(faultline::tls::handshake_failure_reason(h.server.ec, server.get()).find("version") != std::string::npos);
    REQUIRE(h.client.failed);
    CHECK(faultline::tls::handshake_failure_kind(h.client.ec, client.get()) == "protocol");
  }

  SECTION("plain HTTP to a TLS port") {
    auto server = new_ssl(server_ctx);
    BIO* cb = nullptr;
    BIO* sb = nullptr;
    REQUIRE(BIO_new_bio_pair(&cb, 0, &sb, 0) == 1);
    SSL_set_bio(server.get(), sb, sb);
    SSL_set_accept_state(server.get());
    const std::string request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    REQUIRE(BIO_write(cb, request.data(), static_cast<int>(request.size())) == static_cast<int>(request.size()));
    Side side;
    step(server.get(), side);
    BIO_free(cb);
    REQUIRE(side.failed);
    CHECK(faultline::tls::handshake_failure_reason(side.ec, server.get()) == "plain HTTP sent to a TLS port");
    CHECK(faultline::tls::handshake_failure_kind(side.ec, server.get()) == "protocol");
  }
}

TEST_CASE("tls an SNI name that cannot be minted", "[tls]") {
  TempDir tmp;
  auto server_ctx = minting_server(make_ca(tmp));
  ClientOptions opts;
  opts.verify = false;
  auto cctx = client_ctx(opts);
  auto client = new_ssl(cctx);
  auto server = new_ssl(server_ctx);
  SSL_set_tlsext_host_name(client.get(), "bad name!");
  const Handshake h = handshake(client.get(), server.get());
  REQUIRE(h.client.failed);
  REQUIRE(h.server.failed);
  CHECK(faultline::tls::handshake_failure_kind(h.client.ec, client.get()) == "sni");
  CHECK(faultline::tls::handshake_failure_kind(h.server.ec, server.get()) == "sni");
}

TEST_CASE("tls failure kinds of transport errors", "[tls]") {
  using faultline::tls::handshake_failure_kind;
  namespace net = faultline::net;
  CHECK(handshake_failure_kind(faultline::ssl::error::stream_truncated, nullptr) == "closed");
  CHECK(handshake_failure_kind(net::error::eof, nullptr) == "closed");
  CHECK(handshake_failure_kind(net::error::connection_reset, nullptr) == "closed");
  CHECK(handshake_failure_kind(net::error::timed_out, nullptr) == "other");
  CHECK(handshake_failure_kind(net::error::operation_aborted, nullptr) == "other");
  const boost::system::error_code unknown(static_cast<int>(ERR_PACK(ERR_LIB_SSL, 0, SSL_R_BAD_LENGTH)),
                                          net::error::get_ssl_category());
  CHECK(handshake_failure_kind(unknown, nullptr) == "other");
  CHECK_FALSE(faultline::tls::handshake_failure_reason(unknown, nullptr).empty());
}

TEST_CASE("tls Asio handshake errors map to the same reasons", "[tls]") {
  namespace net = faultline::net;
  using faultline::tcp;
  TempDir tmp;
  auto server_ctx = minting_server(make_ca(tmp));
  ClientOptions opts;  // system store: does not trust the local CA
  opts.server_name = "api.example.test";
  auto cctx = client_ctx(opts);

  net::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  faultline::ssl::stream<tcp::socket> server(io, *server_ctx);
  faultline::ssl::stream<tcp::socket> client(io, *cctx);
  faultline::tls::prepare_client(client.native_handle(), opts);
  const bool close_at_once = GENERATE(false, true);

  boost::system::error_code client_ec, server_ec;
  acceptor.async_accept(server.next_layer(), [&](boost::system::error_code ec) {
    REQUIRE_FALSE(ec);
    if (close_at_once) {
      server.next_layer().close();
      return;
    }
    server.async_handshake(faultline::ssl::stream_base::server,
                           [&](boost::system::error_code e) { server_ec = e; });
  });
  client.next_layer().async_connect(acceptor.local_endpoint(), [&](boost::system::error_code ec) {
    REQUIRE_FALSE(ec);
    client.async_handshake(faultline::ssl::stream_base::client, [&](boost::system::error_code e) { client_ec = e; });
  });
  io.run_for(std::chrono::seconds(10));

  REQUIRE(client_ec);
  const std::string reason = faultline::tls::handshake_failure_reason(client_ec, client.native_handle());
  INFO(client_ec.message() << " -> " << reason);
  if (close_at_once) {
    CHECK(faultline::tls::handshake_failure_kind(client_ec, client.native_handle()) == "closed");
  } else {
    CHECK(faultline::tls::handshake_failure_kind(client_ec, client.native_handle()) == "verification");
    CHECK(reason.rfind("certificate verify failed", 0) == 0);
    REQUIRE(server_ec);
    CHECK(faultline::tls::handshake_failure_kind(server_ec, server.native_handle()) == "verification");
  }
}

TEST_CASE("tls default CA directory", "[tls]") {
  struct Restore {
    std::string name;
    std::optional<std::string> value;
    explicit Restore(std::string n) : name(std::move(n)) {
      if (const char* v = std::getenv(name.c_str())) value = v;
    }
    ~Restore() {
      if (value) ::setenv(name.c_str(), value->c_str(), 1);
      else ::unsetenv(name.c_str());
    }
  };
  Restore a("FAULTLINE_CA_DIR"), b("XDG_DATA_HOME"), c("HOME");
  ::setenv("HOME", "/home/u", 1);
  ::unsetenv("FAULTLINE_CA_DIR");
  ::unsetenv("XDG_DATA_HOME");
  CHECK(faultline::tls::default_ca_dir() == "/home/u/.local/share/faultline/ca");
  ::setenv("XDG_DATA_HOME", "relative", 1);
  CHECK(faultline::tls::default_ca_dir() == "/home/u/.local/share/faultline/ca");
  ::setenv("XDG_DATA_HOME", "/data", 1);
  CHECK(faultline::tls::default_ca_dir() == "/data/faultline/ca");
  ::setenv("FAULTLINE_CA_DIR", "/ca", 1);
  CHECK(faultline::tls::default_ca_dir() == "/ca");
}
