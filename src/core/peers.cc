// What peers.h declares beyond its interfaces.

#include "lcache/peers.h"

#include <condition_variable>
#include <mutex>
#include <optional>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/string_view.h"

namespace lcache {

absl::Status PeerDeadlineExceeded(std::string_view message, absl::Duration budget,
                                  absl::Duration timeout) {
  absl::Status s = absl::DeadlineExceededError(absl::string_view(message.data(), message.size()));
  if (budget < timeout / 2) s.SetPayload(kCallerDeadlinePayload, absl::Cord("1"));
  return s;
}

absl::StatusOr<PeerValue> PeerGetter::AwaitStartGet(std::string_view group,
                                                    std::string_view key) {
  struct Outcome {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<absl::StatusOr<PeerValue>> value;
  };
  // Shared with the callback, which may still be returning when we do.
  auto outcome = std::make_shared<Outcome>();
  StartGet(
      group, key, absl::InfiniteFuture(),
      [outcome](absl::StatusOr<PeerValue> v) {
        {
          std::lock_guard lock(outcome->mu);
          outcome->value = std::move(v);
        }
        outcome->cv.notify_one();
      },
      nullptr);
  // The transport ends every call by its own timeout, so this wait ends.
  std::unique_lock lock(outcome->mu);
  outcome->cv.wait(lock, [&] { return outcome->value.has_value(); });
  return *std::move(outcome->value);
}

void PeerGetter::StartMutate(const PeerMutation& mutation, absl::Time deadline, MutateDone done) {
  (void)mutation, (void)deadline;
  done(absl::UnimplementedError("lcache: this peer client cannot send Set, Remove or Invalidate"));
}

void PeerGetter::StartPeek(std::string_view group, std::string_view key, absl::Time deadline,
                           Done done) {
  (void)group, (void)key, (void)deadline;
  done(absl::UnimplementedError("lcache: this peer client cannot send Peek"));
}

}  // namespace lcache
