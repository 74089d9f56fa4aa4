// The store daemon's engine: serves one writable store (a LocalStore, or any store through
// served_store.h: a RADOS pool) to many authenticated connections over the wire protocol
// (docs/PROTOCOL.md, server side). `chunkferry serve` wraps it.
//
// Threads: one accept thread, and one thread per connection (at most max_connections; beyond
// that a connection is answered ERROR ResourceExhausted "too many connections" and closed). Each
// connection thread has its own WireConn, hence its own I/O queue. Records of an APPEND are
// checked (decompressed and rehashed, or checksummed) on the connection's thread without any
// lock, so several connections verify on several cores; only the store calls themselves run
// under one store-wide mutex. A READ takes that mutex only while it uses the store (a local
// store's: to find its records and open their packs, then read on the connection's own file
// queue; a pool's: to read a slice of ids at a time into memory), and sends without it, so a
// slow reader holds up no other connection.
//
// Memory: each connection holds at most one received frame (max_frame), one RECORDS frame being
// built (max_frame), one decoded record (16 MiB) and, once it has served a READ, its read
// buffers (8 × 1 MiB); nothing is read ahead.
#ifndef CHUNKFERRY_ENGINE_WIRE_STORE_SERVER_H_
#define CHUNKFERRY_ENGINE_WIRE_STORE_SERVER_H_

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "engine/local/garbage_collector.h"
#include "engine/local/local_store.h"
#include "engine/wire/auth.h"
#include "engine/wire/key_authority.h"
#include "engine/wire/key_ring.h"
#include "engine/wire/served_store.h"
#include "engine/wire/tls.h"
#include "engine/wire/wire_conn.h"
#include "engine/wire/wire_frame.h"
#include "engine/wire/wire_messages.h"
#include "io/fd.h"
#include "io/net.h"
#include "io/queue.h"

namespace chunkferry::engine {

// The steps that make a pushed group durable, in their order (docs/FORMATS.md, "Commit order").
enum class CommitStep {
  kFlushed,            // FLUSH: the session's records are durable and indexed
  kManifestPublished,  // PUT_MANIFEST(_DELTA): one volume backup's manifest is published
  kGroupPublished,     // PUT_GROUP: the group record is published
};
// "flush", "manifest", "group".
const char* CommitStepName(CommitStep step);

struct ServerOptions {
  io::Endpoint listen;  // port 0: any free port (see StoreServer::port())
  AuthKey key;          // the shared key clients must prove they hold, unless `keys` is set
  // Several named keys with their own rights and limits (a keys file); when set, `key` is unused.
  // StoreServer::ReplaceKeys puts new ones in force while the server runs.
  std::optional<KeyRing> keys;
  // Where each key's added bytes are counted across restarts (KeyAuthority); empty: in memory.
  std::string key_usage_file;
  // When set (a server context), every connection speaks TLS 1.3 from its first byte, and the
  // key handshake runs inside it. A client that starts in plain text is answered one plain
  // ERROR frame saying so, and closed.
  std::shared_ptr<TlsContext> tls;
  // Authenticated connections served at once; one more is answered ERROR ResourceExhausted
  // ("too many connections") in place of WELCOME, and the client retries later.
  size_t max_connections = 16;
  // Connections still in their handshake (not authenticated), counted apart so that sockets
  // that never authenticate cannot lock out clients that do: when this many are pending, a new
  // connection pushes out the one that has been pending longest (an honest handshake takes a
  // round trip or two, so it is rarely the oldest). Each pending connection has a thread.
  size_t max_pending_handshakes = 32;
  uint32_t max_frame = kDefaultMaxFrame;        // announced in WELCOME; >= kMinMaxFrame
  uint64_t max_inflight = kDefaultMaxInflight;  // announced in WELCOME; >= max_frame
  // Announces prefix_checksum=1 in WELCOME and takes APPEND frames with kFrameFlagPrefixChecksum
  // (wire_frame.h). Off only to play a daemon that predates the flag (the tests).
  bool prefix_checksum = true;
  int64_t idle_timeout_ms = 300'000;         // longest wait for a connection's next request
  io::Backend backend = io::Backend::kAuto;  // of the connections' queues
  // How the daemon checks every record it receives; its own choice, not the sender's. kFull
  // decompresses and recomputes every chunk id, so no client (not even one holding the key) can
  // plant bytes under an id they do not hash to. kChecksum trusts the senders' ids (peers the
  // operator controls, on a trusted network); an APPEND that asks for full is still checked fully.
  VerifyMode verify = VerifyMode::kFull;
  // Free space a received manifest (or delta) must leave on the store's file system; one that
  // would not is refused at once (ERROR ResourceExhausted, connection closed).
  uint64_t min_free_bytes = 64u << 20;
  // Called between the steps of a collection (GC), without the store mutex, with the phase the
  // next step belongs to: the tests run other requests at chosen points of a collection.
  std::function<void(GarbageCollector::Phase)> gc_between_steps;
  // Called on the connection's thread right after a commit step succeeded, before it is
  // acknowledged: the crash tests kill the daemon there (`chunkferry serve` with
  // CHUNKFERRY_SERVE_CRASH_AT), between one durable step and the next. May be empty.
  std::function<void(CommitStep)> after_commit;
  // Receives one line per event (connection accepted, authenticated, refused, protocol error,
  // closed with its totals, …). Called from any thread, one call at a time. May be empty.
  std::function<void(const std::string&)> log;
};

// Thread-safe: Start, Stop, port and WithStore may be called from any thread.
class StoreServer {
 public:
  // `store` must be writable and outlive the server; the server drives it from its connection
  // threads in turn (LocalStore::Open makes its queue usable from several threads).
  StoreServer(LocalStore* store, ServerOptions options);
  // Serves any store (served_store.h: a pool); its store must be writable and outlive the server.
  StoreServer(std::unique_ptr<ServedStore> served, ServerOptions options);
  // Stops (see Stop()).
  ~StoreServer();
  StoreServer(const StoreServer&) = delete;
  StoreServer& operator=(const StoreServer&) = delete;

