// The store descriptor: a few `key=value` lines naming a store's format, version, uuid and how it
// cuts and compresses chunks. A local store keeps it in the file STORE, a RADOS store in the object
// `chunkferry.store`; both write and read it here, so the two agree on every key. The chunk-id key
// (the secret that keys ids, in hex) is kept beside it and checked here too.
#ifndef CHUNKFERRY_ENGINE_STORE_STORE_DESCRIPTOR_H_
#define CHUNKFERRY_ENGINE_STORE_STORE_DESCRIPTOR_H_

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "codec/chunk_id.h"
#include "engine/store/store.h"

namespace chunkferry::engine {

// Keys a kind of store adds to the common ones (a RADOS store's layout); ordered, so that the
// text is the same wherever it is made.
using DescriptorExtras = std::map<std::string, std::string>;

std::string FormatStoreDescriptor(const StoreInfo& info, const DescriptorExtras& extras = {});

// Parses a descriptor; `where` names it in errors. Keys outside the common ones are refused unless
// `extras` is given, which then receives them (the caller checks them). DataLoss for a damaged
// descriptor, FailedPrecondition for a format version this build does not read.
[[nodiscard]] absl::StatusOr<StoreInfo> ParseStoreDescriptor(const std::string& text,
                                                             absl::string_view where,
                                                             DescriptorExtras* extras = nullptr);

// Checks what `store init` was given before anything is made: uuid (empty: a new one is made
// here), record target, id key. Returns the StoreInfo the new store describes.
[[nodiscard]] absl::StatusOr<StoreInfo> NewStoreInfo(const StoreInitOptions& options);

// The hasher a store's id key file (hex, surrounding space allowed) makes.
[[nodiscard]] absl::StatusOr<codec::ChunkHasher> HasherFromIdKey(absl::string_view text);

}  // namespace chunkferry::engine

#endif  // CHUNKFERRY_ENGINE_STORE_STORE_DESCRIPTOR_H_
