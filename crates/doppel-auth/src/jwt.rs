//! JWTs of an identity provider: bearer tokens that an issuer the operator trusts signs, beside
//! the hub's own [API tokens](crate::tokens).
//!
//! [`JwtVerifier`] holds the issuer's public keys, read from a JWKS file (RFC 7517) that the
//! operator keeps up to date, and turns a presented token into a [`JwtIdentity`]: who the caller
//! is, its roles and its tenant scope, taken from claims the configuration names. What is
//! checked, in this order:
//!
//! 1. The form: three base64url parts, at most [`MAX_JWT_BYTES`].
//! 2. The key: the JWKS key the header's `kid` names (without `kid`, the only key of the
//!    header's `alg`), and the header's `alg` must be that key's: RS256 for an RSA key, ES256
//!    for a P-256 key. `none`, HMAC (`HS*`) and every other algorithm are refused, because no
//!    key of the set is ever one of theirs.
//! 3. The signature.
//! 4. `iss` equals the configured issuer; `aud` contains the configured audience, when one is
//!    configured (otherwise `aud` is not looked at).
//! 5. `exp` is present and, with [`LEEWAY`] for clocks that differ, not past; `nbf`, when
//!    present, is not ahead.
//! 6. The name, tenant and roles claims map to a [`JwtIdentity`].
//!
//! Only a token whose signature holds learns more of its refusal than "invalid token": which
//! claim failed, or that it expired. The claims are the bearer's own to read anyway.
//!
//! A JWT cannot be revoked here: it is good until it expires. Issuers keep them short-lived.

use crate::tokens::{ALL_TENANTS, Role, TenantScope};
use doppel_model::{Millis, TenantId};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// How far a token's `exp` may lie in the past, and its `nbf` in the future, and still be
/// accepted: the hub's and the issuer's clocks never agree exactly. Half a minute covers an NTP
/// synchronised pair with room to spare, and adds little to a token's life.
pub const LEEWAY: Duration = Duration::from_secs(30);

/// Longest token verified. Identity providers' tokens are a few hundred bytes to a few KiB;
/// this bounds what a request makes the hub decode before anything is known of it.
pub const MAX_JWT_BYTES: usize = 16 * 1024;

/// Longest name (the `name_claim`'s value) accepted, in characters: it becomes the `changed_by`
/// of every write, and an email address or a UUID is far shorter.
pub const MAX_NAME_CHARS: usize = 256;

/// Largest JWKS file read: a set holds a few keys of under a KiB each.
pub const MAX_JWKS_BYTES: u64 = 1024 * 1024;

/// Fewest bits of an RSA modulus accepted: below 2048, RSA keys are within reach of attackers
/// with means, and no identity provider issues them any more.
pub const MIN_RSA_BITS: usize = 2048;

/// The claims a token's identity is read from, when the configuration names no others.
pub const DEFAULT_TENANT_CLAIM: &str = "tenant";
pub const DEFAULT_ROLES_CLAIM: &str = "roles";
pub const DEFAULT_NAME_CLAIM: &str = "sub";

/// Which issuer to trust and how its claims map onto Doppel's roles and tenants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtSettings {
    /// What `iss` must be, exactly.
    pub issuer: String,
    /// What `aud` must contain; `None` leaves `aud` unchecked.
    pub audience: Option<String>,
    /// The issuer's public keys as a JWKS document; read again by [`JwtVerifier::reload`].
    pub jwks_file: PathBuf,
    /// The claim holding a tenant id, or `*` for every tenant.
    pub tenant_claim: String,
    /// The claim holding Doppel role names (an array, or one name as a string).
    pub roles_claim: String,
    /// The claim naming the caller; writes record `jwt:{value}` as their author.
    pub name_claim: String,
}

/// Who a verified JWT says the caller is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtIdentity {
    /// The name claim's value (by default `sub`).
    pub name: String,
    /// The known Doppel roles the roles claim names, sorted, without duplicates; empty when it
    /// names none, which allows nothing.
    pub roles: Vec<Role>,
    /// Which tenants the token reaches.
    pub tenant: TenantScope,
    /// From this instant on the token no longer verifies: its `exp` plus [`LEEWAY`]. Streams
    /// and long polls of the token end then.
    pub expires_at: Millis,
}

