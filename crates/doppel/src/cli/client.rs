//! The HTTP side of the command line: sends requests to a running hub (or reads its change
//! stream) and turns every way they can fail into one line a person can act on.

use super::sse::{Frame, Parser};
use super::table::truncate;
use doppel_http::tls::{
    client_builder, client_roots, read_certificates, read_private_key, rustls_error,
};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use rustls::ClientConfig;
use serde_json::Value;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Longest a command waits for the hub's answer. A twin request is one in-memory lookup or one
/// group commit, so anything near this means the hub is stuck or unreachable, not busy.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest a change stream may stay silent before the CLI gives up on it: the hub sends a
/// keep-alive comment every 15 s, so three missed in a row mean the hub or the path is gone.
pub const STREAM_SILENCE: Duration = Duration::from_secs(45);

/// How long the CLI keeps an idle connection: under the hub's default `http.header_timeout`.
const IDLE_CONNECTION: Duration = Duration::from_secs(5);

/// Most characters of a non-problem error body quoted in a message: enough to recognise a proxy's
/// error page, short enough to stay on one line.
const MAX_QUOTED_BODY: usize = 200;

/// Why a request to the hub failed. Messages are single lines; none carries a `source()`, so the
/// `doppel: ...` line printed by `main` is exactly the message.
#[derive(Debug)]
pub enum ClientError {
    /// `--server` is neither `host:port` nor an `http://` or `https://` URL.
    InvalidServer { server: String, reason: String },
    /// A TLS file the options name cannot be used.
    TlsFile {
        option: &'static str,
        reason: String,
    },
    /// No answer: refused, unknown host, timed out.
    Unreachable { server: String, reason: String },
    /// The hub refused the request with a problem document.
    Problem { code: String, detail: String },
    /// An answer that is neither success JSON nor a problem document, e.g. from a proxy.
    Unexpected { status: StatusCode, body: String },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidServer { server, reason } => {
                write!(f, "--server {server:?} is not usable: {reason}")
            }
            Self::TlsFile { option, reason } => write!(f, "{option}: {reason}"),
            Self::Unreachable { server, reason } => write!(f, "cannot reach {server}: {reason}"),
            Self::Problem { code, detail } => write!(f, "{code}: {detail}"),
            Self::Unexpected { status, body } if body.is_empty() => write!(
                f,
                "the server answered HTTP {status} without a problem document"
            ),
            Self::Unexpected { status, body } => {
                write!(f, "the server answered HTTP {status}: {body}")
            }
        }
    }
}

impl std::error::Error for ClientError {}

/// How the client checks an `https://` hub and proves itself to it. There is deliberately no
/// way to skip the check: a hub with a self-signed certificate is reached with `--ca-file`.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// PEM CAs to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain and key presented to a hub that asks for one (mutual TLS).
    pub client_identity: Option<(PathBuf, PathBuf)>,
}

/// A hub at one base URL.
pub struct Client {
    http: reqwest::Client,
    /// The base URL without a trailing slash, with the scheme [`base_url`] gave it: requests go
    /// under it and messages name it.
    server: String,
    /// Sent as `Authorization: Bearer` with every request.
    token: Option<String>,
    /// What "no answer" means for this client's requests, in messages.
    patience: Patience,
}

/// How long a client waits for the hub.
#[derive(Clone, Copy, Debug)]
pub enum Patience {
    /// A request answered as a whole, within [`REQUEST_TIMEOUT`].
    Request,
    /// A change stream, open for as long as it is read, each read within [`STREAM_SILENCE`].
    Stream,
}

impl Client {
    pub fn new(
        server: &str,
        token: Option<String>,
        tls: &TlsOptions,
        patience: Patience,
    ) -> Result<Self, ClientError> {
        let server = base_url(server);
        let invalid = |reason: String| ClientError::InvalidServer {
            server: server.clone(),
            reason,
        };
        let url = Url::parse(&server).map_err(|err| invalid(err.to_string()))?;
        let builder = reqwest::Client::builder()
            // The hub closes a kept-alive connection idle for `http.header_timeout` (10 s by
            // default); letting go of it sooner means no request is sent on one being closed.
            .pool_idle_timeout(IDLE_CONNECTION);
        let builder = match patience {
            Patience::Request => builder.timeout(REQUEST_TIMEOUT),
            Patience::Stream => builder
                .connect_timeout(REQUEST_TIMEOUT)
                .read_timeout(STREAM_SILENCE),
        };
        let builder = match url.scheme() {
            "http" => builder,
            // reqwest then speaks https:// only, so nothing is ever sent in the clear to a
            // hub named with https://.
            "https" => builder
                .use_preconfigured_tls(tls_config(tls)?)
                .https_only(true),
            other => {
                return Err(invalid(format!(
                    "the scheme is {other:?}; use http:// or https://"
                )));
            }
        };
        let http = builder
            .build()
            .map_err(|err| invalid(innermost_message(&err)))?;
        Ok(Self {
            http,
            server,
            token,
            patience,
        })
    }

