#include "base/regex.hpp"

#include <re2/re2.h>

namespace faultline {

std::optional<Regex> Regex::compile(std::string_view pattern, std::string& error) {
  RE2::Options options;
  options.set_encoding(RE2::Options::EncodingLatin1);  // bytes, not UTF-8 (see the header)
  options.set_log_errors(false);                       // the caller reports the error
  auto re = std::make_shared<const RE2>(re2::StringPiece(pattern.data(), pattern.size()), options);
  if (re->ok()) return Regex(std::move(re));
  error = re->error();
  // What ECMAScript or PCRE have and RE2 does not: say so, not only where parsing stopped.
  const std::string& arg = re->error_arg();
  const auto starts = [&](std::string_view prefix) { return std::string_view(arg).substr(0, prefix.size()) == prefix; };
  if (re->error_code() == RE2::ErrorBadPerlOp && (starts("(?=") || starts("(?!"))) {
    error += " (RE2 has no lookahead)";
  } else if (re->error_code() == RE2::ErrorBadPerlOp && starts("(?<")) {
    error += " (RE2 has no lookbehind; a named group is written (?P<name>...))";
  } else if (re->error_code() == RE2::ErrorBadEscape && arg.size() >= 2 && arg[1] >= '1' && arg[1] <= '9') {
    error += " (RE2 has no backreferences)";
  }
  return std::nullopt;
}

const std::string& Regex::pattern() const { return re_->pattern(); }

bool Regex::full_match(std::string_view text) const {
  return RE2::FullMatch(re2::StringPiece(text.data(), text.size()), *re_);
}

bool Regex::search(std::string_view text) const {
  return RE2::PartialMatch(re2::StringPiece(text.data(), text.size()), *re_);
}

std::vector<std::pair<std::size_t, std::size_t>> Regex::find_all(std::string_view text) const {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  const re2::StringPiece whole(text.data(), text.size());
  std::size_t pos = 0;
  re2::StringPiece m;
  // Text before `pos` stays context (for ^ and \b), as std::regex_iterator had it.
  while (pos <= text.size() && re_->Match(whole, pos, text.size(), RE2::UNANCHORED, &m, 1)) {
    const auto at = static_cast<std::size_t>(m.data() - text.data());
    if (m.empty()) {
      pos = at + 1;  // an empty match redacts nothing: look again one byte further
      continue;
    }
    out.emplace_back(at, m.size());
    pos = at + m.size();
  }
  return out;
}

}  // namespace faultline