/// Why a JWKS file cannot be used. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot read {}: {reason}", file.display())]
    Unreadable { file: PathBuf, reason: String },
    #[error("{} is larger than {MAX_JWKS_BYTES} bytes; a JWKS holds a few keys", file.display())]
    TooLarge { file: PathBuf },
    #[error("{} is not a JWKS document ({{\"keys\": [...]}}): {reason}", file.display())]
    NotJwks { file: PathBuf, reason: String },
    /// Every key was skipped, or there were none; `skipped` says why for each.
    #[error(
        "{} holds no key Doppel can verify with; it needs an RSA key (RS256, at least {MIN_RSA_BITS} bits) or a P-256 key (ES256) for signatures{}",
        file.display(),
        skipped_list(skipped)
    )]
    NoUsableKey { file: PathBuf, skipped: Vec<String> },
}

/// Why a presented JWT was refused. What `Display` says is safe to tell the caller: the
/// details of a refusal before the signature held are in [`JwtRejection::Invalid`]'s `why`,
/// for the log only.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtRejection {
    /// Not well-formed, no key of the set fits, the algorithm is not the key's, or the
    /// signature does not hold.
    #[error("invalid token")]
    Invalid { why: &'static str },
    #[error("invalid token: the JWT has expired")]
    Expired,
    #[error("invalid token: the JWT is not valid yet (nbf)")]
    NotYetValid,
    #[error("invalid token: the JWT's issuer (iss) is not the one this hub trusts")]
    WrongIssuer,
    #[error("invalid token: the JWT's audience (aud) does not name this hub")]
    WrongAudience,
    #[error("invalid token: the JWT has no expiry (exp)")]
    NoExpiry,
    /// A claim the identity is read from is missing or unusable.
    #[error("invalid token: the JWT's {claim:?} claim {problem}")]
    BadClaim {
        claim: String,
        problem: &'static str,
    },
}

/// One key of the set, ready to verify with.
struct VerifyingKey {
    /// The JWK's `kid`, which tokens name in their header.
    kid: Option<String>,
    /// The only algorithm this key verifies: RS256 for RSA, ES256 for P-256.
    algorithm: Algorithm,
    key: DecodingKey,
}

/// The issuer's keys and the mapping of its claims. Shared by every request; the keys are
/// replaced whole by [`reload`](Self::reload).
pub struct JwtVerifier {
    settings: JwtSettings,
    /// Read by every JWT request, written once per reload: the lock is held for the copy of one
    /// `Arc`, never during a verification.
    keys: RwLock<Arc<Vec<VerifyingKey>>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("settings", &self.settings)
            .field("keys", &self.current_keys().len())
            .finish()
    }
}

impl JwtVerifier {
    /// Reads the JWKS file. Blocking (one small file read). Keys the hub cannot verify with are
    /// skipped with a warning; a file with none left is refused.
    pub fn load(settings: JwtSettings) -> Result<JwtVerifier, JwksError> {
        let keys = read_key_set(&settings.jwks_file)?;
        Ok(JwtVerifier {
            settings,
            keys: RwLock::new(Arc::new(keys)),
        })
    }

    /// Reads the JWKS file again and, when it is usable, verifies with its keys from now on;
    /// returns how many keys it holds. When it is not, the keys in use stay (a half-written
    /// file must not lock every JWT caller out) and the error says why.
    pub fn reload(&self) -> Result<usize, JwksError> {
        let keys = read_key_set(&self.settings.jwks_file)?;
        let count = keys.len();
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        Ok(count)
    }

    pub fn settings(&self) -> &JwtSettings {
        &self.settings
    }

