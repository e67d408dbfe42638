//! What `marketlink doctor` reports: one finding per check, in plain words.
//!
//! Providers produce them from [`MarketplaceProvider::diagnose`]; the CLI adds its own
//! (database, public URL, secrets) and prints them. Pure data, no I/O.
//!
//! [`MarketplaceProvider::diagnose`]: crate::MarketplaceProvider::diagnose

use serde::{Deserialize, Serialize};

/// How a check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiagnosisStatus {
    Ok,
    /// Works, but is not what production needs, or could not be verified from here.
    Warning,
    /// Does not work: an operator must act.
    Failed,
}

impl DiagnosisStatus {
    /// The short label printed in front of a check (`ok`, `warn`, `FAIL`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warning => "warn",
            Self::Failed => "FAIL",
        }
    }
}

/// One finding: which check, how it went, and in plain words what it means and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// Short, stable name of the check, e.g. `aws.credentials` or `database.migrations`.
    pub check: String,
    pub status: DiagnosisStatus,
    /// What was found and, when it is not ok, what to do about it.
    pub detail: String,
}

impl Diagnosis {
    pub fn ok(check: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(check, DiagnosisStatus::Ok, detail)
    }

    pub fn warning(check: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(check, DiagnosisStatus::Warning, detail)
    }

    pub fn failed(check: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(check, DiagnosisStatus::Failed, detail)
    }

    pub fn new(
        check: impl Into<String>,
        status: DiagnosisStatus,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            check: check.into(),
            status,
            detail: detail.into(),
        }
    }

    pub fn is_failure(&self) -> bool {
        self.status == DiagnosisStatus::Failed
    }
}

/// Counts per status, for the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosisSummary {
    pub ok: usize,
    pub warnings: usize,
    pub failures: usize,
}

impl DiagnosisSummary {
    pub fn of(findings: &[Diagnosis]) -> Self {
        findings.iter().fold(Self::default(), |mut s, d| {
            match d.status {
                DiagnosisStatus::Ok => s.ok += 1,
                DiagnosisStatus::Warning => s.warnings += 1,
                DiagnosisStatus::Failed => s.failures += 1,
            }
            s
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_each_status() {
        let findings = [
            Diagnosis::ok("a", "fine"),
            Diagnosis::warning("b", "hmm"),
            Diagnosis::failed("c", "broken"),
            Diagnosis::failed("d", "broken too"),
        ];
        let summary = DiagnosisSummary::of(&findings);
        assert_eq!(
            summary,
            DiagnosisSummary {
                ok: 1,
                warnings: 1,
                failures: 2
            }
        );
        assert!(findings[2].is_failure());
        assert_eq!(DiagnosisStatus::Failed.label(), "FAIL");
        assert_eq!(
            serde_json::to_value(&findings[1]).unwrap()["status"],
            "warning"
        );
    }
}
