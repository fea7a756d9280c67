#include "lcache/postgres_origin.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <condition_variable>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

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

// The result of the command sent last, read within the deadline. A
// connection that breaks gives Unavailable; the deadline DeadlineExceeded.
absl::StatusOr<Result> Await(PGconn* conn, absl::Time deadline, absl::Duration timeout) {
  const auto late = [&] {
    return absl::DeadlineExceededError(absl::StrCat(
        "lcache: origin postgres did not answer within ", absl::FormatDuration(timeout)));
  };
  const auto broken = [&] {
    return absl::UnavailableError(absl::StrCat("lcache: origin postgres: ", ErrorOf(conn)));
  };
  while (true) {
    const int flushed = PQflush(conn);
    if (flushed < 0) return broken();
    if (flushed == 0) break;
    if (!WaitFor(conn, POLLOUT | POLLIN, deadline)) return late();
    if (PQconsumeInput(conn) == 0) return broken();
  }
  Result last(nullptr, &PQclear);
  while (true) {
    while (PQisBusy(conn)) {
      if (!WaitFor(conn, POLLIN, deadline)) return late();
      if (PQconsumeInput(conn) == 0) return broken();
    }
    PGresult* r = PQgetResult(conn);
    if (r == nullptr) break;
    last.reset(r);
  }
  if (last == nullptr || PQstatus(conn) != CONNECTION_OK) return broken();
  return last;
}

}  // namespace

// Open connections, each with the statement prepared: idle ones wait in a
// stack; at most `size` exist; after a failed connect, new ones wait for the
// backoff (loads that find an idle connection go on meanwhile).
class PostgresOrigin::Pool {
 public:
  Pool(const PostgresOriginOptions& options, std::string password)
      : options_(options), password_(std::move(password)) {}

  ~Pool() {
    for (PGconn* c : idle_) PQfinish(c);
  }

  struct Lease {
    PGconn* conn = nullptr;
    bool reused = false;  // idle before: may have broken while it waited
  };

  absl::StatusOr<Lease> Take(absl::Time deadline) {
    std::unique_lock lock(mu_);
    const auto full = [&] { return idle_.empty() && open_ >= options_.connections; };
    if (!cv_.wait_until(lock, absl::ToChronoTime(deadline), [&] { return !full(); })) {
      return absl::DeadlineExceededError(absl::StrCat(
          "lcache: origin postgres: all ", options_.connections, " connections stayed busy for ",
          absl::FormatDuration(options_.timeout)));
    }
    if (!idle_.empty()) {
      PGconn* c = idle_.back();
      idle_.pop_back();
      return Lease{.conn = c, .reused = true};
    }
    if (const absl::Time now = absl::Now(); now < retry_at_) {
      return absl::UnavailableError(absl::StrCat(
          "lcache: origin postgres: cannot connect (", last_error_, "); next attempt in ",
          absl::FormatDuration(absl::Trunc(retry_at_ - now, absl::Milliseconds(1)))));
    }
    // A connect that times out only because this load had waited for most
    // of its time says nothing about the server: no backoff for it.
    const bool fair_attempt = deadline - absl::Now() >= options_.timeout / 2;
    ++open_;
    lock.unlock();
    absl::StatusOr<PGconn*> c = Connect(deadline);
    lock.lock();
    if (!c.ok()) {
      --open_;
      cv_.notify_one();
      if (absl::IsUnavailable(c.status()) ||
          (absl::IsDeadlineExceeded(c.status()) && fair_attempt)) {
        backoff_ = std::min(backoff_ == absl::ZeroDuration() ? kFirstBackoff : backoff_ * 2,
                            options_.max_backoff);
        retry_at_ = absl::Now() + backoff_;
        last_error_ = std::string(
            absl::StripPrefix(c.status().message(), "lcache: origin postgres: "));
      }
      return c.status();
    }
    backoff_ = absl::ZeroDuration();
    retry_at_ = absl::InfinitePast();
    return Lease{.conn = *c, .reused = false};
  }

  // `healthy`: the connection may serve another load.
  void GiveBack(PGconn* c, bool healthy) {
    if (!healthy || PQstatus(c) != CONNECTION_OK ||
        PQtransactionStatus(c) != PQTRANS_IDLE) {
      PQfinish(c);
      std::lock_guard lock(mu_);
      --open_;
    } else {
      std::lock_guard lock(mu_);
      idle_.push_back(c);
    }
    cv_.notify_one();
  }

