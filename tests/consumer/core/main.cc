// Builds against the installed headers and library only.
#include <lcache/group.h>

#include <cstdio>

int main() {
  lcache::GroupRegistry registry;
  absl::StatusOr<lcache::Group*> g = registry.NewGroup({
      .name = "scores",
      .cache_bytes = 1 << 20,
      .getter = [](std::string_view key) -> absl::StatusOr<lcache::Loaded> {
        if (key == "Tom") return lcache::ByteView::Copy("630");
        return lcache::KeyNotFoundError();
      },
  });
  if (!g.ok()) return 1;
  absl::StatusOr<lcache::ByteView> tom = (*g)->Get("Tom");
  if (!tom.ok() || tom->view() != "630") return 2;
  if ((*g)->Get("Bob").status().code() != absl::StatusCode::kNotFound) return 3;
  std::printf("consumer: Tom=%s\n", tom->ToString().c_str());
  return 0;
}
