use super::*;
use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;
use std::sync::OnceLock;

const ISSUER: &str = "https://id.example.com/";
const NOW: Millis = Millis(1_700_000_000_000);
/// `NOW` in the seconds of a NumericDate.
const NOW_S: i64 = NOW.0 / 1000;
const LEEWAY_S: i64 = LEEWAY.as_secs() as i64;

/// A signing key and the public JWK a JWKS lists it as.
struct SigningKey {
    algorithm: Algorithm,
    kid: &'static str,
    key: EncodingKey,
    jwk: Value,
}

/// Keys made once for every test of this file: an RSA key making them is the slow part.
struct TestKeys {
    rsa: SigningKey,
    ec: SigningKey,
    /// In no JWKS unless a test puts it there.
    other_rsa: SigningKey,
}

fn keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(|| TestKeys {
        rsa: signing_key(Algorithm::RS256, "rsa-1"),
        ec: signing_key(Algorithm::ES256, "ec-1"),
        other_rsa: signing_key(Algorithm::RS256, "rsa-2"),
    })
}

/// A new private key made by the `openssl` command (PKCS#8 PEM), and its JWK.
fn signing_key(algorithm: Algorithm, kid: &'static str) -> SigningKey {
    let parameters: &[&str] = match algorithm {
        Algorithm::RS256 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        Algorithm::ES256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        other => panic!("no test keys for {other:?}"),
    };
    let output = std::process::Command::new("openssl")
        .arg("genpkey")
        .args(parameters)
        .output()
        .expect("run openssl genpkey");
    assert!(output.status.success(), "openssl genpkey failed");
    let key = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&output.stdout),
        _ => EncodingKey::from_ec_pem(&output.stdout),
    }
    .expect("a PEM private key");
    let mut jwk = Jwk::from_encoding_key(&key, algorithm).expect("a JWK of the key");
    jwk.common.key_id = Some(kid.to_owned());
    SigningKey {
        algorithm,
        kid,
        key,
        jwk: serde_json::to_value(jwk).expect("JWK as JSON"),
    }
}

/// A JWKS file of `keys` (JWK values) in its own folder; the folder lives as long as the file
/// is needed.
fn jwks_file(keys: &[&Value]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("jwks.json");
    write_jwks(&file, keys);
    (dir, file)
}

fn write_jwks(file: &Path, keys: &[&Value]) {
    std::fs::write(file, json!({ "keys": keys }).to_string()).expect("write the JWKS");
}

fn settings(file: &Path) -> JwtSettings {
    JwtSettings {
        issuer: ISSUER.to_owned(),
        audience: None,
        jwks_file: file.to_owned(),
        tenant_claim: DEFAULT_TENANT_CLAIM.to_owned(),
        roles_claim: DEFAULT_ROLES_CLAIM.to_owned(),
        name_claim: DEFAULT_NAME_CLAIM.to_owned(),
    }
}

/// A verifier trusting the RSA and the EC test key.
fn verifier() -> (tempfile::TempDir, JwtVerifier) {
    verifier_with(|_| {})
}

fn verifier_with(adjust: impl FnOnce(&mut JwtSettings)) -> (tempfile::TempDir, JwtVerifier) {
    let (dir, file) = jwks_file(&[&keys().rsa.jwk, &keys().ec.jwk]);
    let mut settings = settings(&file);
    adjust(&mut settings);
    (dir, JwtVerifier::load(settings).expect("the JWKS loads"))
}

/// Claims that verify at `NOW`: an app-read caller of tenant acme.
fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "sub": "alice",
        "tenant": "acme",
        "roles": ["app-read"],
        "exp": NOW_S + 300,
    })
}

/// `claims` signed by `key`, naming it by its kid.
fn sign(key: &SigningKey, claims: &Value) -> String {
    let mut header = Header::new(key.algorithm);
    header.kid = Some(key.kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key.key).expect("sign the test token")
}

/// A token of `header` and `claims` with `signature` (already base64url).
fn forge(header: &Value, claims: &Value, signature: &str) -> String {
    let encode = |value: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string().as_bytes())
    };
    format!("{}.{}.{signature}", encode(header), encode(claims))
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().expect("an object").remove(name);
    claims
}

fn is_invalid(result: Result<JwtIdentity, JwtRejection>) -> bool {
    matches!(result, Err(JwtRejection::Invalid { .. }))
}

