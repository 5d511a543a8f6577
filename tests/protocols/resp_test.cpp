#include <catch2/catch.hpp>

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "protocols/resp.hpp"

using namespace faultline;
using namespace faultline::resp;

namespace {

// What a caller sees at each event, with the stream offset (bytes consumed so far) where
// the event was reported: two feeds of the same bytes must agree on all of it.
struct CommandEvent {
  FrameEvent event;
  std::size_t offset;
  std::string name;
  std::string key;
  std::size_t arity;
  std::vector<std::string> args;
  bool operator==(const CommandEvent&) const = default;
};

struct ReplyEvent {
  FrameEvent event;
  std::size_t offset;
  char type;
  bool push;
  std::string line;
  bool operator==(const ReplyEvent&) const = default;
};

struct Fed {
  std::size_t peak_pending = 0;  // most bytes the caller held at once (after an append)
  std::size_t max_held = 0;      // most bytes left unconsumed when the framer wanted more
  bool errored = false;
};

// Drives a framer exactly as a proxy would: keep the unconsumed bytes, append what
// arrives, step until the framer needs more (consumed 0, no event) or fails.
template <class Framer, class Record>
Fed feed(Framer& framer, const std::vector<std::string>& pieces, Record record) {
  Fed fed;
  std::string pending;
  std::size_t offset = 0;
  for (const auto& piece : pieces) {
    pending += piece;
    fed.peak_pending = std::max(fed.peak_pending, pending.size());
    for (int guard = 0;; ++guard) {
      REQUIRE(guard < 1'000'000);
      const FrameStep s = framer.step(pending);
      REQUIRE(s.consumed <= pending.size());
      pending.erase(0, s.consumed);
      offset += s.consumed;
      if (s.event == FrameEvent::error) {
        fed.errored = true;
        return fed;
      }
      if (s.event == FrameEvent::none) {
        if (s.consumed == 0) break;
        continue;
      }
      record(s.event, offset);
    }
    fed.max_held = std::max(fed.max_held, pending.size());
  }
  return fed;
}

std::vector<CommandEvent> commands(const std::vector<std::string>& pieces, Fed* out = nullptr) {
  CommandFramer framer;
  std::vector<CommandEvent> events;
  Fed fed = feed(framer, pieces, [&](FrameEvent e, std::size_t offset) {
    events.push_back({e, offset, framer.name(), framer.key(), framer.arity(),
                      e == FrameEvent::end ? framer.args() : std::vector<std::string>{}});
  });
  if (out) *out = fed;
  return events;
}

std::vector<ReplyEvent> replies(const std::vector<std::string>& pieces, Fed* out = nullptr) {
  ReplyFramer framer;
  std::vector<ReplyEvent> events;
  Fed fed = feed(framer, pieces, [&](FrameEvent e, std::size_t offset) {
    events.push_back({e, offset, framer.type(), framer.is_push(), framer.line()});
  });
  if (out) *out = fed;
  return events;
}

std::vector<std::string> one_piece(const std::string& s) { return {s}; }

std::vector<std::string> bytewise(const std::string& s) {
  std::vector<std::string> out;
  for (char c : s) out.emplace_back(1, c);
  return out;
}

std::vector<std::string> split_at(const std::string& s, std::size_t at) {
  return {s.substr(0, at), s.substr(at)};
}

std::vector<std::string> pieces_of(const std::string& s, std::size_t size) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < s.size(); i += size) out.push_back(s.substr(i, size));
  return out;
}

std::string bulk(std::string_view s) {
  return "$" + std::to_string(s.size()) + "\r\n" + std::string(s) + "\r\n";
}

std::string command(const std::vector<std::string>& words) {
  std::string out = "*" + std::to_string(words.size()) + "\r\n";
  for (const auto& w : words) out += bulk(w);
  return out;
}

// Every way of cutting the stream (bytewise, and in two at every position) yields the
// same events as the whole buffer at once.
void check_commands_split_everywhere(const std::string& wire) {
  const auto whole = commands(one_piece(wire));
  CHECK(commands(bytewise(wire)) == whole);
  for (std::size_t i = 0; i <= wire.size(); ++i) {
    INFO("split at " << i);
    CHECK(commands(split_at(wire, i)) == whole);
  }
}

