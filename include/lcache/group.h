// Group: a named cache namespace with a loader, the entry point of lcache.
//
// Group::Get(key) answers from the local store when it can; on a miss it
// loads the key once however many callers ask at the same time
// (singleflight): from the peer that owns the key when a PeerPicker says
// another node owns it, else from the group's getter; a value loaded by the
// getter is stored locally.
//
//   lcache::GroupRegistry registry;
//   lcache::Group* scores = *registry.NewGroup({
//       .name = "scores",
//       .cache_bytes = 64 << 20,
//       .getter = [](std::string_view key) -> absl::StatusOr<lcache::Loaded> {
//         return lcache::ByteView::Copy(LookUpSomewhere(key));
//       }});
//   absl::StatusOr<lcache::ByteView> v = scores->Get("Tom");
//
// Thread-safety: Group and GroupRegistry are safe for concurrent use. The
// getter is called concurrently for different keys, never twice at once for
// the same key within one group.
//
// Errors (texts shared with the Go lru_cache, see docs/PROTOCOL.md, 2.6):
//   empty key          InvalidArgument "lru_cache: empty key"
//   key too long       InvalidArgument "lcache: key too long (N bytes, max M)"
//   missing key        whatever the getter returns; by convention
//                      NotFound "lru_cache: key not found" (KeyNotFoundError())
//   getter error       passed through with its code and message
//   getter exception   Internal "lcache: getter threw: <what>"
//
// Peers: the owner peer's answer is final when it is a value, NotFound or
// InvalidArgument; any other peer error (unreachable, deadline, overload, a
// failing getter over there) counts in peer_errors and the key is loaded
// locally, as the Go program does.
//
// Hot cache: some values fetched from owner peers are also kept in a second,
// smaller store (groupcache's hotCache), so that a key every node asks for
// stops costing a round trip on every node. A hot copy expires when the
// owner's copy does (the owner sends its remaining time to live, see
// PeerValue), or, from an owner that sends none (a Go node), after the
// group's default_ttl if it has one, and never later than hot_max_age after
// it was fetched. Which values are kept: HotPromotion.
//
// Set and Remove change a key across the cluster (docs/PROTOCOL.md, section 6): the
// node that receives one sends it to the key's owner, which applies it and
// tells every other node to drop its copies (Invalidate) before it answers.
// A load of the key that began before a Set or Remove and ends after it
// never stores its result, here or on any node (see Invalidate), so an
// invalidation cannot be undone by a load that was racing it. Guarantees:
//   - After Remove returns OK, no Get that starts later, on any node that
//     acknowledged, returns the removed value (unless the getter produces it
//     again). After Set returns OK, such a Get returns the value set (or a
//     later one), until it is evicted or expires.
//   - Concurrent Sets of one key: the order in which the owner applies them
//     wins.
//   - A node that did not acknowledge (listed in MutationResult) may keep a
//     copy it had, but no copy of a key another node owns lives longer than
//     hot_max_age.
//   - The owner must answer: a Set or Remove whose owner is unreachable, or
//     a Go node (UNIMPLEMENTED), fails, and nothing was changed by it.
//
// Replication (docs/PROTOCOL.md, section 9; RingPickerOptions::replication
// R > 1, replica_cache_bytes > 0): the owner of a key pushes each value it
// loads to the key's replica holders (PeerPicker::ReplicaHolders, its R - 1
// successors on the ring) with Replicate, and each value it is Set with
// SetReplica instead of Invalidate. A holder keeps them in a replica store
// of its own (AcceptReplica, AcceptSetReplica), never answers ordinary hits
// from it, and uses it only when it loads a key: as the stand-in of an owner
// that failed or is ejected (the asker's fallback goes to the stand-in,
// PeerPicker::StandIn, before it loads), and as the key's new owner after
// the old one left the ring (the first holder is the heir), which moves the
// copy to its store and replicates it onward. Invalidate and Remove drop
// replicas as they drop hot copies; see AcceptReplica for the races. A
// holder that does not acknowledge an invalidation is sent it again
// (RetryInvalidations); after a ring change, Rereplicate gives keys their
// new holders.
//
// Ring changes (docs/PROTOCOL.md, section 8) need not turn keys cold:
//   - Peek: a key this node took over in a recent ring change (the picker's
//     PreviousOwner, within its warm-up window) is first asked of its
//     previous owner's store, with Peek (a stored copy only, never a load,
//     at most kPeekTimeout); the getter runs only if that finds nothing.
//     The copy is stored as a load's would be, under the same lease, so a
//     Set or Remove that races it wins.
//   - Hand-off: a departing node calls HandOff right after it left the ring
//     (the others route its keys to their new owners and apply the Sets and
//     Removes of them), while it still serves: its most valuable entries go
//     to those owners (PeerPicker::HeirOf), which keep each one only if they
//     hold no value of the key and no mutation touched it in the last
//     kHandoffQuiet (AcceptHandoff). As a hand-off ends within
//     kMaxHandoffTime, a value read before a mutation an heir applied reaches
//     it within that period, and is refused. A Set or Remove that the
//     departing node itself applies meanwhile (a node with an older ring
//     sent it) is followed by another Invalidate to the heir.

