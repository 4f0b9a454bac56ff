//! Text to [`Query`], [`Path`] and [`Order`].
//!
//! A recursive-descent parser over winnow's located input. Every failure is a cut (a
//! [`QueryError`] with its byte position and a message saying what was expected and what was
//! found): the grammar never needs to backtrack across a token, so no error is ever discarded in
//! favour of a vaguer one from another branch.

use serde_json::{Number, Value};
use winnow::ascii::{digit1, multispace0};
use winnow::combinator::{alt, opt};
use winnow::error::{ErrMode, ParserError};
use winnow::stream::{Location, Stream};
use winnow::token::{one_of, take_till};
use winnow::{LocatingSlice, ModalResult, Parser};

use crate::error::QueryError;
use crate::expr::{CompareOp, Expr, Query};
use crate::limits::{MAX_IN_VALUES, MAX_NESTING, MAX_QUERY_BYTES};
use crate::path::{
    CONNECTION_STATUSES, Direction, Order, Path, is_identifier_char, is_identifier_start,
};

type Input<'a> = LocatingSlice<&'a str>;
type PResult<T> = ModalResult<T, QueryError>;

/// Parses a query such as `reported.temperature > 30 AND tags.site = 'berlin'`.
pub fn parse(text: &str) -> Result<Query, QueryError> {
    run(text, |i| {
        let expr = or_expr(i, 0)?;
        end(i, "AND, OR or the end of the query")?;
        Ok(Query::from(expr))
    })
}

/// Parses a lone path, as given to `group_by=`.
pub fn parse_path(text: &str) -> Result<Path, QueryError> {
    run(text, |i| {
        skip_ws(i)?;
        let path = path(i, "")?;
        end(i, "the end of the path")?;
        Ok(path)
    })
}

/// Parses a sort key, as given to `order_by=`: `path`, `path ASC` or `path DESC`.
pub fn parse_order(text: &str) -> Result<Order, QueryError> {
    run(text, |i| {
        skip_ws(i)?;
        let path = path(i, "")?;
        skip_ws(i)?;
        let direction = if keyword(i, "DESC") {
            Direction::Descending
        } else if keyword(i, "ASC") {
            Direction::Ascending
        } else {
            end(i, "ASC, DESC or the end of the order")?;
            Direction::Ascending
        };
        end(i, "the end of the order")?;
        Ok(Order { path, direction })
    })
}

fn run<T>(text: &str, parser: impl FnOnce(&mut Input<'_>) -> PResult<T>) -> Result<T, QueryError> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(QueryError::new(
            MAX_QUERY_BYTES,
            format!(
                "the text is {} bytes long; at most {MAX_QUERY_BYTES} are allowed",
                text.len()
            ),
        ));
    }
    parser(&mut LocatingSlice::new(text)).map_err(|error| match error {
        ErrMode::Backtrack(error) | ErrMode::Cut(error) => error,
        // Only partial streams report missing input; ours is always complete.
        ErrMode::Incomplete(_) => QueryError::new(text.len(), "unexpected end of the input"),
    })
}

/// Lets winnow's own token parsers fail with our error type. Those failures are always caught
/// and replaced by a specific message; this one is only the fallback.
impl ParserError<Input<'_>> for QueryError {
    type Inner = Self;

    fn from_input(input: &Input<'_>) -> Self {
        QueryError::new(input.current_token_start(), "unexpected input")
    }

    fn into_inner(self) -> Result<Self, Self> {
        Ok(self)
    }
}

fn or_expr(i: &mut Input<'_>, depth: usize) -> PResult<Expr> {
    let mut operands = vec![and_expr(i, depth)?];
    loop {
        skip_ws(i)?;
        if !keyword(i, "OR") {
            return Ok(chain(operands, Expr::Or));
        }
        operands.push(and_expr(i, depth)?);
    }
}

fn and_expr(i: &mut Input<'_>, depth: usize) -> PResult<Expr> {
    let mut operands = vec![unary(i, depth)?];
    loop {
        skip_ws(i)?;
        if !keyword(i, "AND") {
            return Ok(chain(operands, Expr::And));
        }
        operands.push(unary(i, depth)?);
    }
}

