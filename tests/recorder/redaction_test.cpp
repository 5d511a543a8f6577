// Redaction tokens and the payload scans (user regexes, remembered secrets), without streams.
#include <catch2/catch.hpp>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <chrono>
#include <set>

#include "tests/recorder/support.hpp"
#include "tests/timing.hpp"

using namespace faultline;
using namespace faultline::test;

TEST_CASE("redaction: tokens have the secret's length at every length") {
  auto r = redactor();
  for (std::size_t n = 0; n <= 300; ++n) {
    const std::string secret(n, 'x');
    INFO("length " << n);
    CHECK(r->token(secret).size() == n);
    CHECK(r->token(secret, n + 7).size() == n + 7);
  }
}

TEST_CASE("redaction: tokens are deterministic per key and differ between keys") {
  auto a = redactor("key-a");
  auto a2 = redactor("key-a");
  auto b = redactor("key-b");
  const std::string secret = "sk-live-0123456789abcdef";
  CHECK(a->token(secret) == a->token(secret));
  CHECK(a->token(secret) == a2->token(secret));
  CHECK(a->token(secret) != b->token(secret));
  CHECK(a->token(secret).rfind("REDACTED-", 0) == 0);
  CHECK(a->token(secret) != secret);
  CHECK(a->token("sk-live-0123456789abcdeg") != a->token(secret));
}

TEST_CASE("redaction: secrets under 10 bytes get the bare digest, still distinct") {
  auto r = redactor();
  std::set<std::string> seen;
  for (const char* s : {"a", "ab", "pw1", "pw2", "hunter2", "letmein!", "123456789"}) {
    const std::string tok = r->token(s);
    INFO(s << " -> " << tok);
    CHECK(tok.size() == std::string(s).size());
    CHECK(tok.find_first_not_of("0123456789abcdef") == std::string::npos);
    seen.insert(tok);
  }
  CHECK(seen.size() == 7);
  CHECK(r->token("0123456789").rfind("REDACTED-", 0) == 0);
}

TEST_CASE("redaction: long secrets are padded deterministically past the first digest") {
  auto r = redactor();
  const std::string secret(500, 's');
  const std::string tok = r->token(secret);
  CHECK(tok.size() == 500);
  CHECK(tok == r->token(secret));
  CHECK(tok.rfind("REDACTED-", 0) == 0);
  CHECK(tok.find_first_not_of("0123456789abcdef", 9) == std::string::npos);
}

TEST_CASE("redaction: tokens are the documented HMAC-SHA256 chain, for any key") {
  const auto hmac_hex = [](const std::string& key, const std::string& data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    static const unsigned char kNoKey = 0;
    HMAC(EVP_sha256(), key.empty() ? &kNoKey : reinterpret_cast<const unsigned char*>(key.data()),
         static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &n);
    std::string out;
    for (unsigned i = 0; i < n; ++i) out += "0123456789abcdef"[md[i] >> 4], out += "0123456789abcdef"[md[i] & 0xF];
    return out;
  };
  for (const std::string key : {"test-key", ""}) {
    auto r = redactor(key);
    std::string secret;
    for (int i = 0; i < 300; ++i) secret += static_cast<char>('!' + i % 90);
    std::string want = "REDACTED-" + hmac_hex(key, secret);
    for (std::uint32_t i = 1; want.size() < secret.size(); ++i) {
      const char be[4] = {static_cast<char>(i >> 24), static_cast<char>(i >> 16), static_cast<char>(i >> 8), static_cast<char>(i)};
      want += hmac_hex(key, secret + std::string(be, 4));
    }
    want.resize(secret.size());
    INFO("key \"" << key << "\"");
    CHECK(r->token(secret) == want);
    CHECK(r->token("hunter2") == hmac_hex(key, "hunter2").substr(0, 7));
  }
}

TEST_CASE("redaction: a 1 MiB secret's token takes little time") {
  auto r = redactor();
  const std::string secret = "sk-" + std::string(1024 * 1024, 'A');
  const auto start = std::chrono::steady_clock::now();
  const std::string tok = r->token(secret);
  CHECK(std::chrono::steady_clock::now() - start < quick(std::chrono::seconds(1)));
  CHECK(tok.size() == secret.size());
  CHECK(tok.rfind("REDACTED-", 0) == 0);
}

TEST_CASE("redaction: an invalid user regex is refused with its pattern named") {
  std::string error;
  rec::RedactionRules rules;
  rules.regexes = {"sk-[a-z"};
  CHECK(rec::Redactor::make("k", rules, error) == nullptr);
  CHECK(error.find("sk-[a-z") != std::string::npos);
}

