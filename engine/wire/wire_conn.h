// One TCP connection speaking the wire protocol (docs/PROTOCOL.md): framed, blocking sends and
// receives with timeouts, driven through the connection's own io::Queue (io_uring or the threads
// fallback), and the two sides of the handshake. The daemon's connection threads and the remote
// store's requests are built on it.
#ifndef CHUNKFERRY_ENGINE_WIRE_WIRE_CONN_H_
#define CHUNKFERRY_ENGINE_WIRE_WIRE_CONN_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "engine/wire/auth.h"
#include "engine/wire/key_ring.h"
#include "engine/wire/tls.h"
#include "engine/wire/wire_frame.h"
#include "engine/wire/wire_messages.h"
#include "io/fd.h"
#include "io/queue.h"

namespace chunkferry::engine {

// How long one send or receive may make no progress before the peer counts as stalled.
inline constexpr int64_t kWireIoTimeoutMs = 60'000;
// How long a handshake may take, from accept or connect to WELCOME.
inline constexpr int64_t kHandshakeTimeoutMs = 10'000;

// A frame being built: room for the header in front, then the payload, so that a frame leaves
// in one send without another copy.
class FrameBuffer {
 public:
  FrameBuffer() { Clear(); }
  void Clear() { bytes_.resize(kFrameHeaderSize); }
  void Append(absl::Span<const uint8_t> bytes) {
    bytes_.insert(bytes_.end(), bytes.begin(), bytes.end());
  }
  void Append(absl::string_view bytes) {
    Append(absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  }
  // Grows the payload by `n` bytes and returns where they start, for the caller to fill.
  uint8_t* Extend(size_t n) {
    const size_t at = bytes_.size();
    bytes_.resize(at + n);
    return bytes_.data() + at;
  }
  size_t payload_size() const { return bytes_.size() - kFrameHeaderSize; }
  absl::Span<const uint8_t> payload() const {
    return absl::MakeConstSpan(bytes_.data() + kFrameHeaderSize, payload_size());
  }
  // Writes the header for `type` and returns the whole frame.
  absl::Span<const uint8_t> Seal(MsgType type);

 private:
  std::vector<uint8_t> bytes_;
};

// A received frame; the payload stays valid until the next receive on the same connection.
struct WireFrame {
  uint16_t type = 0;
  absl::Span<const uint8_t> payload;
};

class WireConn {
 public:
  // Takes a connected socket. `peer` names the other end in messages ("127.0.0.1:5511").
  // The queue is private to this connection: one thread uses the connection at a time.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<WireConn>> Make(io::Fd socket,
                                                                      std::string peer,
                                                                      io::Backend backend);
  ~WireConn();

  const std::string& peer() const { return peer_; }
  int fd() const { return socket_.get(); }
  // Largest payload accepted from the peer: kHandshakeMaxFrame until the handshake sets it.
  uint32_t max_recv_frame() const { return max_recv_frame_; }
  void set_max_recv_frame(uint32_t n) { max_recv_frame_ = n; }
  // Largest payload the peer accepts (from WELCOME, for a client; own limit, for the daemon).
  uint32_t max_send_frame() const { return max_send_frame_; }
  void set_max_send_frame(uint32_t n) { max_send_frame_ = n; }
  // Frames of `type` may carry kFrameFlagPrefixChecksum from now on (wire_frame.h); by default
  // no frame may.
  void set_prefix_checksum_type(MsgType type) {
    prefix_checksum_type_ = static_cast<uint16_t>(type);
  }
  uint64_t bytes_sent() const { return bytes_sent_; }
  uint64_t bytes_received() const { return bytes_received_; }

  // Sends one frame. DeadlineExceeded when the peer took nothing for `timeout_ms`; Unavailable
  // when the connection broke. After any failure the connection is shut down.
  [[nodiscard]] absl::Status Send(MsgType type, absl::Span<const uint8_t> payload,
                                  int64_t timeout_ms = kWireIoTimeoutMs);
  [[nodiscard]] absl::Status Send(MsgType type, absl::string_view payload,
                                  int64_t timeout_ms = kWireIoTimeoutMs);
  [[nodiscard]] absl::Status Send(MsgType type, FrameBuffer& frame,
                                  int64_t timeout_ms = kWireIoTimeoutMs);

  // Receives one frame and checks its header and payload checksum. Unavailable "peer closed
  // the connection" at a clean end of stream; DeadlineExceeded when the peer stalls for
  // `timeout_ms` (mid-frame or before it); InvalidArgument/ResourceExhausted/DataLoss for a
  // malformed frame (the peer is sent an ERROR saying why). After any failure the connection is
  // shut down.
  [[nodiscard]] absl::StatusOr<WireFrame> Recv(int64_t timeout_ms = kWireIoTimeoutMs);
  // Receives one frame that must be `type`. An ERROR frame becomes the status it carries
  // (prefixed with the peer); any other type is a protocol error (the connection is shut down).
  [[nodiscard]] absl::StatusOr<absl::Span<const uint8_t>> Expect(
      MsgType type, int64_t timeout_ms = kWireIoTimeoutMs);

