//! Agent scenarios: the built-in ones compiled into the binary, plus any YAML files in
//! `SWITCHBOARD_SCENARIOS_DIR` (which add scenarios or replace built-ins with the same id).
//!
//! [`ScenarioRegistry::load`] validates everything at startup (see [`model`]); the HTTP
//! layer reads scenarios through [`ScenarioRegistry::resolve`] and renders them with the
//! views in [`view`], which build the `transfer_to_<agent>` handoff tools.

mod checks;
pub mod file;
pub mod model;
pub mod view;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub use model::{Agent, Scenario, ScenarioError, Tool, UnknownAgent};

/// A scenario id (or alias) that names no loaded scenario.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown scenario {id:?}; scenarios are {}", known.join(", "))]
pub struct UnknownScenario {
    /// The id asked for (at most 64 characters of it).
    pub id: String,
    /// The loaded scenarios' ids.
    pub known: Vec<String>,
}

/// Built-in scenario files, compiled in.
const BUILTIN: &[(&str, &str)] = &[
    (
        "chatSupervisor.yaml",
        include_str!("../../scenarios/chatSupervisor.yaml"),
    ),
    (
        "customerServiceRetail.yaml",
        include_str!("../../scenarios/customerServiceRetail.yaml"),
    ),
    (
        "customerServiceRetailLive.yaml",
        include_str!("../../scenarios/customerServiceRetailLive.yaml"),
    ),
    (
        "simpleHandoff.yaml",
        include_str!("../../scenarios/simpleHandoff.yaml"),
    ),
];

/// The scenario used when a client names none (the public demo's default).
pub const DEFAULT_SCENARIO: &str = "chatSupervisor";

/// All loaded scenarios, by id, with aliases.
#[derive(Debug, Default)]
pub struct ScenarioRegistry {
    scenarios: BTreeMap<String, Arc<Scenario>>,
    aliases: BTreeMap<String, String>,
}

impl ScenarioRegistry {
    /// Loads the built-ins, then every `*.yaml`/`*.yml` file of `dir` (sorted by name).
    pub fn load(dir: Option<&Path>) -> Result<Self, ScenarioError> {
        let mut files: Vec<(String, String)> = BUILTIN
            .iter()
            .map(|(name, text)| (format!("builtin:scenarios/{name}"), (*text).to_owned()))
            .collect();
        if let Some(dir) = dir {
            files.extend(read_dir(dir)?);
        }
        let mut reg = Self::default();
        for (file, text) in files {
            let scenario = model::ScenarioFile::parse(&file, &text)?.validate(&file)?;
            reg.insert(scenario)?;
        }
        Ok(reg)
    }

    fn insert(&mut self, s: Scenario) -> Result<(), ScenarioError> {
        let id = s.id.to_string();
        // A later file with the same id replaces the earlier one (and its aliases).
        if let Some(old) = self.scenarios.remove(&id) {
            for a in &old.aliases {
                self.aliases.remove(a.as_str());
            }
        }
        for (i, alias) in s.aliases.iter().enumerate() {
            let clash = self.scenarios.contains_key(alias.as_str())
                || alias.as_str() == id
                || self.aliases.contains_key(alias.as_str());
            if clash {
                return Err(ScenarioError {
                    file: s.source.clone(),
                    field: format!("aliases[{i}]"),
                    message: format!("{alias:?} already names another scenario"),
                });
            }
        }
        if self.aliases.contains_key(&id) {
            return Err(ScenarioError {
                file: s.source.clone(),
                field: "id".into(),
                message: format!("{id:?} is already an alias of another scenario"),
            });
        }
        for alias in &s.aliases {
            self.aliases.insert(alias.to_string(), id.clone());
        }
        self.scenarios.insert(id, Arc::new(s));
        Ok(())
    }

    /// The scenario with this id or alias.
    pub fn get(&self, id_or_alias: &str) -> Result<Arc<Scenario>, UnknownScenario> {
        self.resolve(id_or_alias).ok_or_else(|| UnknownScenario {
            id: id_or_alias.chars().take(64).collect(),
            known: self.ids(),
        })
    }

    /// The scenario with this id or alias, `None` when there is none.
    pub fn resolve(&self, id_or_alias: &str) -> Option<Arc<Scenario>> {
        let id = self
            .aliases
            .get(id_or_alias)
            .map(String::as_str)
            .unwrap_or(id_or_alias);
        self.scenarios.get(id).cloned()
    }

    /// All scenarios, sorted by id.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Scenario>> {
        self.scenarios.values()
    }

    /// The ids, sorted, for error messages.
    pub fn ids(&self) -> Vec<String> {
        self.scenarios.keys().cloned().collect()
    }
}

fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, ScenarioError> {
    let io_err = |file: String, e: std::io::Error| ScenarioError {
        file,
        field: "(file)".into(),
        message: e.to_string(),
    };
    let entries = std::fs::read_dir(dir).map_err(|e| io_err(dir.display().to_string(), e))?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| io_err(dir.display().to_string(), e))?
            .path();
        let yaml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yaml" || e == "yml");
        if yaml && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let name = p.display().to_string();
            std::fs::read_to_string(&p)
                .map(|text| (name.clone(), text))
                .map_err(|e| io_err(name, e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_load_with_the_demo_shapes() {
        let reg = ScenarioRegistry::load(None).expect("built-in scenarios are valid");
        assert_eq!(
            reg.ids(),
            [
                "chatSupervisor",
                "customerServiceRetail",
                "customerServiceRetailLive",
                "simpleHandoff"
            ]
        );
        let live = reg
            .resolve("retailLive")
            .expect("the Live desk's alias resolves");
        assert_eq!(live.voice_api, model::VoiceApi::Live);
        assert_eq!(live.live.delegation, model::Delegation::Client);
        assert_eq!(live.live.voice, "marin");
        assert_eq!(
            reg.resolve("retail").unwrap().voice_api,
            model::VoiceApi::Realtime
        );
        let retail = reg.resolve("retail").expect("alias resolves");
        assert_eq!(retail.id.as_str(), "customerServiceRetail");
        assert_eq!(
            retail.agent_names(),
            ["authentication", "returns", "salesAgent", "simulatedHuman"]
        );
        for a in &retail.agents {
            assert_eq!(
                a.handoffs.len(),
                3,
                "{} hands off to the other three",
                a.name
            );
        }
        assert_eq!(retail.company_name, "Snowy Peak Boards");
        let simple = reg.resolve("simpleHandoff").unwrap();
        assert_eq!(simple.default_root.as_str(), "greeter");
        assert_eq!(simple.company_name, "NewTelco");
        let sup = reg.resolve("chatSupervisor").unwrap();
        assert_eq!(sup.agent_names(), ["chatAgent"]);
        assert_eq!(
            sup.agents[0].tools[0].as_str(),
            "getNextResponseFromSupervisor"
        );
    }
}
