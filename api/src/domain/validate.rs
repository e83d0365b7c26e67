//! Field validation shared by the domain operations. Messages name the field.

use std::collections::BTreeMap;

use super::{DomainError, DomainResult};

/// Names of functions, runtimes and aliases: 1-64 of `[A-Za-z0-9_.-]`, starting with an
/// alphanumeric, and never a UUID (ids and names share the URL path).
pub fn name(field: &str, value: &str) -> DomainResult<()> {
    let valid_chars = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    let starts_well = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if value.is_empty() || value.len() > 64 || !valid_chars || !starts_well {
        return Err(DomainError::invalid(format!(
            "{field} must be 1 to 64 characters of letters, digits, '_', '-' and '.', starting with a letter or digit"
        )));
    }
    if uuid::Uuid::parse_str(value).is_ok() {
        return Err(DomainError::invalid(format!("{field} must not be a UUID")));
    }
    Ok(())
}

/// A handler such as `main.handler` or `pkg/mod.fn`.
pub fn handler(value: &str) -> DomainResult<()> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    if !ok {
        return Err(DomainError::invalid(
            "handler must be 1 to 128 characters of letters, digits, '_', '-', '.' and '/'",
        ));
    }
    Ok(())
}

/// A Docker image reference (`name[:tag]`, registry paths allowed), without whitespace.
pub fn image(field: &str, value: &str) -> DomainResult<()> {
    let ok = !value.is_empty()
        && value.len() <= 255
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':' | '@'));
    if !ok {
        return Err(DomainError::invalid(format!(
            "{field} is not a valid image reference"
        )));
    }
    Ok(())
}

pub fn description(value: &str) -> DomainResult<()> {
    if value.chars().count() > 1024 {
        return Err(DomainError::invalid(
            "description must be at most 1024 characters",
        ));
    }
    no_nul("description", value)
}

/// Free text that PostgreSQL must store: no NUL character (U+0000), which `text` cannot hold.
pub fn no_nul(field: &str, value: &str) -> DomainResult<()> {
    if !fresco_common::storable::is_storable(value) {
        return Err(DomainError::invalid(format!(
            "{field} must not contain a NUL character (U+0000)"
        )));
    }
    Ok(())
}

/// Environment variables: POSIX names, not reserved by the platform, 4 KiB in total (as Lambda).
pub fn environment(env: &BTreeMap<String, String>) -> DomainResult<()> {
    let mut total = 0;
    for (key, value) in env {
        let valid = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(DomainError::invalid(format!(
                "environment: {key:?} is not a valid variable name"
            )));
        }
        let reserved = ["AWS_LAMBDA_", "FRESCO_", "LAMBDA_", "_HANDLER", "AWS_"];
        if reserved.iter().any(|prefix| key.starts_with(prefix)) {
            return Err(DomainError::invalid(format!(
                "environment: {key} is reserved by the platform"
            )));
        }
        if value.contains('\0') {
            return Err(DomainError::invalid(format!(
                "environment: {key} contains a NUL byte"
            )));
        }
        total += key.len() + value.len();
    }
    if total > 4096 {
        return Err(DomainError::invalid(
            "environment must be at most 4096 bytes in total",
        ));
    }
    Ok(())
}

/// An integer within `min..=max`; the message names the field and the allowed range.
pub fn range(field: &str, value: i32, min: i64, max: i64) -> DomainResult<()> {
    let value = i64::from(value);
    if value < min || value > max {
        return Err(DomainError::invalid(format!(
            "{field} must be between {min} and {max}, got {value}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "hello-world", "v1.2_x", &"x".repeat(64)] {
            assert!(name("name", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-a",
            ".a",
            "a b",
            "a/b",
            "ü",
            &"x".repeat(65),
            "6f1c5a0e-2b1d-4a57-9d0a-2f6f3c7e8b90",
        ] {
            assert!(name("name", bad).is_err(), "{bad}");
        }
        let message = name("name", "a b").expect_err("bad").to_string();
        assert!(message.starts_with("name must"), "{message}");
    }

    #[test]
    fn environments() {
        let env = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        assert!(environment(&env("GREETING", "hi")).is_ok());
        assert!(environment(&env("_x1", "")).is_ok());
        for bad in [
            "1X",
            "A-B",
            "AWS_LAMBDA_RUNTIME_API",
            "FRESCO_X",
            "_HANDLER",
            "",
        ] {
            assert!(environment(&env(bad, "v")).is_err(), "{bad}");
        }
        assert!(environment(&env("BIG", &"v".repeat(5000))).is_err());
        assert!(environment(&env("NUL", "a\0b")).is_err());
        assert!(environment(&env("N\0UL", "v")).is_err());
    }

    #[test]
    fn free_text_refuses_nul() {
        assert!(description("a description, ünïcode").is_ok());
        let message = description("bad\0text").expect_err("nul").to_string();
        assert_eq!(
            message,
            "description must not contain a NUL character (U+0000)"
        );
        assert!(no_nul("project_id", "p\0").is_err());
    }

    #[test]
    fn ranges_and_handlers() {
        assert!(range("memory_mb", 128, 64, 2048).is_ok());
        let message = range("memory_mb", 4096, 64, 2048)
            .expect_err("out of range")
            .to_string();
        assert_eq!(message, "memory_mb must be between 64 and 2048, got 4096");
        assert!(handler("main.handler").is_ok());
        assert!(handler("main handler").is_err());
        assert!(image("image", "fresco/python3:dev").is_ok());
        assert!(image("image", "bad image").is_err());
    }
}
