//! State-based CRDTs: property values that replicas update independently and merge without
//! coordination, always reaching the same result.
//!
//! Every kind is a join semilattice. For states `a`, `b`, `c` of one kind:
//!
//! ```text
//! join(a, join(b, c)) = join(join(a, b), c)      associative
//! join(a, b)          = join(b, a)               commutative
//! join(a, a)          = a                        idempotent
//! a ⊑ b  ⇔  join(a, b) = b                       the order `is_included_in` decides
//! a ⊑ apply(a, op)                               updates only grow the state
//! ```
//!
//! so replicas may exchange whole states in any order, any number of times, and agree once each
//! has seen every update. The kinds:
//!
//! | kind           | operation a device writes                | value                          |
//! |----------------|------------------------------------------|--------------------------------|
//! | `g_counter`    | `{"increment": n}`, `n ≥ 0`              | the sum, a `u64`               |
//! | `pn_counter`   | `{"increment": n}` or `{"decrement": n}` | increments − decrements, `i64` |
//! | `lww_register` | any JSON value                           | the latest write, or `null`    |
//! | `max_register` | a JSON number                            | the largest number, or `null`  |
//! | `min_register` | a JSON number                            | the smallest number, or `null` |
//! | `or_set`       | `{"add": [..], "remove": [..]}`          | the live elements, an array    |
//!
//! Every state is built from `BTreeMap`s and `BTreeSet`s, so equal states compare equal and
//! serialize to the same bytes.
//!
//! What the caller must uphold, and the known weaknesses:
//! - Each writer has its own replica id and keeps its state durably. A replica that forgets its
//!   state and writes again under the same id loses increments (its lower count is joined away)
//!   and may reuse OR-Set tags.
//! - Stamps come from the replica's hybrid logical clock ([`Hlc`]) and are unique per replica. A
//!   last-writer-wins write stamped before the register's current write loses, exactly as it would
//!   in a join; keeping the clock ahead of every stamp received (`Hlc::observe`) avoids that.
//! - OR-Set tombstones are never collected: removing an element keeps its tags forever, since
//!   without knowing that every replica has seen a removal, dropping it could resurrect the
//!   element.
//! - Counter values are exact for what one replica can write; concurrent writes whose joined sum
//!   leaves the value's range (`u64`, `i64`) are shown saturated at the end of the range.

use crate::error::json_type_name;
use crate::hlc::Hlc;
use crate::vclock::VectorClock;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Number, Value};
use std::cmp::Ordering;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use thiserror::Error;

/// Longest excerpt of an offending operation quoted in an error message: enough to recognise it,
/// not enough to echo a large payload back.
const MAX_QUOTED_CHARS: usize = 64;

/// The kinds of CRDT a property can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrdtKind {
    /// A counter that only grows.
    GCounter,
    /// A counter that grows and shrinks.
    PnCounter,
    /// A register holding the last write, by hybrid logical clock.
    LwwRegister,
    /// A register holding the largest number written.
    MaxRegister,
    /// A register holding the smallest number written.
    MinRegister,
    /// An observed-remove set in which a concurrent add wins over a remove.
    OrSet,
}

impl CrdtKind {
    /// Every kind, in declaration order.
    pub const ALL: [CrdtKind; 6] = [
        CrdtKind::GCounter,
        CrdtKind::PnCounter,
        CrdtKind::LwwRegister,
        CrdtKind::MaxRegister,
        CrdtKind::MinRegister,
        CrdtKind::OrSet,
    ];

    /// Reads a kind by name, ignoring case and accepting `-` for `_`: `g_counter`, `G-Counter`
    /// and `G_COUNTER` all name the G-Counter.
    pub fn parse(text: &str) -> Option<Self> {
        let wanted = text.to_ascii_lowercase().replace('-', "_");
        Self::ALL.into_iter().find(|kind| kind.name() == wanted)
    }

    /// The snake_case name, as in JSON: `g_counter`, `or_set`, ...
    pub fn name(self) -> &'static str {
        match self {
            CrdtKind::GCounter => "g_counter",
            CrdtKind::PnCounter => "pn_counter",
            CrdtKind::LwwRegister => "lww_register",
            CrdtKind::MaxRegister => "max_register",
            CrdtKind::MinRegister => "min_register",
            CrdtKind::OrSet => "or_set",
        }
    }
}

