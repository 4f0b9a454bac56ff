//! Device command queues: durable, ordered by priority, expired by a timer.
//!
//! A device's queue belongs to one command worker (by hash of the twin key), which is its only
//! writer, as a shard is of its twins. A worker applies a group of requests to copies of the
//! queues they touch, commits every changed command in one store commit, and only then adopts
//! the copies, answers the callers and announces the changes: a failed commit changes nothing.
//! Open commands live in memory with their deadlines in a heap, so expiry and redelivery never
//! scan the queues; final commands live in the store only.

mod worker;

use crate::clock::Clock;
use crate::committer::CommitRequest;
use crate::error::EngineError;
use crate::events::Feeds;
use crate::shard::{KeyHasher, shard_index};
use crate::task::ask;
use doppel_model::command::{Command, CommandError, CommandLimits, CommandResult, NewCommand};
use doppel_model::{Limits, TwinKey};
use doppel_store::{CommandQuery, TwinStore};
use serde_json::Value;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use worker::{CommandWorker, DeviceQueue};

/// Command events buffered for the slowest broadcast subscriber (long-polling devices).
const EVENT_CAPACITY: usize = 4096;

/// What a command worker that vanished under a caller was doing (see [`ask`]).
const HANDLING_COMMAND: &str = "handling a command";
/// Requests one worker applies per commit at most.
const MAX_BATCH: usize = 256;
/// Requests queued per worker before callers wait.
const QUEUE_DEPTH: usize = 1024;

/// What happened to a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommandEventKind {
    Queued,
    Delivered,
    Acknowledged,
    Expired,
    Canceled,
    /// Delivery attempts ran out without an acknowledgement.
    Failed,
    /// The device acknowledged a command that was already EXPIRED, CANCELED or FAILED; its
    /// status stays, its `result` and `response` are the device's.
    AcknowledgedLate,
    /// Not a change: a delivered command's acknowledgement is overdue and it may go out again.
    Due,
}

impl CommandEventKind {
    /// The event's name after `command.` (`command.queued`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Delivered => "delivered",
            Self::Acknowledged => "acknowledged",
            Self::Expired => "expired",
            Self::Canceled => "canceled",
            Self::Failed => "failed",
            Self::AcknowledgedLate => "acknowledged_late",
            Self::Due => "due",
        }
    }

    /// The kinds that are durable changes, which `doppel_commands_total` counts (not `Due`).
    pub const CHANGES: [CommandEventKind; 7] = [
        Self::Queued,
        Self::Delivered,
        Self::Acknowledged,
        Self::Expired,
        Self::Canceled,
        Self::Failed,
        Self::AcknowledgedLate,
    ];
}

/// One change of one command, announced after it is durable.
#[derive(Clone, Debug)]
pub struct CommandEvent {
    pub key: TwinKey,
    pub kind: CommandEventKind,
    /// The command after the change.
    pub command: Arc<Command>,
}

/// What queueing did.
#[derive(Clone, Debug, PartialEq)]
pub struct Queued {
    pub command: Arc<Command>,
    /// `false` when the idempotency key named a command queued earlier, which is returned
    /// instead of queueing another.
    pub created: bool,
}

/// What a worker is asked to do, with where its answer goes.
pub(crate) enum Op {
    Queue(NewCommand, Answer<QueueReply>),
    Cancel(String, Answer<Arc<Command>>),
    Acknowledge {
        id: String,
        result: CommandResult,
        response: Option<Value>,
        reply: Answer<Arc<Command>>,
    },
    Deliver {
        reconnected: bool,
        max: usize,
        reply: Answer<Vec<Arc<Command>>>,
    },
}

pub(crate) type Answer<T> = oneshot::Sender<Result<T, EngineError>>;

pub(crate) enum QueueReply {
    Created(Arc<Command>),
    /// The idempotency key names this open command.
    Open(Arc<Command>),
    /// The idempotency key names this command, which is final: read it from the store.
    Final(String),
}

pub(crate) struct CommandJob {
    pub key: TwinKey,
    pub op: Op,
}

/// A handle to the command queues; cheap to clone.
#[derive(Clone)]
pub struct CommandQueue {
    workers: Arc<[mpsc::Sender<CommandJob>]>,
    router: KeyHasher,
    store: Arc<dyn TwinStore>,
    feeds: Arc<Feeds<CommandEvent>>,
    limits: CommandLimits,
    /// Set when the server stops, so that long polls answer at once instead of holding the
    /// shutdown up for their whole wait.
    closing: Arc<watch::Sender<bool>>,
}

