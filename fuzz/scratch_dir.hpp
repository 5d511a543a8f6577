// A private directory under $TMPDIR for the targets whose reader takes a path (journals,
// profiles) or writes files (recordings): made on first use, removed with its contents when
// the process exits. libFuzzer runs one input at a time, so one directory serves them all.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "fuzz/check.hpp"

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
  // Writes one input to `name` inside the directory (replacing what was there) for a reader
  // that takes a path; returns the path. Traps when the write fails.
  std::string write(const std::string& name, const std::uint8_t* data, std::size_t size) const {
    const std::string file = (path_ / name).string();
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    check(static_cast<bool>(out));
    return file;
  }
  // Removes everything inside, keeps the directory.
  void empty() const {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(path_, ec)) std::filesystem::remove_all(entry.path(), ec);
  }

 private:
  std::filesystem::path path_;
};

}  // namespace faultline::fuzz
