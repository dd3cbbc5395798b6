//! The body of a SASLInitialResponse message (`p` after AuthenticationSASL): the mechanism
//! name as a C string, the Int32 length of the initial data (-1: none), the data.
//!
//! pgwire's decoder of this body panics on one cut short or with a bad length (`get_i32` /
//! `split_to` past the end; found by the `pg_messages` fuzz target, tests/fuzz), and any
//! client may send one before it has logged in: the body is read here, every length checked.

use pgwire::messages::startup::PasswordMessageFamily;

/// The mechanism and initial data of a SASLInitialResponse, or `None` if it is malformed.
pub fn initial_response(message: PasswordMessageFamily) -> Option<(String, Vec<u8>)> {
    match message {
        PasswordMessageFamily::Raw(body) => parse(&body),
        PasswordMessageFamily::SASLInitialResponse(m) => Some((
            m.auth_method,
            m.data.map(|d| d.to_vec()).unwrap_or_default(),
        )),
        _ => None,
    }
}

fn parse(body: &[u8]) -> Option<(String, Vec<u8>)> {
    let end = body.iter().position(|b| *b == 0)?;
    let mechanism = std::str::from_utf8(&body[..end]).ok()?.to_string();
    let rest = &body[end + 1..];
    let len = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    let data = &rest[4..];
    match len {
        -1 if data.is_empty() => Some((mechanism, Vec::new())),
        n if n >= 0 && n as usize == data.len() => Some((mechanism, data.to_vec())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_and_cut_short_bodies() {
        let mut body = b"SCRAM-SHA-256\0".to_vec();
        body.extend_from_slice(&5i32.to_be_bytes());
        body.extend_from_slice(b"n,,ab");
        assert_eq!(
            parse(&body),
            Some(("SCRAM-SHA-256".to_string(), b"n,,ab".to_vec()))
        );
        let mut none = b"SCRAM-SHA-256\0".to_vec();
        none.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(parse(&none), Some(("SCRAM-SHA-256".to_string(), vec![])));
        // The fuzz target's crash: a password where the SASL response belongs.
        assert_eq!(parse(b"md5abcdef0123456789abcdef0123456789\0"), None);
        for bad in [
            &b""[..],
            b"SCRAM",
            b"SCRAM\0\0\0",
            b"SCRAM\0\xff\xff\xff\xfeab",
            b"SCRAM\0\0\0\0\x09ab",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
