#include "recorder/redaction.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>

#include "base/ascii.hpp"
#include "protocols/http.hpp"
#include "protocols/jsonrpc.hpp"
#include "protocols/resp.hpp"
#include "protocols/sse.hpp"
#include "recorder/journal.hpp"

namespace faultline::rec {

namespace {

constexpr char kHex[] = "0123456789abcdef";
constexpr std::string_view kTokenPrefix = "REDACTED-";
// Below this length "REDACTED-" would swallow the whole token (see redaction.hpp).
constexpr std::size_t kPrefixedFrom = 10;
// A partial match this long at the end of what is final is held back (hold_tail).
constexpr std::size_t kMinHeldStart = 3;

// The streaming JSON key scan holds a secret value whole up to this size to give it one
// token; a longer one is masked with '*' from there on.
constexpr std::size_t kMaxScannedValue = 64 * 1024;
// Keys longer than this are never secret keys (the scan stops collecting them).
constexpr std::size_t kMaxKeyLength = 64;
// Raw header-line scan (after HTTP decoding gave up): a sensitive line held up to this.
constexpr std::size_t kMaxHeaderLine = 8 * 1024;
// Pipelined requests whose responses have not started yet (HEAD/CONNECT need them).
constexpr std::size_t kMaxPendingMethods = 4096;

const char* const kBuiltinKeys[] = {"api_key",       "apikey",   "password", "passwd", "token",
                                    "access_token",  "refresh_token", "id_token", "secret", "client_secret",
                                    "authorization"};
const char* const kValueHeaders[] = {"x-api-key", "api-key"};


bool is_space(char c) { return c == ' ' || c == '\t'; }

bool is_token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
         c == '.' || c == '!' || c == '#' || c == '$' || c == '%' || c == '&' || c == '\'' || c == '*' ||
         c == '+' || c == '^' || c == '`' || c == '|' || c == '~';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// HMAC-SHA256(key, secret || suffix) for one secret and many suffixes: the secret is
// hashed once, and each MAC continues from a copy of that state. A token longer than one
// digest needs a MAC per 64 hex digits, and hashing a 1 MiB secret again for each of them
// made its token cost 16 GiB of SHA-256. Should OpenSSL fail, hex() is empty.
class SecretMac {
 public:
  SecretMac(const std::string& key, std::string_view secret) : ctx_(algorithm() ? EVP_MAC_CTX_new(algorithm()) : nullptr) {
    char digest[] = "SHA256";
    const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                                 OSSL_PARAM_construct_end()};
    // An empty key is still a key to HMAC; OpenSSL wants a non-null pointer for it.
    static const unsigned char kNoKey = 0;
    const auto* k = key.empty() ? &kNoKey : reinterpret_cast<const unsigned char*>(key.data());
    ok_ = ctx_ && EVP_MAC_init(ctx_, k, key.size(), params) &&
          EVP_MAC_update(ctx_, reinterpret_cast<const unsigned char*>(secret.data()), secret.size());
  }
  ~SecretMac() { EVP_MAC_CTX_free(ctx_); }
  SecretMac(const SecretMac&) = delete;
  SecretMac& operator=(const SecretMac&) = delete;

  // hex(HMAC-SHA256(key, secret || suffix)).
  std::string hex(std::string_view suffix) const {
    if (!ok_) return {};
    EVP_MAC_CTX* c = EVP_MAC_CTX_dup(ctx_);
    unsigned char md[EVP_MAX_MD_SIZE];
    std::size_t n = 0;
    const bool ok = c && EVP_MAC_update(c, reinterpret_cast<const unsigned char*>(suffix.data()), suffix.size()) &&
                    EVP_MAC_final(c, md, &n, sizeof md);
    EVP_MAC_CTX_free(c);
    if (!ok) return {};
    std::string out;
    out.reserve(n * 2);
    for (std::size_t i = 0; i < n; ++i) {
      out += kHex[md[i] >> 4];
      out += kHex[md[i] & 0xF];
    }
    return out;
  }

 private:
  static EVP_MAC* algorithm() {
    static EVP_MAC* const mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);  // fetched once, shared
    return mac;
  }
  EVP_MAC_CTX* ctx_;
  bool ok_ = false;
};

// JSON members for an annotation, in the order they are added.
class Fields {
 public:
  Fields& str(std::string_view name, std::string_view v) {
    name_(name);
    append_json_string(s_, v);
    return *this;
  }
  Fields& num(std::string_view name, std::uint64_t v) {
    name_(name);
    s_ += std::to_string(v);
    return *this;
  }
  Fields& flag(std::string_view name, bool v) {
    name_(name);
    s_ += v ? "true" : "false";
    return *this;
  }
  Fields& raw(std::string_view name, std::string_view json) {
    name_(name);
    s_ += json;
    return *this;
  }
  std::string take() { return std::move(s_); }

 private:
  void name_(std::string_view name) {
    if (!s_.empty()) s_ += ',';
    s_ += '"';
    s_ += name;
    s_ += "\":";
  }
  std::string s_;
};

struct Seg {
  std::uint64_t off = 0;  // stream offset
  std::uint64_t len = 0;
};

void add_seg(std::vector<Seg>& segs, std::uint64_t off, std::uint64_t len) {
  if (len == 0) return;
  if (!segs.empty() && segs.back().off + segs.back().len == off) {
    segs.back().len += len;
  } else {
    segs.push_back({off, len});
  }
}

// The stream pieces that hold bytes [from, from + len) of a body laid out in `segs`.
std::vector<Seg> map_range(const std::vector<Seg>& segs, std::uint64_t from, std::uint64_t len) {
  std::vector<Seg> out;
  std::uint64_t body = 0;
  for (const Seg& s : segs) {
    if (len == 0) break;
    if (from < body + s.len) {
      const std::uint64_t skip = from > body ? from - body : 0;
      const std::uint64_t take = std::min(s.len - skip, len);
      add_seg(out, s.off + skip, take);
      from += take;
      len -= take;
    }
    body += s.len;
  }
  return out;
}

bool resp_sensitive(std::string_view name) {
  return name == "AUTH" || name == "HELLO" || name == "MIGRATE" || name == "CONFIG" || name == "ACL";
}

// JSON string values under secret keys, found by a real parse: where each ends (just past
// its closing quote) and its decoded value.
struct SecretFinder : rapidjson::BaseReaderHandler<rapidjson::UTF8<>, SecretFinder> {
  struct Found {
    std::size_t end = 0;
    std::string value;
    std::string key;
  };
  SecretFinder(const Redactor& r, rapidjson::MemoryStream& s) : red(r), ms(s) {}
  bool Key(const char* s, rapidjson::SizeType n, bool) {
    armed = red.secret_key({s, n});
    if (armed) key = ascii_lower({s, n});
    return true;
  }
  bool String(const char* s, rapidjson::SizeType n, bool) {
    if (armed) found.push_back({ms.Tell(), std::string(s, n), key});
    armed = false;
    return true;
  }
  bool Default() {
    armed = false;
    return true;
  }
  const Redactor& red;
  rapidjson::MemoryStream& ms;
  bool armed = false;
  std::string key;
  std::vector<Found> found;
};