void check_replies_split_everywhere(const std::string& wire) {
  const auto whole = replies(one_piece(wire));
  CHECK(replies(bytewise(wire)) == whole);
  for (std::size_t i = 0; i <= wire.size(); ++i) {
    INFO("split at " << i);
    CHECK(replies(split_at(wire, i)) == whole);
  }
}

// One complete top-level reply, also when split at every byte: exactly one end, at its
// last byte, with this type.
void check_single_reply(const std::string& wire, char type, std::string line = "") {
  INFO("reply " << wire);
  const auto events = replies(one_piece(wire));
  REQUIRE(events.size() == 1);
  CHECK(events[0].event == FrameEvent::end);
  CHECK(events[0].offset == wire.size());
  CHECK(events[0].type == type);
  CHECK(events[0].push == (type == '>'));
  CHECK(events[0].line == line);
  check_replies_split_everywhere(wire);
}

bool command_fails(const std::vector<std::string>& pieces) {
  Fed fed;
  commands(pieces, &fed);
  return fed.errored;
}

bool reply_fails(const std::string& wire) {
  Fed fed;
  replies(one_piece(wire), &fed);
  return fed.errored;
}

}  // namespace

// ---- commands --------------------------------------------------------------------------

TEST_CASE("resp: SET with 3 arguments reports head after the key, then end") {
  const std::string wire = command({"SET", "thread:x", "hello"});
  const auto events = commands(one_piece(wire));
  REQUIRE(events.size() == 2);
  CHECK(events[0].event == FrameEvent::head);
  CHECK(events[0].name == "SET");
  CHECK(events[0].key == "thread:x");
  CHECK(events[0].arity == 3);
  CHECK(events[0].offset == std::string("*3\r\n$3\r\nSET\r\n$8\r\nthread:x\r\n").size());
  CHECK(events[1].event == FrameEvent::end);
  CHECK(events[1].offset == wire.size());
  CHECK(events[1].args == std::vector<std::string>{"SET", "thread:x", "hello"});
  check_commands_split_everywhere(wire);
}

TEST_CASE("resp: the command name is upper-cased, the key kept as sent") {
  const auto events = commands(one_piece(command({"get", "Thread:ABC"})));
  REQUIRE(events.size() == 2);
  CHECK(events[0].name == "GET");
  CHECK(events[0].key == "Thread:ABC");
  CHECK(events[1].args == std::vector<std::string>{"get", "Thread:ABC"});
}

TEST_CASE("resp: pipelined commands in one buffer each get head then end") {
  const std::string wire = command({"SET", "a", "1"}) + command({"GET", "a"}) +
                           command({"PING"}) + command({"DEL", "a", "b", "c"});
  const auto events = commands(one_piece(wire));
  REQUIRE(events.size() == 8);
  const std::vector<std::string> names = {"SET", "GET", "PING", "DEL"};
  for (std::size_t i = 0; i < 4; ++i) {
    CHECK(events[2 * i].event == FrameEvent::head);
    CHECK(events[2 * i].name == names[i]);
    CHECK(events[2 * i + 1].event == FrameEvent::end);
    CHECK(events[2 * i + 1].name == names[i]);
  }
  CHECK(events[2].key == "a");
  CHECK(events[4].key == "");  // PING has no key: head once the command is complete...
  CHECK(events[4].offset == events[5].offset);  // ...and end follows with nothing consumed
  CHECK(events[5].arity == 1);
  CHECK(events[6].arity == 4);
  CHECK(events[7].args == std::vector<std::string>{"DEL", "a", "b", "c"});
  CHECK(events[7].offset == wire.size());
  check_commands_split_everywhere(wire);
}

