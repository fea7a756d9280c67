#include "lcache/postgres_origin.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <condition_variable>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace lcache {
namespace {

constexpr char kStatement[] = "lcache_get";
constexpr Oid kByteaOid = 17;  // pg_type.oid of bytea, fixed since PostgreSQL 7
constexpr absl::Duration kFirstBackoff = absl::Milliseconds(100);

using Result = std::unique_ptr<PGresult, decltype(&PQclear)>;

// libpq's last error, on one line (it ends its messages with newlines).
std::string ErrorOf(const PGconn* conn) {
  std::string text = PQerrorMessage(conn);
  std::replace(text.begin(), text.end(), '\n', ' ');
  return std::string(absl::StripAsciiWhitespace(text));
}

std::string ErrorOf(const PGresult* r) {
  const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  const char* message = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
  return absl::StrCat(state != nullptr ? state : "?????", " ",
                      message != nullptr ? message : PQresStatus(PQresultStatus(r)));
}

// Waits until the connection's socket is ready for `events` or the deadline
// passes; false on the deadline.
bool WaitFor(const PGconn* conn, short events, absl::Time deadline) {
  pollfd p{.fd = PQsocket(conn), .events = events, .revents = 0};
  while (true) {
    const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now() + absl::Milliseconds(1));
    if (ms <= 0) return false;
    const int n = poll(&p, 1, static_cast<int>(std::min<int64_t>(ms, 1 << 30)));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return true;  // let libpq see the error
  }
}

absl::Status Late(absl::Duration timeout) {
  return absl::DeadlineExceededError(absl::StrCat(
      "lcache: origin postgres did not answer within ", absl::FormatDuration(timeout)));
}

absl::Status Broken(const PGconn* conn) {
  return absl::UnavailableError(absl::StrCat("lcache: origin postgres: ", ErrorOf(conn)));
}

// Sends what the last PQsend* call left in libpq's buffer (the connection is
// non-blocking), within the deadline.
absl::Status Flush(PGconn* conn, absl::Time deadline, absl::Duration timeout) {
  while (true) {
    const int flushed = PQflush(conn);
    if (flushed < 0) return Broken(conn);
    if (flushed == 0) return absl::OkStatus();
    if (!WaitFor(conn, POLLOUT | POLLIN, deadline)) return Late(timeout);
    if (PQconsumeInput(conn) == 0) return Broken(conn);
  }
}

// The next result of the command in progress; null once it is complete.
absl::StatusOr<Result> Next(PGconn* conn, absl::Time deadline, absl::Duration timeout) {
  while (PQisBusy(conn)) {
    if (!WaitFor(conn, POLLIN, deadline)) return Late(timeout);
    if (PQconsumeInput(conn) == 0) return Broken(conn);
  }
  return Result(PQgetResult(conn), &PQclear);
}

// The last result of a command with one (SET, prepare, describe).
absl::StatusOr<Result> Last(PGconn* conn, absl::Time deadline, absl::Duration timeout) {
  if (absl::Status s = Flush(conn, deadline, timeout); !s.ok()) return s;
  Result last(nullptr, &PQclear);
  while (true) {
    absl::StatusOr<Result> r = Next(conn, deadline, timeout);
    if (!r.ok()) return r.status();
    if (*r == nullptr) break;
    last = *std::move(r);
  }
  if (last == nullptr || PQstatus(conn) != CONNECTION_OK) return Broken(conn);
  return last;
}

}  // namespace

// Open connections, each with the statement prepared: idle ones wait in a
// stack; at most `connections` exist; after a failed connect, new ones wait
// for the backoff (loads that find an idle connection go on meanwhile).
class PostgresOrigin::Pool {
 public:
  Pool(const PostgresOriginOptions& options, std::string password)
      : options_(options), password_(std::move(password)) {}

  ~Pool() {
    for (PGconn* c : idle_) PQfinish(c);
  }

  // A connection taken from the pool. Given back on destruction, closed
  // unless `healthy` was set: any path that does not end well, an exception
  // included, costs the connection and never the pool's count.
  class Lease {
   public:
    Lease(Pool* pool, PGconn* conn, bool reused) : pool_(pool), conn_(conn), reused_(reused) {}
    Lease(Lease&& other) noexcept
        : healthy(other.healthy), pool_(other.pool_),
          conn_(std::exchange(other.conn_, nullptr)), reused_(other.reused_) {}
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (conn_ != nullptr) pool_->GiveBack(conn_, healthy);
    }
    PGconn* conn() const { return conn_; }
    bool reused() const { return reused_; }  // idle before: may have broken meanwhile
    bool healthy = false;

