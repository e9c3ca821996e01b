//! The registration messages and their codec (sans-IO).
//!
//! A message on the wire is `len: u16 (big endian) | type: u8 | body`, where `len` counts
//! `type` and `body` and is at most [`MAX_MESSAGE`]. Strings are `u16` length + UTF-8, at most
//! [`MAX_STRING`] bytes. Bytes after the known fields of a body are ignored, so a later
//! version can append fields.

use super::error::HandshakeError;

/// The registration protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 1;
/// Most bytes one message may carry after its length prefix.
pub const MAX_MESSAGE: usize = 1024;
/// Most bytes of one string field.
pub const MAX_STRING: usize = 256;

const T_CHALLENGE: u8 = 1;
const T_REGISTER: u8 = 2;
const T_ACCEPTED: u8 = 3;
const T_REJECTED: u8 = 4;

/// Edge → connector: prove you hold the secret for this nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The edge's registration protocol version.
    pub version: u8,
    /// Random per connection.
    pub nonce: [u8; 32],
}

/// Flags of a registration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegisterFlags(pub u8);

impl RegisterFlags {
    /// The connector is a standby replica (`--standby`): the edge sends it traffic only when
    /// no active replica of the tunnel is ready.
    pub const STANDBY: u8 = 0x01;

    /// Whether the standby flag is set.
    pub fn standby(self) -> bool {
        self.0 & Self::STANDBY != 0
    }
}

/// Most links one connector may run (`--ha-connections` is 1 to this); also what a
/// registration without the `ha_connections` field (from an older connector) declares.
pub const MAX_HA_CONNECTIONS: u8 = 16;

/// The weight a connector gets when it names none (and what an older connector's
/// registration, which has no weight field, decodes to).
pub const DEFAULT_WEIGHT: u16 = 1;

/// What a connector says about itself when registering a link (the proof is computed from
/// it and the challenge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterRequest {
    /// The tunnel's ID (a UUID's 16 bytes).
    pub tunnel_id: [u8; 16],
    /// This connector process's ID (a UUID v4's 16 bytes).
    pub connector_id: [u8; 16],
    /// The connector's version, at most [`MAX_STRING`] bytes.
    pub version: String,
    /// The connector's architecture (e.g. `linux_amd64`), at most [`MAX_STRING`] bytes.
    pub arch: String,
    /// Which of the connector's links this is.
    pub link_index: u8,
    /// Flags.
    pub flags: RegisterFlags,
    /// The connector's label (`--label`), at most [`MAX_STRING`] bytes; empty for none.
    pub label: String,
    /// The connector's load-balancing weight (`--weight`, at least 1).
    pub weight: u16,
    /// How many links the connector runs (`--ha-connections`, 1 to [`MAX_HA_CONNECTIONS`]);
    /// the edge refuses a `link_index` at or above it.
    pub ha_connections: u8,
}

/// Connector → edge: the registration with its proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// The connector's registration protocol version.
    pub protocol: u8,
    /// The tunnel's ID.
    pub tunnel_id: [u8; 16],
    /// The connector's ID.
    pub connector_id: [u8; 16],
    /// HMAC-SHA256 over the challenge (see the [module doc](super)).
    pub proof: [u8; 32],
    /// The connector's version.
    pub version: String,
    /// The connector's architecture.
    pub arch: String,
    /// Which of the connector's links this is.
    pub link_index: u8,
    /// Flags.
    pub flags: RegisterFlags,
    /// The connector's label; empty for none (and from connectors that predate labels).
    pub label: String,
    /// The connector's weight; [`DEFAULT_WEIGHT`] from connectors that predate weights.
    pub weight: u16,
    /// How many links the connector runs; [`MAX_HA_CONNECTIONS`] from connectors that
    /// predate the field.
    pub ha_connections: u8,
}

/// Edge → connector: registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The data center that accepted the link (e.g. `dfw`).
    pub data_center: String,
    /// The edge server's address or name.
    pub server: String,
}

/// Why the edge refused a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectCode {
    /// The proof does not match the tunnel's secret.
    BadSecret,
    /// No such tunnel (or it was deleted).
    UnknownTunnel,
    /// The tunnel has as many connectors as allowed.
    ConnectorLimit,
    /// The connector's registration version is not supported.
    UnsupportedVersion,
    /// The edge cannot take links now (draining, overloaded); another server may.
    Unavailable,
    /// The link index is outside the links the connector may hold (its `ha_connections`, at
    /// most [`MAX_HA_CONNECTIONS`]).
    LinkLimit,
    /// The edge failed for a moment (e.g. its registry could not be read); retry with backoff.
    /// Unlike [`RejectCode::UnknownTunnel`], this says nothing about the tunnel.
    TryAgain,
    /// A code this build does not know.
    Other(u16),
}