#[test]
fn a_token_of_either_key_maps_its_claims_to_an_identity() {
    let (_dir, verifier) = verifier();
    let claims = with(
        claims(),
        "roles",
        json!(["app-write", "viewer", "app-read", "app-write", 7]),
    );
    for key in [&keys().rsa, &keys().ec] {
        let identity = verifier
            .verify(&sign(key, &claims), NOW)
            .unwrap_or_else(|err| panic!("{:?}: {err:?}", key.algorithm));
        assert_eq!(
            identity,
            JwtIdentity {
                name: "alice".into(),
                roles: vec![Role::AppWrite, Role::AppRead],
                tenant: TenantScope::Tenant(TenantId::new("acme").unwrap()),
                expires_at: Millis((NOW_S + 300 + LEEWAY_S) * 1000),
            },
            "unknown role names and non-strings are skipped, duplicates dropped"
        );
    }
}

#[test]
fn every_tenant_and_roles_in_other_shapes_map_as_for_api_tokens() {
    let (_dir, verifier) = verifier();
    let rsa = &keys().rsa;
    let all = verifier
        .verify(&sign(rsa, &with(claims(), "tenant", json!("*"))), NOW)
        .unwrap();
    assert_eq!(all.tenant, TenantScope::All);
    for (roles, expected) in [
        (json!("admin"), vec![Role::Admin]),
        (json!(["viewer", "Admin"]), vec![]),
        (json!({"admin": true}), vec![]),
        (json!(null), vec![]),
    ] {
        let identity = verifier
            .verify(&sign(rsa, &with(claims(), "roles", roles.clone())), NOW)
            .unwrap();
        assert_eq!(identity.roles, expected, "{roles}");
    }
    let identity = verifier
        .verify(&sign(rsa, &without(claims(), "roles")), NOW)
        .unwrap();
    assert!(
        identity.roles.is_empty(),
        "no roles claim grants nothing, rather than failing the token"
    );
}

#[test]
fn configured_claims_are_the_ones_read() {
    let (_dir, verifier) = verifier_with(|settings| {
        settings.tenant_claim = "org".into();
        settings.roles_claim = "https://doppel.example/roles".into();
        settings.name_claim = "email".into();
    });
    let claims = json!({
        "iss": ISSUER,
        "sub": "0f3c",
        "email": "bob@example.com",
        "org": "acme",
        "tenant": "*",
        "https://doppel.example/roles": ["operator"],
        "roles": ["admin"],
        "exp": NOW_S + 60,
    });
    let identity = verifier.verify(&sign(&keys().ec, &claims), NOW).unwrap();
    assert_eq!(identity.name, "bob@example.com");
    assert_eq!(identity.roles, vec![Role::Operator]);
    assert_eq!(
        identity.tenant,
        TenantScope::Tenant(TenantId::new("acme").unwrap())
    );
}

#[test]
fn expiry_is_required_and_both_instants_are_checked_with_the_leeway() {
    let (_dir, verifier) = verifier();
    let rsa = &keys().rsa;
    let at = |exp: i64| sign(rsa, &with(claims(), "exp", json!(exp)));
    assert!(
        verifier.verify(&at(NOW_S - LEEWAY_S + 1), NOW).is_ok(),
        "within the leeway"
    );
    assert_eq!(
        verifier.verify(&at(NOW_S - LEEWAY_S), NOW),
        Err(JwtRejection::Expired)
    );
    let fractional = sign(rsa, &with(claims(), "exp", json!(NOW_S as f64 + 0.5)));
    assert_eq!(
        verifier.verify(&fractional, NOW).unwrap().expires_at,
        Millis((NOW_S + LEEWAY_S) * 1000 + 500)
    );
    assert_eq!(
        verifier.verify(&sign(rsa, &without(claims(), "exp")), NOW),
        Err(JwtRejection::NoExpiry)
    );
    assert_eq!(
        verifier.verify(&sign(rsa, &with(claims(), "exp", json!("tomorrow"))), NOW),
        Err(JwtRejection::NoExpiry)
    );
    let from = |nbf: Value| sign(rsa, &with(claims(), "nbf", nbf));
    assert!(verifier.verify(&from(json!(NOW_S + LEEWAY_S)), NOW).is_ok());
    assert_eq!(
        verifier.verify(&from(json!(NOW_S + LEEWAY_S + 1)), NOW),
        Err(JwtRejection::NotYetValid)
    );
    assert!(matches!(
        verifier.verify(&from(json!("now")), NOW),
        Err(JwtRejection::BadClaim { claim, .. }) if claim == "nbf"
    ));
}

