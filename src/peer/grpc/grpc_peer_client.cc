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

#include <algorithm>
#include <memory>
#include <optional>
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
      : peer_(std::make_shared<const Peer>(Peer{address, options})),
        stub_(grpc::CreateChannel(address, grpc::InsecureChannelCredentials())) {}

  absl::StatusOr<PeerValue> Get(std::string_view group, std::string_view key) override {
    absl::StatusOr<PeerValue> value;
    absl::Notification done;
    StartGet(group, key, absl::InfiniteFuture(), [&value, &done](absl::StatusOr<PeerValue> v) {
      value = std::move(v);
      done.Notify();
    });
    // The call completes, at the latest at its deadline, on gRPC's threads.
    done.WaitForNotification();
    return value;
  }

  // The callback API: the call completes on gRPC's threads, which run `done`.
  bool StartGet(std::string_view group, std::string_view key, absl::Time deadline,
                Done done) override {
    struct Call {
      grpc::ClientContext ctx;
      grpc::ByteBuffer request;
      grpc::ByteBuffer response;
      absl::Duration budget;
      Done done;
    };
    auto call = std::make_shared<Call>();
    call->request = internal::ByteBufferOf(wire::EncodeGetRequest(group, key));
    const absl::Time now = absl::Now();
    const absl::Time call_deadline = std::min(now + peer_->options.timeout, deadline);
    call->budget = call_deadline - now;
    call->done = std::move(done);
    call->ctx.set_deadline(absl::ToChronoTime(call_deadline));
    if (peer_->options.mark_forwarded) call->ctx.AddMetadata(kForwardedMetadataKey, "1");
    stub_.UnaryCall(&call->ctx, kGetMethod, grpc::StubOptions(), &call->request, &call->response,
                    [peer = peer_, call](grpc::Status status) {
                      call->done(peer->Answer(status, call->response, call->budget));
                    });
    return true;
  }

 private:
  // What a call's completion needs, shared with the calls in flight: one may
  // complete after the getter has gone (gRPC keeps the channel for it).
  struct Peer {
    std::string address;
    PeerClientOptions options;

    absl::StatusOr<PeerValue> Answer(const grpc::Status& status,
                                     const grpc::ByteBuffer& response,
                                     absl::Duration budget) const;
  };

  const std::shared_ptr<const Peer> peer_;
  grpc::GenericStub stub_;  // owns the channel, shared by all calls
};

absl::StatusOr<PeerValue> GrpcPeerGetter::Peer::Answer(const grpc::Status& status,
                                                      const grpc::ByteBuffer& response,
                                                      absl::Duration budget) const {
    if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      return PeerDeadlineExceeded(
          absl::StrCat("lcache: deadline exceeded calling ", kGetMethod, " on ", address,
                       " (after ", absl::FormatDuration(budget), ")"),
          budget, options.timeout);
    }
    if (!status.ok()) return FromGrpc(status);
    std::optional<std::string> bytes = internal::BytesOf(response);
    if (!bytes) {
      return absl::InternalError(absl::StrCat("lcache: peer ", address, ": unreadable response"));
    }
    return internal::ValueOfGetResponse(address, *bytes);
}

}  // namespace

std::shared_ptr<PeerGetter> NewGrpcPeerGetter(const std::string& address,
                                              PeerClientOptions options) {
  return std::make_shared<GrpcPeerGetter>(address, options);
}

}  // namespace lcache