/// Whether `value` has the shape of a counter's or a set's operation: `{"increment": n}`,
/// `{"decrement": n}`, or `{"add": [..]}` and/or `{"remove": [..]}`. Stored as a plain value it
/// would be kept literally, and the operation lost; a replica that cannot tell whether a
/// property is a CRDT refuses such a write instead.
pub fn is_operation(value: &Value) -> bool {
    let Some(fields) = value.as_object() else {
        return false;
    };
    let counter = fields.len() == 1
        && fields
            .keys()
            .all(|key| key == "increment" || key == "decrement");
    let set = !fields.is_empty() && fields.keys().all(|key| key == "add" || key == "remove");
    counter || set
}

impl fmt::Display for CrdtKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a CRDT refused a join or an update. The state is unchanged in every case.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CrdtError {
    /// The two states are of different kinds; a property keeps its kind for life.
    #[error("cannot join {found} state into {expected} state: a property keeps one CRDT kind")]
    KindMismatch { expected: CrdtKind, found: CrdtKind },

    /// The operation is not one this kind understands, or would overflow.
    #[error("invalid {kind} operation: {reason}")]
    InvalidOperation { kind: CrdtKind, reason: String },
}

/// One CRDT property's replicated state. Serialized with its kind under `type` beside the
/// kind's own fields, e.g. `{"type": "g_counter", "counts": {"edge-1": 5}}`; an empty register
/// is just `{"type": "lww_register"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Crdt {
    /// See [`GCounter`].
    GCounter(GCounter),
    /// See [`PnCounter`].
    PnCounter(PnCounter),
    /// See [`LwwRegister`].
    LwwRegister(LwwRegister),
    /// See [`MaxRegister`].
    MaxRegister(MaxRegister),
    /// See [`MinRegister`].
    MinRegister(MinRegister),
    /// See [`OrSet`].
    OrSet(OrSet),
}

impl Crdt {
    /// The bottom element of `kind`: the state before any update, included in every other.
    pub fn new(kind: CrdtKind) -> Crdt {
        match kind {
            CrdtKind::GCounter => Crdt::GCounter(GCounter::default()),
            CrdtKind::PnCounter => Crdt::PnCounter(PnCounter::default()),
            CrdtKind::LwwRegister => Crdt::LwwRegister(LwwRegister::default()),
            CrdtKind::MaxRegister => Crdt::MaxRegister(MaxRegister::default()),
            CrdtKind::MinRegister => Crdt::MinRegister(MinRegister::default()),
            CrdtKind::OrSet => Crdt::OrSet(OrSet::default()),
        }
    }

    /// The kind of this state.
    pub fn kind(&self) -> CrdtKind {
        match self {
            Crdt::GCounter(_) => CrdtKind::GCounter,
            Crdt::PnCounter(_) => CrdtKind::PnCounter,
            Crdt::LwwRegister(_) => CrdtKind::LwwRegister,
            Crdt::MaxRegister(_) => CrdtKind::MaxRegister,
            Crdt::MinRegister(_) => CrdtKind::MinRegister,
            Crdt::OrSet(_) => CrdtKind::OrSet,
        }
    }

    /// The value applications see: a JSON number for counters and number registers, the written
    /// value for a last-writer-wins register, an array for a set; `null` for an empty register.
    pub fn value(&self) -> Value {
        match self {
            Crdt::GCounter(counter) => counter.value(),
            Crdt::PnCounter(counter) => counter.value(),
            Crdt::LwwRegister(register) => register.value(),
            Crdt::MaxRegister(MaxRegister(register)) => register.value(),
            Crdt::MinRegister(MinRegister(register)) => register.value(),
            Crdt::OrSet(set) => set.value(),
        }
    }

