//! Topic rules, after the AWS IoT rules engine: a small SQL over JSON payloads.
//!
//! ```text
//! SELECT temperature, topic(2) AS device FROM 'sensors/+/telemetry' WHERE temperature > 50
//! ```
//!
//! The subset: `SELECT *` or a list of expressions with optional `AS name`
//! (`*` may be mixed in); `FROM` an MQTT topic filter in single quotes; an
//! optional `WHERE` with comparisons (`=`, `<>`, `!=`, `<`, `<=`, `>`, `>=`),
//! `AND`, `OR`, `NOT`, arithmetic (`+ - * / %`), parentheses, string, number,
//! boolean and null literals, field paths (`a.b.c`), and the functions
//! `topic()` / `topic(n)`, `timestamp()`, `clientid()`, `lower(x)`, `upper(x)`,
//! `abs(x)`. A field that is missing is *undefined*: comparisons with it are
//! false, and it is left out of the result, as AWS IoT does.
//!
//! A rule that does not parse is refused at start-up with the position of the
//! error. Evaluation happens in the publisher's task; results are published
//! like any other message, so rules add no second routing path.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde_json::{Map, Number, Value};

use crate::config::{RuleActionConfig, RuleConfig};
use crate::definitions::Change;
use crate::store::records::{from_json, put_json};
use crate::store::recovery::MetaRecord;
use crate::store::{Ops, SharedStore, keys};

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule's name.
    pub name: String,
    /// The configuration it was compiled from (what listings and exports show).
    pub config: RuleConfig,
    /// The `FROM` topic filter.
    pub filter: String,
    select: Vec<SelectItem>,
    condition: Option<Expr>,
    /// Where results go.
    pub actions: Vec<RuleActionConfig>,
}

#[derive(Debug, Clone)]
enum SelectItem {
    All,
    Expr { expr: Expr, name: String },
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Lit(Value),
    Path(Vec<String>),
    Call(String, Vec<Expr>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Bin(Box<Expr>, Op, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// What a rule sees besides the payload.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The MQTT topic the message was published to.
    pub topic: &'a str,
    /// The publishing client's id.
    pub client_id: &'a str,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

/// A parse error with its byte position in the SQL text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset of the problem.
    pub position: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SQL error at position {}: {}",
            self.position, self.message
        )
    }
}

impl Rule {
    /// Compiles a configured rule; the error names the position in the SQL.
    pub fn compile(config: &RuleConfig) -> Result<Rule, String> {
        let (select, filter, condition) = parse(&config.sql).map_err(|e| e.to_string())?;
        tether_protocols::topic::validate_topic_filter(&filter)
            .map_err(|e| format!("FROM '{filter}' is not a valid topic filter: {e}"))?;
        if config.actions.is_empty() {
            return Err("has no actions".into());
        }
        Ok(Rule {
            name: config.name.clone(),
            config: config.clone(),
            filter,
            select,
            condition,
            actions: config.actions.clone(),
        })
    }

    /// Whether the rule applies to messages published on `topic`.
    pub fn matches_topic(&self, topic: &str) -> bool {
        tether_protocols::topic::matches(&self.filter, topic)
    }

    /// Evaluates the rule on a JSON payload: `Some(result)` when the WHERE
    /// clause holds (or is absent), `None` otherwise.
    pub fn evaluate(&self, payload: &Value, ctx: &Context<'_>) -> Option<Value> {
        if let Some(cond) = &self.condition
            && eval(cond, payload, ctx) != Value::Bool(true)
        {
            return None;
        }
        let mut out = Map::new();
        for item in &self.select {
            match item {
                SelectItem::All => {
                    if let Value::Object(m) = payload {
                        out.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
                    }
                }
                SelectItem::Expr { expr, name } => {
                    let v = eval(expr, payload, ctx);
                    if !is_undefined(&v) {
                        out.insert(name.clone(), v);
                    }
                }
            }
        }
        Some(Value::Object(out))
    }
}

