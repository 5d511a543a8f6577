// pcapng export: the proxy never saw packets, only the bytes each side delivered, so the
// TCP/IP around them is made up, consistently enough that Wireshark's TCP analysis and
// its HTTP and RESP dissectors follow every connection: a three-way handshake at the
// open, the recorded chunks as PSH/ACK segments (at most 1460 bytes) with matching seq and
// ack numbers and pure ACKs back so no window ever fills, FINs or an RST at the end, and
// correct IPv4 and TCP checksums. Faults and redactions become packet comments.
//
// Layout: a Section Header Block, one Interface Description Block (LINKTYPE_RAW: each
// packet is a bare IPv4 datagram; nanosecond timestamps), then Enhanced Packet Blocks in
// time order. Blocks are written little-endian; the byte-order magic tells readers so.
#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <cstring>
#include <map>

#include "recorder/export_internal.hpp"

namespace faultline::rec::xp {

namespace {

constexpr std::uint32_t kShb = 0x0A0D0D0A;
constexpr std::uint32_t kIdb = 0x00000001;
constexpr std::uint32_t kEpb = 0x00000006;
constexpr std::uint16_t kLinktypeRaw = 101;
constexpr std::uint32_t kSnaplen = 262144;
constexpr std::size_t kMss = 1460;
constexpr std::uint16_t kWindow = 65535;
// A receiver ACKs at least every this many bytes, far below the 65535-byte window, so
// Wireshark never sees a sender run into a full window it invented.
constexpr std::size_t kAckEvery = 16 * kMss;

constexpr std::uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10;

// ---- little-endian block building ----

void put16(std::string& b, std::uint16_t v) {
  b += static_cast<char>(v & 0xFF);
  b += static_cast<char>(v >> 8);
}
void put32(std::string& b, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b += static_cast<char>((v >> (8 * i)) & 0xFF);
}
void pad4(std::string& b) {
  while (b.size() % 4) b += '\0';
}
void option(std::string& b, std::uint16_t code, std::string_view value) {
  put16(b, code);
  put16(b, static_cast<std::uint16_t>(value.size()));
  b.append(value);
  pad4(b);
}
void end_of_options(std::string& b) {
  put16(b, 0);
  put16(b, 0);
}
// `body`: everything between the type/length words and the trailing length.
void block(std::ostream& out, std::uint32_t type, const std::string& body) {
  std::string b;
  const auto total = static_cast<std::uint32_t>(12 + body.size());
  put32(b, type);
  put32(b, total);
  b.append(body);
  put32(b, total);
  out.write(b.data(), static_cast<std::streamsize>(b.size()));
}

// An option value is at most 65535 bytes; comments are cut well before that.
std::string cut(std::string s) {
  if (s.size() > 4000) {
    s.resize(4000);
    while (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xC0) == 0x80) s.pop_back();
    if (!s.empty() && static_cast<unsigned char>(s.back()) >= 0xC0) s.pop_back();
    s += "…";
  }
  return s;
}

// ---- IPv4 / TCP ----

std::uint32_t sum16(const unsigned char* p, std::size_t n, std::uint32_t sum = 0) {
  for (std::size_t i = 0; i + 1 < n; i += 2) sum += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
  if (n % 2) sum += static_cast<std::uint32_t>(p[n - 1] << 8);
  return sum;
}
std::uint16_t fold(std::uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum & 0xFFFF);
}
void be16(unsigned char* p, std::uint16_t v) {
  p[0] = static_cast<unsigned char>(v >> 8);
  p[1] = static_cast<unsigned char>(v);
}
void be32(unsigned char* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(v >> (24 - 8 * i));
}

struct Endpoint {
  std::array<unsigned char, 4> ip{};
  std::uint16_t port = 0;
};

// One made-up packet. Payload bytes stay in the model's events (views).
struct Packet {
  std::int64_t t = 0;     // recording time, ns
  std::size_t conn = 0;   // index into the connection list
  bool from_client = true;
  std::uint8_t flags = 0;
  std::uint32_t seq = 0, ack = 0;
  std::string_view payload;
  std::uint16_t ip_id = 0;
  std::vector<std::string> comments;
  // For placing redaction comments: the direction's stream offsets this packet carries.
  std::uint64_t off = 0;
};

