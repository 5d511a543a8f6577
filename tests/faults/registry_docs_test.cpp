// The fault tables of docs/faults.md and docs/protocols.md against the ToxicRegistry, both
// ways: every registered type is documented with every attribute and the default the
// registry gives it, and every documented type and attribute exists. A fault added without
// its docs, or a default changed in one place only, fails here.
//
// The layout read (docs/writing-a-fault.md says the same to a fault's author): a table whose
// first header cell is `type`; per row, the type in backticks in the first cell (a trailing
// "(extended)" marks a row that adds attributes to a type documented earlier) and its
// attributes in the second, "—" for none. In that cell an attribute is a backticked name
// outside parentheses, optionally followed by a unit ("ms", "KB/s") and then a parenthesis
// that starts with the default: a number, a JSON value ({}, null, false) or a backticked
// text; for a choice, every allowed value appears backticked in it, the default first.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "base/json_writer.hpp"
#include "faults/toxic.hpp"

using namespace faultline;

namespace {

struct DocumentedAttribute {
  std::string name;
  bool has_group = false;
  std::string group;  // the parenthesis after the name, without the parentheses
};

struct DocumentedType {
  std::string name;
  std::string file;
  std::vector<DocumentedAttribute> attributes;
};

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t");
  return std::string(s.substr(b, e - b + 1));
}

// Cells of a Markdown table row; "\|" is a literal bar inside a cell.
std::vector<std::string> split_row(std::string_view line) {
  std::vector<std::string> cells;
  std::string cell;
  for (std::size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '\\' && i + 1 < line.size() && line[i + 1] == '|') {
      cell += '|';
      ++i;
    } else if (line[i] == '|') {
      cells.push_back(trim(cell));
      cell.clear();
    } else {
      cell += line[i];
    }
  }
  cells.push_back(trim(cell));
  // A row starts and ends with a bar: drop the empty cells outside them.
  if (!cells.empty() && cells.front().empty()) cells.erase(cells.begin());
  if (!cells.empty() && cells.back().empty()) cells.pop_back();
  return cells;
}

// The attributes of one "attributes" cell (see the layout above).
std::vector<DocumentedAttribute> parse_attributes(std::string_view cell) {
  std::vector<DocumentedAttribute> out;
  std::size_t i = 0;
  int depth = 0;
  while (i < cell.size()) {
    const char ch = cell[i];
    if (ch == '(') ++depth;
    if (ch == ')') --depth;
    if (ch != '`') {
      ++i;
      continue;
    }
    const std::size_t close = cell.find('`', i + 1);
    if (close == std::string_view::npos) break;
    if (depth > 0) {  // a value inside a parenthesis, not a name
      i = close + 1;
      continue;
    }
    DocumentedAttribute a;
    a.name = std::string(cell.substr(i + 1, close - i - 1));
    // An optional unit, then the parenthesis that holds the default.
    std::size_t j = close + 1;
    while (j < cell.size() && j - close <= 12 && cell[j] != '(' && cell[j] != ',' && cell[j] != '`' && cell[j] != ';') ++j;
    if (j < cell.size() && cell[j] == '(') {
      int d = 0;
      bool quoted = false;
      std::size_t k = j;
      for (; k < cell.size(); ++k) {
        if (cell[k] == '`') quoted = !quoted;
        if (quoted) continue;
        if (cell[k] == '(') ++d;
        if (cell[k] == ')' && --d == 0) break;
      }
      a.has_group = true;
      a.group = std::string(cell.substr(j + 1, k - j - 1));
      i = k + 1;
    } else {
      i = close + 1;
    }
    out.push_back(std::move(a));
  }
  return out;
}

