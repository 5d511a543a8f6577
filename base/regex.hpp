// User regular expressions: match.path_regex, redaction rules, drill tolerances. They run
// on RE2, whose matching takes time linear in the input and never recurses over it, so no
// pattern over any body can exhaust a thread's stack (std::regex's backtracking recursed
// once per character: `sk-[A-Za-z0-9]{8,}` over a 40 KB token overflowed 8 MiB) or hang it.
// RE2's syntax is Perl's without backreferences or lookaround (docs/protocols.md). Text is
// matched byte by byte (RE2's Latin-1 mode), as std::regex did: a payload need not be
// valid UTF-8, and `.` is one byte.
#pragma once
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace re2 {
class RE2;
}

namespace faultline {

class Regex {
 public:
  // The compiled pattern, or nullopt with `error` set to why RE2 refuses it.
  static std::optional<Regex> compile(std::string_view pattern, std::string& error);

  const std::string& pattern() const;
  // Whether the whole of `text` matches.
  bool full_match(std::string_view text) const;
  // Whether some part of `text` matches.
  bool search(std::string_view text) const;
  // Every non-empty match from left to right, as (offset, length); each search resumes where
  // the last match ended, so matches never overlap. `^` is the start of `text` only.
  std::vector<std::pair<std::size_t, std::size_t>> find_all(std::string_view text) const;

 private:
  explicit Regex(std::shared_ptr<const re2::RE2> re) : re_(std::move(re)) {}
  std::shared_ptr<const re2::RE2> re_;  // immutable and thread-safe: copies share one program
};

}  // namespace faultline
