//! The CLI's config file: named profiles of a hub's server, tenant and token, like kubectl's
//! contexts, so that a script or a person switches hubs with `--profile prod`.
//!
//! ```toml
//! profile = "local"             # used when --profile is not given
//!
//! [profiles.local]
//! server = "http://127.0.0.1:8080"
//! tenant = "default"
//! token = "dpt_..."
//! ```

use anyhow::{Context, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The file's name under the user's configuration folder.
const FILE_NAME: &str = "doppel/cli.toml";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    /// The profile used when none is named.
    profile: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// What one profile sets; anything it leaves out comes from the defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub server: Option<String>,
    pub tenant: Option<String>,
    pub token: Option<String>,
}

/// Where the config file is: `$DOPPEL_CLI_CONFIG`, else `$XDG_CONFIG_HOME/doppel/cli.toml`, else
/// `~/.config/doppel/cli.toml`.
fn path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("DOPPEL_CLI_CONFIG") {
        return Some(PathBuf::from(path));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join(FILE_NAME))
}

/// The profile `name` (or the file's default one); an empty profile when there is no file and
/// no profile was asked for.
pub fn load(name: Option<&str>) -> anyhow::Result<Profile> {
    let Some(path) = path() else {
        return match name {
            Some(name) => {
                bail!("--profile {name:?}: no config file (set DOPPEL_CLI_CONFIG or HOME)")
            }
            None => Ok(Profile::default()),
        };
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return match name {
                Some(name) => bail!("--profile {name:?}: there is no {}", path.display()),
                None => Ok(Profile::default()),
            };
        }
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
    };
    let file: File = toml::from_str(&text)
        .map_err(|err| anyhow::anyhow!("{}: {}", path.display(), err.message()))?;
    let Some(name) = name.map(str::to_owned).or(file.profile) else {
        return Ok(Profile::default());
    };
    match file.profiles.get(&name) {
        Some(profile) => Ok(profile.clone()),
        None => {
            let known: Vec<&str> = file.profiles.keys().map(String::as_str).collect();
            bail!(
                "{}: no profile {name:?} (it has {})",
                path.display(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )
        }
    }
}
