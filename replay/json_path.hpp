// A small JSONPath subset for drill tolerances ({"type": "jsonpath"}): `$`, `.name`,
// `['name']` / `["name"]`, `[N]` (negative counts from the end), `[*]` and `.*`. That is what
// Chaos Toolkit's drills use in practice; filters and recursive descent are refused when the
// drill is parsed, so a typo never silently matches nothing. Pure: no I/O.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/document.h>

namespace faultline::drill {

class JsonPath {
 public:
  // Compiles `text`; on error returns nullopt and sets `error` to what is wrong.
  static std::optional<JsonPath> compile(std::string_view text, std::string& error);

  // Every value the path selects in `root`, in document order.
  std::vector<const rapidjson::Value*> select(const rapidjson::Value& root) const;

  const std::string& text() const { return text_; }

 private:
  struct Step {
    enum class Kind { key, index, wildcard } kind;
    std::string key;
    long long index = 0;
  };
  std::string text_;
  std::vector<Step> steps_;
};

}  // namespace faultline::drill
