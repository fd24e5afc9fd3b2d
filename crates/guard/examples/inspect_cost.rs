//! Prints the median and p99 time to inspect typical API requests (and, for
//! contrast, attacks), as JSON, for `bench/run guard`.
//!
//! Usage: inspect_cost [ITERATIONS]

use std::time::Instant;

use rampart_guard::inspect::Request;
use rampart_guard::Inspector;

fn main() {
    let iterations: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let ins = Inspector::new();
    let ua: &[u8] = b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";
    let cookie: &[u8] = b"__Host-rampart_session=Qm9vdHN0cmFwLXNlc3Npb24tdG9rZW4tZm9yLWJlbmNo";
    let login = br#"{"email":"jane.doe@example.com","password":"Quartz-Lantern-97-Ferry"}"#;
    let record = br#"{"name":"Ann Lee","email":"ann@example.com","phone":"+44 20 7946 0958","notes":"Prefers email; call after 5pm. Order #1042 shipped.","tags":["vip","uk"],"credit":1250}"#;
    let typical: Vec<Request<'_>> = vec![
        Request {
            path: "/api/v1/me",
            headers: vec![("user-agent", ua), ("cookie", cookie)],
            ..Default::default()
        },
        Request {
            path: "/api/v1/collections/customers/records",
            query: Some("filter=name%20%3D%20%22Ann%20Lee%22&limit=20"),
            headers: vec![
                ("user-agent", ua),
                ("referer", b"https://app.example.com/customers"),
            ],
            ..Default::default()
        },
        Request {
            path: "/api/v1/auth/login",
            headers: vec![("user-agent", ua)],
            content_type: Some("application/json"),
            body: Some(login),
            ..Default::default()
        },
        Request {
            path: "/api/v1/collections/customers/records",
            headers: vec![("user-agent", ua), ("cookie", cookie)],
            content_type: Some("application/json"),
            body: Some(record),
            ..Default::default()
        },
    ];
    let attacks: Vec<Request<'_>> = vec![
        Request {
            path: "/api/v1/search",
            query: Some("q=1%27%20UNION%20SELECT%20password%20FROM%20users--"),
            ..Default::default()
        },
        Request {
            path: "/api/v1/comments",
            content_type: Some("application/json"),
            body: Some(br#"{"text":"<img src=x onerror=alert(document.cookie)>"}"#),
            ..Default::default()
        },
    ];
    let measure = |reqs: &[Request<'_>]| {
        let mut times = Vec::with_capacity(iterations);
        for i in 0..iterations {
            let r = &reqs[i % reqs.len()];
            let t = Instant::now();
            let v = ins.inspect(r, true, true);
            times.push(t.elapsed().as_nanos() as f64 / 1000.0);
            std::hint::black_box(v);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        (times[times.len() / 2], times[times.len() * 99 / 100])
    };
    // Warm up caches and the regex engine's lazy DFA.
    measure(&typical);
    let (median, p99) = measure(&typical);
    let (attack_median, attack_p99) = measure(&attacks);
    // A rate-limit check of a client within its rate: 100,000 keys, each
    // checked once (a bucket with room), timed in bulk.
    let limiter = rampart_guard::rate::Limiter::new(rampart_guard::rate::Rate {
        per_minute: 1_000_000,
        burst: 1_000_000,
    });
    let keys: Vec<std::net::IpAddr> = (0..100_000u32)
        .map(|i| std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)))
        .collect();
    for k in &keys {
        let _ = limiter.check(k);
    }
    let t = Instant::now();
    for _ in 0..10 {
        for k in &keys {
            std::hint::black_box(limiter.check(k).is_ok());
        }
    }
    let rate_ns = t.elapsed().as_nanos() as f64 / (10.0 * keys.len() as f64);
    // The block check every request passes, with as many blocks as a node
    // holds (10,000: automatic /32s, and a few ranges), for addresses that
    // are not blocked (the common case, and the whole list's worth of work
    // for a scan).
    let blocks = rampart_guard::net::BlockSet::new(
        (0..9_990u32)
            .map(|i| {
                let ip = std::net::Ipv4Addr::from(0xc633_0000 + i);
                (ipnet::IpNet::from(std::net::IpAddr::V4(ip)), i64::MAX)
            })
            .chain((0..10u32).map(|i| {
                let net = format!("10.{i}.0.0/16");
                (rampart_guard::net::parse_net(&net).unwrap(), i64::MAX)
            })),
    );
    let clients: Vec<std::net::IpAddr> = (0..100_000u32)
        .map(|i| std::net::IpAddr::V4(std::net::Ipv4Addr::from(0xcb00_0000 + i)))
        .collect();
    let t = Instant::now();
    for ip in &clients {
        std::hint::black_box(blocks.blocks(*ip, 0));
    }
    let block_ns = t.elapsed().as_nanos() as f64 / clients.len() as f64;
    println!(
        "{{\"typical_median_us\": {median:.2}, \"typical_p99_us\": {p99:.2}, \"attack_median_us\": {attack_median:.2}, \"attack_p99_us\": {attack_p99:.2}, \"rate_check_ns\": {rate_ns:.1}, \"block_check_ns\": {block_ns:.1}}}"
    );
}
