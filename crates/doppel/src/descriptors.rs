//! The hub's file descriptors. Every connection holds one, and a process that runs out can
//! accept nothing on any listener: the soft open-files limit is raised to the hard one at start,
//! and the limit is shared out so that each listener has its own part and the store keeps a
//! reserve. A flood of connections then exhausts only its own listener, whose new connections
//! wait in the kernel's backlog, while the other listener and the store go on.

use doppel_mqtt::HANDSHAKE_SOCKETS;

/// Descriptors kept for everything but connections: the store's journals, segments and
/// history keyspaces, the runtime, standard streams and logs.
pub const RESERVED: u64 = 256;

/// The part of the descriptors HTTP may take at most when there are too few for every
/// configured limit: applications and operators need few connections, devices need many.
const HTTP_SHARE_WHEN_SCARCE: u64 = 4;

/// How the open-files limit is shared out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Most HTTP connections at once.
    pub http_connections: usize,
    /// Most live MQTT connections.
    pub mqtt_connections: usize,
    /// Most MQTT sockets, live connections and those still in their handshake together.
    pub mqtt_sockets: usize,
}

/// Shares `open_files` descriptors between HTTP (`http` wanted) and MQTT (`mqtt` live
/// connections wanted). The wanted limits stand when they fit; otherwise HTTP keeps at most a
/// quarter of what is left after [`RESERVED`] and MQTT takes the rest.
pub fn plan(open_files: u64, http: usize, mqtt: usize) -> Budget {
    let wanted = Budget {
        http_connections: http,
        mqtt_connections: mqtt,
        mqtt_sockets: mqtt.saturating_add(HANDSHAKE_SOCKETS),
    };
    let available = open_files.saturating_sub(RESERVED);
    let needed = (wanted.http_connections as u64).saturating_add(wanted.mqtt_sockets as u64);
    if needed <= available {
        return wanted;
    }
    let http_connections = (http as u64).min(available / HTTP_SHARE_WHEN_SCARCE).max(1);
    let mqtt_sockets = available.saturating_sub(http_connections).max(1);
    let handshakes = (HANDSHAKE_SOCKETS as u64).min(mqtt_sockets / 4);
    let mqtt_connections = (mqtt as u64).min(mqtt_sockets - handshakes).max(1);
    Budget {
        http_connections: usize::try_from(http_connections).unwrap_or(http),
        mqtt_connections: usize::try_from(mqtt_connections).unwrap_or(mqtt),
        mqtt_sockets: usize::try_from(mqtt_sockets).unwrap_or(wanted.mqtt_sockets),
    }
}

/// Raises the soft open-files limit to the hard one and returns the limit in force; `None`
/// where the limits cannot be read (the configured limits then stand as they are).
pub fn raise_open_files_limit() -> Option<u64> {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?;
    match rlimit::increase_nofile_limit(hard) {
        Ok(limit) => Some(limit),
        Err(err) => {
            tracing::warn!(error = %err, "cannot raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_that_fit_stand() {
        let budget = plan(1_000_000, 1024, 100_000);
        assert_eq!(
            budget,
            Budget {
                http_connections: 1024,
                mqtt_connections: 100_000,
                mqtt_sockets: 100_000 + HANDSHAKE_SOCKETS,
            }
        );
    }

    #[test]
    fn scarce_descriptors_are_shared_within_the_limit() {
        for open_files in [300, 512, 1024, 4096, 20_000] {
            let budget = plan(open_files, 1024, 100_000);
            let used = budget.http_connections + budget.mqtt_sockets;
            assert!(
                used as u64 <= open_files - RESERVED,
                "{open_files}: {budget:?}"
            );
            assert!(budget.http_connections as u64 <= (open_files - RESERVED) / 4 + 1);
            assert!(budget.mqtt_connections < budget.mqtt_sockets, "{budget:?}");
            assert!(budget.http_connections >= 1 && budget.mqtt_connections >= 1);
        }
        // With 20,000 descriptors HTTP keeps what it asked for.
        assert_eq!(plan(20_000, 1024, 100_000).http_connections, 1024);
    }

    #[test]
    fn even_no_room_leaves_each_listener_something() {
        let budget = plan(10, 1024, 100_000);
        assert!(budget.http_connections >= 1 && budget.mqtt_connections >= 1);
    }
}
