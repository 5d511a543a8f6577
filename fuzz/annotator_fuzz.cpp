// Random bytes as the two directions of one recorded connection, for each protocol, fed to
// a pair of StreamAnnotators in random pieces the way a Recording feeds them. Whatever a
// peer sends must not crash the recorder, and redaction must keep every byte's place:
// the same number of bytes come out as went in, each annotation lies inside the bytes
// already fed, and no more than kMaxHeld bytes plus the last piece are ever held back.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "recorder/redaction.hpp"
#include "fuzz/check.hpp"

namespace {

using faultline::Protocol;
using faultline::Stream;
using faultline::rec::Annotation;
using faultline::rec::StreamAnnotator;

using faultline::fuzz::check;

struct Direction {
  explicit Direction(Protocol protocol, Stream stream, std::shared_ptr<faultline::rec::Redactor> redactor)
      : annotator(protocol, stream, std::move(redactor)) {}
  StreamAnnotator annotator;
  std::string pending;
  std::uint64_t offset = 0;  // stream offset of pending's first byte
  std::uint64_t fed = 0;
  std::vector<Annotation> notes;

  void take(std::size_t n) {
    check(n <= pending.size());
    pending.erase(0, n);
    offset += n;
  }
  void feed(const std::uint8_t* bytes, std::size_t n) {
    pending.append(reinterpret_cast<const char*>(bytes), n);
    fed += n;
    const std::size_t before = pending.size();
    const std::size_t final_bytes = annotator.process(pending, offset, notes);
    check(pending.size() == before);  // redaction rewrites in place, same length
    take(final_bytes);
    check(pending.size() <= StreamAnnotator::kMaxHeld + n);
    check_notes();
  }
  void finish() {
    const std::size_t before = pending.size();
    annotator.finish(pending, offset, notes);
    check(pending.size() == before);
    take(pending.size());
    check(offset == fed);
    check_notes();
  }
  void check_notes() {
    for (const auto& a : notes) check(a.offset + a.length <= fed && a.length <= fed);
    notes.clear();
  }
};

std::shared_ptr<faultline::rec::Redactor> make_redactor() {
  faultline::rec::RedactionRules rules;
  rules.headers = {"x-session"};
  rules.json_keys = {"secret"};
  rules.regexes = {"sk-[A-Za-z0-9]{8,}"};
  std::string error;
  auto redactor = faultline::rec::Redactor::make(std::string(32, 'k'), rules, error);
  check(redactor != nullptr);
  return redactor;
}

}  // namespace

// Input: byte 0 picks the protocol (and whether to redact); then control bytes, each
// followed by its piece: bit 0 the direction, the other bits the piece's length - 1.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  static const auto redactor = make_redactor();
  const Protocol protocol = static_cast<Protocol>(data[0] % 4);
  const auto use = (data[0] & 0x80) ? nullptr : redactor;
  Direction up(protocol, Stream::upstream, use);
  Direction down(protocol, Stream::downstream, use);
  StreamAnnotator::pair(up.annotator, down.annotator);
  std::size_t i = 1;
  while (i < size) {
    const std::uint8_t control = data[i++];
    const std::size_t n = std::min<std::size_t>((control >> 1) + 1u, size - i);
    ((control & 1) ? down : up).feed(data + i, n);
    i += n;
  }
  up.finish();
  down.finish();
  return 0;
}
