//! Login on the PostgreSQL port: the startup message, authentication, and the parameter
//! statuses a session starts with.
//!
//! Who may log in how:
//! * a user with a password (`CREATE USER ... PASSWORD`) proves it with SCRAM-SHA-256
//!   ([`crate::auth::scram`], against the stored keys), or with MD5 when the user has an MD5
//!   secret (see [`crate::auth`]) and either no SCRAM one or a Redshift driver as client (it
//!   sends `client_protocol_version`; those drivers speak MD5, as Redshift does); never MD5
//!   when the leader's `md5_auth` is off;
//! * the configured password-less users (`blueshift` in local mode) log in without one, from
//!   loopback only, only when the leader trusts loopback (`trust_loopback`, which `blueshift
//!   local` sets), and only while no password is set;
//! * anyone else goes through the same SCRAM exchange (the same iterations, a salt that is
//!   stable per name) against keys nobody knows and fails with 28P01, so that a wrong
//!   password and an unknown user look the same to the client.

use std::fmt::Debug;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    StartupHandler, protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::{ClientInfo, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::response::{ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{Authentication, BackendKeyData, ParameterStatus, SecretKey};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::sessions::ConnectionEvent;
use super::{Handler, SETTING_PREFIX, SessionCancel};
use crate::auth::scram::{self, AwaitingProof, Keys};
use crate::auth::{SCRAM_ITERATIONS, constant_time_eq, md5_response};
use crate::session::SESSION_USER;
use blueshift_common::error::sqlstate;

const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

/// Redshift's metadata discovery level: `SHOW DATABASES | SCHEMAS | TABLES | COLUMNS` (per
/// schema and table; not the database-wide batch forms of level 5). `redshift_connector`
/// uses SHOW for `get_schemas` / `get_tables` / `get_columns` from level 4.
const SHOW_DISCOVERY: &str = "4";

/// Where a session's login is.
enum Pending {
    /// SASL requested; the client's first SCRAM message is next.
    ScramStart {
        salt: Vec<u8>,
        iterations: u32,
        keys: Keys,
    },
    /// Server-first sent; the client's proof is next.
    ScramFinal(Box<AwaitingProof>),
    /// MD5 requested; `expected` is the response that proves the password.
    Md5 { expected: String },
}

struct PendingLogin(std::sync::Mutex<Option<Pending>>);

impl PendingLogin {
    fn take(&self) -> Option<Pending> {
        match self.0.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        }
    }
}

fn set_pending<C: ClientInfo>(client: &C, p: Pending) {
    client
        .session_extensions()
        .insert(PendingLogin(std::sync::Mutex::new(Some(p))));
}

async fn refuse<C>(client: &mut C, code: &str, message: String) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let info = ErrorInfo::new("FATAL".to_string(), code.to_string(), message);
    client
        .send(PgWireBackendMessage::ErrorResponse(info.into()))
        .await?;
    client.close().await?;
    Ok(())
}

fn user_of<C: ClientInfo>(client: &C) -> String {
    client.metadata().get("user").cloned().unwrap_or_default()
}

/// How the session's login is being checked (for `stl_connection_log`).
struct LoginMethod(&'static str);

fn login_method<C: ClientInfo>(client: &C) -> &'static str {
    client
        .session_extensions()
        .get::<LoginMethod>()
        .map_or("", |m| m.0)
}

/// An event of this connection for `stl_connection_log`.
fn connection_event<C: ClientInfo>(client: &C, event: &'static str) -> ConnectionEvent {
    let mut e = ConnectionEvent::new(event, client.socket_addr(), &user_of(client));
    let metadata = client.metadata();
    e.database = metadata.get("database").cloned().unwrap_or_default();
    e.application_name = metadata
        .get("application_name")
        .cloned()
        .unwrap_or_default();
    e.method = login_method(client);
    e.tls = client.is_secure();
    e
}

