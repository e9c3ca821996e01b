//! The cluster CA: the one certificate authority every node's peer-link certificate is signed
//! by, kept in etcd (`cluster/ca.pem`, `cluster/ca.key`).
//!
//! The first node that starts creates it: it generates a CA and writes both keys in one
//! transaction that applies only if `cluster/ca.pem` was never created (`create_revision ==
//! 0`), so exactly one node's CA wins; every node (the winner included) then uses what etcd
//! holds. The key is readable by anyone who can read the prefix: etcd access must be
//! restricted (see `docs/cluster.md`).
use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use rcgen::{CertificateParams, KeyPair};

use super::keys::Keys;

/// The common name of the cluster CA.
const CA_NAME: &str = "ringtun edge cluster CA";

/// The cluster CA as etcd holds it (PEM). `Debug` does not print the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterCa {
    /// The CA certificate.
    pub cert_pem: String,
    /// The CA's private key.
    pub key_pem: String,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"***")
            .finish()
    }
}

/// The parameters of the cluster CA; the issuer of node certificates is built from the same
/// ones, so its name matches the certificate's.
pub fn ca_params() -> CertificateParams {
    crate::state_dir::ca_params(CA_NAME)
}

impl ClusterCa {
    /// A new self-signed CA.
    fn generate() -> Result<ClusterCa, String> {
        let key = KeyPair::generate().map_err(|e| format!("cannot generate a CA key: {e}"))?;
        let cert = ca_params()
            .self_signed(&key)
            .map_err(|e| format!("cannot sign the CA: {e}"))?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Creates the cluster CA in etcd unless it exists, and returns the one etcd holds.
pub(super) async fn get_or_create(client: &Client, keys: &Keys) -> Result<ClusterCa, String> {
    let mine = ClusterCa::generate()?;
    let txn = Txn::new()
        .when([Compare::create_revision(
            keys.ca_cert(),
            CompareOp::Equal,
            0,
        )])
        .and_then([
            TxnOp::put(keys.ca_cert(), mine.cert_pem.clone(), None),
            TxnOp::put(keys.ca_key(), mine.key_pem.clone(), None),
        ])
        .or_else([
            TxnOp::get(keys.ca_cert(), None),
            TxnOp::get(keys.ca_key(), None),
        ]);
    let response = client
        .kv_client()
        .txn(txn)
        .await
        .map_err(|e| format!("cluster CA: {e}"))?;
    if response.succeeded() {
        tracing::info!("cluster CA created in etcd");
        return Ok(mine);
    }
    let mut values = response.op_responses().into_iter().map(|r| match r {
        TxnOpResponse::Get(g) => g
            .kvs()
            .first()
            .and_then(|kv| kv.value_str().ok().map(str::to_owned)),
        _ => None,
    });
    match (values.next().flatten(), values.next().flatten()) {
        (Some(cert_pem), Some(key_pem)) => Ok(ClusterCa { cert_pem, key_pem }),
        _ => Err(format!(
            "cluster CA: {} exists but {} is missing or not text; restore both or delete both",
            keys.ca_cert(),
            keys.ca_key()
        )),
    }
}
