//! Pipeline expressions, GitHub Actions style: `${{ <expr> }}` inside strings,
//! and bare expressions in `if:` conditions.
//!
//! Grammar (precedence from loosest to tightest): `||`, `&&`, `== !=`,
//! `< <= > >=`, unary `!`, postfix `.name` / `[expr]`, primary (literals,
//! context names, function calls, parentheses). Literals: `'single quoted'`
//! strings with `''` as the escape for a quote, numbers (decimal, exponent,
//! `0x` hex, leading `-`), `true`, `false`, `null`. Identifiers may contain
//! `-` (`steps.build-linux.outputs`). Function and context names are
//! case-insensitive, as are property names when no exact match exists.
//!
//! Values are `serde_json::Value`s. Comparisons follow GitHub's coercion
//! rules: values of different types are compared as numbers (`null` → 0,
//! `true` → 1, `''` → 0, a non-numeric string → NaN, arrays and objects →
//! NaN), strings compare case-insensitively, and any comparison with NaN is
//! false. `&&` and `||` return one of their operands, not a boolean.
//!
//! Pure: no I/O. Parsing is bounded (at most [`MAX_NODES`] syntax nodes and
//! [`MAX_DEPTH`] levels of nesting), so no input can exhaust the stack.

use serde_json::{Map, Number, Value};
use std::fmt;

/// Most syntax nodes one expression may have.
pub const MAX_NODES: usize = 512;
/// Deepest nesting (parentheses, `!`, calls, indexes) one expression may have.
pub const MAX_DEPTH: usize = 32;

/// The contexts an expression may name.
pub const CONTEXTS: [&str; 8] = [
    "env", "matrix", "needs", "steps", "pave", "secrets", "job", "runner",
];

/// A parse or evaluation error. `offset` is a byte offset into the text that
/// was parsed (the whole string for templates and conditions), when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub message: String,
    pub offset: Option<usize>,
}

impl ExprError {
    fn at(offset: usize, message: impl Into<String>) -> ExprError {
        ExprError {
            message: message.into(),
            offset: Some(offset),
        }
    }

    fn eval(message: impl Into<String>) -> ExprError {
        ExprError {
            message: message.into(),
            offset: None,
        }
    }
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(o) => write!(f, "{} (at character {})", self.message, o + 1),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ExprError {}

/// A built-in function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Success,
    Failure,
    Always,
    Cancelled,
    Contains,
    StartsWith,
    EndsWith,
    Format,
    Join,
    ToJson,
    FromJson,
}

impl Func {
    const ALL: [(&'static str, Func); 11] = [
        ("success", Func::Success),
        ("failure", Func::Failure),
        ("always", Func::Always),
        ("cancelled", Func::Cancelled),
        ("contains", Func::Contains),
        ("startsWith", Func::StartsWith),
        ("endsWith", Func::EndsWith),
        ("format", Func::Format),
        ("join", Func::Join),
        ("toJSON", Func::ToJson),
        ("fromJSON", Func::FromJson),
    ];

    fn lookup(name: &str) -> Option<Func> {
        Func::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, f)| f)
    }

    /// The function's name as documented.
    pub fn name(self) -> &'static str {
        Func::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(n, _)| n)
    }

    /// Allowed argument counts (inclusive).
    fn arity(self) -> (usize, usize) {
        match self {
            Func::Success | Func::Failure | Func::Always | Func::Cancelled => (0, 0),
            Func::Contains | Func::StartsWith | Func::EndsWith => (2, 2),
            Func::Format => (1, usize::MAX),
            Func::Join => (1, 2),
            Func::ToJson | Func::FromJson => (1, 1),
        }
    }

    /// True for the status functions `success()`, `failure()`, `always()`, `cancelled()`.
    pub fn is_status(self) -> bool {
        matches!(
            self,
            Func::Success | Func::Failure | Func::Always | Func::Cancelled
        )
    }
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Value),
    /// A context name (`env`, `matrix`, ...), lower-cased.
    Context(String),
    /// `base.name`
    Member(Box<Expr>, String),
    /// `base[index]`
    Index(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
}

