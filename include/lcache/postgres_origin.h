// PostgresOrigin: a group's values from a PostgreSQL query, over libpq.
//
//   auto origin = lcache::PostgresOrigin::Create({
//       .url = "postgres://app@127.0.0.1:5432/shop",
//       .query = "SELECT body FROM pages WHERE slug = $1",
//       .password_file = "/etc/lcache/pgpass"});
//   registry.NewGroup({.name = "pages", .cache_bytes = 64 << 20, .origin = *origin});
//
// A load runs the query, prepared once per connection, with the key as $1 (a
// text parameter: the server converts it to the column's type). One column,
// text or bytea (bytea arrives as its bytes; any other type as its text form).
//
//   one row           the value (the group's default TTL)
//   no row, or NULL   KeyNotFoundError()
//   several rows      Internal (rows arrive one at a time: the second
//                     stops the query, the rest are never read)
//   a key the column's type rejects (SQLSTATE class 22)   InvalidArgument
//   any other SQL error   Internal, with it; the connection is closed (a
//                     dropped table or a changed column fails the prepared
//                     statement until it is prepared anew)
//   too slow          DeadlineExceeded after `timeout`: waiting for a
//                     connection, connecting and the query together; the
//                     server stops the query then too (statement_timeout)
//   unreachable       Unavailable, with libpq's reason; while a reconnect
//                     backs off (100 ms, doubling up to `max_backoff`),
//                     loads that need a new connection fail at once
//   value too big     OutOfRange, past `max_value_bytes` (checked before a
//                     bytea is decoded; libpq has read the row by then)
//
// A connection that breaks while idle (the server restarted) costs no load
// an error: the pool drops every idle connection and the load is retried
// once on a fresh one. Every wait (a connection, connecting, sending, the
// answer) is bounded by the load's deadline, except resolving a host name,
// which libpq does synchronously: give an address for a strict bound.
//
// The password never appears in the URL (Create refuses one there, where
// `ps` and logs would show it): it comes from `password_file`, or from
// libpq's PGPASSWORD or PGPASSFILE. No error text carries it.
//
// Thread-safety: as Origin. At most `connections` loads query at once; the
// others wait for a connection within their timeout.

#ifndef LCACHE_POSTGRES_ORIGIN_H_
#define LCACHE_POSTGRES_ORIGIN_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lcache/origin.h"

namespace lcache {

struct PostgresOriginOptions {
  // A libpq connection URI (postgres://user@host:port/db?sslmode=...) or
  // key=value string, without a password.
  std::string url = {};
  // One parameter, $1, and one result column.
  std::string query = {};
  // The password: this file's first line. Empty: libpq's own sources.
  std::string password_file = {};
  int connections = 4;
  absl::Duration timeout = absl::Milliseconds(1500);
  size_t max_value_bytes = size_t{16} << 20;
  absl::Duration max_backoff = absl::Seconds(5);
};

class PostgresOrigin final : public Origin {
 public:
  // InvalidArgument for a URL libpq cannot parse or that holds a password,
  // an empty query, an unreadable password file, connections < 1, a timeout
  // <= 0. Does not connect: see Check().
  static absl::StatusOr<std::shared_ptr<PostgresOrigin>> Create(PostgresOriginOptions options);
  ~PostgresOrigin() override;

  // Connects now and prepares the query: OK, InvalidArgument when the server
  // refuses the query (it does not parse, names no such table, does not take
  // one parameter or return one column), or the error of the connection
  // (Unavailable, DeadlineExceeded), after which loads keep retrying.
  absl::Status Check() override;

  absl::StatusOr<Loaded> Load(std::string_view key) override;
  std::string_view kind() const override { return "postgres"; }
  OriginStats stats() const override { return meter_.Snapshot(); }
  // user@host:port/db.
  const std::string& endpoint() const override { return endpoint_; }

 private:
  class Pool;
  PostgresOrigin(PostgresOriginOptions options, std::string endpoint, std::string password);
  absl::StatusOr<Loaded> Query(std::string_view key);

  const PostgresOriginOptions options_;
  const std::string endpoint_;
  std::unique_ptr<Pool> pool_;
  OriginMeter meter_;
};

}  // namespace lcache

#endif  // LCACHE_POSTGRES_ORIGIN_H_
