//! The tunnel secret and the registration proof.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The domain separation label in every proof.
const LABEL: &[u8] = b"ringtun-register-v1";

/// How many random bytes the edge makes a new tunnel's secret of (and stores).
pub const SECRET_LEN: usize = 32;

/// A tunnel's shared secret: the connector's (from its credentials file or token) and the
/// edge registry's (stored with the tunnel). Its `Debug` prints `***`; it is never sent.
#[derive(Clone, PartialEq, Eq)]
pub struct TunnelSecret(Vec<u8>);

impl TunnelSecret {
    /// Wraps secret bytes (from the credentials file or the edge's registry).
    pub fn new(bytes: impl Into<Vec<u8>>) -> TunnelSecret {
        TunnelSecret(bytes.into())
    }

    /// The secret bytes, for storing them; never log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    fn mac(&self, nonce: &[u8; 32], tunnel_id: &[u8; 16], connector_id: &[u8; 16]) -> Hmac<Sha256> {
        // HMAC takes keys of any length, so this cannot fail; the fallback keeps it panic-free.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
        m.update(LABEL);
        m.update(nonce);
        m.update(tunnel_id);
        m.update(connector_id);
        m
    }

    /// Checks `proof` in constant time.
    pub(crate) fn verify(
        &self,
        nonce: &[u8; 32],
        tunnel_id: &[u8; 16],
        connector_id: &[u8; 16],
        proof: &[u8; 32],
    ) -> bool {
        self.mac(nonce, tunnel_id, connector_id)
            .verify_slice(proof)
            .is_ok()
    }
}

impl std::fmt::Debug for TunnelSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `HMAC-SHA256(secret, "ringtun-register-v1" || nonce || tunnel_id || connector_id)`.
pub fn compute_proof(
    secret: &TunnelSecret,
    nonce: &[u8; 32],
    tunnel_id: &[u8; 16],
    connector_id: &[u8; 16],
) -> [u8; 32] {
    let out = secret
        .mac(nonce, tunnel_id, connector_id)
        .finalize()
        .into_bytes();
    let mut proof = [0u8; 32];
    proof.copy_from_slice(&out);
    proof
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret() {
        assert_eq!(
            format!("{:?}", TunnelSecret::new(b"hunter2".to_vec())),
            "***"
        );
    }

    #[test]
    fn proof_verifies_only_with_the_same_inputs() {
        let s = TunnelSecret::new(b"s3cret".to_vec());
        let p = compute_proof(&s, &[1; 32], &[2; 16], &[3; 16]);
        assert!(s.verify(&[1; 32], &[2; 16], &[3; 16], &p));
        assert!(!s.verify(&[9; 32], &[2; 16], &[3; 16], &p));
        assert!(!TunnelSecret::new(b"other".to_vec()).verify(&[1; 32], &[2; 16], &[3; 16], &p));
    }
}
