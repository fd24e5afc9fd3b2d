//! The HTTP part of `scan url`: security headers, cookies, CORS, the
//! HTTP-to-HTTPS redirect and version banners, scored by the MDN HTTP
//! Observatory method (start at 100, each test adds its modifier; bonuses
//! count only when the score without them is 90 or more; grades by
//! 5-point steps, 100+ is A+). The modifiers are Observatory's own table
//! (`@mdn/mdn-http-observatory` 1.4, `grader/charts.js`).
//!
//! [`analyse`] is pure: response headers in, tests and findings out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::report::{Finding, Severity};

/// HSTS shorter than this (six months) loses points.
pub const HSTS_MIN_SECS: u64 = 15_768_000;

/// One Observatory test and its outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObservatoryTest {
    pub test: String,
    /// Observatory's expectation name, e.g. `hsts-not-implemented`.
    pub result: String,
    pub modifier: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpReport {
    pub url: String,
    pub status: u16,
    pub score: i32,
    pub grade: String,
    pub tests: Vec<ObservatoryTest>,
    /// The security-relevant headers as received.
    pub headers: BTreeMap<String, String>,
    pub hsts_max_age: Option<u64>,
}

/// What [`analyse`] needs of the responses.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub url: String,
    pub status: u16,
    /// Lower-case names; repeated headers joined by `\n`.
    pub headers: BTreeMap<String, String>,
    pub set_cookies: Vec<String>,
    pub body_is_html: bool,
    pub body_head: String,
    /// The origin the scanner sent (for the CORS test).
    pub origin_sent: String,
    /// The plain-HTTP answer: `None` when nothing listens.
    pub http: Option<HttpAnswer>,
    /// The certificate is not trusted, not for this name or not in date:
    /// browsers ignore HSTS from such a server, and Observatory scores it so.
    pub cert_invalid: bool,
}

#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub location: Option<String>,
    /// The host the redirect points to, if it is https.
    pub https_host: Option<String>,
    pub same_host: bool,
}

fn modifier(result: &str) -> i32 {
    match result {
        "csp-implemented-with-no-unsafe-default-src-none" => 10,
        "csp-implemented-with-no-unsafe" => 5,
        "csp-implemented-with-unsafe-inline-in-style-src-only" => 0,
        "csp-implemented-with-insecure-scheme-in-passive-content-only" => -10,
        "csp-implemented-with-unsafe-eval" => -10,
        "csp-implemented-with-unsafe-inline" => -20,
        "csp-implemented-with-insecure-scheme" => -20,
        "csp-header-invalid" | "csp-not-implemented" => -25,
        "cookies-secure-with-httponly-sessions-and-samesite" => 5,
        "cookies-without-secure-flag-but-protected-by-hsts" => -5,
        "cookies-session-without-secure-flag-but-protected-by-hsts" => -10,
        "cookies-without-secure-flag"
        | "cookies-samesite-flag-invalid"
        | "cookies-anticsrf-without-samesite-flag" => -20,
        "cookies-session-without-httponly-flag" => -30,
        "cookies-session-without-secure-flag" => -40,
        "cross-origin-resource-sharing-implemented-with-universal-access" => -50,
        "redirection-off-host-from-http" => -5,
        "redirection-not-to-https-on-initial-redirection" => -10,
        "redirection-not-to-https" | "redirection-missing" | "redirection-invalid-cert" => -20,
        "referrer-policy-private" => 5,
        "referrer-policy-unsafe" | "referrer-policy-header-invalid" => -5,
        "hsts-preloaded" => 5,
        "hsts-implemented-max-age-less-than-six-months" => -10,
        "hsts-not-implemented" | "hsts-header-invalid" | "hsts-invalid-cert" => -20,
        "sri-implemented-and-all-scripts-loaded-securely"
        | "sri-implemented-and-external-scripts-loaded-securely" => 5,
        "sri-not-implemented-but-external-scripts-loaded-securely" => -5,
        "sri-implemented-but-external-scripts-not-loaded-securely" => -20,
        "sri-not-implemented-and-external-scripts-not-loaded-securely" => -50,
        "x-content-type-options-not-implemented" | "x-content-type-options-header-invalid" => -5,
        "x-frame-options-implemented-via-csp" => 5,
        "x-frame-options-not-implemented" | "x-frame-options-header-invalid" => -20,
        "corp-header-invalid" => -5,
        "corp-implemented-with-same-origin" | "corp-implemented-with-same-site" => 10,
        _ => 0,
    }
}

