//! ACME's rows (ADR 0016), on both back ends: one account per directory
//! (the first node's wins), and a certificate replaced only by a newer one.

use rampart_core::acme::{AcmeStore, SealedAccount, StoredCertificate};
use rampart_core::{StoreError, Timestamp};
use rampart_store::{open, SqlStore};

#[allow(dead_code)]
mod common;
use common::postgres_url;

const DIR: &str = "https://ca.test/directory";

fn cert(not_after: i64, issued_at: i64, chain: &str) -> StoredCertificate {
    StoredCertificate {
        directory: DIR.into(),
        names: "a.test,b.test".into(),
        chain_pem: chain.into(),
        key_sealed: format!("sealed-{chain}"),
        not_before: Timestamp(0),
        not_after: Timestamp(not_after),
        renew_at: Timestamp(not_after * 2 / 3),
        issued_at: Timestamp(issued_at),
    }
}

both!(
    the_first_account_of_a_directory_stays,
    |s: SqlStore, _url: String| async move {
        assert_eq!(s.acme_account(DIR).await.unwrap(), None);
        let first = SealedAccount {
            directory: DIR.into(),
            credentials_sealed: "first".into(),
            created_at: Timestamp(5),
        };
        s.insert_acme_account(&first).await.unwrap();
        let second = SealedAccount {
            credentials_sealed: "second".into(),
            ..first.clone()
        };
        assert!(matches!(
            s.insert_acme_account(&second).await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(s.acme_account(DIR).await.unwrap(), Some(first));
        assert_eq!(
            s.acme_account("https://other.test/dir").await.unwrap(),
            None
        );
    }
);

both!(
    a_certificate_is_replaced_only_by_a_newer_one,
    |s: SqlStore, _url: String| async move {
        let names = "a.test,b.test";
        assert_eq!(s.acme_certificate(DIR, names).await.unwrap(), None);
        assert!(s
            .put_acme_certificate(&cert(1000, 10, "one"))
            .await
            .unwrap());
        assert_eq!(
            s.acme_certificate(DIR, names).await.unwrap(),
            Some(cert(1000, 10, "one"))
        );
        // A slower node's order, ending earlier, does not replace it.
        assert!(!s
            .put_acme_certificate(&cert(900, 20, "late"))
            .await
            .unwrap());
        assert!(!s
            .put_acme_certificate(&cert(1000, 10, "same"))
            .await
            .unwrap());
        assert_eq!(
            s.acme_certificate(DIR, names)
                .await
                .unwrap()
                .unwrap()
                .chain_pem,
            "one"
        );
        // A renewal does.
        assert!(s
            .put_acme_certificate(&cert(2000, 30, "two"))
            .await
            .unwrap());
        assert_eq!(
            s.acme_certificate(DIR, names).await.unwrap(),
            Some(cert(2000, 30, "two"))
        );
        assert_eq!(s.acme_certificate(DIR, "a.test").await.unwrap(), None);
    }
);

both!(
    challenges_are_shared_until_deleted_or_expired,
    |s: SqlStore, _url: String| async move {
        use rampart_core::acme::PendingChallenge;
        let c = |token: &str, expires: i64| PendingChallenge {
            token: token.into(),
            kind: "http-01".into(),
            name: "a.test".into(),
            response_sealed: format!("sealed-{token}"),
            expires_at: Timestamp(expires),
        };
        s.put_acme_challenge(&c("t1", 100)).await.unwrap();
        s.put_acme_challenge(&c("t2", 200)).await.unwrap();
        assert_eq!(
            s.acme_challenges(Timestamp(50)).await.unwrap(),
            vec![c("t1", 100), c("t2", 200)]
        );
        // Expired ones go.
        assert_eq!(
            s.acme_challenges(Timestamp(100)).await.unwrap(),
            vec![c("t2", 200)]
        );
        s.delete_acme_challenge("t2").await.unwrap();
        assert_eq!(s.acme_challenges(Timestamp(0)).await.unwrap(), vec![]);
    }
);

both!(
    one_node_claims_an_order_and_a_failure_backs_off_every_node,
    |s: SqlStore, _url: String| async move {
        use std::time::Duration;
        let names = "a.test";
        let hold = Duration::from_secs(300);
        assert_eq!(s.acme_order_failures(DIR, names).await.unwrap(), 0);
        assert_eq!(
            s.claim_acme_order(DIR, names, Timestamp(1_000), hold)
                .await
                .unwrap(),
            Some(0)
        );
        // Held: nobody else, not even later within the hold.
        assert_eq!(
            s.claim_acme_order(DIR, names, Timestamp(2_000), hold)
                .await
                .unwrap(),
            None
        );
        // It failed: the next may start only after the backoff.
        s.end_acme_order(DIR, names, 1, Timestamp(600_000))
            .await
            .unwrap();
        assert_eq!(s.acme_order_failures(DIR, names).await.unwrap(), 1);
        assert_eq!(
            s.claim_acme_order(DIR, names, Timestamp(599_999), hold)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            s.claim_acme_order(DIR, names, Timestamp(600_000), hold)
                .await
                .unwrap(),
            Some(1)
        );
        // Another set of names is another order.
        assert_eq!(
            s.claim_acme_order(DIR, "b.test", Timestamp(600_000), hold)
                .await
                .unwrap(),
            Some(0)
        );
        s.end_acme_order(DIR, names, 0, Timestamp(600_000))
            .await
            .unwrap();
        assert_eq!(s.acme_order_failures(DIR, names).await.unwrap(), 0);
    }
);

both!(
    a_certificate_for_other_names_is_served_until_the_new_one_exists,
    |s: SqlStore, _url: String| async move {
        let mut old = cert(1000, 10, "old");
        old.names = "a.test".into();
        s.put_acme_certificate(&old).await.unwrap();
        let names = "a.test,b.test";
        assert_eq!(
            s.other_acme_certificate(DIR, names).await.unwrap(),
            Some(old.clone())
        );
        assert_eq!(s.other_acme_certificate(DIR, "a.test").await.unwrap(), None);
        assert_eq!(
            s.other_acme_certificate("https://other.test/dir", names)
                .await
                .unwrap(),
            None
        );
        s.put_acme_certificate(&cert(2000, 20, "new"))
            .await
            .unwrap();
        // Kept while it is valid: a node not yet restarted serves it.
        s.delete_other_acme_certificates(DIR, names, Timestamp(1000))
            .await
            .unwrap();
        assert!(s.acme_certificate(DIR, "a.test").await.unwrap().is_some());
        s.delete_other_acme_certificates(DIR, names, Timestamp(1001))
            .await
            .unwrap();
        assert_eq!(s.acme_certificate(DIR, "a.test").await.unwrap(), None);
        assert!(s.acme_certificate(DIR, names).await.unwrap().is_some());
        // An unusable one goes only if it is still the same row.
        s.delete_acme_certificate(DIR, names, Timestamp(19))
            .await
            .unwrap();
        assert!(s.acme_certificate(DIR, names).await.unwrap().is_some());
        s.delete_acme_certificate(DIR, names, Timestamp(20))
            .await
            .unwrap();
        assert_eq!(s.acme_certificate(DIR, names).await.unwrap(), None);
    }
);
