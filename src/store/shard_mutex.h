// ShardMutex: glibc's adaptive mutex, which spins briefly before sleeping.
//
// A shard's critical section is a few cache misses long (a bucket, an entry,
// its list neighbours). When two threads meet on one shard, std::mutex puts
// the second to sleep on a futex, and the sleep and wake-up cost tens of
// times the wait; measured with two threads on 16 shards, that made a
// 2-thread hit loop slower than one thread. The adaptive kind waits such
// short sections out. It is still a pthread mutex, so ThreadSanitizer sees
// every hand-off (it would not see absl::Mutex's in Debian's uninstrumented
// abseil).

#ifndef LCACHE_SRC_STORE_SHARD_MUTEX_H_
#define LCACHE_SRC_STORE_SHARD_MUTEX_H_

#include <pthread.h>

namespace lcache::internal {

class ShardMutex {
 public:
  ShardMutex() = default;
  ShardMutex(const ShardMutex&) = delete;
  ShardMutex& operator=(const ShardMutex&) = delete;
  ~ShardMutex() { pthread_mutex_destroy(&mu_); }

  void lock() { pthread_mutex_lock(&mu_); }
  void unlock() { pthread_mutex_unlock(&mu_); }

 private:
  pthread_mutex_t mu_ = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP;
};

}  // namespace lcache::internal

#endif  // LCACHE_SRC_STORE_SHARD_MUTEX_H_