impl Expr {
    /// True when the expression calls one of the status functions.
    pub fn uses_status_function(&self) -> bool {
        match self {
            Expr::Call(f, args) => f.is_status() || args.iter().any(Expr::uses_status_function),
            Expr::Member(b, _) | Expr::Not(b) => b.uses_status_function(),
            Expr::Index(a, b) | Expr::Binary(_, a, b) => {
                a.uses_status_function() || b.uses_status_function()
            }
            Expr::Literal(_) | Expr::Context(_) => false,
        }
    }

    /// Every context reference, as its constant path: `needs.build.outputs['v']`
    /// gives `["needs", "build", "outputs", "v"]`; a computed index ends the path.
    pub fn context_refs(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.collect_refs(&mut out);
        out
    }

    fn collect_refs(&self, out: &mut Vec<Vec<String>>) {
        match self {
            Expr::Literal(_) => {}
            Expr::Context(_) | Expr::Member(..) | Expr::Index(..) => {
                // Walk down the chain of members/indexes to its root.
                let mut segs: Vec<Option<String>> = Vec::new();
                let mut cur = self;
                loop {
                    match cur {
                        Expr::Member(b, name) => {
                            segs.push(Some(name.clone()));
                            cur = b;
                        }
                        Expr::Index(b, i) => {
                            i.collect_refs(out);
                            segs.push(match &**i {
                                Expr::Literal(Value::String(s)) => Some(s.clone()),
                                _ => None,
                            });
                            cur = b;
                        }
                        Expr::Context(name) => {
                            let mut path = vec![name.clone()];
                            for s in segs.into_iter().rev() {
                                match s {
                                    Some(s) => path.push(s),
                                    None => break,
                                }
                            }
                            out.push(path);
                            return;
                        }
                        other => {
                            other.collect_refs(out);
                            return;
                        }
                    }
                }
            }
            Expr::Not(b) => b.collect_refs(out),
            Expr::Binary(_, a, b) => {
                a.collect_refs(out);
                b.collect_refs(out);
            }
            Expr::Call(_, args) => args.iter().for_each(|a| a.collect_refs(out)),
        }
    }
}

// ------------------------------------------------------------------ lexing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Dot,
    Comma,
    Not,
    Op(BinOp),
    Str(String),
    Num(Value),
    Ident(String),
    /// `}}` closing a `${{`; only produced when lexing inside a template.
    Close,
    End,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::LBracket => "`[`".into(),
        Tok::RBracket => "`]`".into(),
        Tok::Dot => "`.`".into(),
        Tok::Comma => "`,`".into(),
        Tok::Not => "`!`".into(),
        Tok::Op(op) => format!("`{}`", op_str(*op)),
        Tok::Str(s) => format!("string '{s}'"),
        Tok::Num(n) => format!("number {n}"),
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Close => "`}}`".into(),
        Tok::End => "the end of the expression".into(),
    }
}

