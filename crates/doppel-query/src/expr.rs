//! The parsed form of a query and its canonical text.

use std::fmt;

use serde_json::Value;

use crate::path::{Path, write_quoted};

/// A comparison operator between a field and a literal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CompareOp {
    /// The operator as written in a query.
    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }
}

/// One node of a query.
///
/// Literals are JSON scalars (string, number, boolean, null). `And` and `Or` hold at least two
/// operands when produced by the parser; parentheses leave no node of their own, so
/// `a AND (b AND c)` is `And[a, And[b, c]]` and prints back that way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// `path op literal`.
    Compare {
        path: Path,
        op: CompareOp,
        value: Value,
    },
    /// `path IN (...)`, or `path NOT IN (...)` when `negated`. Never empty.
    In {
        path: Path,
        values: Vec<Value>,
        negated: bool,
    },
    /// `path LIKE 'prefix%'`; `prefix` is stored without the `%`.
    Like {
        path: Path,
        prefix: String,
    },
    /// `EXISTS path` (`NOT EXISTS path` is `Not(Exists)`).
    Exists(Path),
    /// `delta IS EMPTY`, or `delta IS NOT EMPTY` when `negated`.
    DeltaEmpty {
        negated: bool,
    },
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

/// A parsed query. Build one with [`crate::parse`]; its `Display` is the canonical form, which
/// parses back to an equal query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    expr: Expr,
}

impl Query {
    /// The root of the tree, for planners that look deeper than [`Query::required`].
    pub fn expr(&self) -> &Expr {
        &self.expr
    }
}

/// Wraps a tree built by hand. The parser's invariants (see [`Expr`], and the limits in
/// [`crate::limits`]) are the caller's to keep if the canonical form is to parse back.
impl From<Expr> for Query {
    fn from(expr: Expr) -> Self {
        Self { expr }
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.expr, f)
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Compare { path, op, value } => {
                write!(f, "{path} {} ", op.symbol())?;
                write_literal(f, value)
            }
            Expr::In {
                path,
                values,
                negated,
            } => {
                let keyword = if *negated { "NOT IN" } else { "IN" };
                write!(f, "{path} {keyword} (")?;
                for (index, value) in values.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write_literal(f, value)?;
                }
                f.write_str(")")
            }
            Expr::Like { path, prefix } => {
                write!(f, "{path} LIKE ")?;
                write_quoted(f, prefix, '\'', "%")
            }
            Expr::Exists(path) => write!(f, "EXISTS {path}"),
            Expr::DeltaEmpty { negated: false } => f.write_str("delta IS EMPTY"),
            Expr::DeltaEmpty { negated: true } => f.write_str("delta IS NOT EMPTY"),
            Expr::Not(inner) => {
                f.write_str("NOT ")?;
                write_operand(f, inner, matches!(**inner, Expr::And(_) | Expr::Or(_)))
            }
            Expr::And(operands) => write_chain(f, operands, " AND ", |e| {
                matches!(e, Expr::And(_) | Expr::Or(_))
            }),
            // AND binds tighter than OR, so only a nested OR needs parentheses to keep its shape.
            Expr::Or(operands) => write_chain(f, operands, " OR ", |e| matches!(e, Expr::Or(_))),
        }
    }
}

fn write_chain(
    f: &mut fmt::Formatter<'_>,
    operands: &[Expr],
    separator: &str,
    needs_parentheses: fn(&Expr) -> bool,
) -> fmt::Result {
    for (index, operand) in operands.iter().enumerate() {
        if index > 0 {
            f.write_str(separator)?;
        }
        write_operand(f, operand, needs_parentheses(operand))?;
    }
    Ok(())
}

fn write_operand(f: &mut fmt::Formatter<'_>, expr: &Expr, parenthesize: bool) -> fmt::Result {
    if parenthesize {
        write!(f, "({expr})")
    } else {
        fmt::Display::fmt(expr, f)
    }
}

fn write_literal(f: &mut fmt::Formatter<'_>, value: &Value) -> fmt::Result {
    match value {
        Value::String(s) => write_quoted(f, s, '\'', ""),
        // Numbers, booleans and null print as in JSON, which is also their query syntax (and
        // serde_json prints floats so that they parse back to the same value).
        other => write!(f, "{other}"),
    }
}
