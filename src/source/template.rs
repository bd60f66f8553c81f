//! The Go `text/template` subset that `--fqdn-template` needs (external-dns `source/fqdn`).
//!
//! Templates run against the object as Go sees it: `.Name`, `.Namespace`, `.Labels.app`,
//! `.Annotations`, `.Kind`, `.APIVersion`, `.Spec.Type`, `.Status.LoadBalancer.Ingress`,
//! `.ObjectMeta.Name`. Field names are matched against the JSON form case-insensitively,
//! which is how Go field names and JSON names relate throughout the Kubernetes API.
//!
//! Supported: text, `{{- -}}` trimming, comments, pipelines with `|`, parentheses,
//! variables (`$`, `$x := …`, `range $k, $v := …`), `if`/`else if`/`else`, `range`/`else`,
//! `with`/`else`; the builtins `and or not eq ne lt le gt ge len index print printf println`
//! and external-dns's `contains trimPrefix trimSuffix trim toLower replace isIPv4 isIPv6
//! hasKey`. Not supported: `define`/`template`/`block`, `break`/`continue`, method calls.
//! Comparisons are lenient where Go would fail: a missing map key compares as "".

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("template: {0}")]
pub struct TemplateError(pub String);

type Res<T> = Result<T, TemplateError>;

fn err<T>(msg: impl Into<String>) -> Res<T> {
    Err(TemplateError(msg.into()))
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Text(String),
    Action(Pipeline),
    If { cond: Pipeline, then: Vec<Node>, otherwise: Vec<Node> },
    Range { pipe: Pipeline, body: Vec<Node>, otherwise: Vec<Node> },
    With { pipe: Pipeline, body: Vec<Node>, otherwise: Vec<Node> },
}

#[derive(Clone, Debug, PartialEq)]
struct Pipeline {
    /// Variables declared (`:=`) or assigned (`=`) by this pipeline.
    vars: Vec<String>,
    declare: bool,
    cmds: Vec<Vec<Operand>>,
}

#[derive(Clone, Debug, PartialEq)]
enum Base {
    Dot,
    Var(String),
    Paren(Box<Pipeline>),
}

#[derive(Clone, Debug, PartialEq)]
enum Operand {
    Field { base: Base, chain: Vec<String> },
    Func(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
}

/// Go's builtins we support, then external-dns's additions.
const FUNCS: [&str; 23] = [
    "and",
    "or",
    "not",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "contains",
    "trimPrefix",
    "trimSuffix",
    "trim",
    "toLower",
    "replace",
    "isIPv4",
    "isIPv6",
    "hasKey",
];

fn is_func(name: &str) -> bool {
    FUNCS.contains(&name)
}

// ---------------------------------------------------------------- lexing

enum Item {
    Text(String),
    Action(String),
}

/// Splits the source into text and action bodies, applying `{{-`/`-}}` trimming.
fn split_actions(src: &str) -> Res<Vec<Item>> {
    let mut items = Vec::new();
    let mut rest = src;
    let mut trim_next_text = false;
    while let Some(open) = rest.find("{{") {
        let mut text = &rest[..open];
        if trim_next_text {
            text = text.trim_start();
        }
        let mut body_start = open + 2;
        let after = &rest[body_start..];
        if after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n") || after.starts_with("-\r") {
            text = text.trim_end();
            body_start += 1;
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_string()));
        }
        let close = find_close(&rest[body_start..]).ok_or_else(|| TemplateError("unclosed action".into()))?;
        let mut body = &rest[body_start..body_start + close];
        trim_next_text = false;
        if body.ends_with(" -") || body.ends_with("\t-") || body.ends_with("\n-") || body.ends_with("\r-") {
            body = &body[..body.len() - 1];
            trim_next_text = true;
        }
        let trimmed = body.trim();
        if trimmed.starts_with("/*") {
            if !trimmed.ends_with("*/") {
                return err("unclosed comment");
            }
        } else {
            items.push(Item::Action(body.to_string()));
        }
        rest = &rest[body_start + close + 2..];
    }
    let text = if trim_next_text { rest.trim_start() } else { rest };
    if !text.is_empty() {
        items.push(Item::Text(text.to_string()));
    }
    Ok(items)
}

/// Position of the `}}` closing an action, skipping string and raw-string literals.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// `.A.B` (possibly just `.`), the chain of field names.
    Field(Vec<String>),
    /// `$x.A.B`; `$` alone is the root.
    Var(String, Vec<String>),
    /// `.A.B` directly after `)`.
    Chain(Vec<String>),
    Ident(String),
    Str(String),
    Num(String),
    Pipe,
    Open,
    Close,
    Declare,
    Assign,
    Comma,
}

