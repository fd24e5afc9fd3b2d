//! Events in the formats other tools read: ECS JSON (Elastic Common
//! Schema; one object per line is what Elastic, Wazuh, Vector and Loki's
//! agents ingest) and RFC 5424 syslog lines carrying the ECS JSON.

use serde_json::{json, Map, Value};

use super::{Chained, Severity};

/// The event as an ECS document.
pub fn ecs(e: &Chained) -> Value {
    let mut event = Map::new();
    event.insert("kind".into(), json!("event"));
    event.insert("dataset".into(), json!("rampart.audit"));
    event.insert("action".into(), json!(e.action));
    event.insert("category".into(), json!([e.category]));
    event.insert("outcome".into(), json!(e.outcome));
    event.insert("severity".into(), json!(e.severity));
    event.insert("sequence".into(), json!(e.seq));
    event.insert("id".into(), json!(format!("{}:{}", e.node, e.seq)));
    if let Some(r) = &e.reason {
        event.insert("reason".into(), json!(r));
    }
    let mut rampart = Map::new();
    rampart.insert("node".into(), json!(e.node));
    rampart.insert("seq".into(), json!(e.seq));
    if e.link != [0; 32] {
        rampart.insert("link".into(), json!(hex::encode(e.link)));
    }
    if let Some(o) = &e.object {
        rampart.insert("object".into(), json!(o));
    }
    let mut extra = Map::new();
    let mut roles = None;
    for (k, v) in e.fields_map() {
        // ECS `user.roles`: the account's roles when it acted.
        if k == "user.roles" {
            roles = Some(v);
            continue;
        }
        // ECS's own event fields (the folded count and its span) join
        // `event`; the rest are Rampart's.
        match k.strip_prefix("event.") {
            Some(name) if !event.contains_key(name) => {
                event.insert(name.to_owned(), v);
            }
            _ => {
                extra.insert(k, v);
            }
        }
    }
    if !extra.is_empty() {
        rampart.insert("fields".into(), Value::Object(extra));
    }
    let mut doc = Map::new();
    doc.insert("@timestamp".into(), json!(e.at.to_rfc3339()));
    doc.insert("event".into(), Value::Object(event));
    doc.insert("host".into(), json!({"name": e.node}));
    doc.insert("service".into(), json!({"name": "rampart"}));
    match (&e.user_id, roles) {
        (Some(u), Some(r)) => {
            doc.insert("user".into(), json!({"id": u, "roles": r}));
        }
        (Some(u), None) => {
            doc.insert("user".into(), json!({"id": u}));
        }
        (None, _) => {}
    }
    if let Some(ip) = &e.source_ip {
        doc.insert("source".into(), json!({"ip": ip}));
    }
    if let Some(ua) = &e.user_agent {
        doc.insert("user_agent".into(), json!({"original": ua}));
    }
    if let Some(id) = &e.request_id {
        doc.insert("http".into(), json!({"request": {"id": id}}));
    }
    if let Some(r) = &e.rule {
        doc.insert("rule".into(), json!({"name": r}));
    }
    doc.insert("rampart".into(), Value::Object(rampart));
    Value::Object(doc)
}

/// One ECS JSON line (no newline).
pub fn ecs_line(e: &Chained) -> String {
    ecs(e).to_string()
}

/// RFC 5424 facility 13, "log audit".
const FACILITY: u8 = 13;

fn syslog_severity(severity: u8) -> u8 {
    match Severity::from_number(i64::from(severity)) {
        Some(Severity::Critical) => 2,
        Some(Severity::High) => 3,
        Some(Severity::Medium) => 4,
        Some(Severity::Low) => 5,
        _ => 6,
    }
}

/// A PRINTUSASCII token of at most `max` characters, `-` when empty.
fn token(s: &str, max: usize) -> String {
    let t: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if t.is_empty() {
        "-".into()
    } else {
        t
    }
}

/// An SD-PARAM value: `"`, `\` and `]` escaped.
fn param(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().filter(|c| !c.is_control()) {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The private-use enterprise number of RFC 5612 (for documentation and
/// examples): the structured data's id is `rampart@32473`.
const SD_ID: &str = "rampart@32473";

/// One RFC 5424 line: facility "log audit", the severity from the event's,
/// HOSTNAME the node, APP-NAME `rampart`, MSGID the action, structured data
/// with the chain position, and the ECS JSON as the message.
pub fn syslog_line(e: &Chained) -> String {
    let pri = FACILITY * 8 + syslog_severity(e.severity);
    format!(
        "<{pri}>1 {} {} rampart - {} [{SD_ID} node=\"{}\" seq=\"{}\" outcome=\"{}\"] {}",
        e.at.to_rfc3339(),
        token(&e.node, 255),
        token(&e.action, 32),
        param(&e.node),
        e.seq,
        param(&e.outcome),
        ecs_line(e)
    )
}

/// A syslog line framed for TCP by octet counting (RFC 6587 3.4.1).
pub fn octet_counted(line: &str) -> String {
    format!("{} {line}", line.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;

    fn sample() -> Chained {
        Chained {
            node: "node-1".into(),
            seq: 7,
            at: Timestamp(1_700_000_000_123),
            action: "request_blocked".into(),
            category: "web".into(),
            outcome: "failure".into(),
            severity: 4,
            reason: Some("sqli: \"quoted\" ]".into()),
            user_id: None,
            source_ip: Some("203.0.113.9".into()),
            user_agent: Some("curl/8".into()),
            request_id: Some("r1".into()),
            rule: Some("sqli".into()),
            object: None,
            fields: r#"{"event.count":3,"data.x":1}"#.into(),
            link: [1; 32],
            tree: vec![],
            ip_key: None,
        }
    }

    #[test]
    fn ecs_documents_use_ecs_names() {
        let d = ecs(&sample());
        assert_eq!(d["@timestamp"], "2023-11-14T22:13:20.123Z");
        assert_eq!(d["event"]["action"], "request_blocked");
        assert_eq!(d["event"]["category"][0], "web");
        assert_eq!(d["event"]["count"], 3);
        assert_eq!(d["source"]["ip"], "203.0.113.9");
        assert_eq!(d["user_agent"]["original"], "curl/8");
        assert_eq!(d["rule"]["name"], "sqli");
        assert_eq!(d["rampart"]["fields"]["data.x"], 1);
        assert_eq!(d["rampart"]["seq"], 7);
    }

    #[test]
    fn syslog_lines_follow_rfc_5424() {
        let l = syslog_line(&sample());
        // Facility 13 (log audit) * 8 + 3 (err, for a high severity).
        assert!(
            l.starts_with("<107>1 2023-11-14T22:13:20.123Z node-1 rampart - request_blocked [rampart@32473 node=\"node-1\" seq=\"7\" outcome=\"failure\"] {"),
            "{l}"
        );
        assert!(!l.contains('\n'));
        let framed = octet_counted(&l);
        let (len, rest) = framed.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), rest.len());
        assert_eq!(param("a\"b\\c]"), "a\\\"b\\\\c\\]");
        assert_eq!(token("", 5), "-");
    }
}
