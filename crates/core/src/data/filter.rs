//! The filter language of `GET …/records?filter=`, parsed into a typed
//! tree. Nothing here knows SQL: the store compiles the tree from fixed
//! fragments and binds every value.
//!
//! ```text
//! expr   := term ("or" term)*
//! term   := factor ("and" factor)*
//! factor := "(" expr ")" | field op value | field "in" "[" value ("," value)* "]"
//! op     := "=" | "!=" | "<" | "<=" | ">" | ">=" | "contains"
//! value  := JSON string | JSON number | true | false | null
//! ```

use serde_json::Value;

pub const MAX_FILTER_BYTES: usize = 2048;
const MAX_CONDITIONS: usize = 32;
const MAX_DEPTH: usize = 8;
const MAX_IN: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Contains,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::In => "in",
            Op::Contains => "contains",
        }
    }

    pub fn is_range(self) -> bool {
        matches!(self, Op::Lt | Op::Le | Op::Gt | Op::Ge)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    pub field: String,
    pub op: Op,
    /// One value, or several for `in`.
    pub values: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Cond(Cond),
}

impl Expr {
    pub fn conditions(&self) -> Vec<&Cond> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(e) = stack.pop() {
            match e {
                Expr::And(v) | Expr::Or(v) => stack.extend(v.iter()),
                Expr::Cond(c) => out.push(c),
            }
        }
        out
    }
}

/// Why a filter did not parse, with the byte offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at byte {at})")]
pub struct ParseError {
    pub at: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Value(Value),
    Op(Op),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    And,
    Or,
}

fn err(at: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        at,
        message: message.into(),
    }
}

fn lex(src: &str) -> Result<Vec<(usize, Tok)>, ParseError> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => out.push((start, Tok::LParen)),
            b')' => out.push((start, Tok::RParen)),
            b'[' => out.push((start, Tok::LBracket)),
            b']' => out.push((start, Tok::RBracket)),
            b',' => out.push((start, Tok::Comma)),
            b'=' => out.push((start, Tok::Op(Op::Eq))),
            b'!' if b.get(i + 1) == Some(&b'=') => {
                i += 1;
                out.push((start, Tok::Op(Op::Ne)));
            }
            b'<' | b'>' => {
                let eq = b.get(i + 1) == Some(&b'=');
                if eq {
                    i += 1;
                }
                out.push((
                    start,
                    Tok::Op(match (c, eq) {
                        (b'<', false) => Op::Lt,
                        (b'<', true) => Op::Le,
                        (_, false) => Op::Gt,
                        (_, true) => Op::Ge,
                    }),
                ));
            }
            b'"' => {
                // A JSON string: find its end, then let serde_json decode
                // the escapes.
                let mut j = i + 1;
                loop {
                    match b.get(j) {
                        None => return Err(err(start, "unterminated string")),
                        Some(b'\\') => j += 2,
                        Some(b'"') => break,
                        Some(_) => j += 1,
                    }
                }
                let s: String = serde_json::from_str(&src[i..=j])
                    .map_err(|_| err(start, "invalid string (use JSON escapes)"))?;
                if s.contains('\0') {
                    return Err(err(start, "strings cannot hold NUL characters"));
                }
                out.push((start, Tok::Value(Value::String(s))));
                i = j;
            }
            b'-' | b'0'..=b'9' => {
                let mut j = i + 1;
                while j < b.len() && matches!(b[j], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    j += 1;
                }
                let n: serde_json::Number =
                    serde_json::from_str(&src[i..j]).map_err(|_| err(start, "invalid number"))?;
                out.push((start, Tok::Value(Value::Number(n))));
                i = j - 1;
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                let word = &src[i..j];
                out.push((
                    start,
                    match word {
                        "and" => Tok::And,
                        "or" => Tok::Or,
                        "in" => Tok::Op(Op::In),
                        "contains" => Tok::Op(Op::Contains),
                        "true" => Tok::Value(Value::Bool(true)),
                        "false" => Tok::Value(Value::Bool(false)),
                        "null" => Tok::Value(Value::Null),
                        _ => Tok::Ident(word.to_owned()),
                    },
                ));
                i = j - 1;
            }
            _ => return Err(err(start, "unexpected character")),
        }
        i += 1;
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
    conditions: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map(|(a, _)| *a).unwrap_or(self.end)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }

    fn expr(&mut self, depth: usize) -> Result<Expr, ParseError> {
        if depth > MAX_DEPTH {
            return Err(err(
                self.at(),
                format!("nested more than {MAX_DEPTH} levels"),
            ));
        }
        let mut terms = vec![self.term(depth)?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            terms.push(self.term(depth)?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::Or(terms)
        })
    }

    fn term(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let mut factors = vec![self.factor(depth)?];
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            factors.push(self.factor(depth)?);
        }
        Ok(if factors.len() == 1 {
            factors.remove(0)
        } else {
            Expr::And(factors)
        })
    }

    fn factor(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let at = self.at();
        match self.next() {
            Some(Tok::LParen) => {
                let e = self.expr(depth + 1)?;
                match self.next() {
                    Some(Tok::RParen) => Ok(e),
                    _ => Err(err(self.at(), "expected `)`")),
                }
            }
            Some(Tok::Ident(field)) => {
                self.conditions += 1;
                if self.conditions > MAX_CONDITIONS {
                    return Err(err(at, format!("more than {MAX_CONDITIONS} conditions")));
                }
                let op_at = self.at();
                let op = match self.next() {
                    Some(Tok::Op(op)) => op,
                    _ => {
                        return Err(err(
                            op_at,
                            "expected an operator: = != < <= > >= in contains",
                        ))
                    }
                };
                let values = if op == Op::In {
                    if self.next() != Some(Tok::LBracket) {
                        return Err(err(op_at, "`in` takes a list: [value, …]"));
                    }
                    let mut vs = Vec::new();
                    loop {
                        let v_at = self.at();
                        match self.next() {
                            Some(Tok::Value(v)) => vs.push(v),
                            _ => return Err(err(v_at, "expected a value")),
                        }
                        match self.next() {
                            Some(Tok::Comma) => {}
                            Some(Tok::RBracket) => break,
                            _ => return Err(err(self.at(), "expected `,` or `]`")),
                        }
                    }
                    if vs.len() > MAX_IN {
                        return Err(err(op_at, format!("`in` takes at most {MAX_IN} values")));
                    }
                    vs
                } else {
                    let v_at = self.at();
                    match self.next() {
                        Some(Tok::Value(v)) => vec![v],
                        _ => {
                            return Err(err(
                                v_at,
                                "expected a value: a \"string\", a number, true, false or null",
                            ))
                        }
                    }
                };
                Ok(Expr::Cond(Cond { field, op, values }))
            }
            _ => Err(err(at, "expected a field name or `(`")),
        }
    }
}

