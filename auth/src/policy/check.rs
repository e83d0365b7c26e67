//! The oslo.policy rule language: parsed once into a tree, evaluated without allocating.
//!
//! ```text
//! expr   := and ("or" and)*
//! and    := unary ("and" unary)*
//! unary  := "not" unary | "(" expr ")" | check
//! check  := "@" | "!" | "role:" NAME | "rule:" NAME | CRED ":" VALUE
//! VALUE  := "%(" TARGET_ATTR ")s" | 'quoted' | "quoted" | bare
//! ```
//!
//! An empty rule always passes. `CRED` is one of the caller's attributes (`project_id`,
//! `user_id`, `user_domain_id`, `project_domain_id`, `system_scope`, `is_admin_project`, the
//! last one `True` or `False` as oslo.policy writes it); `TARGET_ATTR` is one of the target's
//! (`project_id`, `user_id`). Keywords are case-insensitive, role names and booleans too.

use std::collections::HashMap;

use super::Target;
use crate::Context;

/// Deepest nesting of parentheses and `not` accepted.
const MAX_DEPTH: usize = 64;

/// A parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Check {
    Always,
    Never,
    /// The caller holds the role (stored lowercase).
    Role(Box<str>),
    /// Another rule, by its index in the enforcer's table.
    Rule(usize),
    /// An attribute of the caller equals a value.
    Match {
        cred: Cred,
        value: Value,
    },
    Not(Box<Check>),
    And(Vec<Check>),
    Or(Vec<Check>),
}

/// An attribute of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cred {
    ProjectId,
    UserId,
    UserDomainId,
    ProjectDomainId,
    SystemScope,
    IsAdminProject,
}

/// What a caller attribute is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Target(TargetAttr),
    Literal(Box<str>),
}

/// An attribute of the target object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetAttr {
    ProjectId,
    UserId,
}

impl Cred {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "project_id" => Self::ProjectId,
            "user_id" => Self::UserId,
            "user_domain_id" => Self::UserDomainId,
            "project_domain_id" => Self::ProjectDomainId,
            "system_scope" => Self::SystemScope,
            "is_admin_project" => Self::IsAdminProject,
            _ => return None,
        })
    }

    fn of(self, ctx: &Context) -> Option<&str> {
        match self {
            Self::ProjectId => ctx.project_id.as_deref(),
            Self::UserId => Some(&ctx.user_id),
            Self::UserDomainId => Some(&ctx.user_domain_id),
            Self::ProjectDomainId => ctx.project_domain_id.as_deref(),
            Self::SystemScope => ctx.system_scope.as_deref(),
            Self::IsAdminProject => Some(if ctx.is_admin_project {
                "true"
            } else {
                "false"
            }),
        }
    }
}

impl TargetAttr {
    fn parse(name: &str) -> Option<Self> {
        Some(match name.strip_prefix("target.").unwrap_or(name) {
            "project_id" => Self::ProjectId,
            "user_id" => Self::UserId,
            _ => return None,
        })
    }

    fn of<'t>(self, target: &Target<'t>) -> Option<&'t str> {
        match self {
            Self::ProjectId => target.project_id,
            Self::UserId => target.user_id,
        }
    }
}

