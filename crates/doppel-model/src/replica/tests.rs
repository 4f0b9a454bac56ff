//! Replication between the hub and edge agents, driven through a small simulator: each
//! [`Replica`] holds its copy of one twin, its history and its own wall clock, which the tests
//! set (skewed, and stepping backwards in the property tests).

use super::*;
use crate::Context;
use crate::crdt::CrdtKind;
use crate::meta::Meta;
use crate::policy::{HUB_REPLICA, ReplicationRules};
use crate::update::MetaPatch;
use crate::vclock::Causality;
use proptest::prelude::*;
use serde_json::json;

/// Where the tests' wall clocks start: 2025-11-24, so that stamps read like real instants.
const T0: i64 = 1_764_000_000_000;
const HOUR_MS: i64 = 3_600_000;
const EDGE_A: &str = "edge-a";
const EDGE_B: &str = "edge-b";

const POLICIES: [ConflictPolicy; 4] = [
    ConflictPolicy::CloudWins,
    ConflictPolicy::DeviceWins,
    ConflictPolicy::TimestampWins,
    ConflictPolicy::Merge,
];

// ---------------------------------------------------------------------------------------------
// The simulator

/// One replica's copy of one twin, as the hub or an edge agent keeps it.
struct Replica {
    /// Who it is and the rules it stamps its writes by.
    config: ReplicaConfig,
    /// `None` until the replica first writes or hears of the twin.
    twin: Option<Twin>,
    /// Every accepted change, oldest first: what it sends its own changes from.
    history: Vec<HistoryEntry>,
    /// Its wall clock in Unix milliseconds; each replica's is its own, as skewed as a test likes.
    clock_ms: i64,
}

impl Replica {
    fn new(config: ReplicaConfig, clock_ms: i64) -> Self {
        Self {
            config,
            twin: None,
            history: Vec::new(),
            clock_ms,
        }
    }

    /// The hub by `rules`: it replicates a twin only once it has merged a change of it, or when
    /// the twin's device type is declared.
    fn hub(rules: &ReplicationRules, clock_ms: i64) -> Self {
        Self::new(rules.replica(HUB_REPLICA.into(), Role::Cloud), clock_ms)
    }

    /// An edge agent by `rules`: it replicates every twin from its first write.
    fn edge(rules: &ReplicationRules, id: &str, clock_ms: i64) -> Self {
        Self::new(rules.replica(id.into(), Role::Device), clock_ms)
    }

    fn id(&self) -> &str {
        &self.config.id
    }

    /// Moves the wall clock on by `ms`, or back for a negative `ms`.
    fn tick(&mut self, ms: i64) {
        self.clock_ms += ms;
    }

    /// Applies `change` at the replica's wall clock; `Ok(None)` when it was stale. The twin and
    /// history change only with `Ok(Some(_))`, as the engine stores nothing else.
    fn update(&mut self, change: Change) -> Result<Option<HistoryEntry>, ModelError> {
        let request = UpdateRequest {
            change,
            expected_version: None,
            changed_by: self.config.id.clone(),
            change_reason: None,
            client_token: None,
            trace: None,
        };
        let context = Context {
            now: Millis(self.clock_ms),
            limits: &Limits::default(),
            replica: &self.config,
        };
        let applied = crate::apply(self.twin.clone(), &request, &context)?;
        match applied {
            Applied::Changed { twin, entry } => {
                self.twin = Some(twin);
                self.history.push(entry.clone());
                Ok(Some(entry))
            }
            Applied::Stale { .. } => Ok(None),
        }
    }

    /// A change that must be accepted.
    fn write(&mut self, change: Change) -> HistoryEntry {
        let id = self.id().to_owned();
        self.update(change)
            .unwrap_or_else(|err| panic!("{id} refused a write: {err}"))
            .unwrap_or_else(|| panic!("{id} found a write stale"))
    }

    fn write_reported(&mut self, patch: Value) -> HistoryEntry {
        self.write(Change::Reported {
            patch,
            device_version: None,
        })
    }

    fn write_desired(&mut self, patch: Value) -> HistoryEntry {
        self.write(Change::DesiredPatch(patch))
    }

    fn merge(&mut self, delta: &ReplicaDelta) -> Result<Option<HistoryEntry>, ModelError> {
        self.update(Change::Merge(Box::new(delta.clone())))
    }

    /// Merges a delta that must be valid; `None` when it changed nothing.
    fn merged(&mut self, delta: &ReplicaDelta) -> Option<HistoryEntry> {
        let id = self.id().to_owned();
        self.merge(delta)
            .unwrap_or_else(|err| panic!("{id} refused a delta from {}: {err}", delta.origin))
    }

    fn merge_all(&mut self, deltas: &[ReplicaDelta]) {
        for delta in deltas {
            self.merged(delta);
        }
    }

    /// The deltas of this replica's own changes recorded after document version `version`: what
    /// an edge agent sends the hub.
    fn changes_since(&self, version: u64) -> Vec<ReplicaDelta> {
        let entries = self.history.iter().filter(|entry| entry.version > version);
        own_changes(entries, self.id()).cloned().collect()
    }

    /// The replica's whole state of the twin: what the hub answers a sync with. As the hub's
    /// sync service does, a twin this replica kept alone until now starts replicating first (an
    /// empty merge of its own), so the state sent out is the one its later writes are stamped
    /// against.
    fn snapshot(&mut self) -> ReplicaDelta {
        if self.twin().replica.is_none() {
            let own = ReplicaDelta {
                origin: self.id().to_owned(),
                ..ReplicaDelta::default()
            };
            self.merged(&own);
        }
        snapshot(self.twin(), &self.config)
            .unwrap_or_else(|| panic!("{} replicates its twin by now", self.config.id))
    }

    fn twin(&self) -> &Twin {
        self.twin
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no twin", self.config.id))
    }

    fn state(&self, side: Side) -> Value {
        Value::Object(section(self.twin(), side).state.clone())
    }

