//! Property tests: the canonical form round-trips, the parser never panics, and planning is
//! sound.

use std::cell::Cell;
use std::collections::HashMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Number, Value, json};

use crate::Path;
use crate::testing::MapTwin;
use crate::{
    CONNECTION_STATUSES, CompareOp, Expr, Fields, Query, parse, parse_order, parse_path,
    values_equal,
};

const CASES: u32 = 2_000;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(CASES)
}

/// Names that exercise quoting: identifiers, keywords, and text needing backticks.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z_][A-Za-z0-9_-]{0,6}",
        Just("AND".to_owned()),
        Just("not".to_owned()),
        "[a-z `'.%()-]{0,6}",
        "\\PC{0,6}",
    ]
}

fn any_path() -> BoxedStrategy<Path> {
    prop_oneof![
        prop::collection::vec(segment(), 1..4).prop_map(Path::Reported),
        prop::collection::vec(segment(), 1..4).prop_map(Path::Desired),
        segment().prop_map(Path::Tag),
        Just(Path::ConnectionStatus),
        Just(Path::ConnectionStale),
        Just(Path::DeviceType),
        Just(Path::FirmwareVersion),
    ]
    .boxed()
}

fn any_literal() -> BoxedStrategy<Value> {
    prop_oneof![
        "\\PC{0,8}".prop_map(Value::String),
        "[a-z'%` ]{0,6}".prop_map(Value::String),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ]
    .boxed()
}

fn status() -> BoxedStrategy<Value> {
    prop::sample::select(&CONNECTION_STATUSES[..])
        .prop_map(|status| json!(status))
        .boxed()
}

fn compare_op() -> impl Strategy<Value = CompareOp> {
    prop::sample::select(vec![
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Lt,
        CompareOp::Le,
        CompareOp::Gt,
        CompareOp::Ge,
    ])
}

/// Queries over the given paths and literals, shaped as the parser produces them (chains of at
/// least two, nesting well inside the limit).
fn exprs(
    paths: BoxedStrategy<Path>,
    literals: fn() -> BoxedStrategy<Value>,
) -> BoxedStrategy<Expr> {
    let condition = paths.prop_flat_map(move |path| {
        // The parser only accepts real statuses in equalities with connection.status, and
        // booleans with connection.stale.
        let literal = match path {
            Path::ConnectionStatus => status(),
            Path::ConnectionStale => any::<bool>().prop_map(Value::Bool).boxed(),
            _ => literals(),
        };
        prop_oneof![
            (compare_op(), literal.clone()).prop_map({
                let path = path.clone();
                move |(op, value)| Expr::Compare {
                    path: path.clone(),
                    op,
                    value,
                }
            }),
            (prop::collection::vec(literal, 1..4), any::<bool>()).prop_map({
                let path = path.clone();
                move |(values, negated)| Expr::In {
                    path: path.clone(),
                    values,
                    negated,
                }
            }),
            "[^%]{0,5}".prop_map({
                let path = path.clone();
                move |prefix| Expr::Like {
                    path: path.clone(),
                    prefix,
                }
            }),
            Just(Expr::Exists(path)),
        ]
    });
    let leaf = prop_oneof![
        8 => condition,
        1 => any::<bool>().prop_map(|negated| Expr::DeltaEmpty { negated }),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            prop::collection::vec(inner, 2..4).prop_map(Expr::Or),
        ]
    })
    .boxed()
}

fn any_expr() -> BoxedStrategy<Expr> {
    exprs(any_path(), any_literal)
}