/// A chain of one operand is that operand: `And` and `Or` nodes always hold two or more.
fn chain(operands: Vec<Expr>, build: fn(Vec<Expr>) -> Expr) -> Expr {
    match <[Expr; 1]>::try_from(operands) {
        Ok([only]) => only,
        Err(operands) => build(operands),
    }
}

fn unary(i: &mut Input<'_>, depth: usize) -> PResult<Expr> {
    skip_ws(i)?;
    let start = position(i);
    if keyword(i, "NOT") {
        let depth = nest(start, depth)?;
        return Ok(Expr::Not(Box::new(unary(i, depth)?)));
    }
    if i.starts_with('(') {
        let depth = nest(start, depth)?;
        let _ = i.next_token();
        let inner = or_expr(i, depth)?;
        skip_ws(i)?;
        if i.starts_with(')') {
            let _ = i.next_token();
            return Ok(inner);
        }
        return fail(
            position(i),
            format!(
                "expected AND, OR or ')' to close the '(' at position {start}, found {}",
                found(i)
            ),
        );
    }
    if keyword(i, "EXISTS") {
        skip_ws(i)?;
        return Ok(Expr::Exists(path(i, " after EXISTS")?));
    }
    if peek_word(i) == "delta" {
        return delta(i);
    }
    let word = peek_word(i);
    if !word.starts_with(is_identifier_start)
        || OPERATOR_KEYWORDS
            .iter()
            .any(|keyword| word.eq_ignore_ascii_case(keyword))
    {
        return fail(
            start,
            format!(
                "expected a condition (a field, NOT, EXISTS, delta or '('), found {}",
                found(i)
            ),
        );
    }
    predicate(i)
}

/// Words that cannot start a condition; naming them in the error beats "unknown field 'OR'".
const OPERATOR_KEYWORDS: [&str; 5] = ["AND", "OR", "IN", "LIKE", "IS"];

/// One level deeper into parentheses or `NOT`, if the limit allows.
fn nest(start: usize, depth: usize) -> PResult<usize> {
    if depth >= MAX_NESTING {
        return fail(
            start,
            format!("nested deeper than {MAX_NESTING} levels of parentheses and NOT"),
        );
    }
    Ok(depth + 1)
}

fn delta(i: &mut Input<'_>) -> PResult<Expr> {
    let _ = i.next_slice("delta".len());
    skip_ws(i)?;
    if !keyword(i, "IS") {
        return fail(
            position(i),
            format!(
                "expected IS after delta (delta IS EMPTY or delta IS NOT EMPTY), found {}",
                found(i)
            ),
        );
    }
    skip_ws(i)?;
    let negated = keyword(i, "NOT");
    skip_ws(i)?;
    if !keyword(i, "EMPTY") {
        let expected = if negated {
            "EMPTY after 'delta IS NOT'"
        } else {
            "EMPTY or NOT EMPTY after 'delta IS'"
        };
        return fail(
            position(i),
            format!("expected {expected}, found {}", found(i)),
        );
    }
    Ok(Expr::DeltaEmpty { negated })
}

/// `path` followed by a comparison, `[NOT] IN` or `LIKE`.
fn predicate(i: &mut Input<'_>) -> PResult<Expr> {
    let path = path(i, "")?;
    skip_ws(i)?;
    let op_start = position(i);
    if let Some(op) = compare_op(i)? {
        skip_ws(i)?;
        let value_start = position(i);
        let Some(value) = literal(i)? else {
            return fail(
                value_start,
                format!(
                    "expected a value after '{}', found {}",
                    op.symbol(),
                    found(i)
                ),
            );
        };
        if matches!(op, CompareOp::Eq | CompareOp::Ne) {
            check_connection_literal(&path, &value, value_start)?;
        }
        return Ok(Expr::Compare { path, op, value });
    }
    if keyword(i, "IN") {
        return in_list(i, path, false);
    }
    if keyword(i, "NOT") {
        skip_ws(i)?;
        if keyword(i, "IN") {
            return in_list(i, path, true);
        }
        return fail(
            position(i),
            format!("expected IN after NOT, found {}", found(i)),
        );
    }
    if keyword(i, "LIKE") {
        return like(i, path);
    }
    fail(
        op_start,
        format!(
            "expected an operator (=, !=, <, <=, >, >=, IN, NOT IN or LIKE) after {path}, found {}",
            found(i)
        ),
    )
}