TEST_CASE("resp: a 1 MiB value fed in 1000-byte pieces never makes the caller hold it") {
  const std::string value(1024 * 1024, 'v');
  const std::string wire = command({"SET", "big", value}) + command({"GET", "big"});
  Fed fed;
  const auto events = commands(pieces_of(wire, 1000), &fed);
  REQUIRE(events.size() == 4);
  CHECK(events[0].event == FrameEvent::head);
  CHECK(events[0].key == "big");
  CHECK(events[1].event == FrameEvent::end);
  CHECK(events[1].offset == wire.size() - command({"GET", "big"}).size());
  REQUIRE(events[1].args.size() == 3);
  CHECK(events[1].args[2] == value.substr(0, CommandFramer::max_kept_arg_bytes));
  CHECK(events[3].name == "GET");
  CHECK(fed.max_held <= 64);         // at most a partial header line is left over
  CHECK(fed.peak_pending <= 1064);   // one piece plus that
}

TEST_CASE("resp: the head of a big SET comes before its value has arrived") {
  const std::string head = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\n";
  CommandFramer framer;
  auto s = framer.step(head);
  CHECK(s.event == FrameEvent::head);
  CHECK(s.consumed == head.size() - 6);
  CHECK(framer.name() == "SET");
  s = framer.step("$100\r\n" + std::string(40, 'x'));
  CHECK(s.event == FrameEvent::none);
  CHECK(s.consumed == 46);
  s = framer.step(std::string(60, 'x') + "\r");
  CHECK(s.event == FrameEvent::none);
  CHECK(s.consumed == 61);
  s = framer.step("\n");
  CHECK(s.event == FrameEvent::end);
  CHECK(s.consumed == 1);
}

TEST_CASE("resp: bytes before head are held, so the head step hands over the whole command so far") {
  const std::string wire = command({"GET", "thread:1"});
  CommandFramer framer;
  std::string pending;
  for (std::size_t i = 0; i + 1 < wire.size(); ++i) {
    pending += wire[i];
    const FrameStep s = framer.step(pending);
    CHECK(s.consumed == 0);
    CHECK(s.event == FrameEvent::none);
  }
  pending += wire.back();
  FrameStep s = framer.step(pending);
  CHECK(s.event == FrameEvent::head);
  CHECK(s.consumed == wire.size());
  CHECK(framer.key() == "thread:1");
  s = framer.step("");
  CHECK(s.event == FrameEvent::end);
  CHECK(s.consumed == 0);
}

TEST_CASE("resp: a key over 64 KiB is consumed in pieces before head, and kept as 4 KiB") {
  const std::string key(70000, 'k');
  const std::string wire = command({"GET", key}) + command({"PING"});
  Fed fed;
  const auto events = commands(pieces_of(wire, 1000), &fed);
  REQUIRE(events.size() == 4);
  CHECK(events[0].event == FrameEvent::head);
  CHECK(events[0].key == key.substr(0, 4096));
  CHECK(events[1].offset == command({"GET", key}).size());
  CHECK(events[2].name == "PING");
  CHECK(fed.max_held <= 64 * 1024);
  CHECK(commands(bytewise(wire)) == events);
}

TEST_CASE("resp: inline commands") {
  auto events = commands(one_piece("PING\r\n"));
  REQUIRE(events.size() == 2);
  CHECK(events[0].event == FrameEvent::head);
  CHECK(events[0].name == "PING");
  CHECK(events[0].key == "");
  CHECK(events[0].arity == 1);
  CHECK(events[1].event == FrameEvent::end);
  CHECK(events[1].offset == 6);

  events = commands(one_piece("set a b\n"));
  REQUIRE(events.size() == 2);
  CHECK(events[0].name == "SET");
  CHECK(events[0].key == "a");
  CHECK(events[0].arity == 3);
  CHECK(events[1].args == std::vector<std::string>{"set", "a", "b"});
  CHECK(events[1].offset == 8);

  check_commands_split_everywhere("PING\r\nSET a b\nGET  \t a\r\n");
}