   private:
    Pool* pool_;
    PGconn* conn_;
    bool reused_;
  };

  absl::StatusOr<Lease> Take(absl::Time deadline) {
    std::unique_lock lock(mu_);
    const auto full = [&] { return idle_.empty() && open_ >= options_.connections; };
    if (!cv_.wait_until(lock, absl::ToChronoTime(deadline), [&] { return !full(); })) {
      return absl::DeadlineExceededError(absl::StrCat(
          "lcache: origin postgres: all ", options_.connections, " connections stayed busy for ",
          absl::FormatDuration(options_.timeout)));
    }
    const absl::Time now = absl::Now();
    // Woken with no time left: a query now would only time out, and close
    // a healthy connection doing so.
    if (now >= deadline) return Late(options_.timeout);
    if (!idle_.empty()) {
      PGconn* c = idle_.back();
      idle_.pop_back();
      return Lease(this, c, /*reused=*/true);
    }
    if (now < retry_at_) {
      return absl::UnavailableError(absl::StrCat(
          "lcache: origin postgres: cannot connect (", last_error_, "); next attempt in ",
          absl::FormatDuration(absl::Trunc(retry_at_ - now, absl::Milliseconds(1)))));
    }
    // A connect that times out only because this load had waited for most
    // of its time says nothing about the server: no backoff for it.
    const bool fair_attempt = deadline - now >= options_.timeout / 2;
    ++open_;
    lock.unlock();
    // Connect can throw (std::bad_alloc): the connection counted above is
    // uncounted then too, or the pool would be one short for good.
    absl::Cleanup uncount = [&] {
      lock.lock();
      --open_;
      cv_.notify_all();
    };
    absl::StatusOr<PGconn*> c = Connect(deadline);
    std::move(uncount).Cancel();
    lock.lock();
    if (!c.ok()) {
      --open_;
      cv_.notify_all();
      if (!absl::IsDeadlineExceeded(c.status()) || fair_attempt) {
        // Attempts that were under way together are one failure, not many:
        // only one that started after the last failure doubles the wait.
        if (now >= last_failure_) {
          backoff_ = std::min(backoff_ == absl::ZeroDuration() ? kFirstBackoff : backoff_ * 2,
                              options_.max_backoff);
        }
        last_failure_ = absl::Now();
        retry_at_ = last_failure_ + backoff_;
        last_error_ = std::string(
            absl::StripPrefix(c.status().message(), "lcache: origin postgres: "));
      }
      return c.status();
    }
    backoff_ = absl::ZeroDuration();
    retry_at_ = absl::InfinitePast();
    return Lease(this, *c, /*reused=*/false);
  }

  // Closes every idle connection: after one turned out broken (a server
  // restart), the others most likely are too.
  void DropIdle() {
    std::vector<PGconn*> dropped;
    {
      std::lock_guard lock(mu_);
      dropped.swap(idle_);
      open_ -= static_cast<int>(dropped.size());
    }
    for (PGconn* c : dropped) PQfinish(c);
    cv_.notify_all();
  }

 private:
  void GiveBack(PGconn* c, bool healthy) {
    if (!healthy || PQstatus(c) != CONNECTION_OK || PQtransactionStatus(c) != PQTRANS_IDLE) {
      PQfinish(c);
      std::lock_guard lock(mu_);
      --open_;
    } else {
      std::lock_guard lock(mu_);
      idle_.push_back(c);
    }
    cv_.notify_all();
  }

  // A new connection with the statement prepared, or why not.
  absl::StatusOr<PGconn*> Connect(absl::Time deadline) {
    // dbname first, expanded from the URL; the keywords after it win.
    std::vector<const char*> keys = {"dbname", "application_name"};
    std::vector<const char*> values = {options_.url.c_str(), "lcache"};
    if (!password_.empty()) {
      keys.push_back("password");
      values.push_back(password_.c_str());
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);
    // A host name is resolved here, synchronously, outside the deadline:
    // give an address (host=10.0.0.3 or hostaddr) for a strict bound.
    PGconn* c = PQconnectStartParams(keys.data(), values.data(), /*expand_dbname=*/1);
    if (c == nullptr) return absl::ResourceExhaustedError("lcache: out of memory");
    std::unique_ptr<PGconn, decltype(&PQfinish)> conn(c, &PQfinish);
    PostgresPollingStatusType state = PGRES_POLLING_WRITING;
    while (state != PGRES_POLLING_OK) {
      if (state == PGRES_POLLING_FAILED || PQstatus(c) == CONNECTION_BAD) return Broken(c);
      if (!WaitFor(c, state == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline)) {
        return absl::DeadlineExceededError(
            absl::StrCat("lcache: origin postgres: no connection within ",
                         absl::FormatDuration(options_.timeout)));
      }
      state = PQconnectPoll(c);
    }
    // Sends never block from here on: every wait is a poll with the deadline.
    if (PQsetnonblocking(c, 1) != 0) return Broken(c);
    // The server gives up on a query when we do, so a slow one does not
    // hold a backend after its load failed.
    const std::string set = absl::StrCat("SET statement_timeout = ",
                                         absl::ToInt64Milliseconds(options_.timeout));
    if (PQsendQuery(c, set.c_str()) == 0) return Broken(c);
    if (absl::StatusOr<Result> r = Last(c, deadline, options_.timeout); !r.ok()) {
      return r.status();
    }
    if (PQsendPrepare(c, kStatement, options_.query.c_str(), 1, nullptr) == 0) return Broken(c);
    absl::StatusOr<Result> prepared = Last(c, deadline, options_.timeout);
    if (!prepared.ok()) return prepared.status();
    if (PQresultStatus(prepared->get()) != PGRES_COMMAND_OK) {
      return absl::InvalidArgumentError(absl::StrCat(
          "lcache: origin postgres refuses the query: ", ErrorOf(prepared->get())));
    }
    if (PQsendDescribePrepared(c, kStatement) == 0) return Broken(c);
    absl::StatusOr<Result> described = Last(c, deadline, options_.timeout);
    if (!described.ok()) return described.status();
    if (PQnparams(described->get()) != 1 || PQnfields(described->get()) != 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "lcache: the origin query must take one parameter ($1, the key) and return one "
          "column; it takes ",
          PQnparams(described->get()), " and returns ", PQnfields(described->get())));
    }
    return conn.release();
  }

  const PostgresOriginOptions& options_;
  const std::string password_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<PGconn*> idle_;
  int open_ = 0;  // idle and taken
  absl::Duration backoff_ = absl::ZeroDuration();
  absl::Time retry_at_ = absl::InfinitePast();
  absl::Time last_failure_ = absl::InfinitePast();
  std::string last_error_;
};