fn lex_action(s: &str) -> Res<Vec<Tok>> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let field_chain = |i: &mut usize| -> Vec<String> {
        let mut chain = Vec::new();
        while *i < chars.len() && chars[*i] == '.' {
            *i += 1;
            let start = *i;
            while *i < chars.len() && (chars[*i].is_alphanumeric() || chars[*i] == '_') {
                *i += 1;
            }
            if *i > start {
                chain.push(chars[start..*i].iter().collect());
            }
        }
        chain
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '|' => {
                out.push(Tok::Pipe);
                i += 1;
            }
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
                if i < chars.len() && chars[i] == '.' {
                    out.push(Tok::Chain(field_chain(&mut i)));
                }
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                out.push(Tok::Declare);
                i += 2;
            }
            '=' => {
                out.push(Tok::Assign);
                i += 1;
            }
            '.' if chars.get(i + 1).is_none_or(|n| !n.is_ascii_digit()) => {
                out.push(Tok::Field(field_chain(&mut i)));
            }
            '$' => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                out.push(Tok::Var(name, field_chain(&mut i)));
            }
            '"' => {
                i += 1;
                let mut v = String::new();
                loop {
                    match chars.get(i) {
                        None => return err("unterminated quoted string"),
                        Some('"') => break,
                        Some('\\') => {
                            i += 1;
                            match chars.get(i) {
                                Some('n') => v.push('\n'),
                                Some('t') => v.push('\t'),
                                Some('\\') => v.push('\\'),
                                Some('"') => v.push('"'),
                                Some(o) => return err(format!("unsupported escape \\{o} in string")),
                                None => return err("unterminated quoted string"),
                            }
                        }
                        Some(o) => v.push(*o),
                    }
                    i += 1;
                }
                i += 1;
                out.push(Tok::Str(v));
            }
            '`' => {
                let start = i + 1;
                i = start;
                while i < chars.len() && chars[i] != '`' {
                    i += 1;
                }
                if i >= chars.len() {
                    return err("unterminated raw string");
                }
                out.push(Tok::Str(chars[start..i].iter().collect()));
                i += 1;
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+' || c == '.') && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit())) =>
            {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                out.push(Tok::Num(chars[start..i].iter().collect()));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            other => return err(format!("unexpected {other:?} in action")),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- parsing

struct ActionParser {
    toks: Vec<Tok>,
    pos: usize,
}

impl ActionParser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn pipeline(&mut self, allow_decl: bool) -> Res<Pipeline> {
        let mut vars = Vec::new();
        let mut declare = false;
        if allow_decl {
            // `$x :=`, `$x =` or `$k, $v :=`
            let save = self.pos;
            let mut names = Vec::new();
            while let Some(Tok::Var(name, chain)) = self.peek().cloned() {
                if !chain.is_empty() {
                    break;
                }
                names.push(name);
                self.pos += 1;
                if self.peek() == Some(&Tok::Comma) {
                    self.pos += 1;
                    continue;
                }
                break;
            }
            match self.peek() {
                Some(Tok::Declare) if !names.is_empty() && names.len() <= 2 => {
                    self.pos += 1;
                    vars = names;
                    declare = true;
                }
                Some(Tok::Assign) if names.len() == 1 => {
                    self.pos += 1;
                    vars = names;
                }
                _ => self.pos = save,
            }
        }
        let mut cmds = Vec::new();
        loop {
            let mut cmd = Vec::new();
            while let Some(t) = self.peek().cloned() {
                if matches!(t, Tok::Pipe | Tok::Close) {
                    break;
                }
                cmd.push(self.operand()?);
            }
            if cmd.is_empty() {
                return err("missing command in pipeline");
            }
            cmds.push(cmd);
            if self.peek() == Some(&Tok::Pipe) {
                self.pos += 1;
                continue;
            }
            break;
        }
        Ok(Pipeline { vars, declare, cmds })
    }

    fn operand(&mut self) -> Res<Operand> {
        let t = self.toks.get(self.pos).cloned().ok_or_else(|| TemplateError("unexpected end of action".into()))?;
        self.pos += 1;
        Ok(match t {
            Tok::Field(chain) => Operand::Field { base: Base::Dot, chain },
            Tok::Var(name, chain) => Operand::Field { base: Base::Var(name), chain },
            Tok::Open => {
                let inner = self.pipeline(false)?;
                if self.toks.get(self.pos) != Some(&Tok::Close) {
                    return err("unclosed '('");
                }
                self.pos += 1;
                let chain = match self.peek() {
                    Some(Tok::Chain(c)) => {
                        let c = c.clone();
                        self.pos += 1;
                        c
                    }
                    _ => Vec::new(),
                };
                Operand::Field { base: Base::Paren(Box::new(inner)), chain }
            }
            Tok::Str(s) => Operand::Str(s),
            Tok::Num(n) => {
                if let Ok(i) = n.parse::<i64>() {
                    Operand::Int(i)
                } else if let Ok(f) = n.parse::<f64>() {
                    Operand::Float(f)
                } else {
                    return err(format!("bad number syntax: {n:?}"));
                }
            }
            Tok::Ident(name) => match name.as_str() {
                "true" => Operand::Bool(true),
                "false" => Operand::Bool(false),
                "nil" => Operand::Nil,
                n if is_func(n) => Operand::Func(name),
                _ => return err(format!("function {name:?} not defined")),
            },
            other => return err(format!("unexpected {other:?} in operand")),
        })
    }
}

fn parse_pipeline(toks: Vec<Tok>, allow_decl: bool) -> Res<Pipeline> {
    let mut p = ActionParser { toks, pos: 0 };
    let pipe = p.pipeline(allow_decl)?;
    if p.pos != p.toks.len() {
        return err(format!("unexpected {:?} in action", p.toks[p.pos]));
    }
    Ok(pipe)
}

/// What ended a node list.
enum Stop {
    Eof,
    End,
    Else(Vec<Tok>),
}

fn parse_list(items: &mut std::iter::Peekable<std::vec::IntoIter<Item>>) -> Res<(Vec<Node>, Stop)> {
    let mut nodes = Vec::new();
    while let Some(item) = items.next() {
        let body = match item {
            Item::Text(t) => {
                nodes.push(Node::Text(t));
                continue;
            }
            Item::Action(a) => a,
        };
        let mut toks = lex_action(&body)?;
        let keyword = match toks.first() {
            Some(Tok::Ident(k)) => k.clone(),
            None => return err("missing value for command"),
            _ => String::new(),
        };
        match keyword.as_str() {
            "end" => {
                if toks.len() != 1 {
                    return err("unexpected tokens after end");
                }
                return Ok((nodes, Stop::End));
            }
            "else" => {
                toks.remove(0);
                return Ok((nodes, Stop::Else(toks)));
            }
            "if" | "range" | "with" => {
                toks.remove(0);
                let node = parse_block(&keyword, toks, items)?;
                nodes.push(node);
            }
            "define" | "template" | "block" | "break" | "continue" => {
                return err(format!("{keyword:?} is not supported in --fqdn-template"));
            }
            _ => {
                let pipe = parse_pipeline(toks, true)?;
                if pipe.vars.len() > 1 {
                    return err("too many declarations in command");
                }
                nodes.push(Node::Action(pipe));
            }
        }
    }
    Ok((nodes, Stop::Eof))
}

fn parse_block(keyword: &str, toks: Vec<Tok>, items: &mut std::iter::Peekable<std::vec::IntoIter<Item>>) -> Res<Node> {
    let pipe = parse_pipeline(toks, keyword == "range" || keyword == "with")?;
    let (body, stop) = parse_list(items)?;
    let otherwise = match stop {
        Stop::Eof => return err(format!("unexpected EOF: {keyword} without end")),
        Stop::End => Vec::new(),
        Stop::Else(rest) if rest.is_empty() => match parse_list(items)? {
            (list, Stop::End) => list,
            (_, Stop::Else(_)) => return err("more than one else"),
            (_, Stop::Eof) => return err(format!("unexpected EOF: {keyword} without end")),
        },
        // `else if …` (and `else with …`) chain into a nested block sharing this block's end.
        Stop::Else(mut rest) => match rest.first() {
            Some(Tok::Ident(k)) if (k == "if" || k == "with") => {
                let k = k.clone();
                rest.remove(0);
                vec![parse_block(&k, rest, items)?]
            }
            _ => return err("unexpected tokens after else"),
        },
    };
    Ok(match keyword {
        "if" => Node::If { cond: pipe, then: body, otherwise },
        "range" => Node::Range { pipe, body, otherwise },
        _ => Node::With { pipe, body, otherwise },
    })
}

impl Template {
    pub fn parse(src: &str) -> Res<Template> {
        let mut items = split_actions(src)?.into_iter().peekable();
        match parse_list(&mut items)? {
            (nodes, Stop::Eof) => Ok(Template { nodes }),
            (_, Stop::End) => err("unexpected {{end}}"),
            (_, Stop::Else(_)) => err("unexpected {{else}}"),
        }
    }

    /// Runs the template against an object in its JSON form.
    pub fn execute(&self, object: &Value) -> Res<String> {
        let root = Val::from_json(object, false);
        let mut ex = Exec { vars: vec![("$".into(), root.clone())], out: String::new() };
        ex.walk(&self.nodes, &root)?;
        Ok(ex.out)
    }

    /// external-dns's `ExecTemplate`: the output split on commas into hostnames, trimmed,
    /// without trailing dots and empty entries.
    pub fn hostnames(&self, object: &Value) -> Res<Vec<String>> {
        Ok(self
            .execute(object)?
            .split(',')
            .map(|h| h.trim().trim_end_matches('.'))
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect())
    }
}

// ---------------------------------------------------------------- field paths

impl Template {
    /// The field chains read from the object itself: `.Spec.Type` outside `range`/`with`
    /// bodies (inside them `.` is something else) and `$.Spec.Type` anywhere. What
    /// start-up checks against the kinds of the enabled sources.
    pub fn root_fields(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        collect_nodes(&self.nodes, true, &mut out);
        out.sort();
        out.dedup();
        out
    }
}

fn collect_nodes(nodes: &[Node], dot_is_root: bool, out: &mut Vec<Vec<String>>) {
    for node in nodes {
        match node {
            Node::Text(_) => {}
            Node::Action(p) => collect_pipeline(p, dot_is_root, out),
            Node::If { cond, then, otherwise } => {
                collect_pipeline(cond, dot_is_root, out);
                collect_nodes(then, dot_is_root, out);
                collect_nodes(otherwise, dot_is_root, out);
            }
            Node::Range { pipe, body, otherwise } | Node::With { pipe, body, otherwise } => {
                collect_pipeline(pipe, dot_is_root, out);
                collect_nodes(body, false, out);
                collect_nodes(otherwise, dot_is_root, out);
            }
        }
    }
}

fn collect_pipeline(p: &Pipeline, dot_is_root: bool, out: &mut Vec<Vec<String>>) {
    for op in p.cmds.iter().flatten() {
        if let Operand::Field { base, chain } = op {
            match base {
                Base::Dot if dot_is_root && !chain.is_empty() => out.push(chain.clone()),
                Base::Var(v) if v == "$" && !chain.is_empty() => out.push(chain.clone()),
                Base::Paren(inner) => collect_pipeline(inner, dot_is_root, out),
                _ => {}
            }
        }
    }
}

// ---------------------------------------------------------------- values

#[derive(Clone, Debug, PartialEq)]
enum Val {
    /// A map lookup that found nothing; Go prints it as `<no value>`.
    Missing,
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Val>),
    /// A Go map: keys are looked up exactly.
    Map(BTreeMap<String, Val>),
    /// A Go struct: fields are looked up by Go name.
    Struct(BTreeMap<String, Val>),
}