    fn reported(&self) -> Value {
        self.state(Side::Reported)
    }

    fn desired(&self) -> Value {
        self.state(Side::Desired)
    }

    /// The replica's vector clock of the twin, as it sends it: a hub that does not replicate
    /// the twin yet counts its whole past as one change.
    fn clock(&self) -> VectorClock {
        match &self.twin().replica {
            Some(state) => state.clock.clone(),
            None => {
                let twin = self.twin();
                let profile = self.config.profile(twin.meta.device_type.as_deref());
                ReplicaState::initial(Some(twin), &self.config, profile).clock
            }
        }
    }

    /// Every resolution this replica recorded, oldest first.
    fn resolutions(&self) -> Vec<&Resolution> {
        self.history
            .iter()
            .flat_map(|entry| &entry.resolutions)
            .collect()
    }
}

/// `to` merges `from`'s whole state.
fn pull(to: &mut Replica, from: &mut Replica) -> Option<HistoryEntry> {
    to.merged(&from.snapshot())
}

/// Rules whose default profile has `policy` and the given CRDT properties.
fn rules_with(policy: ConflictPolicy, crdts: &[(&str, CrdtKind)]) -> ReplicationRules {
    ReplicationRules {
        default: TypeProfile {
            policy,
            crdts: crdts
                .iter()
                .map(|(property, kind)| ((*property).to_owned(), *kind))
                .collect(),
            ..TypeProfile::default()
        },
        ..ReplicationRules::default()
    }
}

/// The parts of a resolution a test names: side, property, policy, kept and lost value with
/// their writers. The reason is prose and checked separately.
fn summary(resolution: &Resolution) -> (Side, &str, ConflictPolicy, &Value, &str, &Value, &str) {
    (
        resolution.side,
        resolution.property.as_str(),
        resolution.policy,
        &resolution.kept,
        resolution.kept_from.as_str(),
        &resolution.lost,
        resolution.lost_from.as_str(),
    )
}

/// Asserts that each of `replicas` holds `expected` as its `side` state.
fn assert_state(replicas: &[&Replica], side: Side, expected: &Value) {
    for replica in replicas {
        let id = replica.id();
        assert_eq!(&replica.state(side), expected, "{side:?} state at {id}");
    }
}

/// The one resolution `replica` recorded.
fn only_resolution(replica: &Replica) -> &Resolution {
    let all = replica.resolutions();
    assert_eq!(all.len(), 1, "{}: {all:?}", replica.id());
    all[0]
}

/// The edge sends the hub its own changes and merges the hub's answer, or the other way round.
fn exchange(hub: &mut Replica, edge: &mut Replica, edge_first: bool) {
    if edge_first {
        hub.merge_all(&edge.changes_since(0));
        pull(edge, hub);
    } else {
        pull(edge, hub);
        hub.merge_all(&edge.changes_since(0));
    }
}

// ---------------------------------------------------------------------------------------------
// Policies

/// The hub and an edge whose clock is a minute ahead change desired `mode` concurrently under
/// MERGE, the hub to "eco", the edge to "off", then sync in the order `exchange` takes.
fn concurrent_mode_changes(edge_first: bool) -> (Replica, Replica) {
    let rules = ReplicationRules::default();
    let mut hub = Replica::hub(&rules, T0);
    let mut edge = Replica::edge(&rules, EDGE_A, T0 + 60_000);
    hub.write_desired(json!({"mode": "eco"}));
    edge.write_desired(json!({"mode": "off"}));
    exchange(&mut hub, &mut edge, edge_first);
    (hub, edge)
}

/// Under MERGE the hub's concurrent desired change wins even though the edge's clock says the
/// edge wrote later, and the hub records what the edge lost.
#[test]
fn under_merge_a_concurrent_desired_change_goes_to_the_cloud_in_either_order() {
    for edge_first in [true, false] {
        let (hub, edge) = concurrent_mode_changes(edge_first);
        assert_state(&[&hub, &edge], Side::Desired, &json!({"mode": "eco"}));
        assert_eq!(hub.clock(), edge.clock());
        let expected = (
            Side::Desired,
            "mode",
            ConflictPolicy::Merge,
            &json!("eco"),
            HUB_REPLICA,
            &json!("off"),
            EDGE_A,
        );
        let at_hub = only_resolution(&hub);
        assert_eq!(summary(at_hub), expected, "edge first: {edge_first}");
        assert!(
            at_hub.reason.starts_with("MERGE: ") && at_hub.reason.contains("favours"),
            "{}",
            at_hub.reason
        );
        if !edge_first {
            // The edge heard of the hub's write before the hub heard of the edge's: both
            // record the conflict.
            assert_eq!(summary(only_resolution(&edge)), expected);
        }
    }
}

/// The normal sync (the edge sends its changes, the hub answers with its state) leaves the edge
/// without a record that its value lost to a concurrent one.
#[test]
fn under_merge_the_edge_records_its_lost_value_when_the_hub_answers_after_resolving() {
    let (hub, edge) = concurrent_mode_changes(true);
    assert_eq!(edge.desired(), json!({"mode": "eco"}));
    // The hub's is the expected one (see the test above).
    assert_eq!(
        summary(only_resolution(&edge)),
        summary(only_resolution(&hub))
    );
}

/// Under MERGE the device's concurrent reading wins even though the hub's write is newer.
#[test]
fn under_merge_a_concurrent_reported_change_goes_to_the_device_in_either_order() {
    for edge_first in [true, false] {
        let rules = ReplicationRules::default();
        let mut hub = Replica::hub(&rules, T0 + 60_000);
        let mut edge = Replica::edge(&rules, EDGE_A, T0);
        edge.write_reported(json!({"temp": 20}));
        hub.write_reported(json!({"temp": 25}));
        exchange(&mut hub, &mut edge, edge_first);

        assert_state(&[&hub, &edge], Side::Reported, &json!({"temp": 20}));
        assert_eq!(
            summary(only_resolution(&hub)),
            (
                Side::Reported,
                "temp",
                ConflictPolicy::Merge,
                &json!(20),
                EDGE_A,
                &json!(25),
                HUB_REPLICA,
            )
        );
    }
}

