#include "proxy/tls.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>

#include "base/ascii.hpp"
#include "proxy/api_checks.hpp"
#include "proxy/asio.hpp"

namespace faultline::tls {
namespace {

template <auto Free>
struct Deleter {
  template <class T>
  void operator()(T* p) const {
    Free(p);
  }
};
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BN_free>>;
using NamesPtr = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES_free>>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, Deleter<SSL_CTX_free>>;

constexpr long kHour = 3600;
constexpr int kLeafDays = 397;  // the longest validity browsers and Apple clients accept
constexpr int kCaDays = 3652;   // ten years, leap days included
constexpr std::size_t kMaxCachedLeaves = 4096;
constexpr const char* kCaCommonName = "faultline local CA";

// Drains OpenSSL's thread-local error queue into one line, so that a later, unrelated
// call does not report a stale error.
std::string openssl_errors() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    std::string text;
    if (ERR_SYSTEM_ERROR(e)) {
      text = std::strerror(ERR_GET_REASON(e));
    } else if (const char* r = ERR_reason_error_string(e)) {
      text = r;
    } else {
      char buf[256];
      ERR_error_string_n(e, buf, sizeof buf);
      text = buf;
    }
    if (out.find(text) != std::string::npos) continue;
    if (!out.empty()) out += ": ";
    out += text;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

// Without this, OpenSSL prompts on the terminal for an encrypted key, which would hang
// a server started in the background.
int no_password(char*, int, int, void*) { return -1; }

// Files named in API calls are read once, here, with a bound: a regular file of at most
// kMaxTlsFileBytes (a device such as /dev/zero, a FIFO or a huge file is refused before it
// can grow memory or hold the control thread), and OpenSSL loads what was read from memory.
bool read_file(const std::string& path, const std::string& what, std::string& out, std::string& error) {
  std::string why;
  if (read_bounded_file(path, kMaxTlsFileBytes, out, why)) return true;
  error = what + " '" + path + "': " + why;
  return false;
}

X509Ptr read_cert(const std::string& path, const std::string& what, std::string& error) {
  std::string pem;
  if (!read_file(path, what, pem, error)) return nullptr;
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, no_password, nullptr) : nullptr);
  if (!cert) error = what + " '" + path + "': not a PEM certificate (" + openssl_errors() + ")";
  return cert;
}

PkeyPtr read_key(const std::string& path, const std::string& what, std::string& error) {
  std::string pem;
  if (!read_file(path, what, pem, error)) return nullptr;
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  PkeyPtr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_password, nullptr) : nullptr);
  if (!key) {
    error = what + " '" + path + "': not an unencrypted PEM private key (" + openssl_errors() + ")";
  }
  return key;
}

bool is_ip_literal(const std::string& s) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

// What a client may reasonably put in SNI. Anything else gets no certificate: a name
// with odd bytes would only produce a certificate no client can match anyway.
bool plausible_server_name(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_' || c == ':';
  });
}


PkeyPtr generate_p256_key() { return PkeyPtr(EVP_EC_gen("P-256")); }

bool add_extension(X509* cert, X509V3_CTX* ctx, int nid, const char* value) {
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, ctx, nid, value);
  if (!ext) return false;
  const bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

bool add_general_name(GENERAL_NAMES* names, const std::string& value) {
  GENERAL_NAME* name = GENERAL_NAME_new();
  if (!name) return false;
  if (is_ip_literal(value)) {
    ASN1_OCTET_STRING* ip = a2i_IPADDRESS(value.c_str());
    if (!ip) {
      GENERAL_NAME_free(name);
      return false;
    }
    GENERAL_NAME_set0_value(name, GEN_IPADD, ip);
  } else {
    ASN1_IA5STRING* dns = ASN1_IA5STRING_new();
    if (!dns || ASN1_STRING_set(dns, value.data(), static_cast<int>(value.size())) != 1) {
      ASN1_IA5STRING_free(dns);
      GENERAL_NAME_free(name);
      return false;
    }
    GENERAL_NAME_set0_value(name, GEN_DNS, dns);
  }
  if (sk_GENERAL_NAME_push(names, name) <= 0) {
    GENERAL_NAME_free(name);
    return false;
  }
  return true;
}