#ifndef LCACHE_GROUP_H_
#define LCACHE_GROUP_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lcache/byte_view.h"
#include "lcache/clock.h"
#include "lcache/latency_histogram.h"
#include "lcache/peers.h"
#include "lcache/store.h"

namespace lcache {

namespace internal {
class Flight;
class Flights;
class HotAdmission;
class KeyEpochs;
class PeerSet;
class PendingInvalidations;
}  // namespace internal

inline constexpr char kEmptyKeyMessage[] = "lru_cache: empty key";
inline constexpr char kKeyNotFoundMessage[] = "lru_cache: key not found";

// NotFound with the text every lru_cache node uses for a missing key.
absl::Status KeyNotFoundError();

// What a getter returns: the value and, optionally, its own time to live
// (overriding the group's default; absl::InfiniteDuration() for never).
struct Loaded {
  Loaded(ByteView v) : value(std::move(v)) {}  // NOLINT: implicit on purpose
  Loaded(ByteView v, absl::Duration time_to_live) : value(std::move(v)), ttl(time_to_live) {}

  ByteView value;
  std::optional<absl::Duration> ttl;
  // false: answer the callers waiting for this load, and keep no copy
  // anywhere: not in the store, and not as a hot copy on the nodes it is
  // forwarded to (they see it expire at once). HTTP's Cache-Control: no-store.
  bool cacheable = true;
};

// Which values fetched from peers the hot cache keeps.
enum class HotPromotion {
  // A value whose key was fetched before, recently: a frequency sketch of
  // the keys fetched from peers (4-bit counters, halved periodically, as in
  // TinyLFU) keeps keys fetched at least twice, so a key fetched once never
  // displaces a hot one, and a hot key is kept on its second fetch. While
  // the hot cache is less than 7/8 full (a new node, or one whose copies
  // were dropped by a ring change) every fetched value is kept: a copy that
  // displaces nothing costs nothing, and the cache warms on first fetches.
  kFrequency,
  // One fetched value in ten, at random: groupcache's rule.
  kRandom,
};

// "frequency" / "random"; nullopt for anything else.
std::optional<HotPromotion> ParseHotPromotion(std::string_view name);

// Loads the value of a key on a miss. Return ByteView::Adopt(std::move(s))
// to hand over a string without a copy; the store copies it once.
using Getter = std::function<absl::StatusOr<Loaded>(std::string_view key)>;

class Origin;  // lcache/origin.h

struct GroupOptions {
  std::string name = {};
  // Capacity of the local store: len(key) + len(value) bytes. 0 = unbounded.
  int64_t cache_bytes = 0;
  // What loads a missing key: a getter, or an origin (not both).
  Getter getter = nullptr;
  std::shared_ptr<Origin> origin = nullptr;
  StorePolicy policy = StorePolicy::kLru;
  // Time to live of loaded entries unless the getter says otherwise.
  // Zero or infinite: entries do not expire.
  absl::Duration default_ttl = absl::ZeroDuration();
  // Keys longer than this are rejected with InvalidArgument. At most
  // kMaxStoreKeyBytes.
  size_t max_key_bytes = 4096;
  // Optional. Not owned; must outlive the group (set it once, before use).
  PeerPicker* peers = nullptr;
  // Capacity of the hot cache, counted like cache_bytes and in addition to
  // it (it holds nothing until a peer answers, so a single node keeps its
  // whole budget). -1: cache_bytes / 8; none when cache_bytes is 0, because
  // an unbounded hot cache would copy the cluster's data onto every node.
  // 0: no hot cache.
  int64_t hot_cache_bytes = -1;
  HotPromotion hot_promotion = HotPromotion::kFrequency;
  // The longest a copy of a key another node owns may live here (a hot copy,
  // or a value loaded here because its owner failed), whatever the owner's
  // time to live: the bound on how stale a node that an invalidation could
  // not reach may be. absl::InfiniteDuration(): no bound.
  absl::Duration hot_max_age = absl::Seconds(60);
  // Capacity of the replica store, counted like cache_bytes and in addition
  // to it: the values other nodes own that this node keeps as their replica
  // holder (see the file comment). 0: none, and replicas pushed here are
  // refused. lcache::Node sets it to (replication - 1) x cache_bytes unless
  // told otherwise: with even ownership that holds every replica.
  int64_t replica_cache_bytes = 0;
  // Store tuning; see StoreOptions.
  int store_shards = 0;
  double lru2_history_fraction = 0.25;
  double tinylfu_window_fraction = 0.01;
  bool tinylfu_adaptive_window = true;
  const Clock* clock = nullptr;  // null: Clock::Real()
  // Optional: entries leaving the store, the hot cache or the replica store
  // (see Store). It may
  // run while the group holds the lock of a stripe of keys (a load storing
  // its result, a Set, Remove or Invalidate): it must not call this group's
  // Get, Set, Remove or Invalidate.
  RemovalCallback on_removal = nullptr;
};

// Counters in the spirit of groupcache's Stats.
struct GroupStats {
  int64_t gets = 0;             // Get calls, including invalid ones
  int64_t cache_hits = 0;       // answered from the local store or the hot cache
  int64_t hot_hits = 0;         // of cache_hits, answered from the hot cache
  int64_t hot_keeps = 0;        // values fetched from peers put in the hot cache
  int64_t peer_loads = 0;       // loaded from the owner peer
  int64_t peer_errors = 0;      // peer calls that failed (then loaded locally)
  int64_t loads = 0;            // misses that entered singleflight
  int64_t loads_deduped = 0;    // loads that ran: peer calls and getter calls
  int64_t local_loads = 0;      // getter calls that succeeded
  int64_t local_load_errs = 0;  // getter calls that failed
  int64_t server_requests = 0;  // requests that came from peers
  int64_t loads_cancelled = 0;  // loads dropped before they started, and peer calls
                                // reset, because every caller waiting for them had
                                // gone or was past its deadline
  int64_t sets = 0;     // Set calls made on this node (one forwarded here counts at its sender)
  int64_t removes = 0;  // Remove calls, likewise
  int64_t invalidations_sent = 0;      // Invalidate messages sent to peers as a key's owner
  int64_t invalidations_unacked = 0;   // of those, not acknowledged in time
  int64_t invalidations_received = 0;  // Invalidate messages applied here
  int64_t loads_discarded = 0;  // loaded values not stored because a Set, Remove or
                                // Invalidate of their key came while they loaded
  int64_t peek_hits = 0;     // loads a previous owner's copy answered: getter calls avoided
  int64_t peek_misses = 0;   // peeks that found nothing (or failed): the getter ran
  int64_t peeks_served = 0;  // Peek requests this node answered with a copy
  int64_t handoff_entries_sent = 0;  // entries this node handed off, acknowledged
  int64_t handoff_bytes_sent = 0;    // their len(key) + len(value)
  int64_t handoffs_kept = 0;     // handed-off entries this node kept
  int64_t handoffs_refused = 0;  // handed-off entries it did not (held one, or changed lately)
  int64_t replicas_pushed = 0;        // values pushed to replica holders, acknowledged
  int64_t replica_bytes_pushed = 0;   // their len(key) + len(value)
  int64_t replica_push_failures = 0;  // pushes that failed or were not answered in time
  int64_t replicas_kept = 0;     // values pushed here that the replica store kept
  int64_t replicas_refused = 0;  // pushed here and not kept (the key changed lately, no
                                 // replica store, or too large)
  int64_t replica_hits = 0;      // loads answered from the replica store: getter calls avoided
  int64_t stand_in_calls = 0;    // calls to an owner's stand-in after the owner failed
  int64_t replicas_promoted = 0;  // replicas of keys this node inherited, moved to its store
  int64_t replica_resyncs = 0;    // Rereplicate runs completed (after ring changes)
  int64_t replica_invalidations_pending = 0;  // unacknowledged by holders, to send again
  int64_t replica_invalidations_retried = 0;  // of those, acknowledged when sent again
  int64_t replica_invalidations_dropped = 0;  // not kept to send again (the list was full)
  StoreStats store;
  StoreStats hot_store;  // all zero without a hot cache
  StoreStats replica_store;  // all zero without a replica store
  // Latencies, timed with the group's clock. Hits are not timed (a clock read
  // would double the cost of a hot hit; docs/BENCHMARKS.md): the Get
  // histogram covers the Gets that missed, from the miss to the answer.
  LatencySnapshot get_miss_latency;
  LatencySnapshot peer_latency;    // calls to owner peers, answered or failed
  LatencySnapshot getter_latency;  // getter calls, succeeded or failed
};

// Where a Get may load a missing key from.
enum class LoadScope {
  kAnywhere,   // the owner peer if another node owns the key, else the getter
  kLocalOnly,  // never a peer: for requests a peer forwarded to this node
};

// Work of an asynchronous Get that may block (the getter; a peer call on a
// PeerGetter without StartGet). A LoadRunner takes a LoadTask and runs it
// soon on a thread that may block, as task(OkStatus()); a runner that took a
// task and then stops calls task(error) instead (say, UNAVAILABLE), and the
// load ends with that error. It returns an error, not taking the task, when
// it cannot (full: RESOURCE_EXHAUSTED), and the load ends with that error.
using LoadTask = std::function<void(absl::Status run)>;
using LoadRunner = std::function<absl::Status(LoadTask task)>;

struct AsyncGetOptions {
  LoadScope scope = LoadScope::kAnywhere;
  // Required: where the getter runs. Never called for a hit.
  LoadRunner run_load = nullptr;
  // The caller's deadline. A peer call ends early enough that a local
  // fallback still fits (its remaining time less a quarter, at most 250 ms
  // less), and never later than the peer client's own timeout.
  absl::Time deadline = absl::InfiniteFuture();
  // Set by the caller (any thread) when nobody will read the answer any more.
  std::shared_ptr<const std::atomic<bool>> cancelled = nullptr;
};

// The answer of an asynchronous Get. Runs exactly once; must not block, and
// must not throw (std::terminate).
using GetCallback = std::function<void(absl::StatusOr<ExpiringValue>)>;

// How a Set or Remove is routed, and until when its caller waits.
struct MutationOptions {
  // kAnywhere: to the key's owner on the ring. kLocalOnly: this node applies
  // it as the owner (a mutation a peer forwarded here).
  LoadScope scope = LoadScope::kAnywhere;
  // Calls to peers end early enough that the answer still fits.
  absl::Time deadline = absl::InfiniteFuture();
};

// The answer of an asynchronous Set or Remove: runs exactly once, on the
// thread that completes the last peer call (or the caller's); must not block.
using MutationCallback = std::function<void(absl::StatusOr<MutationResult>)>;

// The longest time to live a Set accepts: ten years. Longer is a mistake.
inline constexpr absl::Duration kMaxSetTtl = absl::Hours(24 * 365 * 10);

// The longest a peek at a previous owner may take before the getter runs
// instead: a stored copy on a live node answers in well under a millisecond.
inline constexpr absl::Duration kPeekTimeout = absl::Milliseconds(250);

// The longest a hand-off lasts (HandOff ends its calls by then), and how
// long after a mutation of a key's stripe AcceptHandoff refuses values for
// it: longer, so that a value read before a mutation the heir applied
// arrives within the quiet period, and is refused (see HandOff).
inline constexpr absl::Duration kMaxHandoffTime = absl::Seconds(5);
inline constexpr absl::Duration kHandoffQuiet = absl::Seconds(10);

// The deadline of a Replicate (and of the Invalidate that follows one whose
// key changed on its way), and how long after a mutation of a key's stripe
// a replica holder refuses replicas of it: longer, so that a Replicate sent
// before a mutation's invalidation, and arriving after it, is refused.
inline constexpr absl::Duration kReplicaPushTimeout = absl::Seconds(1);
inline constexpr absl::Duration kReplicaQuiet = absl::Seconds(2);

// A departing node's hand-off (Group::HandOff).
struct HandoffOptions {
  // Entries are pushed most valuable first until their len(key) +
  // len(value) reach this.
  int64_t max_bytes = int64_t{64} << 20;
  // Entries not pushed by then are not pushed, and every call ends by then;
  // at most kMaxHandoffTime from the start.
  absl::Time deadline = absl::InfiniteFuture();
  // Calls in flight at once, over all heirs.
  int max_in_flight = 64;
};

// A re-replication after a ring change (Group::Rereplicate).
struct RereplicateOptions {
  // Entries not pushed by then are not pushed, and every call ends by then.
  absl::Time deadline = absl::InfiniteFuture();
  // Calls in flight at once, over all holders.
  int max_in_flight = 16;
  // Polled between entries: true ends the walk early (a stopping node).
  std::function<bool()> stop = nullptr;
};

struct RereplicateResult {
  int64_t promoted = 0;  // replicas of keys this node owns now, moved to its store
  int64_t pushed = 0;    // Replicate calls acknowledged
  int64_t failed = 0;    // calls that failed or did not end in time
  bool cut_short = false;  // the deadline or `stop` ended it
};

struct HandoffResult {
  int64_t entries = 0;  // acknowledged by their heirs (kept there or not)
  int64_t bytes = 0;    // len(key) + len(value) of those
  int64_t failed = 0;   // calls that failed or did not end in time
  int64_t skipped = 0;  // entries with no heir, or one that is out of service, does not
                        // take hand-offs (a Go node) or failed its first call
  bool cut_short = false;  // the deadline ended it before the budget was used
};

// Marks an error that is not the key's answer but the load's fate: it was
// refused (the runner's error, e.g. RESOURCE_EXHAUSTED), dropped before it
// started because every caller had gone (CANCELLED) or was past its deadline
// (DEADLINE_EXCEEDED), or dropped by a stopping runner. A server answers
// these as call statuses, not as the key's in-band error.
inline constexpr char kLoadNotRunPayload[] = "lcache.load-not-run";
bool IsLoadNotRun(const absl::Status& status);

class Group {
 public:
  // Use GroupRegistry::NewGroup, or this for a group outside any registry.
  static absl::StatusOr<std::unique_ptr<Group>> Create(GroupOptions options);

  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;
  ~Group();

