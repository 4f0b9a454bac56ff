//! What a query tells an index before any twin is read.

use serde_json::Value;

use crate::expr::{CompareOp, Expr, Query};
use crate::path::Path;

impl Query {
    /// Equality constraints every matching twin satisfies: for each `(path, values)`, the twin's
    /// field at `path` exists and equals (as [`crate::values_equal`] defines it, so `1` and `1.0`
    /// are equal) at least one of `values`.
    ///
    /// They come from `path = literal` and `path IN (...)` conditions joined by `AND` at the top
    /// of the query (parentheses around an `AND` chain included); anything under `OR` or `NOT`
    /// contributes nothing. An empty result means an index cannot narrow the search. The engine
    /// picks candidates from an index with one constraint and must still run
    /// [`Query::matches`] on each.
    pub fn required(&self) -> Vec<(Path, Vec<Value>)> {
        let mut required = Vec::new();
        collect_required(self.expr(), &mut required);
        required
    }

    /// Every path the query mentions, once each, in order of first appearance.
    pub fn paths(&self) -> Vec<&Path> {
        let mut paths = Vec::new();
        collect_paths(self.expr(), &mut paths);
        paths
    }
}

fn collect_required(expr: &Expr, required: &mut Vec<(Path, Vec<Value>)>) {
    match expr {
        Expr::And(operands) => {
            for operand in operands {
                collect_required(operand, required);
            }
        }
        Expr::Compare {
            path,
            op: CompareOp::Eq,
            value,
        } => required.push((path.clone(), vec![value.clone()])),
        Expr::In {
            path,
            values,
            negated: false,
        } => required.push((path.clone(), values.clone())),
        _ => {}
    }
}

fn collect_paths<'q>(expr: &'q Expr, paths: &mut Vec<&'q Path>) {
    let path = match expr {
        Expr::Compare { path, .. }
        | Expr::In { path, .. }
        | Expr::Like { path, .. }
        | Expr::Exists(path) => path,
        Expr::DeltaEmpty { .. } => return,
        Expr::Not(inner) => return collect_paths(inner, paths),
        Expr::And(operands) | Expr::Or(operands) => {
            for operand in operands {
                collect_paths(operand, paths);
            }
            return;
        }
    };
    if !paths.contains(&path) {
        paths.push(path);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::{Path, parse};

    fn reported(name: &str) -> Path {
        Path::Reported(vec![name.to_owned()])
    }

    fn required(text: &str) -> Vec<(Path, Vec<serde_json::Value>)> {
        parse(text).expect("test query").required()
    }

    #[test]
    fn collects_equalities_from_the_top_level_and_chain() {
        assert_eq!(
            required(
                "reported.a = 1 AND (reported.b IN (1, 'x') AND reported.c = 3) \
                 AND (reported.d = 4 OR reported.e = 5) AND NOT reported.f = 6 \
                 AND reported.g != 7 AND reported.h NOT IN (8) AND reported.i > 9 \
                 AND EXISTS reported.j AND tags.k LIKE 'x%'"
            ),
            vec![
                (reported("a"), vec![json!(1)]),
                (reported("b"), vec![json!(1), json!("x")]),
                (reported("c"), vec![json!(3)]),
            ]
        );
        assert_eq!(
            required("connection.status IN ('CONNECTED')"),
            vec![(Path::ConnectionStatus, vec![json!("CONNECTED")])]
        );
        assert_eq!(required("reported.a = 1 OR reported.b = 2"), vec![]);
        assert_eq!(required("NOT reported.a = 1"), vec![]);
    }

    #[test]
    fn lists_each_path_once() {
        let query = parse(
            "reported.a = 1 OR (NOT EXISTS tags.t AND reported.a IN (2)) OR delta IS EMPTY \
             OR device_type LIKE 'x%'",
        )
        .expect("test query");
        assert_eq!(
            query.paths(),
            vec![&reported("a"), &Path::Tag("t".into()), &Path::DeviceType]
        );
    }
}
