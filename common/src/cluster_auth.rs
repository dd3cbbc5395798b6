//! Proof of cluster membership on every internal gRPC call: compute nodes registering and
//! heartbeating with the leader, the leader's stages, loads and exchanges on the compute
//! nodes' Flight services, compute nodes' exchanges with each other, the leader replicas'
//! raft traffic.
//!
//! Every process of a cluster holds the same cluster secret (`cluster_secret_file` /
//! `BLUESHIFT_CLUSTER_SECRET`; `blueshift local` generates one). A call carries, in the
//! `x-blueshift-cluster-proof` header, a timestamp, a random nonce and
//! `HMAC-SHA-256(key, "blueshift-cluster-v1|<timestamp>|<nonce>")`; the key is derived from
//! the secret, which itself never leaves the process, so the network (loopback or not) never
//! carries it. A server takes a call only with a valid proof made within [`MAX_SKEW`] of its
//! own clock (the hosts' clocks must agree that well) and refuses anything else with
//! `UNAUTHENTICATED`, before the call reaches a service.
//!
//! What this does not do: the proof is not bound to the call's content, so someone who can
//! read the cluster's traffic (which is not encrypted) could replay a proof within the
//! window; and every member holds the same key, so a member is not told apart from
//! another. Both want mutual TLS with per-node certificates, which this module would then
//! be replaced by.
//!
//! The key is installed once per process ([`install`]), before any server or client starts.
//! Without one, clients send no proof and servers refuse every call.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::{digest, hmac};
use tonic::{Request, Status};

/// The request header that carries the proof.
pub const PROOF_HEADER: &str = "x-blueshift-cluster-proof";

/// How far a proof's timestamp may be from the server's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(120);

/// Secrets shorter than this are refused (they could be guessed).
pub const MIN_SECRET_BYTES: usize = 16;

const CONTEXT: &str = "blueshift-cluster-v1";

static KEY: OnceLock<hmac::Key> = OnceLock::new();

/// Why a cluster secret cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the cluster secret must be at least {MIN_SECRET_BYTES} bytes (it has {0})")]
    TooShort(usize),
    #[error("a different cluster secret is already installed in this process")]
    Conflict,
}

fn derive(secret: &[u8]) -> hmac::Key {
    // The HMAC key is a hash of the secret (with this protocol's name), not the secret.
    let mut input = CONTEXT.as_bytes().to_vec();
    input.push(0);
    input.extend_from_slice(secret);
    hmac::Key::new(
        hmac::HMAC_SHA256,
        digest::digest(&digest::SHA256, &input).as_ref(),
    )
}

/// Installs this process's cluster secret (surrounding whitespace ignored: a file's final
/// newline). Installing the same secret again is a no-op.
pub fn install(secret: &[u8]) -> Result<(), SecretError> {
    let secret = secret.trim_ascii();
    if secret.len() < MIN_SECRET_BYTES {
        return Err(SecretError::TooShort(secret.len()));
    }
    let key = derive(secret);
    let installed = KEY.get_or_init(|| key.clone());
    // Keys do not compare; their tags on a fixed message do.
    if hmac::sign(installed, b"check").as_ref() != hmac::sign(&key, b"check").as_ref() {
        return Err(SecretError::Conflict);
    }
    Ok(())
}

/// A new random secret (64 hex digits), for `blueshift local` to write.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    hex(&bytes)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn tag(key: &hmac::Key, timestamp: u64, nonce: &str) -> String {
    let message = format!("{CONTEXT}|{timestamp}|{nonce}");
    hex(hmac::sign(key, message.as_bytes()).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh proof (`v1.<ms>.<nonce>.<tag>`), if a key is installed.
pub fn proof() -> Option<String> {
    let key = KEY.get()?;
    let timestamp = now_ms();
    let mut nonce = [0u8; 16];
    // The system's random source failing is not expected; a zero nonce still verifies.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce);
    let nonce = hex(&nonce);
    Some(format!(
        "v1.{timestamp}.{nonce}.{}",
        tag(key, timestamp, &nonce)
    ))
}

/// Checks a proof made `now_ms` against `key`; the reason when it fails.
fn verify(key: &hmac::Key, proof: &str, now_ms: u64) -> Result<(), &'static str> {
    let mut parts = proof.split('.');
    let (Some("v1"), Some(timestamp), Some(nonce), Some(given), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err("malformed cluster proof");
    };
    let timestamp: u64 = timestamp.parse().map_err(|_| "malformed cluster proof")?;
    if nonce.len() < 16 {
        return Err("malformed cluster proof");
    }
    if now_ms.abs_diff(timestamp) > MAX_SKEW.as_millis() as u64 {
        return Err("the cluster proof is too old or from a clock that is off");
    }
    let expected = tag(key, timestamp, nonce);
    let same = expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err("wrong cluster proof (a different cluster secret?)")
    }
}

/// The client side: adds the proof to every call of a client built with it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attach;

impl tonic::service::Interceptor for Attach {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(proof) = proof() {
            let value = proof
                .parse()
                .map_err(|_| Status::internal("cluster proof is not a header value"))?;
            request.metadata_mut().insert(PROOF_HEADER, value);
        }
        Ok(request)
    }
}

/// A gRPC channel whose calls carry the proof.
pub type AuthChannel =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Attach>;

/// The server side (a `tonic::service::InterceptorLayer` over every service of a server).
pub fn check(request: Request<()>) -> Result<Request<()>, Status> {
    let Some(key) = KEY.get() else {
        return Err(Status::unauthenticated(
            "this process has no cluster secret: it takes no internal calls",
        ));
    };
    let Some(proof) = request
        .metadata()
        .get(PROOF_HEADER)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(Status::unauthenticated(
            "internal cluster port: calls need the cluster's proof of membership",
        ));
    };
    match verify(key, proof, now_ms()) {
        Ok(()) => Ok(request),
        Err(reason) => {
            tracing::warn!(reason, "refused an internal call");
            Err(Status::unauthenticated(reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(key: &hmac::Key, timestamp: u64) -> String {
        let nonce = "00112233445566778899aabbccddeeff";
        format!("v1.{timestamp}.{nonce}.{}", tag(key, timestamp, nonce))
    }

    #[test]
    fn a_proof_verifies_with_the_same_secret_only_and_only_while_fresh() {
        let key = derive(b"0123456789abcdef0123");
        let other = derive(b"0123456789abcdef0124");
        let now = 1_800_000_000_000;
        assert_eq!(verify(&key, &make(&key, now - 1_000), now), Ok(()));
        assert!(verify(&key, &make(&other, now), now).is_err());
        let stale = now - MAX_SKEW.as_millis() as u64 - 1;
        assert!(verify(&key, &make(&key, stale), now).is_err());
        let ahead = now + MAX_SKEW.as_millis() as u64 + 1;
        assert!(verify(&key, &make(&key, ahead), now).is_err());
        for bad in [
            "",
            "v1",
            "v2.1.2.3",
            "v1.x.00112233445566778899.ab",
            "v1.1.2.3.4",
        ] {
            assert!(verify(&key, bad, now).is_err(), "{bad}");
        }
        // A tag of the right length but one wrong digit.
        let mut forged = make(&key, now);
        let last = forged.pop().unwrap();
        forged.push(if last == '0' { '1' } else { '0' });
        assert!(verify(&key, &forged, now).is_err());
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(matches!(
            install(b"  short secret \n"),
            Err(SecretError::TooShort(12))
        ));
    }
}
