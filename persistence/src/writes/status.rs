//! The two closed vocabularies a write carries: the [`Severity`] of a system event and
//! the [`HelpStatus`] of a help request, each stored lowercase.

use serde::{Deserialize, Serialize};

/// Severity of a system event, stored lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Diagnostic detail.
    Debug,
    /// Normal operation (the specification's default).
    #[default]
    Info,
    /// Something to look at.
    Warning,
    /// Something failed. Kept by cleanup.
    Error,
    /// Something failed badly. Kept by cleanup.
    Critical,
}

impl Severity {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Debug => "debug",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }

    /// Parses the stored form.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "debug" => Severity::Debug,
            "info" => Severity::Info,
            "warning" => Severity::Warning,
            "error" => Severity::Error,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Status of a help request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HelpStatus {
    /// Waiting for an answer.
    Pending,
    /// Claimed by a helper.
    Processing,
    /// Answered.
    Complete,
    /// Could not be answered; the response says why.
    Failed,
}

impl HelpStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            HelpStatus::Pending => "pending",
            HelpStatus::Processing => "processing",
            HelpStatus::Complete => "complete",
            HelpStatus::Failed => "failed",
        }
    }
}