fn compare_op(i: &mut Input<'_>) -> PResult<Option<CompareOp>> {
    // Two-character operators first, so that `<=` is not read as `<` followed by `=`.
    opt(alt((
        "<=".value(CompareOp::Le),
        ">=".value(CompareOp::Ge),
        "!=".value(CompareOp::Ne),
        "=".value(CompareOp::Eq),
        "<".value(CompareOp::Lt),
        ">".value(CompareOp::Gt),
    )))
    .parse_next(i)
}

fn in_list(i: &mut Input<'_>, path: Path, negated: bool) -> PResult<Expr> {
    let keyword = if negated { "NOT IN" } else { "IN" };
    skip_ws(i)?;
    if !i.starts_with('(') {
        return fail(
            position(i),
            format!("expected '(' after {keyword}, found {}", found(i)),
        );
    }
    let _ = i.next_token();
    let mut values = Vec::new();
    loop {
        skip_ws(i)?;
        let value_start = position(i);
        if values.is_empty() && i.starts_with(')') {
            return fail(
                value_start,
                format!("the {keyword} list is empty; give at least one value"),
            );
        }
        let Some(value) = literal(i)? else {
            return fail(
                value_start,
                format!("expected a value in the {keyword} list, found {}", found(i)),
            );
        };
        if values.len() == MAX_IN_VALUES {
            return fail(
                value_start,
                format!("the {keyword} list has more than {MAX_IN_VALUES} values"),
            );
        }
        check_connection_literal(&path, &value, value_start)?;
        values.push(value);
        skip_ws(i)?;
        if i.starts_with(')') {
            let _ = i.next_token();
            return Ok(Expr::In {
                path,
                values,
                negated,
            });
        }
        if !i.starts_with(',') {
            return fail(
                position(i),
                format!(
                    "expected ',' or ')' in the {keyword} list, found {}",
                    found(i)
                ),
            );
        }
        let _ = i.next_token();
    }
}

fn like(i: &mut Input<'_>, path: Path) -> PResult<Expr> {
    skip_ws(i)?;
    let start = position(i);
    if !i.starts_with('\'') {
        return fail(
            start,
            format!(
                "expected a quoted pattern after LIKE, as in 'abc%', found {}",
                found(i)
            ),
        );
    }
    let pattern = quoted(i, '\'', "string")?;
    match pattern.strip_suffix('%') {
        Some(prefix) if !prefix.contains('%') => Ok(Expr::Like {
            path,
            prefix: prefix.to_owned(),
        }),
        _ => fail(
            start,
            "LIKE matches prefixes only: the pattern needs exactly one '%', at its end, as in 'abc%'",
        ),
    }
}

/// Equality with a status that does not exist, or of `connection.stale` with anything but a
/// boolean, could never match; it is nearly always a typo such as `'connected'` or `'true'`, so
/// say so instead of returning nothing.
fn check_connection_literal(path: &Path, value: &Value, position: usize) -> PResult<()> {
    match path {
        Path::ConnectionStatus
            if !value
                .as_str()
                .is_some_and(|status| CONNECTION_STATUSES.contains(&status)) =>
        {
            fail(
                position,
                format!(
                    "connection.status is one of '{}'",
                    CONNECTION_STATUSES.join("', '")
                ),
            )
        }
        Path::ConnectionStale if !value.is_boolean() => {
            fail(position, "connection.stale is TRUE or FALSE")
        }
        _ => Ok(()),
    }
}