impl CommandQueue {
    /// Loads every command from `store` and starts `workers` workers, which commit through
    /// `commits` (the engine's one group committer). Must run inside a Tokio runtime.
    pub(crate) async fn start(
        store: Arc<dyn TwinStore>,
        commits: mpsc::Sender<CommitRequest>,
        clock: Arc<dyn Clock>,
        limits: CommandLimits,
        document: Limits,
        workers: usize,
    ) -> Result<(CommandQueue, Vec<JoinHandle<()>>), EngineError> {
        let count = workers.max(1);
        let router = KeyHasher::default();
        let route = router.clone();
        let loader = store.clone();
        let now = clock.now();
        let queues = tokio::task::spawn_blocking(move || {
            let mut queues: Vec<HashMap<TwinKey, DeviceQueue>> =
                (0..count).map(|_| HashMap::new()).collect();
            loader.load_commands(&mut |key, command| {
                let worker = shard_index(&route, &key, count);
                queues[worker].entry(key).or_default().adopt(command, now);
            })?;
            queues.iter_mut().for_each(|queues| {
                queues.retain(|_, queue| !queue.is_empty());
            });
            Ok::<_, EngineError>(queues)
        })
        .await
        .map_err(|join| EngineError::of_join(&join, "loading the commands"))??;
        let feeds = Arc::new(Feeds::new(EVENT_CAPACITY));
        let mut senders = Vec::with_capacity(count);
        let mut tasks = Vec::with_capacity(count);
        for devices in queues {
            let open: usize = devices.values().map(DeviceQueue::open_count).sum();
            metrics::gauge!(crate::metric::COMMANDS_OPEN).increment(open as f64);
            let (sender, jobs) = mpsc::channel(QUEUE_DEPTH);
            let worker = CommandWorker {
                jobs,
                devices,
                deadlines: BinaryHeap::new(),
                store: store.clone(),
                commits: commits.clone(),
                clock: clock.clone(),
                limits,
                document,
                feeds: feeds.clone(),
                max_batch: MAX_BATCH,
            }
            .with_deadlines();
            tasks.push(tokio::spawn(worker.run()));
            senders.push(sender);
        }
        let queue = CommandQueue {
            workers: senders.into(),
            router,
            store,
            feeds,
            limits,
            closing: Arc::new(watch::Sender::new(false)),
        };
        Ok((queue, tasks))
    }

    /// The limits commands are held to; requests are validated against them before queueing.
    pub fn limits(&self) -> &CommandLimits {
        &self.limits
    }

    async fn run<T>(
        &self,
        key: TwinKey,
        op: impl FnOnce(Answer<T>) -> Op,
    ) -> Result<T, EngineError> {
        let worker = &self.workers[shard_index(&self.router, &key, self.workers.len())];
        ask(worker, HANDLING_COMMAND, |reply| CommandJob {
            key,
            op: op(reply),
        })
        .await?
    }

    /// Queues a command for `key`'s device; returns once it is durable. A request whose
    /// idempotency key names a command queued within that command's time to live returns
    /// that command instead.
    pub async fn queue(&self, key: TwinKey, request: NewCommand) -> Result<Queued, EngineError> {
        let (command, created) = match self
            .run(key.clone(), |reply| Op::Queue(request, reply))
            .await?
        {
            QueueReply::Created(command) => (command, true),
            QueueReply::Open(command) => (command, false),
            QueueReply::Final(id) => match self.get(&key, &id).await? {
                Some(command) => (Arc::new(command), false),
                None => return Err(CommandError::NotFound { id }.into()),
            },
        };
        Ok(Queued { command, created })
    }

    /// Cancels a command that is not final yet.
    pub async fn cancel(&self, key: TwinKey, id: String) -> Result<Arc<Command>, EngineError> {
        let target = id.clone();
        let outcome = self
            .run(key.clone(), |reply| Op::Cancel(target, reply))
            .await;
        self.explain(&key, id, "canceled", outcome).await
    }

    /// Records the device's acknowledgement of a command; of a command that is EXPIRED,
    /// CANCELED or FAILED already, as a late one (see [`Command::acknowledge_late`]).
    pub async fn acknowledge(
        &self,
        key: TwinKey,
        id: String,
        result: CommandResult,
        response: Option<Value>,
    ) -> Result<Arc<Command>, EngineError> {
        let target = id.clone();
        let outcome = self
            .run(key.clone(), |reply| Op::Acknowledge {
                id: target,
                result,
                response,
                reply,
            })
            .await;
        self.explain(&key, id, "acknowledged", outcome).await
    }