fn op_str(op: BinOp) -> &'static str {
    match op {
        BinOp::Or => "||",
        BinOp::And => "&&",
        BinOp::Eq => "==",
        BinOp::Ne => "!=",
        BinOp::Lt => "<",
        BinOp::Le => "<=",
        BinOp::Gt => ">",
        BinOp::Ge => ">=",
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Lexes `src[start..]` until the end, or (when `in_template`) until `}}`.
/// Returns the tokens with their byte offsets, and the offset just past the
/// last consumed character (past the `}}` in a template).
fn lex(
    src: &str,
    start: usize,
    in_template: bool,
) -> Result<(Vec<(Tok, usize)>, usize), ExprError> {
    let bytes = src.as_bytes();
    let mut i = start;
    let mut out = Vec::new();
    loop {
        while i < bytes.len() && (bytes[i] as char).is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() {
            if in_template {
                return Err(ExprError::at(start, "`${{` is not closed by `}}`"));
            }
            out.push((Tok::End, i));
            return Ok((out, i));
        }
        let c = bytes[i] as char;
        let at = i;
        let two = |s: &str| src[i..].starts_with(s);
        let tok = if in_template && two("}}") {
            i += 2;
            out.push((Tok::Close, at));
            return Ok((out, i));
        } else if two("==") {
            i += 2;
            Tok::Op(BinOp::Eq)
        } else if two("!=") {
            i += 2;
            Tok::Op(BinOp::Ne)
        } else if two("<=") {
            i += 2;
            Tok::Op(BinOp::Le)
        } else if two(">=") {
            i += 2;
            Tok::Op(BinOp::Ge)
        } else if two("&&") {
            i += 2;
            Tok::Op(BinOp::And)
        } else if two("||") {
            i += 2;
            Tok::Op(BinOp::Or)
        } else {
            match c {
                '(' => {
                    i += 1;
                    Tok::LParen
                }
                ')' => {
                    i += 1;
                    Tok::RParen
                }
                '[' => {
                    i += 1;
                    Tok::LBracket
                }
                ']' => {
                    i += 1;
                    Tok::RBracket
                }
                ',' => {
                    i += 1;
                    Tok::Comma
                }
                '!' => {
                    i += 1;
                    Tok::Not
                }
                '<' => {
                    i += 1;
                    Tok::Op(BinOp::Lt)
                }
                '>' => {
                    i += 1;
                    Tok::Op(BinOp::Gt)
                }
                '.' if !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                    i += 1;
                    Tok::Dot
                }
                '\'' => {
                    let mut s = String::new();
                    i += 1;
                    loop {
                        match src[i..].chars().next() {
                            None => return Err(ExprError::at(at, "string literal is not closed")),
                            Some('\'') if bytes.get(i + 1) == Some(&b'\'') => {
                                s.push('\'');
                                i += 2;
                            }
                            Some('\'') => {
                                i += 1;
                                break;
                            }
                            Some(ch) => {
                                s.push(ch);
                                i += ch.len_utf8();
                            }
                        }
                    }
                    Tok::Str(s)
                }
                c if c.is_ascii_digit() || c == '-' || c == '.' || c == '+' => {
                    let mut j = i + 1;
                    while j < bytes.len()
                        && ((bytes[j] as char).is_ascii_alphanumeric()
                            || bytes[j] == b'.'
                            || ((bytes[j] == b'-' || bytes[j] == b'+')
                                && matches!(bytes[j - 1], b'e' | b'E')
                                && !src[i..j].contains(['x', 'X'])))
                    {
                        j += 1;
                    }
                    let text = &src[i..j];
                    let v = parse_number(text)
                        .ok_or_else(|| ExprError::at(at, format!("invalid number `{text}`")))?;
                    i = j;
                    Tok::Num(v)
                }
                c if is_ident_start(c) => {
                    let mut j = i + 1;
                    while j < bytes.len() && is_ident_char(bytes[j] as char) {
                        j += 1;
                    }
                    let name = src[i..j].to_string();
                    i = j;
                    Tok::Ident(name)
                }
                _ => {
                    let ch = src[i..].chars().next().unwrap_or('?');
                    return Err(ExprError::at(at, format!("unexpected character `{ch}`")));
                }
            }
        };
        out.push((tok, at));
    }
}

fn parse_number(text: &str) -> Option<Value> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let f = if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        i64::from_str_radix(hex, 16).ok()? as f64
    } else {
        if body.is_empty()
            || !body
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        {
            return None;
        }
        body.parse::<f64>().ok()?
    };
    let f = if neg { -f } else { f };
    number_value(f)
}

/// A JSON number for `f`: an integer when `f` is integral, `None` when not finite.
fn number_value(f: f64) -> Option<Value> {
    if !f.is_finite() {
        return None;
    }
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        return Some(Value::from(f as i64));
    }
    Number::from_f64(f).map(Value::Number)
}

