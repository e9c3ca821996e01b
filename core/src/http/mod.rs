//! HTTP/1.1 for the request path, shared by the edge and the connector.
//!
//! Sans-IO where possible: heads are parsed from and serialized to buffers, bodies go through
//! state machines ([`BodyDecoder`], [`BodyEncoder`]) that yield and take `Bytes` without copying
//! payload. Thin async helpers in [`io`] read heads and write vectored batches over compio
//! sockets. What this module leaves to its callers: routing, timeouts, connection pools and
//! the loop that moves bodies between a socket and a link stream.
//!
//! # Layout
//! - [`Headers`]: ordered header fields with case-insensitive lookup.
//! - [`RequestHead`], [`ResponseHead`], [`parse_request`], [`parse_response`]: heads.
//! - [`BodyFraming`], [`request_framing`], [`response_framing`]: RFC 9112 §6 body length,
//!   with request smuggling shapes rejected.
//! - [`BodyDecoder`], [`BodyEncoder`]: streaming body codecs.
//! - [`remove_hop_by_hop`], [`strip_for_forwarding`], [`append_forwarded_for`],
//!   [`is_websocket_upgrade`], [`expects_continue`], [`keep_alive`] and friends: proxy header
//!   rules. How heads travel in a tunnel stream's metadata is [`crate::tunnel`]'s.
//! - [`RequestRoute`], [`normalize_host`], [`normalize_path`]: the one host and path a request
//!   is routed on (`docs/routing.md`).
//! - [`error_response`]: short plain-text error responses; [`status_of`] and [`response_of`]:
//!   the status and response a public client gets for an [`HttpError`].
//! - [`io`]: async helpers over compio sockets.
//! - [`HttpError`]: the one error type; whose fault it was through
//!   [`crate::error::Classify`].

mod decoder;
mod encoder;
mod error;
mod framing;
mod head;
mod headers;
pub mod io;
mod proxy;
mod response;
mod route;

pub use decoder::{BodyDecoder, BodyLimits, DecodeStep};
pub use encoder::{BodyEncoder, encode_last_chunk, is_trailer_allowed};
pub use error::{Fault, HttpError};
pub use framing::{BodyFraming, request_framing, response_framing, set_framing_headers};
pub use head::{
    HeadLimits, MAX_HEADERS_CAP, RequestHead, ResponseHead, Version, parse_request, parse_response,
};
pub use headers::{Header, Headers, tokens};
pub(crate) use headers::{is_field_value, is_tchar};
pub(crate) use proxy::is_dropped_on_forward;
#[cfg(test)]
pub(crate) use proxy::tests::field as proxy_field_strategy;
pub use proxy::{
    CONNECTOR_ID_HEADER, END_TO_END, HOP_BY_HOP, append_forwarded_for, encode_client_response,
    expects_continue, is_switching_protocols, is_upgrade_request, is_websocket_upgrade, keep_alive,
    override_host, remove_hop_by_hop, request_keep_alive, response_keep_alive, set_connector_id,
    set_forwarded_proto, strip_for_forwarding,
};
pub use response::{
    NO_CONNECTOR_DETAIL, error_response, error_response_bytes, no_route_detail,
    origin_refused_detail, origin_timeout_detail, reason_phrase, response_of, status_of,
};
pub use route::{
    MAX_HOST_LEN, RequestRoute, is_normalized_target, normalize_host, normalize_path, target_path,
};
