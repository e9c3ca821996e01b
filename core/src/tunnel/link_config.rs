//! The mux configuration of a tunnel link: the mux defaults with room for the largest OPEN and
//! REPLY metadata an HTTP head can need. Both ends use it, so they agree on the limit.

/// The most OPEN/REPLY metadata a tunnel link accepts: a head at the 64 KiB head limit
/// ([`HeadLimits`](crate::http::HeadLimits)) plus what the edge adds to it (`X-Forwarded-For`,
/// `X-Forwarded-Proto`) and the metadata encoding's own bytes. With the mux default (64 KiB),
/// a request head the edge had accepted could not be opened and got 502 instead of reaching
/// the origin.
pub const TUNNEL_MAX_METADATA: u32 = 64 * 1024 + 8 * 1024;

/// The mux configuration both ends of a tunnel link use.
pub fn tunnel_link_config() -> crate::mux::Config {
    crate::mux::Config {
        max_metadata_size: TUNNEL_MAX_METADATA,
        ..crate::mux::Config::default()
    }
}
