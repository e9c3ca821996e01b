//! The two sides of registration over an async stream.

use compio::BufResult;
use compio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::error::HandshakeError;
use super::message::{
    Accepted, Challenge, Message, PROTOCOL_VERSION, Register, RegisterRequest, RejectCode, Rejected,
};
use super::secret::{TunnelSecret, compute_proof};

async fn send<S: AsyncWrite>(stream: &mut S, msg: &Message) -> Result<(), HandshakeError> {
    let mut buf = Vec::with_capacity(128);
    msg.encode(&mut buf);
    let BufResult(res, _) = stream.write_all(buf).await;
    res?;
    stream.flush().await?;
    Ok(())
}

/// Reads exactly one message: first its length prefix, then exactly its body, so nothing
/// that follows it is taken from the stream.
async fn recv<S: AsyncRead>(stream: &mut S) -> Result<Message, HandshakeError> {
    let mut have: Vec<u8> = Vec::with_capacity(64);
    loop {
        let want = Message::frame_len(&have)?.unwrap_or(2);
        if have.len() >= want {
            return match Message::decode(&have)? {
                Some((m, _)) => Ok(m),
                None => Err(HandshakeError::Malformed("incomplete message")),
            };
        }
        let need = want - have.len();
        // A zeroed buffer of exactly `need` bytes: reads fill it from the start.
        let BufResult(res, got) = stream.read(vec![0u8; need]).await;
        let n = res?;
        if n == 0 {
            return Err(HandshakeError::Closed);
        }
        have.extend_from_slice(&got[..n.min(got.len()).min(need)]);
    }
}

/// The connector's side: answers the edge's challenge with `request` and a proof made with
/// `secret`; returns what the edge said when it accepted. A refusal comes back as
/// [`HandshakeError::Rejected`] with the edge's message.
pub async fn connector_register<S: AsyncRead + AsyncWrite>(
    stream: &mut S,
    request: &RegisterRequest,
    secret: &TunnelSecret,
) -> Result<Accepted, HandshakeError> {
    let challenge = match recv(stream).await? {
        Message::Challenge(c) => c,
        _ => return Err(HandshakeError::Unexpected("expected a challenge")),
    };
    if challenge.version != PROTOCOL_VERSION {
        return Err(HandshakeError::UnsupportedVersion(challenge.version));
    }
    let proof = compute_proof(
        secret,
        &challenge.nonce,
        &request.tunnel_id,
        &request.connector_id,
    );
    let register = Register {
        protocol: PROTOCOL_VERSION,
        tunnel_id: request.tunnel_id,
        connector_id: request.connector_id,
        proof,
        version: request.version.clone(),
        arch: request.arch.clone(),
        link_index: request.link_index,
        flags: request.flags,
        label: request.label.clone(),
        weight: request.weight,
        ha_connections: request.ha_connections,
    };
    send(stream, &Message::Register(register)).await?;
    match recv(stream).await? {
        Message::Accepted(a) => Ok(a),
        Message::Rejected(r) => Err(HandshakeError::Rejected(r)),
        _ => Err(HandshakeError::Unexpected("expected accepted or rejected")),
    }
}

/// The edge's side: sends a fresh challenge, reads the registration, asks `lookup` for the
/// tunnel's secret (or a refusal, e.g. unknown tunnel), checks the proof in constant time,
/// and only then asks `admit` (e.g. the connector limit) for the answer to send. Returns the
/// verified registration. Every refusal is sent to the connector before returning its error.
///
/// `admit` runs after the proof is checked, so a peer without the secret learns nothing
/// about the tunnel's state.
pub async fn edge_accept<S, L, A>(
    stream: &mut S,
    lookup: L,
    admit: A,
) -> Result<Register, HandshakeError>
where
    S: AsyncRead + AsyncWrite,
    L: FnOnce(&Register) -> Result<TunnelSecret, Rejected>,
    A: FnOnce(&Register) -> Result<Accepted, Rejected>,
{
    let mut nonce = [0u8; 32];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut nonce)
        .map_err(|_| HandshakeError::Random)?;
    let challenge = Challenge {
        version: PROTOCOL_VERSION,
        nonce,
    };
    send(stream, &Message::Challenge(challenge)).await?;
    let register = match recv(stream).await? {
        Message::Register(r) => r,
        _ => return Err(HandshakeError::Unexpected("expected a registration")),
    };
    if register.protocol != PROTOCOL_VERSION {
        let rej = Rejected {
            code: RejectCode::UnsupportedVersion,
            message: format!(
                "registration version {} is not supported; this edge speaks {PROTOCOL_VERSION}",
                register.protocol
            ),
        };
        let _ = send(stream, &Message::Rejected(rej)).await;
        return Err(HandshakeError::UnsupportedVersion(register.protocol));
    }
    let secret = match lookup(&register) {
        Ok(s) => s,
        Err(rej) => {
            send(stream, &Message::Rejected(rej.clone())).await?;
            return Err(HandshakeError::Refused(rej));
        }
    };
    if !secret.verify(
        &nonce,
        &register.tunnel_id,
        &register.connector_id,
        &register.proof,
    ) {
        let rej = Rejected {
            code: RejectCode::BadSecret,
            message: "the tunnel secret is wrong; check the credentials file".into(),
        };
        let _ = send(stream, &Message::Rejected(rej)).await;
        return Err(HandshakeError::BadProof);
    }
    match admit(&register) {
        Ok(acc) => {
            send(stream, &Message::Accepted(acc)).await?;
            Ok(register)
        }
        Err(rej) => {
            send(stream, &Message::Rejected(rej.clone())).await?;
            Err(HandshakeError::Refused(rej))
        }
    }
}
