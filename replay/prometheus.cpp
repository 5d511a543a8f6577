#include "replay/prometheus.hpp"

#include <cctype>
#include <cmath>
#include <cstdlib>

namespace faultline::drill {
namespace {

bool name_char(char c, bool first) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':' ||
         (!first && std::isdigit(static_cast<unsigned char>(c)));
}

std::optional<PromSample> parse_line(std::string_view line) {
  PromSample s;
  std::size_t i = 0;
  while (i < line.size() && name_char(line[i], i == 0)) ++i;
  if (i == 0) return std::nullopt;
  s.name = std::string(line.substr(0, i));
  if (i < line.size() && line[i] == '{') {
    ++i;
    while (i < line.size() && line[i] != '}') {
      while (i < line.size() && (line[i] == ' ' || line[i] == ',')) ++i;
      if (i < line.size() && line[i] == '}') break;
      const std::size_t ks = i;
      while (i < line.size() && name_char(line[i], i == ks)) ++i;
      std::string key(line.substr(ks, i - ks));
      if (key.empty() || i + 1 >= line.size() || line[i] != '=' || line[i + 1] != '"') return std::nullopt;
      i += 2;
      std::string value;
      while (i < line.size() && line[i] != '"') {
        if (line[i] == '\\' && i + 1 < line.size()) {
          ++i;
          value += line[i] == 'n' ? '\n' : line[i];
        } else {
          value += line[i];
        }
        ++i;
      }
      if (i >= line.size()) return std::nullopt;
      ++i;  // closing quote
      s.labels.emplace(std::move(key), std::move(value));
    }
    if (i >= line.size()) return std::nullopt;
    ++i;  // '}'
  }
  while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
  const std::size_t vs = i;
  while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
  const std::string value(line.substr(vs, i - vs));
  if (value.empty()) return std::nullopt;
  if (value == "+Inf") s.value = HUGE_VAL;
  else if (value == "-Inf") s.value = -HUGE_VAL;
  else {
    char* end = nullptr;
    s.value = std::strtod(value.c_str(), &end);
    if (end != value.c_str() + value.size()) return std::nullopt;
  }
  return s;
}

}  // namespace

std::vector<PromSample> parse_prometheus(std::string_view text, const std::vector<std::string>& keep) {
  std::vector<PromSample> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    if (line.empty() || line.front() == '#') continue;
    if (!keep.empty()) {
      bool wanted = false;
      for (const auto& k : keep) {
        if (line.size() > k.size() && line.substr(0, k.size()) == k && (line[k.size()] == '{' || line[k.size()] == ' ')) {
          wanted = true;
          break;
        }
      }
      if (!wanted) continue;
    }
    if (auto s = parse_line(line)) out.push_back(std::move(*s));
  }
  return out;
}

std::optional<double> sum_matching(const std::vector<PromSample>& samples, std::string_view name,
                                   const std::map<std::string, std::string>& labels) {
  std::optional<double> sum;
  for (const auto& s : samples) {
    if (s.name != name) continue;
    bool match = true;
    for (const auto& [k, v] : labels) {
      auto it = s.labels.find(k);
      if (it == s.labels.end() || it->second != v) {
        match = false;
        break;
      }
    }
    if (match) sum = sum.value_or(0) + s.value;
  }
  return sum;
}

}  // namespace faultline::drill