absl::StatusOr<std::shared_ptr<PostgresOrigin>> PostgresOrigin::Create(
    PostgresOriginOptions options) {
  const auto bad = [](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("lcache: origin postgres: ", why));
  };
  if (options.query.empty()) return bad("no query (-source-query)");
  if (options.connections < 1) return bad("connections must be >= 1");
  if (options.timeout <= absl::ZeroDuration() || options.max_value_bytes == 0 ||
      options.max_backoff <= absl::ZeroDuration()) {
    return bad("timeout, max_backoff and max_value_bytes must be > 0");
  }
  char* parse_error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(options.url.c_str(), &parse_error);
  if (parsed == nullptr) {
    // Not libpq's text: it may quote the URL, password included.
    PQfreemem(parse_error);
    return bad("cannot parse the URL (a postgres:// URI or key=value pairs, as libpq takes)");
  }
  std::string user, host, port, db;
  bool has_password = false;
  for (PQconninfoOption* o = parsed; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    const std::string_view k = o->keyword;
    if (k == "password") has_password = true;
    if (k == "user") user = o->val;
    if (k == "host" || (k == "hostaddr" && host.empty())) host = o->val;
    if (k == "port") port = o->val;
    if (k == "dbname") db = o->val;
  }
  PQconninfoFree(parsed);
  if (has_password) {
    return bad(
        "the URL holds a password, which ps and logs would show: give it in a file "
        "(-source-password-file) or PGPASSWORD");
  }
  std::string password;
  if (!options.password_file.empty()) {
    std::ifstream file(options.password_file);
    if (!file) return bad(absl::StrCat("cannot read the password file ", options.password_file));
    std::getline(file, password);
    if (!password.empty() && password.back() == '\r') password.pop_back();
  }
  std::string endpoint = absl::StrCat(user.empty() ? "" : user + "@",
                                      host.empty() ? "localhost" : host, ":",
                                      port.empty() ? "5432" : port, "/", db);
  return std::shared_ptr<PostgresOrigin>(
      new PostgresOrigin(std::move(options), std::move(endpoint), std::move(password)));
}

PostgresOrigin::PostgresOrigin(PostgresOriginOptions options, std::string endpoint,
                               std::string password)
    : options_(std::move(options)),
      endpoint_(std::move(endpoint)),
      pool_(std::make_unique<Pool>(options_, std::move(password))) {}

PostgresOrigin::~PostgresOrigin() = default;

absl::Status PostgresOrigin::Check() {
  absl::StatusOr<Pool::Lease> lease = pool_->Take(absl::Now() + options_.timeout);
  if (!lease.ok()) return lease.status();
  lease->healthy = true;
  return absl::OkStatus();
}