std::string datagram(const Packet& p, const Endpoint& client, const Endpoint& server) {
  const Endpoint& src = p.from_client ? client : server;
  const Endpoint& dst = p.from_client ? server : client;
  const std::size_t total = 40 + p.payload.size();
  std::string d(total, '\0');
  auto* ip = reinterpret_cast<unsigned char*>(d.data());
  ip[0] = 0x45;  // IPv4, 20-byte header
  be16(ip + 2, static_cast<std::uint16_t>(total));
  be16(ip + 4, p.ip_id);
  be16(ip + 6, 0x4000);  // don't fragment
  ip[8] = 64;            // TTL
  ip[9] = 6;             // TCP
  std::memcpy(ip + 12, src.ip.data(), 4);
  std::memcpy(ip + 16, dst.ip.data(), 4);
  be16(ip + 10, fold(sum16(ip, 20)));
  unsigned char* tcp = ip + 20;
  be16(tcp, src.port);
  be16(tcp + 2, dst.port);
  be32(tcp + 4, p.seq);
  be32(tcp + 8, (p.flags & kAck) ? p.ack : 0);
  tcp[12] = 5 << 4;  // 20-byte header, no options
  tcp[13] = p.flags;
  be16(tcp + 14, kWindow);
  if (!p.payload.empty()) std::memcpy(tcp + 20, p.payload.data(), p.payload.size());
  // The checksum covers a pseudo-header (addresses, protocol, TCP length) and the segment.
  unsigned char pseudo[12] = {};
  std::memcpy(pseudo, src.ip.data(), 4);
  std::memcpy(pseudo + 4, dst.ip.data(), 4);
  pseudo[9] = 6;
  be16(pseudo + 10, static_cast<std::uint16_t>(20 + p.payload.size()));
  std::uint32_t sum = sum16(pseudo, sizeof pseudo);
  sum = sum16(tcp, 20 + p.payload.size(), sum);
  be16(tcp + 16, fold(sum));
  return d;
}

bool parse_ipv4(std::string_view host, std::array<unsigned char, 4>& ip) {
  const std::string h(host);
  return inet_pton(AF_INET, h.c_str(), ip.data()) == 1;
}

// "host:port", "[v6]:port", "http(s)://host[:port][/…]": host (brackets kept off) and port
// (0 when none is given).
void split_address(std::string_view a, std::string& host, std::uint16_t& port, bool& tls) {
  tls = false;
  std::uint16_t default_port = 0;
  if (a.rfind("https://", 0) == 0) {
    tls = true;
    default_port = 443;
    a.remove_prefix(8);
  } else if (a.rfind("http://", 0) == 0) {
    default_port = 80;
    a.remove_prefix(7);
  }
  a = a.substr(0, a.find('/'));
  std::string_view port_text;
  if (!a.empty() && a.front() == '[') {
    const std::size_t close = a.find(']');
    host = std::string(a.substr(1, close == a.npos ? a.npos : close - 1));
    if (close != a.npos && close + 1 < a.size() && a[close + 1] == ':') port_text = a.substr(close + 2);
  } else if (std::count(a.begin(), a.end(), ':') == 1) {
    host = std::string(a.substr(0, a.find(':')));
    port_text = a.substr(a.find(':') + 1);
  } else {
    host = std::string(a);  // no port, or a bare IPv6 address
  }
  port = default_port;
  if (!port_text.empty() && port_text.size() <= 5 &&
      std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    const int p = std::stoi(std::string(port_text));
    if (p > 0 && p < 65536) port = static_cast<std::uint16_t>(p);
  }
}

struct ConnPackets {
  const Conn* conn = nullptr;
  Endpoint client, server;
  std::vector<std::size_t> packets;  // indices into the packet list, in time order
  std::vector<std::size_t> data_packets[2];  // packets with payload per direction, by stream offset
};

// Made-up endpoints: the real ones when they are IPv4 literals; otherwise stable
// stand-ins (10.0.0.x clients, 10.0.1.x servers), named in the SYN's comment.
class Addresses {
 public:
  Endpoint client(const Conn& c, std::string& note) {
    Endpoint e;
    std::string host;
    std::uint16_t port = 0;
    bool tls = false;
    if (c.open) split_address(c.open->client, host, port, tls);
    if (!parse_ipv4(host, e.ip)) {
      const std::uint64_t n = c.id % 254 + 1;
      e.ip = {10, 0, 0, static_cast<unsigned char>(n)};
      if (c.open) note += "; client " + (c.open->client.empty() ? std::string("unknown") : c.open->client) +
                          " shown as 10.0.0." + std::to_string(n);
    }
    e.port = port ? port : static_cast<std::uint16_t>(49152 + c.id % 16384);
    return e;
  }

