use std::sync::Arc;
use std::time::Duration;

use doppel_netfault::LinkModel;
use tokio::time::Instant;

use super::Device;
use crate::config::SimConfig;
use crate::progress::LiveCounters;
use crate::shard_state::ShardState;

/// The future of a device is most of the simulator's memory per device (its state, its socket
/// handle, its timer and the deepest chain of awaits it idles in), and every device keeps it for
/// the whole run. It was 2.8 KiB before the large, brief paths were boxed and the long-lived
/// ones stopped taking their arguments twice; the budget keeps it from creeping back.
#[test]
fn a_device_future_stays_within_its_budget() {
    const BUDGET_BYTES: usize = 2048;
    let mut config = SimConfig::new("127.0.0.1:1883", 1);
    config.link = Some(LinkModel {
        disconnect_rate: 1.0,
        reconnect_rate: 1.0,
    });
    let now = Instant::now();
    let shard = ShardState::new(
        Arc::new(config),
        "127.0.0.1:1883".parse().expect("an address"),
        now,
        now + Duration::from_secs(1),
        Arc::new(LiveCounters::default()),
        1,
    );
    let future = Device::new(&shard.config, 0, 0).run(&shard);
    let size = std::mem::size_of_val(&future);
    assert!(size <= BUDGET_BYTES, "a device future is {size} bytes");
}