// The opening quote of the JSON string whose closing quote is at `close`: the nearest
// quote before it that is not escaped (preceded by an even number of backslashes).
std::size_t opening_quote(std::string_view text, std::size_t close) {
  std::size_t i = close;
  while (i > 0) {
    --i;
    if (text[i] != '"') continue;
    std::size_t slashes = 0;
    while (slashes < i && text[i - 1 - slashes] == '\\') ++slashes;
    if (slashes % 2 == 0) return i;
  }
  return std::string_view::npos;
}

// ---- fault descriptions ----

struct DescribedSecret {
  std::size_t pos = 0;
  std::size_t len = 0;
};

// name=value&… (a query string, a form body, a word of a fault description): calls
// found(value_pos, value_len, name) for each parameter with a value whose name is a secret key.
template <typename SecretKey, typename Found>
void secret_params(std::string_view text, const SecretKey& secret_key, const Found& found) {
  std::size_t p = 0;
  while (p < text.size()) {
    std::size_t amp = text.find('&', p);
    if (amp == std::string_view::npos) amp = text.size();
    const std::string_view pair = text.substr(p, amp - p);
    const std::size_t eq = pair.find('=');
    if (eq != std::string_view::npos && eq > 0 && eq + 1 < pair.size() && secret_key(pair.substr(0, eq)))
      found(p + eq + 1, pair.size() - eq - 1, pair.substr(0, eq));
    p = amp + 1;
  }
}

// name=value&… inside a description's word: the values of secret parameters.
template <typename SecretKey>
void described_params(std::string_view word, std::size_t base, const SecretKey& secret_key,
                      std::vector<DescribedSecret>& out) {
  secret_params(word, secret_key, [&](std::size_t pos, std::size_t len, std::string_view) { out.push_back({base + pos, len}); });
}

// Where the secrets of a description are (see Redactor::redact_description), in order.
template <typename SecretKey>
std::vector<DescribedSecret> described_secrets(std::string_view text, const SecretKey& secret_key) {
  std::vector<DescribedSecret> out;
  std::string prev;  // the previous word, upper-cased
  bool setuser = false;
  std::size_t p = 0;
  while (p < text.size()) {
    while (p < text.size() && is_space(text[p])) ++p;
    std::size_t e = p;
    while (e < text.size() && !is_space(text[e])) ++e;
    if (e == p) break;
    const std::string_view word = text.substr(p, e - p);
    if (prev == "AUTH" || prev == "REQUIREPASS" || prev == "MASTERAUTH") {
      out.push_back({p, word.size()});
    } else if (setuser && word.size() > 1 && (word[0] == '>' || word[0] == '<' || word[0] == '#' || word[0] == '!')) {
      out.push_back({p + 1, word.size() - 1});
    } else if (const std::size_t q = word.find('?'); q != std::string_view::npos) {
      std::size_t qe = word.find('#', q);
      if (qe == std::string_view::npos) qe = word.size();
      described_params(word.substr(q + 1, qe - q - 1), p + q + 1, secret_key, out);
    } else if (word.find('=') != std::string_view::npos) {
      described_params(word, p, secret_key, out);
    }
    prev = ascii_upper(word);
    if (prev == "SETUSER") setuser = true;
    p = e;
  }
  return out;
}

}  // namespace

std::string redact_description_for_log(std::string_view text) {
  const auto secrets = described_secrets(text, [](std::string_view key) {
    for (const char* k : kBuiltinKeys) {
      if (http::iequals(key, k)) return true;
    }
    return false;
  });
  std::string out;
  std::size_t at = 0;
  for (const auto& s : secrets) {
    out.append(text.substr(at, s.pos - at));
    out += "REDACTED";
    at = s.pos + s.len;
  }
  out.append(text.substr(at));
  return out;
}

// ============================================================================================
// Redactor

struct Redactor::Impl {
  std::string key;
  std::vector<std::string> value_headers;  // lower-case
  std::vector<std::string> keys;           // lower-case
  struct Rx {
    Regex re;
    std::string rule;
  };
  std::vector<Rx> regexes;

  mutable std::mutex mu;
  // Copied on write: scans take a snapshot without holding the lock while they run.
  std::shared_ptr<const std::vector<std::string>> secrets = std::make_shared<const std::vector<std::string>>();

  std::shared_ptr<const std::vector<std::string>> snapshot() const {
    std::lock_guard lock(mu);
    return secrets;
  }
};

std::shared_ptr<Redactor> Redactor::make(std::string key, const RedactionRules& rules, std::string& error) {
  std::shared_ptr<Redactor> r(new Redactor());
  r->impl_ = std::make_shared<Impl>();
  Impl& m = *r->impl_;
  m.key = std::move(key);
  for (const char* h : kValueHeaders) m.value_headers.emplace_back(h);
  for (const auto& h : rules.headers) {
    if (!h.empty()) m.value_headers.push_back(ascii_lower(h));
  }
  for (const char* k : kBuiltinKeys) m.keys.emplace_back(k);
  for (const auto& k : rules.json_keys) {
    if (!k.empty()) m.keys.push_back(ascii_lower(k));
  }
  for (const auto& pattern : rules.regexes) {
    std::string why;
    auto re = Regex::compile(pattern, why);
    if (!re) {
      error = "redaction regex " + json_string(pattern) + ": " + why;
      return nullptr;
    }
    m.regexes.push_back({std::move(*re), "regex:" + pattern});
  }
  return r;
}

std::string Redactor::token(std::string_view secret) const { return token(secret, secret.size()); }

std::string Redactor::token(std::string_view secret, std::size_t length) const {
  if (length == 0) return {};
  const std::string& key = impl_->key;
  std::string out = length >= kPrefixedFrom ? std::string(kTokenPrefix) : std::string();
  const SecretMac mac(key, secret);
  out += mac.hex({});
  for (std::uint32_t i = 1; out.size() < length; ++i) {
    char index[4];
    for (int b = 0; b < 4; ++b) index[b] = static_cast<char>((i >> (8 * (3 - b))) & 0xFF);  // big-endian
    const std::string more = mac.hex(std::string_view(index, sizeof index));
    if (more.empty()) break;  // OpenSSL failed: masked below, never left as it was
    out += more;
  }
  out.resize(length, '*');
  return out;
}

void Redactor::remember(std::string_view secret) {
  if (secret.size() < kMinRememberedLength || secret.size() > kMaxRememberedLength) return;
  Impl& m = *impl_;
  std::lock_guard lock(m.mu);
  for (const auto& s : *m.secrets) {
    if (s == secret) return;
  }
  auto next = std::make_shared<std::vector<std::string>>(*m.secrets);
  next->emplace_back(secret);
  if (next->size() > kMaxRemembered) next->erase(next->begin());
  m.secrets = std::move(next);
}

Redactor::HeaderRule Redactor::header_rule(std::string_view name) const {
  if (http::iequals(name, "authorization") || http::iequals(name, "proxy-authorization")) return HeaderRule::credential;
  if (http::iequals(name, "cookie")) return HeaderRule::cookie;
  if (http::iequals(name, "set-cookie")) return HeaderRule::set_cookie;
  for (const auto& h : impl_->value_headers) {
    if (http::iequals(name, h)) return HeaderRule::value;
  }
  return HeaderRule::none;
}