/// JSON fields that are Go maps in the Kubernetes API objects extdns templates see.
const MAP_FIELDS: [&str; 4] = ["labels", "annotations", "selector", "nodeSelector"];

impl Val {
    fn from_json(v: &Value, is_map: bool) -> Val {
        match v {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => n.as_i64().map(Val::Int).unwrap_or_else(|| Val::Float(n.as_f64().unwrap_or(0.0))),
            Value::String(s) => Val::Str(s.clone()),
            Value::Array(a) => Val::List(a.iter().map(|x| Val::from_json(x, false)).collect()),
            Value::Object(o) => {
                let m =
                    o.iter().map(|(k, x)| (k.clone(), Val::from_json(x, MAP_FIELDS.contains(&k.as_str())))).collect();
                if is_map {
                    Val::Map(m)
                } else {
                    Val::Struct(m)
                }
            }
        }
    }

    fn truth(&self) -> bool {
        match self {
            Val::Missing | Val::Null => false,
            Val::Bool(b) => *b,
            Val::Int(i) => *i != 0,
            Val::Float(f) => *f != 0.0,
            Val::Str(s) => !s.is_empty(),
            Val::List(l) => !l.is_empty(),
            Val::Map(m) => !m.is_empty(),
            Val::Struct(_) => true,
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Val::Missing | Val::Null => "nil",
            Val::Bool(_) => "bool",
            Val::Int(_) => "int",
            Val::Float(_) => "float64",
            Val::Str(_) => "string",
            Val::List(_) => "slice",
            Val::Map(_) => "map",
            Val::Struct(_) => "struct",
        }
    }

