#include "engine/wire/tls.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/wire/auth.h"
#include "io/fd.h"
#include "io/status_macros.h"

namespace chunkferry::engine {
namespace {

// TLS 1.3 suites: AES-GCM first (AES-NI), ChaCha20 for machines without it.
constexpr char kSuites[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

// Where an SSL_CTX keeps its TlsContext (for the verify callback).
int ContextIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// OpenSSL's error queue as text (emptied), or `fallback`.
std::string OpenSslErrors(const char* fallback) {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    absl::StrAppend(&out, out.empty() ? "" : "; ", buf);
  }
  return out.empty() ? std::string(fallback) : out;
}

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": ", OpenSslErrors("unknown error")));
}

// The peer's certificate is checked against the pin at depth 0: a pinned certificate needs no
// CA (self-signed is the usual case), so chain errors are forgiven unless a CA file is also set.
int VerifyPeer(int preverify_ok, X509_STORE_CTX* store) {
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  const auto* context =
      static_cast<const TlsContext*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ContextIndex()));
  if (context == nullptr || !context->pinned()) return preverify_ok;
  const bool with_ca = !context->options().ca_file.empty();
  if (X509_STORE_CTX_get_error_depth(store) > 0) return with_ca ? preverify_ok : 1;
  if (with_ca && !preverify_ok) return 0;
  unsigned char digest[32];
  unsigned int length = 0;
  X509* cert = X509_STORE_CTX_get_current_cert(store);
  if (cert == nullptr || X509_digest(cert, EVP_sha256(), digest, &length) != 1 || length != 32 ||
      !context->PinMatches(digest)) {
    X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REJECTED);
    return 0;
  }
  X509_STORE_CTX_set_error(store, X509_V_OK);
  return 1;
}

// True for the reasons that mean "the certificate was not accepted", on either side.
bool IsCertificateReason(int reason) {
  switch (reason) {
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
      return true;
    default:
      return false;
  }
}

}  // namespace

bool TlsContext::PinMatches(const unsigned char* sha256) const {
  return pinned_ && CRYPTO_memcmp(pin_, sha256, sizeof(pin_)) == 0;
}

TlsContext::~TlsContext() {
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
}

absl::StatusOr<std::shared_ptr<TlsContext>> TlsContext::Make(const TlsOptions& options,
                                                             TlsRole role) {
  std::shared_ptr<TlsContext> c(new TlsContext(role, options));
  ERR_clear_error();
  c->ctx_ = SSL_CTX_new(role == TlsRole::kClient ? TLS_client_method() : TLS_server_method());
  if (c->ctx_ == nullptr) return Invalid("cannot make a TLS context");
  SSL_CTX* ctx = c->ctx_;
  SSL_CTX_set_ex_data(ctx, ContextIndex(), c.get());
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_ciphersuites(ctx, kSuites) != 1) {
    return Invalid("cannot restrict TLS to version 1.3");
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET);
  // No resumption: a daemon's connections are few and long, tickets would only cost bytes.
  SSL_CTX_set_num_tickets(ctx, 0);

  if (!options.peer_sha256.empty()) {
    // 32 bytes in hex, as a key is written: the key parser reads it.
    absl::StatusOr<AuthKey> pin =
        ParseKeyHex(absl::StrReplaceAll(options.peer_sha256, {{":", ""}}));
    if (!pin.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("peer fingerprint '", options.peer_sha256,
                       "' is not a SHA-256 (64 hex characters, ':' between bytes allowed)"));
    }
    static_assert(sizeof(c->pin_) == kAuthKeySize);
    std::copy(pin->bytes.begin(), pin->bytes.end(), c->pin_);
    c->pinned_ = true;
  }
  if (!options.cert_file.empty() || !options.key_file.empty()) {
    if (options.cert_file.empty() || options.key_file.empty()) {
      return absl::InvalidArgumentError(
          "a TLS certificate needs its key, and a key its certificate");
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, options.cert_file.c_str()) != 1) {
      return Invalid(absl::StrCat("TLS certificate ", options.cert_file));
    }
    {
      CF_ASSIGN_OR_RETURN(io::Fd fd, io::OpenFile(options.key_file, O_RDONLY | O_NONBLOCK));
      CF_RETURN_IF_ERROR(io::CheckPrivateFile(fd.get(), "TLS key file", options.key_file));
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, options.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      return Invalid(absl::StrCat("TLS key ", options.key_file,
                                  " is not a PEM key or does not match certificate ",
                                  options.cert_file));
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      return Invalid(absl::StrCat("TLS key ", options.key_file, " does not match certificate ",
                                  options.cert_file));
    }
  } else if (role == TlsRole::kServer) {
    return absl::InvalidArgumentError("a TLS server needs a certificate and its key");
  }
  if (!options.ca_file.empty() &&
      SSL_CTX_load_verify_locations(ctx, options.ca_file.c_str(), nullptr) != 1) {
    return Invalid(absl::StrCat("TLS CA file ", options.ca_file));
  }
  const bool checks_peer = !options.ca_file.empty() || c->pinned_;
  if (role == TlsRole::kClient) {
    if (!checks_peer) {
      return absl::InvalidArgumentError(
          "a TLS client needs a CA file or the server's fingerprint to check the server by");
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, VerifyPeer);
  } else if (checks_peer) {
    // Mutual TLS: a client without a certificate the CA signed (or the pinned one) is refused.
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, VerifyPeer);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  return c;
}

