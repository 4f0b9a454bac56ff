//! JWTs of an identity provider on the HTTP API, against the real binary with `http.jwt.*`:
//! RS256 and ES256 tokens act with the tenant and role their claims map to, beside the hub's
//! own API tokens; tokens that do not verify get 401; a write records the JWT's subject; a
//! stream ends when its JWT expires; SIGHUP reloads the key set; a bad key set stops the start.
//! Keys are made per test with the `openssl` command (see `common::idp`).

mod common;

use common::http::HttpClient;
use common::idp::{self, ISSUER, IdpKey, claims, forge, jwks_file, write_jwks};
use common::sse::SseClient;
use common::{
    Server, anonymous_http_client, eventually, http_client, http_client_with_token, unix_seconds,
};
use doppel_auth::jwt::LEEWAY;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
const TWINS: &str = "/v1/tenants/default/twins";

/// A hub that trusts [`ISSUER`]'s keys in `jwks`.
fn start(jwks: &Path) -> Server {
    let flags = idp::hub_flags(jwks);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::start_with(&flags)
}

/// `method path` with `token` as bearer (a JSON body for writes): the status and the problem
/// or answer body.
async fn call(server: &Server, method: &str, path: &str, token: &str) -> (StatusCode, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
    let http = HttpClient::with_client(server, anonymous_http_client());
    let mut request = http.request(method.clone(), path).bearer_auth(token);
    if method != reqwest::Method::GET {
        request = request.json(&json!({"speed": 3}));
    }
    let reply = http.send(request).await;
    if reply.status == StatusCode::UNAUTHORIZED {
        assert!(
            reply.headers.contains_key("www-authenticate"),
            "a 401 names the scheme"
        );
    }
    (reply.status, reply.json_or_null())
}

/// A desired-state write to pump-7 with `token` as bearer, through [`call`].
async fn patch_pump(server: &Server, token: &str) -> (StatusCode, Value) {
    call(server, "PATCH", &format!("{TWINS}/pump-7/desired"), token).await
}

#[tokio::test]
async fn jwts_of_either_key_act_with_the_tenant_and_role_their_claims_map_to() {
    let (rsa, ec) = (IdpKey::rsa("rsa-1").await, IdpKey::ec("ec-1").await);
    let (_jwks, file) = jwks_file(&[&rsa, &ec]);
    let server = start(&file);
    for key in [&rsa, &ec] {
        let reader = key.sign(&claims("grafana", "app-read", "default"));
        let (status, body) = call(&server, "GET", TWINS, &reader).await;
        assert_eq!(status, StatusCode::OK, "{} read: {body}", key.kid);
        let (status, body) = patch_pump(&server, &reader).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["code"], "forbidden");
        assert_eq!(body["required_role"], "app-write");
        let (status, body) = call(&server, "GET", "/v1/tenants/acme/twins", &reader).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["code"], "tenant_not_allowed");
        // Role names the hub does not know grant nothing.
        let unknown_role = key.sign(&claims("grafana", "viewer", "default"));
        let (status, body) = call(&server, "GET", TWINS, &unknown_role).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["code"], "forbidden");
        // A token for every tenant reaches another one.
        let everywhere = key.sign(&claims("ops", "app-read", "*"));
        let (status, body) = call(&server, "GET", "/v1/tenants/acme/twins", &everywhere).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // The hub's own tokens keep working beside JWTs.
    let listed = http_client()
        .get(server.url("/v1/tokens"))
        .send()
        .await
        .expect("GET /v1/tokens");
    assert_eq!(listed.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_write_records_the_jwt_subject_as_its_author() {
    let key = IdpKey::ec("ec-1").await;
    let (_jwks, file) = jwks_file(&[&key]);
    let server = start(&file);
    let writer = key.sign(&claims("alice@example.com", "app-write", "default"));
    let (status, body) = patch_pump(&server, &writer).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, history) = HttpClient::new(&server)
        .get(&format!("{TWINS}/pump-7/history"))
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert_eq!(
        history["items"][0]["changed_by"], "jwt:alice@example.com",
        "{history}"
    );
}

