// Redaction at record time. Secrets are replaced by deterministic tokens of the SAME
// LENGTH ("REDACTED-" + a keyed hash, cut or padded to the secret's length), so message
// framing (Content-Length, chunk sizes, RESP bulk lengths) and byte offsets stay valid,
// and the same secret gives the same token within a recording (replay matching works).
//
// Tokens: "REDACTED-" + hex(HMAC-SHA256(key, secret)), cut to the secret's length; a
// secret longer than that is padded with hex(HMAC-SHA256(key, secret || i)) for i = 1, 2…
// A secret shorter than 10 bytes would keep only part of "REDACTED-" (every short secret
// would look alike), so it becomes the hex digest alone, cut to its length: still
// deterministic, and two different short secrets still differ. The key is random per
// recording and never written anywhere, so a token cannot be tested against guesses.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/vocabulary.hpp"
#include "base/regex.hpp"

namespace faultline::rec {

struct RedactionRules {
  std::vector<std::string> headers;    // extra header names (case-insensitive)
  std::vector<std::string> json_keys;  // extra JSON keys (any depth)
  std::vector<std::string> regexes;    // RE2 syntax (base/regex.hpp); every match in any payload is redacted
};

// The recording's key and rules; shared by its streams (read-only after construction,
// except the set of secrets seen, which is guarded inside).
class Redactor {
 public:
  // `key`: the recording's random key (32 bytes). Invalid regexes: error names it.
  static std::shared_ptr<Redactor> make(std::string key, const RedactionRules& rules, std::string& error);
  // The token for a secret: same length as `secret`.
  std::string token(std::string_view secret) const;
  // The token for a secret written in `length` bytes (a JSON string with escapes is
  // longer than the value it stands for; the token fills the bytes as written).
  std::string token(std::string_view secret, std::size_t length) const;
  // Remembers a redacted secret so later payloads that echo it are redacted too.
  void remember(std::string_view secret);
  // (the implementation adds what it needs: rule lookups, the scan for remembered secrets)

  // Secrets shorter than this are not scanned for: a 3-byte password would match all over
  // ordinary traffic. At most kMaxRemembered distinct secrets are kept (the oldest go),
  // each at most kMaxRememberedLength bytes (longer ones are not scanned for).
  static constexpr std::size_t kMinRememberedLength = 6;
  static constexpr std::size_t kMaxRemembered = 64;
  static constexpr std::size_t kMaxRememberedLength = 4096;

  // What a header's value holds, by the header's name.
  enum class HeaderRule : std::uint8_t {
    none,
    credential,  // Authorization, Proxy-Authorization: "Scheme credential", the scheme is kept
    cookie,      // Cookie: every cookie's value, the names are kept
    set_cookie,  // Set-Cookie: the cookie's value; its attributes (Path, Expires…) are kept
    value,       // x-api-key, api-key and user header names: the whole value
  };
  HeaderRule header_rule(std::string_view name) const;
  // JSON keys (any depth), URL query and form parameters, compared case-insensitively.
  bool secret_key(std::string_view key) const;

  struct Match {
    std::size_t offset = 0;
    std::size_t length = 0;
    std::string rule;  // "regex:<pattern>" or "echo"
  };
  // The payload scans: user regexes, then remembered secrets, over `data`, replaced in place
  // by their tokens. Matches are appended (offsets into `data`).
  void scan(std::span<char> data, std::vector<Match>& found) const;
  // The same scans over a decoded field before it goes into a journal line.
  void scrub(std::string& text) const;
  // How many trailing bytes of `done` must wait: they are the start of a remembered secret
  // that `after` (the bytes known to follow, possibly none) does not contradict. Only
  // starts of 3 bytes or more are held (shorter ones would hold back ordinary text all the
  // time); a secret split after fewer is caught by continuation() instead.
  std::size_t hold_tail(std::string_view done, std::string_view after) const;
  // `before` was already written (the last bytes of this stream, at most the longest
  // secret); redacts in `data` the rest of a remembered secret that began in `before`.
  void continuation(std::string_view before, std::span<char> data, std::vector<Match>& found) const;
  std::size_t longest_remembered() const;

  // A fault's description (`delayed GET /x?token=…`, `answered -ERR to AUTH hunter2`) is
  // text about a message, so it goes through the message's rules before it is written: the
  // values of query and form parameters named like secret keys (`?token=…`, `a=1&password=…`),
  // the word after a Redis AUTH (the password; with `AUTH user pass` a description names the
  // user, which is then hidden too: a description does not say which it is), the value after
  // `requirepass`/`masterauth`, ACL SETUSER rules (`>pass`, `#hash`…), then the regexes and the
  // remembered secrets (scrub). Replaced in place by the same tokens the message got.
  void redact_description(std::string& text) const;

 private:
  Redactor() = default;
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// redact_description's rules for text that leaves faultline without a recording's key (the
// debug log): the built-in secret keys only, each secret replaced by "REDACTED" (so the
// length changes), no regexes, no remembered secrets.
std::string redact_description_for_log(std::string_view text);

// Follows one direction of one connection: decodes it as `protocol` to find secrets and
// message boundaries, redacts in place, and describes messages for the journal.
struct Annotation {
  enum class Kind : std::uint8_t { message, redaction } kind = Kind::message;
  std::uint64_t offset = 0;  // in this direction's byte stream
  std::uint64_t length = 0;
  std::string fields;        // JSON members to add to the line, e.g. "\"kind\":\"http_request\",\"method\":\"GET\""
};

class StreamAnnotator {
 public:
  StreamAnnotator(Protocol protocol, Stream direction, std::shared_ptr<Redactor> redactor /* null: no redaction */);
  ~StreamAnnotator();
  StreamAnnotator(StreamAnnotator&&) noexcept;
  StreamAnnotator& operator=(StreamAnnotator&&) noexcept;

  // HTTP (and MCP): the response direction must know which requests it answers (a
  // response to HEAD has no body, one to CONNECT starts a tunnel). Links a connection's
  // request-direction annotator to its response-direction one (they share a small state
  // object, so either may be destroyed first).
  static void pair(StreamAnnotator& requests, StreamAnnotator& responses);

  // `pending` holds this direction's bytes not yet written to the journal, starting at
  // stream offset `offset`. The annotator may rewrite bytes inside it (same length) and
  // returns how many leading bytes are final (no later byte can change them); the caller
  // writes those and erases them. Annotations found are appended.
  std::size_t process(std::string& pending, std::uint64_t offset, std::vector<Annotation>& out);
  // The stream ended: everything pending is final.
  void finish(std::string& pending, std::uint64_t offset, std::vector<Annotation>& out);

  // Most bytes a direction holds back: a JSON body (1 MiB) plus an HTTP head (64 KiB).
  static constexpr std::size_t kMaxHeldBody = 1024 * 1024;
  static constexpr std::size_t kMaxHeld = kMaxHeldBody + 64 * 1024;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace faultline::rec
