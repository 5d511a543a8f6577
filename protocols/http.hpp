// HTTP/1.1 message framing (requests and responses) on Boost.Beast's parser: heads,
// bodies (content-length, chunked, until close) and message ends, so keep-alive,
// pipelining, 100-continue and upgrades are followed without changing a byte.
#pragma once
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocols/framing.hpp"

namespace faultline::http {

struct Field {
  std::string name;
  std::string value;
};

struct Head {
  bool request = true;
  std::string method;  // requests
  std::string target;  // requests, as sent ("/v1/chat/completions?x=1")
  int status = 0;      // responses
  std::string reason;  // responses
  int version = 11;    // 10 or 11
  std::vector<Field> fields;

  // First field with this name (ASCII case-insensitive).
  std::optional<std::string_view> field(std::string_view name) const;
  // The target without its query string.
  std::string_view path() const;
};

// Case-insensitive ASCII comparison of header names.
bool iequals(std::string_view a, std::string_view b);

class Framer {
 public:
  explicit Framer(bool request);
  ~Framer();
  Framer(Framer&&) noexcept;
  Framer& operator=(Framer&&) noexcept;

  // Follows the FrameStep contract (protocols/framing.hpp): `head` once the whole head is
  // in (the head bytes are consumed with it), `body` for each piece of body payload,
  // `end` when the message is complete. Then the next message begins.
  FrameStep step(std::string_view data);
  // The peer closed its side. Ends a response whose body runs until close (returns true
  // when a message ended with it); false when nothing or a partial message was pending.
  bool finish();

  // Responses only: the request method this response answers, set before its first byte
  // (HEAD and CONNECT change what follows the head). Defaults to GET.
  void answering(std::string_view method);

  // Valid from `head` until the next message's head.
  const Head& head() const { return head_; }
  // True from `head` on when the body runs until the connection closes.
  bool body_until_close() const { return until_close_; }
  // True once a message that switches protocols ended (101 response, 2xx to CONNECT, a
  // request with Upgrade whose answer is unknown here is NOT upgraded): the bytes after
  // it are another protocol; callers pass them through.
  bool upgraded() const { return upgraded_; }
  // True between `head` and `end` (a message is under way).
  bool in_message() const { return in_message_; }
  std::string_view error() const { return error_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool request_;
  Head head_;
  bool until_close_ = false;
  bool upgraded_ = false;
  bool in_message_ = false;
  std::string error_;
};

// One message decoded whole, for callers that hold its bytes (a recorded exchange, a
// response read to its end): Framer's head, and its body with chunked framing removed.
struct Message {
  Head head;
  std::size_t head_size = 0;  // bytes before the body: the head through its blank line
  std::string body;           // the body payload (as much as `bytes` hold)
  // Where each piece of body payload starts: (offset in `body`, offset in `bytes`), so a
  // caller can map a decoded offset back to the bytes as sent.
  std::vector<std::pair<std::size_t, std::size_t>> pieces;
  bool chunked = false;       // Transfer-Encoding says chunked
  bool body_until_close = false;
  bool complete = false;      // the message ended inside `bytes`
};
// The first message of `bytes` (a request, or a response to `answering`); nullopt when its
// head is incomplete or not HTTP. Bytes after that message are ignored.
std::optional<Message> split_message(std::string_view bytes, bool request, std::string_view answering = "GET");
// The same for bytes whose kind is not known: a response when they start with "HTTP/".
std::optional<Message> split_message(std::string_view bytes);

}  // namespace faultline::http