/// Parses a filter. Field names are not checked here; see
/// `DataService`, which knows the schema.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    if src.len() > MAX_FILTER_BYTES {
        return Err(err(
            0,
            format!("a filter is at most {MAX_FILTER_BYTES} bytes"),
        ));
    }
    let toks = lex(src)?;
    if toks.is_empty() {
        return Err(err(0, "empty filter"));
    }
    let mut p = Parser {
        toks,
        pos: 0,
        end: src.len(),
        conditions: 0,
    };
    let e = p.expr(0)?;
    if p.pos < p.toks.len() {
        return Err(err(p.at(), "unexpected input after the filter"));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cond(field: &str, op: Op, v: Value) -> Expr {
        Expr::Cond(Cond {
            field: field.into(),
            op,
            values: vec![v],
        })
    }

    #[test]
    fn parses_precedence_and_lists() {
        let e = parse(r#"a = "x" and (b >= 2 or c in ["p", "q"]) or d != null"#).unwrap();
        assert_eq!(
            e,
            Expr::Or(vec![
                Expr::And(vec![
                    cond("a", Op::Eq, json!("x")),
                    Expr::Or(vec![
                        cond("b", Op::Ge, json!(2)),
                        Expr::Cond(Cond {
                            field: "c".into(),
                            op: Op::In,
                            values: vec![json!("p"), json!("q")]
                        }),
                    ]),
                ]),
                cond("d", Op::Ne, Value::Null),
            ])
        );
    }

    #[test]
    fn strings_are_data_whatever_they_hold() {
        let e = parse(r#"name = "x' OR 1=1 --\"; DROP TABLE records""#).unwrap();
        assert_eq!(
            e,
            cond("name", Op::Eq, json!("x' OR 1=1 --\"; DROP TABLE records"))
        );
    }

    #[test]
    fn malformed_filters_are_refused_with_a_position() {
        for bad in [
            "",
            "a",
            "a =",
            "a = 'single'",
            "= 1",
            "a = 1 b = 2",
            "a in 1",
            "a in [1,",
            "(a = 1",
            "a = 1)",
            "a ~ 1",
            "a = \"unterminated",
            "a = 1 and",
            "a = 01x",
            "a = \"x\\u0000\"",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let deep = format!("{}a = 1{}", "(".repeat(20), ")".repeat(20));
        assert!(parse(&deep).unwrap_err().message.contains("nested"));
        let many = vec!["a = 1"; 40].join(" and ");
        assert!(parse(&many).unwrap_err().message.contains("conditions"));
    }
}
