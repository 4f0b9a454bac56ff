//! Network faults on demand, for Doppel's tests and tools.
//!
//! Three pieces, from pure to I/O:
//!
//! - [`LinkModel`] is the two-state (Up/Down) link of queueing theory: it leaves Up at rate λ and
//!   Down at rate μ, with exponential holding times, so over a long run it is down a fraction
//!   λ/(λ+μ) of the time. [`LinkModel::schedule`] turns a seed into a reproducible sequence of
//!   phases. No I/O, no clock.
//! - [`ChaosPlan`] is a seeded list of [`ChaosStep`]s (cut, heal, delay, restart) for chaos tests
//!   that want variety without giving up reproducibility.
//! - [`FaultProxy`] is a TCP proxy on loopback that a test puts between a client and a server. It
//!   can cut the link (every open connection is reset, new ones are accepted and reset at once),
//!   heal it, add a one-way delay, and follow a [`LinkModel`] on its own.
//!
//! ```no_run
//! # async fn example(server: std::net::SocketAddr) -> std::io::Result<()> {
//! use std::time::Duration;
//! use doppel_netfault::{FaultProxy, LinkModel};
//!
//! let proxy = FaultProxy::start(server).await?;
//! // Point the client at `proxy.local_addr()` instead of `server`, then:
//! let model = LinkModel { disconnect_rate: 0.5, reconnect_rate: 2.0 };
//! proxy.follow(&model, 42, Duration::from_secs(30)).finished().await;
//! println!("the link was down for {:?}", proxy.time_cut());
//! # Ok(())
//! # }
//! ```
//!
//! What this crate does not model, honestly: a cut here is *announced*. The proxy resets both
//! sockets, so each side learns of the cut at once, whereas a real partition usually drops packets
//! silently and a peer only finds out through its own timeouts or keep-alives. Loss, reordering,
//! bandwidth limits and partial writes are not simulated either; for silent partitions use a
//! deterministic network simulator (turmoil) instead.

mod chaos;
mod link;
mod proxy;

pub use chaos::{ChaosPlan, ChaosStep};
pub use link::{LinkModel, LinkModelError, LinkState, Schedule};
pub use proxy::{FaultProxy, FollowHandle};