#[test]
fn the_issuer_must_match_and_the_audience_when_one_is_configured() {
    let (_dir, verifier) = verifier();
    let rsa = &keys().rsa;
    for claims in [
        with(claims(), "iss", json!("https://id.example.com")),
        with(claims(), "iss", json!(7)),
        without(claims(), "iss"),
    ] {
        assert_eq!(
            verifier.verify(&sign(rsa, &claims), NOW),
            Err(JwtRejection::WrongIssuer),
            "{claims}"
        );
    }
    assert!(
        verifier
            .verify(&sign(rsa, &with(claims(), "aud", json!("anyone"))), NOW)
            .is_ok(),
        "without a configured audience, aud is not looked at"
    );
    let (_dir, verifier) = verifier_with(|settings| settings.audience = Some("doppel".into()));
    for aud in [json!("doppel"), json!(["grafana", "doppel"])] {
        assert!(
            verifier
                .verify(&sign(rsa, &with(claims(), "aud", aud.clone())), NOW)
                .is_ok(),
            "{aud}"
        );
    }
    for claims in [
        with(claims(), "aud", json!("grafana")),
        with(claims(), "aud", json!(["grafana"])),
        claims(),
    ] {
        assert_eq!(
            verifier.verify(&sign(rsa, &claims), NOW),
            Err(JwtRejection::WrongAudience),
            "{claims}"
        );
    }
}

#[test]
fn unsigned_hmac_foreign_and_tampered_tokens_are_invalid_and_say_no_more() {
    let (_dir, verifier) = verifier();
    let TestKeys { rsa, ec, other_rsa } = keys();
    let none = forge(&json!({"alg": "none", "typ": "JWT"}), &claims(), "");
    assert!(is_invalid(verifier.verify(&none, NOW)), "alg none");
    let none_with_kid = forge(&json!({"alg": "none", "kid": rsa.kid}), &claims(), "");
    assert!(is_invalid(verifier.verify(&none_with_kid, NOW)));
    let secret = EncodingKey::from_secret(b"a shared secret of the test").unwrap();
    let hmac = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(), &secret).unwrap();
    assert!(is_invalid(verifier.verify(&hmac, NOW)), "HS256 without kid");
    // The classic confusion: HMAC keyed with the RSA key's public modulus, naming that key.
    let modulus = decode_base64url(rsa.jwk["n"].as_str().unwrap()).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(rsa.kid.to_owned());
    let confused = jsonwebtoken::encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(&modulus).unwrap(),
    )
    .unwrap();
    assert!(
        is_invalid(verifier.verify(&confused, NOW)),
        "HS256 naming an RSA key"
    );
    // Signed by the RSA key, but naming the EC key: the algorithm is not that key's.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(ec.kid.to_owned());
    let mismatched = jsonwebtoken::encode(&header, &claims(), &rsa.key).unwrap();
    assert!(
        is_invalid(verifier.verify(&mismatched, NOW)),
        "RS256 naming an EC key"
    );
    assert!(
        is_invalid(verifier.verify(&sign(other_rsa, &claims()), NOW)),
        "a key outside the JWKS"
    );
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(rsa.kid.to_owned());
    let by_other_key = jsonwebtoken::encode(&header, &claims(), &other_rsa.key).unwrap();
    assert!(
        is_invalid(verifier.verify(&by_other_key, NOW)),
        "another key's signature under a known kid"
    );
    let genuine = sign(rsa, &claims());
    let (signed, signature) = genuine.rsplit_once('.').unwrap();
    let (header_part, _) = signed.split_once('.').unwrap();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(with(claims(), "roles", json!(["admin"])).to_string());
    let tampered = format!("{header_part}.{payload}.{signature}");
    assert!(
        is_invalid(verifier.verify(&tampered, NOW)),
        "a changed payload"
    );
    let oversized = format!("{genuine}{}", "A".repeat(MAX_JWT_BYTES));
    assert!(is_invalid(verifier.verify(&oversized, NOW)));
    // Only the signature check's outcome is told, whatever the reason.
    let refusal = verifier.verify(&confused, NOW).unwrap_err();
    assert_eq!(refusal.to_string(), "invalid token");
    // An expired token signed by nobody trusted is invalid, not expired.
    let expired_foreign = sign(other_rsa, &with(claims(), "exp", json!(NOW_S - 3600)));
    assert!(is_invalid(verifier.verify(&expired_foreign, NOW)));
}