/// Observatory's grade for a score.
pub fn grade_for(score: i32) -> &'static str {
    match score.max(0) {
        100.. => "A+",
        90..=99 => "A",
        85..=89 => "A-",
        80..=84 => "B+",
        70..=79 => "B",
        65..=69 => "B-",
        60..=64 => "C+",
        50..=59 => "C",
        45..=49 => "C-",
        40..=44 => "D+",
        30..=39 => "D",
        25..=29 => "D-",
        _ => "F",
    }
}

/// A parsed Content-Security-Policy: directive → sources (lower case).
type Csp = BTreeMap<String, Vec<String>>;

fn parse_csp(value: &str) -> Option<Csp> {
    let mut csp = Csp::new();
    for part in value.split([';', '\n']) {
        let mut words = part.split_ascii_whitespace();
        let Some(name) = words.next() else { continue };
        let name = name.to_ascii_lowercase();
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return None;
        }
        // The first occurrence of a directive wins, as browsers do.
        csp.entry(name)
            .or_insert_with(|| words.map(|w| w.to_ascii_lowercase()).collect());
    }
    (!csp.is_empty()).then_some(csp)
}

const BROAD: [&str; 8] = [
    "ftp:",
    "http:",
    "https:",
    "*",
    "http://*",
    "http://*.*",
    "https://*",
    "https://*.*",
];

/// Observatory's CSP test (`analyzer/tests/csp.js`), rule for rule.
fn csp_result(csp: &Csp) -> &'static str {
    let any = || vec!["*".to_owned()];
    let pick = |d: &str| -> Vec<String> {
        csp.get(d)
            .or_else(|| csp.get("default-src"))
            .cloned()
            .unwrap_or_else(any)
    };
    let mut script = pick("script-src");
    let mut style = pick("style-src");
    let object = pick("object-src");
    let nonce_or_hash = |list: &[String]| {
        list.iter().any(|x| {
            ["'sha256-", "'sha384-", "'sha512-", "'nonce-"]
                .iter()
                .any(|p| x.starts_with(p))
        })
    };
    // A nonce or hash makes browsers ignore 'unsafe-inline'.
    for list in [&mut script, &mut style] {
        if nonce_or_hash(list) {
            list.retain(|x| x != "'unsafe-inline'");
        }
    }
    if script.iter().any(|x| x == "'strict-dynamic'") {
        if !nonce_or_hash(&script) {
            return "csp-header-invalid";
        }
        script.retain(|x| {
            x != "'self'" && x != "'unsafe-inline'" && !BROAD.iter().any(|b| x.starts_with(b))
        });
    }
    let unsafe_inline =
        |x: &String| BROAD.contains(&x.as_str()) || x == "'unsafe-inline'" || x == "data:";
    let insecure = |x: &String| x.starts_with("http:") || x.starts_with("ftp:");
    let passive = ["img-src", "media-src"];
    let active_insecure = csp
        .iter()
        .filter(|(d, _)| !passive.contains(&d.as_str()) && d.as_str() != "script-src")
        .flat_map(|(_, l)| l.iter())
        .chain(script.iter())
        .any(insecure);
    let passive_insecure = passive
        .iter()
        .flat_map(|d| {
            csp.get(*d)
                .or_else(|| csp.get("default-src"))
                .into_iter()
                .flatten()
        })
        .any(insecure);
    if script.iter().any(unsafe_inline) || object.iter().any(|x| BROAD.contains(&x.as_str())) {
        "csp-implemented-with-unsafe-inline"
    } else if active_insecure {
        "csp-implemented-with-insecure-scheme"
    } else if script
        .iter()
        .chain(style.iter())
        .any(|x| x == "'unsafe-eval'")
    {
        "csp-implemented-with-unsafe-eval"
    } else if passive_insecure {
        "csp-implemented-with-insecure-scheme-in-passive-content-only"
    } else if style.iter().any(unsafe_inline) {
        "csp-implemented-with-unsafe-inline-in-style-src-only"
    } else if csp.get("default-src").is_some_and(|d| d == &["'none'"]) {
        "csp-implemented-with-no-unsafe-default-src-none"
    } else {
        "csp-implemented-with-no-unsafe"
    }
}

