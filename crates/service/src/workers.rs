//! Serving the bus's shared request queue.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use stacksync_bus::{Bus, IncomingRequest};
use stacksync_proto::rpc::{Request, RpcRequest, RpcResponse};
use stacksync_proto::{Error, brief, wire};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::Service;
use crate::error::ServiceError;

/// Takes requests from `bus`'s shared queue until `shutdown` completes,
/// handling up to `prefetch` at once (the bus hands out no more than that,
/// so idle instances get the rest). Requests in flight at shutdown are
/// finished and answered before this returns. Returns how many requests
/// were answered.
///
/// A malformed payload gets an error reply (with the nil request id when
/// even that cannot be read), never a crash. A request is acknowledged only
/// after its reply is sent, so one whose instance dies is redelivered to
/// another; the operations are idempotent under such a repeat.
pub async fn run_rpc_workers(
    service: Service,
    bus: Bus,
    prefetch: u16,
    shutdown: impl Future<Output = ()>,
) -> Result<u64, ServiceError> {
    let mut requests = bus.serve(prefetch).await?;
    let served = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(error = %e, "request task failed");
                }
            }
            next = requests.next() => {
                let Some(incoming) = next else {
                    tracing::info!("the bus shut down; no more requests");
                    break;
                };
                let (service, served) = (service.clone(), served.clone());
                tasks.spawn(async move {
                    if serve_one(&service, incoming).await {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        }
    }
    // Stop taking requests (unstarted ones go back to the queue for other
    // instances) and finish the ones already started.
    drop(requests);
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "request task failed");
        }
    }
    Ok(served.load(Ordering::Relaxed))
}

/// What the bus refuses that HTTPS allows: secrets never travel through the
/// broker (a password in, broker credentials out), and a request must come
/// from its session's own broker user when the service issues them.
fn bus_policy(service: &Service, req: &RpcRequest, sender: Option<&str>) -> Result<(), Error> {
    match req.request {
        Request::Login { .. } => Err(Error::bad_request(
            "log in over HTTPS (the server's /api/v1/login): passwords are not accepted on the message bus",
        )),
        Request::IssueBrokerCredentials => Err(Error::bad_request(
            "broker credentials are issued over HTTPS only",
        )),
        Request::ChangePassword { .. } => Err(Error::bad_request(
            "change the password over HTTPS (the server's /api/v1/rpc): passwords are not accepted on the message bus",
        )),
        _ => service.check_bus_sender(&req.token, sender),
    }
}

/// Handles one request and replies; true if the reply went out.
async fn serve_one(service: &Service, incoming: IncomingRequest) -> bool {
    let mut peer = wire::Peer::default();
    let response = match wire::decode_from::<RpcRequest>(incoming.payload()) {
        Ok((req, sender_reads)) => {
            peer = sender_reads;
            // Only a commit's reply can be brief (`brief`); shortening it
            // needs the proposals the service consumes.
            let commit = match &req.request {
                r @ Request::Commit(_) if peer.reads_compact() => Some(r.clone()),
                _ => None,
            };
            let (id, redelivered) = (req.request_id, incoming.redelivered());
            if matches!(req.request, Request::Commit(_)) {
                // What the fault tests wait for before killing an instance
                // in the middle of a commit.
                tracing::debug!(request = %id, redelivered, "committing");
            }
            let response = match bus_policy(service, &req, incoming.sender()) {
                Ok(()) => service.handle(req, None).await,
                Err(error) => RpcResponse {
                    request_id: id,
                    result: Err(error),
                },
            };
            tracing::debug!(request = %id, redelivered, ok = response.result.is_ok(), "served");
            match &commit {
                Some(r) => brief::shorten_response(r, response, peer),
                None => response,
            }
        }
        Err(error) => {
            tracing::warn!(%error, "malformed request on the bus");
            RpcResponse {
                request_id: Uuid::nil(),
                result: Err(error),
            }
        }
    };
    match incoming
        .reply(wire::encode_for(&response, peer).into())
        .await
    {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "reply not sent; the request will be retried");
            false
        }
    }
}
