//! Newtypes for identifiers that cross the HTTP boundary. Each validates on `parse`, so an
//! invalid id never reaches a store, a Redis key or a log line.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why an identifier was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what} {value:?} is invalid: {rule}")]
pub struct InvalidId {
    /// Which kind of identifier.
    pub what: &'static str,
    /// The refused input (already bounded in length).
    pub value: String,
    /// The rule it broke.
    pub rule: &'static str,
}

fn check(
    what: &'static str,
    s: &str,
    max: usize,
    allowed: fn(u8) -> bool,
    rule: &'static str,
) -> Result<(), InvalidId> {
    if s.is_empty() || s.len() > max || !s.bytes().all(allowed) {
        let value: String = s.chars().take(80).collect();
        return Err(InvalidId { what, value, rule });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr, $allowed:expr, $rule:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                check($what, s, $max, $allowed, $rule)?;
                Ok(Self(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                check($what, &s, $max, $allowed, $rule)?;
                Ok(Self(s))
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

fn id_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

id_type!(
    /// A realtime session's id (what `session2` returns). Safe inside Redis keys and hash tags.
    SessionId, "session_id", 64, id_char, "use 1-64 characters from [A-Za-z0-9_-]"
);
id_type!(
    /// A scenario id or alias, e.g. `customerServiceRetail` or `retail`.
    ScenarioId, "scenario_id", 64, id_char, "use 1-64 characters from [A-Za-z0-9_-]"
);
id_type!(
    /// An agent's name inside a scenario. Letters and digits only, so `transfer_to_<name>`
    /// splits back into the name.
    AgentName, "agent", 64, |b: u8| b.is_ascii_alphanumeric(), "use 1-64 characters from [A-Za-z0-9]"
);
id_type!(
    /// A tool's name (the upstream's function-name rule).
    ToolName, "tool", 64, id_char, "use 1-64 characters from [A-Za-z0-9_-]"
);

impl SessionId {
    /// A fresh, time-ordered session id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().simple().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_validate_on_parse() {
        assert!("abc-DEF_1".parse::<SessionId>().is_ok());
        for bad in ["", "a b", "{x}", "é", &"a".repeat(65)] {
            assert!(bad.parse::<SessionId>().is_err(), "{bad:?}");
        }
        assert!("haikuWriter".parse::<AgentName>().is_ok());
        assert!("haiku_writer".parse::<AgentName>().is_err());
        let g = SessionId::generate();
        assert_eq!(g.as_str().len(), 32);
    }
}
