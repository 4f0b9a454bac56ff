//! The limits on what callers hand the credential and token stores, in one place: the stores
//! enforce them and the errors quote them, so both sides read the same numbers.

/// Shortest password accepted from a caller. Credentials are for machines, which can hold a long
/// secret as easily as a short one; 16 bytes rules out guessable words.
pub const MIN_PASSWORD_BYTES: usize = 16;

/// Longest password accepted. Far above any real secret, and bounds the work a caller can cause:
/// MQTT allows 65535-byte passwords, and each byte is hashed.
pub const MAX_PASSWORD_BYTES: usize = 256;

/// What every token secret starts with, so that a leaked one is recognisable (by secret
/// scanners, and by a person reading a log) and cannot be mistaken for a device password.
pub const SECRET_PREFIX: &str = "dpt_";

/// Fewest base64url characters after the prefix of a supplied secret: what
/// [`crate::tokens::SECRET_BYTES`] encode to, so that a supplied secret can carry as many bits
/// as a generated one.
pub const MIN_SECRET_CHARS: usize = 43;

/// Longest secret accepted, prefix included. Far above a generated one (47 bytes); bounds what
/// `verify` hashes for a request.
pub const MAX_SECRET_BYTES: usize = 256;

/// Longest token name, in characters: enough for "grafana on the staging cluster", short enough
/// for a column in a list.
pub const MAX_TOKEN_NAME_CHARS: usize = 64;

/// Most credentials one principal may hold. Two cover a rotation (the new one is added before the
/// old one is removed); a few more cover several instances of an application. Each one counts:
/// a wrong password is checked against every credential of its username, one Argon2 run each.
pub const MAX_CREDENTIALS_PER_PRINCIPAL: usize = 4;
