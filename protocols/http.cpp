#include "protocols/http.hpp"

#include <boost/beast/http/basic_parser.hpp>

#include <cstring>
#include <optional>
#include <utility>

namespace faultline::http {

namespace {

namespace bh = boost::beast::http;
using beast_sv = boost::beast::string_view;

// Big enough for heads with many cookies or long JWTs, small enough that a peer cannot
// make us hold an unbounded head.
constexpr std::size_t kHeaderLimit = 64 * 1024;

std::string_view sv(beast_sv s) { return {s.data(), s.size()}; }

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// Compared by value and category name, not by category address: in the final binary
// the proxy compiles Beast separately, so this header-only copy's category object may
// not be the one the parser's error codes point at.
bool is_need_more(const boost::beast::error_code& ec) {
  return ec.value() == static_cast<int>(bh::error::need_more) &&
         std::strcmp(ec.category().name(), "beast.http") == 0;
}

// What the parser callbacks learn, read back by the framer after each put().
struct Sink {
  Head head;
  bool header_done = false;
  bool finished = false;
  // Between chunks of a chunked body (the parser wants a chunk header or the last chunk).
  bool between_chunks = false;
  std::string_view piece;
};

template <bool isRequest>
class Parser final : public bh::basic_parser<isRequest> {
 public:
  explicit Parser(Sink& sink) : sink_(sink) {
    this->body_limit(boost::none);
    this->header_limit(static_cast<std::uint32_t>(kHeaderLimit));
    // Eager stays off while the head is read so put() stops right after the head; body
    // steps switch it on and a delivered piece switches it off again, which keeps every
    // put() to at most one event.
    this->eager(false);
  }

 private:
  void on_request_impl(bh::verb, beast_sv method, beast_sv target, int version,
                       boost::beast::error_code&) override {
    sink_.head.request = true;
    sink_.head.method = sv(method);
    sink_.head.target = sv(target);
    sink_.head.version = version;
  }

  void on_response_impl(int code, beast_sv reason, int version,
                        boost::beast::error_code&) override {
    sink_.head.request = false;
    sink_.head.status = code;
    sink_.head.reason = sv(reason);
    sink_.head.version = version;
  }

  void on_field_impl(bh::field, beast_sv name, beast_sv value,
                     boost::beast::error_code&) override {
    // Trailer fields arrive through here too; they are not part of the head.
    if (sink_.header_done) return;
    sink_.head.fields.push_back(Field{std::string(sv(name)), std::string(sv(value))});
  }

  void on_header_impl(boost::beast::error_code&) override {
    sink_.header_done = true;
    sink_.between_chunks = this->chunked();
  }

  void on_body_init_impl(const boost::optional<std::uint64_t>&,
                         boost::beast::error_code&) override {}

  std::size_t on_body_impl(beast_sv body, boost::beast::error_code&) override {
    deliver(body);
    return body.size();
  }

  void on_chunk_header_impl(std::uint64_t size, beast_sv, boost::beast::error_code&) override {
    if (size > 0) sink_.between_chunks = false;
  }

  std::size_t on_chunk_body_impl(std::uint64_t remain, beast_sv body,
                                 boost::beast::error_code&) override {
    if (remain == body.size()) sink_.between_chunks = true;
    deliver(body);
    return body.size();
  }

  void on_finish_impl(boost::beast::error_code&) override { sink_.finished = true; }

  void deliver(beast_sv body) {
    if (body.empty()) return;
    // Views point into the buffer given to put(), which is the caller's `data`.
    sink_.piece = sv(body);
    this->eager(false);
  }

  Sink& sink_;
};

}  // namespace

struct Framer::Impl {
  enum class Phase { idle, head, body, end_pending, error, upgraded };

  Phase phase = Phase::idle;
  Sink sink;
  std::optional<Parser<true>> request;
  std::optional<Parser<false>> response;
  // Head bytes the parser has taken while the head was incomplete. They are reported as
  // consumed only with `head`, so the caller presents them again; this skips them.
  std::size_t head_fed = 0;
  // The CRLF that ends a chunk's data was taken (and passed on) before Beast saw it; it is
  // put back in front of what Beast is given next.
  bool crlf_taken = false;
  std::string next_method = "GET";  // for the next final response
  std::string method = "GET";       // the one the current response answers

