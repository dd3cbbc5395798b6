//! Users and their credentials: what `CREATE USER ... PASSWORD` stores in the catalog and how
//! a login proves it knows the password.
//!
//! Passwords are never stored, nor anything that logs in by itself. A user has a
//! SCRAM-SHA-256 secret (salt, iterations, `StoredKey` and `ServerKey`, as PostgreSQL keeps
//! it; see [`scram`]) and, only when the password was set under `password_encryption =
//! 'md5'`, the MD5 secret `md5(password || user)` that PostgreSQL's MD5 method (and so
//! Redshift's drivers) needs. A password given as `'md5<32 hex>'` (Redshift's pre-hashed
//! form) is the MD5 secret itself; such a user can log in with MD5 only. The MD5 secret does
//! log in by itself (that is the MD5 method's weakness), which is why it is opt-in per user
//! and the leader's `md5_auth = false` turns MD5 off altogether.
//!
//! The wire exchange lives in [`crate::pgwire`]; this module owns the secrets and the
//! password rules. It must not see or log a cleartext password beyond hashing it.

pub mod scram;
pub mod throttle;

use serde::{Deserialize, Serialize};

use blueshift_common::error::sqlstate;

use crate::error::{Error, Result};

/// Iterations of the SCRAM key derivation (PostgreSQL's default).
pub const SCRAM_ITERATIONS: u32 = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDef {
    pub name: String,
    /// The user's OID in `pg_roles` / `pg_user` (from 100; 10.. are the built-in users).
    #[serde(default)]
    pub id: u32,
    /// May create, alter and drop users (Redshift's `CREATEUSER`).
    pub superuser: bool,
    pub create_db: bool,
    pub scram: Option<ScramSecret>,
    /// Hex of `md5(password || name)`.
    pub md5: Option<String>,
    /// `CONNECTION LIMIT`: sessions the user may hold at once (on each leader replica);
    /// `None`: unlimited.
    #[serde(default)]
    pub connection_limit: Option<u32>,
}

/// A SCRAM-SHA-256 secret as the catalog holds it (hex strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StoredScramSecret")]
pub struct ScramSecret {
    pub salt: String,
    pub iterations: u32,
    pub stored_key: String,
    pub server_key: String,
}

/// What catalogs have held: the keys, or (before they were kept) the salted password,
/// which is turned into the keys when read. The conversion is deterministic, so every
/// replica applying an old command or snapshot ends with the same secret, and the next
/// snapshot holds only the keys.
#[derive(Deserialize)]
struct StoredScramSecret {
    salt: String,
    iterations: u32,
    #[serde(default)]
    stored_key: Option<String>,
    #[serde(default)]
    server_key: Option<String>,
    #[serde(default)]
    salted_password: Option<String>,
}

impl TryFrom<StoredScramSecret> for ScramSecret {
    type Error = String;

    fn try_from(s: StoredScramSecret) -> std::result::Result<Self, String> {
        let (stored_key, server_key) = match (s.stored_key, s.server_key, s.salted_password) {
            (Some(stored), Some(server), _) => (stored, server),
            (_, _, Some(salted)) => {
                let salted = unhex(&salted).ok_or("a SCRAM secret is not hex")?;
                let keys = scram::Keys::from_salted_password(&salted);
                (hex(&keys.stored_key), hex(&keys.server_key))
            }
            _ => return Err("a SCRAM secret without keys".to_string()),
        };
        Ok(ScramSecret {
            salt: s.salt,
            iterations: s.iterations,
            stored_key,
            server_key,
        })
    }
}

impl ScramSecret {
    /// The salt and the keys, decoded; `None` when the stored secret is corrupt.
    pub fn decode(&self) -> Option<(Vec<u8>, scram::Keys)> {
        let salt = unhex(&self.salt)?;
        let key = |h: &str| -> Option<[u8; 32]> { unhex(h)?.try_into().ok() };
        Some((
            salt,
            scram::Keys {
                stored_key: key(&self.stored_key)?,
                server_key: key(&self.server_key)?,
            },
        ))
    }
}

/// Which secrets a cleartext password leaves (PostgreSQL's `password_encryption`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordEncryption {
    /// The SCRAM secret only (the default).
    Scram,
    /// The SCRAM secret and the MD5 one, for clients that log in with MD5 (Redshift's
    /// drivers).
    ScramAndMd5,
}

/// The session setting that chooses [`PasswordEncryption`].
pub const PASSWORD_ENCRYPTION: &str = "password_encryption";