/// `max-age` of an HSTS value, and whether it covers subdomains.
fn parse_hsts(value: &str) -> Option<(u64, bool, bool)> {
    let mut age = None;
    let (mut subs, mut preload) = (false, false);
    for part in value.split(';') {
        let p = part.trim().to_ascii_lowercase();
        if let Some(v) = p.strip_prefix("max-age=") {
            age = Some(v.trim_matches('"').parse::<u64>().ok()?);
        } else if p == "includesubdomains" {
            subs = true;
        } else if p == "preload" {
            preload = true;
        }
    }
    age.map(|a| (a, subs, preload))
}

struct Cookie {
    name: String,
    secure: bool,
    http_only: bool,
    same_site: Option<String>,
}

fn parse_cookie(line: &str) -> Option<Cookie> {
    let mut parts = line.split(';');
    let (name, _) = parts.next()?.split_once('=')?;
    let mut c = Cookie {
        name: name.trim().to_owned(),
        secure: false,
        http_only: false,
        same_site: None,
    };
    for p in parts {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        match k.trim().to_ascii_lowercase().as_str() {
            "secure" => c.secure = true,
            "httponly" => c.http_only = true,
            "samesite" => c.same_site = Some(v.trim().to_ascii_lowercase()),
            _ => {}
        }
    }
    Some(c)
}

fn is_session_cookie(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["sess", "login", "token", "auth", "sid", "jwt"]
        .iter()
        .any(|k| n.contains(k))
}

