#include "engine/wire/wire_conn.h"

#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <span>
#include <utility>

#include "absl/strings/str_cat.h"
#include "io/net.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

constexpr size_t kIoPiece = 4 << 20;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

absl::Span<const uint8_t> FrameBuffer::Seal(MsgType type) {
  EncodeFrameHeader(static_cast<uint16_t>(type), payload(),
                    std::span<uint8_t, kFrameHeaderSize>(bytes_.data(), kFrameHeaderSize));
  return absl::MakeConstSpan(bytes_);
}

absl::StatusOr<std::unique_ptr<WireConn>> WireConn::Make(io::Fd socket, std::string peer,
                                                         io::Backend backend) {
  io::QueueOptions qo;
  qo.backend = backend;
  qo.depth = 4;
  qo.threads = 2;  // a send and a recv may wait on the peer at the same time
  CF_ASSIGN_OR_RETURN(auto queue, io::MakeQueue(qo));
  return std::unique_ptr<WireConn>(
      new WireConn(std::move(socket), std::move(peer), std::move(queue)));
}

WireConn::WireConn(io::Fd socket, std::string peer, std::unique_ptr<io::Queue> queue)
    : socket_(std::move(socket)), peer_(std::move(peer)), queue_(std::move(queue)) {}

WireConn::~WireConn() {
  // The queue may still hold an operation a timeout left behind: end it before the buffers go.
  if (queue_ != nullptr && queue_->in_flight() > 0) {
    Shutdown();
    io::Completion done[4];
    while (queue_->in_flight() > 0) {
      if (!queue_->Reap(absl::MakeSpan(done), 1).ok()) break;
    }
  }
}

void WireConn::Shutdown() {
  broken_ = true;
  if (socket_.valid()) ::shutdown(socket_.get(), SHUT_RDWR);
}

absl::StatusOr<size_t> WireConn::Transfer(io::Request::Op op, uint8_t* buf, size_t len,
                                          int64_t timeout_ms, bool some) {
  if (broken_) {
    return absl::UnavailableError(absl::StrCat("connection to ", peer_, " is closed"));
  }
  io::Request r;
  r.op = op;
  r.fd = socket_.get();
  r.buf = buf;
  r.len = static_cast<uint32_t>(len);
  r.flags = op == io::Request::Op::kRecv && !some ? io::Request::kRecvAll : 0;
  CF_RETURN_IF_ERROR(queue_->Submit(r));
  io::Completion done[1];
  const int64_t deadline = NowMs() + timeout_ms;
  for (;;) {
    const int64_t left = deadline - NowMs();
    CF_ASSIGN_OR_RETURN(size_t n, queue_->ReapFor(absl::MakeSpan(done), 1, left > 0 ? left : 0));
    if (n == 1) break;
    if (left <= 0) {
      // Stalled peer: shut the socket down so the operation completes, then collect it.
      Shutdown();
      while (queue_->in_flight() > 0)
        CF_RETURN_IF_ERROR(queue_->Reap(absl::MakeSpan(done), 1).status());
      return absl::DeadlineExceededError(
          absl::StrCat("peer ", peer_, " made no progress for ", timeout_ms / 1000.0, " s (",
                       op == io::Request::Op::kSend ? "sending" : "receiving", ")"));
    }
  }
  if (done[0].result < 0) {
    Shutdown();
    return io::SocketErrorStatus(static_cast<int>(-done[0].result),
                                 op == io::Request::Op::kSend ? "send" : "recv", peer_);
  }
  return static_cast<size_t>(done[0].result);
}

absl::Status WireConn::SendToSocket(absl::Span<const uint8_t> bytes, int64_t timeout_ms) {
  // Large frames go in pieces so that the timeout measures progress, not the whole transfer.
  for (size_t at = 0; at < bytes.size();) {
    const size_t n = std::min(kIoPiece, bytes.size() - at);
    CF_RETURN_IF_ERROR(
        Transfer(io::Request::Op::kSend, const_cast<uint8_t*>(bytes.data() + at), n, timeout_ms)
            .status());
    at += n;
  }
  return absl::OkStatus();
}

