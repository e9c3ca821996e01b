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
//! - [`error_response`]: short plain-text error responses.
//! - [`HttpError`]: the one error type, with [`HttpError::status`] and [`HttpError::fault`].

mod decoder;
mod encoder;
mod error;
mod framing;
mod head;
mod headers;
mod response;

pub use decoder::{BodyDecoder, BodyLimits, DecodeStep};
pub use encoder::BodyEncoder;
pub use error::{Fault, HttpError};
pub use framing::{BodyFraming, request_framing, response_framing, set_framing_headers};
pub use head::{
    HeadLimits, MAX_HEADERS_CAP, RequestHead, ResponseHead, Version, parse_request, parse_response,
};
pub use headers::{Header, Headers, tokens};
pub use response::{
    NO_CONNECTOR_DETAIL, error_response, error_response_bytes, no_route_detail,
    origin_refused_detail, origin_timeout_detail, reason_phrase,
};
