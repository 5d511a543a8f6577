// A private directory under $TMPDIR for the targets whose reader takes a path (journals,
// profiles) or writes files (recordings): made on first use, removed with its contents when
// the process exits. libFuzzer runs one input at a time, so one directory serves them all.
#pragma once
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace faultline::fuzz {

class ScratchDir {
 public:
  explicit ScratchDir(const char* name) {
    std::string tmpl = (std::filesystem::temp_directory_path() / (std::string("faultline-fuzz-") + name + "-XXXXXX")).string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  // Removes everything inside, keeps the directory.
  void empty() const {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(path_, ec)) std::filesystem::remove_all(entry.path(), ec);
  }

 private:
  std::filesystem::path path_;
};

}  // namespace faultline::fuzz