bool set_random_serial(X509* cert) {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) return false;
  bytes[0] |= 0x01;  // never zero, whatever the dice say
  BnPtr bn(BN_bin2bn(bytes, sizeof bytes, nullptr));
  return bn && BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert)) != nullptr;
}

struct CertSpec {
  std::string common_name;   // empty: no subject (the SAN is then critical, RFC 5280 4.2.1.6)
  std::vector<std::string> alt_names;  // DNS names or IP literals
  bool ca = false;
  int days = kLeafDays;
};

// Builds and signs a certificate for `key`. With no issuer it is self-signed.
X509Ptr build_cert(const CertSpec& spec, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key) {
  X509Ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1 || !set_random_serial(cert.get())) return nullptr;
  // An hour of slack keeps a client whose clock runs a little behind from rejecting a
  // certificate minted a second ago.
  if (!X509_gmtime_adj(X509_getm_notBefore(cert.get()), -kHour) ||
      !X509_time_adj_ex(X509_getm_notAfter(cert.get()), spec.days, 0, nullptr)) {
    return nullptr;
  }
  X509_NAME* subject = X509_get_subject_name(cert.get());
  if (!spec.common_name.empty() &&
      X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(spec.common_name.c_str()), -1, -1, 0) != 1) {
    return nullptr;
  }
  if (X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : subject) != 1) return nullptr;
  if (X509_set_pubkey(cert.get(), key) != 1) return nullptr;

  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer ? issuer : cert.get(), cert.get(), nullptr, nullptr, 0);
  if (spec.ca) {
    if (!add_extension(cert.get(), &ctx, NID_basic_constraints, "critical,CA:TRUE") ||
        !add_extension(cert.get(), &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") ||
        !add_extension(cert.get(), &ctx, NID_subject_key_identifier, "hash") ||
        !add_extension(cert.get(), &ctx, NID_authority_key_identifier, "keyid:always")) {
      return nullptr;
    }
  } else {
    // "keyid,issuer": a CA made by another tool may lack a subject key identifier.
    if (!add_extension(cert.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE") ||
        !add_extension(cert.get(), &ctx, NID_key_usage, "critical,digitalSignature") ||
        !add_extension(cert.get(), &ctx, NID_ext_key_usage, "serverAuth") ||
        !add_extension(cert.get(), &ctx, NID_subject_key_identifier, "hash") ||
        !add_extension(cert.get(), &ctx, NID_authority_key_identifier, "keyid,issuer")) {
      return nullptr;
    }
  }
  if (!spec.alt_names.empty()) {
    NamesPtr names(sk_GENERAL_NAME_new_null());
    if (!names) return nullptr;
    for (const auto& n : spec.alt_names) {
      if (!add_general_name(names.get(), n)) return nullptr;
    }
    const int critical = spec.common_name.empty() ? 1 : 0;
    if (X509_add1_ext_i2d(cert.get(), NID_subject_alt_name, names.get(), critical, X509V3_ADD_DEFAULT) != 1) {
      return nullptr;
    }
  }
  if (X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256()) <= 0) return nullptr;
  return cert;
}

// Mints leaf certificates for one server context. Contexts are shared by the worker
// threads, so the cache is guarded; minting happens under the lock so that a burst of
// clients asking for the same new name signs it once.
class LeafMinter {
 public:
  LeafMinter(X509Ptr ca, PkeyPtr ca_key, PkeyPtr leaf_key)
      : ca_(std::move(ca)), ca_key_(std::move(ca_key)), leaf_key_(std::move(leaf_key)) {}

  X509* ca() const { return ca_.get(); }
  EVP_PKEY* leaf_key() const { return leaf_key_.get(); }

  // Returns an owned reference: the cache may be cleared by another thread while the
  // caller is still installing the certificate.
  X509Ptr leaf_for(const std::string& name) {
    std::lock_guard lock(mutex_);
    auto it = cache_.find(name);
    if (it == cache_.end()) {
      // Each distinct SNI name costs a certificate; a client cycling through random
      // names must not grow the cache without bound.
      if (cache_.size() >= kMaxCachedLeaves) cache_.clear();
      X509Ptr leaf = mint(name);
      if (!leaf) return nullptr;
      it = cache_.emplace(name, std::move(leaf)).first;
    }
    X509_up_ref(it->second.get());
    return X509Ptr(it->second.get());
  }