TEST_CASE("resp: inline quoting follows Redis' sdssplitargs") {
  const auto events = commands(one_piece("SET \"a b\" 'it\\'s' \"\\x41\\n\\\"\"\r\n"));
  REQUIRE(events.size() == 2);
  CHECK(events[0].key == "a b");
  CHECK(events[1].args == std::vector<std::string>{"SET", "a b", "it's", "A\n\""});
  CHECK(command_fails({"SET \"a b\r\n"}));     // unbalanced
  CHECK(command_fails({"SET \"a\"b c\r\n"}));  // closing quote must end the word
  CHECK(command_fails({std::string("GET a\0b\r\n", 9)}));
}

TEST_CASE("resp: empty inline lines and *0 are skipped silently") {
  const std::string wire = "\r\n\n   \r\n*0\r\nPING\r\n\r\n";
  const auto events = commands(one_piece(wire));
  REQUIRE(events.size() == 2);
  CHECK(events[0].name == "PING");
  CHECK(events[1].event == FrameEvent::end);
  CHECK(events[1].offset == wire.size() - 2);
  CommandFramer framer;
  auto s = framer.step("\r\nPING\r\n");
  CHECK(s.consumed == 2);
  CHECK(s.event == FrameEvent::none);
  check_commands_split_everywhere(wire);
}

TEST_CASE("resp: a MULTI/EXEC transaction is a sequence of ordinary commands") {
  const std::string wire = command({"MULTI"}) + command({"SET", "k", "1"}) +
                           command({"INCR", "k"}) + "EXEC\r\n";
  const auto events = commands(one_piece(wire));
  std::vector<std::string> heads;
  for (const auto& e : events) {
    if (e.event == FrameEvent::head) heads.push_back(e.name);
  }
  CHECK(heads == std::vector<std::string>{"MULTI", "SET", "INCR", "EXEC"});
  CHECK(events.size() == 8);
  check_commands_split_everywhere(wire);
}

TEST_CASE("resp: AUTH and HELLO arguments are captured") {
  auto events = commands(one_piece(command({"AUTH", "user", "s3cret"})));
  REQUIRE(events.size() == 2);
  CHECK(events[1].args == std::vector<std::string>{"AUTH", "user", "s3cret"});
  events = commands(one_piece("AUTH pw\r\n"));
  REQUIRE(events.size() == 2);
  CHECK(events[0].key == "pw");
  events = commands(one_piece(command({"HELLO", "3", "AUTH", "default", "pw", "SETNAME", "me"})));
  REQUIRE(events.size() == 2);
  CHECK(events[1].args.size() == 7);
  CHECK(events[1].args[4] == "pw");
}

TEST_CASE("resp: only 64 arguments are kept, each up to 4 KiB, arity counts them all") {
  std::vector<std::string> words = {"MSET"};
  for (int i = 0; i < 99; ++i) words.push_back("k" + std::to_string(i));
  words[1] = std::string(5000, 'K');
  const auto events = commands(one_piece(command(words)));
  REQUIRE(events.size() == 2);
  CHECK(events[0].arity == 100);
  CHECK(events[0].key == std::string(4096, 'K'));
  CHECK(events[1].args.size() == 64);
  CHECK(events[1].args[63] == "k62");
}

