#include "replay/json_path.hpp"

#include <cctype>

namespace faultline::drill {

std::optional<JsonPath> JsonPath::compile(std::string_view text, std::string& error) {
  JsonPath path;
  path.text_ = std::string(text);
  std::size_t i = 0;
  if (text.empty() || text[0] != '$') {
    error = "a JSON path starts with $";
    return std::nullopt;
  }
  i = 1;
  while (i < text.size()) {
    if (text[i] == '.') {
      ++i;
      if (i < text.size() && text[i] == '.') {
        error = "recursive descent (..) is not supported";
        return std::nullopt;
      }
      if (i < text.size() && text[i] == '*') {
        path.steps_.push_back({Step::Kind::wildcard, {}, 0});
        ++i;
        continue;
      }
      const std::size_t start = i;
      while (i < text.size() && text[i] != '.' && text[i] != '[') ++i;
      if (i == start) {
        error = "empty name after '.' at offset " + std::to_string(start);
        return std::nullopt;
      }
      path.steps_.push_back({Step::Kind::key, std::string(text.substr(start, i - start)), 0});
    } else if (text[i] == '[') {
      ++i;
      if (i < text.size() && (text[i] == '\'' || text[i] == '"')) {
        const char quote = text[i++];
        std::string key;
        while (i < text.size() && text[i] != quote) {
          if (text[i] == '\\' && i + 1 < text.size()) ++i;
          key += text[i++];
        }
        if (i + 1 >= text.size() || text[i + 1] != ']') {
          error = "unterminated ['name'] in the path";
          return std::nullopt;
        }
        i += 2;
        path.steps_.push_back({Step::Kind::key, std::move(key), 0});
      } else if (i < text.size() && text[i] == '*') {
        if (i + 1 >= text.size() || text[i + 1] != ']') {
          error = "expected ] after [*";
          return std::nullopt;
        }
        i += 2;
        path.steps_.push_back({Step::Kind::wildcard, {}, 0});
      } else {
        const std::size_t start = i;
        if (i < text.size() && text[i] == '-') ++i;
        while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
        if (i == start || i >= text.size() || text[i] != ']' || (text[start] == '-' && i == start + 1)) {
          error = "expected an index, 'name' or * inside [] at offset " + std::to_string(start) +
                  " (filters and slices are not supported)";
          return std::nullopt;
        }
        if (i - start > 12) {
          error = "index out of range at offset " + std::to_string(start);
          return std::nullopt;
        }
        const long long index = std::stoll(std::string(text.substr(start, i - start)));
        ++i;
        path.steps_.push_back({Step::Kind::index, {}, index});
      }
    } else {
      error = "unexpected '" + std::string(1, text[i]) + "' at offset " + std::to_string(i);
      return std::nullopt;
    }
  }
  return path;
}

std::vector<const rapidjson::Value*> JsonPath::select(const rapidjson::Value& root) const {
  std::vector<const rapidjson::Value*> current{&root};
  for (const auto& step : steps_) {
    std::vector<const rapidjson::Value*> next;
    for (const auto* v : current) {
      switch (step.kind) {
        case Step::Kind::key:
          if (v->IsObject()) {
            auto it = v->FindMember(rapidjson::Value(step.key.data(), static_cast<rapidjson::SizeType>(step.key.size())));
            if (it != v->MemberEnd()) next.push_back(&it->value);
          }
          break;
        case Step::Kind::index:
          if (v->IsArray()) {
            const long long size = static_cast<long long>(v->Size());
            const long long at = step.index < 0 ? size + step.index : step.index;
            if (at >= 0 && at < size) next.push_back(&(*v)[static_cast<rapidjson::SizeType>(at)]);
          }
          break;
        case Step::Kind::wildcard:
          if (v->IsArray()) {
            for (const auto& e : v->GetArray()) next.push_back(&e);
          } else if (v->IsObject()) {
            for (const auto& m : v->GetObject()) next.push_back(&m.value);
          }
          break;
      }
    }
    current = std::move(next);
  }
  return current;
}

}  // namespace faultline::drill
