//! A small parser for OpenStack's INI dialect (as oslo.config reads it).

use std::collections::BTreeMap;

use super::ConfigError;

type Sections = BTreeMap<String, BTreeMap<String, String>>;

pub(super) fn parse(text: &str, origin: &str) -> Result<Sections, ConfigError> {
    let mut sections: Sections = BTreeMap::new();
    let mut current: Option<String> = None;
    for (index, raw_line) in text.lines().enumerate() {
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let syntax = |message: &str| ConfigError::Syntax {
            path: origin.to_owned(),
            line: index + 1,
            message: message.to_owned(),
        };
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .ok_or_else(|| syntax("section header without closing ']'"))?
                .trim();
            if name.is_empty() {
                return Err(syntax("empty section name"));
            }
            sections.entry(name.to_owned()).or_default();
            current = Some(name.to_owned());
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| syntax("expected 'key = value'"))?;
        let section = current
            .as_ref()
            .ok_or_else(|| syntax("option outside of any [section]"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(syntax("empty option name"));
        }
        sections
            .entry(section.clone())
            .or_default()
            .insert(key.to_owned(), value.trim().to_owned());
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_keys_and_comments() {
        let parsed = parse(
            "# top\n[DEFAULT]\ndebug = true\n\n; c\n[database]\nconnection = postgresql://u:p@h/db?x=1\n",
            "t",
        )
        .expect("parse");
        assert_eq!(parsed["DEFAULT"]["debug"], "true");
        assert_eq!(
            parsed["database"]["connection"],
            "postgresql://u:p@h/db?x=1"
        );
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse("[a]\nnot an option\n", "f.conf").expect_err("bad");
        assert_eq!(err.to_string(), "f.conf:2: expected 'key = value'");
        let err = parse("x = 1\n", "f.conf").expect_err("bad");
        assert!(err.to_string().contains("outside of any [section]"));
        assert!(parse("[a\n", "f").is_err());
    }
}