/// A path; `context` completes the message when there is none, as in "expected a field after
/// EXISTS".
fn path(i: &mut Input<'_>, context: &str) -> PResult<Path> {
    let start = position(i);
    let root = peek_word(i);
    if !root.starts_with(is_identifier_start) {
        return fail(
            start,
            format!("expected a field{context}, found {}", found(i)),
        );
    }
    if !matches!(
        root,
        "reported" | "desired" | "tags" | "connection" | "device_type" | "firmware_version"
    ) {
        return fail(
            start,
            format!(
                "unknown field '{}'; expected reported.<name>, desired.<name>, tags.<name>, \
                 connection.status, connection.stale, device_type or firmware_version",
                shorten(root)
            ),
        );
    }
    let _ = i.next_slice(root.len());
    let after_root = position(i);
    let segments = segments(i)?;
    match (root, segments.as_slice()) {
        ("reported" | "desired", []) => fail(
            after_root,
            format!("expected '.' and a field name after '{root}'"),
        ),
        ("reported" | "desired", _) => {
            let names = segments.into_iter().map(|(_, name)| name).collect();
            Ok(if root == "reported" {
                Path::Reported(names)
            } else {
                Path::Desired(names)
            })
        }
        ("tags", []) => fail(after_root, "expected '.' and a tag name after 'tags'"),
        ("tags", [(_, name)]) => Ok(Path::Tag(name.clone())),
        ("tags", [_, (dot, _), ..]) => fail(
            *dot,
            "tags takes exactly one name (tags.<name>); quote a name containing '.' with backticks",
        ),
        ("connection", [(_, name)]) if name == "status" => Ok(Path::ConnectionStatus),
        ("connection", [(_, name)]) if name == "stale" => Ok(Path::ConnectionStale),
        ("connection", _) => {
            let at = match segments.as_slice() {
                [(dot, name), ..] if name != "status" && name != "stale" => *dot,
                [_, (dot, _), ..] => *dot,
                _ => after_root,
            };
            fail(
                at,
                "connection has two fields: connection.status and connection.stale",
            )
        }
        (_, [(dot, _), ..]) => fail(*dot, format!("{root} has no fields")),
        ("device_type", []) => Ok(Path::DeviceType),
        _ => Ok(Path::FirmwareVersion),
    }
}

/// The `.name` parts after a root, each with the position of its dot for error messages.
fn segments(i: &mut Input<'_>) -> PResult<Vec<(usize, String)>> {
    let mut segments = Vec::new();
    while i.starts_with('.') {
        let dot = position(i);
        let _ = i.next_token();
        let name = if i.starts_with('`') {
            quoted(i, '`', "quoted name")?
        } else {
            let word = peek_word(i);
            if !word.starts_with(is_identifier_start) {
                return fail(
                    position(i),
                    format!(
                        "expected a field name after '.', found {} (quote other names with backticks)",
                        found(i)
                    ),
                );
            }
            i.next_slice(word.len()).to_owned()
        };
        segments.push((dot, name));
    }
    Ok(segments)
}

/// A string or quoted name: `quote`, any text with the quote doubled, `quote`.
fn quoted(i: &mut Input<'_>, quote: char, what: &str) -> PResult<String> {
    let start = position(i);
    let _ = i.next_token();
    let mut text = String::new();
    loop {
        let part: &str = take_till(0.., quote).parse_next(i)?;
        text.push_str(part);
        if i.next_token().is_none() {
            return fail(start, format!("unterminated {what}: no closing {quote}"));
        }
        if !i.starts_with(quote) {
            return Ok(text);
        }
        let _ = i.next_token();
        text.push(quote);
    }
}

/// A literal value, or `None` (consuming nothing) when the input does not start with one.
fn literal(i: &mut Input<'_>) -> PResult<Option<Value>> {
    if i.starts_with('\'') {
        return Ok(Some(Value::String(quoted(i, '\'', "string")?)));
    }
    if i.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return number(i).map(Some);
    }
    let word = peek_word(i);
    let value = if word.eq_ignore_ascii_case("true") {
        Value::Bool(true)
    } else if word.eq_ignore_ascii_case("false") {
        Value::Bool(false)
    } else if word.eq_ignore_ascii_case("null") {
        Value::Null
    } else {
        return Ok(None);
    };
    let _ = i.next_slice(word.len());
    Ok(Some(value))
}

/// JSON's number syntax, except that leading zeros are allowed. Integers stay exact when they
/// fit in 64 bits; anything else becomes a double.
fn number(i: &mut Input<'_>) -> PResult<Value> {
    let start = position(i);
    let text: &str = **i;
    opt('-').parse_next(i)?;
    digits(i, "after '-'")?;
    let mut integer = true;
    if i.starts_with('.') {
        let _ = i.next_token();
        digits(i, "after '.'")?;
        integer = false;
    }
    if i.starts_with(['e', 'E']) {
        let _ = i.next_token();
        opt(one_of(['+', '-'])).parse_next(i)?;
        digits(i, "in the exponent")?;
        integer = false;
    }
    let text = &text[..position(i) - start];
    if integer {
        if let Ok(n) = text.parse::<i64>() {
            return Ok(Value::from(n));
        }
        if let Ok(n) = text.parse::<u64>() {
            return Ok(Value::from(n));
        }
    }
    match text.parse::<f64>().ok().and_then(Number::from_f64) {
        Some(n) => Ok(Value::Number(n)),
        None => fail(
            start,
            format!("the number {} is out of range", shorten(text)),
        ),
    }
}

