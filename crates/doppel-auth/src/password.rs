//! Passwords: the length rule, generated secrets, and Argon2id hashes as PHC strings.
//!
//! Everything here is blocking CPU work (one hash takes tens of milliseconds and 19 MiB); the
//! registry runs it on tokio's blocking threads.

use crate::error::AuthError;
use crate::limits::{MAX_PASSWORD_BYTES, MIN_PASSWORD_BYTES};
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Random bytes in a generated password: 256 bits, beyond any guessing attack even if a hash
/// leaks. Encoded as 43 characters of base64url without padding.
pub const GENERATED_SECRET_BYTES: usize = 32;

/// Random bytes in a credential id: 64 bits, shown as 16 hex characters. Ids are not secret; they
/// only need to be unique among one principal's few credentials.
pub const CREDENTIAL_ID_BYTES: usize = 8;

/// Argon2id memory cost in KiB (19 MiB), time cost (passes) and parallelism: the minimum OWASP's
/// Password Storage Cheat Sheet recommends for Argon2id. More would slow every cold device
/// connection and cost memory per concurrent verification; less falls below the recommendation.
/// Stored hashes carry their parameters, so raising these later needs no migration.
pub const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
/// See [`ARGON2_MEMORY_KIB`].
pub const ARGON2_ITERATIONS: u32 = 2;
/// See [`ARGON2_MEMORY_KIB`]. One lane: parallel lanes would take cores from other connections.
pub const ARGON2_LANES: u32 = 1;

/// Checks the length of a password a caller supplied.
pub fn check_supplied(password: &str) -> Result<(), AuthError> {
    let length = password.len();
    if (MIN_PASSWORD_BYTES..=MAX_PASSWORD_BYTES).contains(&length) {
        Ok(())
    } else {
        Err(AuthError::InvalidPassword { length })
    }
}

/// `N` bytes from the operating system's random source.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], AuthError> {
    let mut bytes = [0; N];
    getrandom::fill(&mut bytes).map_err(|err| AuthError::Random {
        reason: err.to_string(),
    })?;
    Ok(bytes)
}

/// A new random password: base64url without padding, so it survives URLs, shells and JSON as is.
pub fn generate() -> Result<String, AuthError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<GENERATED_SECRET_BYTES>()?))
}

/// A new random credential id: lowercase hex.
pub fn generate_credential_id() -> Result<String, AuthError> {
    random_hex::<CREDENTIAL_ID_BYTES>()
}

/// `N` random bytes as `2 * N` lowercase hex characters: an id that is not secret.
pub fn random_hex<const N: usize>() -> Result<String, AuthError> {
    Ok(random_bytes::<N>()?
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

/// The Argon2id PHC string of `password` with a fresh salt from the operating system.
pub fn hash(password: &[u8]) -> Result<String, AuthError> {
    let hash_failed = |err: &dyn std::fmt::Display| AuthError::Hash {
        reason: err.to_string(),
    };
    let params = Params::new(ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_LANES, None)
        .map_err(|err| hash_failed(&err))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password)
        .map(|hash| hash.to_string())
        .map_err(|err| hash_failed(&err))
}

/// Whether `password` matches the PHC string `hash`, using the parameters the hash records.
/// A hash that cannot be parsed matches nothing.
pub fn matches(password: &[u8], hash: &str) -> bool {
    Argon2::default().verify_password(password, hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_salted_argon2id_phc_strings_with_the_chosen_parameters() {
        let first = hash(b"correct horse battery").unwrap();
        let second = hash(b"correct horse battery").unwrap();
        assert!(
            first.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{first}"
        );
        assert_ne!(first, second, "every hash has its own salt");
        assert!(matches(b"correct horse battery", &first));
        assert!(matches(b"correct horse battery", &second));
        assert!(!matches(b"correct horse batterz", &first));
        assert!(!matches(b"correct horse battery", "not a phc string"));
    }

    #[test]
    fn supplied_passwords_must_have_a_bounded_length() {
        assert!(check_supplied(&"x".repeat(MIN_PASSWORD_BYTES)).is_ok());
        assert!(check_supplied(&"x".repeat(MAX_PASSWORD_BYTES)).is_ok());
        for length in [0, MIN_PASSWORD_BYTES - 1, MAX_PASSWORD_BYTES + 1] {
            match check_supplied(&"x".repeat(length)) {
                Err(AuthError::InvalidPassword { length: got }) => assert_eq!(got, length),
                other => panic!("{length} bytes gave {other:?}"),
            }
        }
        // Bytes, not characters: 8 two-byte characters are 16 bytes.
        assert!(check_supplied(&"é".repeat(8)).is_ok());
    }

    #[test]
    fn generated_secrets_and_ids_have_their_documented_form() {
        let secret = generate().unwrap();
        assert_eq!(secret.len(), 43);
        assert!(
            secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{secret}"
        );
        assert!(
            check_supplied(&secret).is_ok(),
            "a generated secret is a valid password"
        );
        assert_ne!(generate().unwrap(), secret);
        let id = generate_credential_id().unwrap();
        assert_eq!(id.len(), 16);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
}