  absl::StatusOr<ByteView> Get(std::string_view key, LoadScope scope = LoadScope::kAnywhere);

  // Get without blocking the caller: a hit, an invalid key, or a load
  // another flight just finished is answered inline, before GetAsync
  // returns; a miss joins the key's flight (one load per key however many
  // callers, synchronous or not) and is answered by the thread that ends it:
  // a peer call's completes on the transport's I/O thread, so a forwarded
  // Get costs no thread hand-off, and the getter runs on
  // `options.run_load`. Every waiter of a flight is told; when all of them
  // have gone (cancelled, or past their deadline) before the load starts,
  // the load is dropped and counted in loads_cancelled. A load that has
  // started runs to its end and fills the cache.
  void GetAsync(std::string_view key, const AsyncGetOptions& options, GetCallback done);

  // Get, with the time this node's copy expires (absl::InfiniteFuture() for
  // never; for a value it did not keep, when a copy would have expired):
  // what a server tells the peer that asked.
  absl::StatusOr<ExpiringValue> GetWithExpiry(std::string_view key,
                                              LoadScope scope = LoadScope::kAnywhere);

  // The value if the local store or the hot cache holds it, counted as a Get
  // and a hit; nullopt (counting nothing) otherwise. Never loads and never
  // blocks on a load, so a transport can answer hits on its I/O thread and
  // hand only misses (GetWithExpiry) to threads that may wait.
  // REQUIRES: a valid key.
  std::optional<ExpiringValue> GetIfCached(std::string_view key);