TEST_CASE("resp: malformed commands are errors, and the framer stays failed") {
  CHECK(command_fails({"*abc\r\n"}));
  CHECK(command_fails({"*3\r\n$-5\r\n"}));
  CHECK(command_fails({"*-1\r\n"}));
  CHECK(command_fails({"*01\r\n"}));
  CHECK(command_fails({"*+1\r\n"}));
  CHECK(command_fails({"*1048577\r\n"}));
  CHECK_FALSE(command_fails({"*1048576\r\n"}));
  CHECK(command_fails({"*1\r\n$536870913\r\n"}));
  CHECK_FALSE(command_fails({"*1\r\n$536870912\r\n"}));
  CHECK(command_fails({"*2\r\n:1\r\n"}));
  CHECK(command_fails({"*1\r\n$3\r\nGETxx"}));
  CHECK(command_fails({"*1\r\n$3\r\nGET\n"}));
  CHECK(command_fails({"*1\r\n$3\r\nGET\r\r"}));
  CHECK(command_fails({"*1\r\n$\r\n"}));
  CHECK(command_fails({"*1\rX"}));

  // A bad header is noticed byte by byte, without waiting for its line to end.
  CHECK(command_fails(bytewise("*1x")));
  CHECK(command_fails(bytewise("*1\r\n$99999999999999999999")));

  // An inline line without a newline may grow to 64 KiB, not more.
  CHECK_FALSE(command_fails(pieces_of(std::string(64 * 1024, 'a'), 1000)));
  CHECK(command_fails(pieces_of(std::string(64 * 1024 + 1, 'a'), 1000)));

  CommandFramer framer;
  auto s = framer.step("*abc\r\n");
  CHECK(s.event == FrameEvent::error);
  CHECK(s.consumed == 0);  // an error consumes nothing: the rest passes through as bytes
  CHECK_FALSE(framer.error().empty());
  for (int i = 0; i < 3; ++i) {
    s = framer.step("PING\r\n");
    CHECK(s.event == FrameEvent::error);
    CHECK(s.consumed == 0);
  }
}

TEST_CASE("resp: an error after good commands keeps their events") {
  const auto events = commands(one_piece(command({"GET", "a"}) + "*1\r\n$x"));
  REQUIRE(events.size() == 2);
  CHECK(events[1].event == FrameEvent::end);
}

// ---- replies ---------------------------------------------------------------------------

TEST_CASE("resp: RESP2 replies, each split at every byte") {
  check_single_reply("+OK\r\n", '+', "OK");
  check_single_reply("-ERR x\r\n", '-', "ERR x");
  check_single_reply(":1\r\n", ':');
  check_single_reply(":-42\r\n", ':');
  check_single_reply("$-1\r\n", '$');
  check_single_reply("$5\r\nhello\r\n", '$');
  check_single_reply("$0\r\n\r\n", '$');
  check_single_reply("$4\r\n\r\n\r\n\r\n", '$');  // CRLF inside a payload is payload
  check_single_reply("*-1\r\n", '*');
  check_single_reply("*0\r\n", '*');
  check_single_reply("*2\r\n$3\r\nfoo\r\n$-1\r\n", '*');
  check_single_reply("*2\r\n*2\r\n:1\r\n:2\r\n*3\r\n+a\r\n*0\r\n*1\r\n-ERR in\r\n", '*');
}

TEST_CASE("resp: RESP3 replies, each split at every byte") {
  check_single_reply("_\r\n", '_');
  check_single_reply("#t\r\n", '#');
  check_single_reply(",3.14\r\n", ',');
  check_single_reply(",-inf\r\n", ',');
  check_single_reply("(3492890328409238509324850943850943825024385\r\n", '(');
  check_single_reply("=15\r\ntxt:Some string\r\n", '=');
  check_single_reply("!21\r\nSYNTAX invalid syntax\r\n", '!');
  check_single_reply("%2\r\n+first\r\n:1\r\n+second\r\n%1\r\n+x\r\n~0\r\n", '%');
  check_single_reply("~3\r\n+orange\r\n+apple\r\n#f\r\n", '~');
  check_single_reply(">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n", '>');
  check_single_reply("%0\r\n", '%');
  // An attribute precedes the reply it describes: one reply, of the described type.
  check_single_reply("|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n"
                     "*2\r\n:2039123\r\n:9543892\r\n",
                     '*');
  check_single_reply("|1\r\n+ttl\r\n:3\r\n+OK\r\n", '+', "OK");
  check_single_reply("|0\r\n:7\r\n", ':');
  // Attributes inside aggregates are not elements of them.
  check_single_reply("*2\r\n:1\r\n|1\r\n+a\r\n+b\r\n:2\r\n", '*');
  check_single_reply("*1\r\n|1\r\n*1\r\n+a\r\n+b\r\n:2\r\n", '*');
}