    /// Merges `other` into `self`: afterwards `self` is the least state that includes both.
    /// Fails with [`CrdtError::KindMismatch`], changing nothing, if the kinds differ.
    pub fn join(&mut self, other: &Crdt) -> Result<(), CrdtError> {
        match (&mut *self, other) {
            (Crdt::GCounter(mine), Crdt::GCounter(theirs)) => mine.join(theirs),
            (Crdt::PnCounter(mine), Crdt::PnCounter(theirs)) => mine.join(theirs),
            (Crdt::LwwRegister(mine), Crdt::LwwRegister(theirs)) => mine.join(theirs),
            (Crdt::MaxRegister(MaxRegister(mine)), Crdt::MaxRegister(MaxRegister(theirs))) => {
                mine.join(theirs, number_order)
            }
            (Crdt::MinRegister(MinRegister(mine)), Crdt::MinRegister(MinRegister(theirs))) => {
                mine.join(theirs, reverse_number_order)
            }
            (Crdt::OrSet(mine), Crdt::OrSet(theirs)) => mine.join(theirs),
            (mine, theirs) => {
                return Err(CrdtError::KindMismatch {
                    expected: mine.kind(),
                    found: theirs.kind(),
                });
            }
        }
        Ok(())
    }

    /// Applies a local update: `op` is the JSON a device writes for the property (see the module
    /// documentation for each kind's form), `replica` the writing replica's id and `stamp` its
    /// fresh HLC timestamp, unique for the replica and later than its previous ones. Fails with
    /// [`CrdtError::InvalidOperation`], changing nothing, if `op` is not a valid update.
    pub fn apply(&mut self, op: &Value, replica: &str, stamp: Hlc) -> Result<(), CrdtError> {
        match self {
            Crdt::GCounter(counter) => counter.apply(op, replica),
            Crdt::PnCounter(counter) => counter.apply(op, replica),
            Crdt::LwwRegister(register) => register.apply(op, replica, stamp),
            Crdt::MaxRegister(MaxRegister(register)) => {
                register.apply(CrdtKind::MaxRegister, op, number_order)
            }
            Crdt::MinRegister(MinRegister(register)) => {
                register.apply(CrdtKind::MinRegister, op, reverse_number_order)
            }
            Crdt::OrSet(set) => set.apply(op, replica, stamp),
        }
    }

    /// The lattice order: whether every update in `self` is also in `other` (`self ⊑ other`).
    /// States of different kinds are unrelated.
    pub fn is_included_in(&self, other: &Crdt) -> bool {
        match (self, other) {
            (Crdt::GCounter(mine), Crdt::GCounter(theirs)) => mine.is_included_in(theirs),
            (Crdt::PnCounter(mine), Crdt::PnCounter(theirs)) => mine.is_included_in(theirs),
            (Crdt::LwwRegister(mine), Crdt::LwwRegister(theirs)) => mine.is_included_in(theirs),
            (Crdt::MaxRegister(MaxRegister(mine)), Crdt::MaxRegister(MaxRegister(theirs))) => {
                mine.is_included_in(theirs, number_order)
            }
            (Crdt::MinRegister(MinRegister(mine)), Crdt::MinRegister(MinRegister(theirs))) => {
                mine.is_included_in(theirs, reverse_number_order)
            }
            (Crdt::OrSet(mine), Crdt::OrSet(theirs)) => mine.is_included_in(theirs),
            _ => false,
        }
    }
}

/// A grow-only counter: each replica counts its own increments in its own entry, and a join
/// keeps the larger count per replica, so an increment is counted once however often states
/// are exchanged. Serialized as `{"counts": {"edge-1": 5}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GCounter {
    /// Replica id to the total that replica added. The same lattice as a vector clock, so it is
    /// one.
    counts: VectorClock,
}

