//! A fault-injecting TCP proxy on loopback.
//!
//! Lifecycle: [`FaultProxy::start`] binds `127.0.0.1:0` and spawns an accept loop; each accepted
//! connection gets one task that connects upstream and relays both directions. The link's
//! condition (cut or not, delay, shutdown) lives in one `watch` channel, so [`FaultProxy::cut`]
//! reaches every connection task without a registry of them: each task watches for the cut
//! counter to move past the value it was accepted under, then resets both its sockets. Dropping
//! the proxy aborts the accept loop and raises the shutdown flag, which ends every connection the
//! same way.
//!
//! Time is `tokio::time::Instant`, so accounting and delays follow paused time in tests.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};

use crate::link::{LinkModel, LinkState};

/// The most bytes one read takes from a socket. Large enough that a bulk transfer costs few
/// wake-ups, small enough that a delayed chunk is not a big burst.
const CHUNK_BYTES: usize = 16 * 1024;

/// How many chunks one direction holds while they wait out the delay. Reading goes on during the
/// delay (it is latency, not a throughput cap) until this many are queued; then the sender feels
/// back-pressure, as from a full TCP window. Bounds memory to 1 MiB per direction.
const CHUNKS_IN_FLIGHT: usize = 64;

/// How long the accept loop pauses after an accept error, so that running out of file
/// descriptors does not turn into a busy loop.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// A TCP proxy between a client under test and its `upstream` server, which can cut the link,
/// heal it and delay it. See the crate documentation for what a cut does and does not imitate.
#[derive(Debug)]
pub struct FaultProxy {
    /// The state every task of this proxy reads, and that [`FollowHandle`]s keep alive.
    shared: Arc<Shared>,
    /// Kept here because the listener itself is owned by the accept task.
    local_addr: SocketAddr,
    /// Aborted on drop, which closes the listening socket.
    accept: JoinHandle<()>,
    /// The runtime the proxy started on, so [`FaultProxy::follow`] can spawn from any thread.
    runtime: Handle,
}

/// What the accept loop, the connection tasks and a follow task share with the proxy.
#[derive(Debug)]
struct Shared {
    /// Where each accepted connection is relayed.
    upstream: SocketAddr,
    /// The link's condition. A watch channel because every connection task must see a cut, and
    /// the sender works even before anyone subscribes.
    link: watch::Sender<Link>,
    /// Counts every accepted connection, including those reset at once while cut.
    connections_accepted: AtomicU64,
}

/// The condition of the link, as published on [`Shared::link`].
#[derive(Debug, Clone, Copy, Default)]
struct Link {
    /// When the current cut began; `None` while healed.
    cut_since: Option<Instant>,
    /// Time spent cut in the cuts that have ended.
    cut_before: Duration,
    /// How many cuts have begun. A connection remembers the count it was accepted under and
    /// dies when it changes: a watch receiver sees only the latest value, so a cut quickly
    /// followed by a heal would be missed by watching `cut_since` alone.
    cuts: u64,
    /// One-way delay for chunks read from now on.
    delay: Duration,
    /// Set when the proxy is dropped, so its connections and follow tasks end with it.
    stopped: bool,
}

