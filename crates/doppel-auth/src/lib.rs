//! Who may connect: the credentials of devices and applications.
//!
//! A [`Principal`] (a device or an application of one tenant) authenticates to the MQTT broker
//! with its username (`{tenant}/devices/{device}` or `{tenant}/apps/{app}`) and a password. The
//! [`Registry`] keeps every credential in memory as an Argon2id hash, writes changes through to a
//! [`CredentialStore`](doppel_store::CredentialStore), and verifies passwords. The broker's
//! authentication hook logs clients in through a [`LoginGate`], which bounds the Argon2 work that
//! failing logins may cause (see [`login_guard`]).
//!
//! HTTP clients authenticate with API tokens instead: bearer secrets with roles and a tenant
//! scope, kept by [`Tokens`] as SHA-256 hashes in a [`TokenStore`](doppel_store::TokenStore)
//! and verified from memory (see [`tokens`]), or with JWTs of an identity provider the operator
//! trusts, verified against its public keys (see [`jwt`]). A server's first admin token is made
//! by [`bootstrap`].

pub mod bootstrap;
mod error;
pub mod jwt;
mod limits;
mod login;
pub mod login_guard;
mod password;
mod registry;
mod task;
pub mod tokens;
mod verified;

pub use bootstrap::{ADMIN_TOKEN_FILE, BootstrapError, load_tokens_or_bootstrap};
pub use doppel_model::{AppName, Principal, PrincipalKind};
pub use error::{AuthError, SecretProblem};
pub use jwt::{JwksError, JwtIdentity, JwtRejection, JwtSettings, JwtVerifier};
pub use limits::{MAX_CREDENTIALS_PER_PRINCIPAL, MAX_PASSWORD_BYTES, MIN_PASSWORD_BYTES};
pub use login::{LoginGate, LoginOutcome, REFUSAL_LOG_INTERVAL, Refusal};
pub use login_guard::{GuardConfig, Limit, LoginGuard};
pub use registry::{
    CreatedCredential, CredentialInfo, Registry, Revocation, default_concurrent_hashes,
};
pub use tokens::{CreatedToken, NewToken, Role, TenantScope, TokenInfo, Tokens, generate_secret};
pub use verified::MAX_VERIFIED_USERNAMES;