#[test]
fn a_token_without_kid_takes_the_only_key_of_its_algorithm() {
    let (_dir, verifier) = verifier();
    let TestKeys { rsa, ec, other_rsa } = keys();
    for key in [rsa, ec] {
        let token = jsonwebtoken::encode(&Header::new(key.algorithm), &claims(), &key.key).unwrap();
        assert!(verifier.verify(&token, NOW).is_ok(), "{:?}", key.algorithm);
    }
    let (_dir, file) = jwks_file(&[&rsa.jwk, &other_rsa.jwk]);
    let verifier = JwtVerifier::load(settings(&file)).unwrap();
    let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims(), &rsa.key).unwrap();
    assert!(
        is_invalid(verifier.verify(&token, NOW)),
        "with two RSA keys, the token must say which"
    );
    assert!(verifier.verify(&sign(rsa, &claims()), NOW).is_ok());
}

#[test]
fn claims_that_cannot_name_a_caller_or_a_tenant_are_refused_by_name() {
    let (_dir, verifier) = verifier();
    let rsa = &keys().rsa;
    for (claims, claim) in [
        (without(claims(), "sub"), "sub"),
        (with(claims(), "sub", json!(42)), "sub"),
        (with(claims(), "sub", json!("")), "sub"),
        (with(claims(), "sub", json!("alice\nmallory")), "sub"),
        (
            with(claims(), "sub", json!("a".repeat(MAX_NAME_CHARS + 1))),
            "sub",
        ),
        (without(claims(), "tenant"), "tenant"),
        (with(claims(), "tenant", json!("not a tenant")), "tenant"),
        (with(claims(), "tenant", json!(["acme"])), "tenant"),
    ] {
        match verifier.verify(&sign(rsa, &claims), NOW) {
            Err(refusal @ JwtRejection::BadClaim { .. }) => {
                assert!(
                    refusal.to_string().contains(&format!("{claim:?} claim")),
                    "{refusal}"
                );
            }
            other => panic!("{claims}: {other:?}"),
        }
    }
    let too_long = with(claims(), "sub", json!("a".repeat(MAX_NAME_CHARS + 1)));
    let refusal = verifier.verify(&sign(rsa, &too_long), NOW).unwrap_err();
    assert!(
        refusal
            .to_string()
            .contains(&format!("longer than {MAX_NAME_CHARS} ")),
        "{refusal}"
    );
    let longest = with(claims(), "sub", json!("é".repeat(MAX_NAME_CHARS)));
    assert!(verifier.verify(&sign(rsa, &longest), NOW).is_ok());
}

#[test]
fn jwts_are_told_from_api_tokens_by_their_form() {
    for jwt in ["eyJh.eyJz.c2ln", "a-_b.c.", "A.B.C"] {
        assert!(looks_like_jwt(jwt), "{jwt}");
    }
    for other in [
        "dpt_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq",
        "a.b",
        "a.b.c.d",
        ".b.c",
        "a..c",
        "a.b.c d",
        "a.b+.c",
        "a.b.c=",
        "",
    ] {
        assert!(!looks_like_jwt(other), "{other:?}");
    }
}

