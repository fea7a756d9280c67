// The lean client of the peer protocol (h2_peer.h): a PeerGetter per peer
// over H2Client, waiting on the caller's thread for the loop to answer.

#include <condition_variable>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "lcache/h2_peer.h"
#include "lcache/json_codec.h"
#include "peer/h2/h2_client.h"
#include "peer/peer_response.h"

namespace lcache {
namespace {

class H2PeerClientImpl;

class H2PeerGetter final : public PeerGetter {
 public:
  H2PeerGetter(std::shared_ptr<H2PeerClientImpl> client, std::string address,
               PeerClientOptions options);
  ~H2PeerGetter() override;

  absl::StatusOr<PeerValue> Get(std::string_view group, std::string_view key) override;

 private:
  const std::shared_ptr<H2PeerClientImpl> client_;
  const std::string address_;
  const std::shared_ptr<internal::H2Client::Connection> connection_;
  internal::H2Client::CallOptions call_;
};

class H2PeerClientImpl final : public H2PeerClient {
 public:
  explicit H2PeerClientImpl(std::unique_ptr<internal::H2Client> client)
      : client_(std::move(client)) {}

  std::shared_ptr<PeerGetter> NewGetter(const std::string& address,
                                        PeerClientOptions options) override {
    return std::make_shared<H2PeerGetter>(
        std::static_pointer_cast<H2PeerClientImpl>(shared_from_this()), address, options);
  }

  internal::H2Client& client() { return *client_; }

 private:
  const std::unique_ptr<internal::H2Client> client_;
};

H2PeerGetter::H2PeerGetter(std::shared_ptr<H2PeerClientImpl> client, std::string address,
                           PeerClientOptions options)
    : client_(std::move(client)),
      address_(std::move(address)),
      connection_(client_->client().Open(address_)) {
  call_.path = kGetMethod;
  call_.timeout = options.timeout;
  if (options.mark_forwarded) call_.metadata.emplace_back(kForwardedMetadataKey, "1");
}

H2PeerGetter::~H2PeerGetter() { client_->client().Close(connection_); }

absl::StatusOr<PeerValue> H2PeerGetter::Get(std::string_view group, std::string_view key) {
  struct Outcome {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    absl::Status status;
    std::string message;
  };
  auto outcome = std::make_shared<Outcome>();
  client_->client().Call(connection_, call_, wire::EncodeGetRequest(group, key),
                         [outcome](absl::Status status, std::string_view message) {
                           {
                             std::lock_guard lock(outcome->mu);
                             outcome->status = std::move(status);
                             outcome->message.assign(message);  // lent: copied before it goes
                             outcome->done = true;
                           }
                           outcome->cv.notify_one();
                         });
  // The loop finishes every call by its deadline (its timer), so this wait
  // ends; no second clock here.
  std::unique_lock lock(outcome->mu);
  outcome->cv.wait(lock, [&] { return outcome->done; });
  if (!outcome->status.ok()) return outcome->status;
  return internal::ValueOfGetResponse(address_, outcome->message);
}

}  // namespace

absl::StatusOr<std::shared_ptr<H2PeerClient>> H2PeerClient::Create() {
  absl::StatusOr<std::unique_ptr<internal::H2Client>> client = internal::H2Client::Create();
  if (!client.ok()) return client.status();
  return std::make_shared<H2PeerClientImpl>(*std::move(client));
}

}  // namespace lcache