bool Redactor::secret_key(std::string_view key) const {
  for (const auto& k : impl_->keys) {
    if (http::iequals(key, k)) return true;
  }
  return false;
}

void Redactor::scan(std::span<char> data, std::vector<Match>& found) const {
  if (data.empty()) return;
  const Impl& m = *impl_;
  for (const auto& rx : m.regexes) {
    // Every match is found before any is replaced: a token never becomes context for the next.
    const auto hits = rx.re.find_all(std::string_view(data.data(), data.size()));
    for (const auto& [pos, len] : hits) {
      const std::string secret(data.data() + pos, len);
      const std::string tok = token(secret);
      std::memcpy(data.data() + pos, tok.data(), len);
      found.push_back({pos, len, rx.rule});
    }
  }
  const auto secrets = m.snapshot();
  for (const auto& s : *secrets) {
    std::string_view view(data.data(), data.size());
    std::size_t pos = view.find(s);
    if (pos == std::string_view::npos) continue;
    const std::string tok = token(s);
    while (pos != std::string_view::npos) {
      std::memcpy(data.data() + pos, tok.data(), tok.size());
      found.push_back({pos, s.size(), "echo"});
      pos = view.find(s, pos + s.size());
    }
  }
}

void Redactor::scrub(std::string& text) const {
  std::vector<Match> ignored;
  scan(std::span<char>(text.data(), text.size()), ignored);
}

std::size_t Redactor::hold_tail(std::string_view done, std::string_view after) const {
  const auto secrets = impl_->snapshot();
  std::size_t best = 0;
  for (const auto& s : *secrets) {
    const std::size_t longest = std::min(s.size() - 1, done.size());
    if (longest < kMinHeldStart || longest <= best) continue;
    // Candidate starts: where s's first byte occurs in the last `longest` bytes.
    for (std::size_t k = longest; k >= std::max(kMinHeldStart, best + 1); --k) {
      const std::size_t p = done.size() - k;
      if (done[p] != s[0]) continue;
      if (done.compare(p, k, s, 0, k) != 0) continue;
      const std::size_t more = std::min(after.size(), s.size() - k);
      if (after.compare(0, more, s, k, more) != 0) continue;
      best = k;
      break;
    }
  }
  return best;
}

void Redactor::continuation(std::string_view before, std::span<char> data, std::vector<Match>& found) const {
  if (before.empty() || data.empty()) return;
  const auto secrets = impl_->snapshot();
  const std::string_view view(data.data(), data.size());
  for (const auto& s : *secrets) {
    const std::size_t longest = std::min(s.size() - 1, before.size());
    for (std::size_t k = longest; k >= 1; --k) {
      const std::size_t p = before.size() - k;
      if (before[p] != s[0] || before.compare(p, k, s, 0, k) != 0) continue;
      const std::size_t rest = s.size() - k;
      if (view.size() < rest || view.compare(0, rest, s, k, rest) != 0) continue;
      const std::string tok = token(s);
      std::memcpy(data.data(), tok.data() + k, rest);
      found.push_back({0, rest, "echo"});
      break;
    }
  }
}

void Redactor::redact_description(std::string& text) const {
  for (const auto& s : described_secrets(text, [this](std::string_view key) { return secret_key(key); })) {
    const std::string secret = text.substr(s.pos, s.len);
    const std::string tok = token(secret);
    text.replace(s.pos, s.len, tok);  // same length: later positions still hold
  }
  scrub(text);
}

std::size_t Redactor::longest_remembered() const {
  std::size_t n = 0;
  for (const auto& s : *impl_->snapshot()) n = std::max(n, s.size());
  return n;
}

// ============================================================================================
// StreamAnnotator

struct StreamAnnotator::Impl {
  Impl(Protocol p, Stream d, std::shared_ptr<Redactor> r)
      : protocol(p), direction(d), red(std::move(r)), request(d == Stream::upstream) {
    switch (p) {
      case Protocol::http:
      case Protocol::mcp:
        mode = Mode::http;
        framer.emplace(request);
        break;
      case Protocol::resp:
        mode = request ? Mode::commands : Mode::replies;
        break;
      default:
        mode = Mode::raw;
    }
  }

  enum class Mode : std::uint8_t { raw, http, commands, replies };

  Protocol protocol;
  Stream direction;
  std::shared_ptr<Redactor> red;
  bool request;
  Mode mode = Mode::raw;
  bool finished = false;
  std::uint64_t decoded = 0;  // the decoder consumed the stream up to here

  // The current call's view of the caller's buffer.
  std::string* pending = nullptr;
  std::uint64_t base = 0;
  std::vector<Annotation>* out = nullptr;

  std::uint64_t end() const { return base + pending->size(); }
  char* at(std::uint64_t off) { return pending->data() + (off - base); }
  bool inside(std::uint64_t off, std::uint64_t len) const { return off >= base && off + len <= end(); }
  std::string_view view(std::uint64_t off, std::uint64_t len) { return {at(off), static_cast<std::size_t>(len)}; }

  // The last bytes made final, for a remembered secret split across two writes.
  std::string lookbehind;

  // ---- annotations and rewriting ----

  void message(std::uint64_t off, std::uint64_t len, std::string fields) {
    out->push_back({Annotation::Kind::message, off, len, std::move(fields)});
  }

  void note_redaction(std::uint64_t off, std::uint64_t len, std::string_view rule) {
    out->push_back({Annotation::Kind::redaction, off, len, Fields().str("rule", rule).take()});
  }

  // Replaces `len` bytes at `off` by the token for `secret`.
  void redact(std::uint64_t off, std::uint64_t len, std::string_view secret_view, std::string_view rule) {
    if (!red || len == 0 || !inside(off, len)) return;
    const std::string secret(secret_view);  // it may point at the bytes about to change
    const std::string tok = red->token(secret, static_cast<std::size_t>(len));
    std::memcpy(at(off), tok.data(), tok.size());
    red->remember(secret);
    note_redaction(off, len, rule);
  }

  // The same, for a secret whose bytes lie in several pieces of the stream (a chunked body).
  void redact_segs(const std::vector<Seg>& segs, std::string_view secret_view, std::string_view rule) {
    if (!red) return;
    std::uint64_t total = 0;
    for (const Seg& s : segs) {
      if (!inside(s.off, s.len)) return;
      total += s.len;
    }
    if (total == 0) return;
    const std::string secret(secret_view);
    const std::string tok = red->token(secret, static_cast<std::size_t>(total));
    std::size_t done = 0;
    for (const Seg& s : segs) {
      std::memcpy(at(s.off), tok.data() + done, static_cast<std::size_t>(s.len));
      done += static_cast<std::size_t>(s.len);
      note_redaction(s.off, s.len, rule);
    }
    red->remember(secret);
  }

  void mask(std::uint64_t off, std::uint64_t len, std::string_view rule) {
    if (!red || len == 0 || !inside(off, len)) return;
    std::memset(at(off), '*', static_cast<std::size_t>(len));
    note_redaction(off, len, rule);
  }

