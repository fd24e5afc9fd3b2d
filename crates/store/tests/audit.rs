//! The audit trail on both back ends: the writer's chain, every kind of
//! tampering `verify` must catch, the witness, legacy events, search.

use std::sync::Arc;

use rampart_core::audit::{
    verify, Audit, AuditStore, Category, Event, EventQuery, Expect, Severity, Witness,
    WitnessEntry, WriterMode, FAILURE, SUCCESS,
};
use rampart_core::data::DataStore;
use rampart_core::{ManualClock, RequestMeta, Timestamp};
use rampart_store::{open, SqlStore};

mod common;
use common::{keys, postgres_url, trail};

const NODE: &str = "n1";
const CHAIN: &str = "n1-cli";

fn event(i: u64) -> Event {
    Event::new(
        Timestamp(10_000 + i as i64),
        if i.is_multiple_of(3) {
            "login_failure"
        } else {
            "login_success"
        },
        Category::Authentication,
        if i.is_multiple_of(3) {
            FAILURE
        } else {
            SUCCESS
        },
    )
    .user(Some(&format!("acc_{}", i % 4)))
    .meta(&RequestMeta {
        ip: Some(format!("10.0.{}.{}", i % 2, i % 7)),
        user_agent: Some("test-agent".into()),
        request_id: Some(format!("req-{i}")),
        cross_site: false,
        drill: None,
    })
    .field("n", i)
}

/// A writer of `node` on `s`, on a clock standing at 1,000 ms.
async fn writer(
    s: &SqlStore,
    node: &str,
    mode: WriterMode,
    witness: Option<Witness>,
) -> (Audit, tokio::task::JoinHandle<()>) {
    Audit::start(
        Arc::new(s.clone()),
        Arc::new(keys()),
        node,
        mode,
        witness,
        Arc::new(ManualClock::new(Timestamp(1_000))),
    )
    .await
    .unwrap()
}

/// Writes `n` events through a writer, with a checkpoint after every
/// `every`, and stops it. The witness, when given, gets every checkpoint.
async fn fill(s: &SqlStore, n: u64, every: u64, witness: Option<Witness>) {
    let (audit, task) = writer(s, NODE, WriterMode::Command, witness).await;
    for i in 0..n {
        audit.record(event(i)).await;
        if (i + 1) % every == 0 {
            audit.flush().await;
        }
    }
    audit.stop().await;
    task.await.unwrap();
}

async fn check(s: &SqlStore, witness: Option<&[WitnessEntry]>) -> rampart_core::audit::Report {
    verify(
        s,
        &keys(),
        witness.map(|w| (w, 0)),
        &Expect::default(),
        &|_| {},
    )
    .await
    .unwrap()
}

/// The first break of the chain: its sequence number and what is wrong.
async fn first_break(s: &SqlStore, witness: Option<&[WitnessEntry]>) -> (u64, String) {
    let r = check(s, witness).await;
    assert!(!r.ok(), "tampering went unnoticed: {r:?}");
    let b = r.breaks().next().unwrap();
    assert_eq!(b.node, CHAIN);
    (b.seq, b.what.clone())
}

async fn exec(s: &SqlStore, sql: &str) {
    sqlx::query(sql).execute(s.pool()).await.unwrap();
}

async fn witness_entries(dir: &std::path::Path) -> Vec<WitnessEntry> {
    let text = std::fs::read_to_string(dir.join(format!("{CHAIN}.checkpoints"))).unwrap();
    let (e, bad) = rampart_core::audit::witness::read_entries(&text);
    assert!(bad.is_empty());
    e
}

both!(
    an_untouched_trail_verifies_and_has_no_gaps,
    |s: SqlStore, _url: String| async move {
        let dir = tempfile::tempdir().unwrap();
        fill(&s, 250, 100, Some(Witness::new(dir.path().to_owned()))).await;
        // A second run continues the same chain.
        fill(&s, 50, 100, Some(Witness::new(dir.path().to_owned()))).await;
        let w = witness_entries(dir.path()).await;
        assert_eq!(
            w.iter().map(|e| e.size).collect::<Vec<_>>(),
            vec![100, 200, 250, 300],
            "a checkpoint at each flush and at each stop"
        );
        let r = check(&s, Some(&w)).await;
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.nodes.len(), 1);
        assert_eq!(r.nodes[0].events, 300);
        assert_eq!(r.nodes[0].covered, 300);
        assert_eq!(r.nodes[0].witnessed, 4);
        let seqs: Vec<u64> = s
            .audit_range(CHAIN, 0, 1000)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, (0..300).collect::<Vec<_>>());
    }
);

