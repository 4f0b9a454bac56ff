//! A test identity provider for the JWT tests: signing keys made with the `openssl` command
//! (which scripts/test installs), the JWKS file the hub reads, and tokens signed with the keys.

use super::process::{assert_success, run};
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use tokio::process::Command;

/// The issuer every test hub trusts (`--http-jwt-issuer`).
pub const ISSUER: &str = "https://id.example.test/realms/doppel";
/// The audience every test hub requires (`--http-jwt-audience`).
pub const AUDIENCE: &str = "doppel-hub";

/// A private key of the identity provider and the public JWK its key set lists.
pub struct IdpKey {
    pub kid: String,
    algorithm: Algorithm,
    key: EncodingKey,
    jwk: Value,
}

impl IdpKey {
    /// A new 2048-bit RSA key, for RS256.
    pub async fn rsa(kid: &str) -> IdpKey {
        Self::generate(
            Algorithm::RS256,
            kid,
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        )
        .await
    }

    /// A new P-256 key, for ES256.
    pub async fn ec(kid: &str) -> IdpKey {
        Self::generate(
            Algorithm::ES256,
            kid,
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        )
        .await
    }

    async fn generate(algorithm: Algorithm, kid: &str, parameters: &[&str]) -> IdpKey {
        let mut command = Command::new("openssl");
        command.arg("genpkey").args(parameters);
        let output = run("openssl genpkey", command).await;
        assert_success("openssl genpkey", &output);
        let key = match algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&output.stdout),
            _ => EncodingKey::from_ec_pem(&output.stdout),
        }
        .expect("openssl writes a PEM private key");
        let mut jwk = Jwk::from_encoding_key(&key, algorithm).expect("the key's JWK");
        jwk.common.key_id = Some(kid.to_owned());
        IdpKey {
            kid: kid.to_owned(),
            algorithm,
            key,
            jwk: serde_json::to_value(jwk).expect("a JWK as JSON"),
        }
    }

    /// `claims` signed with this key, naming it by its `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_naming(&self.kid, claims)
    }

    /// `claims` signed with this key, but naming the key `kid` (another key's, say).
    pub fn sign_naming(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.key).expect("sign a test token")
    }
}

/// Writes a JWKS document listing `keys` to `file`.
pub fn write_jwks(file: &Path, keys: &[&IdpKey]) {
    let keys: Vec<&Value> = keys.iter().map(|key| &key.jwk).collect();
    std::fs::write(file, json!({ "keys": keys }).to_string()).expect("write the JWKS file");
}

/// A JWKS file of `keys` in a temporary folder, which lives as long as the returned handle.
pub fn jwks_file(keys: &[&IdpKey]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a folder for the JWKS");
    let file = dir.path().join("jwks.json");
    write_jwks(&file, keys);
    (dir, file)
}

/// The flags that make a hub trust [`ISSUER`]'s keys in `jwks` for [`AUDIENCE`].
pub fn hub_flags(jwks: &Path) -> Vec<String> {
    [
        "--http-jwt-issuer",
        ISSUER,
        "--http-jwt-audience",
        AUDIENCE,
        "--http-jwt-jwks-file",
        jwks.to_str().expect("a UTF-8 path"),
    ]
    .iter()
    .map(|flag| (*flag).to_owned())
    .collect()
}

/// Claims a test hub accepts: `sub` acting as `role` in `tenant`, valid for an hour.
pub fn claims(sub: &str, role: &str, tenant: &str) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "tenant": tenant,
        "roles": [role],
        "iat": super::unix_seconds(),
        "exp": super::unix_seconds() + 3600,
    })
}

/// A token of `header` and `claims` with `signature` (base64url, possibly empty), as an
/// attacker would put one together.
pub fn forge(header: &Value, claims: &Value, signature: &str) -> String {
    let encode = |value: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string().as_bytes())
    };
    format!("{}.{}.{signature}", encode(header), encode(claims))
}

/// `claims` signed with HMAC-SHA256 under `secret`, naming `kid`.
pub fn sign_hs256(claims: &Value, secret: &[u8], kid: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    let key = EncodingKey::from_secret(secret).expect("an HMAC key");
    jsonwebtoken::encode(&header, claims, &key).expect("sign an HMAC token")
}