    /// Go's `fmt.Sprint` of the value.
    fn print(&self) -> String {
        match self {
            Val::Missing => "<no value>".into(),
            Val::Null => String::new(),
            Val::Bool(b) => b.to_string(),
            Val::Int(i) => i.to_string(),
            Val::Float(f) => f.to_string(),
            Val::Str(s) => s.clone(),
            Val::List(l) => format!("[{}]", l.iter().map(Val::print).collect::<Vec<_>>().join(" ")),
            Val::Map(m) => {
                format!("map[{}]", m.iter().map(|(k, v)| format!("{k}:{}", v.print())).collect::<Vec<_>>().join(" "))
            }
            Val::Struct(m) => format!("{{{}}}", m.values().map(Val::print).collect::<Vec<_>>().join(" ")),
        }
    }

    fn field(&self, name: &str) -> Res<Val> {
        match self {
            Val::Struct(m) => {
                if let Some(v) = lookup_go_field(m, name) {
                    return Ok(v);
                }
                // Objects embed ObjectMeta, so its fields are promoted: `.Name` is
                // `.ObjectMeta.Name`.
                if let Some(Val::Struct(meta)) = m.get("metadata") {
                    if let Some(v) = lookup_go_field(meta, name) {
                        return Ok(v);
                    }
                }
                // JSON omits empty fields; Go would see their zero value.
                Ok(Val::Null)
            }
            Val::Map(m) => Ok(m.get(name).cloned().unwrap_or(Val::Missing)),
            Val::Null | Val::Missing => Ok(self.clone()),
            other => err(format!("can't evaluate field {name} in type {}", other.type_name())),
        }
    }