impl RejectCode {
    fn to_u16(self) -> u16 {
        match self {
            RejectCode::BadSecret => 1,
            RejectCode::UnknownTunnel => 2,
            RejectCode::ConnectorLimit => 3,
            RejectCode::UnsupportedVersion => 4,
            RejectCode::Unavailable => 5,
            RejectCode::LinkLimit => 6,
            RejectCode::TryAgain => 7,
            RejectCode::Other(n) => n,
        }
    }

    fn from_u16(n: u16) -> RejectCode {
        match n {
            1 => RejectCode::BadSecret,
            2 => RejectCode::UnknownTunnel,
            3 => RejectCode::ConnectorLimit,
            4 => RejectCode::UnsupportedVersion,
            5 => RejectCode::Unavailable,
            6 => RejectCode::LinkLimit,
            7 => RejectCode::TryAgain,
            n => RejectCode::Other(n),
        }
    }
}

/// Edge → connector: refused, with a message for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Why.
    pub code: RejectCode,
    /// A human-readable message, at most [`MAX_STRING`] bytes.
    pub message: String,
}

/// One registration message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// See [`Challenge`].
    Challenge(Challenge),
    /// See [`Register`].
    Register(Register),
    /// See [`Accepted`].
    Accepted(Accepted),
    /// See [`Rejected`].
    Rejected(Rejected),
}

/// Appends a string, cut to [`MAX_STRING`] bytes at a character boundary.
fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(MAX_STRING);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

/// Reads fields off a body; every getter fails cleanly at the end of the input.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], HandshakeError> {
        if self.0.len() < n {
            return Err(HandshakeError::Malformed("message body too short"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, HandshakeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, HandshakeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], HandshakeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn string(&mut self) -> Result<String, HandshakeError> {
        let n = self.u16()? as usize;
        if n > MAX_STRING {
            return Err(HandshakeError::Malformed("string over 256 bytes"));
        }
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| HandshakeError::Malformed("string not utf-8"))
    }
}

