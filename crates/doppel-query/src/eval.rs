//! Evaluating a query against one twin.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Number, Value};

use crate::expr::{CompareOp, Expr, Query};
use crate::path::Path;

/// What a query can ask of a twin. The engine implements it for its own twin representation.
///
/// To be evaluated correctly, an implementation must:
/// - return `None` from `value` exactly when the twin has no such field (a field whose value is
///   JSON `null`, if the representation keeps one, is `Some(Value::Null)`);
/// - return `connection.status` as one of the strings in [`crate::CONNECTION_STATUSES`], and
///   `connection.stale` as a boolean;
/// - return the field's whole value for a path that names an object or array (queries compare it
///   with scalars only, so it never equals a literal, but `EXISTS` sees it).
///
/// Borrow (`Cow::Borrowed`) where the representation allows it: `matches` calls `value` once per
/// condition on every candidate twin.
pub trait Fields {
    fn value(&self, path: &Path) -> Option<Cow<'_, Value>>;
    /// Whether desired and reported agree (the twin's delta has no fields).
    fn delta_is_empty(&self) -> bool;
}

impl Query {
    /// Whether `twin` satisfies the query.
    pub fn matches<F: Fields + ?Sized>(&self, twin: &F) -> bool {
        self.expr().matches(twin)
    }
}

impl Expr {
    /// Whether `twin` satisfies this node. An empty `And` is true and an empty `Or` false.
    pub fn matches<F: Fields + ?Sized>(&self, twin: &F) -> bool {
        match self {
            Expr::Compare { path, op, value } => twin
                .value(path)
                .is_some_and(|field| compare(&field, *op, value)),
            Expr::In {
                path,
                values,
                negated,
            } => twin.value(path).is_some_and(|field| {
                values.iter().any(|value| values_equal(&field, value)) != *negated
            }),
            Expr::Like { path, prefix } => twin
                .value(path)
                .is_some_and(|field| field.as_str().is_some_and(|s| s.starts_with(prefix))),
            Expr::Exists(path) => twin.value(path).is_some(),
            Expr::DeltaEmpty { negated } => twin.delta_is_empty() != *negated,
            Expr::Not(inner) => !inner.matches(twin),
            Expr::And(operands) => operands.iter().all(|operand| operand.matches(twin)),
            Expr::Or(operands) => operands.iter().any(|operand| operand.matches(twin)),
        }
    }
}

/// Equality as `=` and `IN` define it: exact JSON equality, except that numbers compare by value
/// (`1` equals `1.0`). An index that serves [`Query::required`] must agree with it.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => compare_numbers(a, b) == Some(Ordering::Equal),
        _ => a == b,
    }
}

fn compare(field: &Value, op: CompareOp, literal: &Value) -> bool {
    let ordering = match op {
        CompareOp::Eq => return values_equal(field, literal),
        CompareOp::Ne => return !values_equal(field, literal),
        _ => match (field, literal) {
            (Value::Number(a), Value::Number(b)) => compare_numbers(a, b),
            // `str`'s order is byte order, which is what the documentation promises.
            (Value::String(a), Value::String(b)) => Some(a.as_str().cmp(b.as_str())),
            _ => None,
        },
    };
    let Some(ordering) = ordering else {
        return false;
    };
    match op {
        CompareOp::Lt => ordering.is_lt(),
        CompareOp::Le => ordering.is_le(),
        CompareOp::Gt => ordering.is_gt(),
        CompareOp::Ge => ordering.is_ge(),
        CompareOp::Eq | CompareOp::Ne => false,
    }
}