// ----------------------------------------------------------------- parsing

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    nodes: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos.min(self.toks.len() - 1)].0
    }

    fn offset(&self) -> usize {
        self.toks[self.pos.min(self.toks.len() - 1)].1
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn node(&mut self, e: Expr) -> Result<Expr, ExprError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(ExprError::at(
                self.offset(),
                format!("expression is too long (more than {MAX_NODES} parts)"),
            ));
        }
        Ok(e)
    }

    fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError::at(
                self.offset(),
                format!("expression is nested too deeply (more than {MAX_DEPTH} levels)"),
            ));
        }
        Ok(())
    }

    fn expect(&mut self, want: &Tok, what: &str) -> Result<(), ExprError> {
        if self.peek() == want {
            self.bump();
            Ok(())
        } else {
            Err(ExprError::at(
                self.offset(),
                format!("expected {what}, found {}", describe(self.peek())),
            ))
        }
    }

    fn binary(
        &mut self,
        ops: &[BinOp],
        next: fn(&mut Parser) -> Result<Expr, ExprError>,
    ) -> Result<Expr, ExprError> {
        let mut left = next(self)?;
        while let Tok::Op(op) = *self.peek() {
            if !ops.contains(&op) {
                break;
            }
            self.bump();
            if matches!(self.peek(), Tok::End | Tok::Close) {
                return Err(ExprError::at(
                    self.offset(),
                    format!("expected a value after `{}`", op_str(op)),
                ));
            }
            let right = next(self)?;
            left = self.node(Expr::Binary(op, Box::new(left), Box::new(right)))?;
        }
        Ok(left)
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        self.binary(&[BinOp::Or], Parser::and)
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        self.binary(&[BinOp::And], Parser::equality)
    }

    fn equality(&mut self) -> Result<Expr, ExprError> {
        self.binary(&[BinOp::Eq, BinOp::Ne], Parser::comparison)
    }

    fn comparison(&mut self) -> Result<Expr, ExprError> {
        self.binary(&[BinOp::Lt, BinOp::Le, BinOp::Gt, BinOp::Ge], Parser::unary)
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        if *self.peek() == Tok::Not {
            self.bump();
            self.enter()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return self.node(Expr::Not(Box::new(inner)));
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.primary()?;
        loop {
            match self.peek() {
                Tok::Dot => {
                    self.bump();
                    let at = self.offset();
                    match self.bump() {
                        Tok::Ident(name) => e = self.node(Expr::Member(Box::new(e), name))?,
                        other => {
                            return Err(ExprError::at(
                                at,
                                format!(
                                    "expected a property name after `.`, found {}",
                                    describe(&other)
                                ),
                            ));
                        }
                    }
                }
                Tok::LBracket => {
                    self.bump();
                    self.enter()?;
                    let index = self.or()?;
                    self.depth -= 1;
                    self.expect(&Tok::RBracket, "`]`")?;
                    e = self.node(Expr::Index(Box::new(e), Box::new(index)))?;
                }
                _ => return Ok(e),
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, ExprError> {
        let at = self.offset();
        match self.bump() {
            Tok::Str(s) => self.node(Expr::Literal(Value::String(s))),
            Tok::Num(n) => self.node(Expr::Literal(n)),
            Tok::LParen => {
                self.enter()?;
                let e = self.or()?;
                self.depth -= 1;
                self.expect(&Tok::RParen, "`)`")?;
                Ok(e)
            }
            Tok::Ident(name) => {
                if *self.peek() == Tok::LParen {
                    self.bump();
                    let Some(func) = Func::lookup(&name) else {
                        return Err(ExprError::at(
                            at,
                            format!(
                                "unknown function `{name}`; Pave's functions are {}",
                                Func::ALL.map(|(n, _)| n).join(", ")
                            ),
                        ));
                    };
                    self.enter()?;
                    let mut args = Vec::new();
                    if *self.peek() != Tok::RParen {
                        loop {
                            args.push(self.or()?);
                            if *self.peek() == Tok::Comma {
                                self.bump();
                            } else {
                                break;
                            }
                        }
                    }
                    self.depth -= 1;
                    self.expect(&Tok::RParen, "`,` or `)`")?;
                    let (lo, hi) = func.arity();
                    if args.len() < lo || args.len() > hi {
                        let want = if lo == hi {
                            format!("{lo}")
                        } else if hi == usize::MAX {
                            format!("at least {lo}")
                        } else {
                            format!("{lo} to {hi}")
                        };
                        return Err(ExprError::at(
                            at,
                            format!(
                                "`{}()` takes {want} argument(s), found {}",
                                func.name(),
                                args.len()
                            ),
                        ));
                    }
                    return self.node(Expr::Call(func, args));
                }
                match name.to_ascii_lowercase().as_str() {
                    "true" => self.node(Expr::Literal(Value::Bool(true))),
                    "false" => self.node(Expr::Literal(Value::Bool(false))),
                    "null" => self.node(Expr::Literal(Value::Null)),
                    lower => {
                        let lower = lower.to_string();
                        self.node(Expr::Context(lower))
                    }
                }
            }
            other => Err(ExprError::at(
                at,
                format!("expected a value, found {}", describe(&other)),
            )),
        }
    }
}

/// Parses tokens into one expression that must end at `end`.
fn parse_tokens(toks: Vec<(Tok, usize)>, end: &Tok, end_what: &str) -> Result<Expr, ExprError> {
    let mut p = Parser {
        toks,
        pos: 0,
        nodes: 0,
        depth: 0,
    };
    if p.peek() == end {
        return Err(ExprError::at(p.offset(), "empty expression"));
    }
    let e = p.or()?;
    if p.peek() != end {
        return Err(ExprError::at(
            p.offset(),
            format!("expected {end_what}, found {}", describe(p.peek())),
        ));
    }
    Ok(e)
}

/// Parses a bare expression (no `${{ }}`).
pub fn parse(src: &str) -> Result<Expr, ExprError> {
    let (toks, _) = lex(src, 0, false)?;
    parse_tokens(toks, &Tok::End, "an operator or the end of the expression")
}

/// One piece of a template string.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    Text(String),
    /// An expression and its source text (without `${{ }}`).
    Expr(Expr, String),
}

/// A string with `${{ }}` expressions in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub segments: Vec<Segment>,
}

impl Template {
    /// The expressions in the template.
    pub fn exprs(&self) -> impl Iterator<Item = &Expr> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Expr(e, _) => Some(e),
            Segment::Text(_) => None,
        })
    }

    /// True when the template has no expressions.
    pub fn is_literal(&self) -> bool {
        self.exprs().next().is_none()
    }

    /// Evaluates every expression and concatenates the pieces.
    pub fn render(&self, ctx: &Value, status: Status) -> Result<String, ExprError> {
        let mut out = String::new();
        for s in &self.segments {
            match s {
                Segment::Text(t) => out.push_str(t),
                Segment::Expr(e, _) => {
                    out.push_str(&interpolation_string(&evaluate(e, ctx, status)?))
                }
            }
        }
        Ok(out)
    }
}