  // Stores `value` under `key` at its owner, replacing any value, with
  // time to live `ttl` (nullopt: the group's default_ttl; zero or
  // absl::InfiniteDuration(): never expires), and makes every other node drop
  // its copies. Errors, each changing nothing: InvalidArgument for an
  // invalid key, a negative ttl or one over kMaxSetTtl, a value the owner's
  // store cannot hold (len(key) + len(value) over Store::MaxEntryBytes());
  // UNIMPLEMENTED when the owner is a Go node; the owner's transport error
  // when it cannot be reached (then the Set may or may not have been applied
  // if the call was sent). See the file comment for the guarantees.
  absl::StatusOr<MutationResult> Set(std::string_view key, std::string_view value,
                                     std::optional<absl::Duration> ttl = std::nullopt,
                                     const MutationOptions& options = {});
  // Drops `key` at its owner and on every other node. Removing a key nobody
  // holds succeeds. Errors as for Set.
  absl::StatusOr<MutationResult> Remove(std::string_view key,
                                        const MutationOptions& options = {});
  // Set and Remove without blocking: `done` runs once the owner has applied
  // the change and every other node has acknowledged or timed out.
  void SetAsync(std::string_view key, std::string_view value, std::optional<absl::Duration> ttl,
                const MutationOptions& options, MutationCallback done);
  void RemoveAsync(std::string_view key, const MutationOptions& options, MutationCallback done);

