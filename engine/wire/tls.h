// TLS 1.3 for the wire protocol, in user space (this kernel has no kTLS: CONFIG_TLS is unset and
// tcp_available_ulp lists only mptcp), as a record layer over memory: a TlsChannel takes the
// ciphertext its socket received and gives the ciphertext to send, so that the connection's own
// io_uring queue keeps moving the bytes and OpenSSL never touches the socket. The ciphertext
// lives in two fixed rings (an OpenSSL BIO pair) that the socket reads into and sends from
// directly: no copy between the socket and OpenSSL, and no buffer that grows. The wire MAC
// handshake (auth.h) still runs inside TLS as the authorization layer: TLS says who the peer is
// on the network (certificates, a CA or a pinned fingerprint), the key says what it may do.
//
// Users: WireConn::StartTls (both sides' handshakes, the daemon's frames) and RemoteStore (its
// pipelined frames, after it takes the channel over from the WireConn).
#ifndef CHUNKFERRY_ENGINE_WIRE_TLS_H_
#define CHUNKFERRY_ENGINE_WIRE_TLS_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct bio_st BIO;

namespace chunkferry::engine {

struct TlsOptions {
  // This side's certificate chain and private key (PEM files). Required for a server; for a
  // client, only with a server that asks for client certificates (mutual TLS).
  std::string cert_file;
  std::string key_file;  // refused when group or others may read it
  // How the peer's certificate is checked: against the CA certificates in `ca_file` (PEM), or
  // by the SHA-256 fingerprint of the peer's own certificate (`peer_sha256`, 64 hex characters,
  // ':' between bytes allowed). At least one for a client; for a server, either one makes
  // client certificates mandatory (mutual TLS).
  std::string ca_file;
  std::string peer_sha256;
  // Client with `ca_file`: the name the server's certificate must carry (DNS or IP), also sent
  // as SNI. Empty: the certificate's chain is checked, not its name.
  std::string server_name;
};

enum class TlsRole { kClient, kServer };

// A configured SSL_CTX (TLS 1.3 only, AES-GCM and ChaCha20 suites). Shared by the connections
// of one side; thread-safe.
class TlsContext {
 public:
  // InvalidArgument naming the file or field that is wrong (unreadable PEM, a key that does not
  // match the certificate, a malformed fingerprint, a client with nothing to check the server
  // by); PermissionDenied for a key file others may read.
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<TlsContext>> Make(const TlsOptions& options,
                                                                        TlsRole role);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  TlsRole role() const { return role_; }
  SSL_CTX* ctx() const { return ctx_; }
  const TlsOptions& options() const { return options_; }
  // Whether the peer's certificate is pinned, and whether `sha256` (32 bytes) is the pin.
  bool pinned() const { return pinned_; }
  bool PinMatches(const unsigned char* sha256) const;

 private:
  TlsContext(TlsRole role, TlsOptions options) : role_(role), options_(std::move(options)) {}
  const TlsRole role_;
  const TlsOptions options_;
  SSL_CTX* ctx_ = nullptr;
  unsigned char pin_[32] = {};
  bool pinned_ = false;
};

// One connection's TLS state over two rings of ciphertext, one each way. Not thread-safe (one
// connection, one thread at a time).
class TlsChannel {
 public:
  // Ring sizes: what the daemon and its clients use (a send of up to this much at once), and
  // what the API daemon's connections use (small requests; many connections).
  static constexpr size_t kStreamRing = 512 << 10;
  static constexpr size_t kSmallRing = 64 << 10;

  // `ring_bytes` (at least 64 KiB, so that a whole record always fits) for each direction.
  explicit TlsChannel(std::shared_ptr<TlsContext> context, size_t ring_bytes = kStreamRing);
  ~TlsChannel();
  TlsChannel(const TlsChannel&) = delete;
  TlsChannel& operator=(const TlsChannel&) = delete;

  // Ciphertext in, without a copy: receive into InputSpace() (contiguous room in the input ring;
  // empty only while it is full of records not yet read: Read first), then CommitInput with the
  // bytes received. The space stays put while a receive into it is in flight, as long as no Read
  // or Handshake runs meanwhile.
  absl::Span<uint8_t> InputSpace();
  void CommitInput(size_t n);
  // Copies as much of `ciphertext` as the input ring has room for; returns how much.
  size_t Received(absl::Span<const uint8_t> ciphertext);

  // Ciphertext out, without a copy: Output() is the oldest contiguous run waiting to be sent; it
  // stays put until ConsumeOutput says how much of it the socket took, whatever the channel
  // writes meanwhile (records, a key update answered by Read, alerts).
  absl::Span<const uint8_t> Output() const;
  void ConsumeOutput(size_t n);
  // Ciphertext waiting to be sent in all (Output() may be less: the ring wraps).
  size_t pending() const;
  // Moves up to `max` bytes of pending ciphertext to the end of *out; returns how many.
  size_t TakePending(std::string* out, size_t max = SIZE_MAX);

  // Advances the handshake with what was received. True once it is complete; false while it
  // needs more ciphertext from the peer (send pending() first). Unauthenticated when the peer's
  // certificate is refused (chain, name or fingerprint), InvalidArgument for anything else that
  // is not TLS 1.3 as configured (a plain-text peer, an alert), with OpenSSL's reason.
  [[nodiscard]] absl::StatusOr<bool> Handshake();
  bool established() const { return established_; }

  // Encrypts from the front of `plaintext` as much as the output ring has room for, and returns
  // how many plaintext bytes it took: fewer than all (maybe 0) when the ring is full — send
  // Output() and call again with the bytes not taken, unchanged (OpenSSL may hold their record
  // half written).
  [[nodiscard]] absl::StatusOr<size_t> Write(absl::Span<const uint8_t> plaintext);
  // Decrypts into `buf` what the ciphertext received so far holds. 0 when more ciphertext is
  // needed; Unavailable at the peer's close_notify; DataLoss for a record that fails its
  // authentication (altered or injected bytes).
  [[nodiscard]] absl::StatusOr<size_t> Read(absl::Span<uint8_t> buf);
  // Queues a close_notify alert (to send from pending()).
  void Close();

  // The negotiated protocol and suite ("TLSv1.3 TLS_AES_128_GCM_SHA256"); empty before.
  std::string Description() const;

 private:
  absl::Status Failed(int ret, const char* what);

  std::shared_ptr<TlsContext> context_;
  SSL* ssl_ = nullptr;
  // Our end of the BIO pair (OpenSSL holds the other): written with received ciphertext, read
  // for the ciphertext to send.
  BIO* network_ = nullptr;
  bool established_ = false;
};

// The SHA-256 fingerprint of the first certificate in PEM file `cert_file`, as 64 lowercase hex
// characters: what a peer pins (`peer_sha256`).
[[nodiscard]] absl::StatusOr<std::string> CertificateSha256(const std::string& cert_file);

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_WIRE_TLS_H_