/// Parses a string that may hold `${{ <expr> }}` pieces.
pub fn parse_template(src: &str) -> Result<Template, ExprError> {
    let mut segments = Vec::new();
    let mut rest_start = 0;
    let mut text = String::new();
    while let Some(found) = src[rest_start..].find("${{") {
        let open = rest_start + found;
        text.push_str(&src[rest_start..open]);
        let inner_start = open + 3;
        let (toks, end) = lex(src, inner_start, true)?;
        let inner = src[inner_start..end - 2].trim().to_string();
        let e = parse_tokens(toks, &Tok::Close, "`}}`")?;
        if !text.is_empty() {
            segments.push(Segment::Text(std::mem::take(&mut text)));
        }
        segments.push(Segment::Expr(e, inner));
        rest_start = end;
    }
    text.push_str(&src[rest_start..]);
    if !text.is_empty() {
        segments.push(Segment::Text(text));
    }
    Ok(Template { segments })
}

/// Parses an `if:` condition: either a bare expression or exactly one
/// `${{ <expr> }}` (surrounding whitespace allowed). An empty condition is
/// `success()`. Text mixed with `${{ }}` is rejected: GitHub would turn it
/// into a non-empty string, which is always true.
pub fn parse_condition(src: &str) -> Result<Expr, ExprError> {
    let trimmed = src.trim();
    if trimmed.is_empty() {
        return Ok(Expr::Call(Func::Success, Vec::new()));
    }
    if src.contains("${{") {
        let t = parse_template(src)?;
        let mut exprs = Vec::new();
        for s in t.segments {
            match s {
                Segment::Expr(e, _) => exprs.push(e),
                Segment::Text(txt) if txt.trim().is_empty() => {}
                Segment::Text(_) => {
                    return Err(ExprError::at(
                        0,
                        "a condition mixes text with `${{ }}`; the result would be a non-empty string, always true. Write the whole condition as one expression",
                    ));
                }
            }
        }
        if exprs.len() != 1 {
            return Err(ExprError::at(
                0,
                "a condition must be one expression; write it without `${{ }}` or as a single `${{ ... }}`",
            ));
        }
        return Ok(exprs.pop().unwrap_or(Expr::Literal(Value::Null)));
    }
    parse(src)
}

