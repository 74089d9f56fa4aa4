// Certificates for tests and benchmarks of TLS: a key and its X.509 certificate, made with
// OpenSSL's API and written as PEM files (key mode 0600). A CA is self-signed; a leaf carries
// the SANs DNS:store-b.example and IP:127.0.0.1 and is signed by its issuer.
#ifndef CHUNKFERRY_TESTS_TLS_IDENTITY_H_
#define CHUNKFERRY_TESTS_TLS_IDENTITY_H_

#include <string>

#include "absl/status/status.h"

typedef struct evp_pkey_st EVP_PKEY;
typedef struct x509_st X509;

namespace chunkferry::testing {

class TlsIdentity {
 public:
  TlsIdentity() = default;
  ~TlsIdentity();
  TlsIdentity(const TlsIdentity&) = delete;
  TlsIdentity& operator=(const TlsIdentity&) = delete;

  // Makes a P-256 key and a certificate named `name` (CN), valid from an hour ago for a day,
  // signed by `issuer` (nullptr: self-signed), and writes `dir`/`name`.crt and .key.
  [[nodiscard]] absl::Status Make(const std::string& dir, const std::string& name, bool ca,
                                  const TlsIdentity* issuer);

  const std::string& cert_file() const { return cert_file_; }
  const std::string& key_file() const { return key_file_; }

 private:
  EVP_PKEY* key_ = nullptr;
  X509* cert_ = nullptr;
  std::string cert_file_, key_file_;
};

}  // namespace chunkferry::testing

#endif  // CHUNKFERRY_TESTS_TLS_IDENTITY_H_
