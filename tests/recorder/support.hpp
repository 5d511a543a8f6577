// Helpers for the recorder tests: temporary directories, file contents, and a driver that
// feeds an annotator the way a recording does (pending bytes, final prefix written).
#pragma once
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "protocols/jsonrpc.hpp"
#include "recorder/journal.hpp"
#include "recorder/redaction.hpp"

namespace faultline::test {

// A fresh directory under $TMPDIR, removed with everything in it at scope end.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "faultline-rec-XXXXXX").string();
    if (char* p = ::mkdtemp(tmpl.data())) path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void spit(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// Every byte of every file under `dir` (journals, blobs, index).
inline std::string all_files(const std::string& dir) {
  std::string out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) out += slurp(e.path().string());
  }
  return out;
}

inline std::shared_ptr<rec::Redactor> redactor(std::string key = "test-key", rec::RedactionRules rules = {}) {
  std::string error;
  auto r = rec::Redactor::make(std::move(key), rules, error);
  return r;
}

// One direction, driven like Recording drives it.
struct Annotated {
  std::string written;  // the final bytes, in order
  std::vector<rec::Annotation> notes;
  std::vector<std::size_t> finals;  // how many bytes each call made final

  std::vector<const rec::Annotation*> messages(const std::string& kind) const {
    std::vector<const rec::Annotation*> out;
    for (const auto& a : notes) {
      if (a.kind == rec::Annotation::Kind::message && a.fields.find("\"kind\":\"" + kind + "\"") != std::string::npos)
        out.push_back(&a);
    }
    return out;
  }
  std::vector<const rec::Annotation*> redactions() const {
    std::vector<const rec::Annotation*> out;
    for (const auto& a : notes) {
      if (a.kind == rec::Annotation::Kind::redaction) out.push_back(&a);
    }
    return out;
  }
};

class Feeder {
 public:
  Feeder(Protocol protocol, Stream direction, std::shared_ptr<rec::Redactor> r)
      : annotator_(protocol, direction, std::move(r)) {}
  rec::StreamAnnotator& annotator() { return annotator_; }

  void feed(const std::string& chunk) {
    pending_ += chunk;
    const std::size_t n = annotator_.process(pending_, offset_, result.notes);
    take(n);
  }
  void finish() {
    annotator_.finish(pending_, offset_, result.notes);
    take(pending_.size());
  }
  std::size_t pending() const { return pending_.size(); }

  Annotated result;

 private:
  void take(std::size_t n) {
    result.written.append(pending_, 0, n);
    result.finals.push_back(n);
    pending_.erase(0, n);
    offset_ += n;
  }
  rec::StreamAnnotator annotator_;
  std::string pending_;
  std::uint64_t offset_ = 0;
};

// The whole stream in the given pieces, then finish.
inline Annotated annotate(Protocol protocol, Stream direction, std::shared_ptr<rec::Redactor> r,
                          const std::vector<std::string>& chunks) {
  Feeder f(protocol, direction, std::move(r));
  for (const auto& c : chunks) f.feed(c);
  f.finish();
  return f.result;
}

// `text` split in two at `at`.
inline std::vector<std::string> split(const std::string& text, std::size_t at) {
  return {text.substr(0, at), text.substr(at)};
}

// A member of an annotation's fields, as canonical JSON text.
inline std::optional<std::string> field(const rec::Annotation& a, const std::string& name) {
  return jsonrpc::value_at("{" + a.fields + "}", name);
}

inline std::string quoted(const std::string& s) { return "\"" + s + "\""; }

}  // namespace faultline::test