    /// Verifies `token` at `now` (see the module's list of checks) and maps its claims.
    pub fn verify(&self, token: &str, now: Millis) -> Result<JwtIdentity, JwtRejection> {
        if token.len() > MAX_JWT_BYTES || !looks_like_jwt(token) {
            return Err(JwtRejection::Invalid {
                why: "not a compact JWT of three base64url parts within the size limit",
            });
        }
        // Unchecked, but only to pick the key: `decode` below checks the header again.
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtRejection::Invalid {
            why: "the header does not parse or names an algorithm that does not exist (such as none)",
        })?;
        let keys = self.current_keys();
        let key = pick_key(&keys, header.kid.as_deref(), header.alg)?;
        if key.algorithm != header.alg {
            return Err(JwtRejection::Invalid {
                why: "the header's alg is not the algorithm of the key it names",
            });
        }
        let claims = jsonwebtoken::decode::<Map<String, Value>>(
            token,
            &key.key,
            &self.validation(key.algorithm),
        )
        .map_err(|err| rejection(err.kind()))?
        .claims;
        self.identity(&claims, now)
    }

    /// The library checks the algorithm, the signature, `iss` and `aud`, and that `exp` is a
    /// number. Time is checked by [`identity`](Self::identity) against the hub's clock, which
    /// tests control.
    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[self.settings.issuer.as_str()]);
        let mut required = vec!["exp", "iss"];
        match &self.settings.audience {
            Some(audience) => {
                validation.set_audience(&[audience.as_str()]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation
    }

    /// Checks `exp` and `nbf` at `now` and maps the configured claims of a token whose
    /// signature, issuer and audience hold.
    fn identity(
        &self,
        claims: &Map<String, Value>,
        now: Millis,
    ) -> Result<JwtIdentity, JwtRejection> {
        let leeway = i64::try_from(LEEWAY.as_millis()).unwrap_or(i64::MAX);
        let exp = claims
            .get("exp")
            .and_then(numeric_date)
            .ok_or(JwtRejection::NoExpiry)?;
        let expires_at = Millis(exp.0.saturating_add(leeway));
        if expires_at <= now {
            return Err(JwtRejection::Expired);
        }
        match claims.get("nbf") {
            None => {}
            Some(value) => {
                let nbf = numeric_date(value)
                    .ok_or_else(|| bad_claim("nbf", "is not a number of seconds"))?;
                if nbf.0.saturating_sub(leeway) > now.0 {
                    return Err(JwtRejection::NotYetValid);
                }
            }
        }
        Ok(JwtIdentity {
            name: self.name(claims)?,
            roles: self.roles(claims),
            tenant: self.tenant(claims)?,
            expires_at,
        })
    }

    fn name(&self, claims: &Map<String, Value>) -> Result<String, JwtRejection> {
        let claim = &self.settings.name_claim;
        let name = match claims.get(claim) {
            None => return Err(bad_claim(claim, "is missing")),
            Some(Value::String(name)) => name,
            Some(_) => return Err(bad_claim(claim, "is not a string")),
        };
        if name.is_empty() {
            return Err(bad_claim(claim, "is empty"));
        }
        if name.chars().count() > MAX_NAME_CHARS {
            // The number is MAX_NAME_CHARS, which a test keeps it equal to.
            return Err(bad_claim(claim, "is longer than 256 characters"));
        }
        // It ends up in history and logs, which a newline or an escape would garble.
        if name.chars().any(char::is_control) {
            return Err(bad_claim(claim, "contains a control character"));
        }
        Ok(name.clone())
    }

    /// The known roles the roles claim names. Unknown names are skipped, as a stored API
    /// token's are: an issuer's own roles for other applications often share the claim. A
    /// missing or malformed claim names no role, which allows nothing (403 on every route).
    fn roles(&self, claims: &Map<String, Value>) -> Vec<Role> {
        let names: Vec<&str> = match claims.get(&self.settings.roles_claim) {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            // Some issuers flatten a one-element array into its element.
            Some(Value::String(name)) => vec![name.as_str()],
            _ => Vec::new(),
        };
        let mut roles: Vec<Role> = names.iter().filter_map(|name| name.parse().ok()).collect();
        roles.sort_unstable();
        roles.dedup();
        roles
    }

    fn tenant(&self, claims: &Map<String, Value>) -> Result<TenantScope, JwtRejection> {
        let claim = &self.settings.tenant_claim;
        match claims.get(claim) {
            None => Err(bad_claim(
                claim,
                "is missing; it names a tenant id, or * for every tenant",
            )),
            Some(Value::String(tenant)) if tenant == ALL_TENANTS => Ok(TenantScope::All),
            Some(Value::String(tenant)) => TenantId::new(tenant.as_str())
                .map(TenantScope::Tenant)
                .map_err(|_| bad_claim(claim, "is not a valid tenant id")),
            Some(_) => Err(bad_claim(claim, "is not a string")),
        }
    }

    fn current_keys(&self) -> Arc<Vec<VerifyingKey>> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Whether `bearer` has the form of a compact JWT: three parts of base64url characters
/// separated by dots, the first two not empty (an unsigned token's third part is, and it is
/// then refused as a JWT rather than looked up as an API token). API token secrets never
/// contain a dot.
pub fn looks_like_jwt(bearer: &str) -> bool {
    let base64url = |part: &str| {
        part.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let mut parts = bearer.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(payload), Some(signature), None) => {
            !header.is_empty()
                && !payload.is_empty()
                && base64url(header)
                && base64url(payload)
                && base64url(signature)
        }
        _ => false,
    }
}

/// The key a token's header names: by `kid`, or, without one, the only key of its `alg`.
fn pick_key<'a>(
    keys: &'a [VerifyingKey],
    kid: Option<&str>,
    algorithm: Algorithm,
) -> Result<&'a VerifyingKey, JwtRejection> {
    if let Some(kid) = kid {
        return keys
            .iter()
            .find(|key| key.kid.as_deref() == Some(kid))
            .ok_or(JwtRejection::Invalid {
                why: "no key of the JWKS has the header's kid",
            });
    }
    let mut candidates = keys.iter().filter(|key| key.algorithm == algorithm);
    match (candidates.next(), candidates.next()) {
        (Some(key), None) => Ok(key),
        (None, _) => Err(JwtRejection::Invalid {
            why: "the header names no kid and no key of the JWKS is of its alg",
        }),
        // Trying each would let one request cost several signature checks.
        (Some(_), Some(_)) => Err(JwtRejection::Invalid {
            why: "the header names no kid and the JWKS has several keys of its alg",
        }),
    }
}

