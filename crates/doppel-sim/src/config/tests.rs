use std::time::Duration;

use doppel_netfault::LinkModel;

use super::{ConfigError, Credentials, SimConfig, link_model, thing_name};

fn config() -> SimConfig {
    SimConfig::new("127.0.0.1:1883", 100)
}

#[test]
fn the_defaults_are_valid() {
    assert_eq!(config().validate(), Ok(()));
    assert_eq!(config().jitter, Duration::from_secs(2), "a fifth of 10 s");
}

#[test]
fn thing_names_are_zero_padded_so_they_sort_in_device_order() {
    assert_eq!(thing_name("sim", 7), "sim-000007");
    assert_eq!(thing_name("sim", 999_999), "sim-999999");
    assert_eq!(thing_name("sim", 1_000_000), "sim-1000000");
}

/// A change that spoils a configuration, and a test of the error it must cause.
type Case = (fn(&mut SimConfig), fn(&ConfigError) -> bool);

#[test]
fn each_bad_setting_is_named() {
    let cases: Vec<Case> = vec![
        (|c| c.devices = 0, |e| matches!(e, ConfigError::Devices(0))),
        (
            |c| c.devices = 10_000_001,
            |e| matches!(e, ConfigError::Devices(_)),
        ),
        (
            |c| c.interval = Duration::from_millis(1),
            |e| matches!(e, ConfigError::Interval(_)),
        ),
        (
            |c| c.jitter = Duration::from_secs(11),
            |e| matches!(e, ConfigError::Jitter { .. }),
        ),
        (
            |c| c.duration = Duration::ZERO,
            |e| matches!(e, ConfigError::Duration),
        ),
        (
            |c| {
                c.link = Some(LinkModel {
                    disconnect_rate: 1.0,
                    reconnect_rate: 0.0,
                });
            },
            |e| matches!(e, ConfigError::Link(_)),
        ),
        (
            |c| c.connect_rate = 0,
            |e| matches!(e, ConfigError::ConnectRate),
        ),
        (|c| c.tasks = 0, |e| matches!(e, ConfigError::Tasks(0))),
        (
            |c| c.keep_alive = Duration::from_secs(70_000),
            |e| matches!(e, ConfigError::KeepAlive(_)),
        ),
        (
            |c| c.keep_alive = Duration::ZERO,
            |e| matches!(e, ConfigError::KeepAlive(_)),
        ),
    ];
    for (spoil, expected) in cases {
        let mut config = config();
        spoil(&mut config);
        let err = config.validate().expect_err("a bad setting");
        assert!(expected(&err), "unexpected error: {err}");
    }
}

#[test]
fn a_prefix_must_make_device_ids() {
    for prefix in ["", "has space", "slash/y", "ü"] {
        let mut config = config();
        config.prefix = prefix.to_owned();
        // "" makes "-000099", which is a valid id: only the others are refused.
        if prefix.is_empty() {
            assert_eq!(config.validate(), Ok(()));
            continue;
        }
        let err = config.validate().expect_err("an invalid prefix");
        assert!(
            matches!(&err, ConfigError::Prefix { example, .. } if example.ends_with("-000099")),
            "{err}"
        );
    }
}

#[test]
fn a_prefix_that_names_a_named_shadow_is_refused() {
    let mut config = config();
    config.prefix = "pump/shadows/config".to_owned();
    let err = config.validate().expect_err("a named shadow is no device");
    assert!(err.to_string().contains("named shadow"), "{err}");
}

#[test]
fn too_long_a_prefix_is_refused() {
    let mut config = config();
    config.prefix = "p".repeat(125);
    assert!(matches!(config.validate(), Err(ConfigError::Prefix { .. })));
}

#[test]
fn credentials_name_each_device_and_hide_the_password() {
    let credentials = Credentials {
        tenant: "acme".to_owned(),
        username_template: "{tenant}/devices/{thing}".to_owned(),
        password: "s3cret".to_owned(),
    };
    assert_eq!(
        credentials.username("sim-000001"),
        "acme/devices/sim-000001"
    );
    assert!(!format!("{credentials:?}").contains("s3cret"));

    let mut config = config();
    config.credentials = Some(credentials.clone());
    assert_eq!(config.validate(), Ok(()));
    config.credentials = Some(Credentials {
        username_template: "{tenant}/devices/all".to_owned(),
        ..credentials.clone()
    });
    assert!(matches!(
        config.validate(),
        Err(ConfigError::UsernameTemplate(_))
    ));
    config.credentials = Some(Credentials {
        tenant: "bad tenant".to_owned(),
        ..credentials
    });
    assert!(matches!(config.validate(), Err(ConfigError::Tenant { .. })));
}

#[test]
fn a_zero_disconnect_rate_means_no_link_model() {
    assert_eq!(link_model(0.0, 1.0), None);
    assert_eq!(
        link_model(0.5, 2.0),
        Some(LinkModel {
            disconnect_rate: 0.5,
            reconnect_rate: 2.0
        })
    );
    // A negative rate is kept, so that validation can refuse it instead of ignoring it.
    assert!(link_model(-1.0, 1.0).is_some());
}