 private:
  // A new connection with the statement prepared, or why not.
  absl::StatusOr<PGconn*> Connect(absl::Time deadline) {
    const std::string timeout_ms = std::to_string(absl::ToInt64Milliseconds(options_.timeout));
    // dbname first, expanded from the URL; the keywords after it win.
    std::vector<const char*> keys = {"dbname", "application_name"};
    std::vector<const char*> values = {options_.url.c_str(), "lcache"};
    if (!password_.empty()) {
      keys.push_back("password");
      values.push_back(password_.c_str());
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);
    PGconn* c = PQconnectStartParams(keys.data(), values.data(), /*expand_dbname=*/1);
    if (c == nullptr) return absl::ResourceExhaustedError("lcache: out of memory");
    std::unique_ptr<PGconn, decltype(&PQfinish)> conn(c, &PQfinish);
    PostgresPollingStatusType state = PGRES_POLLING_WRITING;
    while (state != PGRES_POLLING_OK) {
      if (state == PGRES_POLLING_FAILED || PQstatus(c) == CONNECTION_BAD) {
        return absl::UnavailableError(absl::StrCat("lcache: origin postgres: ", ErrorOf(c)));
      }
      if (!WaitFor(c, state == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline)) {
        return absl::DeadlineExceededError(
            absl::StrCat("lcache: origin postgres: no connection within ",
                         absl::FormatDuration(options_.timeout)));
      }
      state = PQconnectPoll(c);
    }
    // The server gives up on a query when we do, so a slow one does not
    // hold a backend after its load failed.
    const std::string set = absl::StrCat("SET statement_timeout = ", timeout_ms);
    if (PQsendQuery(c, set.c_str()) == 0) {
      return absl::UnavailableError(absl::StrCat("lcache: origin postgres: ", ErrorOf(c)));
    }
    if (absl::StatusOr<Result> r = Await(c, deadline, options_.timeout); !r.ok()) {
      return r.status();
    }
    if (PQsendPrepare(c, kStatement, options_.query.c_str(), 1, nullptr) == 0) {
      return absl::UnavailableError(absl::StrCat("lcache: origin postgres: ", ErrorOf(c)));
    }
    absl::StatusOr<Result> prepared = Await(c, deadline, options_.timeout);
    if (!prepared.ok()) return prepared.status();
    if (PQresultStatus(prepared->get()) != PGRES_COMMAND_OK) {
      return absl::InvalidArgumentError(absl::StrCat(
          "lcache: origin postgres refuses the query: ", ErrorOf(prepared->get())));
    }
    if (PQsendDescribePrepared(c, kStatement) == 0) {
      return absl::UnavailableError(absl::StrCat("lcache: origin postgres: ", ErrorOf(c)));
    }
    absl::StatusOr<Result> described = Await(c, deadline, options_.timeout);
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
    // libpq's message quotes the URL back only for a bad keyword, never a value.
    const std::string why = parse_error != nullptr ? parse_error : "cannot parse the URL";
    PQfreemem(parse_error);
    return bad(std::string(absl::StripAsciiWhitespace(why)));
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
  pool_->GiveBack(lease->conn, true);
  return absl::OkStatus();
}

absl::StatusOr<Loaded> PostgresOrigin::Load(std::string_view key) {
  const absl::Time start = absl::Now();
  absl::StatusOr<Loaded> result = Query(key);
  meter_.Record(result, absl::Now() - start);
  return result;
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
    PGconn* c = lease->conn;
    absl::StatusOr<Result> r =
        PQsendQueryPrepared(c, kStatement, 1, params, nullptr, nullptr, /*text*/ 0) != 0
            ? Await(c, deadline, options_.timeout)
            : absl::UnavailableError(absl::StrCat("lcache: origin postgres: ", ErrorOf(c)));
    if (!r.ok()) {
      pool_->GiveBack(c, false);
      // An idle connection the server closed (a restart, an idle timeout):
      // once more on a fresh one, if time is left.
      if (absl::IsUnavailable(r.status()) && lease->reused && attempt == 0) continue;
      return r.status();
    }
    const PGresult* res = r->get();
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
      const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
      const std::string what = ErrorOf(res);
      pool_->GiveBack(c, true);
      if (state != nullptr && std::string_view(state) == "57014") {  // statement_timeout
        return absl::DeadlineExceededError(
            absl::StrCat("lcache: origin postgres did not answer within ",
                         absl::FormatDuration(options_.timeout), " (", what, ")"));
      }
      if (state != nullptr && std::string_view(state).starts_with("22")) {
        return absl::InvalidArgumentError(
            absl::StrCat("lcache: origin postgres rejects the key: ", what));
      }
      return absl::InternalError(absl::StrCat("lcache: origin postgres query failed: ", what));
    }
    const int rows = PQntuples(res);
    if (rows > 1) {
      pool_->GiveBack(c, true);
      return absl::InternalError(absl::StrCat("lcache: origin postgres query returned ", rows,
                                              " rows for one key (at most 1 expected)"));
    }
    if (rows == 0 || PQgetisnull(res, 0, 0)) {
      pool_->GiveBack(c, true);
      return KeyNotFoundError();
    }
    std::string value;
    if (PQftype(res, 0) == kByteaOid) {
      size_t n = 0;
      unsigned char* bytes =
          PQunescapeBytea(reinterpret_cast<const unsigned char*>(PQgetvalue(res, 0, 0)), &n);
      if (bytes == nullptr) {
        pool_->GiveBack(c, true);
        return absl::ResourceExhaustedError("lcache: out of memory");
      }
      value.assign(reinterpret_cast<const char*>(bytes), n);
      PQfreemem(bytes);
    } else {
      value.assign(PQgetvalue(res, 0, 0), static_cast<size_t>(PQgetlength(res, 0, 0)));
    }
    pool_->GiveBack(c, true);
    if (value.size() > options_.max_value_bytes) {
      return absl::OutOfRangeError(absl::StrCat("lcache: origin postgres sent a value of ",
                                                value.size(), " bytes, over the limit of ",
                                                options_.max_value_bytes));
    }
    return Loaded(ByteView::Adopt(std::move(value)));
  }
}

}  // namespace lcache
