// Peers: the seam between a Group and the rest of the cluster.
//
// A PeerPicker tells a Group which peer owns a key; a PeerGetter fetches a
// value from that peer. The gRPC transport implements both; tests can plug in
// in-process fakes. Both must be safe for concurrent use.

#ifndef LCACHE_PEERS_H_
#define LCACHE_PEERS_H_

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "lcache/byte_view.h"

namespace lcache {

class PeerGetter {
 public:
  virtual ~PeerGetter() = default;

  // Fetches `key` of `group` from the peer. Application errors (not found,
  // the getter's own error) come back as the same status codes and messages
  // the owner's Group::Get returned; transport failures as UNAVAILABLE,
  // DEADLINE_EXCEEDED and the like.
  virtual absl::StatusOr<ByteView> Get(std::string_view group, std::string_view key) = 0;
};

class PeerPicker {
 public:
  virtual ~PeerPicker() = default;

  // The peer that owns `key`, or null when this node owns it (or there are
  // no peers). The returned pointer keeps the peer usable for the call even
  // if the peer set changes meanwhile.
  virtual std::shared_ptr<PeerGetter> PickPeer(std::string_view key) = 0;
};

}  // namespace lcache

#endif  // LCACHE_PEERS_H_