  // Sends ERROR carrying `status`, best effort (a broken connection is ignored).
  void SendError(const absl::Status& status);
  // Ends both directions: pending and later operations fail at once.
  void Shutdown();

  // Turns the payload of an ERROR frame into the status it carries, naming the peer.
  absl::Status PeerError(absl::Span<const uint8_t> payload) const;

  // Runs the TLS handshake (tls.h) as the context's role, within `timeout_ms`; from then on every
  // frame travels inside TLS. Its errors: those of TlsChannel::Handshake, DeadlineExceeded,
  // Unavailable when the peer closes; the connection is shut down after any.
  [[nodiscard]] absl::Status StartTls(std::shared_ptr<TlsContext> context, int64_t timeout_ms);
  bool tls() const { return tls_ != nullptr; }
  // "TLSv1.3 TLS_AES_128_GCM_SHA256", or "" without TLS.
  std::string TlsDescription() const { return tls_ ? tls_->Description() : ""; }
  // Hands the TLS state over (with whatever it received and not yet decrypted) to a caller that
  // drives the socket itself from now on (RemoteStore); the connection is not used after.
  std::unique_ptr<TlsChannel> TakeTls() { return std::move(tls_); }

 private:
  WireConn(io::Fd socket, std::string peer, std::unique_ptr<io::Queue> queue);
  // Runs one send or receive to completion. Returns the bytes moved. A receive waits for all
  // `len` bytes (less only at the end of the stream) unless `some` says any will do.
  absl::StatusOr<size_t> Transfer(io::Request::Op op, uint8_t* buf, size_t len, int64_t timeout_ms,
                                  bool some = false);
  // Sends bytes of frames (through TLS when it is on) and counts them.
  absl::Status SendRaw(absl::Span<const uint8_t> bytes, int64_t timeout_ms);
  // Sends bytes as they are to the socket.
  absl::Status SendToSocket(absl::Span<const uint8_t> bytes, int64_t timeout_ms);
  // Sends the ciphertext TLS has waiting.
  absl::Status FlushTls(int64_t timeout_ms);
  // Receives ciphertext straight into the TLS channel's input ring: bytes received, 0 at EOF.
  absl::StatusOr<size_t> ReceiveCiphertext(int64_t timeout_ms);
  // StartTls without the hint its errors get on the client side.
  absl::Status RunTlsHandshake(std::shared_ptr<TlsContext> context, int64_t timeout_ms);
  // Receives `len` bytes of frames (through TLS when it is on); fewer only at the end of stream.
  absl::StatusOr<size_t> RecvExact(uint8_t* buf, size_t len, int64_t timeout_ms);

  io::Fd socket_;
  std::string peer_;
  std::unique_ptr<io::Queue> queue_;
  uint32_t max_recv_frame_ = kHandshakeMaxFrame;
  uint32_t max_send_frame_ = kHandshakeMaxFrame;
  uint16_t prefix_checksum_type_ = kNoPrefixChecksumType;
  bool broken_ = false;
  std::vector<uint8_t> recv_buf_;
  std::unique_ptr<TlsChannel> tls_;
  uint64_t bytes_sent_ = 0;
  uint64_t bytes_received_ = 0;
};

// The client side of the handshake: HELLO, check CHALLENGE (version, server proof and, when
// `expect_uuid` is not empty, the store uuid), AUTH, WELCOME. Sets the connection's frame limits.
// Unauthenticated when the daemon does not prove it holds the key (or refuses ours). A WELCOME
// announcing frames larger than `max_frame` (what this client will allocate for one frame) is
// answered ERROR ResourceExhausted and the connection closed: a daemon, or anyone in the path,
// cannot make the client allocate up to 4 GiB per connection.
// HELLO names `key` (key.name) to a daemon that holds several (KeyRing); an unnamed key is the
// daemon's key named "default".
[[nodiscard]] absl::StatusOr<Welcome> ClientHandshake(WireConn& conn, const AuthKey& key,
                                                      const std::string& expect_uuid,
                                                      uint32_t max_frame = kDefaultMaxFrame);

// The daemon side: HELLO, CHALLENGE, check AUTH, WELCOME (or ERROR and the reason). The whole
// exchange must finish within kHandshakeTimeoutMs. `admit`, when set, is asked once the client
// proved it holds the key, before WELCOME: an error it returns is sent as ERROR instead (e.g.
// ResourceExhausted when the daemon serves as many authenticated connections as it may).
[[nodiscard]] absl::Status ServerHandshake(WireConn& conn, const AuthKey& key,
                                           const Welcome& welcome,
                                           const std::function<absl::Status()>& admit = nullptr);

// The same with several keys: checks the client's proof against the key HELLO names (or the one
// named "default"). A name the ring lacks fails exactly like a wrong key, as the peer sees it;
// the returned error says which (for the log). `admit` may change the WELCOME for this key (e.g.
// a lower max_inflight). Returns the client's key, a pointer into `keys`.
[[nodiscard]] absl::StatusOr<const ClientKey*> ServerHandshake(
    WireConn& conn, const KeyRing& keys, Welcome welcome,
    const std::function<absl::Status(const ClientKey&, Welcome*)>& admit);

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_WIRE_WIRE_CONN_H_