absl::Status WireConn::FlushTls(int64_t timeout_ms) {
  // Straight from the channel's output ring; a run ends where the ring wraps.
  for (absl::Span<const uint8_t> run = tls_->Output(); !run.empty(); run = tls_->Output()) {
    CF_RETURN_IF_ERROR(SendToSocket(run, timeout_ms));
    tls_->ConsumeOutput(run.size());
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> WireConn::ReceiveCiphertext(int64_t timeout_ms) {
  const absl::Span<uint8_t> room = tls_->InputSpace();
  if (room.empty()) {  // Read leaves no whole record behind, and a record fits the ring
    Shutdown();
    return absl::InternalError(absl::StrCat("peer ", peer_, ": the TLS input ring is full"));
  }
  CF_ASSIGN_OR_RETURN(size_t m, Transfer(io::Request::Op::kRecv, room.data(), room.size(),
                                         timeout_ms, /*some=*/true));
  tls_->CommitInput(m);
  return m;
}

absl::Status WireConn::SendRaw(absl::Span<const uint8_t> bytes, int64_t timeout_ms) {
  if (tls_ == nullptr) {
    CF_RETURN_IF_ERROR(SendToSocket(bytes, timeout_ms));
  } else {
    // Encrypted as far as the output ring has room, sent, and again: the ring bounds the
    // ciphertext held whatever the frame.
    for (size_t at = 0; at < bytes.size();) {
      absl::StatusOr<size_t> n = tls_->Write(bytes.subspan(at));
      if (!n.ok()) {
        Shutdown();
        return n.status();
      }
      CF_RETURN_IF_ERROR(FlushTls(timeout_ms));
      at += *n;
    }
  }
  bytes_sent_ += bytes.size();
  return absl::OkStatus();
}

absl::StatusOr<size_t> WireConn::RecvExact(uint8_t* buf, size_t len, int64_t timeout_ms) {
  if (tls_ == nullptr) return Transfer(io::Request::Op::kRecv, buf, len, timeout_ms);
  size_t got = 0;
  while (got < len) {
    absl::StatusOr<size_t> n = tls_->Read(absl::MakeSpan(buf + got, len - got));
    if (absl::IsUnavailable(n.status())) break;  // close_notify: the end of the stream
    if (!n.ok()) {
      Shutdown();
      return absl::Status(n.status().code(),
                          absl::StrCat("peer ", peer_, ": ", n.status().message()));
    }
    if (*n > 0) {
      got += *n;
      continue;
    }
    CF_ASSIGN_OR_RETURN(size_t m, ReceiveCiphertext(timeout_ms));
    if (m == 0) break;
  }
  return got;
}

absl::Status WireConn::StartTls(std::shared_ptr<TlsContext> context, int64_t timeout_ms) {
  const bool client = context->role() == TlsRole::kClient;
  absl::Status st = RunTlsHandshake(std::move(context), timeout_ms);
  if (st.ok() || !client || absl::IsUnauthenticated(st)) return st;
  // A daemon that does not speak TLS reads our ClientHello as a bad frame and hangs up, which
  // the socket may report as a reset: say what is likely wrong.
  return absl::Status(st.code(), absl::StrCat("TLS handshake failed: ", st.message(),
                                              " (does the daemon speak TLS? serve --tls-cert)"));
}

absl::Status WireConn::RunTlsHandshake(std::shared_ptr<TlsContext> context, int64_t timeout_ms) {
  tls_ = std::make_unique<TlsChannel>(std::move(context));
  const int64_t deadline = NowMs() + timeout_ms;
  for (;;) {
    absl::StatusOr<bool> done = tls_->Handshake();
    if (!done.ok()) {
      // The alert that says why, best effort.
      if (tls_->pending() > 0) (void)FlushTls(1000);
      Shutdown();
      return absl::Status(done.status().code(),
                          absl::StrCat("peer ", peer_, ": ", done.status().message()));
    }
    CF_RETURN_IF_ERROR(FlushTls(std::max<int64_t>(1, deadline - NowMs())));
    if (*done) return absl::OkStatus();
    CF_ASSIGN_OR_RETURN(size_t m, ReceiveCiphertext(std::max<int64_t>(1, deadline - NowMs())));
    if (m == 0) {
      Shutdown();
      return absl::UnavailableError(
          absl::StrCat("peer ", peer_, " closed the connection during the TLS handshake"));
    }
  }
}

absl::Status WireConn::Send(MsgType type, absl::Span<const uint8_t> payload, int64_t timeout_ms) {
  CF_RETURN_IF_ERROR(CheckFrameSize(payload.size(), max_send_frame_));
  uint8_t header[kFrameHeaderSize];
  EncodeFrameHeader(static_cast<uint16_t>(type), payload, header);
  CF_RETURN_IF_ERROR(SendRaw(absl::MakeConstSpan(header), timeout_ms));
  return SendRaw(payload, timeout_ms);
}

absl::Status WireConn::Send(MsgType type, absl::string_view payload, int64_t timeout_ms) {
  return Send(type,
              absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(payload.data()), payload.size()),
              timeout_ms);
}

absl::Status WireConn::Send(MsgType type, FrameBuffer& frame, int64_t timeout_ms) {
  CF_RETURN_IF_ERROR(CheckFrameSize(frame.payload_size(), max_send_frame_));
  return SendRaw(frame.Seal(type), timeout_ms);
}

absl::StatusOr<WireFrame> WireConn::Recv(int64_t timeout_ms) {
  uint8_t header[kFrameHeaderSize];
  CF_ASSIGN_OR_RETURN(size_t got, RecvExact(header, kFrameHeaderSize, timeout_ms));
  if (got == 0) {
    Shutdown();
    return absl::UnavailableError(absl::StrCat("peer ", peer_, " closed the connection"));
  }
  if (got < kFrameHeaderSize) {
    Shutdown();
    return absl::UnavailableError(
        absl::StrCat("peer ", peer_, " closed the connection in the middle of a frame"));
  }
  auto parsed = ParseFrameHeader(header, max_recv_frame_, prefix_checksum_type_);
  if (!parsed.ok()) {
    SendError(parsed.status());  // the peer learns why before the close
    Shutdown();
    return absl::Status(parsed.status().code(),
                        absl::StrCat("peer ", peer_, ": ", parsed.status().message()));
  }
  const uint32_t len = parsed->payload_length;
  // Grows only to what was announced and accepted (at most max_recv_frame_).
  if (recv_buf_.size() < len) recv_buf_.resize(len);
  size_t have = 0;
  while (have < len) {
    // In pieces, so that the timeout measures progress (a rate-limited peer is slow, not stalled).
    CF_ASSIGN_OR_RETURN(size_t n, RecvExact(recv_buf_.data() + have,
                                            std::min<size_t>(len - have, kIoPiece), timeout_ms));
    if (n == 0) {
      Shutdown();
      return absl::UnavailableError(
          absl::StrCat("peer ", peer_, " closed the connection in the middle of a frame"));
    }
    have += n;
  }
  const auto payload = absl::MakeConstSpan(recv_buf_.data(), len);
  absl::Status checked = CheckFramePayload(*parsed, payload);
  if (!checked.ok()) {
    SendError(checked);
    Shutdown();
    return absl::Status(checked.code(), absl::StrCat("peer ", peer_, ": ", checked.message()));
  }
  bytes_received_ += kFrameHeaderSize + len;
  return WireFrame{parsed->type, payload};
}

absl::Status WireConn::PeerError(absl::Span<const uint8_t> payload) const {
  const absl::Status carried = DecodeError(payload);
  return absl::Status(carried.code(), absl::StrCat("peer ", peer_, ": ", carried.message()));
}

absl::StatusOr<absl::Span<const uint8_t>> WireConn::Expect(MsgType type, int64_t timeout_ms) {
  CF_ASSIGN_OR_RETURN(WireFrame frame, Recv(timeout_ms));
  if (frame.type == static_cast<uint16_t>(type)) return frame.payload;
  if (frame.type == static_cast<uint16_t>(MsgType::kError)) return PeerError(frame.payload);
  const absl::Status unexpected = UnexpectedFrameError(frame.type, type);
  SendError(unexpected);
  Shutdown();
  return absl::Status(unexpected.code(), absl::StrCat("peer ", peer_, ": ", unexpected.message()));
}

void WireConn::SendError(const absl::Status& status) {
  if (broken_) return;
  (void)Send(MsgType::kError, EncodeError(status), 1000);
}

absl::StatusOr<Welcome> ClientHandshake(WireConn& conn, const AuthKey& key,
                                        const std::string& expect_uuid, uint32_t max_frame) {
  Hello hello;
  hello.client_nonce = RandomNonce();
  hello.key_name = key.name;
  CF_RETURN_IF_ERROR(conn.Send(MsgType::kHello, EncodeHello(hello), kHandshakeTimeoutMs));
  CF_ASSIGN_OR_RETURN(auto challenge_bytes, conn.Expect(MsgType::kChallenge, kHandshakeTimeoutMs));
  auto challenge = DecodeChallenge(challenge_bytes);
  auto refuse = [&conn](absl::Status why) {
    conn.SendError(why);
    conn.Shutdown();
    return absl::Status(why.code(),
                        absl::StrCat("store daemon ", conn.peer(), ": ", why.message()));
  };
  if (!challenge.ok()) return refuse(challenge.status());
  if (challenge->version < hello.min_version || challenge->version > hello.max_version) {
    return refuse(absl::FailedPreconditionError(
        absl::StrCat("protocol version mismatch: server chose ", challenge->version,
                     ", client speaks ", hello.min_version, "..", hello.max_version)));
  }
  const AuthProof expected = Proof(key, kServerProofLabel, hello.client_nonce,
                                   challenge->server_nonce, challenge->store_uuid);
  if (!ProofEquals(expected, challenge->server_proof)) {
    return refuse(absl::UnauthenticatedError(
        "authentication failed: the daemon does not hold our key (wrong key file?)"));
  }
  if (!expect_uuid.empty() && challenge->store_uuid != expect_uuid) {
    return refuse(absl::FailedPreconditionError(
        absl::StrCat("the daemon serves store ", challenge->store_uuid, ", not ", expect_uuid)));
  }
  Auth auth;
  auth.client_proof = Proof(key, kClientProofLabel, hello.client_nonce, challenge->server_nonce,
                            challenge->store_uuid);
  CF_RETURN_IF_ERROR(conn.Send(MsgType::kAuth, EncodeAuth(auth), kHandshakeTimeoutMs));
  auto welcome_bytes = conn.Expect(MsgType::kWelcome, kHandshakeTimeoutMs);
  if (!welcome_bytes.ok()) {
    return absl::Status(
        welcome_bytes.status().code(),
        absl::StrCat("store daemon refused us: ", welcome_bytes.status().message()));
  }
  auto welcome = DecodeWelcome(*welcome_bytes);
  if (!welcome.ok()) return refuse(welcome.status());
  if (welcome->info.uuid != challenge->store_uuid) {
    return refuse(absl::InvalidArgumentError("WELCOME names another store than CHALLENGE"));
  }
  if (welcome->max_frame > max_frame) {
    return refuse(absl::ResourceExhaustedError(
        absl::StrCat("the daemon announces frames of up to ", welcome->max_frame,
                     " bytes; this client accepts at most ", max_frame)));
  }
  conn.set_max_recv_frame(welcome->max_frame);
  conn.set_max_send_frame(welcome->max_frame);
  return welcome;
}

absl::StatusOr<const ClientKey*> ServerHandshake(
    WireConn& conn, const KeyRing& keys, Welcome welcome,
    const std::function<absl::Status(const ClientKey&, Welcome*)>& admit) {
  const int64_t deadline = NowMs() + kHandshakeTimeoutMs;
  auto left = [deadline] { return std::max<int64_t>(1, deadline - NowMs()); };
  // Sends `told` (what the peer may learn) and returns `why` (what the log says).
  auto refuse = [&conn](const absl::Status& told, absl::Status why) {
    conn.SendError(told);
    conn.Shutdown();
    return why;
  };
  CF_ASSIGN_OR_RETURN(auto hello_bytes, conn.Expect(MsgType::kHello, left()));
  auto hello = DecodeHello(hello_bytes);
  if (!hello.ok()) return refuse(hello.status(), hello.status());
  auto version = ChooseVersion(hello->min_version, hello->max_version);
  if (!version.ok()) return refuse(version.status(), version.status());
  const std::string key_name =
      hello->key_name.empty() ? std::string(kDefaultKeyName) : hello->key_name;
  const ClientKey* client = keys.Find(key_name);
  // An unknown name goes through the same exchange with a key nobody holds, so that a peer
  // cannot tell "no such key" from "wrong key" and list the names.
  AuthKey key;
  if (client != nullptr) {
    key = client->key;
  } else {
    const Nonce random = RandomNonce();
    std::copy(random.begin(), random.end(), key.bytes.begin());
  }
  // From here on, what went wrong says which key the peer named (for the daemon's log).
  auto named = [&](const absl::Status& st) {
    return absl::Status(
        st.code(), absl::StrCat(st.message(), client == nullptr ? " (no key named '" : " (key '",
                                key_name, "')"));
  };
  Challenge challenge;
  challenge.version = *version;
  challenge.server_nonce = RandomNonce();
  challenge.store_uuid = welcome.info.uuid;
  challenge.server_proof = Proof(key, kServerProofLabel, hello->client_nonce,
                                 challenge.server_nonce, challenge.store_uuid);
  if (absl::Status st = conn.Send(MsgType::kChallenge, EncodeChallenge(challenge), left());
      !st.ok()) {
    return named(st);
  }
  auto auth_bytes = conn.Expect(MsgType::kAuth, left());
  if (!auth_bytes.ok()) return named(auth_bytes.status());
  auto auth = DecodeAuth(*auth_bytes);
  if (!auth.ok()) return refuse(auth.status(), named(auth.status()));
  const AuthProof expected = Proof(key, kClientProofLabel, hello->client_nonce,
                                   challenge.server_nonce, challenge.store_uuid);
  const absl::Status failed = absl::UnauthenticatedError("authentication failed");
  if (client == nullptr || !ProofEquals(expected, auth->client_proof)) {
    return refuse(failed, named(failed));
  }
  if (admit) {
    if (absl::Status admitted = admit(*client, &welcome); !admitted.ok()) {
      return refuse(admitted, named(admitted));
    }
  }
  conn.set_max_send_frame(welcome.max_frame);
  if (absl::Status st = conn.Send(MsgType::kWelcome, EncodeWelcome(welcome), left()); !st.ok()) {
    return named(st);
  }
  conn.set_max_recv_frame(welcome.max_frame);
  if (welcome.prefix_checksum) conn.set_prefix_checksum_type(MsgType::kAppend);
  return client;
}

absl::Status ServerHandshake(WireConn& conn, const AuthKey& key, const Welcome& welcome,
                             const std::function<absl::Status()>& admit) {
  const KeyRing keys = KeyRing::Single(key);
  std::function<absl::Status(const ClientKey&, Welcome*)> admit_key;
  if (admit) admit_key = [&admit](const ClientKey&, Welcome*) { return admit(); };
  return ServerHandshake(conn, keys, welcome, admit_key).status();
}

}  // namespace chunkferry::engine
