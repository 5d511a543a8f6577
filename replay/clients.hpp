// Internal to replay/ (includes Asio; never include it from a public header): the drill's
// network clients as Asio coroutines on the drill's one io_context — HTTP/1.1 via Beast
// with keep-alive, RESP over a plain socket framed by protocols/resp.hpp's ReplyFramer, and
// a TCP connect/exchange. Each returns an Observation; errors are values, never exceptions.
#pragma once
#include <string>
#include <vector>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "proxy/asio.hpp"
#include "replay/drill.hpp"
#include "replay/observation.hpp"

namespace faultline::drill {

// One HTTP/1.1 connection, reused while the server keeps it alive (a load worker holds
// one; probes use a fresh one each time so they see what a new client sees).
class HttpClient {
 public:
  explicit HttpClient(net::any_io_executor ex) : stream_(ex) {}
  awaitable<Observation> request(const HttpSpec& spec);
  void close();

 private:
  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  std::string host_, port_;
  bool open_ = false;
};

// One RESP connection: a command in, its reply out (RESP3 pushes are skipped).
class RespClient {
 public:
  explicit RespClient(net::any_io_executor ex) : stream_(ex) {}
  awaitable<Observation> call(const std::string& address, const std::vector<std::string>& command, double timeout);
  void close();

 private:
  boost::beast::tcp_stream stream_;
  std::string in_;
  std::string address_;
  bool open_ = false;
};

// Connect (and optionally send and wait for an expected reply), then close.
awaitable<Observation> tcp_exchange(const TcpSpec& spec);

// A call to a faultline control API: a fresh connection, FAULTLINE_TOKEN sent as a bearer
// token when set (as `faultline ctl` does).
struct ApiReply {
  int status = 0;     // 0: no reply
  std::string body;
  std::string error;  // transport error, or the API's {"error": ...} message
};
awaitable<ApiReply> api_call(const std::string& base_url, const std::string& method, const std::string& path,
                             const std::string& body = {}, double timeout = 5);

}  // namespace faultline::drill
