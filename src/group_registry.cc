#include <mutex>

#include "absl/strings/str_cat.h"
#include "lcache/group.h"

namespace lcache {

GroupRegistry::GroupRegistry() = default;
GroupRegistry::~GroupRegistry() = default;

absl::StatusOr<Group*> GroupRegistry::NewGroup(GroupOptions options) {
  const std::string name = options.name;
  absl::StatusOr<std::unique_ptr<Group>> group = Group::Create(std::move(options));
  if (!group.ok()) return group.status();
  std::unique_lock lock(mu_);
  auto [it, inserted] = groups_.try_emplace(name, *std::move(group));
  if (!inserted) {
    return absl::AlreadyExistsError(absl::StrCat("lru_cache: group \"", name, "\" already exists"));
  }
  return it->second.get();
}

Group* GroupRegistry::GetGroup(std::string_view name) const {
  std::shared_lock lock(mu_);
  // Debian's abseil has its own string_view type.
  auto it = groups_.find(absl::string_view(name.data(), name.size()));
  return it == groups_.end() ? nullptr : it->second.get();
}

std::vector<Group*> GroupRegistry::Groups() const {
  std::shared_lock lock(mu_);
  std::vector<Group*> out;
  out.reserve(groups_.size());
  for (const auto& [name, group] : groups_) out.push_back(group.get());
  return out;
}

GroupRegistry& GroupRegistry::Default() {
  static GroupRegistry* const registry = new GroupRegistry;
  return *registry;
}

}  // namespace lcache
