//! `SWITCHBOARD_MODERATION`: which moderation checks run. A plain value owned by `config`;
//! the moderation module reads it.

/// Which checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModerationModes {
    /// Deny phrases and PII redaction.
    pub local: bool,
    /// `POST /moderations`.
    pub upstream: bool,
    /// The brand classifier through `POST /responses`.
    pub brand: bool,
}

impl Default for ModerationModes {
    fn default() -> Self {
        Self {
            local: true,
            upstream: false,
            brand: false,
        }
    }
}

impl ModerationModes {
    /// From `local,upstream,brand` (any non-empty subset).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut m = Self {
            local: false,
            upstream: false,
            brand: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "local" => m.local = true,
                "upstream" => m.upstream = true,
                "brand" => m.brand = true,
                other => return Err(format!("{other:?}: use local, upstream and/or brand")),
            }
        }
        if !(m.local || m.upstream || m.brand) {
            return Err("name at least one of local, upstream, brand".into());
        }
        Ok(m)
    }

    /// The modes as a list.
    pub fn names(&self) -> Vec<&'static str> {
        [
            ("local", self.local),
            ("upstream", self.upstream),
            ("brand", self.brand),
        ]
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| n)
        .collect()
    }
}
