//! Requests over the bus: one request id per logical request, retried on
//! transient failures, and replies matched to it.

use std::time::Duration;

use bytes::Bytes;
use stacksync_bus::{Bus, BusError};
use stacksync_gateway_client::RetryPolicy;
use stacksync_proto::rpc::{Reply, Request, RpcRequest, RpcResponse};
use stacksync_proto::{Error, brief, wire};
use uuid::Uuid;

/// One logical request: one request id, retried on transient failures
/// (bus timeouts, a lost broker connection, the service's `Unavailable`),
/// so the service recognises a repeat of a request it already carried out.
pub(super) async fn call(
    bus: &Bus,
    token: &str,
    request: Request,
    retry: RetryPolicy,
    timeout: Duration,
) -> Result<Reply, Error> {
    let message = RpcRequest {
        request_id: Uuid::now_v7(),
        token: token.to_owned(),
        request,
    };
    // Plain, but saying this side reads compact replies; the service then
    // answers compressed and brief where it pays.
    let payload = Bytes::from(wire::encode_for(&message, wire::Peer::default()));
    // One wait per retry; when they run out, `retry.attempts` were made.
    let mut delays = retry.delays();
    loop {
        let outcome = match bus.call(payload.clone(), timeout).await {
            Ok(bytes) => read_response(&bytes, message.request_id)
                .and_then(|reply| brief::expand_reply(&message.request, reply)),
            Err(e) => Err(bus_error(e)),
        };
        match outcome {
            Err(e) if e.kind.is_transient() => {
                let Some(delay) = delays.next() else {
                    return Err(e);
                };
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}

pub(super) fn bus_error(e: BusError) -> Error {
    if e.is_transient() {
        Error::unavailable(format!("message bus: {e}"))
    } else {
        Error::internal(format!("message bus: {e}"))
    }
}

/// The service's answer to request `id`.
fn read_response(bytes: &[u8], id: Uuid) -> Result<Reply, Error> {
    let response: RpcResponse = wire::decode(bytes).map_err(|e| {
        Error::internal(format!(
            "unreadable reply on the message bus: {}",
            e.message
        ))
    })?;
    if response.request_id != id {
        return Err(Error::internal(format!(
            "the service answered request {id} with the reply to {}",
            response.request_id
        )));
    }
    response.result
}

#[cfg(test)]
mod tests {
    use super::*;
    use stacksync_proto::ErrorKind;

    fn quick_retry(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        }
    }

    /// Serves `answers.len()` requests on `bus`, answering each with the
    /// next result (`None`: keep the request unanswered until the next one
    /// arrives, so that the caller times out); returns the request ids seen.
    fn serve(
        bus: &Bus,
        answers: Vec<Option<Result<Reply, Error>>>,
    ) -> tokio::task::JoinHandle<Vec<Uuid>> {
        let bus = bus.clone();
        tokio::spawn(async move {
            let mut requests = bus.serve(4).await.expect("the in-process bus serves");
            let mut seen = Vec::new();
            let mut held = Vec::new();
            for answer in answers {
                let incoming = requests.next().await.expect("a request arrives");
                let req: RpcRequest = wire::decode(incoming.payload()).expect("a request decodes");
                seen.push(req.request_id);
                match answer {
                    Some(result) => {
                        let response = RpcResponse {
                            request_id: req.request_id,
                            result,
                        };
                        incoming
                            .reply(wire::encode(&response).into())
                            .await
                            .expect("the reply is sent");
                    }
                    None => held.push(incoming),
                }
            }
            seen
        })
    }

    #[tokio::test]
    async fn transient_failures_are_retried_under_one_request_id() {
        let bus = Bus::in_process(stacksync_bus::MemoryConfig::default());
        let done = Reply::Workspaces { workspaces: vec![] };
        let server = serve(
            &bus,
            vec![
                Some(Err(Error::unavailable("database restarting"))),
                // No answer: the caller's attempt times out on the bus.
                None,
                Some(Ok(done.clone())),
            ],
        );
        let reply = call(
            &bus,
            "token",
            Request::GetWorkspaces,
            quick_retry(5),
            Duration::from_millis(300),
        )
        .await
        .expect("the third attempt succeeds");
        assert_eq!(reply, done);
        let seen = server.await.unwrap();
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|id| *id == seen[0]), "{seen:?}");
    }

    #[tokio::test]
    async fn refusals_are_not_retried_and_retries_end() {
        let bus = Bus::in_process(stacksync_bus::MemoryConfig::default());
        let server = serve(&bus, vec![Some(Err(Error::forbidden("not a member")))]);
        let err = call(
            &bus,
            "t",
            Request::GetAccount,
            quick_retry(5),
            Duration::from_secs(20),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Forbidden);
        assert_eq!(server.await.unwrap().len(), 1);

        let server = serve(
            &bus,
            vec![
                Some(Err(Error::unavailable("down"))),
                Some(Err(Error::unavailable("still down"))),
            ],
        );
        let err = call(
            &bus,
            "t",
            Request::GetAccount,
            quick_retry(2),
            Duration::from_secs(20),
        )
        .await
        .unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (ErrorKind::Unavailable, "still down")
        );
        assert_eq!(server.await.unwrap().len(), 2);
    }

    #[test]
    fn replies_to_other_requests_are_refused() {
        let id = Uuid::now_v7();
        let reply = RpcResponse {
            request_id: Uuid::now_v7(),
            result: Ok(Reply::Workspaces { workspaces: vec![] }),
        };
        let err = read_response(&wire::encode(&reply), id).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Internal);
        assert!(err.message.contains(&id.to_string()), "{err}");
        let err = read_response(b"not json", id).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Internal);
        let ok = RpcResponse {
            request_id: id,
            result: Err(Error::unauthenticated("expired")),
        };
        assert_eq!(
            read_response(&wire::encode(&ok), id).unwrap_err().kind,
            ErrorKind::Unauthenticated
        );
    }
}