/// Integers compare exactly (a `u64` above `i64::MAX` included); when either side is a float,
/// both compare as doubles.
fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    match (integer(a), integer(b)) {
        (Some(a), Some(b)) => Some(a.cmp(&b)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

fn integer(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::parse;
    use crate::testing::MapTwin;

    fn matches(query: &str, twin: &MapTwin) -> bool {
        match parse(query) {
            Ok(query) => query.matches(twin),
            Err(error) => panic!("{query:?} should parse: {error}"),
        }
    }

    #[test]
    fn equality_is_exact_except_for_numbers() {
        let twin = MapTwin::with(&[
            ("reported.n", json!(1)),
            ("reported.s", json!("1")),
            ("reported.z", json!(null)),
            ("reported.o", json!({"a": 1})),
            ("reported.b", json!(true)),
        ]);
        assert!(matches("reported.n = 1.0", &twin));
        assert!(matches("reported.n = 1e0", &twin));
        assert!(!matches("reported.n = '1'", &twin));
        assert!(!matches("reported.s = 1", &twin));
        assert!(matches("reported.s = '1'", &twin));
        assert!(matches("reported.z = null", &twin));
        assert!(matches("reported.b = TRUE", &twin));
        assert!(!matches("reported.b = 1", &twin));
        assert!(!matches("reported.o = 1", &twin));
        assert!(matches("reported.o != 1", &twin));
        assert!(matches("reported.n != 2", &twin));
        assert!(!matches("reported.n != 1.0", &twin));
    }

    #[test]
    fn ordering_compares_numbers_with_numbers_and_strings_with_strings() {
        let twin = MapTwin::with(&[
            ("reported.n", json!(10)),
            ("reported.s", json!("B")),
            ("reported.b", json!(true)),
            ("reported.big", json!(9_007_199_254_740_993_u64)),
            ("reported.max", json!(u64::MAX)),
        ]);
        assert!(matches("reported.n > 9.5", &twin));
        assert!(matches("reported.n >= 10", &twin));
        assert!(matches("reported.n <= 10.0", &twin));
        assert!(!matches("reported.n < 10", &twin));
        // Byte order: upper case sorts before lower case.
        assert!(matches("reported.s < 'a'", &twin));
        assert!(matches("reported.s > 'A'", &twin));
        assert!(!matches("reported.s > 1", &twin));
        assert!(!matches("reported.s < 1", &twin));
        assert!(!matches("reported.n < '2'", &twin));
        assert!(!matches("reported.b > false", &twin));
        assert!(!matches("reported.b >= true", &twin));
        // Integers compare exactly, beyond a double's 53 bits.
        assert!(matches("reported.big > 9007199254740992", &twin));
        assert!(matches("reported.max > 9223372036854775807", &twin));
        assert!(matches("reported.max > -1", &twin));
    }

    #[test]
    fn conditions_on_a_missing_field_are_false() {
        let twin = MapTwin::with(&[("reported.present", json!(1))]);
        for condition in [
            "reported.x = 1",
            "reported.x != 1",
            "reported.x < 1",
            "reported.x >= 1",
            "reported.x IN (1, 2)",
            "reported.x NOT IN (1, 2)",
            "reported.x LIKE '%'",
            "EXISTS reported.x",
            "reported.present.x = 1",
        ] {
            assert!(!matches(condition, &twin), "{condition}");
        }
        // So NOT (x = 1) and x != 1 differ exactly when x is missing.
        assert!(matches("NOT reported.x = 1", &twin));
        assert!(matches("NOT EXISTS reported.x", &twin));
        assert!(!matches("NOT reported.present = 1", &twin));
        assert!(!matches("reported.present != 1", &twin));
    }

    #[test]
    fn in_and_not_in() {
        let twin = MapTwin::with(&[("tags.site", json!("paris")), ("reported.n", json!(2))]);
        assert!(matches("tags.site IN ('berlin', 'paris')", &twin));
        assert!(!matches("tags.site IN ('berlin')", &twin));
        assert!(matches("tags.site NOT IN ('berlin')", &twin));
        assert!(!matches("tags.site NOT IN ('berlin', 'paris')", &twin));
        assert!(matches("reported.n IN (1, 2.0)", &twin));
        assert!(!matches("reported.n NOT IN (2.0)", &twin));
    }

    #[test]
    fn like_matches_string_prefixes_only() {
        let twin = MapTwin::with(&[
            ("firmware_version", json!("2.4.1")),
            ("device_type", json!("a_b%c")),
            ("reported.n", json!(24)),
        ]);
        assert!(matches("firmware_version LIKE '2.4%'", &twin));
        assert!(matches("firmware_version LIKE '2.4.1%'", &twin));
        assert!(matches("firmware_version LIKE '%'", &twin));
        assert!(!matches("firmware_version LIKE '2.5%'", &twin));
        assert!(!matches("firmware_version LIKE '2.4.10%'", &twin));
        // `_` is an ordinary character, not SQL's single-character wildcard.
        assert!(matches("device_type LIKE 'a_%'", &twin));
        assert!(!matches("device_type LIKE 'ax%'", &twin));
        assert!(!matches("reported.n LIKE '2%'", &twin));
    }

    #[test]
    fn exists_delta_and_connection() {
        let mut twin = MapTwin::with(&[
            ("desired.mode", json!("heat")),
            ("reported.cfg", json!({"a": [1, 2]})),
            ("connection.status", json!("CONNECTED")),
            ("connection.stale", json!(false)),
        ]);
        twin.delta_empty = false;
        assert!(matches("EXISTS desired.mode", &twin));
        assert!(matches("EXISTS reported.cfg", &twin));
        assert!(!matches("EXISTS reported.mode", &twin));
        assert!(matches("delta IS NOT EMPTY", &twin));
        assert!(!matches("delta IS EMPTY", &twin));
        assert!(matches("connection.status = 'CONNECTED'", &twin));
        assert!(matches(
            "connection.status NOT IN ('DISCONNECTED', 'UNKNOWN')",
            &twin
        ));
        assert!(matches("connection.stale = FALSE", &twin));
        assert!(!matches("connection.stale = TRUE", &twin));
        twin.delta_empty = true;
        assert!(matches("delta IS EMPTY", &twin));
    }

    #[test]
    fn boolean_operators_follow_precedence() {
        let twin = MapTwin::with(&[("reported.a", json!(1)), ("reported.b", json!(2))]);
        // `a OR (b AND c)` holds through `a`; `(a OR b) AND c` fails on the missing c.
        assert!(matches(
            "reported.a = 1 OR reported.b = 3 AND reported.c = 1",
            &twin
        ));
        assert!(!matches(
            "(reported.a = 1 OR reported.b = 3) AND reported.c = 1",
            &twin
        ));
        assert!(!matches("NOT reported.a = 1 OR reported.b = 3", &twin));
        assert!(matches("NOT (reported.a = 2 OR reported.b = 3)", &twin));
        assert!(matches("NOT NOT reported.a = 1", &twin));
        assert!(matches("reported.a = 1 AND reported.b = 2", &twin));
        assert!(!matches("reported.a = 1 AND reported.b = 1", &twin));
    }

    #[test]
    fn empty_chains_are_neutral_elements() {
        let twin = MapTwin::default();
        assert!(crate::Expr::And(Vec::new()).matches(&twin));
        assert!(!crate::Expr::Or(Vec::new()).matches(&twin));
    }
}
