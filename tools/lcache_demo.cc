// lcache-demo: the seed's `scores` group in one process.
//
// Shows a miss (the getter loads), a hit (it does not), a key the getter
// does not know, an empty key, and an entry expiring after its TTL.

#include <cstdio>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "lcache/group.h"

namespace {

void Show(lcache::Group& group, std::string_view key) {
  absl::StatusOr<lcache::ByteView> v = group.Get(key);
  if (v.ok()) {
    std::printf("Get(%s) = %s\n", std::string(key).c_str(), v->ToString().c_str());
  } else {
    std::printf("Get(%s) -> error: %s\n", std::string(key).c_str(),
                std::string(v.status().message()).c_str());
  }
}

}  // namespace

int main() {
  const absl::flat_hash_map<std::string, std::string> db = {
      {"Tom", "630"}, {"Jack", "589"}, {"Sam", "567"}};
  constexpr absl::Duration kTtl = absl::Milliseconds(300);

  lcache::GroupRegistry registry;
  absl::StatusOr<lcache::Group*> scores = registry.NewGroup({
      .name = "scores",
      .cache_bytes = 64 << 20,
      .getter = [&db](std::string_view key) -> absl::StatusOr<lcache::Loaded> {
        std::printf("[getter] load key=%s\n", std::string(key).c_str());
        auto it = db.find(std::string(key));
        if (it == db.end()) return lcache::KeyNotFoundError();
        return lcache::ByteView::Copy(it->second);
      },
      .default_ttl = kTtl,
  });
  if (!scores.ok()) {
    std::fprintf(stderr, "%s\n", std::string(scores.status().message()).c_str());
    return 1;
  }
  lcache::Group& group = **scores;

  std::printf("-- a miss: the getter loads Tom\n");
  Show(group, "Tom");
  std::printf("-- a hit: no load\n");
  Show(group, "Tom");
  std::printf("-- a key the getter does not know\n");
  Show(group, "Alice");
  std::printf("-- an empty key\n");
  Show(group, "");
  std::printf("-- after the %lld ms TTL, Tom has expired and is loaded again\n",
              static_cast<long long>(absl::ToInt64Milliseconds(kTtl)));
  std::this_thread::sleep_for(absl::ToChronoMilliseconds(kTtl + absl::Milliseconds(50)));
  Show(group, "Tom");

  const lcache::GroupStats s = group.Stats();
  std::printf(
      "-- stats: gets=%lld hits=%lld loads=%lld local_loads=%lld local_load_errs=%lld "
      "expirations=%lld items=%lld bytes=%lld\n",
      static_cast<long long>(s.gets), static_cast<long long>(s.cache_hits),
      static_cast<long long>(s.loads), static_cast<long long>(s.local_loads),
      static_cast<long long>(s.local_load_errs), static_cast<long long>(s.store.expirations),
      static_cast<long long>(s.store.items), static_cast<long long>(s.store.bytes));
  return 0;
}
