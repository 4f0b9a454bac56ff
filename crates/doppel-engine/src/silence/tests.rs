use super::*;
use doppel_model::{Connection, DeviceId, Meta, TenantId};

fn key(device: &str) -> TwinKey {
    TwinKey::new(TenantId::new("t").unwrap(), DeviceId::new(device).unwrap())
}

fn connected(device_type: Option<&str>, active_at: i64) -> Twin {
    Twin {
        connection: Connection {
            status: ConnectionStatus::Connected,
            last_activity_at: Some(Millis(active_at)),
            ..Connection::default()
        },
        meta: Meta {
            device_type: device_type.map(String::from),
            ..Meta::default()
        },
        ..Twin::default()
    }
}

#[test]
fn deadlines_follow_the_device_type_and_every_change() {
    let mut timer = SilenceTimer::new(ActivityIntervals {
        default: Duration::from_secs(100),
        by_device_type: [("fast".to_owned(), Duration::from_secs(1))].into(),
    });
    timer.track(&key("slow"), Some(&connected(None, 0)));
    timer.track(&key("fast"), Some(&connected(Some("fast"), 0)));
    assert_eq!(timer.next(), Some(Millis(1_000)));
    // Heard from again: the deadline moves.
    timer.track(&key("fast"), Some(&connected(Some("fast"), 5_000)));
    assert_eq!(timer.next(), Some(Millis(6_000)));
    assert!(timer.take_due(Millis(5_999)).is_empty());
    assert_eq!(
        timer.take_due(Millis(6_000)),
        [(key("fast"), Millis(5_000))]
    );
    assert_eq!(timer.next(), Some(Millis(100_000)));
    // A disconnected or deleted twin has no deadline.
    let mut away = connected(None, 0);
    away.connection.status = ConnectionStatus::Disconnected;
    timer.track(&key("slow"), Some(&away));
    assert_eq!(timer.next(), None);
    timer.track(&key("gone"), Some(&connected(None, 0)));
    timer.track(&key("gone"), None);
    assert!(timer.take_due(Millis(i64::MAX)).is_empty());
}
