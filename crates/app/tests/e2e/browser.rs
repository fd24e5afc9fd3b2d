//! The console in a real browser (ADR 0017): Debian's Chromium through
//! chromedriver, driven with fantoccini, against a real `rampart serve`
//! on 127.0.0.1. Every page is checked with axe-core, the browser's log
//! must hold no CSP violation and no script error, and the main pages are
//! saved as screenshots under `target/console-screenshots/`.
//!
//! Needs `chromium` and `chromium-driver` (Debian) and axe-core from npm;
//! `.ci/run` installs them. Without them the tests fail under CI and are
//! skipped, loudly, elsewhere.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::support::*;

const ADMIN: &str = "owner@console.example";
const ADMIN_PW: &str = "Lantern-Quarry-Oak-41-Vessel";
const CAROL: &str = "carol@console.example";
const CAROL_PW: &str = "Thistle-Beacon-Marsh-27-Ivy";
const CAROL_NEW_PW: &str = "Copper-Glade-Sparrow-93-Loom";

/// chromedriver's log endpoint (not in W3C WebDriver): the browser
/// console's entries since the last call.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/se/log", session_id.unwrap_or("")))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

/// chromedriver's virtual authenticator (WebDriver's WebAuthn extension):
/// a platform passkey that verifies its user without asking.
#[derive(Debug)]
struct VirtualAuthenticator;

impl WebDriverCompatibleCommand for VirtualAuthenticator {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/webauthn/authenticator",
            session_id.unwrap_or("")
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({"protocol": "ctap2", "transport": "internal", "hasResidentKey": true,
                          "hasUserVerification": true, "isUserVerified": true});
        (http::Method::POST, Some(body.to_string()))
    }
}

/// The tests' authenticator app: each code from a later time step than
/// the last (Rampart refuses a step used before; it takes the next one
/// too, for a clock a little ahead).
struct Authenticator {
    secret: String,
    last: u64,
}

impl Authenticator {
    fn code(&mut self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 30;
        let mut step = now.max(self.last + 1);
        if step > now + 1 {
            // All three usable steps are spent: wait for the next one.
            std::thread::sleep(Duration::from_secs(30));
            step = self.last + 1;
        }
        self.last = step;
        totp_at(&self.secret, step * 30)
    }
}

struct Browser {
    driver: std::process::Child,
    client: Client,
    base: String,
    shots: PathBuf,
    axe: Option<String>,
    /// Problems the browser logged (CSP violations, script errors).
    problems: Vec<String>,
    _profile: tempfile::TempDir,
}

/// One browser at a time: Chromium is heavy, and the other tests of the
/// run share the machine's cores with it.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn ci() -> bool {
    std::env::var_os("CI").is_some()
}

