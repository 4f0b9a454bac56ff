//! Password logins with bounded Argon2 work: the [`Registry`]'s verification behind a
//! [`LoginGuard`].
//!
//! One login, in order: a password whose length no credential can have, or a username without
//! credentials, is refused at once; a password that verified before for this username is
//! accepted from memory (no Argon2, and no guard: this is how a device gets in while its username
//! is under attack); anything else needs the guard's admission, then the Argon2 check, whose
//! verdict goes back to the guard. Only that last step costs real work, and the guard bounds how
//! often a failing address or username gets to it; the registry's semaphore bounds how many run
//! at once.

use crate::login_guard::{GuardConfig, Limit, LoginGuard};
use crate::registry::{Recall, Registry};
use doppel_model::Principal;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Shortest time between two log lines about refused logins: a flood gets one line per interval
/// with the counts, not one line per attempt.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How a login ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginOutcome {
    Accepted {
        principal: Principal,
        /// The credential the password matched.
        credential_id: String,
    },
    Refused(Refusal),
}

/// Why a login was refused. The client is told the same for all of them ("bad username or
/// password"), so that it cannot tell a throttled guess from a checked one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The password's length is outside what any credential can have; no Argon2.
    Malformed,
    /// No credential has this username; no Argon2.
    UnknownUsername,
    /// Argon2 matched none of the username's credentials.
    WrongPassword,
    /// Refused without Argon2: this limit of the guard holds the login back.
    Throttled(Limit),
    /// The check could not run (its task failed, as at shutdown).
    Unavailable,
}

impl Refusal {
    /// Its name in metrics (`reason`) and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::UnknownUsername => "unknown_username",
            Refusal::WrongPassword => "wrong_password",
            Refusal::Throttled(Limit::Address) => "throttled_address",
            Refusal::Throttled(Limit::Username) => "throttled_username",
            Refusal::Unavailable => "unavailable",
        }
    }

    /// Every refusal, in the order of [`Refusal::index`].
    pub const ALL: [Refusal; 6] = [
        Refusal::Malformed,
        Refusal::UnknownUsername,
        Refusal::WrongPassword,
        Refusal::Throttled(Limit::Address),
        Refusal::Throttled(Limit::Username),
        Refusal::Unavailable,
    ];

    /// Its place in [`Refusal::ALL`].
    fn index(self) -> usize {
        match self {
            Refusal::Malformed => 0,
            Refusal::UnknownUsername => 1,
            Refusal::WrongPassword => 2,
            Refusal::Throttled(Limit::Address) => 3,
            Refusal::Throttled(Limit::Username) => 4,
            Refusal::Unavailable => 5,
        }
    }
}

/// Logs in clients by password. Cloning shares the guard.
#[derive(Clone)]
pub struct LoginGate {
    inner: Arc<Inner>,
}

struct Inner {
    /// The credentials and the semaphore that bounds Argon2 runs at once.
    registry: Registry,
    /// Failures and backoffs by address and username.
    guard: Mutex<LoginGuard>,
    /// Refusals counted since the last log line about them.
    refusals: Mutex<RefusalLog>,
}

impl LoginGate {
    pub fn new(registry: Registry, config: GuardConfig) -> LoginGate {
        let now = now();
        LoginGate {
            inner: Arc::new(Inner {
                registry,
                guard: Mutex::new(LoginGuard::new(config, now)),
                refusals: Mutex::new(RefusalLog::new()),
            }),
        }
    }

