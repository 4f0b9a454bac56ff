//! A command worker: the only writer of its devices' queues, and their timer.

use super::{Answer, CommandEvent, CommandEventKind, CommandJob, Op, QueueReply};
use crate::clock::{Clock, sleep_until};
use crate::committer::{CommitRequest, commit_through};
use crate::error::EngineError;
use crate::events::Feeds;
use crate::metric;
use doppel_model::command::{
    Command, CommandError, CommandLimits, CommandStatus, NewCommand, delivery_order,
};
use doppel_model::{Limits, Millis, TwinKey};
use doppel_store::{CommandWrite, TwinStore};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use tokio::sync::mpsc;

/// One device's open commands and the idempotency keys still in force.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeviceQueue {
    /// PENDING and DELIVERED commands by id.
    open: HashMap<String, Command>,
    /// Idempotency key to the command it queued and when that command expires; a key is free
    /// again once its command's time to live is over.
    keys: HashMap<String, (String, Millis)>,
}

impl DeviceQueue {
    /// Takes a stored command in at start.
    pub(crate) fn adopt(&mut self, command: Command, now: Millis) {
        if let Some(key) = &command.idempotency_key
            && command.expires_at > now
        {
            self.keys
                .insert(key.clone(), (command.id.clone(), command.expires_at));
        }
        if !command.status.is_final() {
            self.open.insert(command.id.clone(), command);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.open.is_empty() && self.keys.is_empty()
    }

    /// PENDING and DELIVERED commands.
    pub(crate) fn open_count(&self) -> usize {
        self.open.len()
    }
}

/// A deadline of one command: when time alone may change it.
type Deadline = Reverse<(Millis, TwinKey, String)>;

pub(crate) struct CommandWorker {
    pub jobs: mpsc::Receiver<CommandJob>,
    pub devices: HashMap<TwinKey, DeviceQueue>,
    /// Deadlines of open commands, soonest first. An entry may be outdated (its command was
    /// acknowledged, or delivered again); it is checked against the command when it comes due.
    pub deadlines: BinaryHeap<Deadline>,
    /// Read for the final commands that late acknowledgements name; written only through
    /// `commits`.
    pub store: Arc<dyn TwinStore>,
    /// The engine's one group committer, which twin writes go through too.
    pub commits: mpsc::Sender<CommitRequest>,
    pub clock: Arc<dyn Clock>,
    pub limits: CommandLimits,
    /// Document limits, which acknowledgement responses obey.
    pub document: Limits,
    pub feeds: Arc<Feeds<CommandEvent>>,
    pub max_batch: usize,
}

/// The work of one group: copies of the queues it touched, and what must be written, announced
/// and answered once the writes are durable.
#[derive(Default)]
struct Round {
    touched: HashMap<TwinKey, DeviceQueue>,
    writes: Vec<CommandWrite>,
    events: Vec<CommandEvent>,
    deadlines: Vec<Deadline>,
    answers: Vec<Box<dyn FnOnce(Option<EngineError>) + Send>>,
    /// Final commands the round's acknowledgements name, read from the store before it began
    /// or settled by it, as the round has left them: the ones a late acknowledgement may reach.
    finals: HashMap<(TwinKey, String), Command>,
}

impl Round {
    /// Records a change of `command`: its write, its event, and its next deadline.
    fn record(
        &mut self,
        key: &TwinKey,
        command: &Command,
        kind: CommandEventKind,
        now: Millis,
        limits: &CommandLimits,
    ) -> Result<Arc<Command>, EngineError> {
        self.writes.push(CommandWrite::new(key, command)?);
        let shared = Arc::new(command.clone());
        self.events.push(CommandEvent {
            key: key.clone(),
            kind,
            command: shared.clone(),
        });
        if let Some(deadline) = command.next_deadline(now, limits) {
            self.deadlines
                .push(Reverse((deadline, key.clone(), command.id.clone())));
        }
        Ok(shared)
    }

    /// Answers once the round's writes are durable, or with the commit's error.
    fn answer<T: Send + 'static>(&mut self, reply: Answer<T>, result: Result<T, EngineError>) {
        self.answers.push(Box::new(move |failure| {
            let _ = reply.send(match failure {
                Some(err) => Err(err),
                None => result,
            });
        }));
    }
}

impl CommandWorker {
    /// Puts the deadline of every open command of a freshly loaded worker on its heap.
    pub(crate) fn with_deadlines(mut self) -> Self {
        let limits = self.limits;
        self.deadlines = self
            .devices
            .iter()
            .flat_map(|(key, queue)| {
                queue.open.values().map(move |command| {
                    // A deadline missed while the hub was down comes due at once.
                    let deadline = command
                        .ack_deadline(&limits)
                        .map_or(command.expires_at, |ack| ack.min(command.expires_at));
                    Reverse((deadline, key.clone(), command.id.clone()))
                })
            })
            .collect();
        self
    }