fn digits(i: &mut Input<'_>, place: &str) -> PResult<()> {
    if i.starts_with(|c: char| c.is_ascii_digit()) {
        digit1.void().parse_next(i)
    } else {
        fail(
            position(i),
            format!("expected digits {place}, found {}", found(i)),
        )
    }
}

/// Consumes `keyword` (any case) if it is the whole next word.
fn keyword(i: &mut Input<'_>, keyword: &str) -> bool {
    let word = peek_word(i);
    if word.eq_ignore_ascii_case(keyword) {
        let _ = i.next_slice(word.len());
        true
    } else {
        false
    }
}

/// Fails unless only whitespace is left.
fn end(i: &mut Input<'_>, expected: &str) -> PResult<()> {
    skip_ws(i)?;
    if i.is_empty() {
        return Ok(());
    }
    fail(
        position(i),
        format!("expected {expected}, found {}", found(i)),
    )
}

fn skip_ws(i: &mut Input<'_>) -> PResult<()> {
    multispace0.void().parse_next(i)
}

/// The identifier-like word at the front of the input (possibly empty), without consuming it.
fn peek_word<'a>(i: &Input<'a>) -> &'a str {
    let text: &'a str = i;
    let end = text
        .find(|c: char| !is_identifier_char(c))
        .unwrap_or(text.len());
    &text[..end]
}

/// Describes the next token for "found ..." in messages.
fn found(i: &Input<'_>) -> String {
    match i.chars().next() {
        None => "the end of the input".to_owned(),
        Some('\'') => "a string".to_owned(),
        Some(c) if is_identifier_char(c) => format!("'{}'", shorten(peek_word(i))),
        Some(c) => format!("'{c}'"),
    }
}

