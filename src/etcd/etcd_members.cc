#include "etcd/etcd_members.h"

#include <limits>

#include "absl/strings/numbers.h"

namespace lcache::internal {

bool PlausiblePeerAddress(std::string_view address) {
  if (address.empty() || address.size() > 255) return false;
  for (char c : address) {
    if (c <= ' ' || c > '~') return false;
  }
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  const std::string_view port = address.substr(colon + 1);
  if (port.empty() || port.size() > 5) return false;
  uint32_t n = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<uint32_t>(c - '0');
  }
  return n >= 1 && n <= 65535;
}

bool EtcdMembers::Accepted(const std::string& key) {
  if (key.size() > prefix_.size() && key.starts_with(prefix_) &&
      PlausiblePeerAddress(std::string_view(key).substr(prefix_.size()))) {
    return true;
  }
  ++ignored_;
  return false;
}

void EtcdMembers::SeeRevision(int64_t revision) {
  // NextRevision() must not overflow; a negative one is no revision.
  if (revision > revision_ && revision < std::numeric_limits<int64_t>::max()) {
    revision_ = revision;
  }
}

void EtcdMembers::Reset(const std::map<std::string, std::string>& kvs, int64_t revision) {
  members_.clear();
  for (const auto& [key, value] : kvs) {
    if (Accepted(key)) members_[key] = value;
  }
  revision_ = 0;
  SeeRevision(revision);
}

bool EtcdMembers::Apply(const etcdserverpb::WatchResponse& response) {
  for (const mvccpb::Event& event : response.events()) {
    SeeRevision(event.kv().mod_revision());
    const std::string& key = event.kv().key();
    if (!Accepted(key)) continue;
    if (event.type() == mvccpb::Event::PUT) {
      members_[key] = event.kv().value();
    } else {
      members_.erase(key);
    }
  }
  return !response.events().empty();
}

std::vector<std::string> EtcdMembers::Peers() const {
  std::vector<std::string> peers;
  peers.reserve(members_.size());
  for (const auto& [key, value] : members_) peers.push_back(key.substr(prefix_.size()));
  return peers;
}

}  // namespace lcache::internal
