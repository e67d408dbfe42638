//! Fault switches without Rust: faults a scenario lists (`[[faults]]`) or someone switches on
//! the sandbox's fault page (`/aws/faults`, `/sandbox/faults`), for `marketlink sandbox` and
//! `marketlink demo` as much as for tests. Each sandbox says what a fault matches and shapes
//! its answer; this module keeps the faults, their windows and what they caught.
//!
//! Sources of each kind's answer: throttling is AWS's `ThrottlingException` (every Marketplace
//! API lists it, `aws.md` "Errors" and the service models); `5xx` is AWS's
//! `InternalServiceErrorException` (500) and Microsoft's 500 ("500 = retry",
//! `azure-details.md` §6); `429` with `Retry-After` is the opt-in fault mode
//! `azure-details.md` §6 suggests (Microsoft documents no rate limit: not Microsoft
//! behaviour); `unavailable` (503) and `reset` as in `crate::outage`; `late` carries the call
//! out and answers late (the AWS SDK's "Retry behavior" classes timeouts as transient, so a
//! retry may follow a call that took effect).

use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// What a matched call gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultKind {
    /// AWS `ThrottlingException` (SQS: `RequestThrottled`).
    #[serde(rename = "throttling")]
    Throttling,
    /// A 500 in the service's error shape.
    #[serde(rename = "5xx")]
    ServerError,
    /// Microsoft: 429 with `Retry-After: retry_after_secs`.
    #[serde(rename = "429")]
    TooManyRequests,
    /// The connection is closed without an answer.
    #[serde(rename = "reset")]
    Reset,
    /// 503 `ServiceUnavailable`.
    #[serde(rename = "unavailable")]
    Unavailable,
    /// The call is carried out and answered `late_ms` later.
    #[serde(rename = "late")]
    Late,
}

impl FaultKind {
    const ALL: [(&'static str, FaultKind); 6] = [
        ("throttling", FaultKind::Throttling),
        ("5xx", FaultKind::ServerError),
        ("429", FaultKind::TooManyRequests),
        ("reset", FaultKind::Reset),
        ("unavailable", FaultKind::Unavailable),
        ("late", FaultKind::Late),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("?", |(n, _)| *n)
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, k)| *k)
    }
}

/// One fault as a scenario or the fault page gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    /// AWS: an operation (`BatchMeterUsage`...), `sns-certificate` (or `SigningCert`) or `*`.
    /// Microsoft: a suffix of the request path (`/api/usageEvent`), `jwks` or `*`.
    #[serde(rename = "match")]
    pub matching: String,
    pub kind: FaultKind,
    /// `429`: the `Retry-After` seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// `late`: how long the answer is held back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_ms: Option<u64>,
    /// Only this many calls (none: every call in the window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<u32>,
    /// Starts this long after the sandbox (scenario) or the switch (fault page); default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_after_secs: Option<u64>,
    /// Lasts this long (none: until stopped or its calls are used up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<u64>,
}

/// Which sandbox a fault is for: they match and answer differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Aws,
    Microsoft,
    Google,
}

/// The AWS operations the sandbox serves, and the SNS signing certificate.
pub const AWS_TARGETS: [&str; 14] = [
    "ResolveCustomer",
    "BatchMeterUsage",
    "GetEntitlements",
    "DescribeAgreement",
    "GetAgreementTerms",
    "GetAgreementEntitlements",
    "SearchAgreements",
    "CreateQueue",
    "GetQueueUrl",
    "SendMessage",
    "ReceiveMessage",
    "DeleteMessage",
    "ChangeMessageVisibility",
    "GetQueueAttributes",
];

/// What the AWS sandbox calls its SNS signing certificate endpoint.
pub const SIGNING_CERT: &str = "SigningCert";

