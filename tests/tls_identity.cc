#include "tests/tls_identity.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdio>

#include "absl/strings/str_cat.h"

namespace chunkferry::testing {
namespace {

bool AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) return false;
  const bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

}  // namespace

TlsIdentity::~TlsIdentity() {
  X509_free(cert_);
  EVP_PKEY_free(key_);
}

absl::Status TlsIdentity::Make(const std::string& dir, const std::string& name, bool ca,
                               const TlsIdentity* issuer) {
  static std::atomic<long> serial{1};
  key_ = EVP_EC_gen("P-256");
  cert_ = X509_new();
  if (key_ == nullptr || cert_ == nullptr) return absl::InternalError("cannot make a key");
  X509_set_version(cert_, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert_), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert_), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert_), 24 * 3600);
  X509_set_pubkey(cert_, key_);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert_), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(name.c_str()), -1, -1, 0);
  X509* issuer_cert = issuer != nullptr ? issuer->cert_ : cert_;
  X509_set_issuer_name(cert_, X509_get_subject_name(issuer_cert));
  const bool extended =
      ca ? AddExtension(cert_, issuer_cert, NID_basic_constraints, "critical,CA:TRUE") &&
               AddExtension(cert_, issuer_cert, NID_key_usage, "critical,keyCertSign,cRLSign")
         : AddExtension(cert_, issuer_cert, NID_subject_alt_name,
                        "DNS:store-b.example,IP:127.0.0.1");
  if (!extended) return absl::InternalError("cannot add a certificate extension");
  if (X509_sign(cert_, issuer != nullptr ? issuer->key_ : key_, EVP_sha256()) <= 0) {
    return absl::InternalError("cannot sign a certificate");
  }
  cert_file_ = absl::StrCat(dir, "/", name, ".crt");
  key_file_ = absl::StrCat(dir, "/", name, ".key");
  FILE* f = std::fopen(cert_file_.c_str(), "w");
  if (f == nullptr) return absl::InternalError(absl::StrCat("cannot write ", cert_file_));
  const bool cert_ok = PEM_write_X509(f, cert_) == 1;
  std::fclose(f);
  f = std::fopen(key_file_.c_str(), "w");
  if (f == nullptr) return absl::InternalError(absl::StrCat("cannot write ", key_file_));
  ::fchmod(fileno(f), 0600);
  const bool key_ok = PEM_write_PrivateKey(f, key_, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  std::fclose(f);
  if (!cert_ok || !key_ok) return absl::InternalError("cannot write PEM files");
  return absl::OkStatus();
}

}  // namespace chunkferry::testing
