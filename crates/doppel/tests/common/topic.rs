//! The topics the tests publish and subscribe to, named by doppel-wire (the hub's own
//! definitions), so that a topic changes in one place. Thin shorthands for the shadow topics
//! the tests use most; everything else is doppel-wire's own builders, re-exported.

pub use doppel_wire::Verdict;
pub use doppel_wire::shadow::ShadowOp;
use doppel_wire::shadow::{self, ShadowAnswer};
// Each test file uses a different part, as for `dead_code` in `common`.
#[allow(unused_imports)]
pub use doppel_wire::topic::{
    command_ack, command_ack_answer, command_delivery, command_event, presence_event,
};

/// A request to `thing`'s classic shadow.
pub fn request(thing: &str, op: ShadowOp) -> String {
    shadow::request(thing, None, op)
}

/// Where a request to `thing`'s classic shadow is accepted.
pub fn accepted(thing: &str, op: ShadowOp) -> String {
    shadow::answer(thing, None, ShadowAnswer::Reply(op, Verdict::Accepted))
}

/// Where a request to `thing`'s classic shadow is rejected.
pub fn rejected(thing: &str, op: ShadowOp) -> String {
    shadow::answer(thing, None, ShadowAnswer::Reply(op, Verdict::Rejected))
}

/// The delta of `thing`'s classic shadow.
pub fn delta(thing: &str) -> String {
    shadow::answer(thing, None, ShadowAnswer::Delta)
}

/// The documents of `thing`'s classic shadow.
pub fn documents(thing: &str) -> String {
    shadow::answer(thing, None, ShadowAnswer::Documents)
}

/// Everything about `thing`'s classic shadow: `.../shadow/#`.
pub fn everything(thing: &str) -> String {
    shadow::filter(thing, None)
}

/// A request to `thing`'s shadow `name`.
pub fn named_request(thing: &str, name: &str, op: ShadowOp) -> String {
    shadow::request(thing, Some(name), op)
}

/// Where a request to `thing`'s shadow `name` is accepted.
pub fn named_accepted(thing: &str, name: &str, op: ShadowOp) -> String {
    shadow::answer(
        thing,
        Some(name),
        ShadowAnswer::Reply(op, Verdict::Accepted),
    )
}

/// Where a request to `thing`'s shadow `name` is rejected.
pub fn named_rejected(thing: &str, name: &str, op: ShadowOp) -> String {
    shadow::answer(
        thing,
        Some(name),
        ShadowAnswer::Reply(op, Verdict::Rejected),
    )
}

/// The filter of `thing`'s command deliveries.
pub fn commands(thing: &str) -> String {
    command_delivery(thing, "+")
}

/// The delta of `thing`'s shadow `name`.
pub fn named_delta(thing: &str, name: &str) -> String {
    shadow::answer(thing, Some(name), ShadowAnswer::Delta)
}

/// Everything about `thing`'s shadow `name`: `.../shadow/name/{name}/#`.
pub fn named_everything(thing: &str, name: &str) -> String {
    shadow::filter(thing, Some(name))
}