TlsChannel::TlsChannel(std::shared_ptr<TlsContext> context, size_t ring_bytes)
    : context_(std::move(context)) {
  ssl_ = SSL_new(context_->ctx());
  BIO* internal = nullptr;
  const size_t ring = std::max(ring_bytes, kSmallRing);
  if (ssl_ == nullptr || BIO_new_bio_pair(&internal, ring, &network_, ring) != 1) {
    std::fprintf(stderr, "chunkferry: fatal: cannot allocate a TLS connection\n");
    std::abort();
  }
  SSL_set_bio(ssl_, internal, internal);  // the SSL owns its end from here
  // Write takes what fits and is called again with the rest (see tls.h).
  SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (context_->role() == TlsRole::kClient) {
    const std::string& name = context_->options().server_name;
    if (!name.empty()) {
      SSL_set_tlsext_host_name(ssl_, name.c_str());
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
      // An address is checked as an IP SAN, anything else as a DNS name.
      if (X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str()) != 1) {
        ERR_clear_error();
        SSL_set1_host(ssl_, name.c_str());
      }
    }
    SSL_set_connect_state(ssl_);
  } else {
    SSL_set_accept_state(ssl_);
  }
}

TlsChannel::~TlsChannel() {
  if (ssl_ != nullptr) SSL_free(ssl_);
  if (network_ != nullptr) BIO_free(network_);
}

absl::Span<uint8_t> TlsChannel::InputSpace() {
  char* room = nullptr;
  const ossl_ssize_t n = BIO_nwrite0(network_, &room);
  if (n <= 0) return {};
  return absl::MakeSpan(reinterpret_cast<uint8_t*>(room), static_cast<size_t>(n));
}

void TlsChannel::CommitInput(size_t n) {
  char* room = nullptr;
  if (n > 0) (void)BIO_nwrite(network_, &room, static_cast<int>(n));
}

size_t TlsChannel::Received(absl::Span<const uint8_t> ciphertext) {
  size_t at = 0;
  while (at < ciphertext.size()) {
    const absl::Span<uint8_t> room = InputSpace();
    if (room.empty()) break;
    const size_t n = std::min(room.size(), ciphertext.size() - at);
    std::memcpy(room.data(), ciphertext.data() + at, n);
    CommitInput(n);
    at += n;
  }
  return at;
}

absl::Span<const uint8_t> TlsChannel::Output() const {
  char* data = nullptr;
  const ossl_ssize_t n = BIO_nread0(network_, &data);
  if (n <= 0) return {};
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(data), static_cast<size_t>(n));
}

void TlsChannel::ConsumeOutput(size_t n) {
  char* data = nullptr;
  if (n > 0) (void)BIO_nread(network_, &data, static_cast<int>(n));
}

size_t TlsChannel::pending() const { return BIO_ctrl_pending(network_); }

size_t TlsChannel::TakePending(std::string* out, size_t max) {
  size_t taken = 0;
  while (taken < max) {
    const absl::Span<const uint8_t> run = Output();
    if (run.empty()) break;
    const size_t n = std::min(run.size(), max - taken);
    out->append(reinterpret_cast<const char*>(run.data()), n);
    ConsumeOutput(n);
    taken += n;
  }
  return taken;
}