  X509Ptr mint(const std::string& name) const {
    CertSpec spec;
    if (name.size() <= 64) spec.common_name = name;  // ub-common-name; longer names live in the SAN only
    spec.alt_names = {name};
    return build_cert(spec, leaf_key_.get(), ca_.get(), ca_key_.get());
  }

  X509Ptr mint_default() const {
    CertSpec spec;
    spec.common_name = "localhost";
    spec.alt_names = {"localhost", "127.0.0.1", "::1"};
    return build_cert(spec, leaf_key_.get(), ca_.get(), ca_key_.get());
  }

 private:
  X509Ptr ca_;
  PkeyPtr ca_key_;
  PkeyPtr leaf_key_;
  std::mutex mutex_;
  std::unordered_map<std::string, X509Ptr> cache_;
};

// The minter lives exactly as long as its SSL_CTX (which SSL objects keep alive by
// reference count, possibly past the ssl::context wrapper), so it hangs off ex_data.
void free_minter(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<LeafMinter*>(ptr); }

int minter_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_minter);
  return index;
}

int on_server_name(SSL* ssl, int* alert, void* arg) {
  auto* minter = static_cast<LeafMinter*>(arg);
  const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  // No SNI (a client that dialled an IP): the context's default leaf for localhost serves.
  if (!sni || !*sni) return SSL_TLSEXT_ERR_NOACK;
  const std::string name = ascii_lower(sni);
  if (!plausible_server_name(name)) {
    *alert = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  X509Ptr leaf = minter->leaf_for(name);
  // The CA chain cert installed on the context stays attached: the leaf replaces the
  // certificate in the same (EC) slot.
  if (!leaf || SSL_use_certificate(ssl, leaf.get()) != 1 || SSL_use_PrivateKey(ssl, minter->leaf_key()) != 1) {
    // Logged and cleared here so that the handshake's own error (callback failed) is the
    // one Asio reports first.
    spdlog::warn("tls: cannot mint a certificate for '{}': {}", name, openssl_errors());
    *alert = SSL_AD_INTERNAL_ERROR;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  return SSL_TLSEXT_ERR_OK;
}

// We relay HTTP/1.1 bytes as they are; agreeing to h2 would make the client speak a
// protocol the upstream connection was not set up for.
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
                void*) {
  for (unsigned int i = 0; i < inlen;) {
    const unsigned int len = in[i];
    if (i + 1 + len > inlen) break;
    if (len == 8 && std::memcmp(in + i + 1, "http/1.1", 8) == 0) {
      *out = in + i + 1;
      *outlen = static_cast<unsigned char>(len);
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

std::shared_ptr<ssl::context> adopt(SslCtxPtr ctx) { return std::make_shared<ssl::context>(ctx.release()); }

bool setup_minting(SSL_CTX* ctx, const std::string& dir, std::string& error) {
  const std::string cert_path = (std::filesystem::path(dir) / kCaCertFile).string();
  const std::string key_path = (std::filesystem::path(dir) / kCaKeyFile).string();
  // The caller knows which directory option to suggest to `faultline ca init`; no hint here.
  X509Ptr ca = read_cert(cert_path, "CA certificate", error);
  if (!ca) return false;
  PkeyPtr ca_key = read_key(key_path, "CA key", error);
  if (!ca_key) return false;
  if (X509_check_ca(ca.get()) < 1) {
    error = "CA certificate '" + cert_path + "' is not a CA certificate";
    return false;
  }
  if (X509_check_private_key(ca.get(), ca_key.get()) != 1) {
    ERR_clear_error();
    error = "CA key '" + key_path + "' does not match CA certificate '" + cert_path + "'";
    return false;
  }
  PkeyPtr leaf_key = generate_p256_key();
  if (!leaf_key) {
    error = "cannot generate a P-256 key: " + openssl_errors();
    return false;
  }
  auto minter = std::make_unique<LeafMinter>(std::move(ca), std::move(ca_key), std::move(leaf_key));
  X509Ptr fallback = minter->mint_default();
  if (!fallback) {
    error = "cannot mint a certificate with the CA in '" + dir + "': " + openssl_errors();
    return false;
  }
  if (SSL_CTX_use_certificate(ctx, fallback.get()) != 1 || SSL_CTX_use_PrivateKey(ctx, minter->leaf_key()) != 1 ||
      SSL_CTX_add1_chain_cert(ctx, minter->ca()) != 1) {
    error = "cannot install the minted certificate: " + openssl_errors();
    return false;
  }
  LeafMinter* raw = minter.get();
  if (SSL_CTX_set_ex_data(ctx, minter_index(), raw) != 1) {
    error = "cannot attach the certificate minter: " + openssl_errors();
    return false;
  }
  minter.release();  // owned by the SSL_CTX now (free_minter)
  SSL_CTX_set_tlsext_servername_callback(ctx, on_server_name);
  SSL_CTX_set_tlsext_servername_arg(ctx, raw);
  return true;
}

// The certificate chain (leaf first, then intermediates) of a PEM text.
bool use_chain(SSL_CTX* ctx, const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return false;
  X509Ptr leaf(PEM_read_bio_X509_AUX(bio.get(), nullptr, no_password, nullptr));
  if (!leaf || SSL_CTX_use_certificate(ctx, leaf.get()) != 1) return false;
  SSL_CTX_clear_chain_certs(ctx);
  while (X509* extra = PEM_read_bio_X509(bio.get(), nullptr, no_password, nullptr)) {
    if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {  // takes ownership on success only
      X509_free(extra);
      return false;
    }
  }
  // The loop ends on "no start line" at the end of the text: not an error.
  const unsigned long e = ERR_peek_last_error();
  if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) ERR_clear_error();
  return true;
}

bool setup_given_cert(SSL_CTX* ctx, const ServerOptions& o, std::string& error) {
  const std::string& key_file = o.key_file.empty() ? o.cert_file : o.key_file;
  std::string cert_pem, key_pem;
  if (!read_file(o.cert_file, "certificate file", cert_pem, error)) return false;
  if (!use_chain(ctx, cert_pem)) {
    error = "certificate file '" + o.cert_file + "': not a PEM certificate (" + openssl_errors() + ")";
    return false;
  }
  if (!read_file(key_file, "key file", key_pem, error)) return false;
  BioPtr bio(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
  PkeyPtr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_password, nullptr) : nullptr);
  if (!key || SSL_CTX_use_PrivateKey(ctx, key.get()) != 1) {
    error = "key file '" + key_file + "': not an unencrypted PEM private key matching the certificate (" +
            openssl_errors() + ")";
    return false;
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    error = "key file '" + key_file + "' does not match certificate file '" + o.cert_file + "'";
    return false;
  }
  return true;
}

// Every certificate of a PEM text (a CA bundle) into the context's trust store.
bool load_trust(SSL_CTX* ctx, const std::string& pem, std::string& why) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  STACK_OF(X509_INFO)* infos = bio ? PEM_X509_INFO_read_bio(bio.get(), nullptr, no_password, nullptr) : nullptr;
  if (!infos) {
    why = openssl_errors();
    return false;
  }
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  int added = 0;
  bool ok = true;
  for (int i = 0; i < sk_X509_INFO_num(infos); ++i) {
    X509_INFO* info = sk_X509_INFO_value(infos, i);
    if (info->x509) {
      if (X509_STORE_add_cert(store, info->x509) != 1) ok = false;
      else ++added;
    }
  }
  sk_X509_INFO_pop_free(infos, X509_INFO_free);
  if (!ok) why = openssl_errors();
  else if (added == 0) why = "no PEM certificate in the file";
  ERR_clear_error();
  return ok && added > 0;
}

bool write_new_file(const std::filesystem::path& path, const std::string& data, mode_t mode, std::string& error) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    error = "cannot create '" + path.string() + "': " + std::strerror(errno);
    return false;
  }
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error = "cannot write '" + path.string() + "': " + std::strerror(errno);
      ::close(fd);
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0) {
    error = "cannot write '" + path.string() + "': " + std::strerror(errno);
    return false;
  }
  return true;
}

