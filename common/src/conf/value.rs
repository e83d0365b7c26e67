//! How option values are read from their text form.

/// A type that an option may have.
pub trait OptionValue: Sized {
    /// The type as shown in the sample config.
    const TYPE_NAME: &'static str;
    /// Parses the text of the option; the error is a short message without the option name.
    fn parse_option(text: &str) -> Result<Self, String>;
}

impl OptionValue for String {
    const TYPE_NAME: &'static str = "string";
    fn parse_option(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }
}

impl OptionValue for bool {
    const TYPE_NAME: &'static str = "boolean";
    fn parse_option(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            other => Err(format!("expected true or false, got {other:?}")),
        }
    }
}

macro_rules! integer_option {
    ($($ty:ty),*) => {$(
        impl OptionValue for $ty {
            const TYPE_NAME: &'static str = "integer";
            fn parse_option(text: &str) -> Result<Self, String> {
                text.parse().map_err(|_| format!("expected an integer, got {text:?}"))
            }
        }
    )*};
}
integer_option!(u16, u32, u64, i32, i64, usize);

impl OptionValue for f64 {
    const TYPE_NAME: &'static str = "floating point";
    fn parse_option(text: &str) -> Result<Self, String> {
        text.parse()
            .map_err(|_| format!("expected a number, got {text:?}"))
    }
}

/// A comma-separated list; empty text is the empty list.
impl OptionValue for Vec<String> {
    const TYPE_NAME: &'static str = "list";
    fn parse_option(text: &str) -> Result<Self, String> {
        Ok(text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_type() {
        assert!(bool::parse_option("Yes").expect("bool"));
        assert!(bool::parse_option("maybe").is_err());
        assert_eq!(u16::parse_option("8900"), Ok(8900));
        assert!(u16::parse_option("70000").is_err());
        assert_eq!(
            Vec::<String>::parse_option(" a, b ,,c"),
            Ok(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(Vec::<String>::parse_option(""), Ok(vec![]));
    }
}
