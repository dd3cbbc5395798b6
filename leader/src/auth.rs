//! Users and their credentials: what `CREATE USER ... PASSWORD` stores in the catalog and how
//! a login proves it knows the password.
//!
//! Passwords are never stored. A user has a SCRAM-SHA-256 secret (salt, iterations and the
//! salted password `Hi(password, salt, i)`, what the SCRAM exchange needs) and the MD5 secret
//! `md5(password || user)` (what PostgreSQL's MD5 method needs). A password given as
//! `'md5<32 hex>'` (Redshift's pre-hashed form) is the MD5 secret itself; such a user can
//! log in with MD5 only. The wire exchange lives in [`crate::pgwire`]; this module owns the
//! secrets and the password rules. It must not see or log a cleartext password beyond
//! hashing it.

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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramSecret {
    /// Hex.
    pub salt: String,
    pub iterations: u32,
    /// Hex of `Hi(password, salt, iterations)`.
    pub salted_password: String,
}

impl UserDef {
    pub fn has_password(&self) -> bool {
        self.scram.is_some() || self.md5.is_some()
    }
}

/// The secrets of `password` for user `name`: a cleartext password (which must meet
/// Redshift's rules) or an `md5...` hash.
pub fn secrets(name: &str, password: &str) -> Result<(Option<ScramSecret>, Option<String>)> {
    if let Some(hash) = password.strip_prefix("md5")
        && hash.len() == 32
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Ok((None, Some(hash.to_ascii_lowercase())));
    }
    check_password_rules(password)?;
    let salt: [u8; 16] = rand::random();
    let salted = pgwire::api::auth::sasl::scram::gen_salted_password(
        password,
        &salt,
        SCRAM_ITERATIONS as usize,
    );
    let md5 = format!("{:x}", md5::compute(format!("{password}{name}")));
    Ok((
        Some(ScramSecret {
            salt: hex(&salt),
            iterations: SCRAM_ITERATIONS,
            salted_password: hex(&salted),
        }),
        Some(md5),
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
/// Flight SQL's Basic authentication).
pub fn verify_password(user: &UserDef, password: &str) -> bool {
    if let Some(scram) = &user.scram {
        let (Some(salt), Some(expected)) = (unhex(&scram.salt), unhex(&scram.salted_password))
        else {
            return false;
        };
        let salted = pgwire::api::auth::sasl::scram::gen_salted_password(
            password,
            &salt,
            scram.iterations as usize,
        );
        return constant_time_eq(&salted, &expected);
    }
    match &user.md5 {
        Some(md5) => {
            let given = format!("{:x}", md5::compute(format!("{password}{}", user.name)));
            constant_time_eq(given.as_bytes(), md5.as_bytes())
        }
        None => false,
    }
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

    #[test]
    fn md5_matches_postgresql() {
        // pgwire's test vector: user zmjiang, password themanwhochangedchina, salt 14f76bf9.
        let (_, md5) = secrets("zmjiang", "themanwhochangedchinA1").unwrap();
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
            assert_eq!(secrets("u", bad).unwrap_err().sqlstate(), "22023", "{bad}");
        }
        let (scram, md5) = secrets("u", "Secret123").unwrap();
        let scram = scram.unwrap();
        assert_eq!(scram.iterations, SCRAM_ITERATIONS);
        assert_eq!(unhex(&scram.salt).unwrap().len(), 16);
        assert_eq!(md5.unwrap().len(), 32);
    }

    #[test]
    fn passwords_verify_against_either_secret() {
        let (scram, md5) = secrets("u", "Secret123").unwrap();
        let mut user = UserDef {
            name: "u".into(),
            id: 100,
            superuser: false,
            create_db: false,
            scram,
            md5,
        };
        assert!(verify_password(&user, "Secret123"));
        assert!(!verify_password(&user, "Secret124"));
        user.scram = None;
        assert!(verify_password(&user, "Secret123"));
        assert!(!verify_password(&user, "secret123"));
    }

    #[test]
    fn a_prehashed_md5_password_is_taken_as_is() {
        let (scram, md5) = secrets("u", "md5ABCDEF0123456789abcdef0123456789").unwrap();
        assert!(scram.is_none());
        assert_eq!(md5.unwrap(), "abcdef0123456789abcdef0123456789");
    }
}