  // ---- the streaming JSON key scan ----------------------------------------------------------
  // Follows JSON strings in a byte stream (a big JSON body, SSE data lines, raw bytes) and
  // redacts the string value after a secret key. Exact for valid JSON: a string followed by
  // ':' is a key. A raw line end inside a string means it was not JSON: the scan resyncs.
  struct KeyScanner {
    enum class St : std::uint8_t { out, str, str_esc, after_str, pre_value, value, value_esc };
    St st = St::out;
    std::string key;  // lower-case, while it can still be a secret key
    bool key_ok = false;
    std::string rule;
    std::string value;         // the secret's bytes as written
    std::vector<Seg> segs;     // where they are
    bool masking = false;      // the value outgrew kMaxScannedValue: '*' from there on
    std::uint64_t mask_from = 0, mask_len = 0;

    std::optional<std::uint64_t> hold() const {
      if ((st == St::value || st == St::value_esc) && !masking && !segs.empty()) return segs.front().off;
      return std::nullopt;
    }

    void flush_mask(Impl& m) {
      if (mask_len) m.note_redaction(mask_from, mask_len, rule);
      mask_len = 0;
    }

    void value_done(Impl& m) {
      if (masking) {
        flush_mask(m);
      } else if (!value.empty()) {
        m.redact_segs(segs, value, rule);
      }
      value.clear();
      segs.clear();
      masking = false;
      st = St::out;
    }

    void feed(Impl& m, std::uint64_t off, std::size_t len) {
      char* p = m.at(off);
      std::size_t i = 0;
      while (i < len) {
        switch (st) {
          case St::out: {
            const void* q = std::memchr(p + i, '"', len - i);
            if (!q) {
              i = len;
              break;
            }
            i = static_cast<std::size_t>(static_cast<const char*>(q) - p) + 1;
            st = St::str;
            key.clear();
            key_ok = true;
            break;
          }
          case St::str: {
            const char c = p[i++];
            if (c == '"') {
              st = St::after_str;
            } else if (c == '\\') {
              key_ok = false;  // escaped keys are not matched by the scan (the parse does)
              st = St::str_esc;
            } else if (c == '\n' || c == '\r') {
              st = St::out;
            } else if (key_ok) {
              if (key.size() >= kMaxKeyLength) key_ok = false;
              else key += ascii_lower(c);
            }
            break;
          }
          case St::str_esc: {
            const char c = p[i++];
            st = (c == '\n' || c == '\r') ? St::out : St::str;
            break;
          }
          case St::after_str: {
            const char c = p[i];
            if (is_space(c) || c == '\r' || c == '\n') {
              ++i;
            } else if (c == ':') {
              ++i;
              if (key_ok && m.red->secret_key(key)) {
                st = St::pre_value;
                rule = "json:" + key;
              } else {
                st = St::out;
              }
            } else {
              st = St::out;  // reprocess: it may open the next string
            }
            break;
          }
          case St::pre_value: {
            const char c = p[i];
            if (is_space(c) || c == '\r' || c == '\n') {
              ++i;
            } else if (c == '"') {
              ++i;
              st = St::value;
              value.clear();
              segs.clear();
              masking = false;
            } else {
              st = St::out;  // not a string value (numbers, objects are not redacted)
            }
            break;
          }
          case St::value:
          case St::value_esc: {
            // A run up to the next byte that matters.
            std::size_t j = i;
            if (st == St::value_esc) {
              ++j;  // the escaped byte is part of the value whatever it is
              st = St::value;
            }
            while (j < len && p[j] != '"' && p[j] != '\\' && p[j] != '\n' && p[j] != '\r') ++j;
            const bool closing = j < len && p[j] == '"';
            const bool escape = j < len && p[j] == '\\';
            const bool broken = j < len && (p[j] == '\n' || p[j] == '\r');
            std::size_t take = j - i + (escape ? 1 : 0);
            take = std::min(take, len - i);
            if (masking) {
              if (take) {
                std::memset(p + i, '*', take);
                if (mask_len == 0) mask_from = off + i;
                mask_len += take;
              }
            } else {
              value.append(p + i, take);
              add_seg(segs, off + i, take);
              if (value.size() > kMaxScannedValue) {
                // Too big to hold for one token: what is held gets a token, the rest '*'.
                m.redact_segs(segs, value, rule);
                value.clear();
                segs.clear();
                masking = true;
              }
            }
            i += take;
            if (escape) st = St::value_esc;
            if (closing) {
              ++i;
              value_done(m);
            } else if (broken) {
              value_done(m);  // a line end inside a string: redact what there was
            }
            break;
          }
        }
      }
      if (masking) flush_mask(m);
    }

    // The input ended: a value cut off is still a secret.
    void finish(Impl& m) {
      if (st == St::value || st == St::value_esc) value_done(m);
      st = St::out;
    }
  };

  // ---- the raw header-line scan (after HTTP decoding gave up) --------------------------------
  struct LineScanner {
    std::uint64_t line_start = 0;
    bool at_line_start = true;
    bool in_name = true;
    bool candidate = true;   // the line so far can still be "Name:"
    bool sensitive = false;  // the line's name is a sensitive header's
    bool masking = false;    // a sensitive line longer than kMaxHeaderLine: '*' to its end
    std::uint64_t mask_from = 0, mask_len = 0;
    std::string name;

    std::optional<std::uint64_t> hold() const {
      // Until ':' the line may still turn out sensitive; after it, only if it is.
      if (at_line_start || masking) return std::nullopt;
      if ((in_name && candidate) || sensitive) return line_start;
      return std::nullopt;
    }

    void flush_mask(Impl& m) {
      if (mask_len) m.mask(mask_from, mask_len, "header:" + name);
      mask_len = 0;
    }

    void feed(Impl& m, std::uint64_t off, std::size_t len) {
      const char* p = m.at(off);
      for (std::size_t i = 0; i < len; ++i) {
        const char c = p[i];
        if (at_line_start) {
          at_line_start = false;
          line_start = off + i;
          in_name = true;
          candidate = true;
          sensitive = false;
          masking = false;
          name.clear();
        }
        if (c == '\n') {
          flush_mask(m);
          if (sensitive && !masking) m.redact_header_line(line_start, m.view(line_start, off + i - line_start));
          at_line_start = true;
          continue;
        }
        if (!masking && !in_name && sensitive && off + i - line_start > kMaxHeaderLine) {
          m.redact_header_line(line_start, m.view(line_start, off + i - line_start));
          masking = true;
        }
        if (masking) {
          if (mask_len == 0) mask_from = off + i;
          ++mask_len;
          continue;
        }
        if (in_name) {
          if (c == ':') {
            in_name = false;
            sensitive = candidate && m.red->header_rule(name) != Redactor::HeaderRule::none;
          } else if (!is_token_char(c) || name.size() >= kMaxKeyLength) {
            candidate = false;
          } else if (candidate) {
            name += ascii_lower(c);
          }
        }
      }
      flush_mask(m);
    }

    void finish(Impl& m) {
      if (!at_line_start && sensitive && !masking && m.end() > line_start)
        m.redact_header_line(line_start, m.view(line_start, m.end() - line_start));
      at_line_start = true;
    }
  };

  // ---- HTTP ------------------------------------------------------------------------------------
  enum class BodyKind : std::uint8_t { none, hold_json, hold_form, scan };