/// A write made after seeing another value overrides it whatever the policy favours and
/// however far behind the writer's wall clock is: it is not a conflict.
#[test]
fn a_change_made_after_seeing_the_hubs_value_wins_without_a_conflict() {
    let rules = ReplicationRules::default();
    // The edge's clock is ten minutes behind the hub's.
    let mut hub = Replica::hub(&rules, T0 + 600_000);
    let mut edge = Replica::edge(&rules, EDGE_A, T0);
    hub.write_desired(json!({"mode": "eco"}));
    pull(&mut edge, &mut hub);
    assert_eq!(edge.desired(), json!({"mode": "eco"}));
    edge.tick(1_000);
    let write = edge.write_desired(json!({"mode": "off"}));

    let hub_stamp = &hub.snapshot().desired["mode"].stamp;
    let edge_stamp = &write.replica.as_ref().unwrap().desired["mode"].stamp;
    assert!(
        edge_stamp.hlc > hub_stamp.hlc,
        "{edge_stamp:?} after {hub_stamp:?}"
    );

    hub.merge_all(&edge.changes_since(0));
    assert_eq!(
        pull(&mut edge, &mut hub),
        None,
        "the edge already had it all"
    );
    assert_state(&[&hub, &edge], Side::Desired, &json!({"mode": "off"}));
    for replica in [&hub, &edge] {
        assert!(replica.resolutions().is_empty(), "{}", replica.id());
    }
    assert_eq!(hub.clock(), edge.clock());
}

/// Per-property policies override the profile's: here the device owns a desired setpoint and
/// the cloud a reported calibration, against what MERGE would do and against the clocks.
#[test]
fn per_property_policies_decide_concurrent_changes_of_those_properties() {
    let mut rules = ReplicationRules::default();
    rules.default.properties = [
        ("setpoint".to_owned(), ConflictPolicy::DeviceWins),
        ("calibration".to_owned(), ConflictPolicy::CloudWins),
    ]
    .into();
    let mut hub = Replica::hub(&rules, T0 + 1_000);
    let mut edge = Replica::edge(&rules, EDGE_A, T0);
    // The losing side writes each property later by the wall clock.
    edge.write_desired(json!({"setpoint": 19, "mode": "off"}));
    hub.write_desired(json!({"setpoint": 21, "mode": "eco"}));
    hub.write_reported(json!({"calibration": 1.5}));
    edge.tick(5_000);
    edge.write_reported(json!({"calibration": 1.2}));
    exchange(&mut hub, &mut edge, true);

    let desired = json!({"setpoint": 19, "mode": "eco"});
    assert_state(&[&hub, &edge], Side::Desired, &desired);
    assert_state(&[&hub, &edge], Side::Reported, &json!({"calibration": 1.5}));
    let mut policies: Vec<_> = hub
        .resolutions()
        .into_iter()
        .map(|resolution| (resolution.property.as_str(), resolution.policy))
        .collect();
    policies.sort_unstable_by_key(|(property, _)| *property);
    assert_eq!(
        policies,
        [
            ("calibration", ConflictPolicy::CloudWins),
            ("mode", ConflictPolicy::Merge),
            ("setpoint", ConflictPolicy::DeviceWins),
        ]
    );
}

/// A device type's profile replaces the default one for its twins, at the hub from the first
/// write (the type is declared) and at an edge that knows the type.
#[test]
fn device_type_profiles_decide_concurrent_changes_of_their_twins() {
    let profile = |policy| TypeProfile {
        policy,
        ..TypeProfile::default()
    };
    let rules = ReplicationRules {
        device_types: [
            ("pump".to_owned(), profile(ConflictPolicy::DeviceWins)),
            ("valve".to_owned(), profile(ConflictPolicy::CloudWins)),
        ]
        .into(),
        ..ReplicationRules::default()
    };
    // (device type, the desired and reported states that must win at both)
    for (device_type, desired, reported) in [
        ("pump", json!({"mode": "off"}), json!({"temp": 20})),
        ("valve", json!({"mode": "eco"}), json!({"temp": 25})),
    ] {
        let mut hub = Replica::hub(&rules, T0);
        let mut edge = Replica::edge(&rules, EDGE_A, T0);
        let meta =
            MetaPatch::from_json(&json!({"device_type": device_type})).expect("a valid meta patch");
        hub.write(Change::Meta(meta));
        assert!(
            hub.twin().replica.is_none(),
            "a meta change stamps nothing yet"
        );
        // The edge learns the device type with the hub's state.
        pull(&mut edge, &mut hub);
        assert_eq!(
            edge.twin().meta.device_type.as_deref(),
            Some(device_type),
            "the hub's meta arrives with its state"
        );

        // The edge writes desired later and reported earlier than the hub.
        hub.tick(1_000);
        hub.write_desired(json!({"mode": "eco"}));
        edge.tick(2_000);
        edge.write_desired(json!({"mode": "off"}));
        edge.write_reported(json!({"temp": 20}));
        hub.tick(5_000);
        hub.write_reported(json!({"temp": 25}));
        exchange(&mut hub, &mut edge, true);

        assert_state(&[&hub, &edge], Side::Desired, &desired);
        assert_state(&[&hub, &edge], Side::Reported, &reported);
        let at_hub = hub.resolutions();
        assert_eq!(at_hub.len(), 2, "{device_type}: {at_hub:?}");
        let expected = rules.device_types[device_type].policy;
        assert!(
            at_hub
                .iter()
                .all(|resolution| resolution.policy == expected)
        );
    }
}