impl Browser {
    /// Chromium at 1280×800, trusting the server's self-signed
    /// certificate, or None (skipped) where it is not installed.
    async fn start(base: &str) -> Option<Browser> {
        let installed = std::path::Path::new("/usr/bin/chromedriver").exists()
            && std::path::Path::new("/usr/bin/chromium").exists();
        if !installed {
            assert!(
                !ci(),
                "the browser tests need Debian's chromium and chromium-driver (.ci/run installs them)"
            );
            eprintln!("SKIPPED: chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)");
            return None;
        }
        let axe_path = std::env::var("AXE_CORE_JS")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                PathBuf::from(std::env::var("HOME").unwrap_or_default())
                    .join(".cache/rampart-judges/axe/node_modules/axe-core/axe.min.js")
            });
        let axe = std::fs::read_to_string(&axe_path).ok();
        if axe.is_none() {
            assert!(
                !ci(),
                "axe-core is missing at {} (.ci/run installs it)",
                axe_path.display()
            );
            eprintln!(
                "WARNING: axe-core is not installed; pages are not checked for accessibility"
            );
        }
        let port = free_port();
        // Niced, with Chromium under it: the tests that run beside it
        // (some bound an answer's time) come first for the CPU.
        let driver = std::process::Command::new("nice")
            .args(["-n", "19", "/usr/bin/chromedriver"])
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert("acceptInsecureCerts".into(), json!(true));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--window-size=1280,800", "--no-first-run", "--disable-extensions",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a chromium session");
        let shots =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Some(Browser {
            driver,
            client,
            base: base.to_owned(),
            shots,
            axe,
            problems: Vec::new(),
            _profile: profile,
        })
    }

    async fn goto(&mut self, path_or_url: &str) {
        let url = if path_or_url.starts_with("https://") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        };
        self.client.goto(&url).await.unwrap();
        self.settle().await;
    }

    /// Lets the page's script finish its requests.
    async fn settle(&mut self) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.read_log().await;
    }

    /// Moves the browser's log into `problems`: CSP violations, uncaught
    /// errors, anything logged as an error by a script. An API answer of
    /// 4xx that the page handled (a wrong password, a step-up asked for)
    /// is logged by Chromium as a failed resource load; that is not one.
    async fn read_log(&mut self) {
        let log = self.client.issue_cmd(BrowserLog).await.unwrap();
        for entry in log.as_array().cloned().unwrap_or_default() {
            let level = entry["level"].as_str().unwrap_or("");
            let message = entry["message"].as_str().unwrap_or("").to_owned();
            let handled_4xx = message
                .contains("Failed to load resource: the server responded with a status of 4");
            if message.contains("Content Security Policy")
                || message.contains("Uncaught")
                || (level == "SEVERE" && !handled_4xx)
            {
                self.problems.push(message);
            }
        }
    }

    async fn fill(&self, css: &str, text: &str) {
        let e = self.wait_for(css).await;
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.wait_for(css).await.click().await.unwrap();
    }

    /// Clicks the button whose text is `text`.
    async fn press(&mut self, text: &str) {
        let xpath = format!("//button[normalize-space()={}]", xpath_literal(text));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(b) = self.client.find(Locator::XPath(&xpath)).await {
                if b.is_displayed().await.unwrap_or(false) && b.is_enabled().await.unwrap_or(false)
                {
                    b.click().await.unwrap();
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no button {text:?} on {}",
                self.page_text().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.settle().await;
    }

    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await {
                if e.is_displayed().await.unwrap_or(false) {
                    return e;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no visible {css} on {}",
                self.page_text().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn page_text(&self) -> String {
        let url = self
            .client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        let text = self
            .client
            .execute(
                "return document.body ? document.body.innerText : ''",
                vec![],
            )
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        format!("{url}:\n{text}")
    }

    /// Waits until the page's text holds `needle`.
    async fn wait_text(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.page_text().await;
            if text.contains(needle) {
                return;
            }
            assert!(Instant::now() < deadline, "no {needle:?} on {text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page's message is an error holding `needle`.
    async fn wait_error(&self, needle: &str) {
        let m = self.wait_for("#message.error").await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !m.text().await.unwrap_or_default().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no error {needle:?} on {}",
                self.page_text().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_path(&self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let url = self.client.current_url().await.unwrap();
            if url.path() == path {
                return;
            }
            assert!(Instant::now() < deadline, "at {url}, not {path}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A number the page's script computes.
    async fn count(&self, script: &str) -> u64 {
        self.client
            .execute(script, vec![])
            .await
            .unwrap()
            .as_u64()
            .unwrap_or(0)
    }

    /// A call to the API from the page, with its session cookie and CSRF
    /// token, as the page's own script makes it.
    async fn api(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .execute_async(
                "const [method, path, body, done] = arguments;
                 const headers = {'content-type': 'application/json',
                                  'x-csrf-token': sessionStorage.getItem('rampart.csrf') || ''};
                 fetch('/api/v1' + path, {method, headers, credentials: 'same-origin',
                       body: body === null ? undefined : JSON.stringify(body)})
                   .then(async (r) => done([r.status, await r.text()]))
                   .catch((e) => done([0, String(e)]));",
                vec![json!(method), json!(path), body],
            )
            .await
            .unwrap();
        let status = r[0].as_u64().unwrap() as u16;
        let body = serde_json::from_str(r[1].as_str().unwrap_or("")).unwrap_or(Value::Null);
        (status, body)
    }

    /// Saves the page as `target/console-screenshots/<name>.png`, at
    /// desktop size and at phone width.
    async fn shot(&mut self, name: &str) {
        // The whole page, up to 2,000 px tall, at desktop width.
        let height = self
            .count("return document.documentElement.scrollHeight")
            .await
            .clamp(800, 2000) as u32;
        self.client
            .set_window_size(1280, height + 90)
            .await
            .unwrap();
        self.client
            .execute("window.scrollTo(0, 0)", vec![])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
        self.client.set_window_size(390, 844).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}-phone.png")), png).unwrap();
        // Nothing may overflow the phone's width.
        let overflow = self
            .count("return Math.max(0, document.documentElement.scrollWidth - window.innerWidth)")
            .await;
        assert!(overflow <= 2, "{name} is {overflow} px wider than a phone");
        self.client.set_window_size(1280, 800).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    /// axe-core on the page: no serious or critical violation.
    async fn accessible(&mut self, name: &str) {
        let Some(axe) = self.axe.clone() else { return };
        self.client.execute(&axe, vec![]).await.unwrap();
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {resultTypes: ['violations']})
                   .then((r) => done(r.violations
                     .filter((v) => v.impact === 'serious' || v.impact === 'critical')
                     .map((v) => v.id + ': ' + v.help + ' at ' + v.nodes.map((n) => n.target.join(' ')).join(', '))))
                   .catch((e) => done(['axe failed: ' + e]));",
                vec![],
            )
            .await
            .unwrap();
        let found: Vec<String> = serde_json::from_value(found).unwrap();
        assert!(
            found.is_empty(),
            "{name}: accessibility violations: {found:#?}"
        );
    }

    /// Tab moves the focus through every control of the page in order
    /// (keyboard navigation), and the focus is always visible on one.
    async fn keyboard_reaches(&self, css: &str) {
        self.client
            .execute(
                "document.activeElement && document.activeElement.blur(); window.focus();",
                vec![],
            )
            .await
            .unwrap();
        let body = self.client.find(Locator::Css("body")).await.unwrap();
        for _ in 0..60 {
            body.send_keys("\u{E004}").await.unwrap();
            let hit = self
                .client
                .execute(
                    "return document.activeElement.matches(arguments[0])",
                    vec![json!(css)],
                )
                .await
                .unwrap();
            if hit == json!(true) {
                return;
            }
        }
        panic!("the keyboard does not reach {css}");
    }

    async fn finish(mut self) {
        self.read_log().await;
        let problems = std::mem::take(&mut self.problems);
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        assert!(
            problems.is_empty(),
            "the browser logged problems: {problems:#?}"
        );
    }
}

fn xpath_literal(s: &str) -> String {
    if s.contains('"') {
        format!("'{s}'")
    } else {
        format!("\"{s}\"")
    }
}

/// A sign-in through the API, from outside the browser.
async fn sign_in(p: &Proc, email: &str, password: &str) -> reqwest::Response {
    p.client
        .post(p.url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

/// The setup link `serve` printed, as printed.
fn printed_setup_link(p: &Proc) -> String {
    let text = p.stderr_text();
    let start = text
        .find("https://")
        .and_then(|_| text.find("/setup#token="))
        .unwrap();
    let line_start = text[..start].rfind(char::is_whitespace).unwrap() + 1;
    text[line_start..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// The first administrator, from the printed link to a second factor, in
/// the browser: returns the authenticator and the recovery codes.
async fn first_admin(b: &mut Browser, p: &Proc) -> (Authenticator, Vec<String>) {
    // The link as printed, on the host the browser uses (the same server).
    let link = printed_setup_link(p).replacen(&format!("https://127.0.0.1:{}", p.port), &b.base, 1);
    b.goto(&link).await;
    let url = b.client.current_url().await.unwrap();
    assert!(
        url.fragment().is_none(),
        "the token leaves the address bar: {url}"
    );
    b.fill("#email", ADMIN).await;
    b.fill("#display-name", "Olive Owner").await;
    // The live meter rates what is typed with the server's own policy.
    b.fill("#password", "password1").await;
    b.wait_text("Not accepted yet").await;
    b.wait_text("common").await;
    b.fill("#password", ADMIN_PW).await;
    b.wait_text("Accepted").await;
    b.accessible("setup").await;
    b.shot("setup").await;
    b.press("Create administrator").await;
    // Signed in; an administrator needs a second factor before the console.
    b.wait_path("/account/").await;
    b.wait_text("needs a second factor").await;
    b.goto("/console/").await;
    b.wait_path("/account/").await;
    b.press("Add an authenticator app").await;
    let secret = b.wait_for("#totp-secret").await.text().await.unwrap();
    let qr = b
        .wait_for("#totp-qr")
        .await
        .attr("src")
        .await
        .unwrap()
        .unwrap();
    assert!(qr.starts_with("data:image/svg+xml;base64,"), "{qr}");
    let mut app = Authenticator { secret, last: 0 };
    b.fill("#totp-code", &app.code()).await;
    b.press("Confirm").await;
    b.wait_text("The authenticator app is added").await;
    let codes: Vec<String> = serde_json::from_value(
        b.client
            .execute("return [...document.querySelectorAll('#recovery-codes li')].map((e) => e.textContent)", vec![])
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(codes.len(), 10, "{codes:?}");
    b.wait_text("Authenticator app").await;
    (app, codes)
}

#[tokio::test]
async fn the_console_from_the_printed_link_to_a_lockdown() {
    let _one = ONE_BROWSER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let p = Proc::spawn(&data, &[]);
    let base = format!("https://127.0.0.1:{}", p.port);
    let Some(mut b) = Browser::start(&base).await else {
        return;
    };
    let (mut app, _codes) = first_admin(&mut b, &p).await;
    b.keyboard_reaches("#enrol-totp").await;
    b.accessible("account").await;
    b.shot("account").await;

    // Sign out, then in again with the password and the authenticator.
    b.press("Sign out").await;
    b.wait_path("/sign-in").await;
    b.fill("#email", ADMIN).await;
    b.fill("#password", "Not-The-Password-55-x").await;
    b.press("Sign in").await;
    b.wait_error("email address or password is wrong").await;
    b.fill("#password", ADMIN_PW).await;
    b.press("Sign in").await;
    b.wait_for("#code").await;
    b.fill("#code", "000000").await;
    b.press("Verify").await;
    b.wait_error("wrong, expired or already used").await;
    b.fill("#code", &app.code()).await;
    b.press("Verify").await;
    b.wait_path("/console/").await;
    b.wait_text("Sign-ins, last 24 h").await;
    // The account page lists the sign-ins, the failed one too.
    b.goto("/account/").await;
    b.wait_for("#sign-ins .pill.failure").await;
    b.wait_for("#sign-ins .pill.success").await;

    // Carol has an account; someone attacks.
    let c = &p.client;
    let r = c
        .post(p.url("/api/v1/auth/register"))
        .json(&json!({"email": CAROL, "password": CAROL_PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for i in 0..4 {
        let r = sign_in(
            &p,
            &format!("nobody{i}@console.example"),
            "Guess-Guess-12-Wrong",
        )
        .await;
        assert_eq!(r.status(), 401);
    }
    for probe in ["1' OR '1'='1' -- ", "<script>alert(1)</script>"] {
        let r = c
            .get(p.url("/api/v1/healthz"))
            .query(&[("q", probe)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{probe}");
    }
    // The dashboard draws them.
    b.goto("/console/").await;
    b.wait_text("Blocked requests by rule").await;
    let failed_bars = b
        .count("return document.querySelectorAll('svg rect.failure').length")
        .await;
    assert!(failed_bars >= 1, "no failed sign-ins drawn");
    let tally_bars = b
        .count("return document.querySelectorAll('svg rect.bar').length")
        .await;
    assert!(
        tally_bars >= 3,
        "reasons, rules and addresses drawn: {tally_bars}"
    );
    b.wait_text("unknown_account").await;
    b.wait_text("Administrators without a second factor").await;
    b.accessible("dashboard").await;
    b.shot("dashboard").await;

    // Disable Carol, then enable her again.
    b.goto("/console/accounts").await;
    b.fill("#q-email", "carol").await;
    b.press("Search").await;
    b.press(&format!("Open {CAROL}")).await;
    b.press("Disable").await;
    b.wait_text(&format!("{CAROL} is disabled")).await;
    problem(sign_in(&p, CAROL, CAROL_PW).await, 403, "account_disabled").await;
    b.accessible("accounts").await;
    b.shot("accounts").await;
    b.press("Enable").await;
    b.wait_text(&format!("{CAROL} is enabled")).await;

    // Block an address.
    b.goto("/console/firewall").await;
    b.fill("#b-network", "203.0.113.9").await;
    b.fill("#b-reason", "scraping").await;
    b.press("Block").await;
    b.wait_text("203.0.113.9 is blocked").await;
    let (status, blocks) = b.api("GET", "/admin/blocks", Value::Null).await;
    assert_eq!(status, 200);
    assert!(
        blocks["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["network"] == "203.0.113.9/32" || x["network"] == "203.0.113.9"),
        "{blocks}"
    );
    b.accessible("firewall").await;
    b.shot("firewall").await;

    // The event timeline, its chart and an event's place in the chain.
    b.goto("/console/events").await;
    b.fill("#f-type", "block_added").await;
    b.press("Search").await;
    b.wait_text("block_added").await;
    let details = b
        .client
        .find(Locator::XPath(
            "//button[starts-with(normalize-space(), 'Details of')]",
        ))
        .await
        .unwrap();
    details.click().await.unwrap();
    b.wait_text("in the chain of node").await;
    // Its inclusion proof (a checkpoint is signed within seconds).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        b.press("Show its inclusion proof").await;
        if b.page_text().await.contains("rampart audit check-proof") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no proof: {}",
            b.page_text().await
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    b.accessible("events").await;
    b.shot("events").await;

    // Lock down, with typed confirmation, and lift.
    b.goto("/console/incident").await;
    b.fill("#l-reason", "drill from the browser test").await;
    b.fill("#l-confirm", "lock down").await;
    b.press("Lock down").await;
    b.wait_text("Type LOCK DOWN to confirm").await;
    let (_, s) = b.api("GET", "/admin/incident", Value::Null).await;
    assert_eq!(
        s["locked_down"], false,
        "a wrong confirmation locks nothing"
    );
    b.fill("#l-confirm", "LOCK DOWN").await;
    b.press("Lock down").await;
    b.wait_text("Locked down:").await;
    b.wait_for("#lockdown-banner").await;
    let (_, s) = b.api("GET", "/admin/incident", Value::Null).await;
    assert_eq!(s["locked_down"], true, "{s}");
    let r = sign_in(&p, CAROL, CAROL_PW).await;
    // Nobody else signs in; the answer is a wrong password's, so a
    // lockdown confirms no password.
    problem(r, 401, "invalid_credentials").await;
    b.wait_for("#content[data-ready]").await;
    b.wait_text("rampart incident plan init").await;
    b.accessible("incident").await;
    b.shot("incident").await;
    let lift = b.wait_for("input[id^='lift-']").await;
    lift.send_keys("LIFT").await.unwrap();
    b.press("Lift").await;
    b.wait_text("The lockdown is lifted").await;
    let (_, s) = b.api("GET", "/admin/incident", Value::Null).await;
    assert_eq!(s["locked_down"], false, "{s}");

    // The other sections draw without a problem.
    for section in [
        "alerts",
        "collections",
        "scanner",
        "backups",
        "api-keys",
        "settings",
    ] {
        b.goto(&format!("/console/{section}")).await;
        b.wait_for("#content[data-ready]").await;
        let msg = b
            .client
            .execute("const m = document.querySelector('#message'); return m.hidden ? '' : m.textContent", vec![])
            .await
            .unwrap();
        assert_eq!(msg, json!(""), "{section}: {msg}");
        b.accessible(section).await;
    }
    b.wait_text("step_up_secs: 600").await;
    b.shot("settings").await;

    // Carol's address: the link in her welcome mail, in the browser.
    let token = mailed_token(&data.join("outbox.log"), CAROL, "verify-email").await;
    b.goto(&format!("/verify-email#token={token}")).await;
    b.accessible("verify-email").await;
    b.press("Verify my address").await;
    b.wait_text("Your address is verified").await;
    // A link works once.
    b.goto(&format!("/verify-email#token={token}")).await;
    b.press("Verify my address").await;
    b.wait_error("used or expired").await;
    b.goto("/console/").await;

    // Carol forgot her password: the emailed link, in the browser.
    b.press("Sign out").await;
    b.goto("/reset-password").await;
    b.fill("#email", CAROL).await;
    b.press("Send the link").await;
    b.wait_text("link").await;
    let token = mailed_token(&data.join("outbox.log"), CAROL, "reset-password").await;
    b.goto(&format!("/reset-password#token={token}")).await;
    b.fill("#new-password", CAROL_NEW_PW).await;
    b.wait_text("Accepted").await;
    b.accessible("reset-password").await;
    b.shot("reset-password").await;
    b.press("Set the new password").await;
    b.wait_text("Your password is changed").await;
    b.goto("/sign-in").await;
    b.fill("#email", CAROL).await;
    b.fill("#password", CAROL_NEW_PW).await;
    b.accessible("sign-in").await;
    b.shot("sign-in").await;
    b.press("Sign in").await;
    b.wait_path("/account/").await;
    b.wait_text(CAROL).await;
    b.wait_text("Address verified\nyes").await;
    // Carol is no administrator: the console says so.
    b.goto("/console/").await;
    b.wait_text("The console is for administrators").await;
    let (status, _) = b.api("GET", "/admin/accounts", Value::Null).await;
    assert_eq!(status, 403);
    let _ = app.code();
    b.finish().await;
}

/// A sensitive value is masked in the record browser until revealed, one
/// at a time, after a step-up; the reveal is recorded with the field.
#[tokio::test]
async fn a_sensitive_value_is_revealed_only_after_a_step_up() {
    let _one = ONE_BROWSER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A step-up lasts 2 seconds here, so the test can outlive one.
    let p = Proc::spawn_env(&data, &[], &[("RAMPART_MFA__STEP_UP_SECS", "2")]);
    let base = format!("https://127.0.0.1:{}", p.port);
    let Some(mut b) = Browser::start(&base).await else {
        return;
    };
    let (_app, codes) = first_admin(&mut b, &p).await;
    b.goto("/console/collections").await;
    // A collection with a sensitive field and one record, made through
    // the API from the page (a fresh step-up first).
    let (status, _) = b
        .api(
            "POST",
            "/auth/step-up",
            json!({"method": "recovery_code", "code": codes[0]}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = b
        .api(
            "POST",
            "/admin/collections",
            json!({"name": "patients", "fields": {
                "name": {"type": "text", "required": true},
                "ssn": {"type": "text", "sensitive": true}}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = b
        .api(
            "POST",
            "/collections/patients/records",
            json!({"name": "Ada", "ssn": "078-05-1120"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    tokio::time::sleep(Duration::from_millis(2500)).await;

    b.goto("/console/collections").await;
    b.press("Open patients").await;
    b.wait_text("Ada").await;
    let page = b.page_text().await;
    assert!(
        !page.contains("078-05-1120"),
        "masked until revealed: {page}"
    );
    let html = b
        .client
        .execute("return document.documentElement.outerHTML", vec![])
        .await
        .unwrap();
    assert!(
        !html.as_str().unwrap().contains("078-05-1120"),
        "not even in the page's markup"
    );
    b.accessible("collections").await;
    b.press("Reveal ssn").await;
    // The step-up expired: the dialog asks for a proof.
    b.wait_for("#step-up-code").await;
    b.fill("#step-up-code", "000000").await;
    b.click("#step-up-form button[value='confirm']").await;
    b.wait_for("#step-up-message").await;
    b.wait_text("wrong, expired or already used").await;
    b.fill("#step-up-code", &codes[1]).await;
    b.click("#step-up-form button[value='confirm']").await;
    b.wait_text("078-05-1120").await;
    b.shot("collections").await;
    let (status, events) = b
        .api(
            "GET",
            "/admin/events?type=data.read&data=include&limit=20",
            Value::Null,
        )
        .await;
    assert_eq!(status, 200, "{events}");
    let revealed: BTreeSet<String> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["fields"]["data.revealed"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(revealed, BTreeSet::from(["ssn".to_owned()]), "{events}");
    assert!(
        !events.to_string().contains("078-05-1120"),
        "the value is in no event"
    );
    b.finish().await;
}

/// Passkeys from the browser itself (chromedriver's virtual
/// authenticator): added on the account page, then used to sign in. A
/// passkey needs a host name, so this browser uses `localhost`.
#[tokio::test]
async fn a_passkey_is_added_and_signs_in() {
    let _one = ONE_BROWSER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let p = Proc::spawn(&data, &[]);
    let base = format!("https://localhost:{}", p.port);
    let Some(mut b) = Browser::start(&base).await else {
        return;
    };
    b.client.issue_cmd(VirtualAuthenticator).await.unwrap();
    first_admin(&mut b, &p).await;
    b.press("Add a passkey").await;
    b.wait_text("The passkey is added").await;
    b.wait_text("Passkey: Passkey").await;
    b.press("Sign out").await;
    b.wait_path("/sign-in").await;
    b.fill("#email", ADMIN).await;
    b.fill("#password", ADMIN_PW).await;
    b.press("Sign in").await;
    let method = b.wait_for("#method").await;
    method
        .find(Locator::Css("option[value='webauthn']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.press("Verify").await;
    b.wait_path("/console/").await;
    b.wait_text("Sign-ins, last 24 h").await;
    b.finish().await;
}
