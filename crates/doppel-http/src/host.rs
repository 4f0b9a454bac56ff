//! Which `Host` a listener answers for: the defence against DNS rebinding.
//!
//! A page on `http://evil.example` can make its own name resolve to 127.0.0.1 and then read the
//! hub's answers as "same origin". Its requests still say `Host: evil.example`, because the
//! browser names the host the page asked for. So a listener answers only hosts that cannot be
//! rebound: `localhost`, the loopback addresses, the address it is bound to, and, when bound to
//! every address (0.0.0.0 or ::), any IP literal; rebinding needs a name, and an IP literal is
//! none. Names beyond these are allowed by listing them (`http.allowed_hosts`).

use axum::http::header::HOST;
use axum::http::{Request, Version};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest host quoted back in a refusal: enough to recognise it, while a client cannot make the
/// answer as large as its headers.
const MAX_QUOTED_HOST_LEN: usize = 100;

/// The hosts one listener answers for. Checking a request allocates nothing.
#[derive(Clone, Debug)]
pub struct AllowedHosts {
    /// Host names, lower case, without a trailing dot.
    names: Vec<Box<str>>,
    /// IP addresses, in canonical form (an IPv4-mapped IPv6 address as IPv4).
    addresses: Vec<IpAddr>,
    /// Every IP literal: the listener is bound to every address, so any of them may name it.
    any_address: bool,
    /// `*` was listed: every host (the check is off).
    any: bool,
}

/// An `http.allowed_hosts` entry that is not a host.
#[derive(Debug, thiserror::Error)]
#[error("{entry:?} is not a host: {reason}")]
pub struct InvalidHostEntry {
    pub entry: String,
    pub reason: &'static str,
}

/// A host as a request names it.
#[derive(Debug, PartialEq, Eq)]
enum Host<'a> {
    Name(&'a str),
    Address(IpAddr),
}

impl AllowedHosts {
    /// What a listener bound to `bind` answers for when nothing is configured.
    pub fn defaults(bind: IpAddr) -> Self {
        let mut addresses = vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ];
        let bind = bind.to_canonical();
        if !addresses.contains(&bind) {
            addresses.push(bind);
        }
        Self {
            names: vec!["localhost".into()],
            addresses,
            any_address: bind.is_unspecified(),
            any: false,
        }
    }

    /// The defaults of `bind`, and `entries` besides: host names, IP addresses (IPv6 with or
    /// without brackets), or `*` for every host. Entries name no port; any port matches.
    pub fn with(bind: IpAddr, entries: &[String]) -> Result<Self, InvalidHostEntry> {
        let mut hosts = Self::defaults(bind);
        for entry in entries {
            let invalid = |reason| InvalidHostEntry {
                entry: entry.clone(),
                reason,
            };
            let text = entry.trim();
            if text == "*" {
                hosts.any = true;
                continue;
            }
            let unbracketed = text
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .unwrap_or(text);
            if let Ok(address) = unbracketed.parse::<IpAddr>() {
                hosts.addresses.push(address.to_canonical());
                continue;
            }
            let name = text.strip_suffix('.').unwrap_or(text);
            if name.contains('/') {
                return Err(invalid("list the host alone, without scheme or path"));
            }
            if name.contains(':') {
                return Err(invalid("list it without a port; every port matches"));
            }
            if name.is_empty() || !name.bytes().all(is_name_byte) {
                return Err(invalid(
                    "expected a host name (letters, digits, '-', '_', '.') or an IP address, without scheme or path",
                ));
            }
            hosts.names.push(name.to_ascii_lowercase().into());
        }
        Ok(hosts)
    }

    /// Whether `value`, a `Host` header (`host[:port]`), names a host answered here; `None` if
    /// it is not of that form.
    fn allows(&self, value: &str) -> Option<bool> {
        let host = parse(value)?;
        Some(
            self.any
                || match host {
                    Host::Name(name) => {
                        let name = name.strip_suffix('.').unwrap_or(name);
                        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
                    }
                    Host::Address(address) => {
                        self.any_address || self.addresses.contains(&address.to_canonical())
                    }
                },
        )
    }

    /// Refuses a request that names a host not answered here, names none (HTTP/1.1), or names
    /// more than one. HTTP/1.0 may leave `Host` out (old health checkers do); no browser does,
    /// so such a request cannot be a rebinding page's. An absolute request URI (`GET
    /// http://host/...`) must name an answered host too.
    pub(crate) fn check<B>(&self, request: &Request<B>) -> Result<(), crate::problem::ApiError> {
        use crate::problem::ApiError;
        let verdict = |value: &str| match self.allows(value) {
            Some(true) => Ok(()),
            Some(false) => Err(ApiError::HostNotAllowed(
                value.chars().take(MAX_QUOTED_HOST_LEN).collect(),
            )),
            None => Err(ApiError::InvalidHost("the Host is not host[:port]")),
        };
        if let Some(authority) = request.uri().authority() {
            verdict(authority.as_str())?;
        }
        let mut values = request.headers().get_all(HOST).iter();
        match (values.next(), values.next()) {
            (Some(_), Some(_)) => Err(ApiError::InvalidHost("more than one Host header")),
            (Some(value), None) => match value.to_str() {
                Ok(text) => verdict(text),
                Err(_) => Err(ApiError::InvalidHost("the Host is not ASCII")),
            },
            (None, _) if request.version() < Version::HTTP_11 => Ok(()),
            (None, _) => Err(ApiError::InvalidHost("the request has no Host header")),
        }
    }
}