/// TIMESTAMP_WINS: a device whose clock runs an hour fast wins a concurrent write the hub made
/// later in real time; but once the hub has heard of it, the hub's next write is stamped after
/// it (the hybrid clock carries the fast wall time along), so the fast clock does not win
/// forever.
#[test]
fn under_timestamp_wins_a_fast_clock_wins_concurrent_writes_but_not_later_ones() {
    let rules = rules_with(ConflictPolicy::TimestampWins, &[]);
    let mut hub = Replica::hub(&rules, T0 + 1_000);
    let mut edge = Replica::edge(&rules, EDGE_A, T0 + HOUR_MS);
    edge.write_desired(json!({"mode": "off"}));
    hub.write_desired(json!({"mode": "eco"}));
    exchange(&mut hub, &mut edge, true);

    assert_state(&[&hub, &edge], Side::Desired, &json!({"mode": "off"}));
    let at_hub = only_resolution(&hub);
    assert_eq!(
        summary(at_hub),
        (
            Side::Desired,
            "mode",
            ConflictPolicy::TimestampWins,
            &json!("off"),
            EDGE_A,
            &json!("eco"),
            HUB_REPLICA,
        )
    );
    assert!(
        at_hub.reason.contains("newer hybrid logical timestamp"),
        "{}",
        at_hub.reason
    );

    // Still an hour behind the edge by the wall clock.
    hub.tick(1_000);
    let write = hub.write_desired(json!({"mode": "boost"}));
    let stamp = &write.replica.as_ref().unwrap().desired["mode"].stamp;
    assert_eq!(
        stamp.hlc.wall,
        Millis(T0 + HOUR_MS),
        "the hub's clock was dragged ahead"
    );
    assert!(stamp.hlc.logical > 0);
    edge.merge_all(&hub.changes_since(0));
    assert_eq!(hub.merge(&edge.snapshot()), Ok(None));
    assert_state(&[&hub, &edge], Side::Desired, &json!({"mode": "boost"}));
    assert_eq!(edge.resolutions().len(), 0, "{:?}", edge.resolutions());
}

// ---------------------------------------------------------------------------------------------
// CRDTs

/// Counters count each increment once however often and in whatever order states travel, and
/// an OR-Set's concurrent add wins over a remove while an unopposed remove takes effect.
#[test]
fn crdt_properties_count_every_increment_once_and_sets_converge() {
    let rules = rules_with(
        ConflictPolicy::Merge,
        &[
            ("odometer", CrdtKind::GCounter),
            ("level", CrdtKind::PnCounter),
            ("modes", CrdtKind::OrSet),
        ],
    );
    let mut hub = Replica::hub(&rules, T0);
    let mut a = Replica::edge(&rules, EDGE_A, T0 - 30_000);
    let mut b = Replica::edge(&rules, EDGE_B, T0 + 45_000);

    a.write_reported(json!({"modes": {"add": ["eco", "boost"]}}));
    hub.merge_all(&a.changes_since(0));
    pull(&mut b, &mut hub);
    assert_eq!(b.reported(), json!({"modes": ["boost", "eco"]}));

    // Partitioned.
    let since_a = a.twin().version;
    let since_b = b.twin().version;
    a.write_reported(json!({"odometer": {"increment": 5}, "level": {"increment": 3}}));
    a.write_reported(json!({"odometer": {"increment": 2}}));
    a.write_reported(json!({"modes": {"add": ["night", "boost"]}}));
    b.write_reported(json!({"odometer": {"increment": 7}}));
    b.write_reported(json!({"level": {"decrement": 4}}));
    b.write_reported(json!({"modes": {"remove": ["eco", "boost"]}}));
    assert_eq!(a.reported()["odometer"], json!(7));
    assert_eq!(b.reported()["level"], json!(-4));
    assert_eq!(b.reported()["modes"], json!([]));

    let expected = json!({"odometer": 14, "level": -1, "modes": ["boost", "night"]});
    for _ in 0..3 {
        hub.merge_all(&a.changes_since(0));
        hub.merge_all(&a.changes_since(since_a));
        assert_eq!(hub.reported()["odometer"], json!(7), "a's counted once");
        pull(&mut a, &mut hub);
        pull(&mut a, &mut hub);
    }
    for _ in 0..3 {
        hub.merge_all(&b.changes_since(since_b));
        pull(&mut b, &mut hub);
        pull(&mut hub, &mut b);
        pull(&mut b, &mut a);
        assert_eq!(b.reported(), expected);
    }
    assert_eq!(a.reported()["odometer"], json!(7), "a has not heard of b");
    for _ in 0..3 {
        pull(&mut a, &mut b);
        pull(&mut hub, &mut a);
        pull(&mut a, &mut hub);
        a.merge_all(&b.changes_since(0));
        hub.merge_all(&b.changes_since(0));
    }
    assert_state(&[&hub, &a, &b], Side::Reported, &expected);
}

/// Rules that make `cycles` a G-Counter for pumps only, as docs/EDGE.md declares them.
fn pump_rules() -> ReplicationRules {
    ReplicationRules {
        device_types: [(
            "pump".to_owned(),
            TypeProfile {
                crdts: [("cycles".to_owned(), CrdtKind::GCounter)].into(),
                ..TypeProfile::default()
            },
        )]
        .into(),
        ..ReplicationRules::default()
    }
}

/// The hub's meta reaches the edge with its state, and with it the device type's rules: an
/// increment at the edge is counted, and the hub's increment adds to it.
#[test]
fn the_hubs_meta_gives_the_edge_its_device_types_crdt_rules() {
    let rules = pump_rules();
    let mut hub = Replica::hub(&rules, T0);
    let mut edge = Replica::edge(&rules, EDGE_A, T0);
    let meta = json!({"device_type": "pump", "tags": {"site": "berlin"}});
    hub.write(Change::Meta(
        MetaPatch::from_json(&meta).expect("a valid meta patch"),
    ));
    let entry = pull(&mut edge, &mut hub).expect("the hub's state changes the edge");
    assert_eq!(entry.kind, HistoryKind::Meta, "only meta came");
    assert_eq!(edge.twin().meta, hub.twin().meta);
    assert_eq!(
        pull(&mut edge, &mut hub),
        None,
        "the same meta again is stale"
    );

    edge.write_reported(json!({"cycles": {"increment": 3}}));
    hub.merge_all(&edge.changes_since(0));
    hub.write_reported(json!({"cycles": {"increment": 10}}));
    pull(&mut edge, &mut hub);
    assert_state(&[&hub, &edge], Side::Reported, &json!({"cycles": 13}));
}

