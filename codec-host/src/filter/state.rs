//! What a filter instance's hostcalls work with between and during guest calls
//! ([`FilterState`], kept in the instance's `HostState`): the effective context, the maps
//! and body of the stream whose callback runs, the properties of every live stream, and what
//! the guest asked of other streams (continue, answer) for the host to act on after the call.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use codec_abi::HeaderMap;

use super::abi::AbiVersion;
use super::shared::{FilterShared, QueueWaker};

/// What the proxy tells a filter about one RPC call (its properties).
#[derive(Debug, Clone, Default)]
pub struct StreamInfo {
    /// The protocol (`bolt`, `dubbo`, …).
    pub protocol: Arc<str>,
    /// The listener the call arrived on.
    pub listener: Arc<str>,
    /// The cluster the route chose.
    pub cluster: Arc<str>,
    /// The downstream peer.
    pub source: Option<SocketAddr>,
    /// The downstream connection's local address.
    pub destination: Option<SocketAddr>,
    /// The request id as the client sent it.
    pub request_id: u64,
}

/// An answer a filter gave on the server's behalf (`proxy_send_local_response`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    /// The HTTP-style status the filter gave (mapped by the codec's hijack).
    pub status: u32,
    /// The status details text.
    pub details: Vec<u8>,
    /// The body the filter gave (RPC codecs build their own error body).
    pub body: Vec<u8>,
    /// The headers the filter gave.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What a filter asked of a stream from inside a callback of another context (typically
/// `proxy_on_tick` after `proxy_set_effective_context`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// `proxy_continue_stream` / `proxy_continue_request` / `proxy_continue_response`.
    Continue {
        /// The stream's context id.
        context: u32,
    },
    /// `proxy_send_local_response`.
    LocalResponse {
        /// The stream's context id.
        context: u32,
        /// The answer.
        response: LocalResponse,
    },
    /// `proxy_close_stream`: end the call (answered as a filter failure).
    Close {
        /// The stream's context id.
        context: u32,
    },
}

impl StreamEvent {
    /// The context the event is for.
    pub fn context(&self) -> u32 {
        match self {
            StreamEvent::Continue { context }
            | StreamEvent::LocalResponse { context, .. }
            | StreamEvent::Close { context } => *context,
        }
    }
}

/// A live stream: its properties, including those the filter set.
#[derive(Debug, Default)]
pub(crate) struct StreamProps {
    pub(crate) info: StreamInfo,
    pub(crate) upstream: Option<SocketAddr>,
    pub(crate) custom: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The maps and body of the callback running now (taken from the frames for the call and
/// given back after it).
#[derive(Debug, Default)]
pub(crate) struct CallMaps {
    /// The context whose callback runs.
    pub(crate) ctx: u32,
    pub(crate) request: Option<HeaderMap>,
    pub(crate) response: Option<HeaderMap>,
    /// The body of a body callback: (buffer type, bytes).
    pub(crate) body: Option<(i32, Bytes)>,
    pub(crate) request_changed: bool,
    pub(crate) response_changed: bool,
}

/// The filter half of an instance's host state.
pub(crate) struct FilterState {
    pub(crate) root_id: u32,
    pub(crate) vm_id: Arc<str>,
    pub(crate) shared: Arc<FilterShared>,
    /// The context hostcalls act on: the callback's, until `proxy_set_effective_context`.
    pub(crate) effective: u32,
    pub(crate) call: CallMaps,
    pub(crate) streams: HashMap<u32, StreamProps>,
    pub(crate) events: Vec<StreamEvent>,
    /// `proxy_set_tick_period_milliseconds` (0 = off).
    pub(crate) tick_period: Duration,
    pub(crate) queue_waker: Option<QueueWaker>,
}

impl FilterState {
    pub(crate) fn new(
        abi: AbiVersion,
        root_id: u32,
        vm_id: Arc<str>,
        shared: Arc<FilterShared>,
        queue_waker: Option<QueueWaker>,
    ) -> FilterState {
        let _ = abi;
        FilterState {
            root_id,
            vm_id,
            shared,
            effective: root_id,
            call: CallMaps::default(),
            streams: HashMap::new(),
            events: Vec::new(),
            tick_period: Duration::ZERO,
            queue_waker,
        }
    }
}