#[async_trait]
impl StartupHandler for Handler {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                self.on_startup_message(client).await
            }
            PgWireFrontendMessage::PasswordMessageFamily(msg) => {
                let pending = client
                    .session_extensions()
                    .get::<PendingLogin>()
                    .and_then(|p| p.take());
                match pending {
                    Some(Pending::ScramStart {
                        salt,
                        iterations,
                        keys,
                    }) => {
                        let Some((mechanism, data)) = super::sasl::initial_response(msg) else {
                            return refuse(
                                client,
                                sqlstate::PROTOCOL_VIOLATION,
                                "malformed SASLInitialResponse message".to_string(),
                            )
                            .await;
                        };
                        if mechanism != SCRAM_SHA_256 {
                            return refuse(
                                client,
                                sqlstate::INVALID_AUTHORIZATION,
                                format!(
                                    "SASL mechanism {mechanism} is not supported (use {SCRAM_SHA_256})"
                                ),
                            )
                            .await;
                        }
                        let (server_first, waiting) =
                            match scram::server_first(&data, keys, &salt, iterations) {
                                Ok(r) => r,
                                Err(e) => {
                                    tracing::info!(error = %e, "SCRAM exchange refused");
                                    return self.password_failed(client).await;
                                }
                            };
                        set_pending(client, Pending::ScramFinal(Box::new(waiting)));
                        client
                            .send(PgWireBackendMessage::Authentication(
                                Authentication::SASLContinue(server_first.into()),
                            ))
                            .await?;
                        Ok(())
                    }
                    Some(Pending::ScramFinal(waiting)) => {
                        let response = msg.into_sasl_response()?;
                        let waiting = *waiting;
                        match waiting.server_final(&response.data) {
                            Ok(server_final) => {
                                client
                                    .feed(PgWireBackendMessage::Authentication(
                                        Authentication::SASLFinal(server_final.into()),
                                    ))
                                    .await?;
                                self.finish_login(client).await
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "SCRAM exchange failed");
                                self.password_failed(client).await
                            }
                        }
                    }
                    Some(Pending::Md5 { expected }) => {
                        let given = msg.into_password()?;
                        if constant_time_eq(given.password.as_bytes(), expected.as_bytes()) {
                            self.finish_login(client).await
                        } else {
                            self.password_failed(client).await
                        }
                    }
                    None => {
                        refuse(
                            client,
                            sqlstate::PROTOCOL_VIOLATION,
                            "unexpected password message".to_string(),
                        )
                        .await
                    }
                }
            }
            _ => Ok(()),
        }
    }
}