// Every `type` table of one Markdown text; rows of a type seen before add to it.
void read_tables(const std::string& text, const std::string& file, std::map<std::string, DocumentedType>& types) {
  std::istringstream in(text);
  std::string line;
  bool in_table = false;
  while (std::getline(in, line)) {
    if (line.rfind('|', 0) != 0) {
      in_table = false;
      continue;
    }
    const auto cells = split_row(line);
    if (!in_table) {
      in_table = !cells.empty() && cells.front() == "type";
      continue;
    }
    if (cells.size() < 2 || cells.front().rfind("---", 0) == 0) continue;
    const std::string& first = cells.front();
    if (first.size() < 2 || first.front() != '`') continue;
    const std::string name = first.substr(1, first.find('`', 1) - 1);
    DocumentedType& type = types[name];
    type.name = name;
    if (type.file.empty()) type.file = file;
    if (cells[1] == "—") continue;
    for (auto& a : parse_attributes(cells[1])) type.attributes.push_back(std::move(a));
  }
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::map<std::string, DocumentedType> documented_types() {
  std::map<std::string, DocumentedType> types;
  for (const std::string file : {"faults.md", "protocols.md"}) {
    read_tables(read_text(std::string(FAULTLINE_DOCS_DIR) + "/" + file), file, types);
  }
  return types;
}

// The default as the docs write it: a backticked text, or the token before ; : , or a space.
struct DocumentedDefault {
  bool quoted = false;
  std::string text;
};
DocumentedDefault documented_default(const std::string& group) {
  const std::string g = trim(group);
  if (!g.empty() && g.front() == '`') return {true, g.substr(1, g.find('`', 1) - 1)};
  return {false, g.substr(0, g.find_first_of(";:, "))};
}

bool has_value(const std::string& group, std::string_view value) {
  return group.find("`" + std::string(value) + "`") != std::string::npos;
}

// What is wrong with one attribute's documentation; empty when it agrees with the spec.
std::string check_attribute(const AttributeSpec& spec, const DocumentedAttribute& doc) {
  if (!doc.has_group) return "is documented without its default in parentheses";
  const DocumentedDefault d = documented_default(doc.group);
  switch (spec.kind) {
    case AttributeKind::integer:
    case AttributeKind::number: {
      char* end = nullptr;
      const double v = d.quoted || d.text.empty() ? 0 : std::strtod(d.text.c_str(), &end);
      if (d.quoted || d.text.empty() || *end != '\0') return "has default \"" + d.text + "\", which is not a number";
      if (v != spec.default_value)
        return "is documented with default " + d.text + " but the registry's is " + format_number(spec.default_value);
      return {};
    }
    case AttributeKind::text: {
      const std::string expected(spec.choices.empty() ? std::string_view{} : spec.choices.front());
      if (!d.quoted || d.text != expected) return "is documented with default `" + d.text + "` but the registry's is `" + expected + "`";
      for (auto choice : spec.choices) {
        if (!has_value(doc.group, choice)) return "does not list its allowed value `" + std::string(choice) + "`";
      }
      return {};
    }
    case AttributeKind::string:
      if (!d.quoted || d.text != spec.default_text)
        return "is documented with default `" + d.text + "` but the registry's is `" + std::string(spec.default_text) + "`";
      return {};
    case AttributeKind::json: {
      const std::string expected(spec.default_text.empty() ? "null" : spec.default_text);
      if (d.quoted || d.text != expected) return "is documented with default " + d.text + " but the registry's is " + expected;
      return {};
    }
  }
  return {};
}

// Registered attributes every protocol fault has, documented once in protocols.md's `match` section.
bool documented_once_for_all(const ToxicType& type, const AttributeSpec& spec) {
  return type.layer != Layer::bytes && spec.name == "match";
}

}  // namespace