impl GCounter {
    fn apply(&mut self, op: &Value, replica: &str) -> Result<(), CrdtError> {
        let kind = CrdtKind::GCounter;
        let amount = match single_entry(op) {
            Some(("increment", amount)) => amount,
            _ => {
                return Err(invalid(
                    kind,
                    format!(r#"expected {{"increment": n}}, got {}"#, quote(op)),
                ));
            }
        };
        let amount = match (amount.as_u64(), amount.as_i64()) {
            (Some(amount), _) => amount,
            (None, Some(_)) => {
                return Err(invalid(
                    kind,
                    "a g_counter only grows; use a pn_counter to count down".to_owned(),
                ));
            }
            (None, None) => {
                return Err(invalid(
                    kind,
                    format!(
                        "increment must be a whole number from 0 to {}, got {}",
                        u64::MAX,
                        quote(amount)
                    ),
                ));
            }
        };
        let overflow = || invalid(kind, format!("the counter would exceed {}", u64::MAX));
        if self.counts.total() + u128::from(amount) > u128::from(u64::MAX) {
            return Err(overflow());
        }
        self.counts.add(replica, amount).ok_or_else(overflow)?;
        Ok(())
    }

    fn value(&self) -> Value {
        Value::from(u64::try_from(self.counts.total()).unwrap_or(u64::MAX))
    }

    fn join(&mut self, other: &GCounter) {
        self.counts.join(&other.counts);
    }

    fn is_included_in(&self, other: &GCounter) -> bool {
        other.counts.dominates(&self.counts)
    }
}

/// A counter that also counts down: two grow-only counts per replica, one of increments and one
/// of decrements, whose difference is the value. Serialized as
/// `{"increments": {"edge-1": 5}, "decrements": {"edge-2": 1}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PnCounter {
    /// Replica id to the total that replica added (the P counter).
    increments: VectorClock,
    /// Replica id to the total that replica subtracted, as a positive number (the N counter):
    /// a decrement must grow the state too, or a join could not tell it from an old state.
    decrements: VectorClock,
}

impl PnCounter {
    fn apply(&mut self, op: &Value, replica: &str) -> Result<(), CrdtError> {
        let kind = CrdtKind::PnCounter;
        // Which count grows, by how much, and what that does to the value.
        let (decrement, amount, delta) = match single_entry(op) {
            Some(("increment", amount)) => match amount.as_i64() {
                Some(amount) => (amount < 0, amount.unsigned_abs(), i128::from(amount)),
                None => {
                    return Err(invalid(
                        kind,
                        format!(
                            "increment must be a whole number from {} to {}, got {}",
                            i64::MIN,
                            i64::MAX,
                            quote(amount)
                        ),
                    ));
                }
            },
            Some(("decrement", amount)) => match amount.as_u64() {
                Some(amount) => (true, amount, -i128::from(amount)),
                None => {
                    return Err(invalid(
                        kind,
                        format!(
                            "decrement must be a whole number from 0 to {}, got {}",
                            u64::MAX,
                            quote(amount)
                        ),
                    ));
                }
            },
            _ => {
                return Err(invalid(
                    kind,
                    format!(
                        r#"expected {{"increment": n}} or {{"decrement": n}}, got {}"#,
                        quote(op)
                    ),
                ));
            }
        };
        let overflow = || {
            invalid(
                kind,
                format!(
                    "the counter would leave the range {} to {}",
                    i64::MIN,
                    i64::MAX
                ),
            )
        };
        if i64::try_from(Self::difference(&self.increments, &self.decrements) + delta).is_err() {
            return Err(overflow());
        }
        let counts = if decrement {
            &mut self.decrements
        } else {
            &mut self.increments
        };
        counts.add(replica, amount).ok_or_else(overflow)?;
        Ok(())
    }

    /// Increments minus decrements, exactly: each total is below `2^64` times the number of
    /// replicas, far inside `i128`.
    fn difference(increments: &VectorClock, decrements: &VectorClock) -> i128 {
        let total = |counts: &VectorClock| i128::try_from(counts.total()).unwrap_or(i128::MAX);
        total(increments) - total(decrements)
    }

    fn value(&self) -> Value {
        let difference = Self::difference(&self.increments, &self.decrements)
            .clamp(i128::from(i64::MIN), i128::from(i64::MAX));
        Value::from(i64::try_from(difference).unwrap_or_default())
    }

    fn join(&mut self, other: &PnCounter) {
        self.increments.join(&other.increments);
        self.decrements.join(&other.decrements);
    }

    fn is_included_in(&self, other: &PnCounter) -> bool {
        other.increments.dominates(&self.increments) && other.decrements.dominates(&self.decrements)
    }
}

/// A last-writer-wins register: keeps the write with the latest `(stamp, replica)`. Serialized
/// as `{"current": {"value": .., "stamp": {"wall": .., "logical": ..}, "replica": ".."}}`, or
/// `{}` before the first write.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LwwRegister {
    /// The winning write; `None` until the first. Kept apart from `value` so that a write of
    /// `null` still carries its stamp and wins over older writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    current: Option<LwwWrite>,
}