  // Drops this node's copies of `key` (store and hot cache), and keeps every
  // load of it in progress here from storing its result: what a node does
  // when a key's owner tells it the key changed. Not sent to peers.
  void Invalidate(std::string_view key);

  // Invalidate for every key this node holds (store, hot cache, replicas):
  // what a node does when it learns that the others dropped it from their
  // rings for a while (its etcd lease lapsed), since their Sets and Removes
  // did not reach it then. Loads in flight store nothing either. Returns
  // how many keys it dropped.
  int64_t InvalidateAll();

  // The store's copy of `key` (not the hot cache's), for a peer that took
  // the key over and peeks before it loads. Never loads; counted in
  // peeks_served when found. REQUIRES: a valid key.
  std::optional<ExpiringValue> Peek(std::string_view key);

  // Keeps `value` as a departing node handed it over, with time to live
  // `ttl` (nullopt, zero or infinite: none), unless this node holds a value
  // of `key` already or a Set, Remove or Invalidate touched the key's
  // stripe in the last kHandoffQuiet (a value handed over while its key
  // changed may be older than the change). OK whether kept or not (counted
  // in handoffs_kept / handoffs_refused); InvalidArgument for a bad key, ttl
  // or value, as Set's.
  absl::Status AcceptHandoff(std::string_view key, std::string_view value,
                             std::optional<absl::Duration> ttl);

