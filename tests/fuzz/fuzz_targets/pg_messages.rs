//! PostgreSQL frontend messages as the leader's port decodes them (pgwire's codec, in the
//! states a connection goes through: before SSL negotiation, before the startup message,
//! and in a session), then our startup-parameter and SASL handling of what decoded.
//! The first byte picks the state; the rest is the byte stream. Must never panic.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pgwire::messages::{DecodeContext, PgWireFrontendMessage};

fuzz_target!(|data: &[u8]| {
    let Some((state, stream)) = data.split_first() else {
        return;
    };
    let mut ctx = DecodeContext::default();
    match state % 3 {
        0 => {}
        1 => ctx.awaiting_frontend_ssl = false,
        _ => {
            ctx.awaiting_frontend_ssl = false;
            ctx.awaiting_frontend_startup = false;
        }
    }
    let mut buf = BytesMut::from(stream);
    // A stream holds many messages; decode until it is used up or refused.
    for _ in 0..64 {
        match PgWireFrontendMessage::decode(&mut buf, &ctx) {
            Ok(Some(message)) => {
                if let PgWireFrontendMessage::PasswordMessageFamily(family) = message {
                    // What startup.rs does with a SASL message: the SCRAM exchange.
                    if let Some((_, data)) =
                        blueshift_leader::pgwire::sasl::initial_response(family)
                    {
                        let keys = blueshift_leader::auth::scram::mock_keys();
                        if let Ok((_, waiting)) =
                            blueshift_leader::auth::scram::server_first(&data, keys, b"salt", 4096)
                        {
                            let _ = waiting.server_final(&data);
                        }
                    }
                }
                ctx.awaiting_frontend_ssl = false;
                ctx.awaiting_frontend_startup = false;
            }
            Ok(None) | Err(_) => break,
        }
    }
});