/// One write to a last-writer-wins register.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct LwwWrite {
    /// What was written.
    value: Value,
    /// When, by the writer's hybrid logical clock; the later write wins.
    stamp: Hlc,
    /// Who wrote it; orders writes from different replicas that carry the same stamp.
    replica: String,
}

impl LwwWrite {
    /// Which write wins. Stamps are unique per replica, so `(stamp, replica)` decides; the value
    /// text only breaks a tie between writes that broke that promise, so that join still
    /// does not depend on the order of arguments.
    fn order(a: &LwwWrite, b: &LwwWrite) -> Ordering {
        a.stamp
            .cmp(&b.stamp)
            .then_with(|| a.replica.cmp(&b.replica))
            .then_with(|| canonical(&a.value).cmp(&canonical(&b.value)))
    }
}

impl LwwRegister {
    fn apply(&mut self, op: &Value, replica: &str, stamp: Hlc) -> Result<(), CrdtError> {
        let write = LwwWrite {
            value: op.clone(),
            stamp,
            replica: replica.to_owned(),
        };
        join_max(&mut self.current, Some(&write), LwwWrite::order);
        Ok(())
    }

    fn value(&self) -> Value {
        self.current
            .as_ref()
            .map_or(Value::Null, |write| write.value.clone())
    }

    fn join(&mut self, other: &LwwRegister) {
        join_max(&mut self.current, other.current.as_ref(), LwwWrite::order);
    }

    fn is_included_in(&self, other: &LwwRegister) -> bool {
        included(
            self.current.as_ref(),
            other.current.as_ref(),
            LwwWrite::order,
        )
    }
}

/// A register that keeps the largest number written, e.g. a peak reading. Serialized as
/// `{"value": 21.5}`, or `{}` before the first write.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MaxRegister(NumberRegister);

/// A register that keeps the smallest number written, e.g. a low-water mark. Serialized as
/// `{"value": 3}`, or `{}` before the first write.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MinRegister(NumberRegister);

/// The state of a max or min register; which number wins is the `order` each method is given
/// ([`number_order`] or its reverse), since that is all that tells the two kinds apart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct NumberRegister {
    /// The winning number so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<Number>,
}

/// An order on the numbers of a [`NumberRegister`]; the larger wins.
type NumberOrder = fn(&Number, &Number) -> Ordering;

impl NumberRegister {
    fn apply(&mut self, kind: CrdtKind, op: &Value, order: NumberOrder) -> Result<(), CrdtError> {
        let number = number_op(kind, op)?;
        join_max(&mut self.value, Some(&number), order);
        Ok(())
    }

    fn value(&self) -> Value {
        self.value.clone().map_or(Value::Null, Value::Number)
    }

    fn join(&mut self, other: &NumberRegister, order: NumberOrder) {
        join_max(&mut self.value, other.value.as_ref(), order);
    }

    fn is_included_in(&self, other: &NumberRegister, order: NumberOrder) -> bool {
        included(self.value.as_ref(), other.value.as_ref(), order)
    }
}

/// An observed-remove set, add wins. Each add attaches a fresh tag to the element; a remove
/// tombstones the tags its replica has seen. An element is present while it has a tag that is
/// not tombstoned, so an add that a remove did not see survives the remove. Serialized as
/// `{"elements": [{"value": "on", "added": [tag, ..], "removed": [tag, ..]}, ..]}`, elements in
/// order of their canonical JSON text and `removed` left out when empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrSet {
    /// Canonical JSON text of the element to its tags. Keyed by the text because JSON values
    /// have no order of their own; serialized as a list because the text would only repeat the
    /// value.
    #[serde(
        serialize_with = "serialize_elements",
        deserialize_with = "deserialize_elements"
    )]
    elements: BTreeMap<String, Element>,
}

/// One element of an OR-Set, with every tag it was ever added under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Element {
    /// The element itself, as the device wrote it.
    value: Value,
    /// A tag per add. Grows only.
    added: BTreeSet<Tag>,
    /// The tags removed so far; the element is present while `added` holds another. Grows only.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    removed: BTreeSet<Tag>,
}

