//! The gRPC origin of the tests (`test-support/grpc/origin.py`, Python grpcio), the client helper
//! beside it (`client.py`), and gRPC message framing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The Python interpreter with grpcio: `$RINGTUN_TEST_PYTHON`, else `target/test-venv`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("RINGTUN_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run .ci/deps.sh first (it installs grpcio for the gRPC origin tests), \
         or set RINGTUN_TEST_PYTHON to a Python that has grpcio",
        venv.display()
    );
    venv
}

/// The path of `NAME` among the Python scripts in `test-support/grpc/`.
pub fn grpc_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("grpc")
        .join(name)
}

/// A running `test-support/grpc/origin.py`.
pub struct GrpcOrigin {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl GrpcOrigin {
    /// Starts it (h2c, or TLS with `cert` and `key` PEM files) and reads its port.
    pub fn start(tls: Option<(&Path, &Path)>) -> GrpcOrigin {
        let mut cmd = Command::new(python());
        cmd.arg(grpc_script("origin.py"));
        if let Some((cert, key)) = tls {
            cmd.arg("--tls").arg(cert).arg(key);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the gRPC origin: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            panic!("the gRPC origin printed {line:?} (is grpcio installed? .ci/deps.sh)")
        });
        GrpcOrigin { child, port }
    }
}

impl Drop for GrpcOrigin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gRPC message: uncompressed flag, 4-byte length, the bytes.
pub fn grpc_message(msg: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

/// The messages of a gRPC body.
pub fn grpc_messages(mut body: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while body.len() >= 5 {
        let n = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        assert!(body.len() >= 5 + n, "truncated gRPC message");
        out.push(body[5..5 + n].to_vec());
        body = &body[5 + n..];
    }
    assert!(body.is_empty(), "bytes after the last gRPC message");
    out
}
