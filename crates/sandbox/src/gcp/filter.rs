//! The `filter` of `entitlements.list` (S8): `attribute=value` or `attribute:value` terms joined
//! by AND (also implicit), OR and NOT, with parentheses; values may be double-quoted. `state`
//! matches case-insensitively and without the `ENTITLEMENT_` prefix (`state=active`).

use super::model::Entitlement;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    Op(&'static str),
    Word(String),
    Quoted(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Filter {
    Term {
        field: String,
        op: &'static str,
        value: String,
    },
    Not(Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' => {
                chars.next();
                tokens.push(if c == '(' { Token::Open } else { Token::Close });
            }
            '=' | ':' => {
                chars.next();
                tokens.push(Token::Op(if c == '=' { "=" } else { ":" }));
            }
            '!' => {
                chars.next();
                if chars.next() != Some('=') {
                    return Err("Invalid filter: '!' must be followed by '='".into());
                }
                tokens.push(Token::Op("!="));
            }
            '"' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => value.extend(chars.next()),
                        Some(c) => value.push(c),
                        None => return Err("Invalid filter: unterminated string".into()),
                    }
                }
                tokens.push(Token::Quoted(value));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || "()=:!\"".contains(c) {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w == keyword)
    }

    fn or(&mut self) -> Result<Filter, String> {
        let mut left = self.and()?;
        while self.is_keyword("OR") {
            self.at += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut left = self.unary()?;
        loop {
            if self.is_keyword("AND") {
                self.at += 1;
            } else if self.is_keyword("OR") || matches!(self.peek(), None | Some(Token::Close)) {
                return Ok(left);
            }
            left = Filter::And(Box::new(left), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Filter, String> {
        if self.is_keyword("NOT") {
            self.at += 1;
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        match self.next() {
            Some(Token::Open) => {
                let inner = self.or()?;
                match self.next() {
                    Some(Token::Close) => Ok(inner),
                    _ => Err("Invalid filter: missing ')'".into()),
                }
            }
            Some(Token::Word(field)) => {
                let Some(Token::Op(op)) = self.next() else {
                    return Err(format!(
                        "Invalid filter: expected an operator after {field}"
                    ));
                };
                match self.next() {
                    Some(Token::Word(value) | Token::Quoted(value)) => {
                        Ok(Filter::Term { field, op, value })
                    }
                    _ => Err(format!("Invalid filter: expected a value for {field}")),
                }
            }
            _ => Err("Invalid filter: expected a term".into()),
        }
    }
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, String> {
        let mut parser = Parser {
            tokens: tokenize(text)?,
            at: 0,
        };
        let filter = parser.or()?;
        if parser.at < parser.tokens.len() {
            return Err("Invalid filter: unexpected trailing input".into());
        }
        Ok(filter)
    }

    /// Whether `entitlement` passes; an unknown attribute is an error, as Google's.
    pub fn matches(&self, entitlement: &Entitlement) -> Result<bool, String> {
        Ok(match self {
            Filter::Not(inner) => !inner.matches(entitlement)?,
            Filter::And(a, b) => a.matches(entitlement)? && b.matches(entitlement)?,
            Filter::Or(a, b) => a.matches(entitlement)? || b.matches(entitlement)?,
            Filter::Term { field, op, value } => {
                let values = attribute(entitlement, field)?;
                let hit = if field == "state" {
                    let wanted = value.to_ascii_uppercase();
                    let wanted = wanted.strip_prefix("ENTITLEMENT_").unwrap_or(&wanted);
                    values
                        .iter()
                        .any(|v| v.strip_prefix("ENTITLEMENT_") == Some(wanted))
                } else {
                    values.iter().any(|v| v == value)
                };
                if *op == "!=" { !hit } else { hit }
            }
        })
    }
}

fn attribute(e: &Entitlement, field: &str) -> Result<Vec<String>, String> {
    let some = |v: &Option<String>| v.iter().cloned().collect::<Vec<_>>();
    Ok(match field {
        "account" => vec![e.account_id().to_owned(), e.account.clone()],
        "product_external_name" | "services" => vec![e.product_external_name.clone()],
        "plan" => vec![e.plan.clone()],
        "newPendingPlan" | "new_pending_plan" => some(&e.new_pending_plan),
        "offer" => some(&e.offer),
        "new_pending_offer" => some(&e.new_pending_offer),
        "state" => vec![e.state.name()],
        "consumers.project" => e.consumers.iter().map(|c| c.project.clone()).collect(),
        // Known to Google, never set in the sandbox.
        "customer_billing_account" | "quote_external_name" | "change_history.new_offer" => {
            Vec::new()
        }
        other => return Err(format!("Invalid filter: unknown field {other}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcp::model::EntitlementState;

    fn entitlement(plan: &str, state: EntitlementState) -> Entitlement {
        Entitlement {
            name: "providers/P/entitlements/e1".into(),
            account: "providers/P/accounts/a1".into(),
            plan: plan.into(),
            state,
            ..Entitlement::default()
        }
    }

    #[test]
    fn terms_combine_with_and_or_not_and_parentheses() {
        let active = entitlement("pro", EntitlementState::EntitlementActive);
        let cases = [
            ("state=active", true),
            ("state=ENTITLEMENT_ACTIVE", true),
            ("state=cancelled", false),
            ("account=a1 plan=pro", true),
            ("account=a1 AND plan=basic", false),
            ("plan=basic OR plan=\"pro\"", true),
            ("NOT (plan=basic OR state=cancelled)", true),
            ("plan!=pro", false),
        ];
        for (text, expected) in cases {
            let filter = Filter::parse(text).unwrap();
            assert_eq!(filter.matches(&active).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn bad_filters_are_refused() {
        for text in ["plan=", "(plan=pro", "plan pro", "x=1 )"] {
            assert!(Filter::parse(text).is_err(), "{text}");
        }
        let filter = Filter::parse("colour=red").unwrap();
        let e = entitlement("pro", EntitlementState::EntitlementActive);
        assert!(filter.matches(&e).is_err());
    }
}