std::string to_pem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return {};
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

std::string to_pem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) return {};
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

enum class Kind { verification, protocol, sni, closed, other };

struct Failure {
  Kind kind;
  std::string reason;
};

std::string ssl_reason_text(unsigned long code) {
  const char* r = ERR_reason_error_string(code);
  return r ? r : "error " + std::to_string(ERR_GET_REASON(code));
}

Failure classify(const boost::system::error_code& ec, SSL* ssl) {
  if (ec == ssl::error::stream_truncated || ec == net::error::eof) {
    return {Kind::closed, "peer closed the connection during the handshake"};
  }
  if (ec == net::error::connection_reset || ec == net::error::broken_pipe || ec == net::error::connection_aborted) {
    return {Kind::closed, "peer reset the connection during the handshake"};
  }
  if (ec.category() != net::error::get_ssl_category()) return {Kind::other, ec.message()};

  const auto code = static_cast<unsigned long>(static_cast<unsigned int>(ec.value()));
  if (ERR_SYSTEM_ERROR(code)) return {Kind::other, std::strerror(ERR_GET_REASON(code))};
  if (ERR_GET_LIB(code) != ERR_LIB_SSL) return {Kind::other, ssl_reason_text(code)};
  const std::string text = ssl_reason_text(code);
  switch (ERR_GET_REASON(code)) {
    case SSL_R_CERTIFICATE_VERIFY_FAILED: {
      std::string reason = "certificate verify failed";
      const long result = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
      if (result != X509_V_OK) {
        reason += ": ";
        reason += X509_verify_cert_error_string(result);
        if (result == X509_V_ERR_HOSTNAME_MISMATCH) {
          if (const char* host = X509_VERIFY_PARAM_get0_host(SSL_get0_param(ssl), 0)) {
            reason += std::string(" (expected ") + host + ")";
          }
        }
      }
      return {Kind::verification, reason};
    }
    // The peer refused our certificate: from a client, nearly always "does not trust the CA".
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
      return {Kind::verification, "peer rejected the certificate (" + text + ")"};
    // CALLBACK_FAILED: the only callback that can fail a server handshake is SNI minting.
    case SSL_R_TLSV1_UNRECOGNIZED_NAME:
    case SSL_R_CALLBACK_FAILED:
      return {Kind::sni, "no certificate for the requested server name (" + text + ")"};
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
      return {Kind::protocol, "plain HTTP sent to a TLS port"};
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_UNKNOWN_PROTOCOL:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_RECORD_LENGTH_MISMATCH:
      return {Kind::protocol, "peer is not speaking TLS (" + text + ")"};
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_VERSION_TOO_HIGH:
    case SSL_R_INAPPROPRIATE_FALLBACK:
    case SSL_R_TLSV1_ALERT_INAPPROPRIATE_FALLBACK:
      return {Kind::protocol, "TLS version mismatch (" + text + "; faultline needs TLS 1.2 or later)"};
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
    case SSL_R_TLSV1_ALERT_INSUFFICIENT_SECURITY:
    case SSL_R_NO_APPLICATION_PROTOCOL:
    case SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL:
    case SSL_R_UNEXPECTED_MESSAGE:
      return {Kind::protocol, "TLS negotiation failed (" + text + ")"};
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
      return {Kind::closed, "peer closed the connection during the handshake"};
    default:
      return {Kind::other, text};
  }
}

}  // namespace

