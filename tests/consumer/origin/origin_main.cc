// An in-process group whose origin is an HTTP service that is not there:
// the load fails with Unavailable, and the origin counts one error.
// A PostgresOrigin is made too (it connects only when used).

#include <cstdio>

#include "lcache/group.h"
#include "lcache/http_origin.h"
#include "lcache/postgres_origin.h"

int main() {
  auto http = lcache::HttpOrigin::Create({.url = "http://127.0.0.1:1/items/{key}"});
  auto pg = lcache::PostgresOrigin::Create(
      {.url = "postgres://app@127.0.0.1:1/shop", .query = "SELECT v FROM t WHERE k = $1"});
  if (!http.ok() || !pg.ok()) {
    std::fprintf(stderr, "origins: %s %s\n", http.status().ToString().c_str(),
                 pg.status().ToString().c_str());
    return 1;
  }
  lcache::GroupRegistry registry;
  auto group = registry.NewGroup({.name = "items", .cache_bytes = 1 << 20, .origin = *http});
  if (!group.ok()) return 1;
  auto v = (*group)->Get("k");
  const lcache::OriginStats s = (*http)->stats();
  if (!absl::IsUnavailable(v.status()) || s.requests != 1 || s.errors != 1) {
    std::fprintf(stderr, "unexpected: %s, %lld requests\n", v.status().ToString().c_str(),
                 static_cast<long long>(s.requests));
    return 1;
  }
  std::printf("origin consumer ok: %s\n", v.status().ToString().c_str());
  return 0;
}
