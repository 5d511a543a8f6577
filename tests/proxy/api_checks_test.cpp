#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "proxy/api_checks.hpp"

using namespace faultline;
namespace fs = std::filesystem;

namespace {
struct TempDir {
  TempDir() {
    std::random_device rd;
    path = fs::temp_directory_path() / ("faultline-api-checks-" + std::to_string(rd()) + std::to_string(::getpid()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path path;
};
}  // namespace

TEST_CASE("names the routes cannot address are refused") {
  CHECK_FALSE(unaddressable_name("proxy", "kafka:9092"));
  CHECK_FALSE(unaddressable_name("proxy", "a b?c#d%e"));
  CHECK_FALSE(unaddressable_name("proxy", "..."));
  REQUIRE(unaddressable_name("proxy", "a/b"));
  CHECK(unaddressable_name("proxy", "a/b")->rfind("proxy name \"a/b\" cannot be used", 0) == 0);
  CHECK(unaddressable_name("toxic", "..")->rfind("toxic name \"..\" cannot be used", 0) == 0);
  CHECK(unaddressable_name("proxy", "."));
  CHECK(unaddressable_name("proxy", ""));
}

TEST_CASE("upstreams: host:port and http(s) URLs, nothing else") {
  for (const char* ok : {"127.0.0.1:6379", "localhost:1", "redis:65535", "[::1]:80", ":6379", "my_svc.ns:8080",
                         "https://api.example.com", "http://localhost:8080/v1", "https://[::1]:8443"}) {
    INFO(ok);
    CHECK_FALSE(check_upstream(ok));
  }
  CHECK(*check_upstream("127.0.0.1:99999") == "port 99999 is out of range (1 to 65535)");
  CHECK(*check_upstream("127.0.0.1:0") == "port 0 is out of range (1 to 65535)");
  CHECK(check_upstream("ftp://x")->rfind("scheme ftp:// is not supported", 0) == 0);
  CHECK(check_upstream("redis://x:6379")->rfind("scheme redis://", 0) == 0);
  CHECK(check_upstream("localhost")->rfind("missing port", 0) == 0);
  CHECK(check_upstream("::1:80")->find("brackets") != std::string::npos);
  CHECK(check_upstream("host:http")->find("not a number") != std::string::npos);
  CHECK(check_upstream("a b:80")->find("not a host name") != std::string::npos);
  CHECK(check_upstream("https://user:pw@host")->find("credentials") != std::string::npos);
  CHECK(check_upstream("http://:80"));
  CHECK(check_upstream("[zz]:80"));
}

TEST_CASE("origins: none, the API's own, or allowed") {
  const std::vector<std::string> none;
  CHECK(origin_allowed("", "127.0.0.1:8474", none));
  CHECK(origin_allowed("http://127.0.0.1:8474", "127.0.0.1:8474", none));
  CHECK(origin_allowed("http://LOCALHOST:8474", "localhost:8474", none));
  CHECK(origin_allowed("http://localhost", "localhost:80", none));
  CHECK_FALSE(origin_allowed("http://evil.example", "127.0.0.1:8474", none));
  CHECK_FALSE(origin_allowed("http://127.0.0.1:9999", "127.0.0.1:8474", none));
  CHECK_FALSE(origin_allowed("https://127.0.0.1:8474", "127.0.0.1:8474", none));
  CHECK_FALSE(origin_allowed("null", "127.0.0.1:8474", none));
  CHECK(origin_allowed("http://localhost:3000", "127.0.0.1:8474", {"http://localhost:3000"}));
  CHECK(origin_allowed("null", "127.0.0.1:8474", {"*"}));
}

TEST_CASE("bounded file reads refuse devices, FIFOs, directories and big files") {
  TempDir tmp;
  const std::string small = (tmp.path / "small.pem").string();
  std::ofstream(small) << "hello";
  std::string out, error;
  REQUIRE(read_bounded_file(small, 100, out, error));
  CHECK(out == "hello");
  CHECK_FALSE(read_bounded_file(small, 4, out, error));
  CHECK(error == "the file is 5 bytes, over the limit of 4 bytes");
  CHECK_FALSE(read_bounded_file("/dev/zero", 1 << 20, out, error));
  CHECK(error == "not a regular file (it is a character device)");
  const std::string fifo = (tmp.path / "fifo").string();
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_FALSE(read_bounded_file(fifo, 1 << 20, out, error));  // and does not wait for a writer
  CHECK(error == "not a regular file (it is a FIFO)");
  CHECK_FALSE(read_bounded_file(tmp.path.string(), 1 << 20, out, error));
  CHECK(error == "not a regular file (it is a directory)");
  CHECK_FALSE(read_bounded_file((tmp.path / "missing").string(), 1 << 20, out, error));
  CHECK(error == "No such file or directory");
}

TEST_CASE("journal trees: regular files only, bounded in total") {
  TempDir tmp;
  fs::create_directories(tmp.path / "rec" / "blobs");
  std::ofstream(tmp.path / "rec" / "index.json") << std::string(600, 'x');
  std::ofstream(tmp.path / "rec" / "blobs" / "b1") << std::string(600, 'y');
  const std::string rec = (tmp.path / "rec").string();
  CHECK_FALSE(check_bounded_tree(rec, 2000));
  CHECK(check_bounded_tree(rec, 1000)->find("add up to more than the limit of 1000 bytes") != std::string::npos);
  CHECK(check_bounded_tree((tmp.path / "rec" / "index.json").string(), 100)->find("over the limit of 100 bytes") !=
        std::string::npos);
  CHECK(*check_bounded_tree("/dev/zero", 1000) == "'/dev/zero' is a character device, not a journal file or a recording folder");
  fs::create_symlink("/dev/zero", tmp.path / "rec" / "blobs" / "b2");
  CHECK(check_bounded_tree(rec, 1 << 20)->find("b2' is a character device") != std::string::npos);
  CHECK_FALSE(check_bounded_tree((tmp.path / "missing").string(), 10));  // the loader reports it
}

TEST_CASE("recording dirs stay inside the recordings root") {
  TempDir tmp;
  const std::string root = (tmp.path / "recordings").string();
  auto r = resolve_recording_dir("run1", root);
  CHECK(r.error.empty());
  CHECK(r.path == root + "/run1");
  r = resolve_recording_dir(root + "/a/b", root);
  CHECK(r.error.empty());
  CHECK(r.path == root + "/a/b");
  CHECK(resolve_recording_dir("/etc/faultline", root).error.find("outside the recordings root") != std::string::npos);
  CHECK(resolve_recording_dir(root, root).error.find("outside the recordings root") != std::string::npos);
  CHECK(resolve_recording_dir(root + "x/y", root).error.find("outside the recordings root") != std::string::npos);
  CHECK(resolve_recording_dir("a/../../x", root).error.find("\"..\"") != std::string::npos);
  CHECK(resolve_recording_dir(root + "/../x", root).error.find("\"..\"") != std::string::npos);
  CHECK(resolve_recording_dir(std::string_view("ok\0/../../etc", 13), root).error == "must not contain a NUL byte");
  fs::create_directories(root);
  fs::create_directory_symlink(tmp.path, fs::path(root) / "out");
  CHECK(resolve_recording_dir("out/x", root).error.find("through a symlink") != std::string::npos);
}

TEST_CASE("a folder that is not empty needs append") {
  TempDir tmp;
  CHECK_FALSE(non_empty_dir((tmp.path / "missing").string()));
  CHECK_FALSE(non_empty_dir(tmp.path.string()));
  std::ofstream(tmp.path / "notes.txt") << "x";
  CHECK(non_empty_dir(tmp.path.string())->find("is not empty (holds notes.txt); give \"append\": true") != std::string::npos);
  std::ofstream(tmp.path / "index.json") << "{}";
  CHECK(*non_empty_dir(tmp.path.string()) == tmp.path.string() + ": already holds a recording (index.json)");
}

TEST_CASE("byte counts read as people read them") {
  CHECK(human_bytes(5) == "5 bytes");
  CHECK(human_bytes(1024) == "1 KiB");
  CHECK(human_bytes(4 << 20) == "4 MiB");
  CHECK(human_bytes(1536) == "1.5 KiB");
  CHECK(human_bytes(256ull << 20) == "256 MiB");
}

#include <thread>

#include "proxy/log_limit.hpp"

TEST_CASE("a log limiter lets one line a period through, counting the rest") {
  LogLimiter limiter(std::chrono::milliseconds(50));
  CHECK(limiter.admit() == 1);  // the first event is logged
  for (int i = 0; i < 99; ++i) CHECK(limiter.admit() == 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  CHECK(limiter.admit() == 100);  // the next line stands for the 99 held back and itself
  CHECK(limiter.admit() == 0);
}
