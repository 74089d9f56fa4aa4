// What TLS 1.3 costs the CPU per byte on this machine, before any socket: records encrypted by
// one TlsChannel and decrypted by another in memory (engine/wire/tls.h), per suite, against a
// plain memcpy of the same bytes (what the data path does without TLS). Also the handshake: a
// full one per iteration (P-256 certificates, ECDHE), what each new connection pays.
#include <benchmark/benchmark.h>
#include <openssl/ssl.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine/wire/tls.h"
#include "tests/tls_identity.h"

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
      if (!client.Write(data).ok()) return state.SkipWithError("write failed");
      Carry(client, server, scratch);
      for (size_t got = 0; got < piece;) {
        auto n = server.Read(absl::MakeSpan(out));
        if (!n.ok() || *n == 0) return state.SkipWithError("read failed");
        got += *n;
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

}  // namespace
}  // namespace chunkferry::engine