/// Substitutes `${topic(n)}`, `${topic()}` and `${clientid()}` in a target topic.
pub fn substitute(template: &str, ctx: &Context<'_>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = rest[start + 2..start + end].trim();
        let value = match parse_expr_text(inner) {
            Ok(e) => value_to_text(&eval(&e, &Value::Null, ctx)),
            Err(_) => String::new(),
        };
        out.push_str(&value);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// The marker value standing for "undefined" (a missing field).
fn undefined() -> Value {
    Value::Null
}

fn is_undefined(v: &Value) -> bool {
    v.is_null()
}

fn value_to_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn eval(e: &Expr, payload: &Value, ctx: &Context<'_>) -> Value {
    match e {
        Expr::Lit(v) => v.clone(),
        Expr::Path(parts) => {
            let mut cur = payload;
            for p in parts {
                match cur.get(p) {
                    Some(v) => cur = v,
                    None => return undefined(),
                }
            }
            cur.clone()
        }
        Expr::Call(name, args) => call(name, args, payload, ctx),
        Expr::Not(inner) => match eval(inner, payload, ctx) {
            Value::Bool(b) => Value::Bool(!b),
            _ => undefined(),
        },
        Expr::Neg(inner) => match eval(inner, payload, ctx).as_f64() {
            Some(n) => number(-n),
            None => undefined(),
        },
        Expr::Bin(a, op, b) => {
            let (x, y) = (eval(a, payload, ctx), eval(b, payload, ctx));
            binary(&x, *op, &y)
        }
    }
}

fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::Number(Number::from(n as i64))
    } else {
        Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

fn binary(x: &Value, op: Op, y: &Value) -> Value {
    match op {
        Op::And => match (x, y) {
            (Value::Bool(a), Value::Bool(b)) => Value::Bool(*a && *b),
            (Value::Bool(false), _) | (_, Value::Bool(false)) => Value::Bool(false),
            _ => undefined(),
        },
        Op::Or => match (x, y) {
            (Value::Bool(a), Value::Bool(b)) => Value::Bool(*a || *b),
            (Value::Bool(true), _) | (_, Value::Bool(true)) => Value::Bool(true),
            _ => undefined(),
        },
        Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge => {
            if is_undefined(x) || is_undefined(y) {
                return undefined();
            }
            let ord = match (x.as_f64(), y.as_f64()) {
                (Some(a), Some(b)) => a.partial_cmp(&b),
                _ => match (x, y) {
                    (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
                    (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
                    _ => None,
                },
            };
            let Some(ord) = ord else {
                // Values of different types are never equal.
                return match op {
                    Op::Eq => Value::Bool(false),
                    Op::Ne => Value::Bool(true),
                    _ => undefined(),
                };
            };
            use std::cmp::Ordering::*;
            Value::Bool(match op {
                Op::Eq => ord == Equal,
                Op::Ne => ord != Equal,
                Op::Lt => ord == Less,
                Op::Le => ord != Greater,
                Op::Gt => ord == Greater,
                _ => ord != Less,
            })
        }
        Op::Add if x.is_string() || y.is_string() => {
            if is_undefined(x) || is_undefined(y) {
                undefined()
            } else {
                Value::String(format!("{}{}", value_to_text(x), value_to_text(y)))
            }
        }
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Rem => {
            let (Some(a), Some(b)) = (x.as_f64(), y.as_f64()) else {
                return undefined();
            };
            match op {
                Op::Add => number(a + b),
                Op::Sub => number(a - b),
                Op::Mul => number(a * b),
                Op::Div if b == 0.0 => undefined(),
                Op::Div => number(a / b),
                Op::Rem if b == 0.0 => undefined(),
                _ => number(a % b),
            }
        }
    }
}

fn call(name: &str, args: &[Expr], payload: &Value, ctx: &Context<'_>) -> Value {
    let arg = |i: usize| {
        args.get(i)
            .map_or_else(undefined, |a| eval(a, payload, ctx))
    };
    match name {
        "topic" => match args.first() {
            None => Value::String(ctx.topic.to_owned()),
            Some(_) => match arg(0).as_u64() {
                Some(n) if n >= 1 => ctx
                    .topic
                    .split('/')
                    .nth(n as usize - 1)
                    .map_or_else(undefined, |s| Value::String(s.to_owned())),
                _ => undefined(),
            },
        },
        "timestamp" => Value::Number(Number::from(ctx.timestamp_ms)),
        "clientid" => Value::String(ctx.client_id.to_owned()),
        "lower" => match arg(0) {
            Value::String(s) => Value::String(s.to_lowercase()),
            _ => undefined(),
        },
        "upper" => match arg(0) {
            Value::String(s) => Value::String(s.to_uppercase()),
            _ => undefined(),
        },
        "abs" => arg(0).as_f64().map_or_else(undefined, |n| number(n.abs())),
        _ => undefined(),
    }
}

// ---- parsing ----

const FUNCTIONS: &[(&str, usize, usize)] = &[
    ("topic", 0, 1),
    ("timestamp", 0, 0),
    ("clientid", 0, 0),
    ("lower", 1, 1),
    ("upper", 1, 1),
    ("abs", 1, 1),
];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Sym(&'static str),
    End,
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn err(&self, at: usize, msg: impl Into<String>) -> ParseError {
        ParseError {
            position: at,
            message: msg.into(),
        }
    }

    fn skip_ws(&mut self) {
        while self.src[self.pos..].starts_with(|c: char| c.is_whitespace()) {
            self.pos += self.src[self.pos..]
                .chars()
                .next()
                .map_or(1, char::len_utf8);
        }
    }

    /// The next token and where it starts.
    fn next(&mut self) -> Result<(usize, Tok), ParseError> {
        self.skip_ws();
        let start = self.pos;
        let rest = &self.src[self.pos..];
        let Some(c) = rest.chars().next() else {
            return Ok((start, Tok::End));
        };
        for sym in [
            "<>", "!=", "<=", ">=", "=", "<", ">", "(", ")", ",", "*", "+", "-", "/", "%", ".",
        ] {
            if rest.starts_with(sym) {
                // A number like .5 is not supported; `.` is only a path separator.
                self.pos += sym.len();
                return Ok((start, Tok::Sym(sym)));
            }
        }
        if c == '\'' {
            let mut out = String::new();
            let mut i = self.pos + 1;
            loop {
                let Some(ch) = self.src[i..].chars().next() else {
                    return Err(self.err(start, "unterminated string"));
                };
                i += ch.len_utf8();
                if ch == '\'' {
                    if self.src[i..].starts_with('\'') {
                        out.push('\'');
                        i += 1;
                        continue;
                    }
                    break;
                }
                out.push(ch);
            }
            self.pos = i;
            return Ok((start, Tok::Str(out)));
        }
        if c.is_ascii_digit() {
            let len = rest
                .find(|ch: char| !(ch.is_ascii_digit() || ch == '.' || ch == 'e' || ch == 'E'))
                .unwrap_or(rest.len());
            let text = &rest[..len];
            let n: f64 = text
                .parse()
                .map_err(|_| self.err(start, format!("bad number `{text}`")))?;
            self.pos += len;
            return Ok((start, Tok::Num(n)));
        }
        if c.is_alphabetic() || c == '_' || c == '"' {
            if c == '"' {
                let Some(end) = rest[1..].find('"') else {
                    return Err(self.err(start, "unterminated quoted identifier"));
                };
                self.pos += end + 2;
                return Ok((start, Tok::Ident(rest[1..=end].to_owned())));
            }
            let len = rest
                .find(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
                .unwrap_or(rest.len());
            self.pos += len;
            return Ok((start, Tok::Ident(rest[..len].to_owned())));
        }
        Err(self.err(start, format!("unexpected character `{c}`")))
    }
}

struct Parser<'a> {
    lex: Lexer<'a>,
    tok: Tok,
    at: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Result<Self, ParseError> {
        let mut lex = Lexer { src, pos: 0 };
        let (at, tok) = lex.next()?;
        Ok(Parser { lex, tok, at })
    }

    fn bump(&mut self) -> Result<Tok, ParseError> {
        let (at, tok) = self.lex.next()?;
        self.at = at;
        Ok(std::mem::replace(&mut self.tok, tok))
    }

    fn err(&self, msg: impl Into<String>) -> ParseError {
        ParseError {
            position: self.at,
            message: msg.into(),
        }
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(&self.tok, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    fn expect_keyword(&mut self, kw: &str) -> Result<(), ParseError> {
        if self.keyword(kw) {
            self.bump()?;
            Ok(())
        } else {
            Err(self.err(format!("expected {kw}")))
        }
    }

    fn sym(&self, s: &str) -> bool {
        self.tok
            == Tok::Sym(match s {
                "(" => "(",
                ")" => ")",
                "," => ",",
                "*" => "*",
                "." => ".",
                _ => return false,
            })
    }

    fn select_list(&mut self) -> Result<Vec<SelectItem>, ParseError> {
        let mut items = Vec::new();
        loop {
            if self.sym("*") {
                self.bump()?;
                items.push(SelectItem::All);
            } else {
                let start = self.at;
                let expr = self.expr()?;
                let name = if self.keyword("AS") {
                    self.bump()?;
                    match self.bump()? {
                        Tok::Ident(n) => n,
                        _ => return Err(self.err("expected a name after AS")),
                    }
                } else {
                    match &expr {
                        Expr::Path(p) => p.last().cloned().unwrap_or_default(),
                        Expr::Call(f, _) => f.clone(),
                        _ => {
                            return Err(ParseError {
                                position: start,
                                message: "an expression in SELECT needs AS name".into(),
                            });
                        }
                    }
                };
                items.push(SelectItem::Expr { expr, name });
            }
            if self.sym(",") {
                self.bump()?;
            } else {
                return Ok(items);
            }
        }
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        while self.keyword("OR") {
            self.bump()?;
            left = Expr::Bin(Box::new(left), Op::Or, Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.not()?;
        while self.keyword("AND") {
            self.bump()?;
            left = Expr::Bin(Box::new(left), Op::And, Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        if self.keyword("NOT") {
            self.bump()?;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        let left = self.additive()?;
        let op = match &self.tok {
            Tok::Sym("=") => Op::Eq,
            Tok::Sym("<>") | Tok::Sym("!=") => Op::Ne,
            Tok::Sym("<") => Op::Lt,
            Tok::Sym("<=") => Op::Le,
            Tok::Sym(">") => Op::Gt,
            Tok::Sym(">=") => Op::Ge,
            _ => return Ok(left),
        };
        self.bump()?;
        Ok(Expr::Bin(Box::new(left), op, Box::new(self.additive()?)))
    }

    fn additive(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.term()?;
        loop {
            let op = match &self.tok {
                Tok::Sym("+") => Op::Add,
                Tok::Sym("-") => Op::Sub,
                _ => return Ok(left),
            };
            self.bump()?;
            left = Expr::Bin(Box::new(left), op, Box::new(self.term()?));
        }
    }

    fn term(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        loop {
            let op = match &self.tok {
                Tok::Sym("*") => Op::Mul,
                Tok::Sym("/") => Op::Div,
                Tok::Sym("%") => Op::Rem,
                _ => return Ok(left),
            };
            self.bump()?;
            left = Expr::Bin(Box::new(left), op, Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.tok == Tok::Sym("-") {
            self.bump()?;
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let at = self.at;
        match self.bump()? {
            Tok::Num(n) => Ok(Expr::Lit(number(n))),
            Tok::Str(s) => Ok(Expr::Lit(Value::String(s))),
            Tok::Sym("(") => {
                let e = self.expr()?;
                if !self.sym(")") {
                    return Err(self.err("expected )"));
                }
                self.bump()?;
                Ok(e)
            }
            Tok::Ident(id) => {
                let lower = id.to_ascii_lowercase();
                match lower.as_str() {
                    "true" => return Ok(Expr::Lit(Value::Bool(true))),
                    "false" => return Ok(Expr::Lit(Value::Bool(false))),
                    "null" => return Ok(Expr::Lit(Value::Null)),
                    _ => {}
                }
                if self.sym("(") {
                    let Some(&(_, min, max)) = FUNCTIONS.iter().find(|(f, _, _)| *f == lower)
                    else {
                        return Err(ParseError {
                            position: at,
                            message: format!("unknown function `{id}`"),
                        });
                    };
                    self.bump()?;
                    let mut args = Vec::new();
                    if !self.sym(")") {
                        loop {
                            args.push(self.expr()?);
                            if self.sym(",") {
                                self.bump()?;
                            } else {
                                break;
                            }
                        }
                    }
                    if !self.sym(")") {
                        return Err(self.err("expected ) after function arguments"));
                    }
                    self.bump()?;
                    if args.len() < min || args.len() > max {
                        return Err(ParseError {
                            position: at,
                            message: format!("{lower}() takes {min} to {max} arguments"),
                        });
                    }
                    return Ok(Expr::Call(lower, args));
                }
                let mut path = vec![id];
                while self.sym(".") {
                    self.bump()?;
                    let at = self.at;
                    match self.bump()? {
                        Tok::Ident(p) => path.push(p),
                        _ => {
                            return Err(ParseError {
                                position: at,
                                message: "expected a field name after .".into(),
                            });
                        }
                    }
                }
                Ok(Expr::Path(path))
            }
            Tok::End => Err(ParseError {
                position: at,
                message: "unexpected end of rule".into(),
            }),
            Tok::Sym(s) => Err(ParseError {
                position: at,
                message: format!("unexpected `{s}`"),
            }),
        }
    }
}

type Parsed = (Vec<SelectItem>, String, Option<Expr>);

fn parse(sql: &str) -> Result<Parsed, ParseError> {
    let mut p = Parser::new(sql)?;
    p.expect_keyword("SELECT")?;
    let select = p.select_list()?;
    p.expect_keyword("FROM")?;
    let at = p.at;
    let filter = match p.bump()? {
        Tok::Str(s) => s,
        _ => {
            return Err(ParseError {
                position: at,
                message: "expected a quoted topic filter after FROM".into(),
            });
        }
    };
    let condition = if p.keyword("WHERE") {
        p.bump()?;
        Some(p.expr()?)
    } else {
        None
    };
    if p.tok != Tok::End {
        return Err(p.err("unexpected text after the rule"));
    }
    Ok((select, filter, condition))
}

fn parse_expr_text(text: &str) -> Result<Expr, ParseError> {
    let mut p = Parser::new(text)?;
    let e = p.expr()?;
    if p.tok != Tok::End {
        return Err(p.err("unexpected text"));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(sql: &str) -> Rule {
        Rule::compile(&RuleConfig {
            name: "t".into(),
            sql: sql.into(),
            actions: vec![RuleActionConfig::Sqs { queue: "q".into() }],
        })
        .unwrap()
    }

    fn ctx(topic: &str) -> Context<'_> {
        Context {
            topic,
            client_id: "dev-1",
            timestamp_ms: 1000,
        }
    }

    #[test]
    fn hot_reading_is_selected_with_device_from_topic() {
        let r = rule(
            "SELECT temperature, topic(2) AS device FROM 'sensors/+/telemetry' WHERE temperature > 50",
        );
        assert!(r.matches_topic("sensors/42/telemetry"));
        let out = r.evaluate(
            &json!({"temperature": 71.5, "humidity": 3}),
            &ctx("sensors/42/telemetry"),
        );
        assert_eq!(out, Some(json!({"temperature": 71.5, "device": "42"})));
        assert_eq!(
            r.evaluate(&json!({"temperature": 20}), &ctx("sensors/42/telemetry")),
            None
        );
    }

    #[test]
    fn missing_field_makes_the_condition_false() {
        let r = rule("SELECT * FROM '#' WHERE temperature > 50");
        assert_eq!(r.evaluate(&json!({"humidity": 99}), &ctx("a")), None);
    }

    #[test]
    fn boolean_logic_and_functions() {
        let r = rule(
            "SELECT *, clientid() AS who, timestamp() AS at FROM 'a/#' WHERE NOT (a = 1 OR b.c <> 'x') AND lower(s) = 'hi'",
        );
        let out = r
            .evaluate(&json!({"a": 2, "b": {"c": "x"}, "s": "HI"}), &ctx("a/b"))
            .unwrap();
        assert_eq!(out["who"], "dev-1");
        assert_eq!(out["at"], 1000);
        assert_eq!(out["a"], 2);
    }

    #[test]
    fn arithmetic_in_select() {
        let r = rule("SELECT (t - 32) * 5 / 9 AS celsius FROM 'x'");
        assert_eq!(
            r.evaluate(&json!({"t": 212}), &ctx("x")),
            Some(json!({"celsius": 100}))
        );
    }

    #[test]
    fn parse_errors_name_the_position() {
        let e = Rule::compile(&RuleConfig {
            name: "bad".into(),
            sql: "SELECT a FROM 'x' WHERE a >".into(),
            actions: vec![RuleActionConfig::Sqs { queue: "q".into() }],
        })
        .unwrap_err();
        assert!(e.contains("position 27"), "{e}");
        let e = Rule::compile(&RuleConfig {
            name: "bad".into(),
            sql: "SELECT a FROM sensors".into(),
            actions: vec![RuleActionConfig::Sqs { queue: "q".into() }],
        })
        .unwrap_err();
        assert!(e.contains("position 14"), "{e}");
        assert!(e.contains("expected a quoted topic filter"), "{e}");
    }

    #[test]
    fn invalid_filter_is_refused() {
        let e = Rule::compile(&RuleConfig {
            name: "bad".into(),
            sql: "SELECT * FROM 'a/#/b'".into(),
            actions: vec![RuleActionConfig::Sqs { queue: "q".into() }],
        })
        .unwrap_err();
        assert!(e.contains("topic filter"), "{e}");
    }

    #[test]
    fn republish_topic_substitution() {
        assert_eq!(
            substitute("alerts/${topic(2)}/${clientid()}", &ctx("sensors/42/t")),
            "alerts/42/dev-1"
        );
    }
}

/// Origin id of messages republished by rules.
pub const RULE_ORIGIN: u64 = u64::MAX - 1;

/// The rules in force, applied to MQTT publishes (and AMQP publishes to
/// `amq.topic`).
///
/// The rule set can change while the gateway runs (a definitions document
/// applied over the admin API). Publishers read it without a lock: a flag
/// (written only when the set changes) says whether there are any rules, and
/// the set itself is an immutable snapshot behind an `ArcSwap`, whose load
/// touches only the publishing thread's own slot. Changes made at runtime are
/// stored under `keys::RULE [name]` and laid over `[[rules]]` at start-up.
#[derive(Debug)]
pub struct RuleEngine {
    active: AtomicBool,
    rules: ArcSwap<Vec<Rule>>,
    /// Serialises changes; where they are stored.
    store: Mutex<Option<SharedStore>>,
}

impl Default for RuleEngine {
    fn default() -> Self {
        RuleEngine::new(&[])
    }
}

fn rule_key(name: &str) -> crate::store::Key {
    keys::meta_key(keys::RULE, &[name.as_bytes()])
}

impl RuleEngine {
    /// Compiles the configured rules (already validated with the configuration).
    pub fn new(configs: &[RuleConfig]) -> Self {
        let rules: Vec<Rule> = configs
            .iter()
            .filter_map(|c| match Rule::compile(c) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::error!(rule = %c.name, error = %e, "rule skipped");
                    None
                }
            })
            .collect();
        RuleEngine {
            active: AtomicBool::new(!rules.is_empty()),
            rules: ArcSwap::from_pointee(rules),
            store: Mutex::new(None),
        }
    }

    /// The configured rules with the ones `store` kept from runtime changes
    /// (`keys::RULE` records) laid over them by name; later changes are
    /// stored there too.
    pub fn restored(configs: &[RuleConfig], store: SharedStore, stored: Vec<MetaRecord>) -> Self {
        let engine = RuleEngine::new(configs);
        let kept: Vec<RuleConfig> = stored
            .iter()
            .filter_map(|r| from_json::<RuleConfig>("rule", &r.value))
            .collect();
        engine.put(&kept);
        if store.is_persistent() {
            *engine.store.lock() = Some(store);
        }
        engine
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        !self.active.load(Ordering::Relaxed)
    }

    /// The rules in force now.
    pub fn rules(&self) -> Arc<Vec<Rule>> {
        self.rules.load_full()
    }

    /// Adds rules, or replaces the rules of the same name; one result per
    /// configuration, in order. A rule that does not compile is skipped (with
    /// an error line): callers validate with [`Rule::compile`] first.
    /// Publishes after this returns see the new set.
    pub fn put(&self, configs: &[RuleConfig]) -> Vec<Change> {
        let store = self.store.lock();
        let mut rules = Vec::clone(&self.rules.load());
        let mut ops = Ops::new();
        let changes = configs
            .iter()
            .map(|c| {
                let at = rules.iter().position(|r| r.name == c.name);
                if at.is_some_and(|i| rules[i].config == *c) {
                    return Change::Unchanged;
                }
                let rule = match Rule::compile(c) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(rule = %c.name, error = %e, "rule skipped");
                        return Change::Unchanged;
                    }
                };
                ops.push(put_json(rule_key(&c.name), c));
                match at {
                    Some(i) => {
                        rules[i] = rule;
                        Change::Updated
                    }
                    None => {
                        rules.push(rule);
                        Change::Created
                    }
                }
            })
            .collect();
        if !ops.is_empty() {
            let any = !rules.is_empty();
            self.rules.store(Arc::new(rules));
            self.active.store(any, Ordering::Relaxed);
            if let Some(s) = &*store {
                s.submit(ops);
            }
        }
        changes
    }

    /// Evaluates every rule whose filter matches `msg`'s topic (an MQTT publish,
    /// or an AMQP publish to `amq.topic`) and publishes
    /// the results to the rule's actions. Payloads that are not JSON objects
    /// are skipped; rules never see messages republished by rules.
    pub fn apply(&self, core: &super::Core, msg: &super::message::Message, client_id: &str) {
        use super::message::{KeyForm, Message, MessageProperties, now_ms};
        if self.is_empty() || msg.origin == RULE_ORIGIN {
            return;
        }
        let rules = self.rules.load();
        // Rules see MQTT topics; an AMQP routing key on amq.topic is converted.
        let topic: std::borrow::Cow<'_, str> = match msg.key_form {
            KeyForm::Mqtt => std::borrow::Cow::Borrowed(&msg.routing_key),
            KeyForm::Amqp => {
                let mut t = String::new();
                super::exchange::swap_separators_into(&msg.routing_key, &mut t);
                std::borrow::Cow::Owned(t)
            }
        };
        let mut doc: Option<Option<Value>> = None;
        for rule in rules.iter().filter(|r| r.matches_topic(&topic)) {
            let parsed =
                doc.get_or_insert_with(|| serde_json::from_slice::<Value>(&msg.payload).ok());
            let Some(payload) = parsed.as_ref() else {
                continue;
            };
            let ctx = Context {
                topic: &topic,
                client_id,
                timestamp_ms: msg.published_at_ms,
            };
            let Some(result) = rule.evaluate(payload, &ctx) else {
                continue;
            };
            let body = bytes::Bytes::from(result.to_string());
            for action in &rule.actions {
                let vhost = &core.vhost;
                let base = |key: &str, form: KeyForm, exchange: &'static str| Message {
                    id: core.ids.next(),
                    routing_key: key.into(),
                    key_form: form,
                    exchange: super::bytestr::ByteStr::from_static(exchange),
                    payload: body.clone(),
                    qos: msg.qos.max(1),
                    retain: false,
                    persistent: true,
                    priority: 0,
                    published_at_ms: now_ms(),
                    expires_at: None,
                    origin: RULE_ORIGIN,
                    props: Some(Box::new(MessageProperties::from_mqtt(
                        Some("application/json".into()),
                        true,
                        None,
                        None,
                        bytes::Bytes::new(),
                    ))),
                };
                match action {
                    RuleActionConfig::Sqs { queue } => match vhost.queue(queue) {
                        Some(q) => {
                            q.send(
                                &Arc::new(base(queue, KeyForm::Amqp, "")),
                                &Default::default(),
                            );
                        }
                        None => {
                            tracing::warn!(rule = %rule.name, queue, "rule target queue does not exist")
                        }
                    },
                    RuleActionConfig::Sns { topic } => match vhost.exchange(topic) {
                        Some(ex) => {
                            let mut m = base(topic, KeyForm::Amqp, "");
                            m.exchange = ex.name().clone();
                            vhost.publish(&ex, &Arc::new(m), &mut Default::default());
                        }
                        None => {
                            tracing::warn!(rule = %rule.name, topic, "rule target topic does not exist")
                        }
                    },
                    RuleActionConfig::Republish { topic } => {
                        let target = substitute(topic, &ctx);
                        if tether_protocols::topic::validate_topic_name(&target).is_err() {
                            tracing::warn!(rule = %rule.name, topic = target, "rule republish topic is invalid");
                            continue;
                        }
                        let m = Arc::new(base(&target, KeyForm::Mqtt, "amq.topic"));
                        vhost.publish(vhost.amq_topic(), &m, &mut Default::default());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod engine_tests {
    use super::*;

    fn config(name: &str, sql: &str) -> RuleConfig {
        RuleConfig {
            name: name.into(),
            sql: sql.into(),
            actions: vec![RuleActionConfig::Republish {
                topic: "out".into(),
            }],
        }
    }

    #[test]
    fn put_adds_replaces_and_reports_what_changed() {
        let engine = RuleEngine::new(&[]);
        assert!(engine.is_empty());
        let a = config("a", "SELECT * FROM 'x/#'");
        assert_eq!(engine.put(std::slice::from_ref(&a)), [Change::Created]);
        assert!(!engine.is_empty());
        assert_eq!(engine.put(std::slice::from_ref(&a)), [Change::Unchanged]);
        let a2 = config("a", "SELECT * FROM 'y/#'");
        assert_eq!(engine.put(&[a2]), [Change::Updated]);
        let rules = engine.rules();
        assert_eq!(rules.len(), 1);
        assert!(rules[0].matches_topic("y/1"));
        assert!(!rules[0].matches_topic("x/1"));
    }

    #[test]
    fn stored_rules_replace_configured_ones_by_name() {
        use crate::store::recovery::MetaRecord;
        let configured = [
            config("a", "SELECT * FROM 'x'"),
            config("b", "SELECT * FROM 'y'"),
        ];
        let stored = vec![
            MetaRecord {
                parts: vec![b"b".to_vec()],
                value: bytes::Bytes::from(
                    serde_json::to_string(&config("b", "SELECT * FROM 'z'")).unwrap(),
                ),
            },
            MetaRecord {
                parts: vec![b"c".to_vec()],
                value: bytes::Bytes::from_static(b"not json"),
            },
        ];
        let store: crate::store::SharedStore =
            Arc::new(crate::store::memory::MemoryStore::default());
        let engine = RuleEngine::restored(&configured, store, stored);
        let rules = engine.rules();
        let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(rules[1].filter, "z");
    }
}