TEST_CASE("resp: pipelined replies are counted one by one, pushes flagged") {
  const std::string wire =
      "+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n:1\r\n$-1\r\n"
      ">3\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n$1\r\nx\r\n"
      "$5\r\nhello\r\n-LOADING Redis is loading the dataset in memory\r\n|1\r\n+a\r\n+b\r\n:1\r\n";
  const auto events = replies(one_piece(wire));
  REQUIRE(events.size() == 8);
  const std::string types = "++" "+*>$-:";
  for (std::size_t i = 0; i < events.size(); ++i) {
    CHECK(events[i].event == FrameEvent::end);
    CHECK(events[i].type == types[i]);
    CHECK(events[i].push == (i == 4));
  }
  CHECK(events[1].line == "QUEUED");
  CHECK(events[6].line == "LOADING Redis is loading the dataset in memory");
  CHECK(events[7].offset == wire.size());
  check_replies_split_everywhere(wire);
}

TEST_CASE("resp: a large bulk reply is consumed in pieces") {
  const std::string wire = "$" + std::to_string(1 << 20) + "\r\n" + std::string(1 << 20, 'z') +
                           "\r\n+OK\r\n";
  Fed fed;
  const auto events = replies(pieces_of(wire, 1000), &fed);
  REQUIRE(events.size() == 2);
  CHECK(events[0].type == '$');
  CHECK(events[1].line == "OK");
  CHECK(fed.max_held <= 64);
}

TEST_CASE("resp: a long error line is kept up to 4 KiB and consumed in pieces") {
  const std::string text = "ERR " + std::string(10000, 'e');
  Fed fed;
  const auto events = replies(pieces_of("-" + text + "\r\n", 100), &fed);
  REQUIRE(events.size() == 1);
  CHECK(events[0].line == text.substr(0, 4096));
  CHECK(fed.max_held == 0);
}

TEST_CASE("resp: nesting is capped at 1024 levels") {
  std::string ok;
  for (int i = 0; i < 1024; ++i) ok += "*1\r\n";
  ok += ":1\r\n";
  const auto events = replies(one_piece(ok));
  REQUIRE(events.size() == 1);
  CHECK(events[0].offset == ok.size());
  CHECK(reply_fails("*1\r\n" + ok));
}

TEST_CASE("resp: malformed replies are errors") {
  CHECK(reply_fails("?x\r\n"));
  CHECK(reply_fails("$5\r\nhelloXX"));
  CHECK(reply_fails("$-2\r\n"));
  CHECK(reply_fails("*-2\r\n"));
  CHECK(reply_fails("|-1\r\n"));
  CHECK(reply_fails("$?\r\n"));  // RESP3 streamed strings: Redis never sends them
  CHECK(reply_fails(":abc\r\n"));
  CHECK(reply_fails(":\r\n"));
  CHECK(reply_fails(":-\r\n"));
  CHECK(reply_fails("#x\r\n"));
  CHECK(reply_fails("#tt\r\n"));
  CHECK(reply_fails("_x\r\n"));
  CHECK(reply_fails("+OK\n"));
  CHECK(reply_fails("+OK\rX"));
  CHECK(reply_fails("=3\r\ntxt\r\n"));
  CHECK(reply_fails("=5\r\ntxt-x\r\n"));
  CHECK(reply_fails("$01\r\n"));

  ReplyFramer framer;
  auto s = framer.step("+OK\r\n?");
  CHECK(s.event == FrameEvent::end);
  s = framer.step("?");
  CHECK(s.event == FrameEvent::error);
  CHECK(s.consumed == 0);
  CHECK(framer.step("+OK\r\n").event == FrameEvent::error);
}

TEST_CASE("resp: error_reply writes an error line") {
  CHECK(error_reply("LOADING Redis is loading the dataset in memory") ==
        "-LOADING Redis is loading the dataset in memory\r\n");
  CHECK(error_reply("") == "-\r\n");
}

// ---- glob ------------------------------------------------------------------------------