    /// Logs in `username` with `password` for a client at `address` (when the transport knows
    /// it). Never logs the password.
    ///
    /// Runs to completion even if the caller stops waiting (a client that hangs up), so that
    /// every check that ran is counted.
    pub async fn login(
        &self,
        username: &str,
        password: &[u8],
        address: Option<IpAddr>,
    ) -> LoginOutcome {
        let outcome = self.attempt(username, password, address).await;
        if let LoginOutcome::Refused(refusal) = outcome {
            let summary = lock(&self.inner.refusals).record(refusal, now());
            if let Some(counts) = summary {
                let untracked = lock(&self.inner.guard).untracked();
                let count = |refusal: Refusal| counts[refusal.index()];
                tracing::warn!(
                    wrong_password = count(Refusal::WrongPassword),
                    throttled_address = count(Refusal::Throttled(Limit::Address)),
                    throttled_username = count(Refusal::Throttled(Limit::Username)),
                    unknown_username = count(Refusal::UnknownUsername),
                    malformed = count(Refusal::Malformed),
                    unavailable = count(Refusal::Unavailable),
                    last_username = username,
                    last_address = ?address,
                    untracked_since_start = untracked,
                    "MQTT logins refused since the last report (at most one report per {}s)",
                    REFUSAL_LOG_INTERVAL.as_secs()
                );
            }
        }
        outcome
    }

    async fn attempt(
        &self,
        username: &str,
        password: &[u8],
        address: Option<IpAddr>,
    ) -> LoginOutcome {
        match self.inner.registry.recall(username, password) {
            Recall::Malformed => return LoginOutcome::Refused(Refusal::Malformed),
            Recall::UnknownUsername => return LoginOutcome::Refused(Refusal::UnknownUsername),
            Recall::Known(principal, credential_id) => {
                return LoginOutcome::Accepted {
                    principal,
                    credential_id,
                };
            }
            Recall::Unknown => {}
        }
        let ticket = match lock(&self.inner.guard).admit(address, username, now()) {
            Ok(ticket) => ticket,
            Err(limit) => return LoginOutcome::Refused(Refusal::Throttled(limit)),
        };
        let inner = Arc::clone(&self.inner);
        let username = username.to_owned();
        let password = password.to_vec();
        let check = tokio::spawn(async move {
            let verified = inner.registry.verify_credential(&username, &password).await;
            let started = lock(&inner.guard).finish(ticket, verified.is_some(), now());
            for backoff in started {
                tracing::warn!(
                    limit = backoff.limit.as_str(),
                    key = backoff.key,
                    seconds = backoff.duration.as_secs_f64(),
                    "too many failed MQTT logins: refusing unknown passwords without checking them for a while"
                );
            }
            verified
        });
        match check.await {
            Ok(Some((principal, credential_id))) => LoginOutcome::Accepted {
                principal,
                credential_id,
            },
            Ok(None) => LoginOutcome::Refused(Refusal::WrongPassword),
            Err(err) => {
                tracing::warn!(error = %err, "a password check failed to run");
                LoginOutcome::Refused(Refusal::Unavailable)
            }
        }
    }
}

/// The time the guard works with: tokio's clock, so that tests can pause it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts refusals between log lines.
struct RefusalLog {
    /// When the last line was written; `None` before the first.
    last_line: Option<Instant>,
    /// Refusals since then, by [`Refusal::index`].
    counts: [u64; Refusal::ALL.len()],
}

impl RefusalLog {
    fn new() -> Self {
        Self {
            last_line: None,
            counts: [0; Refusal::ALL.len()],
        }
    }

    /// Counts `refusal`; returns the counts to log (and starts counting afresh) when a line is
    /// due: at the first refusal, then at most once per [`REFUSAL_LOG_INTERVAL`].
    fn record(&mut self, refusal: Refusal, now: Instant) -> Option<[u64; Refusal::ALL.len()]> {
        self.counts[refusal.index()] += 1;
        let due = self
            .last_line
            .is_none_or(|last| now.saturating_duration_since(last) >= REFUSAL_LOG_INTERVAL);
        if !due {
            return None;
        }
        self.last_line = Some(now);
        Some(std::mem::replace(&mut self.counts, [0; Refusal::ALL.len()]))
    }
}

#[cfg(test)]
mod tests;