impl Message {
    /// Appends the encoded message (length prefix included) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0, 0]);
        match self {
            Message::Challenge(c) => {
                out.push(T_CHALLENGE);
                out.push(c.version);
                out.extend_from_slice(&c.nonce);
            }
            Message::Register(r) => {
                out.push(T_REGISTER);
                out.push(r.protocol);
                out.extend_from_slice(&r.tunnel_id);
                out.extend_from_slice(&r.connector_id);
                out.extend_from_slice(&r.proof);
                out.push(r.link_index);
                out.push(r.flags.0);
                put_str(out, &r.version);
                put_str(out, &r.arch);
                // Appended fields (older edges ignore them).
                put_str(out, &r.label);
                out.extend_from_slice(&r.weight.to_be_bytes());
                out.push(r.ha_connections);
            }
            Message::Accepted(a) => {
                out.push(T_ACCEPTED);
                put_str(out, &a.data_center);
                put_str(out, &a.server);
            }
            Message::Rejected(r) => {
                out.push(T_REJECTED);
                out.extend_from_slice(&r.code.to_u16().to_be_bytes());
                put_str(out, &r.message);
            }
        }
        // Every message fits: the largest (Register with three full strings) is ~880 bytes.
        let len = (out.len() - start - 2) as u16;
        out[start..start + 2].copy_from_slice(&len.to_be_bytes());
    }

    /// The total size (prefix included) of the message `buf` starts with, once its prefix is
    /// there: `Ok(None)` means the prefix is incomplete.
    pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, HandshakeError> {
        let Some(prefix) = buf.get(..2) else {
            return Ok(None);
        };
        let len = u16::from_be_bytes([prefix[0], prefix[1]]) as usize;
        if len > MAX_MESSAGE {
            return Err(HandshakeError::TooLarge(len));
        }
        if len == 0 {
            return Err(HandshakeError::Malformed("empty message"));
        }
        Ok(Some(2 + len))
    }

    /// Decodes the message `buf` starts with: `Ok(None)` means more bytes are needed,
    /// `Ok(Some((message, used)))` gives the bytes it took. Never panics.
    pub fn decode(buf: &[u8]) -> Result<Option<(Message, usize)>, HandshakeError> {
        let Some(total) = Self::frame_len(buf)? else {
            return Ok(None);
        };
        let Some(frame) = buf.get(2..total) else {
            return Ok(None);
        };
        let mut c = Cursor(frame);
        let msg = match c.u8()? {
            T_CHALLENGE => Message::Challenge(Challenge {
                version: c.u8()?,
                nonce: c.array()?,
            }),
            T_REGISTER => Message::Register(Register {
                protocol: c.u8()?,
                tunnel_id: c.array()?,
                connector_id: c.array()?,
                proof: c.array()?,
                link_index: c.u8()?,
                flags: RegisterFlags(c.u8()?),
                version: c.string()?,
                arch: c.string()?,
                label: if c.is_empty() {
                    String::new()
                } else {
                    c.string()?
                },
                weight: if c.is_empty() {
                    DEFAULT_WEIGHT
                } else {
                    c.u16()?
                },
                ha_connections: if c.is_empty() {
                    MAX_HA_CONNECTIONS
                } else {
                    c.u8()?
                },
            }),
            T_ACCEPTED => Message::Accepted(Accepted {
                data_center: c.string()?,
                server: c.string()?,
            }),
            T_REJECTED => Message::Rejected(Rejected {
                code: RejectCode::from_u16(c.u16()?),
                message: c.string()?,
            }),
            _ => return Err(HandshakeError::Malformed("unknown message type")),
        };
        Ok(Some((msg, total)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_string() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[a-zA-Z0-9 ._é-]{0,80}").expect("regex")
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (any::<u8>(), any::<[u8; 32]>())
                .prop_map(|(version, nonce)| Message::Challenge(Challenge { version, nonce })),
            (
                any::<u8>(),
                any::<[u8; 16]>(),
                any::<[u8; 16]>(),
                any::<[u8; 32]>(),
                arb_string(),
                arb_string(),
                any::<u8>(),
                any::<u8>(),
                arb_string(),
                any::<u16>(),
                any::<u8>(),
            )
                .prop_map(
                    |(
                        protocol,
                        t,
                        c,
                        proof,
                        version,
                        arch,
                        link_index,
                        flags,
                        label,
                        weight,
                        ha,
                    )| {
                        Message::Register(Register {
                            protocol,
                            tunnel_id: t,
                            connector_id: c,
                            proof,
                            version,
                            arch,
                            link_index,
                            flags: RegisterFlags(flags),
                            label,
                            weight,
                            ha_connections: ha,
                        })
                    }
                ),
            (arb_string(), arb_string()).prop_map(|(data_center, server)| {
                Message::Accepted(Accepted {
                    data_center,
                    server,
                })
            }),
            (any::<u16>(), arb_string()).prop_map(|(code, message)| {
                Message::Rejected(Rejected {
                    code: RejectCode::from_u16(code),
                    message,
                })
            }),
        ]
    }

    proptest! {
        #[test]
        fn round_trips(m in arb_message(), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut buf = Vec::new();
            m.encode(&mut buf);
            let len = buf.len();
            buf.extend_from_slice(&tail);
            let (back, used) = Message::decode(&buf).expect("decodes").expect("complete");
            prop_assert_eq!(back, m);
            prop_assert_eq!(used, len);
            // Every strict prefix asks for more bytes.
            for cut in 0..len {
                prop_assert!(matches!(Message::decode(&buf[..cut]), Ok(None)));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            if let Ok(Some((_, used))) = Message::decode(&bytes) {
                prop_assert!(used <= bytes.len());
            }
        }
    }

    #[test]
    fn long_strings_are_cut_at_a_char_boundary() {
        let m = Message::Rejected(Rejected {
            code: RejectCode::ConnectorLimit,
            message: "é".repeat(200),
        });
        let mut buf = Vec::new();
        m.encode(&mut buf);
        let Ok(Some((Message::Rejected(r), _))) = Message::decode(&buf) else {
            panic!("decode failed");
        };
        assert_eq!(r.message.len(), MAX_STRING);
    }

    #[test]
    fn oversized_length_is_refused() {
        assert!(matches!(
            Message::decode(&[0xff, 0xff, 1]),
            Err(HandshakeError::TooLarge(_))
        ));
    }
}

#[cfg(test)]
mod compat {
    use super::*;

    /// A registration from a connector that predates labels and weights (no appended
    /// fields) decodes with an empty label and the default weight.
    #[test]
    fn register_without_appended_fields_gets_defaults() {
        let full = Register {
            protocol: PROTOCOL_VERSION,
            tunnel_id: [1; 16],
            connector_id: [2; 16],
            proof: [3; 32],
            version: "0.1".into(),
            arch: "x86_64".into(),
            link_index: 2,
            flags: RegisterFlags(RegisterFlags::STANDBY),
            label: "blue".into(),
            weight: 7,
            ha_connections: 4,
        };
        let mut buf = Vec::new();
        Message::Register(full.clone()).encode(&mut buf);
        // Cut the label, weight and ha_connections (2 + 4 + 2 + 1 bytes) and fix the length
        // prefix.
        let cut = buf.len() - 9;
        let mut old = buf[..cut].to_vec();
        let len = (old.len() - 2) as u16;
        old[..2].copy_from_slice(&len.to_be_bytes());
        match Message::decode(&old) {
            Ok(Some((Message::Register(r), used))) => {
                assert_eq!(used, old.len());
                assert_eq!(r.label, "");
                assert_eq!(r.weight, DEFAULT_WEIGHT);
                assert_eq!(r.ha_connections, MAX_HA_CONNECTIONS);
                assert!(r.flags.standby());
            }
            other => panic!("unexpected {other:?}"),
        }
        match Message::decode(&buf) {
            Ok(Some((Message::Register(r), _))) => assert_eq!(r, full),
            other => panic!("unexpected {other:?}"),
        }
    }
}