/// Scores the responses and adds the findings to `out`.
pub fn analyse(o: &Observed, out: &mut Vec<Finding>) -> HttpReport {
    let target = o.url.as_str();
    let h = |n: &str| o.headers.get(n).map(|v| v.trim());
    let mut tests: Vec<ObservatoryTest> = Vec::new();
    let mut test = |t: &str, r: &str| {
        tests.push(ObservatoryTest {
            test: t.to_owned(),
            result: r.to_owned(),
            modifier: modifier(r),
        })
    };

    // HSTS
    let hsts = h("strict-transport-security").map(parse_hsts);
    let hsts_max_age = hsts.flatten().map(|(a, _, _)| a);
    let hsts_result = match hsts {
        None => {
            out.push(Finding::new(
                "http.hsts_missing",
                Severity::Error,
                target,
                "No Strict-Transport-Security header",
                "Without HSTS a browser may first connect over plain HTTP, where an attacker on the network can strip TLS off (sslstrip) and read everything.",
                "Send Strict-Transport-Security: max-age=63072000; includeSubDomains on every HTTPS response.",
            ));
            "hsts-not-implemented"
        }
        Some(None) => {
            out.push(Finding::new(
                "http.hsts_invalid",
                Severity::Error,
                target,
                "The Strict-Transport-Security header cannot be read",
                "Browsers ignore an invalid HSTS header, so the protection is off.",
                "Send Strict-Transport-Security: max-age=63072000; includeSubDomains",
            ));
            "hsts-header-invalid"
        }
        Some(Some((age, subs, _))) => {
            if age < HSTS_MIN_SECS {
                out.push(Finding::new(
                    "http.hsts_short",
                    Severity::Warning,
                    target,
                    format!("HSTS lasts only {age} seconds"),
                    "Browsers forget it quickly, so a returning visitor can be downgraded to plain HTTP.",
                    "Set max-age to at least 15768000 (six months); 63072000 (two years) is the norm.",
                ));
            }
            if !subs {
                out.push(Finding::new(
                    "http.hsts_no_subdomains",
                    Severity::Info,
                    target,
                    "HSTS does not include subdomains",
                    "Subdomains can still be reached over plain HTTP, and cookies for the parent domain can be set from them.",
                    "Add includeSubDomains once every subdomain serves HTTPS.",
                ));
            }
            if age < HSTS_MIN_SECS {
                "hsts-implemented-max-age-less-than-six-months"
            } else {
                "hsts-implemented-max-age-at-least-six-months"
            }
        }
    };
    // Browsers ignore HSTS from a server whose certificate they refuse.
    test(
        "strict-transport-security",
        if o.cert_invalid {
            "hsts-invalid-cert"
        } else {
            hsts_result
        },
    );

    // CSP
    let csp = h("content-security-policy").map(parse_csp);
    match &csp {
        None => {
            test("content-security-policy", "csp-not-implemented");
            out.push(Finding::new(
                "http.csp_missing",
                Severity::Warning,
                target,
                "No Content-Security-Policy header",
                "A CSP is the browser's second line of defence against cross-site scripting: without one, any injected script runs.",
                "Start with Content-Security-Policy: default-src 'self'; frame-ancestors 'none'; form-action 'self' and loosen only what the page needs (for an API: default-src 'none').",
            ));
        }
        Some(None) => {
            test("content-security-policy", "csp-header-invalid");
            out.push(Finding::new(
                "http.csp_invalid",
                Severity::Warning,
                target,
                "The Content-Security-Policy header cannot be parsed",
                "Browsers may ignore the policy, leaving no protection against injected scripts.",
                "Fix the syntax: directives separated by ';', e.g. default-src 'self'; frame-ancestors 'none'",
            ));
        }
        Some(Some(p)) => {
            let r = csp_result(p);
            test("content-security-policy", r);
            let weak = match r {
                "csp-implemented-with-unsafe-inline" => Some("allows inline scripts ('unsafe-inline', data: or a scheme-wide source in script-src)"),
                "csp-implemented-with-insecure-scheme" => Some("allows scripts or styles over plain http"),
                "csp-implemented-with-unsafe-eval" => Some("allows 'unsafe-eval'"),
                _ => None,
            };
            if let Some(w) = weak {
                out.push(Finding::new(
                    "http.csp_weak",
                    Severity::Warning,
                    target,
                    format!("The Content-Security-Policy {w}"),
                    "An injected script runs anyway, so the policy does not stop cross-site scripting.",
                    "Remove 'unsafe-inline'/'unsafe-eval' and broad sources from script-src; use nonces or hashes for the scripts you need.",
                ));
            }
        }
    }
    let frame_ancestors = csp
        .as_ref()
        .and_then(|c| c.as_ref())
        .is_some_and(|c| c.contains_key("frame-ancestors"));

    // X-Content-Type-Options
    match h("x-content-type-options") {
        Some(v) if v.eq_ignore_ascii_case("nosniff") => {
            test("x-content-type-options", "x-content-type-options-nosniff")
        }
        v => {
            test(
                "x-content-type-options",
                if v.is_some() {
                    "x-content-type-options-header-invalid"
                } else {
                    "x-content-type-options-not-implemented"
                },
            );
            out.push(Finding::new(
                "http.xcto_missing",
                Severity::Warning,
                target,
                "X-Content-Type-Options is not nosniff",
                "Browsers may guess a response's type and run an uploaded file as script.",
                "Send X-Content-Type-Options: nosniff on every response.",
            ));
        }
    }

    // Framing
    let xfo = h("x-frame-options").map(|v| v.to_ascii_uppercase());
    if frame_ancestors {
        test("x-frame-options", "x-frame-options-implemented-via-csp");
    } else {
        match xfo.as_deref() {
            Some("DENY") | Some("SAMEORIGIN") => {
                test("x-frame-options", "x-frame-options-sameorigin-or-deny")
            }
            Some(v) if v.starts_with("ALLOW-FROM") => {
                test("x-frame-options", "x-frame-options-allow-from-origin")
            }
            other => {
                test(
                    "x-frame-options",
                    if other.is_some() {
                        "x-frame-options-header-invalid"
                    } else {
                        "x-frame-options-not-implemented"
                    },
                );
                out.push(Finding::new(
                    "http.framing_allowed",
                    Severity::Warning,
                    target,
                    "Pages can be framed by any site",
                    "Another site can show this one in an invisible frame and trick users into clicking its buttons (clickjacking).",
                    "Send Content-Security-Policy: frame-ancestors 'none' (or 'self'), and X-Frame-Options: DENY for old browsers.",
                ));
            }
        }
    }

    // Referrer-Policy: the last value a browser knows wins.
    const PRIVATE: [&str; 4] = [
        "no-referrer",
        "same-origin",
        "strict-origin",
        "strict-origin-when-cross-origin",
    ];
    const UNSAFE: [&str; 4] = [
        "origin",
        "origin-when-cross-origin",
        "unsafe-url",
        "no-referrer-when-downgrade",
    ];
    match h("referrer-policy") {
        None => test("referrer-policy", "referrer-policy-not-implemented"),
        Some(v) => {
            let last = v
                .split(',')
                .map(|x| x.trim().to_ascii_lowercase())
                .rfind(|x| PRIVATE.contains(&x.as_str()) || UNSAFE.contains(&x.as_str()));
            match last {
                Some(x) if PRIVATE.contains(&x.as_str()) => {
                    test("referrer-policy", "referrer-policy-private")
                }
                Some(x) => {
                    test("referrer-policy", "referrer-policy-unsafe");
                    out.push(Finding::new(
                        "http.referrer_unsafe",
                        Severity::Warning,
                        target,
                        format!("Referrer-Policy {x} leaks full addresses to other sites"),
                        "Links and resources on other sites receive the page's address, which may hold tokens or personal data.",
                        "Send Referrer-Policy: strict-origin-when-cross-origin (or no-referrer).",
                    ));
                }
                None => test("referrer-policy", "referrer-policy-header-invalid"),
            }
        }
    }

    // Cookies
    let cookies: Vec<Cookie> = o
        .set_cookies
        .iter()
        .filter_map(|l| parse_cookie(l))
        .collect();
    if cookies.is_empty() {
        test("cookies", "cookies-not-found");
    } else {
        let hsts_on = hsts_max_age.is_some_and(|a| a > 0);
        let session_insecure = cookies
            .iter()
            .any(|c| is_session_cookie(&c.name) && !c.secure);
        let insecure = cookies.iter().any(|c| !c.secure);
        let session_script = cookies
            .iter()
            .any(|c| is_session_cookie(&c.name) && !c.http_only);
        let bad_samesite = cookies.iter().any(|c| {
            c.same_site
                .as_deref()
                .is_some_and(|s| !["strict", "lax", "none"].contains(&s))
        });
        let csrf_no_samesite = cookies
            .iter()
            .any(|c| c.name.to_ascii_lowercase().contains("csrf") && c.same_site.is_none());
        let r = if session_insecure {
            if hsts_on {
                "cookies-session-without-secure-flag-but-protected-by-hsts"
            } else {
                "cookies-session-without-secure-flag"
            }
        } else if session_script {
            "cookies-session-without-httponly-flag"
        } else if bad_samesite {
            "cookies-samesite-flag-invalid"
        } else if csrf_no_samesite {
            "cookies-anticsrf-without-samesite-flag"
        } else if insecure {
            if hsts_on {
                "cookies-without-secure-flag-but-protected-by-hsts"
            } else {
                "cookies-without-secure-flag"
            }
        } else if cookies.iter().all(|c| c.same_site.is_some()) {
            "cookies-secure-with-httponly-sessions-and-samesite"
        } else {
            "cookies-secure-with-httponly-sessions"
        };
        test("cookies", r);
        for c in &cookies {
            let session = is_session_cookie(&c.name);
            let t = format!("{target} cookie {}", c.name);
            if !c.secure {
                out.push(Finding::new(
                    "http.cookie_not_secure",
                    if session { Severity::Error } else { Severity::Warning },
                    &t,
                    format!("Cookie {} lacks the Secure flag", c.name),
                    "The browser also sends it over plain HTTP, where anyone on the network reads it.",
                    "Add Secure to the Set-Cookie header.",
                ));
            }
            if session && !c.http_only {
                out.push(Finding::new(
                    "http.cookie_not_httponly",
                    Severity::Error,
                    &t,
                    format!("Session cookie {} lacks HttpOnly", c.name),
                    "Any script on the page, including one injected by an attacker, can read and steal the session.",
                    "Add HttpOnly to the Set-Cookie header.",
                ));
            }
            if c.same_site.is_none() {
                out.push(Finding::new(
                    "http.cookie_no_samesite",
                    Severity::Warning,
                    &t,
                    format!("Cookie {} has no SameSite attribute", c.name),
                    "Other sites' requests carry it, which is what cross-site request forgery needs.",
                    "Add SameSite=Lax (or Strict) to the Set-Cookie header.",
                ));
            }
            if session && !c.name.starts_with("__Host-") {
                out.push(Finding::new(
                    "http.cookie_no_host_prefix",
                    Severity::Info,
                    &t,
                    format!("Session cookie {} does not use the __Host- prefix", c.name),
                    "Without it, a subdomain or a plain-HTTP page can plant a cookie of the same name (session fixation).",
                    "Name it __Host-<name> with Secure, Path=/ and no Domain.",
                ));
            }
        }
    }

    // CORS: the scanner sent an Origin of its own.
    let acao = h("access-control-allow-origin");
    let acac =
        h("access-control-allow-credentials").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    match acao {
        None => test(
            "cross-origin-resource-sharing",
            "cross-origin-resource-sharing-not-implemented",
        ),
        Some("*") => {
            test(
                "cross-origin-resource-sharing",
                "cross-origin-resource-sharing-implemented-with-public-access",
            );
            if acac {
                out.push(Finding::new(
                    "http.cors_wildcard_credentials",
                    Severity::Error,
                    target,
                    "CORS allows any origin and also says credentials are allowed",
                    "A sign that the server means to share authenticated data with any site; browsers refuse the combination, so some code likely reflects the origin instead.",
                    "List the origins that may read responses; never combine credentials with any origin.",
                ));
            }
        }
        Some(v) if v == o.origin_sent => {
            if acac {
                test(
                    "cross-origin-resource-sharing",
                    "cross-origin-resource-sharing-implemented-with-universal-access",
                );
                out.push(Finding::new(
                    "http.cors_reflects_origin",
                    Severity::Critical,
                    target,
                    "CORS reflects any origin, with credentials",
                    "Any website a signed-in user visits can read this server's responses as that user.",
                    "Allow only a fixed list of trusted origins (and never reflect the Origin header).",
                ));
            } else {
                test(
                    "cross-origin-resource-sharing",
                    "cross-origin-resource-sharing-implemented-with-public-access",
                );
            }
        }
        Some(_) => test(
            "cross-origin-resource-sharing",
            "cross-origin-resource-sharing-implemented-with-restricted-access",
        ),
    }

    // Cross-Origin-Resource-Policy
    match h("cross-origin-resource-policy").map(|v| v.to_ascii_lowercase()) {
        None => test("cross-origin-resource-policy", "corp-not-implemented"),
        Some(v) if v == "same-origin" => test(
            "cross-origin-resource-policy",
            "corp-implemented-with-same-origin",
        ),
        Some(v) if v == "same-site" => test(
            "cross-origin-resource-policy",
            "corp-implemented-with-same-site",
        ),
        Some(v) if v == "cross-origin" => test(
            "cross-origin-resource-policy",
            "corp-implemented-with-cross-origin",
        ),
        Some(_) => test("cross-origin-resource-policy", "corp-header-invalid"),
    }

    // Subresource integrity, for HTML pages.
    test("subresource-integrity", sri_result(o));

    // Redirection from plain HTTP.
    match &o.http {
        None => test("redirection", "redirection-not-needed-no-http"),
        Some(a) => match (&a.location, &a.https_host) {
            (Some(_), Some(_)) if (300..400).contains(&a.status) => {
                if a.same_host && o.cert_invalid {
                    test("redirection", "redirection-invalid-cert");
                } else if a.same_host {
                    test("redirection", "redirection-to-https");
                } else {
                    test("redirection", "redirection-off-host-from-http");
                    out.push(Finding::new(
                        "http.redirect_off_host",
                        Severity::Info,
                        target,
                        "Plain HTTP redirects to HTTPS on another host",
                        "The browser never sees this host's HSTS over the first redirect, so the first visit can be intercepted.",
                        "Redirect http://host/ to https://host/ (the same host) first.",
                    ));
                }
            }
            (Some(_), None) if (300..400).contains(&a.status) => {
                test("redirection", "redirection-not-to-https");
                out.push(no_redirect(target));
            }
            _ => {
                test("redirection", "redirection-missing");
                out.push(no_redirect(target));
            }
        },
    }

    // Version banners (not scored by Observatory).
    for name in [
        "server",
        "x-powered-by",
        "x-aspnet-version",
        "x-aspnetmvc-version",
    ] {
        if let Some(v) = h(name).filter(|v| v.bytes().any(|b| b.is_ascii_digit())) {
            out.push(Finding::new(
                "http.version_banner",
                Severity::Warning,
                format!("{target} {name}"),
                format!("The {name} header names a software version: {}", truncate(v, 60)),
                "It tells attackers which known vulnerabilities to try, without a single probe.",
                "Hide the version (nginx: server_tokens off; Apache: ServerTokens Prod; PHP: expose_php = Off).",
            ));
        }
    }

    let base: i32 = 100 + tests.iter().map(|t| t.modifier.min(0)).sum::<i32>();
    let full: i32 = 100 + tests.iter().map(|t| t.modifier).sum::<i32>();
    let score = if base >= 90 { full } else { base }.max(0);
    let mut headers = BTreeMap::new();
    for name in [
        "strict-transport-security",
        "content-security-policy",
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "cross-origin-resource-policy",
        "server",
        "x-powered-by",
    ] {
        if let Some(v) = h(name) {
            headers.insert(name.to_owned(), truncate(v, 300));
        }
    }
    HttpReport {
        url: o.url.clone(),
        status: o.status,
        score,
        grade: grade_for(score).to_owned(),
        tests,
        headers,
        hsts_max_age,
    }
}