/// Before the hub's meta has arrived, the edge cannot tell whether `cycles` is a counter: it
/// refuses the operation rather than store it as a plain object, and takes plain values and
/// properties no device type declares a CRDT. Meta is never written at the edge.
#[test]
fn the_edge_refuses_crdt_operations_until_it_knows_the_device_type() {
    let mut edge = Replica::edge(&pump_rules(), EDGE_A, T0);
    for operation in [
        json!({"increment": 3}),
        json!({"decrement": 1}),
        json!({"add": ["a"]}),
        json!({"add": [], "remove": ["b"]}),
    ] {
        assert_eq!(
            edge.update(Change::Reported {
                patch: json!({"temp": 20, "cycles": operation}),
                device_version: None,
            }),
            Err(ModelError::DeviceTypeUnknown {
                property: "cycles".into()
            }),
            "{operation}"
        );
    }
    assert!(edge.twin.is_none(), "nothing was written");
    edge.write_reported(json!({"cycles": 4, "other": {"increment": 1}}));
    assert_eq!(
        edge.update(Change::Meta(MetaPatch::default())),
        Err(ModelError::MetaOwnedByHub)
    );

    // The hub says the twin has no device type: the default rules apply, a plain value.
    let mut hub = Replica::hub(&pump_rules(), T0);
    hub.write_reported(json!({"temp": 19}));
    pull(&mut edge, &mut hub);
    edge.write_reported(json!({"cycles": {"increment": 3}}));
    assert_eq!(edge.reported()["cycles"], json!({"increment": 3}));
}

/// Meta in a change from an edge means nothing at the hub: the hub owns it.
#[test]
fn the_hub_ignores_meta_sent_by_an_edge() {
    let rules = ReplicationRules::default();
    let mut hub = Replica::hub(&rules, T0);
    let mut edge = Replica::edge(&rules, EDGE_A, T0);
    edge.write_reported(json!({"temp": 20}));
    let mut changes = edge.changes_since(0);
    changes[0].meta = Some(Meta {
        device_type: Some("pump".into()),
        ..Meta::default()
    });
    hub.merge_all(&changes);
    assert_eq!(hub.twin().meta, Meta::default());
}

/// A CRDT operation the property's kind does not understand is refused and changes nothing,
/// not even the valid properties written beside it.
#[test]
fn a_malformed_crdt_operation_is_refused_and_changes_nothing() {
    let rules = rules_with(ConflictPolicy::Merge, &[("odometer", CrdtKind::GCounter)]);
    let mut edge = Replica::edge(&rules, EDGE_A, T0);
    edge.write_reported(json!({"odometer": {"increment": 5}}));
    let before = edge.twin.clone();
    for operation in [
        json!({"steps": "five"}),
        json!({"increment": "five"}),
        json!({"increment": -1}),
        json!(5),
    ] {
        let result = edge.update(Change::Reported {
            patch: json!({"odometer": operation, "temp": 21}),
            device_version: None,
        });
        match result {
            Err(ModelError::InvalidField { field, reason }) => {
                assert_eq!(field, "reported state");
                assert!(
                    reason.contains("odometer") && reason.contains("g_counter"),
                    "{reason}"
                );
            }
            other => panic!("{operation} was not refused: {other:?}"),
        }
        assert_eq!(edge.twin, before, "{operation} changed the twin");
    }
    assert_eq!(edge.history.len(), 1);
    assert_eq!(edge.reported(), json!({"odometer": 5}));
}

/// The hub's rules declare the odometer a g_counter, yet a report of an increment to a twin the
/// hub does not replicate yet is stored as the operation's JSON, and the increment is lost once
/// an edge's counter arrives.
#[test]
fn a_crdt_increment_reported_to_the_hub_before_it_replicates_the_twin_is_counted() {
    let rules = rules_with(ConflictPolicy::Merge, &[("odometer", CrdtKind::GCounter)]);
    let mut hub = Replica::hub(&rules, T0);
    let mut edge = Replica::edge(&rules, EDGE_A, T0);
    hub.write_reported(json!({"odometer": {"increment": 5}}));
    assert_eq!(hub.reported(), json!({"odometer": 5}));
    edge.write_reported(json!({"odometer": {"increment": 2}}));
    exchange(&mut hub, &mut edge, true);
    assert_state(&[&hub, &edge], Side::Reported, &json!({"odometer": 7}));
}

/// A replica that writes a CRDT operation leaving the state at its bottom (an increment by 0,
/// a remove from an empty set) shows the CRDT's value; the others merge the same state but,
/// seeing no change in it, never show the property.
#[test]
fn an_increment_by_zero_shows_the_same_counter_everywhere() {
    let rules = rules_with(
        ConflictPolicy::Merge,
        &[("odometer", CrdtKind::GCounter), ("modes", CrdtKind::OrSet)],
    );
    let mut hub = Replica::hub(&rules, T0);
    let mut edge = Replica::edge(&rules, EDGE_A, T0);
    edge.write_reported(json!({"odometer": {"increment": 0}, "modes": {"remove": ["eco"]}}));
    assert_eq!(edge.reported(), json!({"odometer": 0, "modes": []}));
    exchange(&mut hub, &mut edge, true);
    assert_eq!(hub.reported(), edge.reported());
}

// ---------------------------------------------------------------------------------------------
// The hub's state before it replicates a twin

