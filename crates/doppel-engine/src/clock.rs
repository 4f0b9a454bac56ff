//! Time, injected so that tests decide what "now" is.

use doppel_model::Millis;
use std::sync::atomic::{AtomicI64, Ordering};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Millis;
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Millis(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: Millis) -> Self {
        Self(AtomicI64::new(start.0))
    }

    pub fn set(&self, now: Millis) {
        self.0.store(now.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        Millis(self.0.load(Ordering::SeqCst))
    }
}

/// Sleeps until `deadline` by `clock` (at once if it has passed); never returns when there is
/// no deadline. For timers that wait in a `select!` beside their work.
pub(crate) async fn sleep_until(clock: &dyn Clock, deadline: Option<Millis>) {
    match deadline {
        Some(deadline) => {
            let wait = deadline.0.saturating_sub(clock.now().0).max(0);
            let wait = std::time::Duration::from_millis(u64::try_from(wait).unwrap_or(0));
            tokio::time::sleep(wait).await;
        }
        None => std::future::pending().await,
    }
}