fn no_redirect(target: &str) -> Finding {
    Finding::new(
        "http.no_https_redirect",
        Severity::Error,
        target,
        "Plain HTTP does not redirect to HTTPS",
        "Visitors who type the address or follow an old link stay on plain HTTP, where the network can read and change the page.",
        "Answer every plain-HTTP request with a 301/308 redirect to the same URL on https://.",
    )
}

fn truncate(v: &str, n: usize) -> String {
    let mut s: String = v.chars().take(n).collect();
    if v.chars().count() > n {
        s.push('…');
    }
    s
}

fn sri_result(o: &Observed) -> &'static str {
    if !o.body_is_html {
        return "sri-not-implemented-response-not-html";
    }
    let lower = o.body_head.to_ascii_lowercase();
    let mut external = 0;
    let (mut insecure, mut with_integrity) = (0, 0);
    for tag in lower.split("<script").skip(1) {
        let tag = tag.split('>').next().unwrap_or("");
        let Some(src) = tag.split("src=").nth(1) else {
            continue;
        };
        let src = src.trim_start_matches(['"', '\'']);
        if src.starts_with("http:") {
            insecure += 1;
            external += 1;
        } else if src.starts_with("https:") || src.starts_with("//") {
            external += 1;
        } else {
            continue;
        }
        if tag.contains("integrity=") {
            with_integrity += 1;
        }
    }
    match (external, insecure, with_integrity) {
        (0, _, _) => "sri-not-implemented-but-no-scripts-loaded",
        (_, 0, i) if i == external => "sri-implemented-and-external-scripts-loaded-securely",
        (_, 0, _) => "sri-not-implemented-but-external-scripts-loaded-securely",
        (_, _, i) if i > 0 => "sri-implemented-but-external-scripts-not-loaded-securely",
        _ => "sri-not-implemented-and-external-scripts-not-loaded-securely",
    }
}

#[cfg(test)]
mod tests;