/// The hub keeps no replication state for a twin until an edge first syncs it; from that sync on
/// its writes are stamped against the recorded state. Were the first state made up again at
/// every snapshot, two writes in one millisecond (or with the clock stepped back) would share a
/// stamp with two values, and edges that pulled between them would never converge.
#[test]
fn two_hub_values_in_one_millisecond_before_replicating_still_converge() {
    let rules = ReplicationRules::default();
    let mut hub = Replica::hub(&rules, T0);
    let mut a = Replica::edge(&rules, EDGE_A, T0);
    let mut b = Replica::edge(&rules, EDGE_B, T0);
    hub.write_desired(json!({"mode": "eco"}));
    pull(&mut a, &mut hub);
    hub.write_desired(json!({"mode": "boost"}));
    pull(&mut b, &mut hub);
    assert_ne!(
        a.snapshot().desired["mode"].stamp,
        b.snapshot().desired["mode"].stamp,
        "two values, two stamps"
    );
    let mut replicas = [hub, a, b];
    exchange_all(&mut replicas);
    let [hub, a, b] = &replicas;
    assert_state(&[hub, a, b], Side::Desired, &json!({"mode": "boost"}));
}

/// The same re-stamping undoes a causal override: the hub's unchanged value, stamped anew at
/// its last update when it starts replicating, outranks an edge's later change of it.
#[test]
fn a_change_made_after_seeing_the_hubs_value_survives_an_unrelated_hub_write() {
    let rules = ReplicationRules::default();
    let mut hub = Replica::hub(&rules, T0);
    let mut edge = Replica::edge(&rules, EDGE_A, T0);
    hub.write_desired(json!({"fan": 1}));
    pull(&mut edge, &mut hub);
    hub.tick(1_000);
    hub.write_desired(json!({"mode": "eco"}));
    edge.tick(500);
    edge.write_desired(json!({"fan": 2}));
    exchange(&mut hub, &mut edge, true);
    assert_state(
        &[&hub, &edge],
        Side::Desired,
        &json!({"mode": "eco", "fan": 2}),
    );
    for replica in [&hub, &edge] {
        assert!(replica.resolutions().is_empty(), "{}", replica.id());
    }
}

/// A property the hub removes before it replicates the twin leaves no stamp behind, so an edge
/// that pulled the hub's earlier value keeps it through the normal sync, forever.
#[test]
fn a_removal_at_the_hub_before_it_replicates_reaches_the_edges() {
    let rules = ReplicationRules::default();
    let mut hub = Replica::hub(&rules, T0);
    let mut edge = Replica::edge(&rules, EDGE_A, T0);
    hub.write_desired(json!({"mode": "eco", "fan": 1}));
    pull(&mut edge, &mut hub);
    hub.tick(1_000);
    hub.write_desired(json!({"mode": null}));
    edge.tick(2_000);
    edge.write_desired(json!({"fan": 2}));
    exchange(&mut hub, &mut edge, true);
    assert_eq!(hub.desired(), json!({"fan": 2}));
    assert_eq!(
        edge.desired(),
        json!({"fan": 2}),
        "the edge kept the removed mode"
    );
}

// ---------------------------------------------------------------------------------------------
// Merging and its records

#[test]
fn merging_a_state_the_replica_already_has_is_stale() {
    let rules = ReplicationRules::default();
    let mut hub = Replica::hub(&rules, T0);
    let mut edge = Replica::edge(&rules, EDGE_A, T0 + 5);
    hub.write_desired(json!({"mode": "eco"}));
    edge.write_reported(json!({"temp": 20}));
    edge.write_desired(json!({"fan": 2}));

    // A state its own replica made, and a replica's own snapshot of a twin it does not
    // replicate yet.
    let own = edge.snapshot();
    assert_eq!(edge.merge(&own), Ok(None));
    let own = hub.snapshot();
    assert_eq!(hub.merge(&own), Ok(None));

    assert!(pull(&mut hub, &mut edge).is_some());
    assert_eq!(hub.merge(&edge.snapshot()), Ok(None));
    for change in edge.changes_since(0) {
        assert_eq!(hub.merge(&change), Ok(None), "{change:?}");
    }

    assert!(pull(&mut edge, &mut hub).is_some());
    assert_eq!(edge.merge(&hub.snapshot()), Ok(None));
    assert_eq!(hub.merge(&edge.snapshot()), Ok(None));
    assert_eq!(hub.reported(), edge.reported());
    assert_eq!(hub.desired(), json!({"mode": "eco", "fan": 2}));
    assert_eq!(edge.desired(), hub.desired());
}

#[test]
fn merging_an_empty_delta_into_a_missing_twin_is_missing() {
    let rules = ReplicationRules::default();
    let empty = ReplicaDelta {
        origin: EDGE_A.into(),
        ..ReplicaDelta::default()
    };
    let mut hub = Replica::hub(&rules, T0);
    assert_eq!(hub.merge(&empty), Err(ModelError::TwinNotFound));
    assert!(hub.twin.is_none() && hub.history.is_empty());

    // Into an existing twin the hub kept alone it starts replication (recorded once), then it
    // is merely stale; a tombstone counts as missing.
    hub.write_desired(json!({"mode": "eco"}));
    assert!(hub.merge(&empty).is_ok_and(|entry| entry.is_some()));
    assert!(hub.twin().replica.is_some());
    assert_eq!(hub.merge(&empty), Ok(None));
    hub.write(Change::Delete);
    assert_eq!(hub.merge(&empty), Err(ModelError::TwinNotFound));
}