both!(
    an_edited_field_is_caught,
    |s: SqlStore, _url: String| async move {
        fill(&s, 300, 100, None).await;
        exec(
            &s,
            "UPDATE audit_events SET reason = 'nothing happened' WHERE seq = 150",
        )
        .await;
        let (seq, what) = first_break(&s, None).await;
        assert_eq!(seq, 150);
        assert!(what.contains("link does not match"), "{what}");
    }
);

both!(
    a_deleted_row_is_caught,
    |s: SqlStore, _url: String| async move {
        fill(&s, 300, 100, None).await;
        exec(&s, "DELETE FROM audit_events WHERE seq = 42").await;
        let (seq, what) = first_break(&s, None).await;
        assert_eq!(seq, 42);
        assert!(what.contains("event 42 is missing"), "{what}");
    }
);

both!(
    an_inserted_row_is_caught,
    |s: SqlStore, _url: String| async move {
        fill(&s, 300, 100, None).await;
        // Make room at 120 (in two steps: each sequence number stays unique)
        // and put a copy of event 7, relabelled, there.
        exec(
            &s,
            "UPDATE audit_events SET seq = seq + 1000000 WHERE seq >= 120",
        )
        .await;
        exec(
            &s,
            "UPDATE audit_events SET seq = seq - 999999 WHERE seq >= 1000000",
        )
        .await;
        exec(
            &s,
            "INSERT INTO audit_events (node, seq, at, action, category, outcome, severity, reason, \
             user_id, source_ip, user_agent, request_id, rule, object, fields, link, tree, ip_key) \
             SELECT node, 120, at, 'logout', category, outcome, severity, reason, user_id, source_ip, \
             user_agent, request_id, rule, object, fields, link, tree, ip_key \
             FROM audit_events WHERE seq = 7",
        )
        .await;
        let (seq, what) = first_break(&s, None).await;
        assert_eq!(seq, 120);
        assert!(what.contains("link does not match"), "{what}");
    }
);

both!(
    swapped_rows_are_caught,
    |s: SqlStore, _url: String| async move {
        fill(&s, 300, 100, None).await;
        exec(&s, "UPDATE audit_events SET seq = 999999 WHERE seq = 60").await;
        exec(&s, "UPDATE audit_events SET seq = 60 WHERE seq = 61").await;
        exec(&s, "UPDATE audit_events SET seq = 61 WHERE seq = 999999").await;
        let (seq, what) = first_break(&s, None).await;
        assert_eq!(seq, 60);
        assert!(what.contains("link does not match"), "{what}");
    }
);

both!(
    a_truncated_tail_is_caught,
    |s: SqlStore, _url: String| async move {
        fill(&s, 300, 100, None).await;
        exec(&s, "DELETE FROM audit_events WHERE seq >= 290").await;
        let (seq, what) = first_break(&s, None).await;
        assert_eq!(seq, 290);
        assert!(what.contains("deleted from the end"), "{what}");
        // Deleting the checkpoints that cover the tail too: the earlier
        // checkpoints still verify, so within the heartbeat's grace the
        // database alone cannot tell (the witness can)...
        exec(&s, "DELETE FROM audit_checkpoints WHERE size > 200").await;
        assert!(check(&s, None).await.ok());
        // ...but once the uncovered events are older than that, it can.
        let later = Expect {
            chains: vec![CHAIN.into()],
            now: Some(Timestamp(10_000 + 200 + 600_001)),
        };
        let r = verify(&s, &keys(), None, &later, &|_| {}).await.unwrap();
        let b = r.breaks().next().expect("uncovered events found");
        assert_eq!(b.seq, 200);
        assert!(b.what.contains("in no checkpoint"), "{}", b.what);
        // And a chain deleted whole, with its checkpoints, is not "no events".
        exec(&s, "DELETE FROM audit_events").await;
        exec(&s, "DELETE FROM audit_checkpoints").await;
        let r = verify(&s, &keys(), None, &later, &|_| {}).await.unwrap();
        assert!(r.breaks().next().unwrap().what.contains("no events at all"));
    }
);