absl::StatusOr<Loaded> PostgresOrigin::Load(std::string_view key) {
  return meter_.Measure([&] { return Query(key); });
}

absl::StatusOr<Loaded> PostgresOrigin::Query(std::string_view key) {
  if (key.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError(
        "lcache: origin postgres: a key with a NUL byte cannot be a text parameter");
  }
  const std::string param(key);  // libpq wants a C string
  const char* params[] = {param.c_str()};
  const absl::Time deadline = absl::Now() + options_.timeout;
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<Pool::Lease> lease = pool_->Take(deadline);
    if (!lease.ok()) return lease.status();
    PGconn* c = lease->conn();
    // Rows one at a time, so that a query matching many rows for a key is
    // stopped at the second instead of read whole.
    absl::Status sent =
        PQsendQueryPrepared(c, kStatement, 1, params, nullptr, nullptr, /*text*/ 0) != 0 &&
                PQsetSingleRowMode(c) != 0
            ? Flush(c, deadline, options_.timeout)
            : Broken(c);
    std::optional<std::string> value;
    bool found = false;  // a row, NULL or not
    Result error(nullptr, &PQclear);
    while (sent.ok()) {
      absl::StatusOr<Result> r = Next(c, deadline, options_.timeout);
      if (!r.ok()) {
        sent = r.status();
        break;
      }
      if (*r == nullptr) break;  // the command is complete
      const PGresult* res = r->get();
      const ExecStatusType status = PQresultStatus(res);
      if (status == PGRES_SINGLE_TUPLE) {
        if (found) {
          // The connection still has rows coming: it goes (the lease is not
          // healthy), rather than reading them all.
          return absl::InternalError(
              "lcache: origin postgres query returned more than one row for one key");
        }
        found = true;
        if (PQgetisnull(res, 0, 0)) continue;
        const bool bytea = PQftype(res, 0) == kByteaOid;
        const size_t length = static_cast<size_t>(PQgetlength(res, 0, 0));
        // bytea comes as \x and two hex digits a byte: check before decoding.
        if ((bytea ? (length - std::min<size_t>(length, 2)) / 2 : length) >
            options_.max_value_bytes) {
          // The command is not over (its end is still to come): the lease
          // closes the connection.
          return absl::OutOfRangeError(absl::StrCat(
              "lcache: origin postgres sent a value of ",
              bytea ? (length - std::min<size_t>(length, 2)) / 2 : length,
              " bytes, over the limit of ", options_.max_value_bytes));
        }
        if (bytea) {
          size_t n = 0;
          std::unique_ptr<unsigned char, decltype(&PQfreemem)> bytes(
              PQunescapeBytea(reinterpret_cast<const unsigned char*>(PQgetvalue(res, 0, 0)), &n),
              &PQfreemem);
          if (bytes == nullptr) return absl::ResourceExhaustedError("lcache: out of memory");
          value.emplace(reinterpret_cast<const char*>(bytes.get()), n);
        } else {
          value.emplace(PQgetvalue(res, 0, 0), length);
        }
      } else if (status != PGRES_TUPLES_OK && error == nullptr) {
        error = *std::move(r);
      }
    }
    if (!sent.ok()) {
      // An idle connection the server closed (a restart, an idle timeout),
      // and likely its idle siblings too: once more, on a fresh one.
      if (absl::IsUnavailable(sent) && lease->reused() && attempt == 0) {
        pool_->DropIdle();
        continue;
      }
      return sent;
    }
    if (error != nullptr) {
      const char* state = PQresultErrorField(error.get(), PG_DIAG_SQLSTATE);
      const std::string_view code = state != nullptr ? state : "";
      const std::string what = ErrorOf(error.get());
      // A key the column's type rejects, or the server's statement_timeout:
      // the connection is fine. Anything else (a dropped table, a plan the
      // schema outdated) may fail every time on it: it is closed.
      lease->healthy = code.starts_with("22") || code == "57014";
      if (code == "57014") {
        return absl::DeadlineExceededError(
            absl::StrCat("lcache: origin postgres did not answer within ",
                         absl::FormatDuration(options_.timeout), " (", what, ")"));
      }
      if (code.starts_with("22")) {
        return absl::InvalidArgumentError(
            absl::StrCat("lcache: origin postgres rejects the key: ", what));
      }
      return absl::InternalError(absl::StrCat("lcache: origin postgres query failed: ", what));
    }
    lease->healthy = true;
    if (!value) return KeyNotFoundError();  // no row, or NULL
    return Loaded(ByteView::Adopt(*std::move(value)));
  }
}

}  // namespace lcache