/// A local write's history entry carries its delta: the origin, the document version and a
/// vector clock whose own entry counts the replica's writes.
#[test]
fn local_writes_record_their_origin_and_count_themselves_in_the_clock() {
    let rules = ReplicationRules::default();
    let mut edge = Replica::edge(&rules, EDGE_A, T0);
    let mut hub = Replica::hub(&rules, T0);
    for (n, patch) in [json!({"a": 1}), json!({"b": 2}), json!({"a": null})]
        .into_iter()
        .enumerate()
    {
        let entry = edge.write_reported(patch);
        let delta = entry.replica.as_deref().expect("a replicated write");
        assert_eq!(delta.origin, EDGE_A);
        assert_eq!(delta.version, Some(entry.version));
        assert_eq!(delta.clock.get(EDGE_A), n as u64 + 1);
        assert_eq!(delta.clock.iter().count(), 1, "{:?}", delta.clock);
        assert_eq!(delta.reported.len(), 1);
    }
    let removal = &edge.history[2].replica.as_ref().unwrap().reported["a"];
    assert_eq!(removal.value, Value::Null, "a removal is a write of null");
    assert_eq!(removal.stamp.seq, 3);

    // The hub counts its own writes once it replicates: its whole past is one change.
    hub.write_desired(json!({"mode": "eco"}));
    assert!(hub.history[0].replica.is_none(), "not replicated yet");
    hub.merge_all(&edge.changes_since(0));
    let entry = hub.write_desired(json!({"mode": "off"}));
    let delta = entry.replica.as_deref().unwrap();
    assert_eq!(delta.origin, HUB_REPLICA);
    assert_eq!(
        (delta.clock.get(HUB_REPLICA), delta.clock.get(EDGE_A)),
        (2, 3)
    );
    assert_eq!(hub.changes_since(0), vec![delta.clone()]);
}

#[test]
fn entries_of_two_partitioned_edges_are_concurrent_and_one_replicas_are_ordered() {
    let rules = ReplicationRules::default();
    let mut a = Replica::edge(&rules, EDGE_A, T0);
    let mut b = Replica::edge(&rules, EDGE_B, T0);
    let clock = |entry: &HistoryEntry| entry.replica.as_ref().unwrap().clock.clone();
    let a1 = clock(&a.write_reported(json!({"x": 1})));
    let b1 = clock(&b.write_reported(json!({"x": 2})));
    let a2 = clock(&a.write_reported(json!({"y": 1})));
    assert_eq!(a1.compare(&b1), Causality::Concurrent);
    assert_eq!(a2.compare(&b1), Causality::Concurrent);
    assert_eq!(a1.compare(&a2), Causality::Before);
    assert_eq!(a2.compare(&a1), Causality::After);

    b.merge_all(&a.changes_since(0));
    let b2 = clock(&b.write_reported(json!({"z": 1})));
    assert_eq!(a2.compare(&b2), Causality::Before, "b heard of a2 first");
    assert_eq!(b1.compare(&b2), Causality::Before);
}

// ---------------------------------------------------------------------------------------------
// Properties

/// Properties the generated writes touch; few, so that writes collide.
const PROPERTIES: [&str; 3] = ["a", "b", "c"];
/// The g_counter the edges increment.
const COUNTER: &str = "odometer";

/// One step of a generated run over three replicas: 0 the hub, 1 and 2 edges.
#[derive(Clone, Debug)]
enum Op {
    /// `replica`'s clock moves by `jump` ms (back too), then it writes `value` (`None`: a
    /// removal) to one property.
    Write {
        replica: usize,
        side: Side,
        property: usize,
        value: Option<u8>,
        jump: i64,
    },
    /// Edge `1 + edge` adds `amount` (at least 1: see
    /// `an_increment_by_zero_shows_the_same_counter_everywhere`) to the counter.
    Increment { edge: usize, amount: u8, jump: i64 },
    /// `from` sends `to` its own changes recorded after version `since`.
    SendChanges { from: usize, to: usize, since: u64 },
    /// `from` sends `to` its whole state.
    SendSnapshot { from: usize, to: usize },
}

fn arb_pair() -> impl Strategy<Value = (usize, usize)> {
    (0..3usize, 1..3usize).prop_map(|(from, offset)| (from, (from + offset) % 3))
}

fn arb_op() -> impl Strategy<Value = Op> {
    // A still clock (two writes in one millisecond) is common, and so is one stepping back.
    let jump = || prop_oneof![1 => Just(0i64), 3 => -3_000i64..3_000];
    let side = prop_oneof![Just(Side::Reported), Just(Side::Desired)];
    prop_oneof![
        4 => (0..3usize, side, 0..PROPERTIES.len(), proptest::option::of(0u8..3), jump())
            .prop_map(|(replica, side, property, value, jump)| Op::Write {
                replica,
                side,
                property,
                value,
                jump,
            }),
        1 => (0..2usize, 1u8..5, jump())
            .prop_map(|(edge, amount, jump)| Op::Increment { edge, amount, jump }),
        2 => (arb_pair(), 0u64..6)
            .prop_map(|((from, to), since)| Op::SendChanges { from, to, since }),
        2 => arb_pair().prop_map(|(from, to)| Op::SendSnapshot { from, to }),
    ]
}

fn arb_ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(arb_op(), 1..=12)
}

fn arb_policy() -> impl Strategy<Value = ConflictPolicy> {
    proptest::sample::select(POLICIES.to_vec())
}

/// The hub, with a wall clock of its own, and two edges whose clocks are an hour fast and a
/// minute and a half slow. With `hub_replicates_all` the hub keeps replication state from the
/// twin's first write, as it does for a declared device type.
fn three_replicas(policy: ConflictPolicy, hub_replicates_all: bool) -> [Replica; 3] {
    let rules = rules_with(policy, &[(COUNTER, CrdtKind::GCounter)]);
    let mut hub = Replica::hub(&rules, T0);
    hub.config.replicates_all = hub_replicates_all;
    [
        hub,
        Replica::edge(&rules, EDGE_A, T0 + HOUR_MS),
        Replica::edge(&rules, EDGE_B, T0 - 90_000),
    ]
}