both!(
    the_witness_catches_a_truncated_tail_and_its_checkpoints,
    |s: SqlStore, _url: String| async move {
        let dir = tempfile::tempdir().unwrap();
        fill(&s, 300, 100, Some(Witness::new(dir.path().to_owned()))).await;
        exec(&s, "DELETE FROM audit_events WHERE seq >= 250").await;
        exec(&s, "DELETE FROM audit_checkpoints WHERE size > 250").await;
        let w = witness_entries(dir.path()).await;
        let (seq, what) = first_break(&s, Some(&w)).await;
        assert_eq!(seq, 250);
        assert!(what.contains("witness checkpoint"), "{what}");
    }
);

both!(
    the_witness_catches_a_rebuilt_re_signed_chain,
    |s: SqlStore, _url: String| async move {
        let dir = tempfile::tempdir().unwrap();
        fill(&s, 300, 100, Some(Witness::new(dir.path().to_owned()))).await;
        let w = witness_entries(dir.path()).await;
        // Someone with the master key (so with the audit keys) replaces
        // the whole trail with a chain of their own, properly linked and
        // signed.
        exec(&s, "DELETE FROM audit_events").await;
        exec(&s, "DELETE FROM audit_checkpoints").await;
        let (forger, task) = writer(&s, NODE, WriterMode::Command, None).await;
        for i in 0..300 {
            let mut e = event(i);
            if i == 150 {
                e.action = "logout".into();
            }
            forger.record(e).await;
            if (i + 1) % 100 == 0 {
                forger.flush().await;
            }
        }
        forger.stop().await;
        task.await.unwrap();
        assert!(
            check(&s, None).await.ok(),
            "a rebuilt chain is consistent in itself"
        );
        let (seq, what) = first_break(&s, Some(&w)).await;
        assert_eq!(seq, 199, "the first witnessed size that differs: 200");
        assert!(what.contains("the chain was rebuilt"), "{what}");
    }
);

both!(
    forged_and_altered_checkpoints_are_caught,
    |s: SqlStore, _url: String| async move {
        fill(&s, 120, 100, None).await;
        exec(&s, "UPDATE audit_checkpoints SET note = REPLACE(note, '\n100\n', '\n99\n') WHERE size = 100").await;
        let (_, what) = first_break(&s, None).await;
        assert!(
            what.contains("not valid") || what.contains("another log or size"),
            "{what}"
        );
    }
);

both!(
    altered_tree_hashes_are_caught,
    |s: SqlStore, _url: String| async move {
        fill(&s, 120, 100, None).await;
        exec(
            &s,
            "UPDATE audit_events SET tree = REPLACE(tree, SUBSTR(tree, 1, 2), 'ff') WHERE seq = 31",
        )
        .await;
        let (seq, what) = first_break(&s, None).await;
        assert_eq!(seq, 31);
        assert!(what.contains("tree hashes"), "{what}");
    }
);

both!(
    writers_of_one_chain_take_turns_without_gaps,
    |s: SqlStore, _url: String| async move {
        let (a, ta) = trail(&s, NODE).await;
        let (b, tb) = trail(&s, NODE).await;
        for i in 0..40 {
            let w = if i % 2 == 0 { &a } else { &b };
            w.record_durable(event(i)).await.unwrap();
        }
        a.stop().await;
        b.stop().await;
        ta.await.unwrap();
        tb.await.unwrap();
        let r = check(&s, None).await;
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.nodes[0].events, 40);
    }
);

both!(
    a_start_after_an_unclean_stop_says_so,
    |s: SqlStore, _url: String| async move {
        let start = || writer(&s, "srv", WriterMode::Server, None);
        let (a, task) = start().await;
        let seq = a.record_durable(event(1)).await.unwrap();
        // Killed: the writer never records its stop.
        task.abort();
        let _ = task.await;
        let (b, task) = start().await;
        b.stop().await;
        task.await.unwrap();
        let events = s.audit_range("srv", 0, 100).await.unwrap();
        let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            vec![
                "audit.started",
                "login_success",
                "audit.unclean_stop",
                "audit.started",
                "audit.stopped"
            ]
        );
        let unclean = &events[2];
        assert_eq!(unclean.severity, Severity::High.number());
        assert_eq!(unclean.fields_map()["audit.last_seq"], seq);
        assert!(check(&s, None).await.ok());
    }
);

