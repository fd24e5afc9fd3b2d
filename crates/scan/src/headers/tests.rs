use super::*;

fn observed(headers: &[(&str, &str)]) -> Observed {
    Observed {
        url: "https://example.test/".to_owned(),
        status: 200,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        origin_sent: "https://rampart-scan.invalid".to_owned(),
        http: Some(HttpAnswer {
            status: 308,
            location: Some("https://example.test/".to_owned()),
            https_host: Some("example.test".to_owned()),
            same_host: true,
        }),
        ..Default::default()
    }
}

fn result<'a>(r: &'a HttpReport, test: &str) -> &'a str {
    &r.tests.iter().find(|t| t.test == test).unwrap().result
}

/// Rampart's own headers (http::middleware::SECURITY_HEADERS).
const RAMPART: &[(&str, &str)] = &[
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("content-type", "application/json"),
];

#[test]
fn rampart_headers_score_a_plus() {
    let mut out = Vec::new();
    let r = analyse(&observed(RAMPART), &mut out);
    assert_eq!(
        result(&r, "content-security-policy"),
        "csp-implemented-with-no-unsafe-default-src-none"
    );
    assert_eq!(
        result(&r, "x-frame-options"),
        "x-frame-options-implemented-via-csp"
    );
    assert_eq!(result(&r, "referrer-policy"), "referrer-policy-private");
    // What the MDN HTTP Observatory itself gives Rampart (security/judges).
    assert_eq!(r.score, 120, "{:#?}", r.tests);
    assert_eq!(r.grade, "A+");
    assert_eq!(r.hsts_max_age, Some(63_072_000));
    assert!(out.is_empty(), "{out:#?}");
}

#[test]
fn missing_headers_score_f_with_a_finding_each() {
    let mut out = Vec::new();
    let mut o = observed(&[("server", "nginx/1.22.1")]);
    o.http = Some(HttpAnswer {
        status: 200,
        location: None,
        https_host: None,
        same_host: false,
    });
    let r = analyse(&o, &mut out);
    // CSP -25, HSTS -20, XCTO -5, XFO -20, redirection -20.
    assert_eq!(r.score, 10, "{:#?}", r.tests);
    assert_eq!(r.grade, "F");
    let checks: Vec<&str> = out.iter().map(|f| f.check.as_str()).collect();
    for c in [
        "http.hsts_missing",
        "http.csp_missing",
        "http.xcto_missing",
        "http.framing_allowed",
        "http.no_https_redirect",
        "http.version_banner",
    ] {
        assert!(checks.contains(&c), "{c} missing from {checks:?}");
    }
}

#[test]
fn bonuses_count_only_from_ninety() {
    let mut out = Vec::new();
    // HSTS short (-10) and CSP with unsafe-inline (-20): 70 before bonuses.
    let r = analyse(
        &observed(&[
            ("strict-transport-security", "max-age=300"),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
            (
                "content-security-policy",
                "default-src 'self'; script-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            ),
        ]),
        &mut out,
    );
    assert_eq!(r.score, 70, "{:#?}", r.tests);
    assert!(out.iter().any(|f| f.check == "http.csp_weak"));
    assert!(out.iter().any(|f| f.check == "http.hsts_short"));
}

#[test]
fn cookie_flags_are_judged() {
    let mut out = Vec::new();
    let mut o = observed(RAMPART);
    o.set_cookies = vec!["sessionid=abc; Path=/; Secure".to_owned()];
    let r = analyse(&o, &mut out);
    assert_eq!(
        result(&r, "cookies"),
        "cookies-session-without-httponly-flag"
    );
    let checks: Vec<&str> = out.iter().map(|f| f.check.as_str()).collect();
    assert!(checks.contains(&"http.cookie_not_httponly"), "{checks:?}");
    assert!(checks.contains(&"http.cookie_no_samesite"), "{checks:?}");
    assert!(checks.contains(&"http.cookie_no_host_prefix"), "{checks:?}");

    let mut out = Vec::new();
    o.set_cookies = vec!["__Host-sid=abc; Path=/; Secure; HttpOnly; SameSite=Strict".to_owned()];
    let r = analyse(&o, &mut out);
    assert_eq!(
        result(&r, "cookies"),
        "cookies-secure-with-httponly-sessions-and-samesite"
    );
    assert!(out.is_empty(), "{out:#?}");
}

#[test]
fn cors_reflecting_any_origin_with_credentials_is_critical() {
    let mut out = Vec::new();
    let mut h = RAMPART.to_vec();
    h.push((
        "access-control-allow-origin",
        "https://rampart-scan.invalid",
    ));
    h.push(("access-control-allow-credentials", "true"));
    let r = analyse(&observed(&h), &mut out);
    assert_eq!(
        result(&r, "cross-origin-resource-sharing"),
        "cross-origin-resource-sharing-implemented-with-universal-access"
    );
    assert!(out
        .iter()
        .any(|f| f.check == "http.cors_reflects_origin" && f.severity == Severity::Critical));
}

#[test]
fn observatory_grade_steps() {
    for (s, g) in [
        (135, "A+"),
        (100, "A+"),
        (99, "A"),
        (85, "A-"),
        (72, "B"),
        (44, "D+"),
        (24, "F"),
        (-20, "F"),
    ] {
        assert_eq!(grade_for(s), g, "{s}");
    }
}

#[test]
fn csp_rules_follow_the_observatory() {
    let csp = |v: &str| csp_result(&parse_csp(v).unwrap());
    assert_eq!(csp("default-src 'self'"), "csp-implemented-with-no-unsafe");
    assert_eq!(
        csp("default-src 'self'; script-src 'self' 'nonce-abc' 'unsafe-inline'"),
        "csp-implemented-with-no-unsafe"
    );
    assert_eq!(
        csp("script-src 'self'"),
        "csp-implemented-with-unsafe-inline",
        "object-src falls back to *"
    );
    assert_eq!(
        csp("default-src 'self'; script-src 'strict-dynamic'"),
        "csp-header-invalid"
    );
    assert_eq!(
        csp("default-src 'self'; script-src 'self' 'unsafe-eval'"),
        "csp-implemented-with-unsafe-eval"
    );
    assert_eq!(
        csp("default-src 'self'; connect-src http://api.test"),
        "csp-implemented-with-insecure-scheme"
    );
    assert_eq!(
        csp("default-src 'self'; img-src http:"),
        "csp-implemented-with-insecure-scheme-in-passive-content-only"
    );
    assert_eq!(
        csp("default-src 'self'; style-src 'unsafe-inline'"),
        "csp-implemented-with-unsafe-inline-in-style-src-only"
    );
}