/// Runs `ops`; returns the total of the increments made, or `None` if nobody incremented.
fn run(replicas: &mut [Replica; 3], ops: &[Op]) -> Option<u64> {
    let mut total = None;
    for op in ops {
        match *op {
            Op::Write {
                replica,
                side,
                property,
                value,
                jump,
            } => {
                let replica = &mut replicas[replica];
                replica.tick(jump);
                let patch = json!({ PROPERTIES[property]: value });
                match side {
                    Side::Reported => replica.write_reported(patch),
                    Side::Desired => replica.write_desired(patch),
                };
            }
            Op::Increment { edge, amount, jump } => {
                let edge = &mut replicas[1 + edge];
                edge.tick(jump);
                edge.write_reported(json!({ COUNTER: {"increment": amount} }));
                *total.get_or_insert(0) += u64::from(amount);
            }
            Op::SendChanges { from, to, since } => {
                let changes = replicas[from].changes_since(since);
                replicas[to].merge_all(&changes);
            }
            Op::SendSnapshot { from, to } => {
                if replicas[from].twin.is_some() {
                    let snapshot = replicas[from].snapshot();
                    replicas[to].merged(&snapshot);
                }
            }
        }
    }
    total
}

/// Every replica sends its whole state to every other, twice.
fn exchange_all(replicas: &mut [Replica; 3]) {
    for _ in 0..2 {
        for from in 0..3 {
            if replicas[from].twin.is_none() {
                continue;
            }
            let snapshot = replicas[from].snapshot();
            for (to, replica) in replicas.iter_mut().enumerate() {
                if to != from {
                    replica.merged(&snapshot);
                }
            }
        }
    }
}

/// After a full exchange the three replicas hold the same state and clock, the counter holds
/// every increment once, and merging any replica's state again changes nothing.
fn check_convergence(ops: &[Op], hub_replicates_all: bool) -> Result<(), TestCaseError> {
    for policy in POLICIES {
        let mut replicas = three_replicas(policy, hub_replicates_all);
        let total = run(&mut replicas, ops);
        exchange_all(&mut replicas);
        if replicas.iter().all(|replica| replica.twin.is_none()) {
            return Ok(());
        }
        let [hub, a, b] = &replicas;
        for other in [a, b] {
            prop_assert_eq!(
                hub.reported(),
                other.reported(),
                "{} {}",
                policy,
                other.id()
            );
            prop_assert_eq!(hub.desired(), other.desired(), "{} {}", policy, other.id());
            prop_assert_eq!(hub.clock(), other.clock(), "{} {}", policy, other.id());
        }
        prop_assert_eq!(hub.reported().get(COUNTER).cloned(), total.map(Value::from));
        for from in 0..3 {
            let snapshot = replicas[from].snapshot();
            for (to, replica) in replicas.iter_mut().enumerate() {
                let again = replica.merge(&snapshot);
                prop_assert_eq!(again, Ok(None), "{} {} into {}", policy, from, to);
            }
        }
    }
    Ok(())
}

/// Every delta the three replicas made, and their final states, merged into a fresh edge in
/// the order `keys` gives; returns the fresh edge.
fn observer(policy: ConflictPolicy, deltas: &[ReplicaDelta], keys: &[u32]) -> Replica {
    let rules = rules_with(policy, &[(COUNTER, CrdtKind::GCounter)]);
    let mut observer = Replica::edge(&rules, "edge-z", T0);
    let mut order: Vec<usize> = (0..deltas.len()).collect();
    order.sort_by_key(|&index| (keys[index % keys.len()], index));
    for index in order {
        observer.merged(&deltas[index]);
    }
    observer
}

fn check_order_independence(
    policy: ConflictPolicy,
    ops: &[Op],
    keys: (&[u32], &[u32]),
    hub_replicates_all: bool,
) -> Result<(), TestCaseError> {
    let mut replicas = three_replicas(policy, hub_replicates_all);
    run(&mut replicas, ops);
    let mut deltas: Vec<ReplicaDelta> = replicas
        .iter()
        .flat_map(|replica| replica.changes_since(0))
        .collect();
    deltas.extend(
        replicas
            .iter_mut()
            .filter(|replica| replica.twin.is_some())
            .map(Replica::snapshot),
    );
    if deltas.is_empty() {
        return Ok(());
    }
    let first = observer(policy, &deltas, keys.0);
    let second = observer(policy, &deltas, keys.1);
    prop_assert_eq!(first.reported(), second.reported());
    prop_assert_eq!(first.desired(), second.desired());
    prop_assert_eq!(first.clock(), second.clock());
    // Having seen every replica's state, the observer agrees with them once they agree.
    exchange_all(&mut replicas);
    prop_assert_eq!(first.reported(), replicas[0].reported());
    prop_assert_eq!(first.desired(), replicas[0].desired());
    Ok(())
}

// Failures are not saved: a seed file would land outside this module; proptest prints the
// minimal failing input instead.
proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Replicas converge under every policy whatever they wrote, whenever they synced, and
    /// however their clocks ran, once each has seen every other's state.
    #[test]
    fn replicas_converge_when_the_hub_replicates_from_the_first_write(ops in arb_ops()) {
        check_convergence(&ops, true)?;
    }

    /// Merging is a join: the same deltas in two orders give the same state.
    #[test]
    fn merge_order_does_not_matter_when_the_hub_replicates_from_the_first_write(
        policy in arb_policy(),
        ops in arb_ops(),
        first in proptest::collection::vec(any::<u32>(), 32),
        second in proptest::collection::vec(any::<u32>(), 32),
    ) {
        check_order_independence(policy, &ops, (&first, &second), true)?;
    }
}

// The same laws with the hub as deployed, replicating a twin from its first sync. What breaks
// them when the hub's first state is not recorded is a rare sequence (a hub write, its snapshot
// pulled, a second hub write of the same property in the same millisecond), hence more cases.
proptest! {
    #![proptest_config(ProptestConfig {
        cases: 10_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn replicas_converge(ops in arb_ops()) {
        check_convergence(&ops, false)?;
    }

    #[test]
    fn merge_order_does_not_matter(
        policy in arb_policy(),
        ops in arb_ops(),
        first in proptest::collection::vec(any::<u32>(), 32),
        second in proptest::collection::vec(any::<u32>(), 32),
    ) {
        check_order_independence(policy, &ops, (&first, &second), false)?;
    }
}