/// The condition with GitHub's implicit `success() && (...)` when it calls no
/// status function.
pub fn with_implicit_success(cond: Expr) -> Expr {
    if cond.uses_status_function() {
        cond
    } else {
        Expr::Binary(
            BinOp::And,
            Box::new(Expr::Call(Func::Success, Vec::new())),
            Box::new(cond),
        )
    }
}

// -------------------------------------------------------------- evaluation

/// What the status functions answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// `success()`: nothing before failed and the run is not cancelled.
    pub success: bool,
    /// `failure()`: something before failed.
    pub failure: bool,
    /// `cancelled()`: the run was cancelled.
    pub cancelled: bool,
}

impl Status {
    /// Everything so far succeeded.
    pub const OK: Status = Status {
        success: true,
        failure: false,
        cancelled: false,
    };
}

impl Default for Status {
    fn default() -> Status {
        Status::OK
    }
}

/// GitHub's truthiness: `null`, `false`, `0`, NaN and `''` are false.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// Number coercion: `null` → 0, booleans → 1/0, strings parsed (`''` → 0,
/// surrounding whitespace allowed, `0x` hex), anything else NaN.
pub fn to_number(v: &Value) -> f64 {
    match v {
        Value::Null => 0.0,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                0.0
            } else {
                parse_number(t).and_then(|v| v.as_f64()).unwrap_or(f64::NAN)
            }
        }
        Value::Array(_) | Value::Object(_) => f64::NAN,
    }
}

fn format_number(f: f64) -> String {
    match number_value(f) {
        Some(Value::Number(n)) => n.to_string(),
        _ => f.to_string(),
    }
}

/// String coercion inside functions: `null` → `''`, booleans `true`/`false`,
/// arrays `Array`, objects `Object`.
pub fn to_string_value(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), format_number),
        Value::String(s) => s.clone(),
        Value::Array(_) => "Array".into(),
        Value::Object(_) => "Object".into(),
    }
}

/// How `${{ }}` turns a value into text: like [`to_string_value`], except that
/// arrays and objects are written as JSON.
pub fn interpolation_string(v: &Value) -> String {
    match v {
        Value::Array(_) | Value::Object(_) => serde_json::to_string_pretty(v).unwrap_or_default(),
        other => to_string_value(other),
    }
}

