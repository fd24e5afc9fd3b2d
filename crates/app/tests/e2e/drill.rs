//! `rampart drill` against a real server (ADR 0014): a fresh instance
//! blocks or alerts on every scenario; one with a rule turned off scores
//! that scenario lower and says why; targets other than this deployment
//! or an allowed loopback address are refused.

use serde_json::Value;

use crate::support::*;

/// Runs `rampart drill` against `s` (off the test's runtime, which serves
/// `s` meanwhile).
async fn drill(
    s: &TestServer,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    let target = format!("https://127.0.0.1:{}", s.port());
    let mut all: Vec<String> = vec![
        "drill".into(),
        "--target".into(),
        target.clone(),
        "--data-dir".into(),
        s.data_dir().to_str().unwrap().to_owned(),
    ];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let mut env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    env.push((
        "RAMPART_INCIDENT__DRILL_TARGETS".into(),
        format!("[\"{target}\"]"),
    ));
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        rampart_run_env(&args, None, &env)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_drill_against_a_fresh_instance_blocks_or_alerts_every_scenario_and_cleans_up() {
    let s = TestServer::with(Options::default().guard_defaults()).await;
    let admin = s.admin().await;
    let html = s.dir.path().join("drill.html");
    let (code, out, err) = drill(
        &s,
        &[
            "--json",
            "--html",
            html.to_str().unwrap(),
            "--wait-secs",
            "15",
        ],
        &[],
    )
    .await;
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}\n{err}"));
    let scenarios = report["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 7, "{report:#}");
    for sc in scenarios {
        let outcome = sc["outcome"].as_str().unwrap();
        assert!(
            outcome == "blocked" || outcome == "alerted",
            "{} scored {outcome}: {}",
            sc["scenario"],
            sc["why"]
        );
        assert!(sc["detection_ms"].is_u64(), "{sc:#}");
    }
    assert_eq!(code, Some(0), "{err}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("session-reuse"));

    // Cleaned up: no drill account signs in, no block or open alert of
    // the drill is left.
    let blocks: Value = s
        .get_auth("/api/v1/admin/blocks", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        !blocks.to_string().contains("\"127."),
        "the drill's blocks were lifted: {blocks}"
    );
    let open: Value = s
        .get_auth("/api/v1/admin/alerts?status=open", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(open["alerts"], serde_json::json!([]), "{open:#}");
    // Its events are marked and left out of the counts.
    let id = report["drill"].as_str().unwrap();
    let marked: Value = s
        .get_auth(
            &format!("/api/v1/admin/events?q={id}&drills=only&limit=500"),
            &admin,
        )
        .await
        .json()
        .await
        .unwrap();
    let marked = marked["events"].as_array().unwrap();
    assert!(marked.len() > 50, "{}", marked.len());
    let failures = |drills: &str| {
        let url = format!("/api/v1/admin/events/counts?type=login_failure&bucket=day{drills}");
        let s = &s;
        let admin = &admin;
        async move {
            let v: Value = s.get_auth(&url, admin).await.json().await.unwrap();
            v["counts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["count"].as_u64().unwrap())
                .sum::<u64>()
        }
    };
    // The counts end at the server's now: past the events of its frozen
    // test clock.
    s.clock.advance(std::time::Duration::from_secs(1));
    let all = failures("&drills=include").await;
    assert!(all >= 10, "{all}");
    assert_eq!(
        failures("").await,
        0,
        "drill failures are not real statistics"
    );
    let completed: Value = s
        .get_auth("/api/v1/admin/events?type=drill.completed", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(completed["events"].as_array().unwrap().len(), 1);
    let r = s
        .post(
            "/api/v1/auth/login",
            serde_json::json!({"email": format!("session-{}@drill.rampart.invalid", &id[6..14]), "password": "x"}),
        )
        .await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_rule_turned_off_scores_its_scenario_lower_and_says_why() {
    let off = [(
        "RAMPART_DETECT__RULES__RAMPART-SESSION-SECOND-PLACE__ENABLED",
        "false",
    )];
    let mut opts = Options::default().guard_defaults();
    for (k, v) in off {
        opts = opts.env(k, v);
    }
    let s = TestServer::with(opts).await;
    let (code, out, err) = drill(
        &s,
        &[
            "--json",
            "--scenario",
            "session-reuse,injection",
            "--wait-secs",
            "4",
        ],
        &off,
    )
    .await;
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}\n{err}"));
    let reuse = &report["scenarios"][0];
    assert_eq!(reuse["scenario"], "session-reuse");
    assert_eq!(reuse["outcome"], "logged", "{reuse:#}");
    let why = reuse["why"].as_str().unwrap();
    assert!(
        why.contains("rampart-session-second-place is turned off"),
        "{why}"
    );
    assert_eq!(report["scenarios"][1]["outcome"], "blocked");
    assert_eq!(code, Some(3), "a scenario only logged fails the drill");
}

#[tokio::test]
async fn a_drill_refuses_any_target_but_this_deployment_or_an_allowed_loopback_address() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    for (target, says) in [
        ("https://192.0.2.10:443", "aims only at this machine"),
        ("https://example.com", "aims only at this machine"),
        ("http://127.0.0.1:8443", "https://"),
        ("https://127.0.0.9:9443", "refusing https://127.0.0.9:9443"),
    ] {
        let (code, _, err) = rampart_run(&["drill", "--target", target, "--data-dir", d], None);
        assert_eq!(code, Some(1), "{target}");
        assert!(err.contains(says), "{target}: {err}");
    }
    // Refused before anything was made.
    assert!(!data.exists());
}