TEST_CASE("redaction: header and key rules are case-insensitive and include user names") {
  rec::RedactionRules rules;
  rules.headers = {"X-Session"};
  rules.json_keys = {"PIN_Code"};
  auto r = redactor("k", rules);
  using HR = rec::Redactor::HeaderRule;
  CHECK(r->header_rule("AUTHORIZATION") == HR::credential);
  CHECK(r->header_rule("proxy-authorization") == HR::credential);
  CHECK(r->header_rule("Cookie") == HR::cookie);
  CHECK(r->header_rule("set-cookie") == HR::set_cookie);
  CHECK(r->header_rule("X-API-Key") == HR::value);
  CHECK(r->header_rule("api-key") == HR::value);
  CHECK(r->header_rule("x-session") == HR::value);
  CHECK(r->header_rule("content-type") == HR::none);
  for (const char* k : {"api_key", "APIKEY", "password", "passwd", "token", "access_token", "refresh_token",
                        "id_token", "secret", "client_secret", "Authorization", "pin_code"}) {
    INFO(k);
    CHECK(r->secret_key(k));
  }
  CHECK_FALSE(r->secret_key("user"));
  CHECK_FALSE(r->secret_key("key"));
}

TEST_CASE("redaction: scan replaces user regex matches and remembered secrets, same length") {
  rec::RedactionRules rules;
  rules.regexes = {"sk-[A-Za-z0-9]{8,}"};
  auto r = redactor("k", rules);
  r->remember("hunter2hunter2");
  r->remember("abc");  // too short to scan for
  std::string text = "key=sk-ABCDEFGH12 echo=hunter2hunter2 short=abc again hunter2hunter2";
  const std::string before = text;
  std::vector<rec::Redactor::Match> found;
  r->scan(std::span<char>(text.data(), text.size()), found);
  CHECK(text.size() == before.size());
  CHECK(text.find("sk-ABCDEFGH12") == std::string::npos);
  CHECK(text.find("hunter2hunter2") == std::string::npos);
  CHECK(text.find("short=abc") != std::string::npos);
  CHECK(text.find(r->token("sk-ABCDEFGH12")) != std::string::npos);
  CHECK(text.find(r->token("hunter2hunter2")) != std::string::npos);
  REQUIRE(found.size() == 3);
  CHECK(found[0].rule == "regex:sk-[A-Za-z0-9]{8,}");
  CHECK(found[1].rule == "echo");
  CHECK(before.substr(found[1].offset, found[1].length) == "hunter2hunter2");
}

// std::regex recursed once per character of a match: this rule over a 40 KB token
// overflowed an 8 MiB stack and took the whole process down.
TEST_CASE("redaction: a user regex over a 1 MiB match neither crashes nor takes long") {
  rec::RedactionRules rules;
  rules.regexes = {"sk-[A-Za-z0-9]{8,}"};
  auto r = redactor("k", rules);
  const std::string secret = "sk-" + std::string(1024 * 1024, 'A');
  std::string text = R"({"key":")" + secret + R"(","next":"sk-12345678"})";
  const std::string before = text;
  std::vector<rec::Redactor::Match> found;
  const auto start = std::chrono::steady_clock::now();
  r->scan(std::span<char>(text.data(), text.size()), found);
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(took < quick(std::chrono::seconds(2)));
  REQUIRE(found.size() == 2);
  CHECK(found[0].offset == 8);
  CHECK(found[0].length == secret.size());
  CHECK(before.substr(found[1].offset, found[1].length) == "sk-12345678");
  CHECK(text.size() == before.size());
  CHECK(text.substr(8, secret.size()) == r->token(secret));
  CHECK(text.find("sk-") == std::string::npos);
}

TEST_CASE("redaction: a user regex over 1 MiB of short matches takes little time") {
  rec::RedactionRules rules;
  rules.regexes = {"sk-[A-Za-z0-9]{8,}"};
  auto r = redactor("k", rules);
  std::string text;
  for (int i = 0; text.size() < 1024 * 1024; ++i) text += "sk-" + std::to_string(10000000 + i) + " ";
  const std::size_t count = text.size() / std::string("sk-10000000 ").size();
  std::vector<rec::Redactor::Match> found;
  const auto start = std::chrono::steady_clock::now();
  r->scan(std::span<char>(text.data(), text.size()), found);
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(took < quick(std::chrono::seconds(2)));
  CHECK(found.size() == count);
  CHECK(text.find("sk-") == std::string::npos);
}

TEST_CASE("redaction: matches are found left to right without overlapping, as before") {
  rec::RedactionRules rules;
  rules.regexes = {"ab|b+c", "^x"};  // leftmost first; ^ is the start of the payload only
  auto r = redactor("k", rules);
  std::string text = "xabbc bbc x";
  const std::string before = text;
  std::vector<rec::Redactor::Match> found;
  r->scan(std::span<char>(text.data(), text.size()), found);
  REQUIRE(found.size() == 4);
  CHECK(before.substr(found[0].offset, found[0].length) == "ab");
  CHECK(before.substr(found[1].offset, found[1].length) == "bc");
  CHECK(before.substr(found[2].offset, found[2].length) == "bbc");
  CHECK(found[3].offset == 0);
  CHECK(found[3].rule == "regex:^x");
}