TEST_CASE("resp: glob patterns as Redis matches keys") {
  CHECK(glob_match("thread:*", "thread:1234-abcd"));
  CHECK(glob_match("thread:*", "thread:"));
  CHECK_FALSE(glob_match("thread:*", "threads:1"));
  CHECK_FALSE(glob_match("thread:*", "Thread:1"));  // case-sensitive
  CHECK(glob_match("*", "anything"));
  CHECK(glob_match("*", ""));
  CHECK(glob_match("", ""));
  CHECK_FALSE(glob_match("", "a"));
  CHECK(glob_match("h?llo", "hello"));
  CHECK(glob_match("h?llo", "hallo"));
  CHECK_FALSE(glob_match("h?llo", "hllo"));
  CHECK(glob_match("h[ae]llo", "hello"));
  CHECK(glob_match("h[ae]llo", "hallo"));
  CHECK_FALSE(glob_match("h[ae]llo", "hillo"));
  CHECK(glob_match("h[^e]llo", "hallo"));
  CHECK_FALSE(glob_match("h[^e]llo", "hello"));
  CHECK(glob_match("h[a-b]llo", "hbllo"));
  CHECK(glob_match("h[b-a]llo", "hallo"));  // reversed ranges are swapped
  CHECK_FALSE(glob_match("h[a-b]llo", "hcllo"));
  CHECK(glob_match("a\\*b", "a*b"));
  CHECK_FALSE(glob_match("a\\*b", "axb"));
  CHECK(glob_match("a[\\]]b", "a]b"));
  CHECK(glob_match("a\\", "a\\"));   // a trailing backslash is a literal
  CHECK(glob_match("a[bc", "ab"));   // an unclosed class runs to the end
  CHECK(glob_match("a[b-]", "a]"));  // Redis reads "b-]" as a range
  CHECK(glob_match("*:*:*", "a:b:c"));
  CHECK(glob_match("**a**", "xxa"));
  CHECK_FALSE(glob_match("*a", "b"));
  CHECK(glob_match("*?", "x"));
  CHECK_FALSE(glob_match("*?", ""));
  CHECK(glob_match("user:[0-9]*:name", "user:42:name"));
}

TEST_CASE("resp: pathological glob patterns finish fast") {
  std::string pattern;
  for (int i = 0; i < 50; ++i) pattern += "a*";
  pattern += "b";
  const std::string text(20000, 'a');
  const auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(glob_match(pattern, text));
  CHECK(glob_match(pattern, text + "b"));
  CHECK_FALSE(glob_match(std::string(1000, '*') + "b", text));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(elapsed < std::chrono::seconds(1));
}

TEST_CASE("resp: parse_value decodes one whole reply into a tree") {
  const auto simple = parse_value("+PONG\r\n");
  REQUIRE(simple);
  CHECK(simple->type == '+');
  CHECK(simple->text == "PONG");
  const auto bulk = parse_value("$5\r\nhel\r\n\r\n");
  REQUIRE(bulk);
  CHECK(bulk->text == "hel\r\n");
  const auto null_bulk = parse_value("$-1\r\n");
  REQUIRE(null_bulk);
  CHECK(null_bulk->null);
  CHECK(parse_value("_\r\n")->null);
  const auto verbatim = parse_value("=8\r\ntxt:abcd\r\n");
  REQUIRE(verbatim);
  CHECK(verbatim->text == "txt:abcd");

  const auto nested = parse_value("*3\r\n$1\r\na\r\n*2\r\n:1\r\n*-1\r\n%1\r\n+k\r\n_\r\n");
  REQUIRE(nested);
  REQUIRE(nested->elements.size() == 3);
  CHECK(nested->elements[0].text == "a");
  REQUIRE(nested->elements[1].elements.size() == 2);
  CHECK(nested->elements[1].elements[0].text == "1");
  CHECK(nested->elements[1].elements[1].null);
  REQUIRE(nested->elements[2].elements.size() == 2);
  CHECK(nested->elements[2].elements[0].text == "k");
  CHECK(nested->elements[2].elements[1].null);
}