    /// Runs until every sender of jobs is gone.
    pub(crate) async fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_batch);
        loop {
            let deadline = self.next_deadline();
            let clock = self.clock.clone();
            tokio::select! {
                received = self.jobs.recv_many(&mut batch, self.max_batch) => {
                    if received == 0 {
                        return;
                    }
                    let mut round = Round {
                        finals: self.finals_named(&batch).await,
                        ..Round::default()
                    };
                    for job in batch.drain(..) {
                        self.apply(&mut round, job);
                    }
                    self.finish(round).await;
                }
                () = sleep_until(&*clock, deadline) => {
                    let round = self.come_due();
                    self.finish(round).await;
                }
            }
        }
    }

    /// Reads the commands that acknowledgements in `batch` name and that are not open, which
    /// live in the store only. This worker is the only writer of its devices' commands, so what
    /// it reads stays true while it applies the batch.
    async fn finals_named(&self, batch: &[CommandJob]) -> HashMap<(TwinKey, String), Command> {
        let wanted: Vec<(TwinKey, String)> = batch
            .iter()
            .filter_map(|job| match &job.op {
                Op::Acknowledge { id, .. }
                    if !self
                        .devices
                        .get(&job.key)
                        .is_some_and(|queue| queue.open.contains_key(id)) =>
                {
                    Some((job.key.clone(), id.clone()))
                }
                _ => None,
            })
            .collect();
        if wanted.is_empty() {
            return HashMap::new();
        }
        let store = self.store.clone();
        let read = tokio::task::spawn_blocking(move || {
            let mut found = HashMap::new();
            for (key, id) in wanted {
                if let Some(command) = store.command(&key, &id)? {
                    found.insert((key, id), command);
                }
            }
            Ok::<_, doppel_store::StoreError>(found)
        })
        .await;
        match read {
            Ok(Ok(found)) => found,
            // The acknowledgements then answer as for an unknown command, which the caller's
            // own read of the store turns into the truth or into the store's error.
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "cannot read final commands for late acknowledgements");
                HashMap::new()
            }
            Err(join) => {
                tracing::error!(error = %join, "reading final commands for late acknowledgements panicked");
                HashMap::new()
            }
        }
    }

    fn next_deadline(&self) -> Option<Millis> {
        self.deadlines
            .peek()
            .map(|Reverse((deadline, _, _))| *deadline)
    }

    /// The queue of `key` as this round sees it, with what time alone did to it applied.
    fn queue<'r>(&self, round: &'r mut Round, key: &TwinKey, now: Millis) -> &'r mut DeviceQueue {
        if !round.touched.contains_key(key) {
            let mut queue = self.devices.get(key).cloned().unwrap_or_default();
            queue.keys.retain(|_, (_, expires_at)| *expires_at > now);
            let mut settled = Vec::new();
            for command in queue.open.values_mut() {
                if command.settle(now, &self.limits) {
                    settled.push(command.clone());
                }
            }
            for command in settled {
                queue.open.remove(&command.id);
                let kind = settled_kind(&command);
                if let Err(err) = round.record(key, &command, kind, now, &self.limits) {
                    tracing::error!(error = %err, command = %command.id, "cannot record a settled command");
                }
                round
                    .finals
                    .insert((key.clone(), command.id.clone()), command);
            }
            round.touched.insert(key.clone(), queue);
        }
        round
            .touched
            .get_mut(key)
            .unwrap_or_else(|| unreachable!("inserted above"))
    }

    fn apply(&self, round: &mut Round, job: CommandJob) {
        let now = self.clock.now();
        let key = job.key;
        match job.op {
            Op::Queue(request, reply) => {
                let result = self.queue_command(round, &key, request, now);
                round.answer(reply, result);
            }
            Op::Cancel(id, reply) => {
                let result = self.change(round, &key, &id, now, |command| {
                    command.cancel(now)?;
                    Ok(CommandEventKind::Canceled)
                });
                round.answer(reply, result);
            }
            Op::Acknowledge {
                id,
                result,
                response,
                reply,
            } => {
                let (limits, document) = (self.limits, self.document);
                let open = self.queue(round, &key, now).open.contains_key(&id);
                let outcome = if open {
                    self.change(round, &key, &id, now, |command| {
                        command.acknowledge(result, response, now, &limits, &document)?;
                        Ok(CommandEventKind::Acknowledged)
                    })
                } else {
                    self.acknowledge_late(round, &key, &id, now, |command| {
                        command.acknowledge_late(result, response, now, &limits, &document)
                    })
                };
                round.answer(reply, outcome);
            }
            Op::Deliver {
                reconnected,
                max,
                reply,
            } => {
                let result = self.deliver(round, &key, reconnected, max, now);
                round.answer(reply, result);
            }
        }
    }

    fn queue_command(
        &self,
        round: &mut Round,
        key: &TwinKey,
        request: NewCommand,
        now: Millis,
    ) -> Result<QueueReply, EngineError> {
        let limits = self.limits;
        let queue = self.queue(round, key, now);
        if let Some(idempotency) = &request.idempotency_key
            && let Some((id, _)) = queue.keys.get(idempotency)
        {
            return Ok(match queue.open.get(id) {
                Some(command) => QueueReply::Open(Arc::new(command.clone())),
                None => QueueReply::Final(id.clone()),
            });
        }
        if queue.open.len() >= limits.max_open {
            return Err(CommandError::TooManyOpen {
                limit: limits.max_open,
            }
            .into());
        }
        let command = Command::new(uuid::Uuid::now_v7().to_string(), request, now);
        if let Some(idempotency) = &command.idempotency_key {
            queue.keys.insert(
                idempotency.clone(),
                (command.id.clone(), command.expires_at),
            );
        }
        queue.open.insert(command.id.clone(), command.clone());
        let shared = round.record(key, &command, CommandEventKind::Queued, now, &limits)?;
        Ok(QueueReply::Created(shared))
    }

    /// Applies `step` to one open command; a command that is not open answers `NotFound`.
    fn change(
        &self,
        round: &mut Round,
        key: &TwinKey,
        id: &str,
        now: Millis,
        step: impl FnOnce(&mut Command) -> Result<CommandEventKind, CommandError>,
    ) -> Result<Arc<Command>, EngineError> {
        let limits = self.limits;
        let queue = self.queue(round, key, now);
        let Some(open) = queue.open.get(id) else {
            return Err(CommandError::NotFound { id: id.into() }.into());
        };
        let mut command = open.clone();
        let kind = step(&mut command)?;
        if command.status.is_final() {
            queue.open.remove(id);
        } else {
            queue.open.insert(id.into(), command.clone());
        }
        round.record(key, &command, kind, now, &limits)
    }

    /// Applies a late acknowledgement to a final command the round knows; any other answers
    /// `NotFound`.
    fn acknowledge_late(
        &self,
        round: &mut Round,
        key: &TwinKey,
        id: &str,
        now: Millis,
        step: impl FnOnce(&mut Command) -> Result<(), CommandError>,
    ) -> Result<Arc<Command>, EngineError> {
        let found = (key.clone(), id.to_owned());
        let Some(known) = round.finals.get(&found) else {
            return Err(CommandError::NotFound { id: id.into() }.into());
        };
        let mut command = known.clone();
        step(&mut command)?;
        let shared = round.record(
            key,
            &command,
            CommandEventKind::AcknowledgedLate,
            now,
            &self.limits,
        )?;
        round.finals.insert(found, command);
        Ok(shared)
    }

    fn deliver(
        &self,
        round: &mut Round,
        key: &TwinKey,
        reconnected: bool,
        max: usize,
        now: Millis,
    ) -> Result<Vec<Arc<Command>>, EngineError> {
        let limits = self.limits;
        let queue = self.queue(round, key, now);
        let mut due: Vec<Command> = queue
            .open
            .values()
            .filter(|command| command.due(now, &limits, reconnected))
            .cloned()
            .collect();
        due.sort_by(delivery_order);
        due.truncate(max);
        for command in &mut due {
            command.deliver(now, &limits, reconnected)?;
            queue.open.insert(command.id.clone(), command.clone());
        }
        due.iter()
            .map(|command| round.record(key, command, CommandEventKind::Delivered, now, &limits))
            .collect()
    }

    /// Handles every deadline that has come: settles what expired or ran out of attempts, and
    /// announces deliveries whose acknowledgement is overdue so they go out again.
    fn come_due(&mut self) -> Round {
        let now = self.clock.now();
        let mut round = Round::default();
        while let Some(Reverse((deadline, _, _))) = self.deadlines.peek() {
            if *deadline > now {
                break;
            }
            let Some(Reverse((deadline, key, id))) = self.deadlines.pop() else {
                break;
            };
            // Touching the queue settles every command of it whose time is up.
            let queue = self.queue(&mut round, &key, now);
            let Some(command) = queue.open.get(&id) else {
                continue;
            };
            let current_delivery = command.ack_deadline(&self.limits) == Some(deadline);
            if current_delivery && command.due(now, &self.limits, false) {
                let command = Arc::new(command.clone());
                round.events.push(CommandEvent {
                    key: key.clone(),
                    kind: CommandEventKind::Due,
                    command: command.clone(),
                });
                if let Some(next) = command.next_deadline(now, &self.limits) {
                    round.deadlines.push(Reverse((next, key, id)));
                }
            }
        }
        round
    }

    /// Makes the round durable, then adopts its queues, answers and announces; or, if the
    /// commit failed, drops it and answers every caller with the failure.
    async fn finish(&mut self, round: Round) {
        let Round {
            touched,
            mut writes,
            events,
            deadlines,
            answers,
            finals: _,
        } = round;
        keep_last_write_of_each_command(&mut writes);
        // The committer logs and counts a failure, as it does for twin writes.
        let failure = if writes.is_empty() {
            None
        } else {
            commit_through(&self.commits, Vec::new(), writes)
                .await
                .err()
        };
        let committed = failure.is_none();
        if committed {
            // Before the answers, so a caller that got one sees its change in the metrics.
            self.record_metrics(&touched, &events);
        }
        for answer in answers {
            answer(failure.clone());
        }
        if !committed {
            return;
        }
        for (key, queue) in touched {
            if queue.is_empty() {
                self.devices.remove(&key);
            } else {
                self.devices.insert(key, queue);
            }
        }
        self.deadlines.extend(deadlines);
        if !events.is_empty() {
            self.feeds.publish(events).await;
        }
    }

    /// Counts a committed round's events and moves the open gauge by what it opened and
    /// settled; `touched` holds the queues as the round left them, `self.devices` as before.
    fn record_metrics(&self, touched: &HashMap<TwinKey, DeviceQueue>, events: &[CommandEvent]) {
        let opened: i64 = touched
            .iter()
            .map(|(key, queue)| {
                let before = self.devices.get(key).map_or(0, DeviceQueue::open_count);
                queue.open_count() as i64 - before as i64
            })
            .sum();
        if opened != 0 {
            // Each worker adds its own share to the one gauge.
            metrics::gauge!(metric::COMMANDS_OPEN).increment(opened as f64);
        }
        for event in events {
            if event.kind != CommandEventKind::Due {
                metrics::counter!(metric::COMMANDS, "event" => event.kind.name()).increment(1);
            }
        }
    }
}