impl FaultConfig {
    /// Checks the fault makes sense for `side`, and spells aliases the one way the sandbox
    /// matches them (`sns-certificate` → `SigningCert`).
    pub fn validate(&mut self, side: Side) -> Result<(), String> {
        let m = self.matching.trim().to_owned();
        let what = format!("fault {m:?} ({})", self.kind.name());
        self.check_target(side, m, &what)?;
        // Google's 429 (RESOURCE_EXHAUSTED) carries no Retry-After of its own: optional there.
        let is_429 = self.kind == FaultKind::TooManyRequests;
        let needs_retry_after = is_429 && side != Side::Google;
        match self.retry_after_secs {
            None if needs_retry_after => return Err(format!("{what}: retry_after_secs is needed")),
            Some(_) if !is_429 => {
                return Err(format!("{what}: retry_after_secs is only for kind \"429\""));
            }
            Some(s) if !(1..=3600).contains(&s) => {
                return Err(format!("{what}: retry_after_secs must be 1 to 3600"));
            }
            _ => {}
        }
        let needs_late = self.kind == FaultKind::Late;
        match self.late_ms {
            None if needs_late => return Err(format!("{what}: late_ms is needed")),
            Some(_) if !needs_late => {
                return Err(format!("{what}: late_ms is only for kind \"late\""));
            }
            Some(ms) if !(1..=600_000).contains(&ms) => {
                return Err(format!("{what}: late_ms must be 1 to 600000"));
            }
            _ => {}
        }
        if self.calls == Some(0) {
            return Err(format!(
                "{what}: calls must be at least 1 (leave it out for every call)"
            ));
        }
        // A year bounds the window, so that no sum of times overflows.
        let year = 366 * 24 * 3600;
        if self.start_after_secs.unwrap_or(0) > year || self.duration_secs.unwrap_or(0) > year {
            return Err(format!(
                "{what}: start_after_secs and duration_secs must be at most a year"
            ));
        }
        if self.duration_secs == Some(0) {
            return Err(format!(
                "{what}: duration_secs must be at least 1 (leave it out for no end)"
            ));
        }
        Ok(())
    }