impl PasswordEncryption {
    /// `password_encryption`'s value: `scram-sha-256` or `md5`; `md5_auth`: whether the
    /// cluster allows MD5 at all.
    pub fn parse(value: &str, md5_auth: bool) -> Result<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "scram-sha-256" => Ok(PasswordEncryption::Scram),
            "md5" if md5_auth => Ok(PasswordEncryption::ScramAndMd5),
            "md5" => Err(md5_disabled()),
            other => Err(Error::sql(
                sqlstate::INVALID_PARAMETER_VALUE,
                format!(
                    "invalid value for parameter \"{PASSWORD_ENCRYPTION}\": \"{other}\" \
                     (scram-sha-256 or md5)"
                ),
            )),
        }
    }
}

fn md5_disabled() -> Error {
    Error::sql(
        sqlstate::FEATURE_NOT_SUPPORTED,
        "MD5 authentication is disabled on this cluster (md5_auth = false): use a SCRAM \
         password",
    )
}

impl UserDef {
    pub fn has_password(&self) -> bool {
        self.scram.is_some() || self.md5.is_some()
    }
}

/// The secrets of `password` for user `name`: a cleartext password (which must meet
/// Redshift's rules) or an `md5...` hash (refused when `md5_auth` is off).
pub fn secrets(
    name: &str,
    password: &str,
    encryption: PasswordEncryption,
    md5_auth: bool,
) -> Result<(Option<ScramSecret>, Option<String>)> {
    if let Some(hash) = password.strip_prefix("md5")
        && hash.len() == 32
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
    {
        if !md5_auth {
            return Err(md5_disabled());
        }
        return Ok((None, Some(hash.to_ascii_lowercase())));
    }
    check_password_rules(password)?;
    let salt: [u8; 16] = rand::random();
    let keys = scram::Keys::derive(password, &salt, SCRAM_ITERATIONS);
    let md5 = (encryption == PasswordEncryption::ScramAndMd5 && md5_auth)
        .then(|| format!("{:x}", md5::compute(format!("{password}{name}"))));
    Ok((
        Some(ScramSecret {
            salt: hex(&salt),
            iterations: SCRAM_ITERATIONS,
            stored_key: hex(&keys.stored_key),
            server_key: hex(&keys.server_key),
        }),
        md5,
    ))
}

/// Redshift's password rules: 8 to 64 characters with an upper-case letter, a lower-case
/// letter and a digit; printable ASCII except quotes, backslash, slash, `@` and space.
fn check_password_rules(p: &str) -> Result<()> {
    let bad = |msg: &str| {
        Err(Error::sql(
            sqlstate::INVALID_PARAMETER_VALUE,
            msg.to_string(),
        ))
    };
    let n = p.chars().count();
    if !(8..=64).contains(&n) {
        return bad("password must be 8 to 64 characters long");
    }
    if !p.chars().any(|c| c.is_ascii_uppercase()) {
        return bad("password must contain an uppercase character");
    }
    if !p.chars().any(|c| c.is_ascii_lowercase()) {
        return bad("password must contain a lowercase character");
    }
    if !p.chars().any(|c| c.is_ascii_digit()) {
        return bad("password must contain a number");
    }
    if p.chars()
        .any(|c| !c.is_ascii_graphic() || matches!(c, '\'' | '"' | '\\' | '/' | '@'))
    {
        return bad("password may contain printable ASCII characters except ' \" \\ / @ and space");
    }
    Ok(())
}

/// Whether `password` is `user`'s (for logins that carry the password itself, such as
/// Flight SQL's Basic authentication). An MD5-only user is checked against the MD5 secret
/// only while `md5_auth` is on.
pub fn verify_password(user: &UserDef, password: &str, md5_auth: bool) -> bool {
    if let Some(scram) = &user.scram {
        let Some((salt, keys)) = scram.decode() else {
            return false;
        };
        return keys.matches(password, &salt, scram.iterations);
    }
    match &user.md5 {
        Some(md5) if md5_auth => {
            let given = format!("{:x}", md5::compute(format!("{password}{}", user.name)));
            constant_time_eq(given.as_bytes(), md5.as_bytes())
        }
        _ => false,
    }
}

/// The work of [`verify_password`] for a user that does not exist (or has no password), so
/// that a failed login takes as long whether or not the user exists.
pub fn verify_nobody(password: &str) {
    let salt: [u8; 16] = rand::random();
    let _ = scram::Keys::derive(password, &salt, SCRAM_ITERATIONS);
}