/// A round may change one command more than once (settled, then acknowledged late); the store
/// gets its last state once, instead of the commit relying on how a batch orders writes of one
/// key.
fn keep_last_write_of_each_command(writes: &mut Vec<CommandWrite>) {
    if writes.len() < 2 {
        return;
    }
    let last: Vec<bool> = {
        let mut seen = std::collections::HashSet::with_capacity(writes.len());
        let mut last: Vec<bool> = writes
            .iter()
            .rev()
            .map(|write| seen.insert((&write.key, write.id.as_str())))
            .collect();
        last.reverse();
        last
    };
    let mut is_last = last.into_iter();
    writes.retain(|_| is_last.next().unwrap_or(true));
}

fn settled_kind(command: &Command) -> CommandEventKind {
    match command.status {
        CommandStatus::Failed => CommandEventKind::Failed,
        _ => CommandEventKind::Expired,
    }
}

#[cfg(test)]
mod tests {
    use super::keep_last_write_of_each_command;
    use doppel_model::command::{Command, NewCommand};
    use doppel_model::{DeviceId, Millis, TenantId, TwinKey};
    use doppel_store::CommandWrite;
    use serde_json::json;
    use std::time::Duration;

    fn write(device: &str, id: &str, kind: &str) -> CommandWrite {
        let key = TwinKey::new(
            TenantId::new("t").expect("a valid tenant id"),
            DeviceId::new(device).expect("a valid device id"),
        );
        let request = NewCommand {
            kind: kind.into(),
            payload: json!({}),
            priority: 0,
            ttl: Duration::from_secs(60),
            idempotency_key: None,
        };
        let command = Command::new(id.into(), request, Millis(0));
        CommandWrite::new(&key, &command).expect("the command encodes")
    }

    #[test]
    fn a_command_written_twice_in_a_round_keeps_its_last_write_only() {
        let mut writes = vec![
            write("a", "1", "first"),
            write("a", "2", "other"),
            write("b", "1", "same-id-other-device"),
            write("a", "1", "last"),
        ];
        let expected: Vec<Vec<u8>> = [&writes[1], &writes[2], &writes[3]]
            .iter()
            .map(|write| write.record.clone())
            .collect();
        keep_last_write_of_each_command(&mut writes);
        let kept: Vec<Vec<u8>> = writes.into_iter().map(|write| write.record).collect();
        assert_eq!(kept, expected);
    }
}