  // Checks the options, listens and starts accepting. InvalidArgument for options out of range;
  // the Listen error (e.g. AlreadyExists for an address in use); FailedPrecondition when called
  // twice.
  [[nodiscard]] absl::Status Start();
  // The port listened on (the bound one when options.listen.port was 0); 0 before Start().
  uint16_t port() const { return port_.load(); }

  // Stops accepting, shuts every connection's socket down (their operations fail at once), and
  // waits for all threads. Store calls in progress finish first; nothing is flushed (the owner
  // closes the store). Idempotent.
  void Stop();

  // Runs `fn` on the store with the store mutex held: to look at the store while it is served.
  // FailedPrecondition when the served store is not a local one.
  [[nodiscard]] absl::Status WithStore(const std::function<absl::Status(LocalStore&)>& fn);

  // Connections open now (including those still in their handshake).
  size_t active_connections();

  // Puts `keys` in force for new handshakes and for every request of the open connections (a
  // connection whose key is gone or changed is closed at its next request). Before Start, it
  // replaces the options' keys.
  void ReplaceKeys(KeyRing keys);
  // Bytes key `name` has added to the store (its quota usage).
  uint64_t key_usage(absl::string_view name);

 private:
  // One accepted connection. The socket is owned by the connection's thread (in its WireConn);
  // `fd` lets Stop() shut it down and is cleared, under conns_mu_, before the socket is closed.
  struct Conn {
    uint64_t id = 0;
    std::string peer;
    int fd = -1;
    bool done = false;
    bool authenticated = false;
    std::string key_name;  // once authenticated
    bool evicted = false;  // pushed out of the handshake budget: its socket is shut down
    std::thread thread;
  };

  void AcceptLoop();
  // Makes room for a new pending handshake: shuts down the longest-pending one when the budget
  // is used up. False when even that cannot help (evicted ones have not ended yet). Needs
  // conns_mu_.
  bool MakeRoomForAHandshakeLocked(uint64_t id, const std::string& peer);
  // Admits a connection authenticated with `key`, or ResourceExhausted when max_connections are
  // served, or the key's own limit of connections; lowers `welcome`'s limits to the key's.
  absl::Status Admit(Conn* conn, const ClientKey& key, Welcome* welcome);
  // Answers a connection beyond max_connections with ERROR and closes it.
  void Refuse(io::Fd socket);
  void ServeConnection(Conn* conn, io::Fd socket);
  // The handshake, then the session's requests until it ends. May throw std::bad_alloc.
  void HandshakeAndServe(Conn* conn, WireConn& wc,
                         const std::function<void(const std::string&)>& log);
  // Joins the threads of connections that have ended.
  void ReapFinished();
  void Log(const std::string& line);

  const std::unique_ptr<ServedStore> served_;  // null: no store (Start refuses)
  LocalStore* const local_;                    // the served store when it is a local one
  const ServerOptions options_;
  Welcome welcome_;
  KeyAuthority authority_;

  std::mutex store_mu_;                  // guards every call into the served store
  std::atomic<bool> gc_running_{false};  // one collection at a time
  std::mutex log_mu_;

  std::mutex conns_mu_;
  std::condition_variable conn_ended_;  // a connection's thread is done (conns_mu_)
  std::list<Conn> conns_;
  uint64_t next_conn_id_ = 1;

  std::mutex start_mu_;  // serializes Start and Stop
  bool started_ = false;
  std::atomic<bool> stopping_{false};
  io::Fd listen_fd_;
  std::atomic<uint16_t> port_{0};
  std::thread accept_thread_;
};

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_WIRE_STORE_SERVER_H_