  // Keeps `value`, which the key's owner loaded, in the replica store, with
  // time to live `ttl` (nullopt, zero or infinite: none), replacing any
  // replica of the key, unless a Set, Remove or Invalidate touched the key's
  // stripe in the last kReplicaQuiet: a Replicate the owner sent before a
  // mutation may arrive after the mutation's invalidation, and the owner
  // follows a value whose key changed on its way with another Invalidate.
  // OK whether kept or not (replicas_kept / replicas_refused);
  // InvalidArgument for a bad key, ttl or value, as Set's.
  absl::Status AcceptReplica(std::string_view key, std::string_view value,
                             std::optional<absl::Duration> ttl);
  // What the owner of a key it was Set sends its replica holders instead of
  // Invalidate: drops this node's copies as Invalidate does and, in the same
  // step, keeps `value` as the replica, unless another mutation touched the
  // stripe in the kReplicaQuiet before (two SetReplicas crossing on their
  // way must not leave the older one). InvalidArgument for a bad key; a
  // value or ttl that cannot be kept still drops the copies, and is refused.
  absl::Status AcceptSetReplica(std::string_view key, std::string_view value,
                                std::optional<absl::Duration> ttl);

  // Pushes this node's most valuable entries (Store::ForEachKeyByValue) to
  // their heirs (PeerPicker::HeirOf) with Handoff calls, and returns when
  // every call has ended, by options.deadline or kMaxHandoffTime. Right
  // after this node left the others' rings (see the file comment). Blocks;
  // call it from a thread that may wait.
  HandoffResult HandOff(const HandoffOptions& options);

  // After a ring change, with replication: moves the replicas of keys this
  // node owns now (its owner left) into its store, and pushes every key it
  // owns to the replica holders it did not have before the change
  // (PeerPicker::NewReplicaHolders: a node that joined or came back, the
  // successor of one that left), most valuable first, so that a key keeps
  // its copies through one ring change after another, not only until its
  // next load. The pushes keep the leases as a load's do. Blocks until
  // every call has ended; call it from a thread that may wait. Counted in
  // replica_resyncs.
  RereplicateResult Rereplicate(const RereplicateOptions& options);