fn same_kind(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// `==` with GitHub's coercions.
pub fn loose_eq(a: &Value, b: &Value) -> bool {
    if same_kind(a, b) {
        return match (a, b) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(x), Value::Bool(y)) => x == y,
            (Value::Number(_), Value::Number(_)) => to_number(a) == to_number(b),
            (Value::String(x), Value::String(y)) => x.to_lowercase() == y.to_lowercase(),
            // Arrays and objects are equal only when they are the same instance.
            (Value::Array(x), Value::Array(y)) => std::ptr::eq(x, y),
            (Value::Object(x), Value::Object(y)) => std::ptr::eq(x, y),
            _ => false,
        };
    }
    let (x, y) = (to_number(a), to_number(b));
    x == y
}

fn compare(op: BinOp, a: &Value, b: &Value) -> bool {
    use std::cmp::Ordering;
    let ord = match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.to_lowercase().cmp(&y.to_lowercase())),
        _ => to_number(a).partial_cmp(&to_number(b)),
    };
    match (op, ord) {
        (_, None) => false,
        (BinOp::Lt, Some(o)) => o == Ordering::Less,
        (BinOp::Le, Some(o)) => o != Ordering::Greater,
        (BinOp::Gt, Some(o)) => o == Ordering::Greater,
        (BinOp::Ge, Some(o)) => o != Ordering::Less,
        _ => false,
    }
}

