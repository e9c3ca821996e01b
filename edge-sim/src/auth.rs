//! Registration crypto: the connector proves it holds the tunnel secret without sending it.
//!
//! The edge sends a fresh random nonce; the connector answers with
//! `HMAC-SHA256(secret, "ringtun-register-v1" || nonce || tunnel_id || connector_id)`, and the edge
//! recomputes it and compares in constant time. Every input has a fixed length (32-byte nonce,
//! 16-byte UUIDs), so the concatenation is unambiguous. Binding the tunnel and connector IDs into
//! the MAC means a proof observed for one connector cannot be replayed for another, and the fresh
//! nonce means it cannot be replayed at all.
//!
//! The construction lives in `ringtun_core::handshake` (the wire handshake the link servers run);
//! these functions delegate to it so the two can never disagree.
use ringtun_core::handshake::{TunnelSecret, compute_proof};

/// The domain-separation prefix of every registration proof.
pub const REGISTER_CONTEXT: &[u8] = b"ringtun-register-v1";
/// Length of the edge's challenge nonce in bytes.
pub const NONCE_LEN: usize = 32;
/// Length of a proof (an HMAC-SHA256 tag) in bytes.
pub const PROOF_LEN: usize = 32;

/// A registration challenge nonce.
pub type Nonce = [u8; NONCE_LEN];
/// A registration proof.
pub type Proof = [u8; PROOF_LEN];

/// Computes the proof a connector sends for `nonce` (connector side).
pub fn registration_proof(
    secret: &[u8],
    nonce: &Nonce,
    tunnel_id: &[u8; 16],
    connector_id: &[u8; 16],
) -> Proof {
    compute_proof(
        &TunnelSecret::new(secret.to_vec()),
        nonce,
        tunnel_id,
        connector_id,
    )
}

/// Checks a connector's proof in constant time (edge side). A proof of the wrong length is
/// rejected.
pub fn verify_registration_proof(
    secret: &[u8],
    nonce: &Nonce,
    tunnel_id: &[u8; 16],
    connector_id: &[u8; 16],
    proof: &[u8],
) -> bool {
    let Ok(proof) = <&Proof>::try_from(proof) else {
        return false;
    };
    let expected = registration_proof(secret, nonce, tunnel_id, connector_id);
    // Constant time: every byte is looked at whatever the first difference.
    expected
        .iter()
        .zip(proof)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// A fresh random challenge nonce (edge side).
pub fn new_nonce() -> Nonce {
    let mut nonce = [0u8; NONCE_LEN];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [7; 32];
    const TUNNEL: [u8; 16] = [1; 16];
    const CONNECTOR: [u8; 16] = [2; 16];

    #[test]
    fn proof_verifies() {
        let nonce = new_nonce();
        let proof = registration_proof(&SECRET, &nonce, &TUNNEL, &CONNECTOR);
        assert!(verify_registration_proof(
            &SECRET, &nonce, &TUNNEL, &CONNECTOR, &proof
        ));
    }

    #[test]
    fn wrong_inputs_are_rejected() {
        let nonce = new_nonce();
        let proof = registration_proof(&SECRET, &nonce, &TUNNEL, &CONNECTOR);
        assert!(!verify_registration_proof(
            &[8; 32], &nonce, &TUNNEL, &CONNECTOR, &proof
        ));
        assert!(!verify_registration_proof(
            &SECRET,
            &new_nonce(),
            &TUNNEL,
            &CONNECTOR,
            &proof
        ));
        assert!(!verify_registration_proof(
            &SECRET, &nonce, &[3; 16], &CONNECTOR, &proof
        ));
        assert!(!verify_registration_proof(
            &SECRET, &nonce, &TUNNEL, &[3; 16], &proof
        ));
        assert!(!verify_registration_proof(
            &SECRET,
            &nonce,
            &TUNNEL,
            &CONNECTOR,
            &proof[..31]
        ));
        let mut flipped = proof;
        flipped[0] ^= 1;
        assert!(!verify_registration_proof(
            &SECRET, &nonce, &TUNNEL, &CONNECTOR, &flipped
        ));
    }

    #[test]
    fn proof_is_deterministic_and_nonces_differ() {
        let nonce = [9; NONCE_LEN];
        assert_eq!(
            registration_proof(&SECRET, &nonce, &TUNNEL, &CONNECTOR),
            registration_proof(&SECRET, &nonce, &TUNNEL, &CONNECTOR)
        );
        assert_ne!(new_nonce(), new_nonce());
    }
}