TEST_CASE("resp: parse_value leaves attributes out at every depth") {
  const auto top = parse_value("|1\r\n+ttl\r\n:3\r\n+OK\r\n");
  REQUIRE(top);
  CHECK(top->type == '+');
  CHECK(top->text == "OK");
  const auto inner = parse_value("*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n");
  REQUIRE(inner);
  REQUIRE(inner->elements.size() == 2);
  CHECK(inner->elements[0].text == "1");
  CHECK(inner->elements[1].text == "2");
}

TEST_CASE("resp: parse_value refuses anything but exactly one valid reply") {
  CHECK_FALSE(parse_value(""));
  CHECK_FALSE(parse_value("+PONG\r\nextra"));
  CHECK_FALSE(parse_value("+PONG\r\n+PONG\r\n"));
  CHECK_FALSE(parse_value("$5\r\nab\r\n"));
  CHECK_FALSE(parse_value("*2\r\n:1\r\n"));
  CHECK_FALSE(parse_value(":abc\r\n"));
  CHECK_FALSE(parse_value("?\r\n"));
}

namespace {
std::vector<std::string> spanned(std::string_view bytes) {
  std::vector<std::string> out;
  for (const auto& s : command_args(bytes)) out.emplace_back(bytes.substr(s.offset, s.length));
  return out;
}
}  // namespace

TEST_CASE("resp: command_args finds each argument's bytes in an array command") {
  using V = std::vector<std::string>;
  CHECK(spanned("*2\r\n$4\r\nAUTH\r\n$7\r\nhunter2\r\n") == V{"AUTH", "hunter2"});
  // Only the first command: the next one's arguments are not this one's.
  CHECK(spanned("*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n") == V{"PING"});
  // Cut off: the last argument is cut to the bytes there are, a missing one is not listed.
  CHECK(spanned("*3\r\n$4\r\nAUTH\r\n$4\r\nuser\r\n$7\r\nhun") == V{"AUTH", "user", "hun"});
  CHECK(spanned("*2\r\n$4\r\nAUTH\r\n$7") == V{"AUTH"});
  CHECK(spanned("").empty());
  CHECK(spanned("*x\r\n").empty());
}

TEST_CASE("resp: command_args finds words of an inline command as written") {
  using V = std::vector<std::string>;
  CHECK(spanned("AUTH  hunter2\r\n") == V{"AUTH", "hunter2"});
  // A quoted word: its bytes inside the quotes, escapes as written.
  CHECK(spanned("AUTH \"hun ter\\x41\" 'x'\r\n") == V{"AUTH", "hun ter\\x41", "x"});
  // No line end yet, or a quote still open: read as if the line ended with the bytes.
  CHECK(spanned("AUTH hunter2") == V{"AUTH", "hunter2"});
  CHECK(spanned("AUTH \"hunter2") == V{"AUTH", "hunter2"});
}

TEST_CASE("resp: spans place arguments across steps and pieces") {
  CommandFramer framer;
  framer.keep_spans(true);
  const std::string big(70 * 1024, 'k');
  const std::string command = "*3\r\n$3\r\nSET\r\n$" + std::to_string(big.size()) + "\r\n" + big + "\r\n$1\r\nv\r\n";
  // The bytes arrive 1000 at a time, so the huge key is consumed in pieces before `head`.
  std::size_t pos = 0, arrived = 0;
  for (int guard = 0; guard < 10000 && pos < command.size(); ++guard) {
    arrived = std::min(command.size(), arrived + 1000);
    for (;;) {
      const auto step = framer.step(std::string_view(command).substr(pos, arrived - pos));
      pos += step.consumed;
      if (step.consumed == 0 && step.event == FrameEvent::none) break;
      if (step.event == FrameEvent::end || step.event == FrameEvent::error) break;
    }
  }
  REQUIRE(pos == command.size());
  REQUIRE(framer.spans().size() == 3);
  CHECK(command.substr(framer.spans()[0].offset, framer.spans()[0].length) == "SET");
  CHECK(command.substr(framer.spans()[1].offset, framer.spans()[1].length) == big);
  CHECK(command.substr(framer.spans()[2].offset, framer.spans()[2].length) == "v");
}