    /// A command that is not open any more is not in the worker's memory, which answers "not
    /// found": the store says whether it exists (and so cannot change any more) or not.
    async fn explain(
        &self,
        key: &TwinKey,
        id: String,
        action: &'static str,
        outcome: Result<Arc<Command>, EngineError>,
    ) -> Result<Arc<Command>, EngineError> {
        match outcome {
            Err(EngineError::Command(CommandError::NotFound { .. })) => {
                match self.get(key, &id).await? {
                    Some(command) => Err(CommandError::NotAllowed {
                        status: command.status,
                        action,
                    }
                    .into()),
                    None => Err(CommandError::NotFound { id }.into()),
                }
            }
            other => other,
        }
    }

    /// Marks up to `max` commands that are due for `key`'s device delivered and returns them in
    /// delivery order, for the caller to send. `reconnected` resends commands delivered before
    /// without waiting for their acknowledgement timeout: the device lost what was in flight.
    pub async fn deliver(
        &self,
        key: TwinKey,
        reconnected: bool,
        max: usize,
    ) -> Result<Vec<Arc<Command>>, EngineError> {
        self.run(key, |reply| Op::Deliver {
            reconnected,
            max,
            reply,
        })
        .await
    }

    /// The next command due for `key`'s device, marked delivered, waiting up to `wait` for one
    /// to be queued or become due (an HTTP device's long poll). Answers `None` at once after
    /// [`CommandQueue::end_long_polls`].
    pub async fn next(
        &self,
        key: TwinKey,
        wait: Duration,
    ) -> Result<Option<Arc<Command>>, EngineError> {
        let deadline = tokio::time::Instant::now() + wait;
        // Subscribed before looking, so nothing queued in between goes unnoticed.
        let mut events = self.subscribe();
        let mut closing = self.closing.subscribe();
        loop {
            if let Some(command) = self.deliver(key.clone(), false, 1).await?.pop() {
                return Ok(Some(command));
            }
            loop {
                if *closing.borrow_and_update() {
                    return Ok(None);
                }
                let event = tokio::select! {
                    event = tokio::time::timeout_at(deadline, events.recv()) => event,
                    _ = closing.changed() => continue,
                };
                match event {
                    Err(_elapsed) => return Ok(None),
                    Ok(Ok(event)) => {
                        let wakes = event.key == key
                            && matches!(
                                event.kind,
                                CommandEventKind::Queued | CommandEventKind::Due
                            );
                        if wakes {
                            break;
                        }
                    }
                    // Missed events might have been ours: look again.
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => break,
                    Ok(Err(broadcast::error::RecvError::Closed)) => {
                        return Err(EngineError::ShuttingDown);
                    }
                }
            }
        }
    }

    /// Ends every long poll now and from now on with no command: the server is stopping.
    pub fn end_long_polls(&self) {
        self.closing.send_replace(true);
    }

    /// One command of `key`'s device, open or final.
    pub async fn get(&self, key: &TwinKey, id: &str) -> Result<Option<Command>, EngineError> {
        let store = self.store.clone();
        let (key, id) = (key.clone(), id.to_owned());
        blocking(move || Ok(store.command(&key, &id)?)).await
    }

    /// A page of `key`'s device's commands in id (creation) order.
    pub async fn list(
        &self,
        key: &TwinKey,
        query: CommandQuery,
    ) -> Result<Vec<Command>, EngineError> {
        let store = self.store.clone();
        let key = key.clone();
        blocking(move || Ok(store.commands(&key, &query)?)).await
    }

    /// Every command event from now on; a subscriber that falls behind misses the oldest.
    pub fn subscribe(&self) -> broadcast::Receiver<CommandEvent> {
        self.feeds.subscribe()
    }

    /// Every command event from now on, none skipped: the workers wait for a follower that is
    /// `capacity` events behind. For delivery, which must not miss a queued command.
    pub fn follow(&self, capacity: usize) -> mpsc::Receiver<CommandEvent> {
        self.feeds.follow(capacity)
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| EngineError::of_join(&join, "reading commands from the store"))?
}

#[cfg(test)]
mod tests;