#[test]
fn keys_the_hub_cannot_verify_with_are_skipped_and_a_set_without_any_is_refused() {
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let rsa = &keys().rsa.jwk;
    let unusable = [
        json!({"kty": "oct", "kid": "shared", "k": encode(b"a shared secret")}),
        with(rsa.clone(), "use", json!("enc")),
        with(rsa.clone(), "alg", json!("RS384")),
        json!({"kty": "RSA", "kid": "weak", "n": encode(&[0xff; 128]), "e": "AQAB"}),
        json!({"kty": "EC", "kid": "p384", "crv": "P-384", "x": encode(&[1; 48]), "y": encode(&[2; 48])}),
        json!({"kty": "EC", "kid": "short", "crv": "P-256", "x": encode(&[1; 31]), "y": encode(&[2; 32])}),
        json!({"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": encode(&[1; 32])}),
        json!({"kty": "RSA", "kid": "broken"}),
        json!({"kty": "RSA", "alg": "RS999", "n": "AQAB", "e": "AQAB"}),
        json!("not an object"),
    ];
    let (_dir, file) = jwks_file(&unusable.iter().collect::<Vec<_>>());
    match JwtVerifier::load(settings(&file)) {
        Err(err @ JwksError::NoUsableKey { .. }) => {
            let JwksError::NoUsableKey { skipped, .. } = &err else {
                unreachable!()
            };
            assert_eq!(skipped.len(), unusable.len(), "{err}");
            let message = err.to_string();
            assert!(
                message.contains("key 0 (kid \"shared\"): it is a shared secret"),
                "each key's reason is told: {message}"
            );
            assert_eq!(message.lines().count(), 1);
        }
        other => panic!("{other:?}"),
    }
    let mut mixed: Vec<&Value> = unusable.iter().collect();
    mixed.push(rsa);
    // A second key of the same kid is skipped: which one a token means would be a guess.
    let impostor = with(keys().other_rsa.jwk.clone(), "kid", json!(keys().rsa.kid));
    mixed.push(&impostor);
    let (_dir, file) = jwks_file(&mixed);
    let verifier = JwtVerifier::load(settings(&file)).expect("the usable key loads");
    assert_eq!(verifier.current_keys().len(), 1);
    assert!(verifier.verify(&sign(&keys().rsa, &claims()), NOW).is_ok());
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(keys().rsa.kid.to_owned());
    let by_impostor = jsonwebtoken::encode(&header, &claims(), &keys().other_rsa.key).unwrap();
    assert!(is_invalid(verifier.verify(&by_impostor, NOW)));
}

#[test]
fn unreadable_and_malformed_files_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let err = JwtVerifier::load(settings(&missing)).unwrap_err();
    assert!(matches!(err, JwksError::Unreadable { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.json"), "{err}");
    for (text, what) in [
        ("{\"keys\": [", "truncated JSON"),
        ("[]", "not an object"),
        ("{\"keys\": {}}", "keys not an array"),
    ] {
        let file = dir.path().join("bad.json");
        std::fs::write(&file, text).unwrap();
        let err = JwtVerifier::load(settings(&file)).unwrap_err();
        assert!(matches!(err, JwksError::NotJwks { .. }), "{what}: {err:?}");
        assert!(err.to_string().contains("bad.json"), "{err}");
    }
    let file = dir.path().join("empty.json");
    std::fs::write(&file, "{\"keys\": []}").unwrap();
    assert!(matches!(
        JwtVerifier::load(settings(&file)),
        Err(JwksError::NoUsableKey { skipped, .. }) if skipped.is_empty()
    ));
    let file = dir.path().join("huge.json");
    std::fs::write(&file, vec![b' '; MAX_JWKS_BYTES as usize + 1]).unwrap();
    assert!(matches!(
        JwtVerifier::load(settings(&file)),
        Err(JwksError::TooLarge { .. })
    ));
}

#[test]
fn a_reload_swaps_the_keys_and_a_bad_file_keeps_those_in_use() {
    let TestKeys { rsa, other_rsa, .. } = keys();
    let (_dir, file) = jwks_file(&[&rsa.jwk]);
    let verifier = JwtVerifier::load(settings(&file)).unwrap();
    assert!(is_invalid(
        verifier.verify(&sign(other_rsa, &claims()), NOW)
    ));
    write_jwks(&file, &[&other_rsa.jwk]);
    assert_eq!(verifier.reload().unwrap(), 1);
    assert!(verifier.verify(&sign(other_rsa, &claims()), NOW).is_ok());
    assert!(
        is_invalid(verifier.verify(&sign(rsa, &claims()), NOW)),
        "the key no longer listed no longer verifies"
    );
    std::fs::write(&file, "{\"keys\": [").unwrap();
    assert!(verifier.reload().is_err());
    assert!(
        verifier.verify(&sign(other_rsa, &claims()), NOW).is_ok(),
        "a half-written file changes nothing"
    );
}
