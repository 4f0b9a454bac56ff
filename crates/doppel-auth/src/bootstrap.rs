//! The first admin token of a server that asks for tokens: the hub (`doppel serve`) and the
//! edge agent (`doppel edge`) both start this way, so it lives here once.
//!
//! When the token store holds no token at all, an admin token is made and its secret written
//! to [`ADMIN_TOKEN_FILE`] in the server's data folder, readable by the server's user only.
//! The operator (and the CLI run beside the data folder) reads it from there and makes the
//! tokens applications use.

use crate::error::AuthError;
use crate::task::blocking;
use crate::tokens::{NewToken, Role, TenantScope, Tokens, check_secret, generate_secret};
use doppel_model::Millis;
use doppel_store::TokenStore;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// Where the first admin token's secret is written, in the data folder.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// The name the first admin token is listed under.
pub const FIRST_TOKEN_NAME: &str = "admin";

/// Why the tokens could not be loaded or the first one made. Each stops the server's start.
#[derive(Debug, Error)]
pub enum BootstrapError {
    #[error("cannot load the API tokens from the store: {0}")]
    Load(AuthError),
    /// Checked before anything is written, so a bad secret leaves no file behind.
    #[error("the first admin token's secret is not usable: {0}")]
    InvalidSecret(AuthError),
    #[error("cannot write the first admin token to {}: {reason}", path.display())]
    SecretFile { path: PathBuf, reason: String },
    #[error("cannot create the first admin token: {0}")]
    Create(AuthError),
}

/// Loads every token of `store`. When there is none, first writes a secret (`secret`, else a
/// random one) to `{data_dir}/admin.token` with mode 0600, then makes an admin token for every
/// tenant with it, stamped `now`, and logs where the file is.
///
/// The file comes first: an admin token whose secret nobody has would lock the operator out,
/// while a file whose token was never made (a crash between the two) is simply written again
/// at the next start.
pub async fn load_tokens_or_bootstrap(
    store: Arc<dyn TokenStore>,
    data_dir: &Path,
    secret: Option<&str>,
    now: Millis,
) -> Result<Tokens, BootstrapError> {
    let tokens = blocking(move || Tokens::load(store))
        .await
        .and_then(|loaded| loaded)
        .map_err(BootstrapError::Load)?;
    if !tokens.is_empty() {
        return Ok(tokens);
    }
    let secret = match secret {
        Some(secret) => {
            check_secret(secret).map_err(BootstrapError::InvalidSecret)?;
            secret.to_owned()
        }
        None => generate_secret().map_err(BootstrapError::Create)?,
    };
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    let (file, written) = (path.clone(), secret.clone());
    blocking(move || write_secret(&file, &written))
        .await
        .map_err(BootstrapError::Create)?
        .map_err(|err| BootstrapError::SecretFile {
            path: path.clone(),
            reason: err.to_string(),
        })?;
    let first = NewToken {
        name: FIRST_TOKEN_NAME.to_owned(),
        roles: vec![Role::Admin],
        tenant: TenantScope::All,
        expires_at: None,
    };
    tokens
        .create_with_secret(first, &secret, now)
        .await
        .map_err(BootstrapError::Create)?;
    tracing::info!(path = %path.display(), "created the first admin token; its secret is in this file (mode 0600)");
    Ok(tokens)
}

/// Writes `secret` to `path`, readable by this user only, and makes it durable.
fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    // `mode` applies only when the file is created: a file left by an earlier start (whose
    // token was never made) may have been loosened since.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    writeln!(file, "{secret}")?;
    file.sync_all()
}

#[cfg(test)]
mod tests;
