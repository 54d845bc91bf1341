//! The gRPC call to Envoy's rate limit service, over one HTTP/2 channel per worker thread and
//! service address.
//!
//! A tonic [`Channel`] runs its connection as a task on the runtime where it is created. Every
//! worker is its own current-thread runtime, so a channel is never shared between workers:
//! each thread creates its own on first use and keeps it in a thread-local map, dropped and
//! rebuilt if the thread later runs another runtime (tests do).

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use tokio::runtime::{Handle, Id as RuntimeId};
use tonic::transport::{Channel, Endpoint};

#[allow(dead_code, missing_docs, clippy::all, clippy::pedantic)]
mod proto {
    tonic::include_proto!("envoy.service.ratelimit.v3");
}

pub(crate) use proto::rate_limit_descriptor::Entry as DescriptorEntry;
pub(crate) use proto::{RateLimitDescriptor, RateLimitRequest};

use proto::rate_limit_response::Code;
use proto::rate_limit_service_client::RateLimitServiceClient;

type Client = RateLimitServiceClient<Channel>;

/// The least time a connection attempt gets. A call gives up after the filter's timeout (20 ms
/// by default), but the attempt goes on in the channel's task up to this long, so a service
/// that takes longer to connect to than one call may wait still serves the calls after it.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

thread_local! {
    /// This thread's clients by service address, for the runtime that created them.
    static CLIENTS: RefCell<Option<(RuntimeId, HashMap<String, Client>)>> =
        const { RefCell::new(None) };
}

/// What the service decided for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Under every limit (`OK`).
    Ok,
    /// Over a limit (`OVER_LIMIT`).
    OverLimit,
}

/// Why a call produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The configured address does not make a valid endpoint URI.
    #[error("invalid rate limit service address {address:?}: {source}")]
    Endpoint {
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// No answer within the filter's timeout (connecting included).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The call failed: unreachable, refused, or an error status from the service.
    #[error("call failed: {0}")]
    Status(#[source] Box<tonic::Status>),
    /// The service answered with neither OK nor OVER_LIMIT.
    #[error("the service answered with code {0} (neither OK nor OVER_LIMIT)")]
    UnknownCode(i32),
}

/// Asks the service at `address` about `request`, waiting at most `timeout`.
///
/// Must run inside a tokio runtime (the worker's).
pub(crate) async fn should_rate_limit(
    address: &str,
    timeout: Duration,
    request: RateLimitRequest,
) -> Result<Answer, CallError> {
    let mut client = client(address, timeout)?;
    let mut request = tonic::Request::new(request);
    // Also tells the service (grpc-timeout), so it can give up on its side.
    request.set_timeout(timeout);
    let response = tokio::time::timeout(timeout, client.should_rate_limit(request))
        .await
        .map_err(|_| CallError::Timeout(timeout))?
        .map_err(|status| classify(status, timeout))?;
    let code = response.into_inner().overall_code;
    match Code::try_from(code) {
        Ok(Code::Ok) => Ok(Answer::Ok),
        Ok(Code::OverLimit) => Ok(Answer::OverLimit),
        _ => Err(CallError::UnknownCode(code)),
    }
}

/// A failed call's status as a [`CallError`]: the service's own deadline (from the
/// `grpc-timeout` we send) and the channel's connect timeout are timeouts like ours.
fn classify(status: tonic::Status, timeout: Duration) -> CallError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&status);
    let mut timed_out = status.code() == tonic::Code::DeadlineExceeded;
    while let (false, Some(e)) = (timed_out, cause) {
        timed_out = e.is::<tonic::TimeoutExpired>();
        cause = e.source();
    }
    if timed_out {
        CallError::Timeout(timeout)
    } else {
        CallError::Status(Box::new(status))
    }
}