/// The host of `host[:port]` (RFC 9110 §7.2): a name, an IPv4 address, or an IPv6 address in
/// brackets.
fn parse(value: &str) -> Option<Host<'_>> {
    let (host, port) = match value.strip_prefix('[') {
        Some(rest) => {
            let (inside, after) = rest.split_once(']')?;
            let address = inside.parse::<Ipv6Addr>().ok()?;
            (Host::Address(IpAddr::V6(address)), after)
        }
        None => {
            // The port keeps its `:`, so that `host:` (an empty port) stays apart from `host`.
            let split = value.find(':').unwrap_or(value.len());
            let (host, port) = value.split_at(split);
            if host.is_empty() || !host.bytes().all(is_name_byte) {
                return None;
            }
            let host = match host.parse::<Ipv4Addr>() {
                Ok(address) => Host::Address(IpAddr::V4(address)),
                Err(_) => Host::Name(host),
            };
            (host, port)
        }
    };
    // Nothing, or `:` and at most five digits (the port may be empty, RFC 3986 §3.2.3).
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|digits| {
            digits.len() <= 5 && digits.bytes().all(|byte| byte.is_ascii_digit())
        });
    port_ok.then_some(host)
}

/// The bytes of a host name as browsers send it (they lower-case and punycode the rest).
fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::ApiError;

    fn loopback() -> AllowedHosts {
        AllowedHosts::defaults(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    #[test]
    fn loopback_names_and_addresses_are_answered_on_any_port() {
        let hosts = loopback();
        for value in [
            "localhost",
            "localhost:8080",
            "LocalHost:1",
            "localhost.:8080",
            "127.0.0.1",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:8080",
            "[0:0:0:0:0:0:0:1]:80",
            "[::ffff:127.0.0.1]:8080",
            "localhost:",
        ] {
            assert_eq!(hosts.allows(value), Some(true), "{value}");
        }
    }

    #[test]
    fn other_names_and_addresses_are_refused() {
        let hosts = loopback();
        for value in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "127.0.0.2",
            "192.168.1.10:8080",
            "[::2]",
            "0.0.0.0",
        ] {
            assert_eq!(hosts.allows(value), Some(false), "{value}");
        }
    }

    #[test]
    fn what_is_not_host_port_is_malformed() {
        let hosts = loopback();
        for value in [
            "",
            ":8080",
            "localhost:80:80",
            "localhost:http",
            "localhost:123456",
            "::1",
            "[::1",
            "[::1]x",
            "[evil]",
            "user@localhost",
            "local host",
            "localhost/",
        ] {
            assert_eq!(hosts.allows(value), None, "{value:?}");
        }
    }

    #[test]
    fn the_bound_address_is_answered() {
        let hosts = AllowedHosts::defaults("192.168.1.10".parse().expect("an IP address"));
        assert_eq!(hosts.allows("192.168.1.10:8080"), Some(true));
        assert_eq!(hosts.allows("localhost"), Some(true));
        assert_eq!(hosts.allows("192.168.1.11:8080"), Some(false));
        let hosts = AllowedHosts::defaults("fd00::7".parse().expect("an IP address"));
        assert_eq!(hosts.allows("[fd00::7]:8080"), Some(true));
        assert_eq!(hosts.allows("[fd00::8]:8080"), Some(false));
    }

    #[test]
    fn bound_to_every_address_any_ip_literal_is_answered_but_no_other_name() {
        for bind in ["0.0.0.0", "::"] {
            let hosts = AllowedHosts::defaults(bind.parse().expect("an IP address"));
            for value in ["10.1.2.3:8080", "[fd00::1]:8080", "localhost", "127.0.0.1"] {
                assert_eq!(hosts.allows(value), Some(true), "{bind}: {value}");
            }
            assert_eq!(hosts.allows("doppel.lan:8080"), Some(false), "{bind}");
        }
    }

    #[test]
    fn listed_hosts_are_answered_besides_the_defaults() {
        let entries =
            ["Doppel.LAN", "10.0.0.5", "fd00::9", "[fd00::a]", "edge-7."].map(String::from);
        let hosts =
            AllowedHosts::with(IpAddr::V4(Ipv4Addr::LOCALHOST), &entries).expect("valid hosts");
        for value in [
            "doppel.lan:8080",
            "DOPPEL.lan",
            "10.0.0.5:1",
            "[fd00::9]",
            "[fd00::a]:8080",
            "edge-7",
            "localhost",
        ] {
            assert_eq!(hosts.allows(value), Some(true), "{value}");
        }
        assert_eq!(hosts.allows("sub.doppel.lan"), Some(false));
        let any = AllowedHosts::with(IpAddr::V4(Ipv4Addr::LOCALHOST), &["*".into()])
            .expect("valid hosts");
        assert_eq!(any.allows("anything.example:1"), Some(true));
        assert_eq!(any.allows("not a host"), None);
    }

    #[test]
    fn entries_that_are_not_hosts_are_refused() {
        for entry in ["doppel.lan:8080", "http://doppel.lan", "", "a/b", "*.lan"] {
            let result = AllowedHosts::with(IpAddr::V4(Ipv4Addr::LOCALHOST), &[entry.into()]);
            assert!(result.is_err(), "{entry:?}");
        }
    }

    fn request(version: Version, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut builder = Request::builder().version(version).uri(uri);
        for host in hosts {
            builder = builder.header(HOST, *host);
        }
        builder.body(()).expect("a request")
    }

    #[test]
    fn requests_need_exactly_one_answered_host() {
        let hosts = loopback();
        let code = |request: Request<()>| hosts.check(&request).err().map(|err| format!("{err:?}"));
        assert_eq!(
            code(request(Version::HTTP_11, "/healthz", &["localhost:8080"])),
            None
        );
        assert!(matches!(
            hosts.check(&request(Version::HTTP_11, "/healthz", &["evil.example:8080"])),
            Err(ApiError::HostNotAllowed(host)) if host == "evil.example:8080"
        ));
        assert!(matches!(
            hosts.check(&request(Version::HTTP_11, "/healthz", &[])),
            Err(ApiError::InvalidHost(_))
        ));
        assert!(matches!(
            hosts.check(&request(Version::HTTP_11, "/", &["localhost", "localhost"])),
            Err(ApiError::InvalidHost(_))
        ));
        // HTTP/1.0 may leave Host out, but not name a foreign one.
        assert_eq!(code(request(Version::HTTP_10, "/healthz", &[])), None);
        assert!(
            hosts
                .check(&request(Version::HTTP_10, "/", &["evil.example"]))
                .is_err()
        );
        // An absolute URI is checked as well as the Host header.
        assert!(matches!(
            hosts.check(&request(
                Version::HTTP_11,
                "http://evil.example/",
                &["localhost"]
            )),
            Err(ApiError::HostNotAllowed(_))
        ));
    }

    #[test]
    fn refusals_quote_a_bounded_host() {
        let long = format!("{}.example", "a".repeat(10_000));
        match loopback().check(&request(Version::HTTP_11, "/", &[&long])) {
            Err(ApiError::HostNotAllowed(host)) => assert_eq!(host.len(), MAX_QUOTED_HOST_LEN),
            other => panic!("unexpected {other:?}"),
        }
    }
}