absl::Status TlsChannel::Failed(int ret, const char* what) {
  const int error = SSL_get_error(ssl_, ret);
  const unsigned long e = ERR_peek_error();
  const long verify = SSL_get_verify_result(ssl_);
  std::string reason = OpenSslErrors(error == SSL_ERROR_SYSCALL || error == SSL_ERROR_ZERO_RETURN
                                         ? "the peer closed the TLS connection"
                                         : "TLS failed");
  if (verify != X509_V_OK && !established_) {
    return absl::UnauthenticatedError(absl::StrCat("TLS ", what,
                                                   ": the peer's certificate was "
                                                   "refused: ",
                                                   X509_verify_cert_error_string(verify)));
  }
  if (e != 0 && ERR_GET_LIB(e) == ERR_LIB_SSL && IsCertificateReason(ERR_GET_REASON(e))) {
    return absl::UnauthenticatedError(absl::StrCat("TLS ", what, ": ", reason));
  }
  if (established_ && e != 0 && ERR_GET_LIB(e) == ERR_LIB_SSL &&
      ERR_GET_REASON(e) == SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC) {
    return absl::DataLossError(
        absl::StrCat("TLS ", what,
                     ": a record failed its authentication (altered or injected "
                     "bytes): ",
                     reason));
  }
  return absl::InvalidArgumentError(absl::StrCat("TLS ", what, ": ", reason));
}

absl::StatusOr<bool> TlsChannel::Handshake() {
  if (established_) return true;
  ERR_clear_error();
  const int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    established_ = true;
    return true;
  }
  // SSL_get_error right away: it reads the thread's error queue, which anything else may touch.
  const int error = SSL_get_error(ssl_, r);
  // WANT_WRITE cannot last: a handshake flight is far smaller than the output ring.
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) return false;
  return Failed(r, "handshake");
}

absl::StatusOr<size_t> TlsChannel::Write(absl::Span<const uint8_t> plaintext) {
  if (!established_) return absl::FailedPreconditionError("TLS write before the handshake ended");
  size_t at = 0;
  while (at < plaintext.size()) {
    ERR_clear_error();
    size_t written = 0;
    const int r = SSL_write_ex(ssl_, plaintext.data() + at, plaintext.size() - at, &written);
    if (r == 1) {
      at += written;
      continue;
    }
    if (SSL_get_error(ssl_, r) == SSL_ERROR_WANT_WRITE) break;  // the output ring is full
    return Failed(r, "write");
  }
  return at;
}

absl::StatusOr<size_t> TlsChannel::Read(absl::Span<uint8_t> buf) {
  if (!established_) return absl::FailedPreconditionError("TLS read before the handshake ended");
  if (buf.empty()) return 0;
  ERR_clear_error();
  size_t got = 0;
  const int r = SSL_read_ex(ssl_, buf.data(), buf.size(), &got);
  if (r == 1) return got;
  const int error = SSL_get_error(ssl_, r);
  // WANT_WRITE: an answer to the peer (a key update) waits for room in the output ring.
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) return 0;
  if (error == SSL_ERROR_ZERO_RETURN) {
    return absl::UnavailableError("the peer closed the TLS connection");
  }
  return Failed(r, "read");
}

void TlsChannel::Close() {
  ERR_clear_error();
  (void)SSL_shutdown(ssl_);
  ERR_clear_error();
}

std::string TlsChannel::Description() const {
  if (!established_) return "";
  return absl::StrCat(SSL_get_version(ssl_), " ", SSL_get_cipher_name(ssl_));
}

absl::StatusOr<std::string> CertificateSha256(const std::string& cert_file) {
  FILE* f = std::fopen(cert_file.c_str(), "r");
  if (f == nullptr) return io::ErrnoStatus(errno, "open", cert_file);
  X509* cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (cert == nullptr) return Invalid(absl::StrCat("TLS certificate ", cert_file));
  unsigned char digest[32];
  unsigned int length = 0;
  const bool ok = X509_digest(cert, EVP_sha256(), digest, &length) == 1 && length == 32;
  X509_free(cert);
  if (!ok) return Invalid(absl::StrCat("fingerprint of ", cert_file));
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), 32));
}

}  // namespace chunkferry::engine