  std::optional<http::Framer> framer;
  // Shared by a connection's two HTTP annotators (pair()).
  struct Link {
    std::deque<std::string> methods;  // requests whose responses have not started
    bool upgraded = false;            // a 101 or a CONNECT tunnel: both directions are bytes now
  };
  std::shared_ptr<Link> link;
  std::uint64_t msg_start = 0;
  BodyKind body = BodyKind::none;
  bool sse = false;
  std::vector<Seg> body_segs;  // held body bytes (hold_json, hold_form)
  std::uint64_t body_size = 0;
  std::optional<std::uint64_t> body_first;
  KeyScanner body_keys;
  sse::Splitter splitter;
  std::uint64_t event_start = 0;
  bool event_start_known = false;
  std::vector<std::size_t> sse_ends;
  std::vector<sse::Event> sse_events;

  // Raw after HTTP decoding gave up: header lines and JSON keys are still looked for.
  bool raw_http = false;
  std::uint64_t raw_scanned = 0;
  LineScanner raw_lines;
  KeyScanner raw_keys;

  // ---- RESP --------------------------------------------------------------------------------------
  resp::CommandFramer commands;
  resp::ReplyFramer replies;
  bool in_unit = false;
  std::uint64_t unit_start = 0;
  bool sensitive = false;
  bool unit_masking = false;

  // ---------------------------------------------------------------------------------------------

  void redact_header_line(std::uint64_t off, std::string_view line) {
    if (!red) return;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return;
    const std::string_view name = line.substr(0, colon);
    for (char c : name) {
      if (!is_token_char(c)) return;
    }
    const Redactor::HeaderRule rule = red->header_rule(name);
    if (rule == Redactor::HeaderRule::none) return;
    const std::string rule_name = "header:" + ascii_lower(name);
    std::size_t vs = colon + 1;
    while (vs < line.size() && is_space(line[vs])) ++vs;
    std::size_t ve = line.size();
    while (ve > vs && is_space(line[ve - 1])) --ve;
    if (ve <= vs) return;
    const std::string_view value = line.substr(vs, ve - vs);
    const std::uint64_t voff = off + vs;
    switch (rule) {
      case Redactor::HeaderRule::credential: {
        // "Bearer abc", "Basic dXNlcjpwYXNz": the scheme stays readable, the credential goes.
        std::size_t cs = 0;
        const std::size_t sp = value.find_first_of(" \t");
        if (sp != std::string_view::npos && sp > 0 &&
            std::all_of(value.begin(), value.begin() + static_cast<std::ptrdiff_t>(sp), is_token_char)) {
          cs = sp;
          while (cs < value.size() && is_space(value[cs])) ++cs;
        }
        redact(voff + cs, value.size() - cs, value.substr(cs), rule_name);
        break;
      }
      case Redactor::HeaderRule::cookie:
      case Redactor::HeaderRule::set_cookie: {
        std::size_t p = 0;
        while (p < value.size()) {
          std::size_t semi = value.find(';', p);
          if (semi == std::string_view::npos) semi = value.size();
          std::size_t a = p;
          while (a < semi && is_space(value[a])) ++a;
          const std::size_t eq = value.find('=', a);
          std::size_t vb = (eq == std::string_view::npos || eq > semi) ? a : eq + 1;
          std::size_t vend = semi;
          while (vend > vb && is_space(value[vend - 1])) --vend;
          while (vb < vend && is_space(value[vb])) ++vb;
          if (vend - vb >= 2 && value[vb] == '"' && value[vend - 1] == '"') {
            ++vb;
            --vend;
          }
          if (vend > vb) redact(voff + vb, vend - vb, value.substr(vb, vend - vb), rule_name);
          // Set-Cookie: only the first pair is a cookie; the rest are its attributes.
          if (rule == Redactor::HeaderRule::set_cookie) break;
          p = semi + 1;
        }
        break;
      }
      case Redactor::HeaderRule::value:
        redact(voff, value.size(), value, rule_name);
        break;
      case Redactor::HeaderRule::none:
        break;
    }
  }

  // name=value&… (a query string or a form body): values of secret parameters.
  void redact_params(std::string_view text, const std::function<void(std::size_t, std::size_t, std::string_view,
                                                                     const std::string&)>& apply,
                     std::string_view what) {
    secret_params(text, [&](std::string_view key) { return red->secret_key(key); },
                  [&](std::size_t pos, std::size_t len, std::string_view name) {
                    apply(pos, len, text.substr(pos, len), std::string(what) + ":" + ascii_lower(name));
                  });
  }