/// What the MD5 method expects from the client for `salt`:
/// `"md5" || md5(md5(password || user) || salt)`.
pub fn md5_response(md5_secret: &str, salt: &[u8]) -> String {
    let mut bytes = md5_secret.as_bytes().to_vec();
    bytes.extend_from_slice(salt);
    format!("md5{:x}", md5::compute(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Compares in time independent of where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD5: PasswordEncryption = PasswordEncryption::ScramAndMd5;
    const SCRAM: PasswordEncryption = PasswordEncryption::Scram;

    #[test]
    fn md5_matches_postgresql() {
        // pgwire's test vector: user zmjiang, password themanwhochangedchina, salt 14f76bf9.
        let (_, md5) = secrets("zmjiang", "themanwhochangedchinA1", MD5, true).unwrap();
        assert!(md5.is_some());
        let secret = format!("{:x}", md5::compute("themanwhochangedchinazmjiang"));
        assert_eq!(
            md5_response(&secret, &[20, 247, 107, 249]),
            "md521fe459d77d3e3ea9c9fcd5c11030d30"
        );
    }

    #[test]
    fn password_rules_are_redshifts() {
        for bad in [
            "short1A",
            "alllowercase1",
            "ALLUPPERCASE1",
            "NoDigitsHere",
            "Has space1",
        ] {
            assert_eq!(
                secrets("u", bad, SCRAM, true).unwrap_err().sqlstate(),
                "22023",
                "{bad}"
            );
        }
        let (scram, md5) = secrets("u", "Secret123", SCRAM, true).unwrap();
        let scram = scram.unwrap();
        assert_eq!(scram.iterations, SCRAM_ITERATIONS);
        assert_eq!(unhex(&scram.salt).unwrap().len(), 16);
        assert!(md5.is_none(), "no MD5 secret unless asked for");
        let (_, md5) = secrets("u", "Secret123", MD5, true).unwrap();
        assert_eq!(md5.unwrap().len(), 32);
        let (_, md5) = secrets("u", "Secret123", MD5, false).unwrap();
        assert!(md5.is_none(), "md5_auth = false stores no MD5 secret");
    }

    #[test]
    fn passwords_verify_against_either_secret() {
        let (scram, md5) = secrets("u", "Secret123", MD5, true).unwrap();
        let mut user = UserDef {
            name: "u".into(),
            id: 100,
            superuser: false,
            create_db: false,
            scram,
            md5,
            connection_limit: None,
        };
        assert!(verify_password(&user, "Secret123", true));
        assert!(!verify_password(&user, "Secret124", true));
        user.scram = None;
        assert!(verify_password(&user, "Secret123", true));
        assert!(!verify_password(&user, "secret123", true));
        assert!(!verify_password(&user, "Secret123", false), "MD5 is off");
    }

    #[test]
    fn a_prehashed_md5_password_is_taken_as_is_unless_md5_is_off() {
        let (scram, md5) =
            secrets("u", "md5ABCDEF0123456789abcdef0123456789", SCRAM, true).unwrap();
        assert!(scram.is_none());
        assert_eq!(md5.unwrap(), "abcdef0123456789abcdef0123456789");
        let err = secrets("u", "md5ABCDEF0123456789abcdef0123456789", SCRAM, false).unwrap_err();
        assert_eq!(err.sqlstate(), "0A000");
    }

    #[test]
    fn a_stored_salted_password_is_read_as_its_keys() {
        let salt = b"0123456789abcdef";
        let salted = {
            // What catalogs stored before: Hi(password, salt, i).
            let mut out = [0u8; 32];
            ring::pbkdf2::derive(
                ring::pbkdf2::PBKDF2_HMAC_SHA256,
                std::num::NonZeroU32::new(4096).unwrap(),
                salt,
                b"Secret123",
                &mut out,
            );
            out
        };
        let old = serde_json::json!({
            "salt": hex(salt), "iterations": 4096, "salted_password": hex(&salted)
        });
        let secret: ScramSecret = serde_json::from_value(old).unwrap();
        let written = serde_json::to_string(&secret).unwrap();
        assert!(!written.contains("salted_password") && !written.contains(&hex(&salted)));
        let user = UserDef {
            name: "u".into(),
            id: 100,
            superuser: false,
            create_db: false,
            scram: Some(secret.clone()),
            md5: None,
            connection_limit: None,
        };
        assert!(verify_password(&user, "Secret123", false));
        let again: ScramSecret = serde_json::from_str(&written).unwrap();
        assert_eq!(again, secret);
        assert!(
            serde_json::from_value::<ScramSecret>(serde_json::json!({
                "salt": "00", "iterations": 4096
            }))
            .is_err()
        );
    }

    #[test]
    fn the_setting_takes_postgresqls_values() {
        assert_eq!(
            PasswordEncryption::parse("SCRAM-SHA-256", true).unwrap(),
            SCRAM
        );
        assert_eq!(PasswordEncryption::parse("md5", true).unwrap(), MD5);
        assert_eq!(
            PasswordEncryption::parse("md5", false)
                .unwrap_err()
                .sqlstate(),
            "0A000"
        );
        assert_eq!(
            PasswordEncryption::parse("plain", true)
                .unwrap_err()
                .sqlstate(),
            "22023"
        );
    }
}
