// The gRPC client of the peer protocol (grpc_peer.h): a PeerGetter over one
// channel per peer, calling /lcache.LCache/Get with JSON bytes through a
// generic stub (there is no generated protobuf stub: the messages are JSON).
//
// Interop limit: the Go client sends `content-type: application/grpc+json`,
// and a Go server picks its codec by that subtype. gRPC C++ 1.51 cannot send
// a subtype: core keeps content-type as a typed value (ContentTypeMetadata)
// that parses every "application/grpc+..." to one enum and always encodes it
// as plain "application/grpc", and the HTTP client filter sets it on every
// call; metadata added through ClientContext cannot change it. So a Go
// server answers this client only if it forces its JSON codec regardless of
// the subtype (grpc.ForceServerCodec); C++ servers do not care.

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "lcache/grpc_peer.h"
#include "lcache/json_codec.h"
#include "peer/grpc/grpc_bytes.h"
#include "peer/peer_response.h"

namespace lcache {
namespace {

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

class GrpcPeerGetter final : public PeerGetter {
 public:
  GrpcPeerGetter(const std::string& address, PeerClientOptions options)
      : address_(address),
        options_(options),
        stub_(grpc::CreateChannel(address, grpc::InsecureChannelCredentials())) {}

  absl::StatusOr<PeerValue> Get(std::string_view group, std::string_view key) override {
    const grpc::ByteBuffer request = internal::ByteBufferOf(wire::EncodeGetRequest(group, key));
    grpc::ByteBuffer response;

    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout));
    if (options_.mark_forwarded) ctx.AddMetadata(kForwardedMetadataKey, "1");

    // The callback API with a wait rather than a completion queue per call:
    // the call completes (at the latest at its deadline) on gRPC's threads.
    grpc::Status status;
    absl::Notification done;
    stub_.UnaryCall(&ctx, kGetMethod, grpc::StubOptions(), &request, &response,
                    [&status, &done](grpc::Status s) {
                      status = std::move(s);
                      done.Notify();
                    });
    done.WaitForNotification();
    if (!status.ok()) return FromGrpc(status);

    std::optional<std::string> bytes = internal::BytesOf(response);
    if (!bytes) {
      return absl::InternalError(absl::StrCat("lcache: peer ", address_, ": unreadable response"));
    }
    return internal::ValueOfGetResponse(address_, *bytes);
  }

 private:
  const std::string address_;
  const PeerClientOptions options_;
  grpc::GenericStub stub_;  // owns the channel, shared by all calls
};

}  // namespace

std::shared_ptr<PeerGetter> NewGrpcPeerGetter(const std::string& address,
                                              PeerClientOptions options) {
  return std::make_shared<GrpcPeerGetter>(address, options);
}

}  // namespace lcache