/// What a refusal of the library means to the caller.
fn rejection(kind: &jsonwebtoken::errors::ErrorKind) -> JwtRejection {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::InvalidIssuer => JwtRejection::WrongIssuer,
        ErrorKind::InvalidAudience => JwtRejection::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) | ErrorKind::InvalidClaimFormat(claim) => {
            match claim.as_str() {
                "iss" => JwtRejection::WrongIssuer,
                "aud" => JwtRejection::WrongAudience,
                "exp" => JwtRejection::NoExpiry,
                _ => JwtRejection::Invalid {
                    why: "a registered claim is malformed",
                },
            }
        }
        ErrorKind::InvalidSignature => JwtRejection::Invalid {
            why: "the signature does not hold",
        },
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => JwtRejection::Invalid {
            why: "the header's alg is not the algorithm of the key",
        },
        _ => JwtRejection::Invalid {
            why: "the token does not decode, or its key cannot verify it",
        },
    }
}

fn bad_claim(claim: &str, problem: &'static str) -> JwtRejection {
    JwtRejection::BadClaim {
        claim: claim.chars().take(64).collect(),
        problem,
    }
}

/// A NumericDate (seconds since the epoch, possibly with a fraction) as an instant.
fn numeric_date(value: &Value) -> Option<Millis> {
    let seconds = value.as_f64()?;
    // Beyond about 292 million years either way, milliseconds leave i64.
    const LIMIT: f64 = 9.2e15;
    (seconds.is_finite() && seconds.abs() < LIMIT).then_some(Millis((seconds * 1000.0) as i64))
}

