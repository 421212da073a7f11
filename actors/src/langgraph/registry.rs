//! The workflow registry: which versions of which file workflows exist, kept in the
//! database (`system_state` key [`REGISTRY_KEY`]) so that a command in another shell
//! can submit a run by name, and a restarted platform can finish runs on a version
//! whose file has since changed.
//!
//! ```text
//!  vigil run (executor initialize)            vigil workflow submit triage
//!  ─────────────────────────────              ─────────────────────────────
//!  load + check workflows_dir                 read registry: current["triage"]
//!  registry.current[name] = name@version  ──▶ INSERT workflow_runs (graph = "triage@1+4f2a09c1")
//!  registry.versions[name@version] = file
//!  compile every registered version          executor runs it on that version, to its end
//! ```
//!
//! One executor per database writes the registry (as for runs, see the module docs of
//! [`super`]); versions are never removed, so a run can always finish on its own.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use vigil_persistence::workflow_runs::WorkflowRunRecord;
use vigil_persistence::{SharedState, StoreError};

use super::workflow_file::{WorkflowErrors, WorkflowSpec, parse};

/// The `system_state` key of the registry.
pub const REGISTRY_KEY: &str = "workflow_registry";

/// The registry document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Registry {
    /// Workflow name → the key (`name@version`) new runs get.
    pub current: BTreeMap<String, String>,
    /// Every version ever registered, by key.
    pub versions: BTreeMap<String, StoredVersion>,
}

/// A registered version: its file and document, enough to rebuild it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredVersion {
    /// The file it was read from.
    pub file: PathBuf,
    /// The document as it was.
    pub document: Value,
}

/// Why a run could not be submitted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// No platform registered a workflow by that name.
    #[error(
        "no workflow `{name}` is registered{known} (start `vigil run` with langgraph.workflows_dir naming its folder)"
    )]
    Unknown {
        /// The name asked for.
        name: String,
        /// ", known: a, b" or nothing.
        known: String,
    },
    /// The input is not a JSON object.
    #[error("the input must be a JSON object (the run's initial state), not {0}")]
    BadInput(&'static str),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Registry {
    /// Reads the registry (empty if no platform registered workflows yet).
    pub async fn read(state: &SharedState) -> Result<Self, StoreError> {
        Ok(state
            .get_system_state(REGISTRY_KEY)
            .await?
            .and_then(|value| serde_json::from_value(value).ok())
            .unwrap_or_default())
    }

    /// Adds `specs` as the current versions and writes the registry back.
    pub async fn register(state: &SharedState, specs: &[WorkflowSpec]) -> Result<Self, StoreError> {
        let mut registry = Self::read(state).await?;
        for spec in specs {
            registry.current.insert(spec.name.clone(), spec.key());
            registry.versions.insert(
                spec.key(),
                StoredVersion { file: spec.file.clone(), document: spec.document.clone() },
            );
        }
        let value = serde_json::to_value(&registry).map_err(|e| StoreError::Task(e.to_string()))?;
        state.set_system_state(REGISTRY_KEY, value).await?;
        Ok(registry)
    }

    /// Rebuilds the registered version `key`.
    pub fn rebuild(key: &str, stored: &StoredVersion) -> Result<WorkflowSpec, WorkflowErrors> {
        let version = key.split_once('@').map_or(key, |(_, version)| version);
        parse(&stored.file, stored.document.clone(), Some(version), "")
    }
}

/// Submits a run of workflow `name` (its current version, or `name@version` exactly)
/// with `input` as its initial state, under `run_id` (a new UUID when `None`).
pub async fn submit(
    state: &SharedState,
    name: &str,
    input: Value,
    run_id: Option<String>,
) -> Result<WorkflowRunRecord, SubmitError> {
    if !input.is_object() {
        let kind = match input {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            _ => "an array",
        };
        return Err(SubmitError::BadInput(kind));
    }
    let registry = Registry::read(state).await?;
    let key = match registry.current.get(name) {
        Some(key) => key.clone(),
        None if registry.versions.contains_key(name) => name.to_owned(),
        None => {
            let names: Vec<&str> = registry.current.keys().map(String::as_str).collect();
            let known =
                if names.is_empty() { String::new() } else { format!("; known: {}", names.join(", ")) };
            return Err(SubmitError::Unknown { name: name.to_owned(), known });
        }
    };
    let run_id = run_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    Ok(state.submit_workflow_run(&key, &run_id, input).await?)
}