impl Element {
    fn is_live(&self) -> bool {
        self.added.difference(&self.removed).next().is_some()
    }
}

/// What makes one add of an element unique: who added it, and when by their clock.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Tag {
    /// The replica that added the element.
    replica: String,
    /// The replica's timestamp of the add; unique per replica.
    stamp: Hlc,
}

impl OrSet {
    fn apply(&mut self, op: &Value, replica: &str, stamp: Hlc) -> Result<(), CrdtError> {
        let kind = CrdtKind::OrSet;
        let expected = r#"expected {"add": [..], "remove": [..]} with at least one of the two"#;
        let Some(fields) = op.as_object() else {
            return Err(invalid(kind, format!("{expected}, got {}", quote(op))));
        };
        if let Some(key) = fields.keys().find(|key| *key != "add" && *key != "remove") {
            return Err(invalid(kind, format!("{expected}, got the key {key:?}")));
        }
        let list = |key: &str| match fields.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => Err(invalid(
                kind,
                format!(
                    "{key:?} must be an array of elements, got {}",
                    json_type_name(other)
                ),
            )),
        };
        let (adds, removes) = match (list("add")?, list("remove")?) {
            (None, None) => return Err(invalid(kind, format!("{expected}, got {{}}"))),
            (adds, removes) => (adds.map_or(&[][..], Vec::as_slice), removes),
        };
        // Removes first, so that an op that adds and removes one element leaves it present:
        // the add wins, as it would against a concurrent remove.
        for item in removes.into_iter().flatten() {
            if let Some(element) = self.elements.get_mut(&canonical(item)) {
                element.removed.extend(element.added.iter().cloned());
            }
        }
        for item in adds {
            let tag = Tag {
                replica: replica.to_owned(),
                stamp,
            };
            self.elements
                .entry(canonical(item))
                .or_insert_with(|| Element {
                    value: item.clone(),
                    added: BTreeSet::new(),
                    removed: BTreeSet::new(),
                })
                .added
                .insert(tag);
        }
        Ok(())
    }

    fn value(&self) -> Value {
        Value::Array(
            self.elements
                .values()
                .filter(|element| element.is_live())
                .map(|element| element.value.clone())
                .collect(),
        )
    }

    fn join(&mut self, other: &OrSet) {
        for (text, theirs) in &other.elements {
            match self.elements.entry(text.clone()) {
                Entry::Vacant(slot) => {
                    slot.insert(theirs.clone());
                }
                Entry::Occupied(mut slot) => {
                    let mine = slot.get_mut();
                    mine.added.extend(theirs.added.iter().cloned());
                    mine.removed.extend(theirs.removed.iter().cloned());
                }
            }
        }
    }

    fn is_included_in(&self, other: &OrSet) -> bool {
        self.elements.iter().all(|(text, mine)| {
            other.elements.get(text).is_some_and(|theirs| {
                mine.added.is_subset(&theirs.added) && mine.removed.is_subset(&theirs.removed)
            })
        })
    }
}

fn serialize_elements<S: Serializer>(
    elements: &BTreeMap<String, Element>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(elements.values())
}

/// Reads the element list back into the map, recomputing each key from the value so that the
/// two cannot disagree; an element listed twice is the join of both.
fn deserialize_elements<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, Element>, D::Error> {
    let mut set = OrSet::default();
    for element in Vec::<Element>::deserialize(deserializer)? {
        let single = OrSet {
            elements: BTreeMap::from([(canonical(&element.value), element)]),
        };
        set.join(&single);
    }
    Ok(set.elements)
}

/// The canonical JSON text of a value, which identifies OR-Set elements and breaks ties. It is
/// canonical because serde_json's object map is a `BTreeMap` (its `preserve_order` feature is
/// off), so keys print sorted and equal values print alike; a test guards this.
fn canonical(value: &Value) -> String {
    value.to_string()
}