  Endpoint server(const Conn& c, std::string& note) {
    Endpoint e;
    std::string host;
    std::uint16_t port = 0;
    bool tls = false;
    const std::string upstream = c.open ? c.open->upstream : "";
    split_address(upstream, host, port, tls);
    const std::string_view protocol = c.protocol();
    // Wireshark picks dissectors by port: the well-known ports make it decode what the
    // proxy decoded. The bytes of an https:// upstream are the plaintext faultline saw,
    // so they must not land on 443, where Wireshark would expect TLS records.
    std::uint16_t shown = port;
    if (protocol == "http" || protocol == "mcp") shown = 80;
    else if (protocol == "resp") shown = 6379;
    else if (tls || shown == 0) shown = 80;
    e.port = shown;
    bool named = false;
    if (host == "localhost") {
      named = true;  // a name, even if everyone knows where it points
      e.ip = {127, 0, 0, 1};
    } else if (!parse_ipv4(host, e.ip)) {
      named = true;
      auto it = hosts_.find(host);
      if (it == hosts_.end()) it = hosts_.emplace(host, hosts_.size()).first;
      const std::size_t n = it->second;
      e.ip = {10, 0, static_cast<unsigned char>(1 + (n / 254) % 254), static_cast<unsigned char>(n % 254 + 1)};
    }
    if (named || shown != port) {
      note += "; upstream " + (upstream.empty() ? std::string("unknown") : upstream) + " shown as " +
              std::to_string(e.ip[0]) + "." + std::to_string(e.ip[1]) + "." + std::to_string(e.ip[2]) + "." +
              std::to_string(e.ip[3]) + ":" + std::to_string(shown);
      if (shown != port && !protocol.empty() && protocol != "tcp")
        note += " (port " + std::to_string(shown) + " so Wireshark decodes " +
                (protocol == "resp" ? "RESP" : "HTTP") + ")";
      if (tls) note += " (the bytes are the plaintext inside TLS)";
    }
    return e;
  }

 private:
  std::map<std::string, std::size_t> hosts_;
};

// Builds one connection's packets, in time order.
class ConnBuilder {
 public:
  ConnBuilder(std::vector<Packet>& packets, ConnPackets& cp, std::size_t index)
      : packets_(packets), cp_(cp), index_(index) {
    // Deterministic initial sequence numbers, different per connection and side.
    cseq_ = static_cast<std::uint32_t>(0x1000'0000u + cp.conn->id * 0x9E37'79B9u);
    sseq_ = static_cast<std::uint32_t>(0x2000'0000u + cp.conn->id * 0x85EB'CA6Bu);
  }

  void build(const std::string& syn_comment, std::vector<std::string>& notes_for_dropped) {
    const Conn& c = *cp_.conn;
    const std::int64_t t0 = c.open ? c.open->t : c.first_t;
    std::size_t syn = emit(t0, true, kSyn, {}, 0);
    packets_[syn].comments.push_back(syn_comment);
    if (!c.open)
      packets_[syn].comments.push_back("the recording began after this connection opened: its handshake is made up");
    emit(t0, false, kSyn | kAck, {}, 0);
    emit(t0, true, kAck, {}, 0);

    // The connection's lines in time order (a chunk held back for decoding is written to
    // the journal after later lines, with the time it was delivered).
    std::vector<const JournalEvent*> lines;
    for (const JournalEvent* e : c.all) {
      if (e->type == EventType::data || e->type == EventType::end || e->type == EventType::close) lines.push_back(e);
    }
    std::stable_sort(lines.begin(), lines.end(),
                     [](const JournalEvent* a, const JournalEvent* b) { return a->t < b->t; });
    std::uint64_t next_off[2] = {UINT64_MAX, UINT64_MAX};
    for (const JournalEvent* e : lines) {
      if (reset_) break;
      const std::size_t d = dir_index(e->dir);
      const bool client = d == 0;
      if (e->type == EventType::data) {
        if (fin_[d]) {
          ++dropped_;
          continue;
        }
        std::string hole;
        if (next_off[d] != UINT64_MAX && e->off > next_off[d])
          hole = std::to_string(e->off - next_off[d]) + " bytes before this were not recorded (a gap)";
        if (e->blob_missing) {
          packets_[last_].comments.push_back("blob " + e->blob + " is missing: " + std::to_string(e->len) +
                                              " recorded bytes are not in this capture");
          next_off[d] = e->off + e->len;
          continue;
        }
        next_off[d] = e->off + e->len;
        data(e, client, hole);
      } else if (e->type == EventType::end) {
        if (e->how == EndKind::reset) {
          std::size_t p = emit(e->t, client, kRst | kAck, {}, 0);
          packets_[p].comments.push_back(std::string("reset towards the ") + (client ? "server" : "client"));
          reset_ = true;
        } else {
          fin(e->t, client);
          if (e->how == EndKind::close) fin(e->t, !client);
        }
      } else if (e->type == EventType::close) {
        if (!fin_[0]) fin(e->t, true);
        if (!fin_[1]) fin(e->t, false);
      }
    }
    if (dropped_)
      notes_for_dropped.push_back("conn " + std::to_string(c.id) + ": " + std::to_string(dropped_) +
                                  " data lines after a FIN were left out");
  }