std::shared_ptr<ssl::context> make_client_context(const ClientOptions& o, std::string& error) {
  ERR_clear_error();
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) {
    error = "cannot create a TLS client context: " + openssl_errors();
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  static const unsigned char kAlpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  if (SSL_CTX_set_alpn_protos(ctx.get(), kAlpn, sizeof kAlpn) != 0) {  // 0 is success here
    error = "cannot set ALPN: " + openssl_errors();
    return nullptr;
  }
  if (o.verify) {
    if (o.ca_file.empty()) {
      if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
        error = "cannot load the system CA store: " + openssl_errors();
        return nullptr;
      }
    } else {
      std::string pem;
      if (!read_file(o.ca_file, "CA file", pem, error)) return nullptr;
      std::string why;
      if (!load_trust(ctx.get(), pem, why)) {
        error = "CA file '" + o.ca_file + "': " + why;
        return nullptr;
      }
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  }
  return adopt(std::move(ctx));
}

std::shared_ptr<ssl::context> make_server_context(const ServerOptions& o, std::string& error) {
  ERR_clear_error();
  if (o.cert_file.empty() == o.ca_dir.empty()) {
    error = o.cert_file.empty() ? "TLS listener needs a certificate file or a CA directory to mint from"
                                : "TLS listener takes a certificate file or a CA directory to mint from, not both";
    return nullptr;
  }
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) {
    error = "cannot create a TLS server context: " + openssl_errors();
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  // Client-initiated renegotiation only costs us CPU; no client of a test proxy needs it.
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_default_passwd_cb(ctx.get(), no_password);
  SSL_CTX_set_alpn_select_cb(ctx.get(), select_alpn, nullptr);
  const bool ok = o.ca_dir.empty() ? setup_given_cert(ctx.get(), o, error) : setup_minting(ctx.get(), o.ca_dir, error);
  if (!ok) return nullptr;
  return adopt(std::move(ctx));
}

