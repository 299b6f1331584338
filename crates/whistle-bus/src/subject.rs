//! The subject scheme (DESIGN §5), in one place for the relay, the department
//! library, `WatchAssignments` and the documentation.
//!
//! Every event is published to exactly ONE subject (JetStream de-duplicates by
//! `Nats-Msg-Id` per stream, so publishing an event twice to two subjects would
//! defeat it):
//!
//! ```text
//! whistle.<district>.<compound>.<department or _>.<EventType>
//! ```
//!
//! * a department's durable consumer filters with ONE `filter_subject`
//!   `whistle.<district>.*.<department>.>` (nats-server 2.9 knows no
//!   `filter_subjects`);
//! * auditors take everything of a district with `whistle.<district>.>`;
//! * the stream's subjects are `whistle.<district>.>`.
//!
//! District, compound and department ids are district codes
//! (`[A-Za-z0-9_-]{1,64}`), so they are always single valid subject tokens;
//! `_` (no department) is not a valid department code's only character by
//! convention and is refused as a department id by [`department_filter`].

/// First token of every whistle subject.
pub const PREFIX: &str = "whistle";

/// The department token of an event routed to no department.
pub const NO_DEPARTMENT: &str = "_";

/// The subject an event is published to.
pub fn event_subject(
    district: &str,
    compound: &str,
    department: Option<&str>,
    event_type: &str,
) -> String {
    format!(
        "{PREFIX}.{district}.{compound}.{}.{event_type}",
        department.unwrap_or(NO_DEPARTMENT)
    )
}

/// The one filter subject of a department's durable consumer.
pub fn department_filter(district: &str, department: &str) -> String {
    format!("{PREFIX}.{district}.*.{department}.>")
}

/// The filter of an auditor (every event of the district); also the stream's subject.
pub fn district_filter(district: &str) -> String {
    format!("{PREFIX}.{district}.>")
}

/// Whether `token` can stand as one subject token (no wildcard, separator or
/// whitespace), i.e. a district code.
pub fn is_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 64
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The conventional durable consumer name of a department (`dept-<department>`).
pub fn department_consumer(department: &str) -> String {
    format!("dept-{department}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_subject_per_event_and_filters_match_it() {
        let s = event_subject("qinghe", "hongqi-jiayuan", Some("fire"), "CaseAssigned");
        assert_eq!(s, "whistle.qinghe.hongqi-jiayuan.fire.CaseAssigned");
        assert_eq!(
            event_subject("qinghe", "c1", None, "CaseReported"),
            "whistle.qinghe.c1._.CaseReported"
        );
        assert_eq!(
            department_filter("qinghe", "fire"),
            "whistle.qinghe.*.fire.>"
        );
        assert_eq!(district_filter("qinghe"), "whistle.qinghe.>");
        assert!(is_token("hongqi-jiayuan"));
        assert!(!is_token("a.b") && !is_token("*") && !is_token(">") && !is_token(""));
    }
}