TEST_CASE("the docs table reader finds attribute names and defaults and ignores values in parentheses") {
  const auto attrs = parse_attributes("`status` (503; 200–599), `mode` (`reset` or `close`), `delay` ms (1000), `rate`, `x` KB/s (0; K = 1000)");
  REQUIRE(attrs.size() == 5);
  CHECK(attrs[0].name == "status");
  CHECK(documented_default(attrs[0].group).text == "503");
  CHECK(attrs[1].name == "mode");
  CHECK(documented_default(attrs[1].group).quoted);
  CHECK(documented_default(attrs[1].group).text == "reset");
  CHECK(has_value(attrs[1].group, "close"));
  CHECK(documented_default(attrs[2].group).text == "1000");
  CHECK_FALSE(attrs[3].has_group);
  CHECK(attrs[4].name == "x");
  CHECK(documented_default(attrs[4].group).text == "0");

  std::map<std::string, DocumentedType> types;
  read_tables("| field | x |\n|---|---|\n| `method` | no |\n\n| type | attributes | does |\n|---|---|---|\n| `a` | — | x |\n"
              "| `b` | `n` (1) | y \\| z |\n| `b` (extended) | `m` (`p`, or `q`) | w |\n",
              "t.md", types);
  REQUIRE(types.size() == 2);
  CHECK(types["a"].attributes.empty());
  REQUIRE(types["b"].attributes.size() == 2);
  CHECK(types["b"].attributes[1].name == "m");

  const AttributeSpec choice{"m", AttributeKind::text, 0, {"p", "q", "r"}};
  CHECK(check_attribute(choice, types["b"].attributes[1]) == "does not list its allowed value `r`");
  const AttributeSpec number{"n", AttributeKind::integer, 2};
  CHECK(check_attribute(number, types["b"].attributes[0]) == "is documented with default 1 but the registry's is 2");
}

TEST_CASE("every registered fault type is documented with each attribute and its default") {
  const auto docs = documented_types();
  for (const ToxicType& type : ToxicRegistry::instance().types()) {
    const std::string name(type.name);
    auto found = docs.find(name);
    if (found == docs.end()) {
      FAIL_CHECK("type " << name << " is registered but has no row in a `type` table of docs/faults.md or docs/protocols.md");
      continue;
    }
    const DocumentedType& doc = found->second;
    for (const AttributeSpec& spec : type.attributes) {
      if (documented_once_for_all(type, spec)) continue;
      auto a = std::find_if(doc.attributes.begin(), doc.attributes.end(),
                            [&](const DocumentedAttribute& d) { return d.name == spec.name; });
      if (a == doc.attributes.end()) {
        FAIL_CHECK("type " << name << ": attribute " << spec.name << " is not documented in docs/" << doc.file);
        continue;
      }
      const std::string problem = check_attribute(spec, *a);
      if (!problem.empty()) FAIL_CHECK("type " << name << ": attribute " << spec.name << " " << problem << " (docs/" << doc.file << ")");
    }
  }
}

TEST_CASE("every documented fault type and attribute is registered") {
  const auto& registry = ToxicRegistry::instance();
  const auto docs = documented_types();
  CHECK(docs.size() >= registry.types().size());  // the reader found the tables at all
  for (const auto& [name, doc] : docs) {
    const ToxicType* type = registry.find(name);
    if (!type) {
      FAIL_CHECK("type " << name << " is documented in docs/" << doc.file << " but not registered");
      continue;
    }
    for (const DocumentedAttribute& a : doc.attributes) {
      auto spec = std::find_if(type->attributes.begin(), type->attributes.end(),
                               [&](const AttributeSpec& s) { return s.name == a.name; });
      if (spec == type->attributes.end())
        FAIL_CHECK("type " << name << ": docs/" << doc.file << " documents attribute " << a.name << ", which the registry does not have");
    }
  }
}

TEST_CASE("protocol faults share one documented match attribute") {
  const std::string protocols = read_text(std::string(FAULTLINE_DOCS_DIR) + "/protocols.md");
  CHECK(protocols.find("Every protocol fault takes an optional `match` object") != std::string::npos);
  for (const ToxicType& type : ToxicRegistry::instance().types()) {
    if (type.layer == Layer::bytes) continue;
    auto spec = std::find_if(type.attributes.begin(), type.attributes.end(), [](const AttributeSpec& s) { return s.name == "match"; });
    if (spec == type.attributes.end()) {
      FAIL_CHECK("type " << type.name << " is a protocol fault without a match attribute");
      continue;
    }
    CHECK(spec->default_text == "{}");
  }
}
