// Links lcache::etcd from the installed package and checks that a bad
// configuration is reported as an error value (no etcd is needed for that).
#include <lcache/etcd_discovery.h>

#include <cstdio>

int main() {
  auto discovery =
      lcache::EtcdDiscovery::Start({}, "127.0.0.1:9000", [](const std::vector<std::string>&) {});
  if (discovery.ok() || !absl::IsInvalidArgument(discovery.status())) {
    std::fprintf(stderr, "expected InvalidArgument, got %s\n",
                 discovery.status().ToString().c_str());
    return 1;
  }
  std::printf("etcd consumer: %s\n", discovery.status().ToString().c_str());
  return 0;
}