 private:
  std::size_t emit(std::int64_t t, bool client, std::uint8_t flags, std::string_view payload, std::uint64_t off) {
    Packet p;
    // Time never goes backwards within a connection (lines are sorted; this guards
    // against equal-time lines reordered by the sort's tie rule).
    t_ = std::max(t_, t);
    p.t = t_;
    p.conn = index_;
    p.from_client = client;
    p.flags = flags;
    p.seq = client ? cseq_ : sseq_;
    p.ack = client ? sseq_ : cseq_;
    p.payload = payload;
    p.ip_id = client ? cid_++ : sid_++;
    p.off = off;
    packets_.push_back(std::move(p));
    last_ = packets_.size() - 1;
    cp_.packets.push_back(last_);
    std::uint32_t& seq = client ? cseq_ : sseq_;
    seq += static_cast<std::uint32_t>(payload.size());
    if (flags & (kSyn | kFin)) seq += 1;  // SYN and FIN each take one sequence number
    return last_;
  }

  void data(const JournalEvent* e, bool client, const std::string& hole) {
    const std::string_view bytes = e->bytes;
    std::size_t unacked = 0;
    bool first = true;
    for (std::size_t pos = 0; pos < bytes.size(); pos += kMss) {
      const std::string_view seg = bytes.substr(pos, kMss);
      const bool last = pos + seg.size() >= bytes.size();
      const std::size_t p = emit(e->t, client, static_cast<std::uint8_t>(kAck | (last ? kPsh : 0)), seg, e->off + pos);
      std::vector<std::size_t>& carriers = cp_.data_packets[client ? 0 : 1];
      // Lines are emitted in time order; a chunk delivered out of offset order (never
      // written so by the recorder) is left out of the lookup rather than unsort it.
      if (carriers.empty() || packets_[carriers.back()].off < e->off + pos) carriers.push_back(p);
      if (first && !hole.empty()) packets_[p].comments.push_back(hole);
      first = false;
      unacked += seg.size();
      if (unacked >= kAckEvery && !last) {
        emit(e->t, !client, kAck, {}, 0);
        unacked = 0;
      }
    }
    // The receiver acknowledges each delivered chunk, as a real stack would soon after.
    if (!bytes.empty()) emit(e->t, !client, kAck, {}, 0);
  }

  void fin(std::int64_t t, bool client) {
    const std::size_t d = client ? 0 : 1;
    if (fin_[d]) return;
    fin_[d] = true;
    emit(t, client, kFin | kAck, {}, 0);
    emit(t, !client, kAck, {}, 0);
  }

  std::vector<Packet>& packets_;
  ConnPackets& cp_;
  std::size_t index_;
  std::uint32_t cseq_ = 0, sseq_ = 0;
  std::uint16_t cid_ = 1, sid_ = 1;
  std::int64_t t_ = INT64_MIN;
  bool fin_[2] = {false, false};
  bool reset_ = false;
  std::size_t last_ = 0;
  std::uint64_t dropped_ = 0;
};

// The packet of `cp` nearest in time to `t` (ties: the earlier one).
std::size_t nearest(const std::vector<Packet>& packets, const std::vector<std::size_t>& list, std::int64_t t) {
  auto it = std::lower_bound(list.begin(), list.end(), t,
                             [&](std::size_t i, std::int64_t v) { return packets[i].t < v; });
  if (it == list.end()) return list.back();
  if (it == list.begin()) return *it;
  const std::size_t after = *it, before = *std::prev(it);
  return (packets[after].t - t) < (t - packets[before].t) ? after : before;
}

}  // namespace