/// This thread's client for `address`, created (without connecting yet) on first use; filters
/// naming the same address share it (and the connect timeout of the first).
fn client(address: &str, call_timeout: Duration) -> Result<Client, CallError> {
    let runtime = Handle::current().id();
    CLIENTS.with(|cell| {
        let mut slot = cell.borrow_mut();
        let clients = match &mut *slot {
            Some((id, clients)) if *id == runtime => clients,
            _ => &mut slot.insert((runtime, HashMap::new())).1,
        };
        if let Some(client) = clients.get(address) {
            return Ok(client.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|source| CallError::Endpoint {
                address: address.to_owned(),
                source,
            })?
            .connect_timeout(call_timeout.max(MIN_CONNECT_TIMEOUT))
            .tcp_nodelay(true)
            .connect_lazy();
        let client = Client::new(channel);
        clients.insert(address.to_owned(), client.clone());
        Ok(client)
    })
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;
    use crate::filter::global_rate_limit::test_service::{rate_limit_service, unique};

    fn request(domain: &str, pairs: &[(&str, &str)]) -> RateLimitRequest {
        RateLimitRequest {
            domain: domain.into(),
            descriptors: vec![RateLimitDescriptor {
                entries: pairs
                    .iter()
                    .map(|(k, v)| DescriptorEntry {
                        key: (*k).into(),
                        value: (*v).into(),
                    })
                    .collect(),
            }],
            hits_addend: 0,
        }
    }

    /// A loopback port with no listener (bound, then released).
    fn closed_port() -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_refused_connection_is_a_call_error() {
        let address = closed_port();
        let err = should_rate_limit(
            &address,
            Duration::from_secs(5),
            request("d", &[("k", "v")]),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, CallError::Status(_)), "{err}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_silent_service_times_out() {
        // Accepts TCP (the kernel completes the handshake) but never speaks HTTP/2.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = silent.local_addr().unwrap().to_string();
        let timeout = Duration::from_millis(200);
        let err = should_rate_limit(&address, timeout, request("d", &[("k", "v")]))
            .await
            .unwrap_err();
        assert!(
            matches!(err, CallError::Timeout(t) if t == timeout),
            "{err}"
        );
    }

    #[test]
    fn a_thread_gets_a_fresh_client_for_each_runtime() {
        // The second runtime must not reuse the first one's channel, whose connection task
        // died with it: both calls must reach the service.
        let Some(address) = rate_limit_service() else {
            return;
        };
        for _ in 0..2 {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let result = rt.block_on(should_rate_limit(
                &address,
                Duration::from_secs(5),
                request("sidecar", &[("service", "com.example.Free")]),
            ));
            assert_eq!(result.unwrap(), Answer::Ok);
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_real_service_counts_a_shared_budget() {
        let Some(address) = rate_limit_service() else {
            return;
        };
        let timeout = Duration::from_secs(5);
        // configs/ratelimit: 5 calls an hour per tenant. A fresh tenant starts a fresh budget
        // (and lands in a fresh hourly window if the hour turns meanwhile, so try again).
        for attempt in 0.. {
            let tenant = unique("client-test-tenant");
            let window = hour_window();
            let mut answers = Vec::new();
            for _ in 0..8 {
                let req = request(
                    "sidecar",
                    &[("generic_key", "tenant-budget"), ("tenant", &tenant)],
                );
                answers.push(should_rate_limit(&address, timeout, req).await.unwrap());
            }
            if hour_window() != window && attempt < 2 {
                continue;
            }
            let ok = answers.iter().filter(|a| **a == Answer::Ok).count();
            assert_eq!(ok, 5, "{answers:?}");
            assert_eq!(answers[..5], [Answer::Ok; 5]);
            break;
        }
        // A service with no rule is never limited.
        for _ in 0..30 {
            let free = request("sidecar", &[("service", "com.example.Free")]);
            assert_eq!(
                should_rate_limit(&address, timeout, free).await.unwrap(),
                Answer::Ok
            );
        }
    }

    /// The index of the current hour since the epoch (the service's windows for `unit: hour`).
    fn hour_window() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 3600
    }
}