both!(
    events_of_an_earlier_release_are_chained_once,
    |s: SqlStore, _url: String| async move {
        exec(
            &s,
            "INSERT INTO security_events (id, at, kind, outcome, reason, account_id, ip, user_agent, request_id) \
             VALUES ('evt_1', 500, 'login_failure', 'failure', 'wrong_password', 'acc_1', '10.1.1.1', 'ua', 'r1')",
        )
        .await;
        exec(
            &s,
            "INSERT INTO data_events (at, actor_kind, actor_id, collection, action, record_ids, count, outcome, sensitive, ip, request_id) \
             VALUES (600, 'api_key', 'k1', 'notes', 'read', '[\"rec_1\"]', 1, 'allowed', 1, '10.1.1.2', 'r2')",
        )
        .await;
        let start = || writer(&s, "srv", WriterMode::Server, None);
        let (a, task) = start().await;
        a.stop().await;
        task.await.unwrap();
        let (a, task) = start().await;
        a.stop().await;
        task.await.unwrap();
        let events = s.audit_range("srv", 0, 100).await.unwrap();
        let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            vec![
                "login_failure",
                "data.read",
                "audit.imported",
                "audit.started",
                "audit.stopped",
                "audit.started",
                "audit.stopped"
            ],
            "imported once, and an import is not an unclean stop"
        );
        assert_eq!(events[0].reason.as_deref(), Some("wrong_password"));
        assert_eq!(events[0].at, Timestamp(500));
        assert_eq!(events[1].user_id.as_deref(), Some("key:k1"));
        assert_eq!(events[1].object.as_deref(), Some("notes"));
        let data = s
            .data_events(&rampart_core::data::DataEventFilter {
                actor: Some("k1".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(data.len(), 1);
        assert_eq!(data[0].record_ids, vec!["rec_1".to_owned()]);
        assert!(data[0].sensitive);
        for t in ["security_events", "data_events"] {
            assert!(
                sqlx::query(&format!("SELECT COUNT(*) FROM {t}"))
                    .fetch_one(s.pool())
                    .await
                    .is_err(),
                "{t} dropped"
            );
        }
        // A table made again and filled is never chained: the chain exists.
        exec(&s, "CREATE TABLE security_events (id TEXT, at BIGINT, kind TEXT, outcome TEXT, reason TEXT, account_id TEXT, ip TEXT, user_agent TEXT, request_id TEXT)").await;
        exec(&s, "INSERT INTO security_events VALUES ('evt_2', 1, 'admin_created', 'success', NULL, 'acc_x', NULL, NULL, NULL)").await;
        let (a, task) = start().await;
        a.stop().await;
        task.await.unwrap();
        let again = s.audit_range("srv", 0, 100).await.unwrap();
        assert_eq!(
            again.len(),
            events.len() + 2,
            "started and stopped, nothing imported"
        );
        assert!(again.iter().all(|e| e.action != "admin_created"));
        assert!(check(&s, None).await.ok());
    }
);

both!(
    search_filters_and_pages,
    |s: SqlStore, _url: String| async move {
        let (a, task) = trail(&s, NODE).await;
        for i in 0..30 {
            let mut e = event(i);
            if i == 5 {
                e = e
                    .severity(Severity::High)
                    .rule("sqli")
                    .reason(Some("50% of _this_ matched"));
            }
            if i % 10 == 0 {
                e = e.object("notes");
            }
            a.record(e).await;
        }
        a.stop().await;
        task.await.unwrap();
        let n = |q: EventQuery| {
            let s = s.clone();
            async move {
                s.search_events(&EventQuery { limit: 100, ..q })
                    .await
                    .unwrap()
                    .len()
            }
        };
        assert_eq!(n(EventQuery::default()).await, 30);
        assert_eq!(
            n(EventQuery {
                actions: vec!["login_failure".into()],
                ..Default::default()
            })
            .await,
            10
        );
        assert_eq!(
            n(EventQuery {
                outcome: Some("failure".into()),
                user_id: Some("acc_0".into()),
                ..Default::default()
            })
            .await,
            3,
            "failures of acc_0: i = 0, 12, 24"
        );
        assert_eq!(
            n(EventQuery {
                source_net: Some("10.0.1.0/24".parse().unwrap()),
                ..Default::default()
            })
            .await,
            15
        );
        assert_eq!(
            n(EventQuery {
                source_net: Some("10.0.1.3/32".parse().unwrap()),
                ..Default::default()
            })
            .await,
            2,
            "i = 3, 17"
        );
        assert_eq!(
            n(EventQuery {
                source_net: Some("::ffff:10.0.0.0/120".parse().unwrap()),
                ..Default::default()
            })
            .await,
            15,
            "an IPv4 address is found by its IPv6-mapped network too"
        );
        assert_eq!(
            n(EventQuery {
                min_severity: Some(Severity::Medium),
                ..Default::default()
            })
            .await,
            1
        );
        assert_eq!(
            n(EventQuery {
                rule: Some("sqli".into()),
                ..Default::default()
            })
            .await,
            1
        );
        assert_eq!(
            n(EventQuery {
                object: Some("notes".into()),
                ..Default::default()
            })
            .await,
            3
        );
        for (text, found) in [
            ("50% of _this_", 1),
            ("req-2", 11),
            ("%", 1),
            ("_this_", 1),
            ("_", 30),
            ("\"n\":7", 1),
        ] {
            assert_eq!(
                n(EventQuery {
                    text: Some(text.into()),
                    ..Default::default()
                })
                .await,
                found,
                "text {text:?}"
            );
        }
        assert_eq!(
            n(EventQuery {
                since: Some(Timestamp(10_010)),
                until: Some(Timestamp(10_020)),
                ..Default::default()
            })
            .await,
            10
        );
        assert_eq!(
            n(EventQuery {
                user_id: Some("' OR '1'='1".into()),
                ..Default::default()
            })
            .await,
            0,
            "an injection is just a value"
        );
        // Pages: newest first, no gaps, no repeats.
        let mut q = EventQuery {
            limit: 7,
            ..Default::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = s.search_events(&q).await.unwrap();
            let Some(last) = page.last() else { break };
            q.cursor = Some((last.at, last.node.clone(), last.seq));
            seen.extend(page.iter().map(|e| e.seq));
        }
        assert_eq!(seen, (0..30).rev().collect::<Vec<_>>());
        let counts = s.count_events(&EventQuery::default(), 10).await.unwrap();
        assert_eq!(
            counts,
            vec![
                (Timestamp(10_000), 10),
                (Timestamp(10_010), 10),
                (Timestamp(10_020), 10)
            ]
        );
    }
);

both!(
    retention_removes_whole_signed_ranges_and_the_chain_still_verifies,
    |s: SqlStore, _url: String| async move {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(Timestamp(1_000)));
        let start = || {
            Audit::start(
                Arc::new(s.clone()),
                Arc::new(keys()),
                NODE,
                WriterMode::Command,
                Some(Witness::new(dir.path().to_owned())),
                clock.clone(),
            )
        };
        let (audit, task) = start().await.unwrap();
        for i in 0..100 {
            audit.record(event(i)).await; // at 10_000 + i
            if i % 30 == 29 {
                audit.flush().await;
            }
        }
        audit.flush().await;
        // Events before 10_050 are old: 0..=49 go, as one range.
        let r = rampart_core::audit::retention::retire(
            &s,
            &keys(),
            &audit,
            CHAIN,
            Timestamp(10_050),
            Timestamp(20_000),
        )
        .await
        .unwrap()
        .expect("something to remove");
        assert_eq!((r.first_seq, r.last_seq, r.count), (0, 49, 50));
        assert_eq!(s.audit_range(CHAIN, 0, 1).await.unwrap()[0].seq, 50);
        // Nothing more is old enough; a second run removes nothing.
        assert!(rampart_core::audit::retention::retire(
            &s,
            &keys(),
            &audit,
            CHAIN,
            Timestamp(10_050),
            Timestamp(20_000)
        )
        .await
        .unwrap()
        .is_none());
        audit.stop().await;
        task.await.unwrap();
        // The writer starts again from a head whose tree edge is partly in
        // the record, and goes on.
        let (audit, task) = start().await.unwrap();
        for i in 100..120 {
            audit.record(event(i)).await;
        }
        audit.stop().await;
        task.await.unwrap();
        let w = witness_entries(dir.path()).await;
        let report = check(&s, Some(&w)).await;
        assert!(report.ok(), "{report:?}");
        let n = &report.nodes[0];
        assert_eq!(n.events, 121, "100, the retirement's own event, 20");
        let retired = n.retired.as_ref().unwrap();
        assert_eq!((retired.first_seq, retired.last_seq), (0, 49));
        // A later event still has its proof.
        let proof = rampart_core::audit::proof::prove(&s, CHAIN, 60)
            .await
            .unwrap()
            .unwrap();
        rampart_core::audit::proof::check(&proof, &keys().verifier_key()).unwrap();
        // The record is signed: altering it is caught.
        exec(
            &s,
            "UPDATE audit_retired SET note = REPLACE(note, 'count 50', 'count 40')",
        )
        .await;
        let (seq, what) = first_break(&s, None).await;
        assert_eq!(seq, 49);
        assert!(what.contains("retention record"), "{what}");
    }
);

both!(
    retention_refuses_to_remove_events_that_do_not_verify,
    |s: SqlStore, _url: String| async move {
        fill(&s, 60, 30, None).await;
        exec(
            &s,
            "UPDATE audit_events SET reason = 'edited' WHERE seq = 5",
        )
        .await;
        let (audit, task) = trail(&s, "other").await;
        let r = rampart_core::audit::retention::retire(
            &s,
            &keys(),
            &audit,
            CHAIN,
            Timestamp(10_050),
            Timestamp(20_000),
        )
        .await;
        assert!(r.is_err());
        assert_eq!(
            s.audit_range(CHAIN, 0, 1).await.unwrap()[0].seq,
            0,
            "nothing removed"
        );
        audit.stop().await;
        task.await.unwrap();
        let refused = s
            .search_events(&EventQuery {
                actions: vec!["audit.retention_refused".into()],
                limit: 5,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].severity, Severity::Critical.number());
    }
);

both!(
    a_pending_event_written_outside_rampart_is_not_chained_as_genuine,
    |s: SqlStore, _url: String| async move {
        let (audit, task) = trail(&s, NODE).await;
        // A real one, as a write would commit it, and a forged one.
        let real = audit.pending(&event(1)).body;
        let forged = format!(
            "{} {}",
            "00".repeat(32),
            serde_json::to_string(&event(2).reason(Some("forged"))).unwrap()
        );
        for body in [real, forged] {
            sqlx::query("INSERT INTO audit_pending (node, body) VALUES ($1, $2)")
                .bind(CHAIN)
                .bind(body)
                .execute(s.pool())
                .await
                .unwrap();
        }
        audit.poke();
        audit.stop().await;
        task.await.unwrap();
        let events = s.audit_range(CHAIN, 0, 10).await.unwrap();
        let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, vec!["login_success", "audit.pending_unreadable"]);
        assert_eq!(events[1].severity, Severity::Critical.number());
        assert!(events.iter().all(|e| e.reason.as_deref() != Some("forged")));
    }
);