impl Handler {
    /// A wrong password (or an unknown user): 28P01, logged, counted against the address.
    async fn password_failed<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let user = user_of(client);
        tracing::info!(%user, "password authentication failed");
        let leader = &self.executor.leader;
        leader.auth_throttle.failed(client.socket_addr().ip());
        leader
            .sessions
            .record(connection_event(client, "authentication failure"));
        refuse(
            client,
            sqlstate::INVALID_PASSWORD,
            format!("password authentication failed for user \"{user}\""),
        )
        .await
    }

    /// Decides how the user of a new connection logs in, and starts it.
    async fn on_startup_message<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let user = user_of(client);
        let database = client
            .metadata()
            .get("database")
            .cloned()
            .unwrap_or_else(|| user.clone());
        let leader = &self.executor.leader;
        leader
            .sessions
            .record(connection_event(client, "initiating session"));
        if let Err(e) = leader.auth_throttle.check(client.socket_addr().ip()) {
            tracing::info!(%user, error = %e.user_message(), "login refused");
            return refuse(client, &e.sqlstate(), e.user_message()).await;
        }
        if database != leader.database {
            return refuse(
                client,
                sqlstate::INVALID_CATALOG_NAME,
                format!("database \"{database}\" does not exist"),
            )
            .await;
        }
        client.set_state(PgWireConnectionState::AuthenticationInProgress);
        let stored = leader.catalog.snapshot().users.get(&user).cloned();
        let loopback = client.socket_addr().ip().is_loopback();
        // Password-less logins exist only where the operator asked for them (`blueshift
        // local` does): otherwise a built-in user without a password is like an unknown one.
        let trusted = leader.trust_loopback && leader.users.contains(&user);
        match stored {
            Some(u) if u.has_password() => {
                // Redshift's drivers (which announce `client_protocol_version`) speak MD5, as
                // Redshift does; `redshift_connector` cannot parse a SASL request.
                let redshift_driver = client.metadata().contains_key("client_protocol_version");
                let md5 = leader.md5_auth
                    && u.md5.is_some()
                    && (redshift_driver || u.scram.is_none());
                if !md5 {
                    let Some((salt, keys)) = u.scram.as_ref().and_then(|s| s.decode()) else {
                        // An MD5-only user while MD5 is off: the same failing exchange as an
                        // unknown user's (the client cannot tell), the reason in the log.
                        tracing::info!(
                            %user,
                            "the user has only an MD5 secret and md5_auth is off: the login fails"
                        );
                        return self.request_mock_scram(client, &user).await;
                    };
                    let iterations = u.scram.as_ref().map_or(SCRAM_ITERATIONS, |s| s.iterations);
                    set_pending(
                        client,
                        Pending::ScramStart {
                            salt,
                            iterations,
                            keys,
                        },
                    );
                    self.request_scram(client).await
                } else {
                    client.session_extensions().insert(LoginMethod("md5"));
                    let salt: [u8; 4] = rand::random();
                    let secret = u.md5.clone().unwrap_or_default();
                    set_pending(
                        client,
                        Pending::Md5 {
                            expected: md5_response(&secret, &salt),
                        },
                    );
                    client
                        .send(PgWireBackendMessage::Authentication(
                            Authentication::MD5Password(salt.to_vec()),
                        ))
                        .await?;
                    Ok(())
                }
            }
            _ if trusted && loopback => {
                client.session_extensions().insert(LoginMethod("trust"));
                self.finish_login(client).await
            }
            _ if trusted => {
                refuse(
                    client,
                    sqlstate::INVALID_AUTHORIZATION,
                    format!(
                        "no password login for \"{user}\" from {}: it is allowed from loopback only; \
                         give the user a password (ALTER USER {user} PASSWORD '...') to log in remotely",
                        client.socket_addr().ip()
                    ),
                )
                .await
            }
            // Unknown user, or one without a password.
            _ => self.request_mock_scram(client, &user).await,
        }
    }

    /// The same exchange as a real user's, against keys nobody knows: it fails at the proof.
    async fn request_mock_scram<C>(&self, client: &mut C, user: &str) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        set_pending(
            client,
            Pending::ScramStart {
                salt: scram::mock_salt(user).to_vec(),
                iterations: SCRAM_ITERATIONS,
                keys: scram::mock_keys(),
            },
        );
        self.request_scram(client).await
    }

    async fn request_scram<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        client
            .session_extensions()
            .insert(LoginMethod("scram-sha-256"));
        client
            .send(PgWireBackendMessage::Authentication(Authentication::SASL(
                vec![SCRAM_SHA_256.to_string()],
            )))
            .await?;
        Ok(())
    }

    /// Authentication succeeded: the session's keys, its parameters, ReadyForQuery.
    async fn finish_login<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let user = user_of(client);
        let leader = &self.executor.leader;
        let superuser = leader.is_superuser(&user);
        let limit = leader
            .catalog
            .snapshot()
            .users
            .get(&user)
            .and_then(|u| u.connection_limit);
        let (pid, secret) = (rand::random::<i32>().abs(), rand::random::<i32>());
        let mut login = connection_event(client, "authenticated");
        login.pid = pid;
        match leader
            .sessions
            .admit(&user, superuser, leader.max_connections, limit, login)
        {
            // Given back when the connection (and its extensions) drop.
            Ok(slot) => {
                client.session_extensions().insert(slot);
            }
            Err(e) => {
                tracing::info!(%user, error = %e.user_message(), "login refused");
                return refuse(client, &e.sqlstate(), e.user_message()).await;
            }
        }
        client
            .metadata_mut()
            .insert(format!("{SETTING_PREFIX}{SESSION_USER}"), user.clone());
        client.set_pid_and_secret_key(pid, SecretKey::I32(secret));
        // The guard unregisters the session when the connection (and its extensions) drop.
        let (handle, guard) = self.connections.register(pid, SecretKey::I32(secret));
        client.session_extensions().insert(SessionCancel(handle));
        client.session_extensions().insert(guard);
        client
            .feed(PgWireBackendMessage::Authentication(Authentication::Ok))
            .await?;
        let application_name = client
            .metadata()
            .get("application_name")
            .cloned()
            .unwrap_or_default();
        for (k, v) in [
            (
                "server_version",
                blueshift_common::PG_SERVER_VERSION.to_string(),
            ),
            ("server_encoding", "UTF8".to_string()),
            ("client_encoding", "UTF8".to_string()),
            ("DateStyle", "ISO, MDY".to_string()),
            ("TimeZone", "UTC".to_string()),
            ("IntervalStyle", "postgres".to_string()),
            ("integer_datetimes", "on".to_string()),
            ("standard_conforming_strings", "on".to_string()),
            (
                "is_superuser",
                if superuser { "on" } else { "off" }.to_string(),
            ),
            ("session_authorization", user.clone()),
            ("application_name", application_name),
            ("show_discovery", SHOW_DISCOVERY.to_string()),
        ] {
            client
                .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                    k.to_string(),
                    v,
                )))
                .await?;
        }
        client
            .feed(PgWireBackendMessage::BackendKeyData(BackendKeyData::new(
                pid,
                SecretKey::I32(secret),
            )))
            .await?;
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                TransactionStatus::Idle,
            )))
            .await?;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        tracing::debug!(%user, "logged in");
        Ok(())
    }
}