    fn as_str(&self, func: &str) -> Res<String> {
        match self {
            Val::Str(s) => Ok(s.clone()),
            Val::Missing | Val::Null => Ok(String::new()),
            other => err(format!("{func}: expected string, got {}", other.type_name())),
        }
    }
}

fn lookup_go_field(m: &BTreeMap<String, Val>, name: &str) -> Option<Val> {
    match name {
        "ObjectMeta" => return m.get("metadata").cloned(),
        "TypeMeta" => {
            let tm: BTreeMap<String, Val> = m
                .iter()
                .filter(|(k, _)| *k == "kind" || *k == "apiVersion")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            return Some(Val::Struct(tm));
        }
        _ => {}
    }
    m.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
}

// ---------------------------------------------------------------- execution

struct Exec {
    vars: Vec<(String, Val)>,
    out: String,
}

impl Exec {
    fn walk(&mut self, nodes: &[Node], dot: &Val) -> Res<()> {
        let mark = self.vars.len();
        for node in nodes {
            match node {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipeline(p, dot)?;
                    if p.vars.is_empty() {
                        self.out.push_str(&v.print());
                    }
                }
                Node::If { cond, then, otherwise } => {
                    let v = self.pipeline(cond, dot)?;
                    self.walk(if v.truth() { then } else { otherwise }, dot)?;
                }
                Node::With { pipe, body, otherwise } => {
                    let inner = self.vars.len();
                    let v = self.pipeline(pipe, dot)?;
                    if v.truth() {
                        self.walk(body, &v)?;
                    } else {
                        self.walk(otherwise, dot)?;
                    }
                    self.vars.truncate(inner);
                }
                Node::Range { pipe, body, otherwise } => {
                    let saved = pipe.vars.clone();
                    let plain = Pipeline { vars: Vec::new(), declare: false, cmds: pipe.cmds.clone() };
                    let v = self.pipeline(&plain, dot)?;
                    let entries: Vec<(Val, Val)> = match v {
                        Val::List(l) => l.into_iter().enumerate().map(|(i, x)| (Val::Int(i as i64), x)).collect(),
                        Val::Map(m) => m.into_iter().map(|(k, x)| (Val::Str(k), x)).collect(),
                        Val::Null | Val::Missing => Vec::new(),
                        other => return err(format!("range can't iterate over {}", other.print())),
                    };
                    if entries.is_empty() {
                        self.walk(otherwise, dot)?;
                    }
                    for (k, x) in entries {
                        let inner = self.vars.len();
                        match saved.as_slice() {
                            [one] => self.vars.push((one.clone(), x.clone())),
                            [key, value] => {
                                self.vars.push((key.clone(), k));
                                self.vars.push((value.clone(), x.clone()));
                            }
                            _ => {}
                        }
                        self.walk(body, &x)?;
                        self.vars.truncate(inner);
                    }
                }
            }
        }
        self.vars.truncate(mark);
        Ok(())
    }

    fn var(&self, name: &str) -> Res<Val> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| TemplateError(format!("undefined variable: {name}")))
    }

    fn pipeline(&mut self, p: &Pipeline, dot: &Val) -> Res<Val> {
        let mut last: Option<Val> = None;
        for cmd in &p.cmds {
            last = Some(self.command(cmd, dot, last)?);
        }
        let v = last.unwrap_or(Val::Null);
        if let [name] = p.vars.as_slice() {
            if p.declare {
                self.vars.push((name.clone(), v.clone()));
            } else {
                let slot = self.vars.iter_mut().rev().find(|(n, _)| n == name);
                match slot {
                    Some(slot) => slot.1 = v.clone(),
                    None => return err(format!("undefined variable: {name}")),
                }
            }
        }
        Ok(v)
    }

    fn operand(&mut self, op: &Operand, dot: &Val) -> Res<Val> {
        match op {
            Operand::Field { base, chain } => {
                let mut v = match base {
                    Base::Dot => dot.clone(),
                    Base::Var(name) => self.var(name)?,
                    Base::Paren(p) => self.pipeline(p, dot)?,
                };
                for name in chain {
                    v = v.field(name)?;
                }
                Ok(v)
            }
            Operand::Func(name) => call(name, Vec::new()),
            Operand::Str(s) => Ok(Val::Str(s.clone())),
            Operand::Int(i) => Ok(Val::Int(*i)),
            Operand::Float(f) => Ok(Val::Float(*f)),
            Operand::Bool(b) => Ok(Val::Bool(*b)),
            Operand::Nil => Ok(Val::Null),
        }
    }

    fn command(&mut self, cmd: &[Operand], dot: &Val, piped: Option<Val>) -> Res<Val> {
        match cmd.first() {
            Some(Operand::Func(name)) => {
                let mut args = Vec::new();
                for a in &cmd[1..] {
                    args.push(self.operand(a, dot)?);
                }
                args.extend(piped);
                call(name, args)
            }
            Some(Operand::Nil) => err("nil is not a command"),
            Some(first) => {
                if cmd.len() > 1 || piped.is_some() {
                    return err("can't give argument to non-function");
                }
                self.operand(first, dot)
            }
            None => err("empty command"),
        }
    }
}

