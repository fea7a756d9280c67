#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "lcache/group.h"

namespace lcache {

// The thread behind StartReclaimer. std synchronisation, so TSan sees it.
class GroupRegistry::Reclaimer {
 public:
  Reclaimer(const GroupRegistry* registry, absl::Duration interval, int64_t batch)
      : thread_([this, registry, interval, batch] { Run(registry, interval, batch); }) {}

  ~Reclaimer() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

 private:
  void Run(const GroupRegistry* registry, absl::Duration interval, int64_t batch) {
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, absl::ToChronoNanoseconds(interval), [this] { return stop_; })) {
      lock.unlock();
      for (Group* group : registry->Groups()) group->ReclaimExpired(batch);
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts after the fields it uses exist
};

GroupRegistry::GroupRegistry() = default;

GroupRegistry::~GroupRegistry() {
  // The reclaimer walks the groups; stop it before they go.
  std::unique_ptr<Reclaimer> reclaimer;
  {
    std::unique_lock lock(mu_);
    reclaimer = std::move(reclaimer_);
  }
}

absl::Status GroupRegistry::StartReclaimer(absl::Duration interval, int64_t batch) {
  if (interval <= absl::ZeroDuration() || batch <= 0) {
    return absl::InvalidArgumentError("lcache: reclaimer interval and batch must be positive");
  }
  std::unique_lock lock(mu_);
  if (reclaimer_ != nullptr) {
    return absl::FailedPreconditionError("lcache: the reclaimer is already running");
  }
  reclaimer_ = std::make_unique<Reclaimer>(this, interval, batch);
  return absl::OkStatus();
}

absl::StatusOr<Group*> GroupRegistry::NewGroup(GroupOptions options) {
  const std::string name = options.name;
  absl::StatusOr<std::unique_ptr<Group>> group = Group::Create(std::move(options));
  if (!group.ok()) return group.status();
  std::unique_lock lock(mu_);
  auto [it, inserted] = groups_.try_emplace(name, *std::move(group));
  if (!inserted) {
    return absl::AlreadyExistsError(absl::StrCat("lcache: group \"", name, "\" already exists"));
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

}  // namespace lcache