/// Keeps a quoted piece of input short enough for a one-line message.
fn shorten(text: &str) -> String {
    const MAX_CHARS: usize = 32;
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

fn position(i: &Input<'_>) -> usize {
    i.current_token_start()
}

fn fail<T>(position: usize, message: impl Into<String>) -> PResult<T> {
    Err(ErrMode::Cut(QueryError::new(position, message)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn reported(name: &str) -> Path {
        Path::Reported(vec![name.to_owned()])
    }

    fn compare(name: &str, op: CompareOp, value: Value) -> Expr {
        Expr::Compare {
            path: reported(name),
            op,
            value,
        }
    }

    fn expr(text: &str) -> Expr {
        match parse(text) {
            Ok(query) => query.expr().clone(),
            Err(error) => panic!("{text:?} should parse: {error}"),
        }
    }

    /// The error's position and message, for a query that must not parse.
    fn error(text: &str) -> (usize, String) {
        match parse(text) {
            Ok(query) => panic!("{text:?} should not parse, got {query}"),
            Err(error) => (error.position, error.message),
        }
    }

    #[test]
    fn parses_every_comparison_operator() {
        for (symbol, op) in [
            ("=", CompareOp::Eq),
            ("!=", CompareOp::Ne),
            ("<", CompareOp::Lt),
            ("<=", CompareOp::Le),
            (">", CompareOp::Gt),
            (">=", CompareOp::Ge),
        ] {
            assert_eq!(
                expr(&format!("reported.t {symbol} 5")),
                compare("t", op, json!(5))
            );
            assert_eq!(
                expr(&format!("reported.t{symbol}5")),
                compare("t", op, json!(5))
            );
        }
    }

    #[test]
    fn parses_in_like_exists_and_delta() {
        assert_eq!(
            expr("tags.site IN ('a', 2, true, null)"),
            Expr::In {
                path: Path::Tag("site".into()),
                values: vec![json!("a"), json!(2), json!(true), Value::Null],
                negated: false,
            }
        );
        assert_eq!(
            expr("device_type not in ('x')"),
            Expr::In {
                path: Path::DeviceType,
                values: vec![json!("x")],
                negated: true,
            }
        );
        assert_eq!(
            expr("firmware_version LIKE '2.%'"),
            Expr::Like {
                path: Path::FirmwareVersion,
                prefix: "2.".into(),
            }
        );
        assert_eq!(
            expr("EXISTS desired.mode"),
            Expr::Exists(Path::Desired(vec!["mode".into()]))
        );
        assert_eq!(
            expr("not exists desired.mode"),
            Expr::Not(Box::new(Expr::Exists(Path::Desired(vec!["mode".into()]))))
        );
        assert_eq!(expr("delta IS EMPTY"), Expr::DeltaEmpty { negated: false });
        assert_eq!(
            expr("delta is not empty"),
            Expr::DeltaEmpty { negated: true }
        );
        assert_eq!(
            expr("connection.status = 'CONNECTED'"),
            Expr::Compare {
                path: Path::ConnectionStatus,
                op: CompareOp::Eq,
                value: json!("CONNECTED"),
            }
        );
    }

    #[test]
    fn not_binds_tighter_than_and_which_binds_tighter_than_or() {
        let a = || compare("a", CompareOp::Eq, json!(1));
        let b = || compare("b", CompareOp::Eq, json!(2));
        let c = || compare("c", CompareOp::Eq, json!(3));
        let not = |e: Expr| Expr::Not(Box::new(e));
        assert_eq!(
            expr("reported.a = 1 OR reported.b = 2 AND reported.c = 3"),
            Expr::Or(vec![a(), Expr::And(vec![b(), c()])])
        );
        assert_eq!(
            expr("reported.a = 1 AND reported.b = 2 OR reported.c = 3"),
            Expr::Or(vec![Expr::And(vec![a(), b()]), c()])
        );
        assert_eq!(
            expr("NOT reported.a = 1 AND reported.b = 2"),
            Expr::And(vec![not(a()), b()])
        );
        assert_eq!(
            expr("NOT (reported.a = 1 OR reported.b = 2)"),
            not(Expr::Or(vec![a(), b()]))
        );
        assert_eq!(
            expr("(reported.a = 1 OR reported.b = 2) AND reported.c = 3"),
            Expr::And(vec![Expr::Or(vec![a(), b()]), c()])
        );
        assert_eq!(expr("NOT NOT reported.a = 1"), not(not(a())));
        assert_eq!(
            expr("reported.a = 1 AND (reported.b = 2 AND reported.c = 3)"),
            Expr::And(vec![a(), Expr::And(vec![b(), c()])])
        );
        assert_eq!(expr("((reported.a = 1))"), a());
    }

    #[test]
    fn parses_literals() {
        let value = |text: &str| match expr(&format!("reported.v = {text}")) {
            Expr::Compare { value, .. } => value,
            other => panic!("not a comparison: {other:?}"),
        };
        assert_eq!(value("'it''s'"), json!("it's"));
        assert_eq!(value("''"), json!(""));
        assert_eq!(value("'a\nb'"), json!("a\nb"));
        assert_eq!(value("-12"), json!(-12));
        assert_eq!(value("007"), json!(7));
        assert_eq!(value("1.5"), json!(1.5));
        assert_eq!(value("-1.5e3"), json!(-1500.0));
        assert_eq!(value("2E-2"), json!(0.02));
        assert_eq!(value("18446744073709551615"), json!(u64::MAX));
        assert_eq!(value("TRUE"), json!(true));
        assert_eq!(value("False"), json!(false));
        assert_eq!(value("null"), Value::Null);
    }

    #[test]
    fn parses_quoted_and_unusual_path_segments() {
        assert_eq!(
            parse_path("reported.`odd key`.`a``b`.x-1._y"),
            Ok(Path::Reported(vec![
                "odd key".into(),
                "a`b".into(),
                "x-1".into(),
                "_y".into()
            ]))
        );
        assert_eq!(parse_path("tags.`a.b`"), Ok(Path::Tag("a.b".into())));
        // Keywords are ordinary names after a dot.
        assert_eq!(
            parse_path("reported.and.not"),
            Ok(Path::Reported(vec!["and".into(), "not".into()]))
        );
        assert_eq!(
            parse_path("  connection.status "),
            Ok(Path::ConnectionStatus)
        );
        assert_eq!(parse_path("connection.stale"), Ok(Path::ConnectionStale));
    }

    #[test]
    fn displays_a_canonical_form() {
        let canonical = |text: &str| expr(text).to_string();
        assert_eq!(
            canonical("reported.x=1 and (reported.y='a''b' or not exists tags.`t 1`)"),
            "reported.x = 1 AND (reported.y = 'a''b' OR NOT EXISTS tags.`t 1`)"
        );
        assert_eq!(
            canonical("(reported.a = 1 or reported.b = 2) or reported.c in (1,2.5)"),
            "(reported.a = 1 OR reported.b = 2) OR reported.c IN (1, 2.5)"
        );
        assert_eq!(
            canonical("not (delta is not empty and device_type like 'x%')"),
            "NOT (delta IS NOT EMPTY AND device_type LIKE 'x%')"
        );
    }

    #[test]
    fn reports_the_position_of_each_mistake() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "expected a condition"),
            (
                "reported.temp >",
                15,
                "expected a value after '>', found the end",
            ),
            (
                "reported.temp > )",
                16,
                "expected a value after '>', found ')'",
            ),
            ("foo.bar = 1", 0, "unknown field 'foo'"),
            ("Reported.a = 1", 0, "unknown field 'Reported'"),
            ("reported = 1", 8, "after 'reported'"),
            ("tags.a.b = 'x'", 6, "exactly one name"),
            ("connection.state = 'x'", 10, "connection.status"),
            ("connection.status.x = 'x'", 17, "connection.status"),
            ("device_type.x = 'a'", 11, "no fields"),
            (
                "reported.1a = 1",
                9,
                "expected a field name after '.', found '1a'",
            ),
            ("reported.a = 'abc", 13, "unterminated string"),
            ("reported.`a = 1", 9, "unterminated quoted name"),
            ("reported.a IN ()", 15, "list is empty"),
            ("reported.a IN 1", 14, "expected '(' after IN"),
            ("reported.a IN (1, 2", 19, "expected ',' or ')'"),
            ("reported.a IN (1,)", 17, "expected a value in the IN list"),
            ("reported.a LIKE 'a%b'", 16, "prefixes only"),
            ("reported.a LIKE 3", 16, "quoted pattern"),
            ("(reported.a = 1", 15, "close the '(' at position 0"),
            (
                "reported.a = 1 reported.b = 2",
                15,
                "expected AND, OR or the end",
            ),
            ("reported.a = 1)", 14, "found ')'"),
            ("reported.a ~ 1", 11, "expected an operator"),
            ("reported.a == 1", 12, "expected a value after '='"),
            ("reported.a = 1 AND", 18, "expected a condition"),
            ("reported.a = 1 AND OR reported.b = 1", 19, "found 'OR'"),
            ("reported.a = 1e999", 13, "out of range"),
            ("reported.a = -x", 14, "expected digits after '-'"),
            ("reported.a = 1.", 15, "expected digits after '.'"),
            ("reported.a = 1e+", 16, "expected digits in the exponent"),
            ("reported.a = yes", 13, "found 'yes'"),
            ("reported.a NOT LIKE 'x%'", 15, "expected IN after NOT"),
            ("delta IS FULL", 9, "expected EMPTY or NOT EMPTY"),
            ("delta = 1", 6, "expected IS after delta"),
            ("EXISTS 'x'", 7, "expected a field after EXISTS"),
            ("connection.status = 'connected'", 20, "'CONNECTED'"),
            ("connection.status IN ('CONNECTED', 'up')", 35, "'UNKNOWN'"),
            ("connection.stale.x = TRUE", 16, "connection.stale"),
            ("connection.stale = 'true'", 19, "TRUE or FALSE"),
            ("connection.stale IN (TRUE, 1)", 27, "TRUE or FALSE"),
        ];
        for (text, position, message) in cases {
            let (at, said) = error(text);
            assert_eq!(at, *position, "position for {text:?} ({said})");
            assert!(
                said.contains(message),
                "message for {text:?} is {said:?}, expected it to contain {message:?}"
            );
        }
    }

    #[test]
    fn displays_errors_with_their_position() {
        let Err(error) = parse("reported.temperature >") else {
            panic!("must not parse");
        };
        assert_eq!(
            error.to_string(),
            "at position 22: expected a value after '>', found the end of the input"
        );
    }

    #[test]
    fn like_accepts_only_one_trailing_percent() {
        assert_eq!(
            expr("device_type LIKE '%'"),
            Expr::Like {
                path: Path::DeviceType,
                prefix: String::new(),
            }
        );
        assert_eq!(
            expr("device_type LIKE 'a_''b%'"),
            Expr::Like {
                path: Path::DeviceType,
                prefix: "a_'b".into(),
            }
        );
        for pattern in ["'abc'", "'%abc'", "'a%b%'", "'a%%'", "''", "'a%b'"] {
            assert_eq!(
                error(&format!("device_type LIKE {pattern}")).0,
                17,
                "{pattern}"
            );
        }
    }

    #[test]
    fn limits_query_length() {
        let padding = |n: usize| format!("device_type = '{}'", "x".repeat(n));
        let at_limit = padding(MAX_QUERY_BYTES - padding(0).len());
        assert_eq!(at_limit.len(), MAX_QUERY_BYTES);
        assert!(parse(&at_limit).is_ok());
        let over = padding(MAX_QUERY_BYTES + 1 - padding(0).len());
        assert_eq!(error(&over).0, MAX_QUERY_BYTES);
        assert_eq!(
            parse_path(&"x".repeat(MAX_QUERY_BYTES + 1)).map_err(|e| e.position),
            Err(MAX_QUERY_BYTES)
        );
    }

    #[test]
    fn limits_nesting_of_parentheses_and_not() {
        let parenthesized =
            |n: usize| format!("{}device_type = 'x'{}", "(".repeat(n), ")".repeat(n));
        assert!(parse(&parenthesized(MAX_NESTING)).is_ok());
        assert_eq!(error(&parenthesized(MAX_NESTING + 1)).0, MAX_NESTING);

        let negated = |n: usize| format!("{}device_type = 'x'", "NOT ".repeat(n));
        assert!(parse(&negated(MAX_NESTING)).is_ok());
        assert_eq!(error(&negated(MAX_NESTING + 1)).0, 4 * MAX_NESTING);

        // Both count towards one limit.
        let mixed = format!("{}device_type = 'x'", "NOT (".repeat(MAX_NESTING / 2 + 1));
        assert_eq!(error(&mixed).0, 5 * (MAX_NESTING / 2));

        // Depth is about nesting, not length: long flat chains are fine.
        let flat = vec!["(device_type = 'x')"; 100].join(" AND ");
        assert!(parse(&flat).is_ok());
    }

    #[test]
    fn limits_in_lists() {
        let list = |n: usize| {
            let values: Vec<String> = (0..n).map(|v| v.to_string()).collect();
            format!("reported.a IN ({})", values.join(","))
        };
        assert!(parse(&list(MAX_IN_VALUES)).is_ok());
        let over = list(MAX_IN_VALUES + 1);
        let last_value = over.rfind(',').map(|comma| comma + 1);
        assert_eq!(Some(error(&over).0), last_value);
    }

    #[test]
    fn parses_paths_and_orders() {
        assert_eq!(
            parse_order("reported.a"),
            Ok(Order {
                path: reported("a"),
                direction: Direction::Ascending,
            })
        );
        assert_eq!(
            parse_order(" tags.site desc "),
            Ok(Order {
                path: Path::Tag("site".into()),
                direction: Direction::Descending,
            })
        );
        assert_eq!(
            parse_order("device_type ASC").map(|order| order.to_string()),
            Ok("device_type ASC".to_owned())
        );
        assert_eq!(
            parse_order("device_type UP").map_err(|e| e.position),
            Err(12)
        );
        assert_eq!(
            parse_order("device_type ASC DESC").map_err(|e| e.position),
            Err(16)
        );
        assert_eq!(
            parse_path("reported.a = 1").map_err(|e| e.position),
            Err(11)
        );
        assert_eq!(parse_path("").map_err(|e| e.position), Err(0));
        assert_eq!(parse_path("delta").map_err(|e| e.position), Err(0));
    }
}