impl FaultProxy {
    /// Listens on `127.0.0.1:0` and relays each accepted connection to `upstream`, healed and
    /// without delay. If `upstream` refuses, the client's connection is reset.
    ///
    /// # Errors
    ///
    /// The error from binding or inspecting the listening socket.
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            link: watch::Sender::new(Link::default()),
            connections_accepted: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(FaultProxy {
            shared,
            local_addr,
            accept,
            runtime: Handle::current(),
        })
    }

    /// The address clients should connect to instead of `upstream`.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Cuts the link: every open connection is reset in both directions, and until
    /// [`FaultProxy::heal`] new connections are accepted and reset at once, so a client sees a
    /// failure quickly instead of hanging. Cutting a cut link does nothing.
    pub fn cut(&self) {
        self.shared.cut();
    }

    /// Heals the link: new connections are relayed again. Connections reset by the cut stay
    /// closed, as they would after a real outage. Healing a healed link does nothing.
    pub fn heal(&self) {
        self.shared.heal();
    }

    /// Whether the link is cut now.
    pub fn is_cut(&self) -> bool {
        self.shared.link.borrow().cut_since.is_some()
    }

    /// Sets the one-way delay added to every chunk read from now on, in either direction, so a
    /// round trip gains twice this. Chunks already waiting keep their delay and bytes never
    /// overtake each other, so shortening the delay makes later chunks wait behind earlier ones.
    /// [`Duration::ZERO`] removes the delay.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.link.send_modify(|link| link.delay = delay);
    }

    /// Total time spent cut since start, including the current cut if any, to compare with what
    /// a client measured.
    pub fn time_cut(&self) -> Duration {
        let link = *self.shared.link.borrow();
        link.cut_before
            + link
                .cut_since
                .map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// How many connections the proxy has accepted, including those it reset at once because the
    /// link was cut.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.connections_accepted.load(Ordering::Relaxed)
    }

    /// Drives the link by `model.schedule(seed)`: cut on Down, heal on Up, from now until
    /// `for_at_most` has passed or the handle is stopped or dropped, and heals at the end.
    ///
    /// Phases are timed from one start instant rather than one after another, so they do not
    /// drift by the time spent switching. The model takes over whatever state the link was in:
    /// its first phase is Up, so following heals a cut link. For a model that fails
    /// [`LinkModel::validate`], see [`LinkModel::schedule`]: a phase may last forever, which here
    /// means until `for_at_most`.
    pub fn follow(&self, model: &LinkModel, seed: u64, for_at_most: Duration) -> FollowHandle {
        let shared = Arc::clone(&self.shared);
        let schedule = model.schedule(seed);
        let task = self.runtime.spawn(async move {
            let mut link = shared.link.subscribe();
            let stopped = async move {
                // An error means the sender is gone, which `shared` prevents; either way, stop.
                let _ = link.wait_for(|link| link.stopped).await;
            };
            let follow = async {
                let mut at = Instant::now();
                for (state, lasts) in schedule {
                    match state {
                        LinkState::Up => shared.heal(),
                        LinkState::Down => shared.cut(),
                    }
                    // Overflow means a phase that never ends; the `for_at_most` arm ends it.
                    let Some(next) = at.checked_add(lasts) else {
                        break;
                    };
                    at = next;
                    sleep_until(at).await;
                }
                std::future::pending::<()>().await;
            };
            tokio::select! {
                () = follow => {}
                () = sleep(for_at_most) => {}
                () = stopped => {}
            }
            shared.heal();
        });
        FollowHandle {
            task,
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.link.send_modify(|link| link.stopped = true);
    }
}

/// A running [`FaultProxy::follow`]. Dropping it stops following and heals the link, unless the
/// schedule had already ended (and healed it) on its own.
#[derive(Debug)]
#[must_use = "dropping a FollowHandle stops following the model at once"]
pub struct FollowHandle {
    /// The task that plays the schedule; aborted on drop.
    task: JoinHandle<()>,
    /// To heal the link when the task is aborted before it could heal it itself.
    shared: Arc<Shared>,
}

impl FollowHandle {
    /// Waits until `for_at_most` has passed (or the proxy is dropped), by when the link is healed.
    pub async fn finished(mut self) {
        // A join error means the runtime is shutting down; there is nothing left to wait for.
        let _ = (&mut self.task).await;
    }

    /// Whether following has ended on its own.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops following now and heals the link; the same as dropping the handle, said aloud.
    pub fn stop(self) {}
}

impl Drop for FollowHandle {
    fn drop(&mut self) {
        // Only heal for a task cut short: after the task ended, the link is the test's again and
        // it may have cut it on purpose.
        if !self.task.is_finished() {
            self.task.abort();
            self.shared.heal();
        }
    }
}

impl Shared {
    fn cut(&self) {
        let cut = self.link.send_if_modified(|link| {
            if link.cut_since.is_some() {
                return false;
            }
            link.cut_since = Some(Instant::now());
            link.cuts += 1;
            true
        });
        if cut {
            tracing::debug!(upstream = %self.upstream, "fault proxy: link cut");
        }
    }

