// The event loops of a lean peer client, for a lean server that shares
// them (StartH2PeerServer with a client): its connections then live on the
// same threads as the peer calls their requests make.

#ifndef LCACHE_SRC_PEER_H2_H2_PEER_CLIENT_LOOPS_H_
#define LCACHE_SRC_PEER_H2_H2_PEER_CLIENT_LOOPS_H_

#include <vector>

#include "lcache/h2_peer.h"

namespace lcache::internal {

class EventLoop;

// One per I/O thread of `client` (H2PeerClient::Create's io_threads); they
// live as long as the client.
std::vector<EventLoop*> H2PeerClientLoops(H2PeerClient& client);

}  // namespace lcache::internal

#endif  // LCACHE_SRC_PEER_H2_H2_PEER_CLIENT_LOOPS_H_