  // Sends again the invalidations (Set, Remove, or the follow-up of a push)
  // that a key's replica holders did not acknowledge: a holder that missed
  // one keeps a replica the change replaced, and would serve it if this node
  // then failed. Per holder on the ring, one call first; if it fails the
  // holder's keys wait for the next round. Holders off the ring are kept for
  // PendingInvalidations::kForgetAfter. Blocks until the calls have ended,
  // by `deadline` at the latest. Returns the invalidations acknowledged.
  // lcache::Node calls it every second with replication on.
  int64_t RetryInvalidations(absl::Time deadline);

  // Removes expired entries from the store and the hot cache; see
  // Store::ReclaimExpired.
  int64_t ReclaimExpired(int64_t max_entries);

  // Sets the peer picker after creation. Not owned; must outlive the group.
  void SetPeerPicker(PeerPicker* peers) { peers_.store(peers, std::memory_order_release); }

  // Counts a request that arrived from a peer (for the transport).
  void CountServerRequest();

  // Tells the group that a GetAsync caller of `key` has set its `cancelled`
  // flag (any thread, outside the callbacks of the caller's transport): if
  // every caller waiting on the key's flight has now gone, a peer call in
  // flight for it is reset and the flight ends CANCELLED (counted in
  // loads_cancelled), with no fallback load. Without this call only loads
  // still queued are dropped.
  void CallerLeft(std::string_view key);

  const std::string& name() const { return name_; }
  // GroupOptions::origin; null for a group with a getter.
  const Origin* origin() const { return origin_.get(); }
  GroupStats Stats() const;
  Store& store() { return *store_; }
  // Null without a hot cache. For reading: values Set through it are not
  // counted by the hot admission's fill until its next resync.
  Store* hot_store() { return hot_store_.get(); }
  Store* replica_store() { return replica_store_.get(); }  // null without one
  const Clock& clock() const { return *clock_; }

 private:
  class Counters;

  explicit Group(GroupOptions options);
  absl::Status ValidateKey(std::string_view key) const;
  std::optional<ExpiringValue> Cached(std::string_view key);
  // A miss: waits for the flight it joins or starts.
  absl::StatusOr<ExpiringValue> Load(std::string_view key, LoadScope scope);
  void LoadAsync(std::string_view key, const AsyncGetOptions& options, GetCallback done);
  struct FlightContext;
  void StartRemote(std::shared_ptr<FlightContext> flight);
  void CallPeer(std::shared_ptr<FlightContext> flight, std::shared_ptr<PeerGetter> peer);
  void OnPeerAnswer(std::shared_ptr<FlightContext> flight, absl::StatusOr<PeerValue> v,
                    absl::Time asked_at);
  void StartLocal(std::shared_ptr<FlightContext> flight);
  void LeadLocal(std::shared_ptr<internal::Flight> local, const LoadRunner& run_load);
  void PeekPrevious(std::shared_ptr<internal::Flight> local, const LoadRunner& run_load,
                    uint64_t epoch, std::shared_ptr<PeerGetter> previous);
  void RunGetter(std::shared_ptr<internal::Flight> local, const LoadRunner& run_load,
                 uint64_t epoch);
  // LeadLocal's look at the replica store; true when it answered the flight.
  bool AnswerFromReplica(const std::shared_ptr<internal::Flight>& local, uint64_t epoch);
  // Replicate of a value this node stored as the key's owner, to the key's
  // replica holders; `epoch` is the load's (a Set sends SetReplica instead).
  void PushReplicas(std::string_view key, const ExpiringValue& v, uint64_t epoch);
  // One Replicate of `v` to `holder`, with its follow-up Invalidate should
  // the key change on its way; `ended` (may be null) runs when the call has
  // ended. The callback holds no reference to the group.
  void SendReplicate(const PeerPicker::Peer& holder, std::string_view key, const ExpiringValue& v,
                     uint64_t epoch, std::function<void(bool acknowledged)> ended);
  std::optional<absl::Duration> TtlOf(absl::Time expire_at) const;
  absl::Time ExpiryOfTtl(std::optional<absl::Duration> ttl) const;
  absl::StatusOr<ExpiringValue> LoadFromGetter(std::string_view key, uint64_t epoch);
  absl::Time ExpiryOf(const Loaded& loaded) const;
  absl::Time ExpiryOf(const PeerValue& fetched, absl::Time asked_at) const;
  void MaybeKeepHot(std::string_view key, const ExpiringValue& v, uint64_t epoch);
  absl::Status ValidateSet(std::string_view key, std::string_view value,
                           std::optional<absl::Duration> ttl) const;
  void Mutate(const PeerMutation& mutation, const MutationOptions& options,
              MutationCallback done);
  void ForwardToOwner(const PeerMutation& mutation, PeerPicker::Peer owner,
                      const MutationOptions& options, MutationCallback done);
  void ApplyAsOwner(const PeerMutation& mutation, const MutationOptions& options,
                    MutationCallback done);
  // Whether this node owns `key` on its ring (a picker that names it).
  bool OwnsKey(std::string_view key);
  // `set`: the Set this node applied as the owner, whose value goes to the
  // key's replica holders (SetReplica); null for a Remove.
  void InvalidatePeers(std::string_view key, const PeerMutation* set, absl::Time deadline,
                       MutationCallback done);
  // Detaches the key's flights and drops its hot copy, as one step with
  // respect to loads (KeyEpochs); `then` (which drops the store's and the
  // replica store's copies as the case may be) runs inside that step.
  template <typename F>
  void DropCopies(std::string_view key, F&& then);

