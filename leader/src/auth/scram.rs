//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as a PostgreSQL server runs it: the stored keys a
//! password leaves behind, and the server side of the exchange, checked against those keys
//! alone.
//!
//! What is stored (`StoredKey = H(HMAC(SaltedPassword, "Client Key"))`, `ServerKey =
//! HMAC(SaltedPassword, "Server Key")`) lets the server check a client's proof and prove
//! itself, but not log in: a client must send `ClientKey`, which the stored keys do not
//! give. The salted password itself (which does log in) is derived only from a password
//! being set or checked, and never kept.
//!
//! This module parses and answers the SCRAM messages; it does no I/O and knows nothing of
//! users (the wire exchange is in `crate::pgwire::startup`). Channel binding is not offered
//! (only `SCRAM-SHA-256` is announced), so a client asking for it (`p=`) is refused.

use std::borrow::Cow;
use std::num::NonZeroU32;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::{digest, hmac, pbkdf2};

/// A SCRAM exchange that failed: a malformed message, or a wrong proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("SCRAM channel binding is not supported")]
    ChannelBinding,
    #[error("the SCRAM proof is wrong")]
    WrongProof,
}

/// The keys stored for a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl Keys {
    /// The keys of `password` with `salt` and `iterations`.
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> Keys {
        Keys::from_salted_password(&salted_password(password, salt, iterations))
    }

    /// The keys of a salted password (also: upgrading a secret stored before keys were).
    pub fn from_salted_password(salted: &[u8]) -> Keys {
        Keys {
            stored_key: sha256(&hmac_sha256(salted, b"Client Key")),
            server_key: hmac_sha256(salted, b"Server Key"),
        }
    }

    /// Whether `password` (with the stored salt and iterations) has these keys. The
    /// comparison takes the same time wherever the keys differ.
    pub fn matches(&self, password: &str, salt: &[u8], iterations: u32) -> bool {
        let given = Keys::derive(password, salt, iterations);
        crate::auth::constant_time_eq(&given.stored_key, &self.stored_key)
            & crate::auth::constant_time_eq(&given.server_key, &self.server_key)
    }
}

/// `Hi(Normalize(password), salt, i)`: PBKDF2-HMAC-SHA-256 of the SASLprep'd password
/// (PostgreSQL uses the password as it is when SASLprep refuses it).
fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let normalized = stringprep::saslprep(password).unwrap_or(Cow::Borrowed(password));
    let mut out = [0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN),
        salt,
        normalized.as_bytes(),
        &mut out,
    );
    out
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The salt an unknown user's (failing) exchange shows: the same for the same name on every
/// attempt, as a real user's is, so that the salt does not tell which users exist
/// (PostgreSQL's mock salt). Keyed by a random value of this process.
pub fn mock_salt(user: &str) -> [u8; 16] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(rand::random);
    let mac = hmac_sha256(key, user.as_bytes());
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&mac[..16]);
    salt
}

/// Keys nobody knows the password of (an unknown user's exchange fails at the proof).
pub fn mock_keys() -> Keys {
    Keys {
        stored_key: rand::random(),
        server_key: rand::random(),
    }
}

/// The server between its first message and the client's proof.
#[derive(Debug)]
pub struct AwaitingProof {
    keys: Keys,
    /// The gs2 header as the client sent it (`n,,` or `y,,`): `c=` must repeat it.
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

/// Answers a client-first message (`n,,n=user,r=<nonce>`) for a user with `keys`, `salt`
/// and `iterations`: the server-first message to send, and the state awaiting the proof.
pub fn server_first(
    client_first: &[u8],
    keys: Keys,
    salt: &[u8],
    iterations: u32,
) -> Result<(String, AwaitingProof), ScramError> {
    let message =
        std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    // gs2-header = gs2-cbind-flag "," [authzid] ","
    let (flag, rest) = message
        .split_once(',')
        .ok_or(ScramError::Malformed("no gs2 header"))?;
    match flag {
        // "n": the client does not do channel binding; "y": it does, but thinks the server
        // does not (true: only SCRAM-SHA-256 is announced).
        "n" | "y" => {}
        f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
        _ => return Err(ScramError::Malformed("bad channel binding flag")),
    }
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or(ScramError::Malformed("no gs2 header"))?;
    if !authzid.is_empty() {
        // PostgreSQL refuses an authorization identity too: the user is the startup one.
        return Err(ScramError::Malformed(
            "an authorization identity is not supported",
        ));
    }
    let gs2_header = format!("{flag},,");
    let mut attributes = bare.split(',');
    let mut next = attributes.next();
    if next.is_some_and(|a| a.starts_with("m=")) {
        return Err(ScramError::Malformed(
            "mandatory extensions are not supported",
        ));
    }
    // The user name is the startup message's (PostgreSQL ignores this one); it must be
    // there all the same.
    if !next.is_some_and(|a| a.starts_with("n=")) {
        return Err(ScramError::Malformed("no user name"));
    }
    next = attributes.next();
    let client_nonce = next
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(ScramError::Malformed("no nonce"))?;
    if client_nonce.is_empty() || !client_nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(ScramError::Malformed("bad nonce"));
    }
    let server_nonce = STANDARD.encode(rand::random::<[u8; 18]>());
    let nonce = format!("{client_nonce}{server_nonce}");
    let server_first = format!("r={nonce},s={},i={iterations}", STANDARD.encode(salt));
    Ok((
        server_first.clone(),
        AwaitingProof {
            keys,
            gs2_header,
            client_first_bare: bare.to_string(),
            server_first,
            nonce,
        },
    ))
}