TEST_CASE("redaction: a pattern RE2 does not support is refused with its pattern named") {
  // The pattern is named as a JSON string: a backslash shows doubled.
  struct Case {
    const char* pattern;
    const char* shown;
    const char* hint;
  };
  for (const Case& c : {Case{"sk-(?=[a-z])", "\"sk-(?=[a-z])\"", "(RE2 has no lookahead)"},
                        Case{"(?<!x)sk-", "\"(?<!x)sk-\"", "(RE2 has no lookbehind; a named group is written (?P<name>...))"},
                        Case{"(a)\\1", "\"(a)\\\\1\"", "(RE2 has no backreferences)"},
                        Case{"(?<key>sk-.*)", "\"(?<key>sk-.*)\"", "(RE2 has no lookbehind; a named group is written (?P<name>...))"}}) {
    std::string error;
    rec::RedactionRules rules;
    rules.regexes = {c.pattern};
    CHECK(rec::Redactor::make("k", rules, error) == nullptr);
    INFO(error);
    CHECK(error.find(std::string("redaction regex ") + c.shown + ": ") == 0);
    CHECK(error.find(c.hint) != std::string::npos);
  }
}

TEST_CASE("redaction: remembered secrets are bounded, the oldest go first") {
  auto r = redactor();
  for (std::size_t i = 0; i < rec::Redactor::kMaxRemembered + 5; ++i) r->remember("secret-number-" + std::to_string(i));
  std::string first = "secret-number-0";
  std::string last = "secret-number-" + std::to_string(rec::Redactor::kMaxRemembered + 4);
  r->scrub(first);
  r->scrub(last);
  CHECK(first == "secret-number-0");
  CHECK(last != "secret-number-" + std::to_string(rec::Redactor::kMaxRemembered + 4));
}

TEST_CASE("redaction: a tail that starts a remembered secret is held, a contradicted one is not") {
  auto r = redactor();
  r->remember("sk-supersecret");
  CHECK(r->hold_tail("hello sk-sup", "") == 6);
  CHECK(r->hold_tail("hello sk-sup", "ersec") == 6);
  CHECK(r->hold_tail("hello sk-sup", "erX") == 0);
  CHECK(r->hold_tail("hello s", "") == 0);  // under 3 bytes: continuation() covers it
  CHECK(r->hold_tail("hello world", "") == 0);
  std::string rest = "k-supersecret and more";
  std::vector<rec::Redactor::Match> found;
  r->continuation("xx s", std::span<char>(rest.data(), rest.size()), found);
  REQUIRE(found.size() == 1);
  CHECK(rest == r->token("sk-supersecret").substr(1) + " and more");
}

// issue 16, item 2: a fault's description names the message it acted on; it must not carry
// the secrets the message's own redaction removed.
TEST_CASE("redaction: fault descriptions lose the secrets their messages lose, with the same tokens") {
  rec::RedactionRules rules;
  rules.json_keys = {"session_key"};
  auto r = redactor("test-key", rules);
  struct Case {
    std::string what;
    std::vector<std::string> secrets;
  };
  const std::vector<Case> cases = {
      {"delayed GET /x?token=tok-SECRET-1&page=2", {"tok-SECRET-1"}},
      {"answered 429 to GET /abort?a=1&api_key=key-SECRET-2#frag", {"key-SECRET-2"}},
      {"delayed POST /v1?Password=pw3&Session_Key=sk-SECRET-4", {"pw3", "sk-SECRET-4"}},
      {"delayed AUTH redis-SECRET-5", {"redis-SECRET-5"}},
      {"answered -WRONGPASS to auth pw6 after forwarding it", {"pw6"}},
      {"delayed CONFIG SET requirepass cfg-SECRET-7", {"cfg-SECRET-7"}},
      {"closed the connection before ACL SETUSER bob on >acl-SECRET-8 #abc123hash", {"acl-SECRET-8", "abc123hash"}},
      {"answered 503 to GET /form token=form-SECRET-9", {"form-SECRET-9"}},
  };
  for (const auto& c : cases) {
    std::string text = c.what;
    r->redact_description(text);
    INFO(c.what << " -> " << text);
    CHECK(text.size() == c.what.size());
    for (const auto& s : c.secrets) {
      CHECK(text.find(s) == std::string::npos);
      CHECK(text.find(r->token(s)) != std::string::npos);
    }
  }
  // What is not a secret stays as it was.
  for (const std::string plain : {"delayed GET /x?page=2&q=token", "cut the stream after 3 events",
                                  "delayed GET user:42", "active on the upstream direction"}) {
    std::string text = plain;
    r->redact_description(text);
    CHECK(text == plain);
  }
  // The token is the one the request line itself got in the journal.
  const auto http = annotate(Protocol::http, Stream::upstream, r,
                             {"GET /x?token=tok-SECRET-1&page=2 HTTP/1.1\r\nHost: h\r\n\r\n"});
  std::string text = "delayed GET /x?token=tok-SECRET-1&page=2";
  r->redact_description(text);
  CHECK(http.written.find(text.substr(8)) != std::string::npos);
  // The log's variant: no key, the built-in rules, a fixed mask.
  CHECK(rec::redact_description_for_log("delayed GET /x?token=abc&page=2") == "delayed GET /x?token=REDACTED&page=2");
  CHECK(rec::redact_description_for_log("answered -ERR to AUTH hunter2") == "answered -ERR to AUTH REDACTED");
  CHECK(rec::redact_description_for_log("delayed GET /plain") == "delayed GET /plain");
}