  const std::string name_;
  const std::shared_ptr<Origin> origin_;
  const Getter getter_;
  const absl::Duration default_ttl_;
  const absl::Duration hot_max_age_;
  const size_t max_key_bytes_;
  const Clock* const clock_;
  std::atomic<PeerPicker*> peers_;
  std::unique_ptr<Store> store_;
  // Null without a hot cache. The admission outlives the store, whose
  // removal callback tells it the bytes that left.
  std::unique_ptr<internal::HotAdmission> hot_admission_;
  std::unique_ptr<Store> hot_store_;
  std::unique_ptr<Store> replica_store_;  // null without replicas
  // Two levels of flights (core/flights.h). A load that may ask a peer runs
  // in remote_flights_; every getter call, whether a forwarded request's or
  // a remote flight's fallback, runs in local_flights_, so the owner of a key
  // loads it once however its requests arrive. A forwarded request never
  // enters remote_flights_: it must not wait behind a flight that is itself
  // waiting on the peer that forwarded it. Local flights wait on nothing but
  // the getter, so the two levels cannot deadlock.
  std::unique_ptr<internal::Flights> remote_flights_;
  std::unique_ptr<internal::Flights> local_flights_;
  // The loads' leases against Set, Remove and Invalidate (core/key_epochs.h).
  // Shared with the callbacks of Replicate calls, which may end after the
  // group (they are not waited for).
  std::shared_ptr<internal::KeyEpochs> epochs_;
  std::shared_ptr<Counters> counters_;
  // Addresses that answered a Replicate UNIMPLEMENTED (Go nodes); shared as
  // epochs_ is.
  std::shared_ptr<internal::PeerSet> no_replicas_;
  // Invalidations replica holders did not acknowledge (RetryInvalidations).
  std::shared_ptr<internal::PendingInvalidations> unacked_;
  LatencyHistogram get_miss_latency_;
  LatencyHistogram peer_latency_;
  LatencyHistogram getter_latency_;
};

// Owns groups by name. Groups live as long as the registry; pointers to them
// stay valid until it is destroyed.
class GroupRegistry {
 public:
  GroupRegistry();
  ~GroupRegistry();
  GroupRegistry(const GroupRegistry&) = delete;
  GroupRegistry& operator=(const GroupRegistry&) = delete;

  // AlreadyExists if the name is taken; InvalidArgument for an empty name or
  // a missing getter.
  absl::StatusOr<Group*> NewGroup(GroupOptions options);
  // Null if there is no such group.
  Group* GetGroup(std::string_view name) const;
  std::vector<Group*> Groups() const;

  // Starts a background thread that, every `interval`, sweeps each group's
  // store for expired entries (up to `batch` entries per list and shard, see
  // Store::ReclaimExpired), so that expired entries nobody reads or
  // overwrites still give their memory back. Stops with the registry.
  // A second call changes nothing and returns FailedPrecondition.
  absl::Status StartReclaimer(absl::Duration interval, int64_t batch = 1024);

 private:
  class Reclaimer;

  mutable std::shared_mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<Group>> groups_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Reclaimer> reclaimer_ ABSL_GUARDED_BY(mu_);  // stopped before groups_ dies
};

}  // namespace lcache

#endif  // LCACHE_GROUP_H_