fn member(base: &Value, name: &str) -> Value {
    match base {
        Value::Object(m) => m
            .get(name)
            .or_else(|| {
                m.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
            })
            .cloned()
            .unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

fn index(base: &Value, idx: &Value) -> Value {
    match (base, idx) {
        (Value::Array(items), _) => {
            let f = to_number(idx);
            if f.is_nan() || f < 0.0 || f.fract() != 0.0 {
                Value::Null
            } else {
                items.get(f as usize).cloned().unwrap_or(Value::Null)
            }
        }
        (Value::Object(_), _) => member(base, &to_string_value(idx)),
        _ => Value::Null,
    }
}

/// Evaluates `expr` against `ctx` (an object whose keys are the context
/// names: `env`, `matrix`, `needs`, ...). A context missing from `ctx`, or a
/// missing property, is `null`.
pub fn evaluate(expr: &Expr, ctx: &Value, status: Status) -> Result<Value, ExprError> {
    Ok(match expr {
        Expr::Literal(v) => v.clone(),
        Expr::Context(name) => member(ctx, name),
        Expr::Member(base, name) => member(&evaluate(base, ctx, status)?, name),
        Expr::Index(base, i) => index(&evaluate(base, ctx, status)?, &evaluate(i, ctx, status)?),
        Expr::Not(e) => Value::Bool(!truthy(&evaluate(e, ctx, status)?)),
        Expr::Binary(BinOp::And, a, b) => {
            let l = evaluate(a, ctx, status)?;
            if truthy(&l) {
                evaluate(b, ctx, status)?
            } else {
                l
            }
        }
        Expr::Binary(BinOp::Or, a, b) => {
            let l = evaluate(a, ctx, status)?;
            if truthy(&l) {
                l
            } else {
                evaluate(b, ctx, status)?
            }
        }
        Expr::Binary(op, a, b) => {
            let (l, r) = (evaluate(a, ctx, status)?, evaluate(b, ctx, status)?);
            Value::Bool(match op {
                BinOp::Eq => loose_eq(&l, &r),
                BinOp::Ne => !loose_eq(&l, &r),
                _ => compare(*op, &l, &r),
            })
        }
        Expr::Call(f, args) => call(*f, args, ctx, status)?,
    })
}

fn call(f: Func, args: &[Expr], ctx: &Value, status: Status) -> Result<Value, ExprError> {
    let mut vals = Vec::with_capacity(args.len());
    for a in args {
        vals.push(evaluate(a, ctx, status)?);
    }
    let arg = |i: usize| vals.get(i).unwrap_or(&Value::Null);
    Ok(match f {
        Func::Success => Value::Bool(status.success),
        Func::Failure => Value::Bool(status.failure),
        Func::Always => Value::Bool(true),
        Func::Cancelled => Value::Bool(status.cancelled),
        Func::Contains => Value::Bool(match arg(0) {
            Value::Array(items) => items.iter().any(|x| loose_eq(x, arg(1))),
            hay => to_string_value(hay)
                .to_lowercase()
                .contains(&to_string_value(arg(1)).to_lowercase()),
        }),
        Func::StartsWith => Value::Bool(
            to_string_value(arg(0))
                .to_lowercase()
                .starts_with(&to_string_value(arg(1)).to_lowercase()),
        ),
        Func::EndsWith => Value::Bool(
            to_string_value(arg(0))
                .to_lowercase()
                .ends_with(&to_string_value(arg(1)).to_lowercase()),
        ),
        Func::Format => Value::String(format_fn(&to_string_value(arg(0)), &vals[1..])?),
        Func::Join => {
            let sep = if vals.len() > 1 {
                to_string_value(arg(1))
            } else {
                ",".into()
            };
            Value::String(match arg(0) {
                Value::Array(items) => items
                    .iter()
                    .map(to_string_value)
                    .collect::<Vec<_>>()
                    .join(&sep),
                other => to_string_value(other),
            })
        }
        Func::ToJson => Value::String(serde_json::to_string_pretty(arg(0)).unwrap_or_default()),
        Func::FromJson => {
            let s = to_string_value(arg(0));
            serde_json::from_str::<Value>(s.trim()).map_err(|e| {
                ExprError::eval(format!(
                    "fromJSON: `{}` is not valid JSON: {e}",
                    truncate(&s)
                ))
            })?
        }
    })
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 40 {
        let mut t: String = s.chars().take(40).collect();
        t.push('…');
        t
    } else {
        s.to_string()
    }
}

/// `format('{0} and {1}', a, b)`; `{{` and `}}` are literal braces.
fn format_fn(fmt: &str, args: &[Value]) -> Result<String, ExprError> {
    let mut out = String::new();
    let mut chars = fmt.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|&(_, c)| c) == Some('{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek().map(|&(_, c)| c) == Some('}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let rest = &fmt[i + 1..];
                let Some(close) = rest.find('}') else {
                    return Err(ExprError::eval(format!(
                        "format: `{{` at character {} is not closed",
                        i + 1
                    )));
                };
                let n: usize = rest[..close].trim().parse().map_err(|_| {
                    ExprError::eval(format!(
                        "format: `{{{}}}` is not an argument index",
                        &rest[..close]
                    ))
                })?;
                let v = args.get(n).ok_or_else(|| {
                    ExprError::eval(format!(
                        "format: `{{{n}}}` refers to a missing argument ({} given)",
                        args.len()
                    ))
                })?;
                out.push_str(&to_string_value(v));
                for _ in 0..=close {
                    chars.next();
                }
            }
            '}' => {
                return Err(ExprError::eval(format!(
                    "format: unmatched `}}` at character {}",
                    i + 1
                )));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Evaluates an `if:` condition (with the implicit `success()` when it calls
/// no status function) to a boolean.
pub fn eval_condition(cond: &str, ctx: &Value, status: Status) -> Result<bool, ExprError> {
    let e = with_implicit_success(parse_condition(cond)?);
    Ok(truthy(&evaluate(&e, ctx, status)?))
}

/// Renders a string with `${{ }}` pieces.
pub fn interpolate(src: &str, ctx: &Value, status: Status) -> Result<String, ExprError> {
    parse_template(src)?.render(ctx, status)
}

/// Builds a context object from `(name, value)` pairs; a convenience for tests
/// and callers that assemble contexts by hand.
pub fn context(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    let mut m = Map::new();
    for (k, v) in pairs {
        m.insert(k.to_string(), v);
    }
    Value::Object(m)
}
