//! Kubernetes label selectors in their string form (`app=web,tier in (a,b),!legacy`), used by
//! `--label-filter` on labels and `--annotation-filter` on annotations, as external-dns does
//! through `metav1.ParseToLabelSelector`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Equals(String),
    NotEquals(String),
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
    Exists,
    DoesNotExist,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed selector; all requirements must hold. The empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {input:?}: {message}")]
pub struct SelectorError {
    pub input: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    Comma,
    Eq,
    DoubleEq,
    NotEq,
    Bang,
    Open,
    Close,
    In,
    NotIn,
    Other(char),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Ident(s) => write!(f, "{s:?}"),
            Token::Comma => f.write_str("','"),
            Token::Eq => f.write_str("'='"),
            Token::DoubleEq => f.write_str("'=='"),
            Token::NotEq => f.write_str("'!='"),
            Token::Bang => f.write_str("'!'"),
            Token::Open => f.write_str("'('"),
            Token::Close => f.write_str("')'"),
            Token::In => f.write_str("'in'"),
            Token::NotIn => f.write_str("'notin'"),
            Token::Other(c) => write!(f, "{c:?}"),
        }
    }
}

fn lex(input: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            ',' => out.push(Token::Comma),
            '(' => out.push(Token::Open),
            ')' => out.push(Token::Close),
            '=' => {
                if chars.peek() == Some(&'=') {
                    chars.next();
                    out.push(Token::DoubleEq);
                } else {
                    out.push(Token::Eq);
                }
            }
            '!' => {
                if chars.peek() == Some(&'=') {
                    chars.next();
                    out.push(Token::NotEq);
                } else {
                    out.push(Token::Bang);
                }
            }
            // `<` and `>` exist in labels.Parse but LabelSelector cannot express them, so
            // external-dns rejects them; so do we, as unexpected characters.
            '<' | '>' => out.push(Token::Other(c)),
            _ => {
                let mut s = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || ",()=!<>".contains(n) {
                        break;
                    }
                    s.push(n);
                    chars.next();
                }
                out.push(match s.as_str() {
                    "in" => Token::In,
                    "notin" => Token::NotIn,
                    _ => Token::Ident(s),
                });
            }
        }
    }
    out
}

