//! Control commands for a call's owner (the body of `POST /api/sessions/{id}/control`, and
//! what the control bus routes between instances), and why an owner refuses one.

use serde::{Deserialize, Serialize};

/// A command for the call's owner (the body of `POST /api/sessions/{id}/control`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Make `agent` the active agent (`session.update` with its config).
    SwitchAgent {
        /// Target agent.
        agent: String,
        /// Who asked (`server` or `client`); always set by Switchboard.
        #[serde(default)]
        #[schema(ignore)]
        source: String,
    },
    /// Have the assistant say `text` now.
    Say {
        /// What to say.
        text: String,
    },
    /// Add instructions to the active agent's for the rest of the call.
    UpdateInstructions {
        /// The added instructions.
        instructions: String,
    },
    /// End the call.
    Hangup,
}

/// Why the owner refused a control command.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommandError {
    /// The call's session expired.
    #[error("the session has expired")]
    SessionExpired,
    /// The named agent is not in the session's scenario.
    #[error("agent {agent:?} is not in scenario {scenario}")]
    UnknownAgent {
        /// The asked-for agent.
        agent: String,
        /// The session's scenario.
        scenario: String,
    },
}