impl AwaitingProof {
    /// Checks the client-final message (`c=...,r=...,p=<proof>`); the server-final message
    /// (`v=<signature>`) when the proof is right.
    pub fn server_final(self, client_final: &[u8]) -> Result<String, ScramError> {
        let message =
            std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = message
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut attributes = without_proof.split(',');
        let binding = attributes
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramError::Malformed("no channel binding attribute"))?;
        if binding != STANDARD.encode(&self.gs2_header) {
            return Err(ScramError::Malformed(
                "the channel binding attribute differs",
            ));
        }
        let nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce"))?;
        // The nonce is not secret, but a different one means another exchange's message.
        if nonce != self.nonce {
            return Err(ScramError::Malformed("the nonce differs"));
        }
        let proof = STANDARD
            .decode(proof)
            .map_err(|_| ScramError::Malformed("the proof is not base64"))?;
        if proof.len() != 32 {
            return Err(ScramError::WrongProof);
        }
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let signature = hmac_sha256(&self.keys.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(signature).map(|(p, s)| p ^ s).collect();
        if !crate::auth::constant_time_eq(&sha256(&client_key), &self.keys.stored_key) {
            return Err(ScramError::WrongProof);
        }
        let server_signature = hmac_sha256(&self.keys.server_key, auth_message.as_bytes());
        Ok(format!("v={}", STANDARD.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client, written from RFC 5802, to drive the server side.
    fn client_final(password: &str, client_first_bare: &str, server_first: &str) -> String {
        let mut salt = None;
        let mut iterations = None;
        let mut nonce = None;
        for attribute in server_first.split(',') {
            match attribute.split_at(2) {
                ("r=", v) => nonce = Some(v.to_string()),
                ("s=", v) => salt = Some(STANDARD.decode(v).unwrap()),
                ("i=", v) => iterations = Some(v.parse::<u32>().unwrap()),
                _ => {}
            }
        }
        let salted = salted_password(password, &salt.unwrap(), iterations.unwrap());
        let client_key = hmac_sha256(&salted, b"Client Key");
        let without_proof = format!("c=biws,r={}", nonce.unwrap());
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac_sha256(&sha256(&client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        format!("{without_proof},p={}", STANDARD.encode(proof))
    }

    fn exchange(stored_for: &str, given: &str) -> Result<String, ScramError> {
        let salt = b"0123456789abcdef";
        let keys = Keys::derive(stored_for, salt, 4096);
        let bare = "n=,r=rOprNGfwEbeRWgbNEkqO";
        let (first, waiting) = server_first(format!("n,,{bare}").as_bytes(), keys, salt, 4096)?;
        assert!(first.starts_with("r=rOprNGfwEbeRWgbNEkqO"), "{first}");
        waiting.server_final(client_final(given, bare, &first).as_bytes())
    }

    #[test]
    fn the_right_password_passes_and_the_server_proves_itself() {
        let reply = exchange("Secret123", "Secret123").unwrap();
        assert!(reply.starts_with("v=") && reply.len() > 40, "{reply}");
    }

    #[test]
    fn a_wrong_password_fails() {
        assert_eq!(
            exchange("Secret123", "Secret124"),
            Err(ScramError::WrongProof)
        );
    }

    #[test]
    fn rfc_7677_test_vector() {
        // RFC 7677 section 3: user "user", password "pencil".
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let keys = Keys::derive("pencil", &salt, 4096);
        let bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let waiting = AwaitingProof {
            keys,
            gs2_header: "n,,".into(),
            client_first_bare: bare.into(),
            server_first: server_first.into(),
            nonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
        };
        let reply = waiting
            .server_final(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .unwrap();
        assert_eq!(reply, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn malformed_and_channel_binding_messages_are_refused() {
        let keys = || Keys::derive("Secret123", b"salt", 4096);
        for bad in [
            &b""[..],
            b"n",
            b"x,,n=,r=abc",
            b"n,a=other,n=,r=abc",
            b"n,,m=ext,n=,r=abc",
            b"n,,n=",
            b"n,,n=,r=",
            b"\xff,,n=,r=abc",
        ] {
            assert!(
                matches!(
                    server_first(bad, keys(), b"salt", 4096),
                    Err(ScramError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            server_first(b"p=tls-server-end-point,,n=,r=abc", keys(), b"salt", 4096).err(),
            Some(ScramError::ChannelBinding)
        );
        let (first, waiting) = server_first(b"n,,n=,r=abc", keys(), b"salt", 4096).unwrap();
        let nonce = first.split(',').next().unwrap();
        assert!(matches!(
            waiting.server_final(format!("c=eSws,{nonce},p=AAAA").as_bytes()),
            Err(ScramError::Malformed(_))
        ));
    }
}