fn want_args(name: &str, args: &[Val], n: usize) -> Res<()> {
    if args.len() != n {
        return err(format!("wrong number of args for {name}: want {n} got {}", args.len()));
    }
    Ok(())
}

fn cmp_key(v: &Val) -> Option<Cmp> {
    match v {
        Val::Str(s) => Some(Cmp::Str(s.clone())),
        Val::Missing | Val::Null => Some(Cmp::Str(String::new())),
        Val::Int(i) => Some(Cmp::Num(*i as f64)),
        Val::Float(f) => Some(Cmp::Num(*f)),
        Val::Bool(b) => Some(Cmp::Bool(*b)),
        _ => None,
    }
}

#[derive(PartialEq, PartialOrd)]
enum Cmp {
    Str(String),
    Num(f64),
    Bool(bool),
}

fn compare(name: &str, a: &Val, b: &Val) -> Res<(Cmp, Cmp)> {
    match (cmp_key(a), cmp_key(b)) {
        (Some(x), Some(y)) if std::mem::discriminant(&x) == std::mem::discriminant(&y) => Ok((x, y)),
        _ => err(format!("{name}: incompatible types for comparison: {} and {}", a.type_name(), b.type_name())),
    }
}

fn call(name: &str, args: Vec<Val>) -> Res<Val> {
    let s = |i: usize| args[i].as_str(name);
    match name {
        "and" | "or" => {
            if args.is_empty() {
                return err(format!("wrong number of args for {name}: want at least 1 got 0"));
            }
            let stop_on = name == "or";
            Ok(args.iter().find(|a| a.truth() == stop_on).unwrap_or(&args[args.len() - 1]).clone())
        }
        "not" => {
            want_args(name, &args, 1)?;
            Ok(Val::Bool(!args[0].truth()))
        }
        "eq" => {
            if args.len() < 2 {
                return err("wrong number of args for eq: want at least 2");
            }
            for other in &args[1..] {
                let (x, y) = compare(name, &args[0], other)?;
                if x == y {
                    return Ok(Val::Bool(true));
                }
            }
            Ok(Val::Bool(false))
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            want_args(name, &args, 2)?;
            let (x, y) = compare(name, &args[0], &args[1])?;
            if name != "ne" && matches!(x, Cmp::Bool(_)) {
                return err(format!("{name}: invalid type for comparison"));
            }
            Ok(Val::Bool(match name {
                "ne" => x != y,
                "lt" => x < y,
                "le" => x <= y,
                "gt" => x > y,
                _ => x >= y,
            }))
        }
        "len" => {
            want_args(name, &args, 1)?;
            let n = match &args[0] {
                Val::Str(s) => s.len(),
                Val::List(l) => l.len(),
                Val::Map(m) => m.len(),
                Val::Null => 0,
                other => return err(format!("len of type {}", other.type_name())),
            };
            Ok(Val::Int(n as i64))
        }
        "index" => {
            if args.is_empty() {
                return err("wrong number of args for index: want at least 1 got 0");
            }
            let mut v = args[0].clone();
            for key in &args[1..] {
                v = match (&v, key) {
                    (Val::Map(m), k) => m.get(&k.as_str(name)?).cloned().unwrap_or(Val::Str(String::new())),
                    (Val::Null | Val::Missing, _) => Val::Str(String::new()),
                    (Val::List(l), Val::Int(i)) => match usize::try_from(*i).ok().and_then(|i| l.get(i)) {
                        Some(x) => x.clone(),
                        None => return err(format!("index: index out of range: {i}")),
                    },
                    (other, _) => return err(format!("index: can't index item of type {}", other.type_name())),
                };
            }
            Ok(v)
        }
        "print" => Ok(Val::Str(go_sprint(&args))),
        "println" => Ok(Val::Str(format!("{}\n", args.iter().map(Val::print).collect::<Vec<_>>().join(" ")))),
        "printf" => {
            if args.is_empty() {
                return err("wrong number of args for printf: want at least 1 got 0");
            }
            Ok(Val::Str(go_sprintf(&s(0)?, &args[1..])))
        }
        "contains" => {
            want_args(name, &args, 2)?;
            Ok(Val::Bool(s(0)?.contains(&s(1)?)))
        }
        "trimPrefix" => {
            want_args(name, &args, 2)?;
            let (v, p) = (s(0)?, s(1)?);
            Ok(Val::Str(v.strip_prefix(p.as_str()).unwrap_or(&v).to_string()))
        }
        "trimSuffix" => {
            want_args(name, &args, 2)?;
            let (v, p) = (s(0)?, s(1)?);
            Ok(Val::Str(v.strip_suffix(p.as_str()).unwrap_or(&v).to_string()))
        }
        "trim" => {
            want_args(name, &args, 1)?;
            Ok(Val::Str(s(0)?.trim().to_string()))
        }
        "toLower" => {
            want_args(name, &args, 1)?;
            Ok(Val::Str(s(0)?.to_lowercase()))
        }
        "replace" => {
            want_args(name, &args, 3)?;
            Ok(Val::Str(s(2)?.replace(&s(0)?, &s(1)?)))
        }
        "isIPv4" => {
            want_args(name, &args, 1)?;
            Ok(Val::Bool(matches!(s(0)?.parse::<IpAddr>(), Ok(IpAddr::V4(_)))))
        }
        "isIPv6" => {
            want_args(name, &args, 1)?;
            Ok(Val::Bool(matches!(s(0)?.parse::<IpAddr>(), Ok(IpAddr::V6(_)))))
        }
        "hasKey" => {
            want_args(name, &args, 2)?;
            let key = s(1)?;
            Ok(Val::Bool(match &args[0] {
                Val::Map(m) | Val::Struct(m) => m.contains_key(&key),
                _ => false,
            }))
        }
        _ => err(format!("function {name:?} not defined")),
    }
}