#[tokio::test]
async fn jwts_that_do_not_verify_are_refused_with_401() {
    let (rsa, ec) = (IdpKey::rsa("rsa-1").await, IdpKey::ec("ec-1").await);
    let stranger = IdpKey::rsa("rsa-2").await;
    let (_jwks, file) = jwks_file(&[&rsa, &ec]);
    // Every refusal below counts against the address: far more than it may send at the default.
    let mut flags = idp::hub_flags(&file);
    flags.extend([
        "--http-max-auth-failures-per-address".to_owned(),
        "1000".to_owned(),
    ]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::start_with(&flags);
    let good = claims("grafana", "admin", "*");
    let with = |name: &str, value: Value| {
        let mut claims = good.clone();
        claims[name] = value;
        claims
    };
    let past = unix_seconds() - LEEWAY.as_secs() as i64 - 60;
    let cases = [
        (
            "expired",
            rsa.sign(&with("exp", json!(past))),
            "invalid token: the JWT has expired",
        ),
        (
            "wrong issuer",
            ec.sign(&with("iss", json!("https://id.example.test/realms/other"))),
            "invalid token: the JWT's issuer (iss) is not the one this hub trusts",
        ),
        (
            "wrong audience",
            rsa.sign(&with("aud", json!("another-app"))),
            "invalid token: the JWT's audience (aud) does not name this hub",
        ),
        (
            "alg none",
            forge(&json!({"alg": "none", "typ": "JWT"}), &good, ""),
            "invalid token",
        ),
        (
            "alg none naming a key",
            forge(&json!({"alg": "none", "kid": rsa.kid}), &good, ""),
            "invalid token",
        ),
        (
            "HS256 under a secret",
            idp::sign_hs256(&good, b"a secret the attacker chose", &rsa.kid),
            "invalid token",
        ),
        (
            "a key not in the JWKS",
            stranger.sign(&good),
            "invalid token",
        ),
        (
            "a key not in the JWKS naming a listed kid",
            stranger.sign_naming(&rsa.kid, &good),
            "invalid token",
        ),
        (
            "an RSA signature naming the EC key",
            rsa.sign_naming(&ec.kid, &good),
            "invalid token",
        ),
    ];
    for (what, token, detail) in cases {
        for path in [TWINS, "/v1/tokens"] {
            let (status, body) = call(&server, "GET", path, &token).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} on {path}: {body}");
            assert_eq!(body["code"], "unauthorized", "{what}");
            assert_eq!(body["detail"], detail, "{what}");
        }
    }
    // What was refused changed nothing: the good token still reads an empty tenant.
    let (status, body) = call(&server, "GET", TWINS, &rsa.sign(&good)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"], json!([]), "{body}");
}

#[tokio::test]
async fn a_jwt_stream_and_long_poll_end_when_the_jwt_expires() {
    let key = IdpKey::rsa("rsa-1").await;
    let (_jwks, file) = jwks_file(&[&key]);
    let server = start(&file);
    // Expired already, but within the leeway for a few seconds more: the hub takes it now, and
    // its stream must end when the leeway runs out, not go on.
    let mut expiring = claims("gateway", "operator", "default");
    expiring["exp"] = json!(unix_seconds() - LEEWAY.as_secs() as i64 + 6);
    let token = key.sign(&expiring);
    let mut stream = SseClient::open_with(&http_client_with_token(&token), &server, "", None).await;
    let poll = common::spawn_long_poll(&server, token.clone());
    // The stream is live until then.
    let writer = http_client()
        .patch(server.url(&format!("{TWINS}/pump-1/desired")))
        .json(&json!({"speed": 2}))
        .send()
        .await
        .expect("PATCH desired");
    assert_eq!(writer.status(), StatusCode::OK);
    let event = stream.expect().await;
    assert_eq!(event.data["device_id"], "pump-1", "{event:?}");
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match stream.next().await {
                Some(event) if event.event == "error" => return event,
                Some(_) => {}
                None => panic!("the stream ended without saying why"),
            }
        }
    })
    .await
    .expect("the stream ended once the JWT expired");
    assert_eq!(ended.data["code"], "token_revoked", "{ended:?}");
    common::assert_long_poll_refused(poll, WAIT).await;
}

#[tokio::test]
async fn a_sighup_reloads_the_key_set_and_a_bad_one_keeps_the_keys_in_use() {
    let (old, new) = (IdpKey::rsa("2026-01").await, IdpKey::ec("2026-02").await);
    let (_jwks, file) = jwks_file(&[&old]);
    let flags = idp::hub_flags(&file);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (server, stderr) = Server::start_capturing_stderr(&flags);
    let status_of = |token: String| {
        let url = server.url(TWINS);
        async move {
            anonymous_http_client()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("GET twins")
                .status()
        }
    };
    let by_new = new.sign(&claims("grafana", "app-read", "default"));
    assert_eq!(status_of(by_new.clone()).await, StatusCode::UNAUTHORIZED);
    // The issuer rotates: the new key joins the set.
    write_jwks(&file, &[&old, &new]);
    server.hangup();
    eventually("a token of the new key to work", WAIT, || {
        let status = status_of(by_new.clone());
        async move { status.await == StatusCode::OK }
    })
    .await;
    // A half-written file: the reload fails and the keys in use stay.
    std::fs::write(&file, "{\"keys\": [").expect("write a broken JWKS");
    server.hangup();
    let line = common::log_line(&stderr, "cannot reload the JWKS", WAIT);
    assert!(line.contains("jwks.json"), "{line}");
    assert_eq!(status_of(by_new.clone()).await, StatusCode::OK);
    assert_eq!(
        status_of(old.sign(&claims("grafana", "app-read", "default"))).await,
        StatusCode::OK
    );
}

#[test]
fn a_bad_key_set_stops_the_start_with_one_line_naming_the_key() {
    let data = tempfile::tempdir().expect("a data folder");
    let folder = tempfile::tempdir().expect("a folder for key sets");
    let serve_fails = |flags: Vec<String>| {
        let mut args: Vec<String> = ["--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0"]
            .iter()
            .map(|arg| (*arg).to_owned())
            .collect();
        args.extend(["--data-dir".to_owned(), data.path().display().to_string()]);
        args.extend(flags);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::serve_fails(&[], &args)
    };
    let secret_only = json!({"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]});
    for (name, contents, expected) in [
        (
            "missing.json",
            None,
            "cannot read {file}: No such file or directory",
        ),
        (
            "broken.json",
            Some("{\"keys\": [".to_owned()),
            "{file} is not a JWKS document",
        ),
        (
            "secret.json",
            Some(secret_only.to_string()),
            "{file} holds no key Doppel can verify with",
        ),
    ] {
        let file = folder.path().join(name);
        if let Some(contents) = contents {
            std::fs::write(&file, contents).expect("write the key set");
        }
        let expected = expected.replace("{file}", &file.display().to_string());
        let stderr = serve_fails(idp::hub_flags(&file));
        assert!(
            stderr.starts_with(&format!("doppel: http.jwt.jwks_file: {expected}")),
            "{stderr}"
        );
    }
    let stderr = serve_fails(vec!["--http-jwt-issuer".into(), ISSUER.into()]);
    assert_eq!(
        stderr,
        "doppel: invalid configuration: http.jwt needs issuer and jwks_file together\n"
    );
}