/// The usable keys of a JWKS file; each unusable one is skipped with a warning saying why.
fn read_key_set(file: &Path) -> Result<Vec<VerifyingKey>, JwksError> {
    let unreadable = |err: std::io::Error| JwksError::Unreadable {
        file: file.to_owned(),
        reason: err.to_string(),
    };
    let size = std::fs::metadata(file).map_err(unreadable)?.len();
    if size > MAX_JWKS_BYTES {
        return Err(JwksError::TooLarge {
            file: file.to_owned(),
        });
    }
    let bytes = std::fs::read(file).map_err(unreadable)?;
    let not_jwks = |reason: String| JwksError::NotJwks {
        file: file.to_owned(),
        reason,
    };
    // Keys one by one, so that a key of a kind this version cannot even parse is skipped
    // rather than failing the whole set: issuers publish keys for other uses beside ours.
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<Value>,
    }
    let document: Document =
        serde_json::from_slice(&bytes).map_err(|err| not_jwks(err.to_string()))?;
    let mut keys: Vec<VerifyingKey> = Vec::with_capacity(document.keys.len());
    let mut skipped = Vec::new();
    for (index, value) in document.keys.into_iter().enumerate() {
        let kid = value.get("kid").and_then(Value::as_str).map(str::to_owned);
        let usable = serde_json::from_value::<Jwk>(value)
            .map_err(|_| "it is not a JWK this version can read".to_owned())
            .and_then(|jwk| verifying_key(&jwk))
            .and_then(|key| {
                if key.kid.is_some() && keys.iter().any(|other| other.kid == key.kid) {
                    Err("an earlier key of the set has the same kid".to_owned())
                } else {
                    Ok(key)
                }
            });
        match usable {
            Ok(key) => keys.push(key),
            Err(reason) => skipped.push(match kid {
                Some(kid) => format!("key {index} (kid {kid:?}): {reason}"),
                None => format!("key {index}: {reason}"),
            }),
        }
    }
    if keys.is_empty() {
        return Err(JwksError::NoUsableKey {
            file: file.to_owned(),
            skipped,
        });
    }
    for reason in skipped {
        tracing::warn!(file = %file.display(), "skipped {reason}");
    }
    Ok(keys)
}

/// The reasons keys were skipped, for the one-line error of a set without a usable key.
fn skipped_list(skipped: &[String]) -> String {
    if skipped.is_empty() {
        " (it lists no key)".to_owned()
    } else {
        format!(" (skipped {})", skipped.join("; "))
    }
}

/// The key `jwk` describes, if the hub can verify signatures with it: an RSA key of at least
/// [`MIN_RSA_BITS`] for RS256, or a P-256 key for ES256, meant for signatures.
fn verifying_key(jwk: &Jwk) -> Result<VerifyingKey, String> {
    if let Some(usage) = &jwk.common.public_key_use
        && *usage != PublicKeyUse::Signature
    {
        return Err("its use is not sig".to_owned());
    }
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let modulus = decode_base64url(&rsa.n).ok_or("its n is not base64url")?;
            let leading_zeros = modulus.iter().take_while(|byte| **byte == 0).count();
            let bits = (modulus.len() - leading_zeros) * 8;
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "its modulus has about {bits} bits, fewer than {MIN_RSA_BITS}"
                ));
            }
            Algorithm::RS256
        }
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            let coordinate = |text: &str| decode_base64url(text).is_some_and(|c| c.len() == 32);
            if !coordinate(&ec.x) || !coordinate(&ec.y) {
                return Err("its x and y are not 32 bytes of base64url each".to_owned());
            }
            Algorithm::ES256
        }
        AlgorithmParameters::EllipticCurve(_) => {
            return Err("its curve is not P-256".to_owned());
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("it is a shared secret (kty oct); HMAC tokens are refused".to_owned());
        }
        _ => return Err("its key type is neither RSA nor EC".to_owned()),
    };
    if let Some(declared) = jwk.common.key_algorithm
        && declared != KeyAlgorithm::from(algorithm)
    {
        return Err(format!(
            "it is declared for {declared}; Doppel verifies {algorithm:?} with this key type"
        ));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|err| format!("it does not load: {err}"))?;
    Ok(VerifyingKey {
        kid: jwk.common.key_id.clone(),
        algorithm,
        key,
    })
}

fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}

#[cfg(test)]
mod tests;