    fn heal(&self) {
        let healed = self
            .link
            .send_if_modified(|link| match link.cut_since.take() {
                Some(since) => {
                    link.cut_before += since.elapsed();
                    true
                }
                None => false,
            });
        if healed {
            tracing::debug!(upstream = %self.upstream, "fault proxy: link healed");
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(error) => {
                // Accept errors concern one connection or a passing lack of resources; a proxy
                // that stopped accepting would look like a cut nobody asked for.
                tracing::debug!(%error, "fault proxy: accept failed");
                sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        shared.connections_accepted.fetch_add(1, Ordering::Relaxed);
        let link = *shared.link.borrow();
        if link.cut_since.is_some() {
            reset(&client);
            continue;
        }
        tokio::spawn(connection(Arc::clone(&shared), client, link.cuts));
    }
}

/// Relays one client connection until both directions end, or resets it when a cut after
/// `accepted_under` cuts (or the proxy's drop) severs it.
async fn connection(shared: Arc<Shared>, mut client: TcpStream, accepted_under: u64) {
    let mut link = shared.link.subscribe();
    let severed = async move {
        // The `Ref` the wait returns must not be held, or it would block the sender.
        let _ = link
            .wait_for(|link| link.stopped || link.cuts != accepted_under)
            .await;
    };
    tokio::pin!(severed);

    let connected = tokio::select! {
        connected = TcpStream::connect(shared.upstream) => connected,
        () = &mut severed => {
            reset(&client);
            return;
        }
    };
    let mut upstream = match connected {
        Ok(upstream) => upstream,
        Err(error) => {
            tracing::debug!(%error, upstream = %shared.upstream, "fault proxy: upstream refused");
            reset(&client);
            return;
        }
    };
    // The proxy forwards what it reads at once; Nagle's algorithm here would add delay that the
    // test did not ask for.
    for stream in [&client, &upstream] {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "fault proxy: cannot disable Nagle's algorithm");
        }
    }

    tokio::select! {
        relayed = relay(&mut client, &mut upstream, &shared.link) => {
            if let Err(error) = relayed {
                tracing::debug!(%error, "fault proxy: connection failed");
                reset(&client);
                reset(&upstream);
            }
        }
        () = &mut severed => {
            reset(&client);
            reset(&upstream);
        }
    }
}

/// Copies both directions until both have ended, passing each end of stream on as a half-close.
async fn relay(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    link: &watch::Sender<Link>,
) -> io::Result<()> {
    let (client_read, client_write) = client.split();
    let (upstream_read, upstream_write) = upstream.split();
    tokio::try_join!(
        pump(client_read, upstream_write, link),
        pump(upstream_read, client_write, link),
    )?;
    Ok(())
}

/// Copies one direction, holding each chunk until the delay in force when it was read has
/// passed. Reading and writing run side by side through a FIFO queue, so the delay is latency
/// rather than a pause between chunks, and bytes keep their order.
async fn pump<R, W>(mut from: R, mut to: W, link: &watch::Sender<Link>) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (queue, mut queued) = mpsc::channel::<(Instant, Duration, Vec<u8>)>(CHUNKS_IN_FLIGHT);
    let read = async move {
        let mut buffer = vec![0; CHUNK_BYTES];
        loop {
            let read = from.read(&mut buffer).await?;
            if read == 0 {
                // Dropping the queue lets the writer drain it and then pass the end on.
                return Ok::<(), io::Error>(());
            }
            let delay = link.borrow().delay;
            if queue
                .send((Instant::now(), delay, buffer[..read].to_vec()))
                .await
                .is_err()
            {
                // The writer failed; `try_join!` is already returning its error.
                return Ok(());
            }
        }
    };
    let write = async move {
        while let Some((read_at, delay, chunk)) = queued.recv().await {
            // `sleep` rather than `sleep_until(read_at + delay)`: it copes with a delay so long
            // that the deadline would overflow `Instant`.
            let remaining = delay.saturating_sub(read_at.elapsed());
            if !remaining.is_zero() {
                sleep(remaining).await;
            }
            to.write_all(&chunk).await?;
        }
        to.shutdown().await
    };
    tokio::try_join!(read, write)?;
    Ok(())
}

/// Arranges for `stream` to be reset when it is dropped, so the peer learns of the cut at once
/// (a reset, not an orderly end it might take for a complete reply).
fn reset(stream: &TcpStream) {
    if let Err(error) = stream.set_zero_linger() {
        tracing::debug!(%error, "fault proxy: cannot arrange a reset; closing instead");
    }
}

#[cfg(test)]
mod tests;
