// What TLS 1.3 costs the CPU per byte on this machine, before any socket: records encrypted by
// one TlsChannel and decrypted by another in memory (engine/wire/tls.h), the ciphertext carried
// from one's output ring to the other's input ring by one memcpy (where a socket's two copies
// would be), against a plain memcpy of the same bytes twice (what the data path does without
// TLS). Also the handshake: a
// full one per iteration (P-256 certificates, ECDHE), what each new connection pays.
#include <benchmark/benchmark.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine/wire/tls.h"
#include "tests/tls_identity.h"
#include "tests/tls_pipe.h"

namespace chunkferry::engine {
namespace {

// Certificates made once per process, in a scratch directory.
struct Pki {
  Pki() {
    char tmpl[] = "/tmp/cf-tls-bench-XXXXXX";
    dir = ::mkdtemp(tmpl);
    ok = ca.Make(dir, "ca", true, nullptr).ok() && server.Make(dir, "server", false, &ca).ok();
  }
  std::string dir;
  testing::TlsIdentity ca, server;
  bool ok = false;
};
Pki& GetPki() {
  static Pki* pki = new Pki();
  return *pki;
}

std::shared_ptr<TlsContext> Make(TlsRole role) {
  TlsOptions o;
  if (role == TlsRole::kServer) {
    o.cert_file = GetPki().server.cert_file();
    o.key_file = GetPki().server.key_file();
  } else {
    o.ca_file = GetPki().ca.cert_file();
  }
  auto c = TlsContext::Make(o, role);
  return c.ok() ? *c : nullptr;
}

void Carry(TlsChannel& from, TlsChannel& to, std::string& scratch) {
  scratch.clear();
  from.TakePending(&scratch);
  to.Received({reinterpret_cast<const uint8_t*>(scratch.data()), scratch.size()});
}

bool Connect(TlsChannel& client, TlsChannel& server, std::string& scratch) {
  for (int i = 0; i < 10; ++i) {
    auto c = client.Handshake();
    Carry(client, server, scratch);
    auto s = server.Handshake();
    Carry(server, client, scratch);
    if (!c.ok() || !s.ok()) return false;
    if (*c && *s) return true;
  }
  return false;
}

// Moves state.range(0)-byte writes from client to server, 16 MiB per iteration.
void BM_TlsRecords(benchmark::State& state) {
  auto cc = Make(TlsRole::kClient), sc = Make(TlsRole::kServer);
  if (!GetPki().ok || cc == nullptr || sc == nullptr) return state.SkipWithError("no TLS context");
  TlsChannel client(cc), server(sc);
  std::string scratch;
  if (!Connect(client, server, scratch)) return state.SkipWithError("handshake failed");
  const size_t piece = static_cast<size_t>(state.range(0));
  std::vector<uint8_t> data(piece, 0x5a), out(piece + 1024);
  const size_t per_iter = 16u << 20;
  for (auto _ : state) {
    for (size_t done = 0; done < per_iter; done += piece) {
      // A write larger than the rings goes in turns: encrypt what fits, carry, decrypt.
      size_t sent = 0, got = 0;
      while (got < piece) {
        auto n = client.Write(absl::MakeConstSpan(data).subspan(sent));
        if (!n.ok()) return state.SkipWithError("write failed");
        sent += *n;
        testing::CarryCiphertext(client, server);
        for (;;) {
          auto r = server.Read(absl::MakeSpan(out));
          if (!r.ok()) return state.SkipWithError("read failed");
          if (*r == 0) break;
          got += *r;
        }
        if (*n == 0 && sent < piece && client.pending() == 0) {
          return state.SkipWithError("no progress");
        }
      }
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * per_iter));
  state.SetLabel(client.Description());
}
BENCHMARK(BM_TlsRecords)->Arg(16 << 10)->Arg(256 << 10)->Arg(1 << 20);

// The same bytes copied twice (send buffer, receive buffer): the plain path's floor.
void BM_PlainCopy(benchmark::State& state) {
  const size_t piece = static_cast<size_t>(state.range(0));
  std::vector<uint8_t> data(piece, 0x5a), mid(piece), out(piece);
  const size_t per_iter = 16u << 20;
  for (auto _ : state) {
    for (size_t done = 0; done < per_iter; done += piece) {
      std::memcpy(mid.data(), data.data(), piece);
      benchmark::DoNotOptimize(mid.data());
      std::memcpy(out.data(), mid.data(), piece);
      benchmark::DoNotOptimize(out.data());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * per_iter));
}
BENCHMARK(BM_PlainCopy)->Arg(16 << 10)->Arg(256 << 10)->Arg(1 << 20);

// One full TLS 1.3 handshake (both sides' CPU).
void BM_TlsHandshake(benchmark::State& state) {
  auto cc = Make(TlsRole::kClient), sc = Make(TlsRole::kServer);
  if (!GetPki().ok || cc == nullptr || sc == nullptr) return state.SkipWithError("no TLS context");
  std::string scratch;
  for (auto _ : state) {
    TlsChannel client(cc), server(sc);
    if (!Connect(client, server, scratch)) return state.SkipWithError("handshake failed");
  }
}
BENCHMARK(BM_TlsHandshake)->Unit(benchmark::kMicrosecond);

// Making a client context (OpenSSL's CTX, the CA file or pin read): what each sync process pays
// once before its first handshake.
void BM_TlsClientContext(benchmark::State& state) {
  if (!GetPki().ok) return state.SkipWithError("no certificates");
  for (auto _ : state) {
    if (Make(TlsRole::kClient) == nullptr) return state.SkipWithError("context failed");
  }
}
BENCHMARK(BM_TlsClientContext)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace chunkferry::engine