  void redact_target(std::uint64_t off, std::string_view line) {
    const std::size_t sp1 = line.find(' ');
    if (sp1 == std::string_view::npos) return;
    std::size_t sp2 = line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos) sp2 = line.size();
    const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    const std::size_t q = target.find('?');
    if (q == std::string_view::npos) return;
    std::size_t qe = target.find('#', q);
    if (qe == std::string_view::npos) qe = target.size();
    const std::uint64_t qoff = off + sp1 + 1 + q + 1;
    redact_params(target.substr(q + 1, qe - q - 1),
                  [&](std::size_t pos, std::size_t len, std::string_view secret, const std::string& rule) {
                    redact(qoff + pos, len, secret, rule);
                  },
                  "query");
  }

  // A whole head or what there is of one (a stream that ended, or gave up, inside it).
  void redact_head(std::uint64_t start, std::uint64_t len) {
    if (!red) return;
    const std::string_view head = view(start, len);
    std::size_t pos = 0;
    bool first = true;
    while (pos < head.size()) {
      const std::size_t nl = head.find('\n', pos);
      const std::size_t line_end = nl == std::string_view::npos ? head.size() : nl;
      std::string_view line = head.substr(pos, line_end - pos);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (first) {
        if (request) redact_target(start + pos, line);
        first = false;
      } else if (line.empty()) {
        break;
      } else {
        redact_header_line(start + pos, line);
      }
      if (nl == std::string_view::npos) break;
      pos = nl + 1;
    }
  }

  std::string scrubbed(std::string_view s) const {
    std::string out(s);
    if (red) red->scrub(out);
    return out;
  }

  // The head's fields as the journal gets them: read back from the (redacted) bytes.
  std::string head_fields(std::uint64_t start, std::uint64_t len) {
    const http::Head& h = framer->head();
    const std::string_view head = view(start, len);
    Fields f;
    std::string_view first = head.substr(0, head.find('\n'));
    if (!first.empty() && first.back() == '\r') first.remove_suffix(1);
    const std::string version = "HTTP/" + std::to_string(h.version / 10) + "." + std::to_string(h.version % 10);
    if (request) {
      f.str("kind", "http_request").str("method", h.method);
      const std::size_t sp1 = first.find(' ');
      const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : first.find(' ', sp1 + 1);
      const std::string_view target = sp1 == std::string_view::npos ? std::string_view(h.target)
                                                                    : first.substr(sp1 + 1, sp2 - sp1 - 1);
      f.str("target", scrubbed(target));
    } else {
      f.str("kind", "http_response").num("status", static_cast<std::uint64_t>(h.status)).str("reason", scrubbed(h.reason));
    }
    f.str("version", version);
    std::string headers = "[";
    std::size_t pos = head.find('\n');
    bool any = false;
    while (pos != std::string_view::npos && pos + 1 < head.size()) {
      const std::size_t startl = pos + 1;
      pos = head.find('\n', startl);
      std::string_view line = head.substr(startl, (pos == std::string_view::npos ? head.size() : pos) - startl);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.empty()) break;
      const std::size_t colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      if (any) headers += ',';
      any = true;
      headers += '[';
      append_json_string(headers, line.substr(0, colon));
      headers += ',';
      append_json_string(headers, scrubbed(trim(line.substr(colon + 1))));
      headers += ']';
    }
    headers += ']';
    f.raw("headers", headers);
    f.num("head_len", len);
    return f.take();
  }

  void rpc_message(std::uint64_t off, std::uint64_t len, std::string_view json) {
    const jsonrpc::Message rpc = jsonrpc::describe(json);
    if (!rpc.valid) return;
    Fields f;
    f.str("kind", "jsonrpc");
    if (!rpc.method.empty()) f.str("method", rpc.method);
    if (rpc.id) f.raw("id", *rpc.id);
    if (!rpc.tool.empty()) f.str("tool", rpc.tool);
    if (rpc.is_response) f.flag("response", true);
    if (rpc.is_error) f.flag("error", true);
    if (rpc.batch) f.flag("batch", true);
    message(off, len, f.take());
  }

  static std::optional<std::uint64_t> content_length(const http::Head& h) {
    const auto v = h.field("content-length");
    if (!v) return std::nullopt;
    std::uint64_t n = 0;
    const std::string_view s = trim(*v);
    if (s.empty() || s.size() > 18) return std::nullopt;
    for (char c : s) {
      if (c < '0' || c > '9') return std::nullopt;
      n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return n;
  }

  void on_head(std::uint64_t start, std::uint64_t len) {
    msg_start = start;
    redact_head(start, len);
    const http::Head& h = framer->head();
    message(start, len, head_fields(start, len));
    if (request) {
      if (link && link->methods.size() < kMaxPendingMethods) link->methods.push_back(h.method);
    } else if (h.status / 100 != 1 || h.status == 101) {
      if (link && !link->methods.empty()) link->methods.pop_front();
    }
    body = BodyKind::none;
    sse = false;
    body_segs.clear();
    body_size = 0;
    body_first.reset();
    body_keys = KeyScanner{};
    const std::string ct = ascii_lower(h.field("content-type").value_or(""));
    const bool json = ct.find("json") != std::string::npos;
    const bool form = ct.find("x-www-form-urlencoded") != std::string::npos;
    sse = !request && ct.find("text/event-stream") != std::string::npos;
    const auto cl = content_length(h);
    if (json || form) {
      if (!cl || *cl <= kMaxHeldBody) body = json ? BodyKind::hold_json : BodyKind::hold_form;
      else if (json) body = BodyKind::scan;
    } else if (sse) {
      body = BodyKind::scan;  // SSE data lines mostly carry JSON
      splitter = sse::Splitter{};
      event_start_known = false;
    }
  }

  void on_body(std::uint64_t off, std::string_view payload) {
    if (payload.empty()) return;
    if (!body_first) body_first = off;
    body_size += payload.size();
    if (body == BodyKind::hold_json || body == BodyKind::hold_form) {
      add_seg(body_segs, off, payload.size());
      if (body_size > kMaxHeldBody) {
        // Too big to hold: JSON is scanned as it streams from here; a form is let go.
        if (body == BodyKind::hold_json && red) {
          body = BodyKind::scan;
          for (const Seg& s : body_segs) body_keys.feed(*this, s.off, static_cast<std::size_t>(s.len));
        } else {
          body = BodyKind::none;
        }
        body_segs.clear();
      }
    } else if (body == BodyKind::scan && red) {
      body_keys.feed(*this, off, payload.size());
    }
    if (sse) {
      if (!event_start_known) {
        event_start = off;
        event_start_known = true;
      }
      sse_ends.clear();
      sse_events.clear();
      splitter.feed(payload, sse_ends, sse_events);
      for (std::size_t i = 0; i < sse_ends.size(); ++i) {
        const std::uint64_t event_end = off + sse_ends[i];
        const sse::Event& e = sse_events[i];
        Fields f;
        f.str("kind", "sse_event");
        if (!e.event.empty()) f.str("event", scrubbed(e.event));
        if (!e.id.empty()) f.str("id", scrubbed(e.id));
        f.num("data_len", e.data.size());
        message(event_start, event_end - event_start, f.take());
        if (protocol == Protocol::mcp && !e.data.empty()) rpc_message(event_start, event_end - event_start, e.data);
        event_start = event_end;
        // An event ending with the piece: the next one starts at the next body byte,
        // whose stream offset is not known yet (chunk framing may come first).
        event_start_known = sse_ends[i] < payload.size();
      }
    }
  }

  // The held body (or what there is of it), assembled, redacted, described.
  void settle_held_body() {
    if (body != BodyKind::hold_json && body != BodyKind::hold_form) return;
    if (body_segs.empty()) return;
    std::string text;
    text.reserve(static_cast<std::size_t>(body_size));
    for (const Seg& s : body_segs) text.append(view(s.off, s.len));
    if (red) {
      if (body == BodyKind::hold_form) {
        redact_params(text,
                      [&](std::size_t pos, std::size_t len, std::string_view secret, const std::string& rule) {
                        redact_segs(map_range(body_segs, pos, len), secret, rule);
                      },
                      "form");
      } else {
        rapidjson::MemoryStream ms(text.data(), text.size());
        SecretFinder finder(*red, ms);
        rapidjson::Reader reader;
        const bool ok = !reader.Parse<rapidjson::kParseIterativeFlag>(ms, finder).IsError();
        if (ok) {
          for (const auto& found : finder.found) {
            const std::size_t close = found.end - 1;
            const std::size_t open = opening_quote(text, close);
            if (open == std::string_view::npos || close <= open + 1) continue;
            redact_segs(map_range(body_segs, open + 1, close - open - 1), found.value, "json:" + found.key);
          }
        } else {
          // Not JSON after all (or cut off): the key scan still finds "key": "value".
          KeyScanner scan;
          for (const Seg& s : body_segs) scan.feed(*this, s.off, static_cast<std::size_t>(s.len));
          scan.finish(*this);
        }
      }
    }
    if (protocol == Protocol::mcp && body == BodyKind::hold_json) {
      std::string redacted;
      for (const Seg& s : body_segs) redacted.append(view(s.off, s.len));
      const Seg last = body_segs.back();
      rpc_message(body_segs.front().off, last.off + last.len - body_segs.front().off, redacted);
    }
    body_segs.clear();
  }

  void on_end(std::uint64_t end_off) {
    settle_held_body();
    if (body == BodyKind::scan && red) body_keys.finish(*this);
    body = BodyKind::none;
    message(msg_start, end_off - msg_start,
            Fields().str("kind", "http_end").flag("request", request).num("body_len", body_size).take());
    body_size = 0;
    sse = false;
  }

  std::optional<std::uint64_t> http_hold() const {
    if ((body == BodyKind::hold_json || body == BodyKind::hold_form) && !body_segs.empty()) return body_segs.front().off;
    if (body == BodyKind::scan) return body_keys.hold();
    return std::nullopt;
  }

  // A 101 or a CONNECT tunnel: what follows is another protocol, recorded as bytes.
  void upgrade() {
    message(decoded, 0, Fields().str("kind", "undecodable").str("reason", "protocol upgrade").take());
    mode = Mode::raw;
  }

  void step_http() {
    for (int guard = 0; guard < (1 << 20); ++guard) {
      if (!framer->in_message() && link && link->upgraded) {
        // The other direction switched protocols; this one follows at its message boundary.
        upgrade();
        return;
      }
      if (!request && !framer->in_message()) {
        framer->answering(link && !link->methods.empty() ? std::string_view(link->methods.front()) : "GET");
      }
      const std::string_view data(at(decoded), static_cast<std::size_t>(end() - decoded));
      const FrameStep s = framer->step(data);
      if (s.event == FrameEvent::error) {
        give_up(std::string("http: ") + std::string(framer->error()), true);
        return;
      }
      const std::uint64_t start = decoded;
      decoded += s.consumed;
      switch (s.event) {
        case FrameEvent::head: on_head(start, s.consumed); break;
        case FrameEvent::body:
          on_body(start + static_cast<std::uint64_t>(s.payload.data() - data.data()), s.payload);
          break;
        case FrameEvent::end: on_end(decoded); break;
        default: break;
      }
      if (framer->upgraded()) {
        if (link) link->upgraded = true;
        upgrade();
        return;
      }
      // A message ending with its head reports `end` on the next step: keep stepping
      // until a step consumes nothing and reports nothing.
      if (s.consumed == 0 && s.event == FrameEvent::none) return;
    }
  }

  // ---- RESP ----

  void redact_resp(std::uint64_t start, std::uint64_t len, std::string& key_out) {
    const std::string_view raw = view(start, len);
    const std::vector<resp::ArgSpan> args = resp::command_args(raw);
    const std::string name = commands.name();
    const auto& decoded_args = commands.args();
    auto arg_text = [&](std::size_t i) { return raw.substr(args[i].offset, args[i].length); };
    auto secret_of = [&](std::size_t i) -> std::string {
      // The value as Redis reads it (inline quotes and escapes undone) when the framer kept it.
      if (i < decoded_args.size() && decoded_args[i].size() < resp::CommandFramer::max_kept_arg_bytes)
        return decoded_args[i];
      return std::string(arg_text(i));
    };
    auto hide = [&](std::size_t i, std::size_t skip, std::string_view rule) {
      if (i >= args.size() || args[i].length <= skip) return;
      redact(start + args[i].offset + skip, args[i].length - skip, secret_of(i).substr(std::min(skip, secret_of(i).size())),
             rule);
    };
    const std::size_t n = args.size();
    if (name == "AUTH") {
      // AUTH password | AUTH username password: the password; a username is not a secret.
      if (n == 2) hide(1, 0, "resp:auth");
      else if (n >= 3) hide(2, 0, "resp:auth");
    } else if (name == "HELLO") {
      for (std::size_t i = 2; i < n;) {
        const std::string word = ascii_upper(arg_text(i));
        if (word == "AUTH") {
          hide(i + 2, 0, "resp:hello_auth");
          i += 3;
        } else if (word == "SETNAME") {
          i += 2;
        } else {
          ++i;
        }
      }
    } else if (name == "MIGRATE") {
      for (std::size_t i = 6; i < n; ++i) {
        const std::string word = ascii_upper(arg_text(i));
        if (word == "AUTH") hide(i + 1, 0, "resp:migrate_auth");
        if (word == "AUTH2") hide(i + 2, 0, "resp:migrate_auth");
        if (word == "KEYS") break;
      }
    } else if (name == "CONFIG" && n >= 2 && ascii_upper(arg_text(1)) == "SET") {
      for (std::size_t i = 2; i + 1 < n; i += 2) {
        const std::string param = ascii_lower(arg_text(i));
        if (param == "requirepass" || param == "masterauth") hide(i + 1, 0, "resp:config");
      }
    } else if (name == "ACL" && n >= 3 && ascii_upper(arg_text(1)) == "SETUSER") {
      for (std::size_t i = 3; i < n; ++i) {
        const std::string_view rule = arg_text(i);
        // >password adds, <password removes, #hash and !hash name a hashed one.
        if (!rule.empty() && (rule[0] == '>' || rule[0] == '<' || rule[0] == '#' || rule[0] == '!'))
          hide(i, 1, "resp:acl");
      }
    }
    if (n >= 2) key_out = scrubbed(view(start + args[1].offset, args[1].length));
  }

  // A sensitive command cut off (the stream ended, or it grew past the hold limit):
  // everything after its name is hidden, framing included.
  void mask_resp_unit(std::uint64_t upto) {
    const std::vector<resp::ArgSpan> args = resp::command_args(view(unit_start, upto - unit_start));
    const std::uint64_t from = args.empty() ? unit_start : unit_start + args[0].offset + args[0].length;
    if (upto > from) mask(from, upto - from, "resp:partial");
  }

  // A command cut off (or unparsable) before its head: AUTH's password may be in it.
  void mask_unheaded_command() {
    if (!red || end() <= decoded) return;
    const std::string_view rest = view(decoded, end() - decoded);
    const std::vector<resp::ArgSpan> args = resp::command_args(rest);
    if (!args.empty() && resp_sensitive(ascii_upper(rest.substr(args[0].offset, args[0].length)))) {
      unit_start = decoded;
      mask_resp_unit(end());
    }
  }

  void step_commands() {
    for (int guard = 0; guard < (1 << 20); ++guard) {
      const std::string_view data(at(decoded), static_cast<std::size_t>(end() - decoded));
      const FrameStep s = commands.step(data);
      if (s.event == FrameEvent::error) {
        give_up(std::string("resp: ") + std::string(commands.error()), false);
        return;
      }
      const std::uint64_t start = decoded;
      decoded += s.consumed;
      if (unit_masking && s.consumed) mask(start, s.consumed, "resp:partial");
      if (s.event == FrameEvent::head) {
        if (!in_unit) unit_start = start;
        in_unit = true;
        sensitive = red && resp_sensitive(commands.name());
      }
      if (s.event == FrameEvent::end) {
        std::string key;
        if (sensitive && !unit_masking) redact_resp(unit_start, decoded - unit_start, key);
        else if (!sensitive) key = scrubbed(commands.key());
        Fields f;
        f.str("kind", "resp_command").str("command", commands.name());
        if (!key.empty()) f.str("key", key);
        f.num("argc", commands.arity());
        message(unit_start, decoded - unit_start, f.take());
        in_unit = false;
        sensitive = false;
        unit_masking = false;
      } else if (in_unit && sensitive && !unit_masking && decoded - unit_start > kMaxHeld) {
        mask_resp_unit(decoded);
        unit_masking = true;
      }
      if (s.consumed == 0 && s.event == FrameEvent::none) return;
    }
  }

  void step_replies() {
    for (int guard = 0; guard < (1 << 20); ++guard) {
      const std::string_view data(at(decoded), static_cast<std::size_t>(end() - decoded));
      const FrameStep s = replies.step(data);
      if (s.event == FrameEvent::error) {
        give_up(std::string("resp: ") + std::string(replies.error()), false);
        return;
      }
      const std::uint64_t start = decoded;
      decoded += s.consumed;
      if (!in_unit && s.consumed > 0) {
        in_unit = true;
        unit_start = start;
      }
      if (s.event == FrameEvent::end) {
        if (!in_unit) unit_start = start;
        Fields f;
        f.str("kind", "resp_reply").str("reply_type", std::string(1, replies.type()));
        if (replies.type() == '+' || replies.type() == '-') f.str("line", scrubbed(replies.line()));
        if (replies.is_push()) f.flag("push", true);
        message(unit_start, decoded - unit_start, f.take());
        in_unit = false;
      }
      if (s.consumed == 0 && s.event == FrameEvent::none) return;
    }
  }

  // ---- giving up, holding, finishing ----

  // The decoder cannot follow this direction any more: the rest is bytes. Whatever was
  // held for decoding is settled first so no secret in it slips through.
  void give_up(std::string reason, bool http_like) {
    message(decoded, 0, Fields().str("kind", "undecodable").str("reason", reason).take());
    if (mode == Mode::http) {
      settle_held_body();
      if (body == BodyKind::scan && red) body_keys.finish(*this);
      body = BodyKind::none;
    }
    if (mode == Mode::commands) {
      if (in_unit && sensitive && !unit_masking) mask_resp_unit(end());
      else if (!in_unit) mask_unheaded_command();
    }
    in_unit = false;
    mode = Mode::raw;
    // HTTP that stopped parsing may still carry header lines and JSON: keep looking.
    raw_http = http_like && red != nullptr;
    raw_scanned = decoded;
  }

  std::optional<std::uint64_t> hold() const {
    std::optional<std::uint64_t> h;
    auto take = [&](std::optional<std::uint64_t> v) {
      if (v && (!h || *v < *h)) h = v;
    };
    if (mode == Mode::http) take(http_hold());
    if (mode == Mode::commands && in_unit && sensitive && !unit_masking) take(unit_start);
    if (raw_http) {
      take(raw_lines.hold());
      take(raw_keys.hold());
    }
    return h;
  }

  void scan_raw() {
    if (!raw_http || raw_scanned >= end()) return;
    const std::uint64_t from = std::max(raw_scanned, base);
    raw_lines.feed(*this, from, static_cast<std::size_t>(end() - from));
    raw_keys.feed(*this, from, static_cast<std::size_t>(end() - from));
    raw_scanned = end();
  }

  // Payload scans over the bytes about to become final, then the tail a secret may
  // continue from. Returns how many leading bytes are final.
  std::size_t finalize(std::uint64_t fin, bool all) {
    std::size_t n = static_cast<std::size_t>(fin - base);
    if (red && n > 0) {
      std::vector<Redactor::Match> found;
      red->continuation(lookbehind, std::span<char>(pending->data(), n), found);
      const std::size_t held = all ? 0
                                   : red->hold_tail(std::string_view(pending->data(), n),
                                                    std::string_view(pending->data() + n, pending->size() - n));
      n -= held;
      red->scan(std::span<char>(pending->data(), n), found);
      for (const auto& m : found) note_redaction(base + m.offset, m.length, m.rule);
      const std::size_t keep = red->longest_remembered();
      if (keep > 1) {
        lookbehind.append(pending->data(), n);
        if (lookbehind.size() > keep - 1) lookbehind.erase(0, lookbehind.size() - (keep - 1));
      }
    }
    return n;
  }

  std::size_t process(bool all) {
    if (!finished) {
      switch (mode) {
        case Mode::http: step_http(); break;
        case Mode::commands: step_commands(); break;
        case Mode::replies: step_replies(); break;
        case Mode::raw: break;
      }
      scan_raw();
    }
    std::uint64_t fin = (mode == Mode::raw || finished) ? end() : decoded;
    if (const auto h = hold()) fin = std::min(fin, *h);
    if (fin < base) fin = base;
    if (!finished && end() - fin > kMaxHeld) {
      // Bounded memory: something held more than any rule allows. Stop decoding here.
      give_up("held more than " + std::to_string(kMaxHeld) + " bytes", mode == Mode::http);
      scan_raw();
      raw_lines.finish(*this);
      raw_keys.finish(*this);
      raw_http = false;
      fin = end();
    }
    return finalize(fin, all || finished);
  }

  void finish() {
    if (finished) return;
    switch (mode) {
      case Mode::http:
        if (framer->finish()) {
          on_end(decoded);
        } else if (framer->in_message()) {
          settle_held_body();
          if (body == BodyKind::scan && red) body_keys.finish(*this);
          body = BodyKind::none;
        } else if (end() > decoded) {
          redact_head(decoded, end() - decoded);  // a head cut off
        }
        break;
      case Mode::commands:
        if (in_unit && sensitive && !unit_masking) mask_resp_unit(end());
        else if (!in_unit) mask_unheaded_command();
        break;
      default: break;
    }
    if (raw_http) {
      scan_raw();
      raw_lines.finish(*this);
      raw_keys.finish(*this);
    }
    finished = true;
    mode = Mode::raw;
    raw_http = false;
  }
};