    /// A request to `path`, which starts with `/`.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.server));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends a request and returns the JSON body of a successful answer (`null` for `204`).
    pub async fn send(&self, request: RequestBuilder) -> Result<Value, ClientError> {
        let response = request.send().await.map_err(|err| self.unreachable(&err))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|err| self.unreachable(&err))?;
        if status.is_success() {
            if text.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).map_err(|_| unexpected(status, &text));
        }
        Err(problem(&text).unwrap_or_else(|| unexpected(status, &text)))
    }

    /// Opens a Server-Sent Events stream: a successful answer of type `text/event-stream`,
    /// whose frames [`EventStream::next`] reads as they come.
    pub async fn open_stream(
        &self,
        request: RequestBuilder,
    ) -> Result<EventStream<'_>, ClientError> {
        let response = request.send().await.map_err(|err| self.unreachable(&err))?;
        let status = response.status();
        let is_stream = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("text/event-stream"));
        if status.is_success() && is_stream {
            return Ok(EventStream {
                client: self,
                response,
                parser: Parser::default(),
            });
        }
        let text = response
            .text()
            .await
            .map_err(|err| self.unreachable(&err))?;
        Err(problem(&text).unwrap_or_else(|| unexpected(status, &text)))
    }

    fn unreachable(&self, err: &reqwest::Error) -> ClientError {
        let reason = match (err.is_timeout(), self.patience) {
            (true, Patience::Request) => {
                format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())
            }
            (true, Patience::Stream) => format!(
                "the stream stayed silent for {}s, keep-alives included",
                STREAM_SILENCE.as_secs()
            ),
            (false, _) => innermost_message(err),
        };
        ClientError::Unreachable {
            server: self.server.clone(),
            reason,
        }
    }
}

/// An open change stream of a hub.
pub struct EventStream<'a> {
    client: &'a Client,
    response: Response,
    parser: Parser,
}

impl EventStream<'_> {
    /// The next frame; `None` once the hub has ended the stream.
    pub async fn next(&mut self) -> Result<Option<Frame>, ClientError> {
        loop {
            if let Some(frame) = self.parser.next_frame() {
                return Ok(Some(frame));
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.parser.push(&bytes),
                Ok(None) => return Ok(None),
                Err(err) => return Err(self.client.unreachable(&err)),
            }
        }
    }
}

/// `--server` as a base URL without a trailing slash. An address without a scheme
/// (`127.0.0.1:8080`, `hub.lan:8080`, `[::1]:8080`) is the hub's plain `http://` listener, as
/// `http.addr` names it; without this, `Url` would read `hub.lan:8080` as the scheme `hub.lan`.
fn base_url(server: &str) -> String {
    let server = server.trim().trim_end_matches('/');
    if server.contains("://") {
        server.to_owned()
    } else {
        format!("http://{server}")
    }
}

/// The rustls configuration of an `https://` hub: the roots of `--ca-file` or else the
/// system's, with the ring provider (reqwest is built without one, which keeps aws-lc out);
/// see [`doppel_http::tls::client_builder`].
fn tls_config(tls: &TlsOptions) -> Result<ClientConfig, ClientError> {
    let file_error = |option: &'static str| {
        move |err: doppel_http::tls::TlsError| ClientError::TlsFile {
            option,
            reason: err.to_string(),
        }
    };
    let roots = client_roots(tls.ca_file.as_deref()).map_err(file_error("--ca-file"))?;
    let builder = client_builder(roots).map_err(file_error("--server"))?;
    match &tls.client_identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = read_certificates(cert).map_err(file_error("--client-cert"))?;
            let key_der = read_private_key(key).map_err(file_error("--client-key"))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|err| ClientError::TlsFile {
                    option: "--client-key",
                    reason: format!("{} does not fit {}: {err}", key.display(), cert.display()),
                })
        }
    }
}

/// `code` and `detail` of an RFC 9457 problem document.
fn problem(text: &str) -> Option<ClientError> {
    let body: Value = serde_json::from_str(text).ok()?;
    let code = body.get("code")?.as_str()?;
    let detail = body
        .get("detail")
        .and_then(Value::as_str)
        .unwrap_or("no detail given");
    Some(ClientError::Problem {
        code: one_line(code),
        detail: one_line(detail),
    })
}