bool write_pcapng(const Model& model, std::ostream& out, const ExportOptions& options, ExportSummary& summary,
                  std::string& /*error*/) {
  std::vector<Packet> packets;
  std::vector<ConnPackets> conns;
  conns.reserve(model.conns.size());
  Addresses addresses;
  std::vector<std::string> notes;
  for (const auto& [id, c] : model.conns) {
    ConnPackets cp;
    cp.conn = &c;
    std::string note;
    cp.client = addresses.client(c, note);
    cp.server = addresses.server(c, note);
    std::string syn = "faultline conn " + std::to_string(c.id);
    if (c.open) {
      syn += ", proxy \"" + c.open->proxy + "\" (" + c.open->protocol + "): client " + c.open->client +
             ", upstream " + c.open->upstream;
    }
    syn += note;
    conns.push_back(std::move(cp));
    ConnBuilder(packets, conns.back(), conns.size() - 1).build(cut(syn), notes);
  }
  for (const auto& n : notes) warn(options, "pcapng: " + n);

  // Faults go on the connection's packet nearest in time; a redaction on the packet that
  // carries the redacted bytes (its nearest in time when none does).
  for (const ConnPackets& cp : conns) {
    const Conn& c = *cp.conn;
    for (const JournalEvent* f : c.faults) {
      const std::size_t p = nearest(packets, cp.packets, f->t);
      packets[p].comments.push_back(cut("fault " + f->fault + " " + f->toxic + ": " + f->what));
    }
    for (std::size_t d = 0; d < 2; ++d) {
      const auto& carriers = cp.data_packets[d];  // in stream offset order
      for (const JournalEvent* r : c.redactions[d]) {
        auto it = std::upper_bound(carriers.begin(), carriers.end(), r->off,
                                   [&](std::uint64_t off, std::size_t i) { return off < packets[i].off; });
        std::size_t best = SIZE_MAX;
        if (it != carriers.begin()) {
          const Packet& p = packets[*std::prev(it)];
          if (r->off < p.off + p.payload.size()) best = *std::prev(it);
        }
        if (best == SIZE_MAX) best = nearest(packets, cp.packets, r->t);
        packets[best].comments.push_back(cut("redacted: " + r->rule));
      }
    }
  }

  // Lines of no connection: a gap marks the packet nearest in time of any connection.
  std::vector<std::size_t> order(packets.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return packets[a].t < packets[b].t; });
  if (!order.empty()) {
    for (const JournalEvent& e : model.events) {
      if (e.type != EventType::gap) continue;
      const std::size_t p = nearest(packets, order, e.t);
      packets[p].comments.push_back("gap: the recorder fell behind; " + std::to_string(e.gap_events) + " events (" +
                                    std::to_string(e.gap_bytes) + " bytes) were not recorded around here");
    }
  }

  // Section Header Block.
  std::string shb;
  put32(shb, 0x1A2B3C4D);  // byte-order magic
  put16(shb, 1);           // version 1.0
  put16(shb, 0);
  put32(shb, 0xFFFFFFFF);  // section length unknown (-1)
  put32(shb, 0xFFFFFFFF);
  option(shb, 1,
         cut("made up by faultline from recording " + model.recording +
             ": the proxy records the bytes each side delivered, not packets, so addresses, handshakes, "
             "sequence numbers and ACKs are synthetic; timestamps and payloads are as recorded" +
             (model.redacted ? "; secrets were redacted at record time" : "")));
  option(shb, 4, "faultline " + options.creator_version);  // shb_userappl
  end_of_options(shb);
  block(out, kShb, shb);

  // Interface Description Block.
  std::string idb;
  put16(idb, kLinktypeRaw);
  put16(idb, 0);
  put32(idb, kSnaplen);
  option(idb, 2, "faultline");               // if_name
  option(idb, 3, "synthetic IPv4 (faultline export)");  // if_description
  option(idb, 9, std::string(1, '\x09'));    // if_tsresol: 10^-9 s
  end_of_options(idb);
  block(out, kIdb, idb);

  for (std::size_t i : order) {
    const Packet& p = packets[i];
    const ConnPackets& cp = conns[p.conn];
    const std::string d = datagram(p, cp.client, cp.server);
    const auto ts = static_cast<std::uint64_t>(model.wall_ns + p.t);
    std::string epb;
    put32(epb, 0);  // interface 0
    put32(epb, static_cast<std::uint32_t>(ts >> 32));
    put32(epb, static_cast<std::uint32_t>(ts & 0xFFFFFFFF));
    put32(epb, static_cast<std::uint32_t>(d.size()));
    put32(epb, static_cast<std::uint32_t>(d.size()));
    epb += d;
    pad4(epb);
    if (!p.comments.empty()) {
      for (const auto& comment : p.comments) option(epb, 1, comment);  // opt_comment
      end_of_options(epb);
    }
    block(out, kEpb, epb);
    if (!out) return false;
  }
  summary.exported = order.size();
  return static_cast<bool>(out);
}

}  // namespace faultline::rec::xp