impl Check {
    /// Evaluates the check; `rules` is the table `Check::Rule` indexes (acyclic, checked at load).
    pub(crate) fn eval(&self, ctx: &Context, target: &Target<'_>, rules: &[Check]) -> bool {
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::Role(role) => ctx.has_role(role),
            Self::Rule(index) => rules
                .get(*index)
                .is_some_and(|rule| rule.eval(ctx, target, rules)),
            Self::Match { cred, value } => {
                let expected = match value {
                    Value::Target(attr) => attr.of(target),
                    Value::Literal(text) => Some(&**text),
                };
                matches!((cred.of(ctx), expected), (Some(a), Some(b)) if a == b)
            }
            Self::Not(inner) => !inner.eval(ctx, target, rules),
            Self::And(all) => all.iter().all(|c| c.eval(ctx, target, rules)),
            Self::Or(any) => any.iter().any(|c| c.eval(ctx, target, rules)),
        }
    }

    /// Indexes of the rules this check refers to.
    pub(crate) fn references(&self, out: &mut Vec<usize>) {
        match self {
            Self::Rule(index) => out.push(*index),
            Self::Not(inner) => inner.references(out),
            Self::And(list) | Self::Or(list) => list.iter().for_each(|c| c.references(out)),
            Self::Always | Self::Never | Self::Role(_) | Self::Match { .. } => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Open,
    Close,
    And,
    Or,
    Not,
    Word(&'a str),
}

/// Splits a rule into tokens with their byte offsets.
fn tokenize(text: &str) -> Result<Vec<(usize, Token<'_>)>, String> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_whitespace() {
            i += 1;
        } else if b == b'(' {
            tokens.push((i, Token::Open));
            i += 1;
        } else if b == b')' {
            tokens.push((i, Token::Close));
            i += 1;
        } else {
            let start = i;
            while i < bytes.len() {
                let c = bytes[i];
                if c.is_ascii_whitespace() || c == b'(' || c == b')' {
                    break;
                }
                if c == b'%' && bytes.get(i + 1) == Some(&b'(') {
                    // A `%(attr)s` substitution: its parentheses are not grouping.
                    let close = text[i..]
                        .find(')')
                        .ok_or_else(|| format!("unterminated substitution at offset {i}"))?;
                    i += close + 1;
                } else if c == b'\'' || c == b'"' {
                    let close = text[i + 1..]
                        .find(c as char)
                        .ok_or_else(|| format!("unterminated quote at offset {i}"))?;
                    i += close + 2;
                } else {
                    i += 1;
                }
            }
            let word = &text[start..i];
            let token = match word.to_ascii_lowercase().as_str() {
                "and" => Token::And,
                "or" => Token::Or,
                "not" => Token::Not,
                _ => Token::Word(word),
            };
            tokens.push((start, token));
        }
    }
    Ok(tokens)
}

/// Parses `text`; `rule:NAME` references resolve through `names`.
pub(crate) fn parse(text: &str, names: &HashMap<Box<str>, usize>) -> Result<Check, String> {
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Ok(Check::Always);
    }
    let mut parser = Parser {
        tokens: &tokens,
        pos: 0,
        end: text.len(),
        names,
    };
    let check = parser.expr(0)?;
    match parser.peek() {
        None => Ok(check),
        Some((at, token)) => Err(format!("unexpected {} at offset {at}", describe(token))),
    }
}

struct Parser<'t, 'a> {
    tokens: &'t [(usize, Token<'a>)],
    pos: usize,
    end: usize,
    names: &'t HashMap<Box<str>, usize>,
}

impl<'a> Parser<'_, 'a> {
    fn peek(&self) -> Option<(usize, Token<'a>)> {
        self.tokens.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<(usize, Token<'a>)> {
        let token = self.peek();
        self.pos += 1;
        token
    }

    fn expr(&mut self, depth: usize) -> Result<Check, String> {
        let mut any = vec![self.and(depth)?];
        while matches!(self.peek(), Some((_, Token::Or))) {
            self.pos += 1;
            any.push(self.and(depth)?);
        }
        Ok(if any.len() == 1 {
            any.remove(0)
        } else {
            Check::Or(any)
        })
    }

    fn and(&mut self, depth: usize) -> Result<Check, String> {
        let mut all = vec![self.unary(depth)?];
        while matches!(self.peek(), Some((_, Token::And))) {
            self.pos += 1;
            all.push(self.unary(depth)?);
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Check::And(all)
        })
    }

    fn unary(&mut self, depth: usize) -> Result<Check, String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        match self.next() {
            Some((_, Token::Not)) => Ok(Check::Not(Box::new(self.unary(depth + 1)?))),
            Some((at, Token::Open)) => {
                let inner = self.expr(depth + 1)?;
                match self.next() {
                    Some((_, Token::Close)) => Ok(inner),
                    Some((other_at, token)) => Err(format!(
                        "expected ')' to close the '(' at offset {at}, found {} at offset {other_at}",
                        describe(token)
                    )),
                    None => Err(format!("missing ')' for the '(' at offset {at}")),
                }
            }
            Some((at, Token::Word(word))) => self.check(at, word),
            Some((at, token)) => Err(format!(
                "expected a check, found {} at offset {at}",
                describe(token)
            )),
            None => Err(format!("expected a check at offset {}", self.end)),
        }
    }

    fn check(&self, at: usize, word: &str) -> Result<Check, String> {
        match word {
            "@" => return Ok(Check::Always),
            "!" => return Ok(Check::Never),
            _ => {}
        }
        let Some((kind, value)) = word.split_once(':') else {
            return Err(format!(
                "expected a check like role:admin at offset {at}, found {word:?}"
            ));
        };
        let value = unquote(value);
        if value.is_empty() {
            return Err(format!("empty value in {word:?} at offset {at}"));
        }
        match kind {
            "role" => {
                if value.starts_with("%(") {
                    return Err(format!("role checks take a role name, found {word:?}"));
                }
                Ok(Check::Role(value.to_ascii_lowercase().into()))
            }
            "rule" => self
                .names
                .get(value)
                .map(|index| Check::Rule(*index))
                .ok_or_else(|| format!("unknown rule {value:?} referenced at offset {at}")),
            _ => {
                let cred = Cred::parse(kind).ok_or_else(|| {
                    format!(
                        "unknown check {kind:?} at offset {at} (known: role, rule, project_id, \
                         user_id, user_domain_id, project_domain_id, system_scope, \
                         is_admin_project)"
                    )
                })?;
                let value = match value.strip_prefix("%(").and_then(|v| v.strip_suffix(")s")) {
                    Some(attr) => Value::Target(TargetAttr::parse(attr).ok_or_else(|| {
                        format!(
                            "unknown target attribute {attr:?} at offset {at} \
                             (known: project_id, user_id)"
                        )
                    })?),
                    None if value.contains("%(") => {
                        return Err(format!("malformed substitution in {word:?} at offset {at}"))
                    }
                    None if cred == Cred::IsAdminProject => {
                        let flag = value.to_ascii_lowercase();
                        if flag != "true" && flag != "false" {
                            return Err(format!(
                                "is_admin_project takes True or False, found {value:?} at offset {at}"
                            ));
                        }
                        Value::Literal(flag.into())
                    }
                    None => Value::Literal(value.into()),
                };
                Ok(Check::Match { cred, value })
            }
        }
    }
}