fn unexpected(status: StatusCode, body: &str) -> ClientError {
    ClientError::Unexpected {
        status,
        body: truncate(&one_line(body), MAX_QUOTED_BODY),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The root cause of a transport error in plain words: `connection refused` rather than reqwest's
/// chain of `error sending request for url (...)`, `client error (Connect)`, `tcp connect error`.
fn innermost_message(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(source) = current.source() {
        current = source;
    }
    if let Some(tls) = rustls_error(current) {
        return tls_failure(tls);
    }
    if let Some(io) = current.downcast_ref::<std::io::Error>() {
        return match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
            std::io::ErrorKind::ConnectionReset => "connection reset".into(),
            std::io::ErrorKind::TimedOut => "timed out".into(),
            _ => strip_os_error(&io.to_string()),
        };
    }
    strip_os_error(&current.to_string())
}

/// A failed handshake in words, with what to do about the two an operator meets.
fn tls_failure(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(_) => format!(
            "the hub's certificate is not trusted ({err}); pass --ca-file with the CA that signed it"
        ),
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired) => {
            "the hub asks for a client certificate; pass --client-cert and --client-key".into()
        }
        other => format!("TLS: {other}"),
    }
}

/// `Connection refused (os error 111)` -> `connection refused`.
fn strip_os_error(message: &str) -> String {
    let message = message.split(" (os error").next().unwrap_or(message);
    let mut chars = message.chars();
    let lowered = match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    };
    one_line(&lowered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_documents_become_code_and_detail() {
        let body = r#"{"type":"urn:doppel:problem:twin_not_found","status":404,"code":"twin_not_found","detail":"no twin\nhere"}"#;
        let err = problem(body).expect("a problem document");
        assert_eq!(err.to_string(), "twin_not_found: no twin here");
        assert!(problem("<html>bad gateway</html>").is_none());
        assert!(problem(r#"{"detail":"no code"}"#).is_none());
    }

    #[test]
    fn other_error_bodies_are_quoted_on_one_line_and_bounded() {
        let err = unexpected(StatusCode::BAD_GATEWAY, "<html>\n  bad gateway\n</html>");
        assert_eq!(
            err.to_string(),
            "the server answered HTTP 502 Bad Gateway: <html> bad gateway </html>"
        );
        let long = "x".repeat(MAX_QUOTED_BODY * 2);
        let message = unexpected(StatusCode::BAD_GATEWAY, &long).to_string();
        assert!(message.ends_with('…'), "{message}");
        assert!(message.len() < MAX_QUOTED_BODY + 60, "{message}");
        let empty = unexpected(StatusCode::BAD_GATEWAY, "").to_string();
        assert_eq!(
            empty,
            "the server answered HTTP 502 Bad Gateway without a problem document"
        );
    }

    #[test]
    fn an_address_without_a_scheme_is_the_plain_http_listener() {
        assert_eq!(base_url("127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(base_url("hub.lan:8080/"), "http://hub.lan:8080");
        assert_eq!(base_url("[::1]:8080"), "http://[::1]:8080");
        assert_eq!(base_url("https://hub.example/"), "https://hub.example");
        let plain = TlsOptions::default();
        for server in [
            "127.0.0.1:8080",
            "localhost:8080",
            "hub.lan:8080",
            "[::1]:8080",
        ] {
            let client = Client::new(server, None, &plain, Patience::Request);
            assert_eq!(
                client.ok().map(|client| client.server),
                Some(format!("http://{server}")),
                "{server}"
            );
        }
    }

    #[test]
    fn only_http_and_https_servers_are_accepted() {
        let plain = TlsOptions::default();
        assert!(Client::new("http://127.0.0.1:8080/", None, &plain, Patience::Request).is_ok());
        assert!(Client::new("https://hub.example", None, &plain, Patience::Request).is_ok());
        let ftp = Client::new("ftp://hub.example", None, &plain, Patience::Request)
            .err()
            .map(|err| err.to_string());
        assert_eq!(
            ftp.as_deref(),
            Some(
                "--server \"ftp://hub.example\" is not usable: the scheme is \"ftp\"; use http:// or https://"
            )
        );
        assert!(Client::new("127.0.0.1:notaport", None, &plain, Patience::Request).is_err());
    }

    #[test]
    fn a_bad_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, "no certificate here\n").unwrap();
        let tls = TlsOptions {
            ca_file: Some(ca_file.clone()),
            client_identity: None,
        };
        let err = Client::new("https://hub.example", None, &tls, Patience::Request)
            .err()
            .map(|err| err.to_string());
        let expected = format!("--ca-file: {} holds no PEM certificate", ca_file.display());
        assert_eq!(err.as_deref(), Some(expected.as_str()));
        // A plain http:// hub needs no CA: the file is not read.
        assert!(Client::new("http://127.0.0.1:8080", None, &tls, Patience::Request).is_ok());
    }

    #[test]
    fn os_error_numbers_are_dropped() {
        assert_eq!(
            strip_os_error("Connection refused (os error 111)"),
            "connection refused"
        );
        assert_eq!(
            strip_os_error("dns error: failed to lookup"),
            "dns error: failed to lookup"
        );
    }
}