/// A valid query with some bytes deleted, replaced or inserted.
fn mutated_query() -> impl Strategy<Value = String> {
    let edit = (any::<prop::sample::Index>(), 0..3_u8, "\\PC|[()'`.%=<>!, ]");
    (any_expr(), prop::collection::vec(edit, 1..4)).prop_map(|(expr, edits)| {
        let mut text = expr.to_string();
        for (at, kind, piece) in edits {
            let boundaries: Vec<usize> = (0..=text.len())
                .filter(|&i| text.is_char_boundary(i))
                .collect();
            let start = *at.get(&boundaries);
            let end = boundaries
                .iter()
                .copied()
                .find(|&i| i > start)
                .unwrap_or(start);
            match kind {
                0 => text.replace_range(start..end, ""),
                1 => text.replace_range(start..end, &piece),
                _ => text.insert_str(start, &piece),
            }
        }
        text
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn canonical_form_parses_back_to_the_same_query(expr in any_expr()) {
        let query = Query::from(expr);
        let text = query.to_string();
        prop_assert_eq!(parse(&text), Ok(query), "canonical text: {}", text);
    }

    #[test]
    fn paths_and_orders_round_trip(path in any_path(), descending in any::<bool>()) {
        prop_assert_eq!(parse_path(&path.to_string()), Ok(path.clone()));
        let order = crate::Order {
            path,
            direction: if descending { crate::Direction::Descending } else { crate::Direction::Ascending },
        };
        prop_assert_eq!(parse_order(&order.to_string()), Ok(order));
    }

    #[test]
    fn the_parser_never_panics_on_arbitrary_text(text in "\\PC{0,80}|[a-zA-Z_.`'()=<>!%, 0-9-]{0,80}") {
        check_errors(&text)?;
    }

    #[test]
    fn the_parser_never_panics_on_mutated_queries(text in mutated_query()) {
        check_errors(&text)?;
    }
}

/// Whatever the outcome, errors point inside the text and what parses prints a canonical form
/// that parses back to it.
fn check_errors(text: &str) -> Result<(), TestCaseError> {
    fn check<T: PartialEq + std::fmt::Debug + std::fmt::Display>(
        text: &str,
        parser: fn(&str) -> Result<T, crate::QueryError>,
    ) -> Result<(), TestCaseError> {
        match parser(text) {
            Ok(parsed) => prop_assert_eq!(parser(&parsed.to_string()), Ok(parsed)),
            Err(error) => prop_assert!(error.position <= text.len(), "{} in {:?}", error, text),
        }
        Ok(())
    }
    check(text, parse)?;
    check(text, parse_path)?;
    check(text, parse_order)
}

/// The few paths and values the soundness test draws from, so that generated queries and twins
/// often agree and `matches` is true often enough to test something.
fn small_path() -> BoxedStrategy<Path> {
    prop::sample::select(small_paths()).boxed()
}

fn small_paths() -> Vec<Path> {
    vec![
        Path::Reported(vec!["a".into()]),
        Path::Reported(vec!["b".into()]),
        Path::Tag("t".into()),
        Path::DeviceType,
        Path::ConnectionStatus,
    ]
}

fn small_literal() -> BoxedStrategy<Value> {
    prop::sample::select(vec![
        json!(1),
        json!(1.0),
        json!(2),
        json!("x"),
        json!("xy"),
        json!(true),
        Value::Null,
    ])
    .boxed()
}

fn small_twin() -> impl Strategy<Value = MapTwin> {
    let fields = small_paths().into_iter().map(|path| {
        let value = if path == Path::ConnectionStatus {
            status()
        } else {
            small_literal()
        };
        prop::option::weighted(0.8, value).prop_map(move |value| (path.clone(), value))
    });
    (fields.collect::<Vec<_>>(), any::<bool>()).prop_map(|(fields, delta_empty)| MapTwin {
        fields: fields
            .into_iter()
            .filter_map(|(path, value)| Some((path, value?)))
            .collect::<HashMap<_, _>>(),
        delta_empty,
    })
}

#[test]
fn required_constraints_hold_on_every_match() {
    // Only equalities in a top-level AND chain yield constraints, so half of the queries are
    // such chains, mixing plain equalities with arbitrary subqueries.
    let equality = (small_path(), prop::collection::vec(small_literal(), 1..3)).prop_map(
        |(path, mut values)| {
            if path == Path::ConnectionStatus {
                values = vec![json!("CONNECTED")];
            }
            Expr::In {
                path,
                values,
                negated: false,
            }
        },
    );
    let conjunct = prop_oneof![
        2 => equality,
        1 => exprs(small_path(), small_literal),
    ];
    let query = prop_oneof![
        exprs(small_path(), small_literal),
        prop::collection::vec(conjunct, 2..5).prop_map(Expr::And),
    ]
    .prop_map(Query::from);
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        ..Config::with_cases(CASES * 2)
    });
    let constrained_matches = Cell::new(0_u32);
    let result = runner.run(&(query, small_twin()), |(query, twin)| {
        if !query.matches(&twin) {
            return Ok(());
        }
        let required = query.required();
        for (path, values) in &required {
            let field = twin.value(path);
            prop_assert!(
                field.is_some_and(|field| values.iter().any(|v| values_equal(&field, v))),
                "{query} matches {twin:?} but {path} is not in {values:?}"
            );
        }
        if !required.is_empty() {
            constrained_matches.set(constrained_matches.get() + 1);
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    // Guard against a generator that never exercises the property.
    let constrained_matches = constrained_matches.get();
    assert!(
        constrained_matches >= 50,
        "only {constrained_matches} matching queries carried constraints"
    );
}
