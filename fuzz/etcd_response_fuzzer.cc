// What discovery makes of etcd's answers (src/etcd/etcd_members.h), fed
// arbitrary bytes as a Range response (a listing, first byte odd) or a Watch
// response (even), parsed by protobuf as the gRPC stubs do. A key that
// reaches the ring must be a plausible address under the prefix, and the next
// watch's revision must be positive (no overflow: UBSan watches).
// Seeds: fuzz/make_etcd_seeds.py.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>

#include "etcd/etcd_members.h"
#include "google/protobuf/stubs/logging.h"

// protobuf logs each string field that is not UTF-8: noise here, and slow.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  lcache::internal::EtcdMembers members("lcache/");
  const bool listing = (data[0] & 1) != 0;
  const uint8_t* bytes = data + 1;
  const int n = static_cast<int>(size - 1);
  if (listing) {
    etcdserverpb::RangeResponse range;
    if (!range.ParseFromArray(bytes, n)) return 0;
    std::map<std::string, std::string> kvs;
    for (const mvccpb::KeyValue& kv : range.kvs()) kvs[kv.key()] = kv.value();
    members.Reset(kvs, range.header().revision());
  } else {
    etcdserverpb::WatchResponse watch;
    if (!watch.ParseFromArray(bytes, n)) return 0;
    members.Apply(watch);
    members.Apply(watch);  // the same events twice: a replay after a reconnect
  }
  for (const std::string& peer : members.Peers()) {
    if (!lcache::internal::PlausiblePeerAddress(peer)) std::abort();
  }
  if (members.NextRevision() <= 0) std::abort();
  return 0;
}