both!(
    an_altered_address_index_is_caught,
    |s: SqlStore, _url: String| async move {
        fill(&s, 40, 20, None).await;
        exec(&s, "UPDATE audit_events SET ip_key = NULL WHERE seq = 10").await;
        let (seq, what) = first_break(&s, None).await;
        assert_eq!(seq, 10);
        assert!(what.contains("address index"), "{what}");
    }
);

both!(
    no_input_can_pass_for_a_drill_mark,
    |s: SqlStore, _url: String| async move {
        let (audit, task) = writer(&s, CHAIN, WriterMode::Command, None).await;
        let forged = [
            r#""labels.drill":"drill_x""#,
            r#"{"labels.drill":"drill_x"}"#,
            "labels.drill",
            r#""LABELS.DRILL":"#,
        ];
        for (n, value) in forged.iter().enumerate() {
            // Attacker text in a field value and in the user agent.
            let e = event(n as u64)
                .field("session.previous_user_agent", *value)
                .meta(&RequestMeta {
                    user_agent: Some((*value).to_owned()),
                    ..Default::default()
                });
            audit.record_durable(e).await.unwrap();
        }
        audit
            .record_durable(event(99).drill(Some("drill_real")))
            .await
            .unwrap();
        audit.stop().await;
        task.await.unwrap();
        let q = |drills| EventQuery {
            drills,
            limit: 100,
            ..Default::default()
        };
        let only = s.search_events(&q(Some(true))).await.unwrap();
        assert_eq!(only.len(), 1, "only the real drill event: {only:?}");
        assert_eq!(only[0].seq, forged.len() as u64);
        let none = s.search_events(&q(Some(false))).await.unwrap();
        assert!(none.len() >= forged.len(), "{none:?}");
        assert!(none.iter().all(|e| e.seq != forged.len() as u64));
    }
);
