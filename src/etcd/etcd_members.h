// The ring's members as etcd says them: the keys under the discovery prefix,
// each "<prefix><host:port>", kept in key order (the order a listing
// returns, so every node builds its ring from the same sequence).
//
// etcd's answers are taken as etcd's, not as sane: a key outside the prefix
// (an endpoint with a bug, or not etcd at all) or whose address is not a
// plausible host:port is left out and counted, not put in the ring; a
// revision that could not be watched from is ignored. fuzz/
// etcd_response_fuzzer.cc feeds this arbitrary responses.

#ifndef LCACHE_SRC_ETCD_ETCD_MEMBERS_H_
#define LCACHE_SRC_ETCD_ETCD_MEMBERS_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "etcd/etcdserverpb/rpc.pb.h"

namespace lcache::internal {

// 1 to 255 printable, non-space ASCII bytes ending in ":PORT" (1-65535)
// after a non-empty host ("10.0.0.1:9000", "[::1]:9000", "node-1:9000").
bool PlausiblePeerAddress(std::string_view address);

class EtcdMembers {
 public:
  explicit EtcdMembers(std::string prefix) : prefix_(std::move(prefix)) {}

  // Replaces every member with a listing's keys (key -> value), as of
  // `revision`.
  void Reset(const std::map<std::string, std::string>& kvs, int64_t revision);
  // Applies a watch response's events; true if there were any.
  bool Apply(const etcdserverpb::WatchResponse& response);

  // The members' addresses, in key order.
  std::vector<std::string> Peers() const;
  // The revision to watch from next (the last one seen, plus one).
  int64_t NextRevision() const { return revision_ + 1; }
  // Keys left out since the start (outside the prefix, or not an address).
  uint64_t ignored() const { return ignored_; }

 private:
  bool Accepted(const std::string& key);
  void SeeRevision(int64_t revision);

  const std::string prefix_;
  std::map<std::string, std::string> members_;  // etcd key -> value
  int64_t revision_ = 0;                        // < INT64_MAX, >= 0
  uint64_t ignored_ = 0;
};

}  // namespace lcache::internal

#endif  // LCACHE_SRC_ETCD_ETCD_MEMBERS_H_