StreamAnnotator::StreamAnnotator(Protocol protocol, Stream direction, std::shared_ptr<Redactor> redactor)
    : impl_(std::make_unique<Impl>(protocol, direction, std::move(redactor))) {}
StreamAnnotator::~StreamAnnotator() = default;
StreamAnnotator::StreamAnnotator(StreamAnnotator&&) noexcept = default;
StreamAnnotator& StreamAnnotator::operator=(StreamAnnotator&&) noexcept = default;

void StreamAnnotator::pair(StreamAnnotator& requests, StreamAnnotator& responses) {
  auto link = std::make_shared<Impl::Link>();
  requests.impl_->link = link;
  responses.impl_->link = std::move(link);
}

std::size_t StreamAnnotator::process(std::string& pending, std::uint64_t offset, std::vector<Annotation>& out) {
  Impl& m = *impl_;
  m.pending = &pending;
  m.base = offset;
  m.out = &out;
  if (m.decoded < offset) m.decoded = offset;  // bytes the caller skipped (never in normal use)
  const std::size_t n = m.process(false);
  m.pending = nullptr;
  m.out = nullptr;
  return n;
}

void StreamAnnotator::finish(std::string& pending, std::uint64_t offset, std::vector<Annotation>& out) {
  Impl& m = *impl_;
  m.pending = &pending;
  m.base = offset;
  m.out = &out;
  if (m.decoded < offset) m.decoded = offset;
  if (!m.finished) {
    // Decode what arrived last, then settle whatever is still held.
    switch (m.mode) {
      case Impl::Mode::http: m.step_http(); break;
      case Impl::Mode::commands: m.step_commands(); break;
      case Impl::Mode::replies: m.step_replies(); break;
      case Impl::Mode::raw: break;
    }
    m.scan_raw();
    m.finish();
  }
  m.finalize(m.end(), true);
  m.pending = nullptr;
  m.out = nullptr;
}

}  // namespace faultline::rec