    /// Checks `match` and `kind` fit `side` (each sandbox has its own targets and throttling).
    fn check_target(&mut self, side: Side, m: String, what: &str) -> Result<(), String> {
        match side {
            Side::Aws if m == "sns-certificate" || m == SIGNING_CERT => {
                self.matching = SIGNING_CERT.to_owned();
                if self.kind == FaultKind::Throttling {
                    return Err(format!(
                        "{what}: the SNS certificate is a plain download; use unavailable, 5xx, reset or late"
                    ));
                }
            }
            Side::Aws if m == "*" || AWS_TARGETS.contains(&m.as_str()) => self.matching = m,
            Side::Aws => {
                return Err(format!(
                    "{what}: match must be *, sns-certificate or an AWS operation: {}",
                    AWS_TARGETS.join(", ")
                ));
            }
            Side::Microsoft if m == "*" || m == "jwks" || m.starts_with('/') => self.matching = m,
            Side::Microsoft => {
                return Err(format!(
                    "{what}: match must be *, jwks or a path suffix starting with / (e.g. /api/usageEvent)"
                ));
            }
            Side::Google if m == "*" || m.starts_with('/') || m.starts_with(':') => {
                self.matching = m
            }
            Side::Google => {
                return Err(format!(
                    "{what}: match must be *, a path suffix starting with / or a method suffix such as :report"
                ));
            }
        }
        match (side, self.kind) {
            (Side::Aws, FaultKind::TooManyRequests) => {
                return Err(format!(
                    "{what}: AWS throttles with ThrottlingException; use kind = \"throttling\""
                ));
            }
            (Side::Google, FaultKind::Throttling) => {
                return Err(format!(
                    "{what}: Google throttles with 429 RESOURCE_EXHAUSTED; use kind = \"429\""
                ));
            }
            (Side::Microsoft, FaultKind::Throttling) => {
                return Err(format!(
                    "{what}: Microsoft throttling is kind = \"429\" with retry_after_secs"
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

/// Checks a scenario's faults (see [`FaultConfig::validate`]), naming the entry that is wrong.
pub fn validate_all(faults: &mut [FaultConfig], side: Side) -> anyhow::Result<()> {
    for (i, fault) in faults.iter_mut().enumerate() {
        fault
            .validate(side)
            .map_err(|e| anyhow::anyhow!("faults[{i}]: {e}"))?;
    }
    Ok(())
}

/// A fault as it stands now (the fault page, `?format=json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultView {
    pub id: u64,
    #[serde(flatten)]
    pub fault: FaultConfig,
    /// `scenario` or `fault page`.
    pub origin: &'static str,
    /// `scheduled`, `in force` or `ended`.
    pub status: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
    /// Calls the fault caught so far.
    pub caught: u64,
    pub calls_left: Option<u32>,
}

#[derive(Debug, Clone)]
struct Active {
    id: u64,
    fault: FaultConfig,
    origin: &'static str,
    from: OffsetDateTime,
    until: Option<OffsetDateTime>,
    calls_left: Option<u32>,
    caught: u64,
    stopped: bool,
}

impl Active {
    fn in_force(&self, now: OffsetDateTime) -> bool {
        !self.stopped
            && now >= self.from
            && self.until.is_none_or(|until| now < until)
            && self.calls_left != Some(0)
    }

    fn status(&self, now: OffsetDateTime) -> &'static str {
        if self.in_force(now) {
            "in force"
        } else if !self.stopped && now < self.from {
            "scheduled"
        } else {
            "ended"
        }
    }
}

/// Faults kept for the page, ended ones included, at most this many.
const KEPT: usize = 200;

/// The faults switched on, and what each caught.
#[derive(Debug, Default)]
pub struct Switches {
    inner: Mutex<(u64, Vec<Active>)>,
}

impl Switches {
    fn lock(&self) -> MutexGuard<'_, (u64, Vec<Active>)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The scenario's faults, their windows counted from `started`.
    pub fn from_scenario(faults: &[FaultConfig], started: OffsetDateTime) -> Self {
        let switches = Self::default();
        for fault in faults {
            switches.add(fault.clone(), "scenario", started);
        }
        switches
    }

    /// Switches a validated fault on, its window counted from `now`; its id.
    pub fn start(&self, fault: FaultConfig, now: OffsetDateTime) -> u64 {
        self.add(fault, "fault page", now)
    }

    fn add(&self, fault: FaultConfig, origin: &'static str, now: OffsetDateTime) -> u64 {
        let secs = |s: u64| Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 2));
        let from = now + secs(fault.start_after_secs.unwrap_or(0));
        let until = fault.duration_secs.map(|d| from + secs(d));
        let mut inner = self.lock();
        inner.0 += 1;
        let id = inner.0;
        let active = Active {
            id,
            calls_left: fault.calls,
            fault,
            origin,
            from,
            until,
            caught: 0,
            stopped: false,
        };
        inner.1.push(active);
        if inner.1.len() > KEPT {
            // The oldest that has ended goes; faults in force or to come are all kept.
            if let Some(i) = inner.1.iter().position(|a| a.status(now) == "ended") {
                inner.1.remove(i);
            }
        }
        id
    }

    /// Stops fault `id`; false when there is none.
    pub fn stop(&self, id: u64) -> bool {
        let mut inner = self.lock();
        match inner.1.iter_mut().find(|a| a.id == id) {
            Some(active) => {
                active.stopped = true;
                true
            }
            None => false,
        }
    }

    /// Stops every fault.
    pub fn stop_all(&self) {
        for active in &mut self.lock().1 {
            active.stopped = true;
        }
    }

    /// The fault in force that catches a call (`is_match` says what a fault's `match` means,
    /// `*` catches everything), counted; the first switched on wins.
    pub fn hit(&self, now: OffsetDateTime, is_match: impl Fn(&str) -> bool) -> Option<FaultConfig> {
        let mut inner = self.lock();
        let active = inner.1.iter_mut().find(|a| {
            a.in_force(now) && (a.fault.matching == "*" || is_match(&a.fault.matching))
        })?;
        active.caught += 1;
        if let Some(left) = active.calls_left.as_mut() {
            *left -= 1;
        }
        Some(active.fault.clone())
    }

    /// Every fault kept, oldest first.
    pub fn list(&self, now: OffsetDateTime) -> Vec<FaultView> {
        self.lock()
            .1
            .iter()
            .map(|a| FaultView {
                id: a.id,
                fault: a.fault.clone(),
                origin: a.origin,
                status: a.status(now),
                from: a.from,
                until: a.until,
                caught: a.caught,
                calls_left: a.calls_left,
            })
            .collect()
    }
}

/// The fault page's form: blank fields are left out.
#[derive(Debug, Deserialize)]
pub struct FaultForm {
    #[serde(rename = "match")]
    pub matching: String,
    pub kind: String,
    #[serde(default)]
    pub retry_after_secs: String,
    #[serde(default)]
    pub late_ms: String,
    #[serde(default)]
    pub calls: String,
    #[serde(default)]
    pub start_after_secs: String,
    #[serde(default)]
    pub duration_secs: String,
}

impl FaultForm {
    /// The fault the form describes, validated for `side`.
    pub fn fault(&self, side: Side) -> Result<FaultConfig, String> {
        fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<Option<T>, String> {
            let value = value.trim();
            if value.is_empty() {
                return Ok(None);
            }
            value
                .parse()
                .map(Some)
                .map_err(|_| format!("{name} must be a whole number, not {value:?}"))
        }
        let kind = FaultKind::parse(self.kind.trim()).ok_or_else(|| {
            format!(
                "kind must be one of throttling, 5xx, 429, reset, unavailable, late (not {:?})",
                self.kind
            )
        })?;
        let mut fault = FaultConfig {
            matching: self.matching.clone(),
            kind,
            retry_after_secs: number("retry_after_secs", &self.retry_after_secs)?,
            late_ms: number("late_ms", &self.late_ms)?,
            calls: number("calls", &self.calls)?,
            start_after_secs: number("start_after_secs", &self.start_after_secs)?,
            duration_secs: number("duration_secs", &self.duration_secs)?,
        };
        fault.validate(side)?;
        Ok(fault)
    }
}

/// The fault page's body: the faults kept, with a stop button each, and the form to switch
/// one on. `base` is the page's path (`/aws/faults`); `esc` escapes text for HTML.
pub fn page_body(views: &[FaultView], base: &str, side: Side, esc: fn(&str) -> String) -> String {
    use std::fmt::Write as _;
    let mut body = String::from(
        "<p>Faults the sandbox answers with instead of the real answer. No sign-in: the sandbox \
         is a loopback test tool.</p><table><tr><th>#</th><th>Match</th><th>Kind</th><th>Window</th>\
         <th>Status</th><th>Calls caught</th><th>Origin</th><th></th></tr>",
    );
    for v in views {
        let mut kind = v.fault.kind.name().to_owned();
        if let Some(s) = v.fault.retry_after_secs {
            let _ = write!(kind, ", Retry-After {s} s");
        }
        if let Some(ms) = v.fault.late_ms {
            let _ = write!(kind, ", {ms} ms late");
        }
        let mut window = format!("from {}", v.from);
        if let Some(until) = v.until {
            let _ = write!(window, " until {until}");
        }
        if let Some(left) = v.calls_left {
            let _ = write!(window, "; {left} call(s) left");
        }
        let stop = if v.status == "ended" {
            String::new()
        } else {
            format!(
                "<form method=post action=\"{base}/{}/stop\"><button>Stop</button></form>",
                v.id
            )
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td class=status>{}</td><td class=caught>{}</td><td>{}</td><td>{stop}</td></tr>",
            v.id,
            esc(&v.fault.matching),
            esc(&kind),
            esc(&window),
            v.status,
            v.caught,
            v.origin,
        );
    }
    let hint = match side {
        Side::Aws => {
            "an operation (BatchMeterUsage, GetEntitlements, ReceiveMessage...), sns-certificate or *"
        }
        Side::Microsoft => {
            "a path suffix (/api/usageEvent, /api/batchUsageEvent, /saas/subscriptions/resolve...), jwks or *"
        }
        Side::Google => {
            "a path or method suffix (:report, :check, :pull, /token, :approve...) or *"
        }
    };
    let kinds = match side {
        Side::Aws => ["throttling", "5xx", "unavailable", "reset", "late"],
        Side::Microsoft | Side::Google => ["429", "5xx", "unavailable", "reset", "late"],
    };
    let options: String = kinds
        .iter()
        .map(|k| format!("<option value=\"{k}\">{k}</option>"))
        .collect();
    let _ = write!(
        body,
        "</table><form method=post action=\"{base}/stop\"><button>Stop all</button></form>\
         <h2>Switch a fault on</h2><form method=post action=\"{base}\">\
         <p><label>Match <input name=match required placeholder=\"{hint}\" size=40></label> \
         <label>Kind <select name=kind>{options}</select></label></p>\
         <p><label>Retry-After (s, 429) <input name=retry_after_secs size=5></label> \
         <label>Late by (ms, late) <input name=late_ms size=7></label></p>\
         <p><label>Calls <input name=calls size=5></label> \
         <label>Starts in (s) <input name=start_after_secs size=5></label> \
         <label>Lasts (s) <input name=duration_secs size=5></label> \
         <span>(blank: every call, now, until stopped)</span></p>\
         <p><button>Start</button></p></form>",
    );
    body
}

#[cfg(test)]
mod tests;