  void start(bool is_request) {
    sink = Sink{};
    head_fed = 0;
    crlf_taken = false;
    if (is_request) {
      request.emplace(sink);
    } else {
      method = next_method;
      response.emplace(sink);
      if (method == "HEAD") response->skip(true);
    }
    phase = Phase::head;
  }

  void reset_parser() {
    request.reset();
    response.reset();
  }

  template <class P>
  std::size_t put(P& p, std::string_view data, boost::beast::error_code& ec) {
    return p.put(boost::asio::const_buffer(data.data(), data.size()), ec);
  }

  std::size_t put(std::string_view data, boost::beast::error_code& ec) {
    return request ? put(*request, data, ec) : put(*response, data, ec);
  }

  bool done() const { return request ? request->is_done() : response->is_done(); }
  bool need_eof() const { return request ? request->need_eof() : response->need_eof(); }
  void set_eager(bool v) { request ? request->eager(v) : response->eager(v); }
};

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

std::optional<std::string_view> Head::field(std::string_view name) const {
  for (const auto& f : fields)
    if (iequals(f.name, name)) return std::string_view(f.value);
  return std::nullopt;
}

std::string_view Head::path() const {
  std::string_view t = target;
  return t.substr(0, t.find('?'));
}

Framer::Framer(bool request) : impl_(std::make_unique<Impl>()), request_(request) {}
Framer::~Framer() = default;
Framer::Framer(Framer&&) noexcept = default;
Framer& Framer::operator=(Framer&&) noexcept = default;

void Framer::answering(std::string_view method) { impl_->next_method = std::string(method); }

FrameStep Framer::step(std::string_view data) {
  Impl& m = *impl_;
  auto fail = [&](std::string message) {
    m.phase = Impl::Phase::error;
    m.reset_parser();
    error_ = std::move(message);
    in_message_ = false;
    return FrameStep{0, FrameEvent::error, {}};
  };
  auto end_message = [&](std::size_t consumed) {
    in_message_ = false;
    const bool connect_ok = !request_ && m.method == "CONNECT" && head_.status / 100 == 2;
    if (!request_ && (head_.status == 101 || connect_ok)) {
      upgraded_ = true;
      m.phase = Impl::Phase::upgraded;
    } else {
      m.phase = Impl::Phase::idle;
    }
    m.reset_parser();
    return FrameStep{consumed, FrameEvent::end, {}};
  };

  switch (m.phase) {
    case Impl::Phase::error:
      return {0, FrameEvent::error, {}};
    case Impl::Phase::upgraded:
      // Another protocol follows: every byte passes through unframed.
      return {data.size(), FrameEvent::none, {}};
    case Impl::Phase::end_pending:
      return end_message(0);
    case Impl::Phase::idle: {
      // Blank lines between messages (RFC 9112 2.2 lets a server ignore them before a
      // request line; some clients send one after a body).
      std::size_t blank = 0;
      while (blank < data.size() && (data[blank] == '\r' || data[blank] == '\n')) ++blank;
      if (blank > 0) return {blank, FrameEvent::none, {}};
      if (data.empty()) return {};
      m.start(request_);
      [[fallthrough]];
    }
    case Impl::Phase::head: {
      if (data.size() < m.head_fed) return fail("input shorter than the bytes already seen");
      const std::string_view rest = data.substr(m.head_fed);
      if (rest.empty()) return {};
      boost::beast::error_code ec;
      const std::size_t n = m.put(rest, ec);
      if (ec && !is_need_more(ec)) return fail(ec.message());
      m.head_fed += n;
      if (!m.sink.header_done) {
        if (data.size() >= kHeaderLimit) return fail("header too large");
        return {};
      }
      const std::size_t consumed = m.head_fed;
      head_ = std::move(m.sink.head);
      m.sink.head = Head{};
      in_message_ = true;
      until_close_ = m.need_eof();
      bool complete = m.done();
      if (!request_ && head_.status / 100 != 1) {
        if (m.method == "CONNECT" && head_.status / 100 == 2) {
          // The tunnel starts right after the head, whatever length fields it has.
          complete = true;
          until_close_ = false;
        }
        m.next_method = "GET";
      }
      m.phase = complete ? Impl::Phase::end_pending : Impl::Phase::body;
      return {consumed, FrameEvent::head, {}};
    }
    case Impl::Phase::body: {
      if (data.empty()) return {};
      // Beast takes a chunk's closing CRLF only together with the next chunk's size line.
      // Holding those two bytes back until then would hold the chunk itself back from
      // clients that read chunk by chunk (an SSE event would arrive one event late), so
      // they are taken at once and replayed to Beast in front of the next bytes.
      if (m.sink.between_chunks && !m.crlf_taken && data.size() >= 2 && data[0] == '\r' && data[1] == '\n') {
        m.crlf_taken = true;
        return {2, FrameEvent::none, {}};
      }
      std::string joined;
      std::string_view feed = data;
      std::size_t lead = 0;
      if (m.crlf_taken) {
        constexpr std::size_t kReplay = 4096;  // enough for a size line; the rest goes unjoined
        joined.reserve(2 + std::min(data.size(), kReplay));
        joined.append("\r\n").append(data.substr(0, std::min(data.size(), kReplay)));
        feed = joined;
        lead = 2;
      }
      // Beast asserts that it is given at least 5 bytes once it has seen the last chunk's
      // line ("0\r\n"), which a body whose only chunk is the last one breaks when the
      // bytes come in pieces. Every chunked body still has at least "0\r\n\r\n" to go
      // between chunks, so waiting for 5 bytes there never stalls a complete message.
      if (m.sink.between_chunks && feed.size() < 5) return {};
      m.sink.piece = {};
      m.set_eager(true);
      boost::beast::error_code ec;
      const std::size_t fed = m.put(feed, ec);
      if (ec && !is_need_more(ec)) return fail(ec.message());
      if (fed < lead) return {};  // Beast wants more than the replayed CRLF and what followed
      const std::size_t n = fed - lead;
      m.crlf_taken = false;
      std::string_view piece = m.sink.piece;
      if (lead && !piece.empty()) {
        // The piece lies in `joined`: point it at the same bytes of the caller's data.
        piece = data.substr(static_cast<std::size_t>(piece.data() - joined.data()) - lead, piece.size());
      }
      const bool complete = m.done();
      if (!piece.empty()) {
        if (complete) m.phase = Impl::Phase::end_pending;
        return {n, FrameEvent::body, piece};
      }
      if (complete) return end_message(n);
      return {n, FrameEvent::none, {}};
    }
  }
  return {};
}

bool Framer::finish() {
  Impl& m = *impl_;
  if (m.phase == Impl::Phase::end_pending) {
    step({});
    return true;
  }
  if (m.phase != Impl::Phase::body || !m.need_eof()) return false;
  boost::beast::error_code ec;
  if (m.response) m.response->put_eof(ec);
  if (ec || !m.done()) return false;
  m.phase = Impl::Phase::end_pending;
  step({});
  return true;
}

std::optional<Message> split_message(std::string_view bytes, bool request, std::string_view answering) {
  Framer framer(request);
  if (!request) framer.answering(answering);
  Message out;
  bool head_seen = false;
  std::size_t pos = 0;
  for (;;) {
    const FrameStep step = framer.step(bytes.substr(pos));
    const std::size_t at = pos;
    pos += step.consumed;
    if (step.event == FrameEvent::error) break;
    if (step.event == FrameEvent::head) {
      head_seen = true;
      out.head = framer.head();
      out.head_size = pos;
      out.body_until_close = framer.body_until_close();
      if (const auto te = out.head.field("transfer-encoding")) {
        std::string lowered(*te);
        for (char& c : lowered) c = lower(c);
        out.chunked = lowered.find("chunked") != std::string::npos;
      }
    } else if (step.event == FrameEvent::body) {
      const std::size_t raw = at + static_cast<std::size_t>(step.payload.data() - bytes.substr(at).data());
      out.pieces.emplace_back(out.body.size(), raw);
      out.body.append(step.payload);
    } else if (step.event == FrameEvent::end) {
      out.complete = head_seen;
      break;
    } else if (step.consumed == 0) {
      // Need more: with all the bytes there are given, a body until close ends here.
      if (head_seen && framer.finish()) out.complete = true;
      break;
    }
  }
  if (!head_seen) return std::nullopt;
  return out;
}

std::optional<Message> split_message(std::string_view bytes) {
  return split_message(bytes, bytes.substr(0, 5) != "HTTP/");
}

}  // namespace faultline::http