/// `fmt.Sprint`: spaces between operands when neither side is a string.
fn go_sprint(args: &[Val]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Val::Str(_)) && !matches!(args[i - 1], Val::Str(_)) {
            out.push(' ');
        }
        out.push_str(&a.print());
    }
    out
}

/// `fmt.Sprintf` for the verbs templates use: %s %v %d %q %t and %%.
fn go_sprintf(format: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut next = args.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        match next.next() {
            None => {
                let _ = write!(out, "%!{verb}(MISSING)");
            }
            Some(a) => match verb {
                's' | 'v' | 'd' | 't' => out.push_str(&a.print()),
                'q' => {
                    let _ = write!(out, "{:?}", a.print());
                }
                other => {
                    let _ = write!(out, "%!{other}({})", a.print());
                }
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "web",
                "namespace": "shop",
                "labels": {"env": "prod", "app": "web", "app.kubernetes.io/part-of": "store"},
                "annotations": {"dns.example.com/label": "edge"}
            },
            "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.1", "selector": {"app": "web"}},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}, {"hostname": "lb.example.net"}]}}
        })
    }

    fn run(src: &str) -> String {
        Template::parse(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .execute(&svc())
            .unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    #[test]
    fn fields_and_promoted_metadata() {
        assert_eq!(run("{{.Name}}.{{ .Namespace }}.example.com"), "web.shop.example.com");
        assert_eq!(run("{{ .ObjectMeta.Name }}/{{.Kind}}/{{.APIVersion}}"), "web/Service/v1");
        assert_eq!(run("{{.Labels.env}}-{{ index .Labels \"app.kubernetes.io/part-of\" }}"), "prod-store");
        assert_eq!(
            run("{{ .Spec.Type }} {{ .Spec.ClusterIP }} {{ index .Spec.Selector \"app\" }}"),
            "LoadBalancer 10.0.0.1 web"
        );
        assert_eq!(
            run("{{ .Labels.missing }}|{{ index .Labels \"missing\" }}|{{ .Spec.ExternalName }}"),
            "<no value>||"
        );
        assert_eq!(
            run("{{ range .Status.LoadBalancer.Ingress }}{{ .IP }}{{ .Hostname }};{{ end }}"),
            "192.0.2.1;lb.example.net;"
        );
    }

    #[test]
    fn conditionals_and_functions() {
        assert_eq!(run("{{ if eq .Kind \"Service\" }}{{ .Name }}.svc{{ else }}other{{ end }}"), "web.svc");
        assert_eq!(
            run("{{ if eq .Labels.env \"dev\" }}d{{ else if eq .Labels.env \"prod\" }}p{{ else }}x{{ end }}"),
            "p"
        );
        assert_eq!(run("{{ or .Annotations.dns \"invalid\" }}.example.com"), "invalid.example.com");
        assert_eq!(run("{{ .Name | toLower | printf \"%s-x\" }}"), "web-x");
        assert_eq!(
            run("{{ trimPrefix .Name \"w\" }}{{ trimSuffix \"a.b.\" \".\" }}{{ replace \"-\" \".\" \"a-b\" }}"),
            "eba.ba.b"
        );
        assert_eq!(run("{{ if and (hasKey .Labels \"env\") (not (hasKey .Labels \"nope\")) }}ok{{ end }}"), "ok");
        assert_eq!(
            run("{{ isIPv4 \"192.0.2.1\" }} {{ isIPv6 \"::ffff:1.2.3.4\" }} {{ contains .Name \"eb\" }}"),
            "true true true"
        );
        assert_eq!(run("{{ len .Labels }} {{ len (index .Status.LoadBalancer.Ingress 0).IP }}"), "3 9");
        assert_eq!(
            run("{{ with .Labels.env }}{{ . }}{{ end }}{{ with .Labels.nope }}x{{ else }}none{{ end }}"),
            "prodnone"
        );
    }

    #[test]
    fn range_with_variables_and_trimming() {
        let src = "{{- range $k, $v := .Labels -}}\n  {{- if contains $k \"app\" }}{{ $.Name }}.{{ $v }}.example.com{{ printf \",\" }}{{ end -}}\n{{- end }}";
        assert_eq!(run(src), "web.web.example.com,web.store.example.com,");
        assert_eq!(run("{{ $n := .Name }}{{ range .Status.LoadBalancer.Ingress }}{{ $n }}{{ end }}"), "webweb");
        assert_eq!(run("{{/* comment */}}a{{- /* trimmed */ -}} b"), "ab");
        assert_eq!(run("{{ range .Spec.Ports }}x{{ else }}no ports{{ end }}"), "no ports");
    }

    #[test]
    fn hostnames_split_on_commas() {
        let t = Template::parse("{{.Name}}.example.com., {{.Name}}.{{.Namespace}}.example.org ,").unwrap();
        assert_eq!(t.hostnames(&svc()).unwrap(), vec!["web.example.com", "web.shop.example.org"]);
    }

    #[test]
    fn root_fields_are_those_read_from_the_object() {
        let t = Template::parse(
            "{{.Name}}.{{ $.Spec.Type | toLower }}{{if .Labels.env}}{{range .Spec.Ports}}{{.Name}}{{$.Metadata.Namespace}}{{end}}{{end}}{{with .Status}}{{.Foo}}{{end}}{{ (printf \"%s\" .Kind) }}",
        )
        .unwrap();
        let got: Vec<String> = t.root_fields().iter().map(|c| c.join(".")).collect();
        assert_eq!(got, vec!["Kind", "Labels.env", "Metadata.Namespace", "Name", "Spec.Ports", "Spec.Type", "Status"]);
    }

    #[test]
    fn errors() {
        assert_eq!(Template::parse("{{ .Name").unwrap_err().to_string(), "template: unclosed action");
        assert_eq!(
            Template::parse("{{ upper .Name }}").unwrap_err().to_string(),
            "template: function \"upper\" not defined"
        );
        assert!(Template::parse("{{ if .Name }}x").unwrap_err().to_string().contains("without end"));
        assert!(Template::parse("{{ end }}").is_err());
        assert!(Template::parse("{{ template \"x\" }}").is_err());
        let t = Template::parse("{{ .Name.Foo }}").unwrap();
        assert_eq!(t.execute(&svc()).unwrap_err().to_string(), "template: can't evaluate field Foo in type string");
        let t = Template::parse("{{ $x }}").unwrap();
        assert!(t.execute(&svc()).is_err());
        let t = Template::parse("{{ .Name \"arg\" }}").unwrap();
        assert!(t.execute(&svc()).is_err());
    }
}