/// The operation quoted in an error message, cut short if long.
fn quote(op: &Value) -> String {
    let text = op.to_string();
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

fn invalid(kind: CrdtKind, reason: String) -> CrdtError {
    CrdtError::InvalidOperation { kind, reason }
}

/// The key and value of an object with exactly one key, the form of a counter operation.
fn single_entry(op: &Value) -> Option<(&str, &Value)> {
    match op.as_object() {
        Some(fields) if fields.len() == 1 => fields.iter().next().map(|(k, v)| (k.as_str(), v)),
        _ => None,
    }
}

/// The number a register operation writes, with `-0.0` read as `0.0`: serde_json counts the
/// two equal but prints them differently, and equal states must serialize alike.
fn number_op(kind: CrdtKind, op: &Value) -> Result<Number, CrdtError> {
    let number = op.as_number().ok_or_else(|| {
        invalid(
            kind,
            format!("expected a JSON number, got {}", json_type_name(op)),
        )
    })?;
    Ok(match number.as_f64() {
        Some(zero) if number.is_f64() && zero == 0.0 => Number::from_f64(0.0),
        _ => None,
    }
    .unwrap_or_else(|| number.clone()))
}

/// Join of a register over a total order, where `None` is the bottom: the larger value wins.
/// Every register kind is this lattice, with its own order.
fn join_max<T: Clone>(mine: &mut Option<T>, theirs: Option<&T>, order: fn(&T, &T) -> Ordering) {
    if let Some(theirs) = theirs {
        let replace = match mine {
            Some(current) => order(theirs, current) == Ordering::Greater,
            None => true,
        };
        if replace {
            *mine = Some(theirs.clone());
        }
    }
}

/// The order of [`join_max`]'s lattice: `None` first, then by `order`.
fn included<T>(mine: Option<&T>, theirs: Option<&T>, order: fn(&T, &T) -> Ordering) -> bool {
    match (mine, theirs) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(mine), Some(theirs)) => order(mine, theirs) != Ordering::Greater,
    }
}

/// A total order on JSON numbers: by numeric value, exactly (a `u64` near `2^64` is not rounded
/// to the nearest `f64` as a plain float comparison would), then by text, so that equal values
/// spelt differently (`1` and `1.0`) still have a fixed order and a join picks the same one
/// whichever comes first.
fn number_order(a: &Number, b: &Number) -> Ordering {
    compare_numerically(a, b).then_with(|| {
        // Numerically equal floats are equal by `==` too, `-0.0` and `0.0` included, though
        // their texts differ; the order must agree with `==`, so only an integer and a float
        // fall through to the text.
        if a.is_f64() && b.is_f64() {
            Ordering::Equal
        } else {
            a.to_string().cmp(&b.to_string())
        }
    })
}

fn reverse_number_order(a: &Number, b: &Number) -> Ordering {
    number_order(b, a)
}

/// A JSON number as what it denotes: an integer, or a finite float (JSON has no others).
enum Real {
    Integer(i128),
    Float(f64),
}

impl Real {
    fn of(number: &Number) -> Real {
        if let Some(integer) = number.as_i64() {
            Real::Integer(i128::from(integer))
        } else if let Some(integer) = number.as_u64() {
            Real::Integer(i128::from(integer))
        } else {
            // Every number that is not an integer is an f64, so as_f64 never falls back.
            Real::Float(number.as_f64().unwrap_or(0.0))
        }
    }
}

fn compare_numerically(a: &Number, b: &Number) -> Ordering {
    match (Real::of(a), Real::of(b)) {
        (Real::Integer(a), Real::Integer(b)) => a.cmp(&b),
        (Real::Float(a), Real::Float(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
        (Real::Integer(a), Real::Float(b)) => compare_integer_to_float(a, b),
        (Real::Float(a), Real::Integer(b)) => compare_integer_to_float(b, a).reverse(),
    }
}

/// Compares exactly, splitting the float into its whole part (an integer an `i128` holds
/// exactly) and its fractional part.
fn compare_integer_to_float(integer: i128, float: f64) -> Ordering {
    // 2^127: beyond it the float exceeds every i128.
    const BOUND: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;
    if float >= BOUND {
        return Ordering::Less;
    }
    if float < -BOUND {
        return Ordering::Greater;
    }
    let whole = float.trunc();
    // Exact: `whole` is an integer within i128's range.
    let whole_integer = whole as i128;
    integer.cmp(&whole_integer).then_with(|| {
        0.0_f64
            .partial_cmp(&(float - whole))
            .unwrap_or(Ordering::Equal)
    })
}

#[cfg(test)]
mod tests;