fn unquote(value: &str) -> &str {
    for quote in ['\'', '"'] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

fn describe(token: Token<'_>) -> String {
    match token {
        Token::Open => "'('".into(),
        Token::Close => "')'".into(),
        Token::And => "'and'".into(),
        Token::Or => "'or'".into(),
        Token::Not => "'not'".into(),
        Token::Word(w) => format!("{w:?}"),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::context::normalize_roles;

    fn ctx(project: Option<&str>, roles: &[&str]) -> Context {
        Context {
            user_id: "u1".into(),
            user_name: "alice".into(),
            user_domain_id: "default".into(),
            project_id: project.map(str::to_owned),
            project_name: project.map(str::to_owned),
            project_domain_id: project.map(|_| "default".to_owned()),
            roles: normalize_roles(roles),
            system_scope: if project.is_none() {
                Some("all".into())
            } else {
                None
            },
            is_admin_project: project == Some("admin"),
            expires_at: Utc::now(),
            is_service: false,
        }
    }

    /// Rules available to `rule:` references in the table below.
    fn names() -> (HashMap<Box<str>, usize>, Vec<Check>) {
        let mut names = HashMap::new();
        names.insert("is_admin".into(), 0);
        names.insert("owner".into(), 1);
        let rules = vec![
            Check::Role("admin".into()),
            Check::Match {
                cred: Cred::ProjectId,
                value: Value::Target(TargetAttr::ProjectId),
            },
        ];
        (names, rules)
    }

    fn check(rule: &str, ctx: &Context, target: Target<'_>, expected: bool) {
        let (names, rules) = names();
        let parsed = parse(rule, &names).unwrap_or_else(|e| panic!("rule {rule:?}: {e}"));
        assert_eq!(
            parsed.eval(ctx, &target, &rules),
            expected,
            "rule {rule:?} for {:?} {:?} on {target:?}",
            ctx.project_id,
            ctx.roles
        );
    }

    #[test]
    fn rules_evaluate() {
        let reader = ctx(Some("p1"), &["reader"]);
        let member = ctx(Some("p1"), &["member"]);
        let admin = ctx(Some("p9"), &["admin"]);
        let system = ctx(None, &["reader"]);
        let p1 = Target::project("p1");
        let p2 = Target::project("p2");
        let none = Target::default();

        check("", &reader, p1, true);
        check("@", &reader, p1, true);
        check("!", &admin, p1, false);
        check("role:reader", &reader, p1, true);
        check("role:READER", &reader, p1, true);
        check("role:member", &reader, p1, false);
        check("role:reader", &member, p1, true);
        check("role:member", &admin, p1, true);
        check("project_id:%(project_id)s", &reader, p1, true);
        check("project_id:%(project_id)s", &reader, p2, false);
        check("project_id:%(project_id)s", &reader, none, false);
        check("project_id:%(project_id)s", &system, none, false);
        check("project_id:%(target.project_id)s", &reader, p1, true);
        check(
            "user_id:%(user_id)s",
            &reader,
            Target::default().with_user("u1"),
            true,
        );
        check(
            "user_id:%(user_id)s",
            &reader,
            Target::default().with_user("u2"),
            false,
        );
        check("project_id:p1", &reader, p2, true);
        check("project_id:'p1'", &reader, p2, true);
        check("project_id:\"p2\"", &reader, p2, false);
        check("system_scope:all", &system, none, true);
        let cloud = ctx(Some("admin"), &["admin"]);
        check("is_admin_project:True", &cloud, none, true);
        check("is_admin_project:true", &cloud, none, true);
        check("is_admin_project:True", &admin, none, false);
        check("is_admin_project:False", &admin, none, true);
        check("is_admin_project:True", &system, none, false);
        check("system_scope:all", &admin, none, false);
        check("user_domain_id:default", &reader, none, true);
        check("project_domain_id:default", &system, none, false);
        check(
            "role:reader and project_id:%(project_id)s",
            &reader,
            p1,
            true,
        );
        check(
            "role:reader and project_id:%(project_id)s",
            &reader,
            p2,
            false,
        );
        check(
            "role:member and project_id:%(project_id)s",
            &reader,
            p1,
            false,
        );
        check("rule:is_admin or rule:owner", &admin, p2, true);
        check("rule:is_admin or rule:owner", &reader, p1, true);
        check("rule:is_admin or rule:owner", &reader, p2, false);
        check("not role:admin", &reader, p1, true);
        check("not role:admin", &admin, p1, false);
        check("not not role:admin", &admin, p1, true);
        check("NOT role:admin AND role:reader", &reader, p1, true);
        // Precedence: not > and > or.
        check(
            "role:admin or role:reader and role:member",
            &reader,
            p1,
            false,
        );
        check(
            "(role:admin or role:reader) and role:member",
            &member,
            p1,
            true,
        );
        check("role:admin or (role:reader and !)", &reader, p1, false);
        check("((role:reader))", &reader, p1, true);
        check("(project_id:%(project_id)s)", &reader, p1, true);
        check(
            "(role:admin or(project_id:%(project_id)s))",
            &reader,
            p2,
            false,
        );
        check("(role:reader)and(@)", &reader, p1, true);
        check(
            "not (role:admin or role:member) and role:reader",
            &reader,
            p1,
            true,
        );
        check(
            "not (role:admin or role:member) and role:reader",
            &member,
            p1,
            false,
        );
    }

    fn check_error(rule: &str, expected: &str) {
        let (names, _) = names();
        match parse(rule, &names) {
            Ok(parsed) => panic!("rule {rule:?} parsed as {parsed:?}, expected an error"),
            Err(message) => assert!(
                message.contains(expected),
                "rule {rule:?}: error {message:?} does not contain {expected:?}"
            ),
        }
    }

    #[test]
    fn malformed_rules_are_refused_with_a_reason() {
        check_error("is_admin_project:yes", "takes True or False");
        check_error("role:", "empty value");
        check_error("admin", "expected a check like role:admin");
        check_error("role:admin and", "expected a check at offset 14");
        check_error(
            "role:admin or or role:x",
            "expected a check, found 'or' at offset 14",
        );
        check_error("(role:admin", "missing ')' for the '(' at offset 0");
        check_error("role:admin)", "unexpected ')' at offset 10");
        check_error("project_id:%(project_id)s)", "unexpected ')' at offset 25");
        check_error("(role:admin role:x)", "expected ')' to close");
        check_error("role:a role:b", "unexpected \"role:b\"");
        check_error("rule:nope", "unknown rule \"nope\"");
        check_error("tenant:%(project_id)s", "unknown check \"tenant\"");
        check_error("project_id:%(owner)s", "unknown target attribute \"owner\"");
        check_error("project_id:%(project_id", "unterminated substitution");
        check_error("project_id:%(project_id)", "malformed substitution");
        check_error("role:%(role)s", "role checks take a role name");
        check_error("project_id:'p1", "unterminated quote");
        check_error(
            &format!("{}role:a{}", "(".repeat(100), ")".repeat(100)),
            "nested deeper",
        );
        check_error(&format!("{}role:a", "not ".repeat(100)), "nested deeper");
    }
}