fn valid_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !ok {
            return Err(format!("key {key:?} has an invalid prefix {p:?}, it must be a DNS subdomain"));
        }
    }
    if name.is_empty() || name.len() > 63 || !valid_value_chars(name) {
        return Err(format!(
            "key {key:?} must be 1 to 63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

fn valid_value_chars(v: &str) -> bool {
    v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn valid_value(v: &str) -> Result<(), String> {
    if v.is_empty() || (v.len() <= 63 && valid_value_chars(v)) {
        Ok(())
    } else {
        Err(format!(
            "value {v:?} must be at most 63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let negated = if self.peek() == Some(&Token::Bang) {
            self.next();
            true
        } else {
            false
        };
        let key = match self.next() {
            Some(Token::Ident(k)) => k,
            Some(t) => return Err(format!("expected a key, found {t}")),
            None => return Err("expected a key at the end".into()),
        };
        valid_key(&key)?;
        if negated {
            return Ok(Requirement { key, op: Op::DoesNotExist });
        }
        let op = match self.peek() {
            None | Some(Token::Comma) => return Ok(Requirement { key, op: Op::Exists }),
            Some(Token::Eq) | Some(Token::DoubleEq) => {
                self.next();
                Op::Equals(self.value()?)
            }
            Some(Token::NotEq) => {
                self.next();
                Op::NotEquals(self.value()?)
            }
            Some(Token::In) => {
                self.next();
                Op::In(self.set()?)
            }
            Some(Token::NotIn) => {
                self.next();
                Op::NotIn(self.set()?)
            }
            Some(t) => return Err(format!("expected '=', '==', '!=', 'in' or 'notin' after {key:?}, found {t}")),
        };
        Ok(Requirement { key, op })
    }

    fn value(&mut self) -> Result<String, String> {
        match self.peek() {
            None | Some(Token::Comma) => Ok(String::new()),
            Some(Token::Ident(_)) | Some(Token::In) | Some(Token::NotIn) => {
                let v = match self.next() {
                    Some(Token::Ident(v)) => v,
                    Some(Token::In) => "in".into(),
                    _ => "notin".into(),
                };
                valid_value(&v)?;
                Ok(v)
            }
            Some(t) => Err(format!("expected a value, found {t}")),
        }
    }

    fn set(&mut self) -> Result<BTreeSet<String>, String> {
        match self.next() {
            Some(Token::Open) => {}
            Some(t) => return Err(format!("expected '(' after 'in'/'notin', found {t}")),
            None => return Err("expected '(' after 'in'/'notin'".into()),
        }
        let mut values = BTreeSet::new();
        loop {
            let v = match self.peek() {
                Some(Token::Comma) | Some(Token::Close) => String::new(),
                _ => self.value()?,
            };
            values.insert(v);
            match self.next() {
                Some(Token::Comma) => continue,
                Some(Token::Close) => break,
                Some(t) => return Err(format!("expected ',' or ')' in a value set, found {t}")),
                None => return Err("unclosed '(' in a value set".into()),
            }
        }
        Ok(values)
    }
}

impl Selector {
    /// Parses a selector; empty or blank input gives the match-everything selector.
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        let err = |message: String| SelectorError { input: input.to_string(), message };
        let mut p = Parser { tokens: lex(input), pos: 0 };
        let mut requirements = Vec::new();
        if p.tokens.is_empty() {
            return Ok(Selector { requirements });
        }
        loop {
            requirements.push(p.requirement().map_err(err)?);
            match p.next() {
                None => break,
                Some(Token::Comma) => continue,
                Some(t) => return Err(err(format!("expected ',' between requirements, found {t}"))),
            }
        }
        Ok(Selector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// True when any requirement is on `key`.
    pub fn mentions(&self, key: &str) -> bool {
        self.requirements.iter().any(|r| r.key == key)
    }

    pub fn matches(&self, set: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| {
            let v = set.get(&r.key);
            match &r.op {
                Op::Equals(want) => v == Some(want),
                Op::NotEquals(want) => v != Some(want),
                Op::In(values) => v.is_some_and(|v| values.contains(v)),
                Op::NotIn(values) => v.is_none_or(|v| !values.contains(v)),
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
            }
        })
    }

    /// The selector a `metav1.LabelSelector` stands for, as `LabelSelectorAsSelector` reads
    /// it: `matchLabels` as equalities plus `matchExpressions` (In, NotIn, Exists,
    /// DoesNotExist). The empty selector matches everything.
    pub fn from_label_selector(
        sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    ) -> Result<Selector, String> {
        let mut requirements: Vec<Requirement> = sel
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| Requirement { key: k.clone(), op: Op::Equals(v.clone()) })
            .collect();
        for e in sel.match_expressions.iter().flatten() {
            let values: BTreeSet<String> = e.values.iter().flatten().cloned().collect();
            let op = match e.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(format!("matchExpressions key {:?}: operator {} needs values", e.key, e.operator))
                }
                "In" => Op::In(values),
                "NotIn" => Op::NotIn(values),
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(format!("matchExpressions key {:?}: operator {} takes no values", e.key, e.operator))
                }
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                other => return Err(format!("matchExpressions key {:?}: unknown operator {other:?}", e.key)),
            };
            requirements.push(Requirement { key: e.key.clone(), op });
        }
        Ok(Selector { requirements })
    }

    /// The selector a Service's `spec.selector` map stands for (equality on every entry).
    pub fn from_map(map: &BTreeMap<String, String>) -> Selector {
        Selector {
            requirements: map.iter().map(|(k, v)| Requirement { key: k.clone(), op: Op::Equals(v.clone()) }).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn empty_matches_everything() {
        for s in ["", "   "] {
            let sel = Selector::parse(s).unwrap();
            assert!(sel.is_empty());
            assert!(sel.matches(&set(&[])));
        }
    }

    #[test]
    fn equality_based() {
        let sel = Selector::parse("app=web, tier==front,env!=prod").unwrap();
        assert!(sel.matches(&set(&[("app", "web"), ("tier", "front")])));
        assert!(sel.matches(&set(&[("app", "web"), ("tier", "front"), ("env", "dev")])));
        assert!(!sel.matches(&set(&[("app", "web"), ("tier", "front"), ("env", "prod")])));
        assert!(!sel.matches(&set(&[("app", "web")])));
        let empty_value = Selector::parse("marker=").unwrap();
        assert!(empty_value.matches(&set(&[("marker", "")])));
        assert!(!empty_value.matches(&set(&[("marker", "x")])));
    }

    #[test]
    fn set_based() {
        let sel = Selector::parse("env in (prod, staging),tier notin (db),team,!legacy").unwrap();
        assert!(sel.matches(&set(&[("env", "prod"), ("team", "a")])));
        assert!(sel.matches(&set(&[("env", "staging"), ("team", "a"), ("tier", "web")])));
        assert!(!sel.matches(&set(&[("env", "dev"), ("team", "a")])));
        assert!(!sel.matches(&set(&[("env", "prod"), ("team", "a"), ("tier", "db")])));
        assert!(!sel.matches(&set(&[("env", "prod")])));
        assert!(!sel.matches(&set(&[("env", "prod"), ("team", "a"), ("legacy", "")])));
        assert!(sel.mentions("tier"));
        assert!(!sel.mentions("other"));
    }

    #[test]
    fn prefixed_keys() {
        let sel = Selector::parse("kubernetes.io/ingress.class in (nginx)").unwrap();
        assert!(sel.matches(&set(&[("kubernetes.io/ingress.class", "nginx")])));
        let sel = Selector::parse("external-dns.alpha.kubernetes.io/hostname").unwrap();
        assert!(sel.matches(&set(&[("external-dns.alpha.kubernetes.io/hostname", "a.example.com")])));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "=web",
            "app in prod",
            "app in (a",
            "app web",
            "a>1",
            "app=we b",
            "bad key!=x",
            "-app=x",
            "Foo_/x=1",
            "a=b=c",
        ] {
            let e = Selector::parse(bad);
            assert!(e.is_err(), "{bad:?} parsed as {e:?}");
        }
        let e = Selector::parse("app in (a").unwrap_err();
        assert_eq!(e.to_string(), "invalid selector \"app in (a\": unclosed '(' in a value set");
    }

    #[test]
    fn from_service_selector() {
        let sel = Selector::from_map(&set(&[("app", "web")]));
        assert!(sel.matches(&set(&[("app", "web"), ("pod-template-hash", "x")])));
        assert!(!sel.matches(&set(&[("app", "db")])));
        assert!(Selector::from_map(&BTreeMap::new()).matches(&set(&[])));
    }
}
