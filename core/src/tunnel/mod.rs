//! What the tunnel adds to a request on its way between the edge and the connector, over a
//! [`crate::link`] of [`crate::mux`] streams: the stream metadata (the request head in OPEN, the
//! response head or an error in REPLY, specified in `docs/http-meta.md`), the edge's rewrite of
//! a client's head into that metadata, and the mux configuration both ends of a tunnel link
//! use. HTTP/1.1 itself (heads, bodies, proxy header rules) is [`crate::http`]'s; this module
//! only carries what it parsed.
//!
//! # Layout
//! - [`encode_request_meta`], [`decode_request_meta`], [`RequestExtra`]: OPEN metadata.
//! - [`encode_response_meta`], [`encode_response_meta_with`] (the trailers flag),
//!   [`encode_reply_error`], [`decode_response_meta`], [`ResponseMeta`], [`ReplyError`]:
//!   REPLY metadata.
//! - [`forward_request_meta`], [`forward_request_meta_with`]: the edge's rewrite of a client's
//!   head (`X-Forwarded-*`, routed `Host`, hop-by-hop fields dropped) straight into OPEN
//!   metadata, in one pass.
//! - [`tunnel_link_config`], [`TUNNEL_MAX_METADATA`]: the mux configuration of a tunnel link.

mod forward;
mod link_config;
mod meta;

pub use forward::{forward_request_meta, forward_request_meta_with};
pub use link_config::{TUNNEL_MAX_METADATA, tunnel_link_config};
pub use meta::{
    MAX_META_HEADERS, META_VERSION, ReplyError, ReplyErrorKind, RequestExtra, ResponseMeta,
    decode_request_meta, decode_response_meta, encode_reply_error, encode_request_meta,
    encode_response_meta, encode_response_meta_with,
};