void prepare_client(SSL* ssl, const ClientOptions& o) {
  std::string name = o.server_name;
  if (name.size() > 2 && name.front() == '[' && name.back() == ']') name = name.substr(1, name.size() - 2);
  if (name.empty()) return;
  const bool ip = is_ip_literal(name);
  if (!ip) SSL_set_tlsext_host_name(ssl, name.c_str());
  if (!o.verify) return;
  if (ip) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str());
  } else {
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    SSL_set1_host(ssl, name.c_str());
  }
}

std::string handshake_failure_reason(const boost::system::error_code& ec, SSL* ssl) {
  return classify(ec, ssl).reason;
}

std::string_view handshake_failure_kind(const boost::system::error_code& ec, SSL* ssl) {
  switch (classify(ec, ssl).kind) {
    case Kind::verification: return "verification";
    case Kind::protocol: return "protocol";
    case Kind::sni: return "sni";
    case Kind::closed: return "closed";
    case Kind::other: break;
  }
  return "other";
}

bool init_ca(const std::string& dir, bool force, std::string& error) {
  namespace fs = std::filesystem;
  ERR_clear_error();
  if (dir.empty()) {
    error = "no CA directory given";
    return false;
  }
  const fs::path cert_path = fs::path(dir) / kCaCertFile;
  const fs::path key_path = fs::path(dir) / kCaKeyFile;
  std::error_code fec;
  const bool created = fs::create_directories(dir, fec);
  if (fec) {
    error = "cannot create directory '" + dir + "': " + fec.message();
    return false;
  }
  // Only the key is secret, but nobody else has business listing the directory either.
  if (created) fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, fec);
  for (const auto& p : {cert_path, key_path}) {
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) continue;
    if (!force) {
      error = "'" + p.string() + "' already exists (--force replaces it)";
      return false;
    }
  }
  PkeyPtr key = generate_p256_key();
  if (!key) {
    error = "cannot generate a P-256 key: " + openssl_errors();
    return false;
  }
  CertSpec spec;
  spec.common_name = kCaCommonName;
  spec.ca = true;
  spec.days = kCaDays;
  X509Ptr cert = build_cert(spec, key.get(), nullptr, nullptr);
  if (!cert) {
    error = "cannot build the CA certificate: " + openssl_errors();
    return false;
  }
  const std::string cert_pem = to_pem(cert.get());
  const std::string key_pem = to_pem(key.get());
  if (cert_pem.empty() || key_pem.empty()) {
    error = "cannot encode the CA as PEM: " + openssl_errors();
    return false;
  }
  // Unlink rather than truncate: an old key file with looser permissions (or a symlink
  // somewhere else) must not receive the new key.
  for (const auto& p : {cert_path, key_path}) {
    if (::unlink(p.c_str()) != 0 && errno != ENOENT) {
      error = "cannot replace '" + p.string() + "': " + std::strerror(errno);
      return false;
    }
  }
  if (!write_new_file(key_path, key_pem, 0600, error)) return false;
  if (!write_new_file(cert_path, cert_pem, 0644, error)) {
    ::unlink(key_path.c_str());
    return false;
  }
  return true;
}

std::string default_ca_dir() {
  auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v ? v : "";
  };
  if (std::string d = env("FAULTLINE_CA_DIR"); !d.empty()) return d;
  // The XDG spec says relative values are to be ignored.
  if (std::string d = env("XDG_DATA_HOME"); !d.empty() && d.front() == '/') return d + "/faultline/ca";
  std::string home = env("HOME");
  if (home.empty()) {
    if (const passwd* pw = ::getpwuid(::getuid()); pw && pw->pw_dir) home = pw->pw_dir;
  }
  if (home.empty()) return "faultline-ca";
  return home + "/.local/share/faultline/ca";
}

}  // namespace faultline::tls
