//! A hand-built TLS ClientHello, for what rustls will not speak: SSL 3.0,
//! TLS 1.0 and 1.1, and TLS 1.2 suites it does not implement. The probe
//! sends one ClientHello and reads the server's plaintext answer up to
//! ServerHelloDone (ServerHello, Certificate, CertificateStatus,
//! ServerKeyExchange), then hangs up. It never derives a key: it only
//! learns which version and suite the server picks, its certificate chain
//! and its key-exchange parameters, which TLS up to 1.2 sends in the clear.
//!
//! Parsing is bounds-checked throughout (a hostile server can send
//! anything) and capped at [`MAX_READ`] bytes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const SSL3: u16 = 0x0300;
pub const TLS10: u16 = 0x0301;
pub const TLS11: u16 = 0x0302;
pub const TLS12: u16 = 0x0303;

/// TLS_FALLBACK_SCSV (RFC 7507).
pub const FALLBACK_SCSV: u16 = 0x5600;
const RENEGOTIATION_SCSV: u16 = 0x00FF;

/// Enough for a long certificate chain; anything past it is refused.
const MAX_READ: usize = 256 * 1024;
/// A handshake up to ServerHelloDone takes a handful of records.
const MAX_RECORDS: usize = 256;

/// What the server answered.
#[derive(Debug, Clone)]
pub enum Answer {
    Accepted(ServerHello),
    /// An alert, a hang-up or something that is not TLS.
    Refused(String),
    /// No answer within the timeout: not a refusal, the result is unknown.
    Silent,
}

#[derive(Debug, Clone, Default)]
pub struct ServerHello {
    pub version: u16,
    pub suite: u16,
    /// DER, leaf first.
    pub certs: Vec<Vec<u8>>,
    /// The ECDHE group (IANA number), when the suite is ECDHE.
    pub group: Option<u16>,
    /// The size of the DH prime in bits, when the suite is DHE.
    pub dh_bits: Option<u32>,
    /// The server sent an OCSP response (CertificateStatus).
    pub stapled: bool,
}

/// Offers `suites` at `version` and reports the server's choice.
pub async fn probe(
    addr: SocketAddr,
    sni: Option<&str>,
    version: u16,
    suites: &[u16],
    timeout: Duration,
) -> std::io::Result<Answer> {
    let hello = client_hello(sni, version, suites, &rand::random::<[u8; 32]>());
    let mut stream = connect(addr, timeout).await?;
    let run = async {
        stream.write_all(&hello).await?;
        Ok::<_, std::io::Error>(read_answer(&mut stream).await)
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Ok(Answer::Silent),
    }
}

/// A TCP connection within `timeout`. A host that never answers is an
/// error (unreachable), not a server that went silent after a hello.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer to the connection",
            ))
        })
}

/// The ClientHello record. Extensions: server name (unless `sni` is an
/// address), supported groups, point formats, signature algorithms (TLS 1.2
/// only), status request (OCSP stapling), extended master secret.
pub fn client_hello(sni: Option<&str>, version: u16, suites: &[u16], random: &[u8; 32]) -> Vec<u8> {
    let mut body = Vec::with_capacity(512);
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(random);
    body.push(0); // no session id
    let mut ids: Vec<u16> = suites.to_vec();
    ids.push(RENEGOTIATION_SCSV);
    put_u16(&mut body, (ids.len() * 2) as u16);
    for id in ids {
        body.extend_from_slice(&id.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null only
    if version > SSL3 {
        let mut ext = Vec::new();
        if let Some(name) = sni.filter(|n| n.parse::<std::net::IpAddr>().is_err()) {
            let n = name.as_bytes();
            let mut list = Vec::new();
            list.push(0);
            put_u16(&mut list, n.len() as u16);
            list.extend_from_slice(n);
            let mut data = Vec::new();
            put_u16(&mut data, list.len() as u16);
            data.extend_from_slice(&list);
            extension(&mut ext, 0, &data);
        }
        // x25519, secp256r1, secp384r1, secp521r1, x448, ffdhe2048..8192.
        let groups: [u16; 10] = [29, 23, 24, 25, 30, 256, 257, 258, 259, 260];
        let mut data = Vec::new();
        put_u16(&mut data, (groups.len() * 2) as u16);
        for g in groups {
            put_u16(&mut data, g);
        }
        extension(&mut ext, 10, &data);
        extension(&mut ext, 11, &[1, 0]);
        if version >= TLS12 {
            let algs: [u16; 13] = [
                0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0807,
                0x0201, 0x0203, 0x0202,
            ];
            let mut data = Vec::new();
            put_u16(&mut data, (algs.len() * 2) as u16);
            for a in algs {
                put_u16(&mut data, a);
            }
            extension(&mut ext, 13, &data);
        }
        extension(&mut ext, 5, &[1, 0, 0, 0, 0]);
        extension(&mut ext, 23, &[]);
        // Some servers hang on a ClientHello of 256 to 511 bytes (an F5
        // bug); pad it to 512 as browsers do (RFC 7685).
        let len = 4 + body.len() + 2 + ext.len();
        if (256..512).contains(&len) {
            let pad = (512 - len).saturating_sub(4).max(1);
            extension(&mut ext, 21, &vec![0; pad]);
        }
        put_u16(&mut body, ext.len() as u16);
        body.extend_from_slice(&ext);
    }
    let mut handshake = vec![1];
    put_u24(&mut handshake, body.len());
    handshake.extend_from_slice(&body);
    let mut record = vec![22];
    // The record layer says TLS 1.0 (SSL 3.0 for an SSL 3.0 hello), as
    // clients do for servers that choke on newer numbers.
    record.extend_from_slice(&version.min(TLS10).to_be_bytes());
    put_u16(&mut record, handshake.len() as u16);
    record.extend_from_slice(&handshake);
    record
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u24(out: &mut Vec<u8>, v: usize) {
    out.extend_from_slice(&(v as u32).to_be_bytes()[1..]);
}

fn extension(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    put_u16(out, kind);
    put_u16(out, data.len() as u16);
    out.extend_from_slice(data);
}

async fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut messages = Vec::new();
    let mut parsed = 0usize;
    let mut read = 0usize;
    let mut records = 0usize;
    let mut hello: Option<ServerHello> = None;
    loop {
        records += 1;
        if records > MAX_RECORDS {
            return Answer::Refused("too many records".to_owned());
        }
        let mut head = [0u8; 5];
        if stream.read_exact(&mut head).await.is_err() {
            return match hello {
                Some(h) => Answer::Accepted(h),
                None => Answer::Refused("the server hung up".to_owned()),
            };
        }
        let len = u16::from_be_bytes([head[3], head[4]]) as usize;
        read += 5 + len;
        if head[1] != 3 || len > 18_432 || read > MAX_READ {
            return Answer::Refused("the answer is not TLS".to_owned());
        }
        let mut body = vec![0u8; len];
        if stream.read_exact(&mut body).await.is_err() {
            return Answer::Refused("the server hung up".to_owned());
        }
        match head[0] {
            21 => {
                return match hello {
                    Some(h) => Answer::Accepted(h),
                    None => Answer::Refused(format!("alert {}", body.get(1).copied().unwrap_or(0))),
                }
            }
            22 => messages.extend_from_slice(&body),
            _ => {
                return match hello {
                    Some(h) => Answer::Accepted(h),
                    None => Answer::Refused("unexpected record".to_owned()),
                }
            }
        }
        match parse_messages(&messages, &mut parsed, &mut hello) {
            Parsed::Done => {
                return match hello {
                    Some(h) => Answer::Accepted(h),
                    None => Answer::Refused("malformed handshake".to_owned()),
                }
            }
            Parsed::NeedMore => {}
            Parsed::Malformed => return Answer::Refused("malformed handshake".to_owned()),
        }
    }
}

enum Parsed {
    Done,
    NeedMore,
    Malformed,
}

/// Parses the handshake messages in `buf` completed since `from`, and
/// moves `from` past them: each byte is parsed once.
fn parse_messages(buf: &[u8], from: &mut usize, hello: &mut Option<ServerHello>) -> Parsed {
    loop {
        let rest = &buf[*from..];
        if rest.len() < 4 {
            return Parsed::NeedMore;
        }
        let kind = rest[0];
        let len = u32::from_be_bytes([0, rest[1], rest[2], rest[3]]) as usize;
        if rest.len() < 4 + len {
            return Parsed::NeedMore;
        }
        let body = &rest[4..4 + len];
        *from += 4 + len;
        let ok = match kind {
            2 => parse_server_hello(body).map(|h| *hello = Some(h)),
            11 => hello
                .as_mut()
                .and_then(|h| parse_certificates(body).map(|c| h.certs = c)),
            22 => hello.as_mut().map(|h| h.stapled = !body.is_empty()),
            12 => hello.as_mut().map(|h| parse_key_exchange(body, h)),
            14 => return Parsed::Done,
            _ => Some(()),
        };
        if ok.is_none() {
            return Parsed::Malformed;
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize)
    }
}

fn parse_server_hello(body: &[u8]) -> Option<ServerHello> {
    let mut r = Reader(body);
    let version = r.u16()?;
    r.take(32)?;
    let sid = r.u8()? as usize;
    r.take(sid)?;
    let suite = r.u16()?;
    Some(ServerHello {
        version,
        suite,
        ..Default::default()
    })
}

fn parse_certificates(body: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut r = Reader(body);
    let total = r.u24()?;
    let mut list = Reader(r.take(total)?);
    let mut certs = Vec::new();
    while !list.0.is_empty() {
        let len = list.u24()?;
        certs.push(list.take(len)?.to_vec());
    }
    Some(certs)
}

/// ECDHE: `curve_type(3) named_curve(u16)`. DHE: `p<u16>`, whose length
/// gives the group's size. Anything else is left unknown.
fn parse_key_exchange(body: &[u8], h: &mut ServerHello) {
    let mut r = Reader(body);
    let Some(suite) = super::suites::by_id(h.suite) else {
        return;
    };
    match suite.kx {
        super::suites::Kx::Ecdhe => {
            if r.u8() == Some(3) {
                h.group = r.u16();
            }
        }
        super::suites::Kx::Dhe | super::suites::Kx::Export | super::suites::Kx::Anon => {
            let Some(len) = r.u16() else { return };
            let Some(p) = r.take(len as usize) else {
                return;
            };
            let p = match p.iter().position(|b| *b != 0) {
                Some(i) => &p[i..],
                None => return,
            };
            h.dh_bits = Some(p.len() as u32 * 8 - p[0].leading_zeros());
        }
        super::suites::Kx::Rsa => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hello_is_well_formed() {
        let h = client_hello(Some("example.test"), TLS12, &[0xC02F, 0x002F], &[7; 32]);
        assert_eq!(h[0], 22);
        assert_eq!(&h[1..3], &[3, 1]);
        let len = u16::from_be_bytes([h[3], h[4]]) as usize;
        assert_eq!(len, h.len() - 5);
        assert_eq!(h[5], 1, "ClientHello");
        let hs = u32::from_be_bytes([0, h[6], h[7], h[8]]) as usize;
        assert_eq!(hs, h.len() - 9);
        assert_eq!(&h[9..11], &[3, 3]);
        // suites: two plus the renegotiation SCSV.
        assert_eq!(&h[44..46], &[0, 6]);
        assert!(h.windows(12).any(|w| w == b"example.test"));
        // No server name for an address.
        let h = client_hello(Some("127.0.0.1"), TLS10, &[0x002F], &[7; 32]);
        assert!(!h.windows(9).any(|w| w == b"127.0.0.1"));
    }

    #[test]
    fn hellos_between_256_and_511_bytes_are_padded() {
        for n in 0..120 {
            let suites: Vec<u16> = (0..n).collect();
            let h = client_hello(Some("example.test"), TLS12, &suites, &[7; 32]);
            let hs = h.len() - 5;
            assert!(!(256..512).contains(&hs), "{n} suites: {hs} bytes");
            let len = u16::from_be_bytes([h[3], h[4]]) as usize;
            assert_eq!(len, hs);
        }
    }

    #[test]
    fn hostile_answers_are_refused_not_trusted() {
        let mut hello = None;
        // A Certificate claiming more bytes than it has.
        let msg = [11, 0, 0, 6, 0, 0, 9, 0, 0, 9];
        assert!(matches!(
            parse_messages(&msg, &mut 0, &mut hello),
            Parsed::Malformed | Parsed::NeedMore
        ));
        // A ServerHello cut short.
        let msg = [2, 0, 0, 3, 3, 3, 0];
        assert!(matches!(
            parse_messages(&msg, &mut 0, &mut hello),
            Parsed::Malformed
        ));
        // A whole ServerHello, then ServerHelloDone.
        let mut msg = vec![2, 0, 0, 38, 3, 1];
        msg.extend_from_slice(&[0; 32]);
        msg.extend_from_slice(&[0, 0xC0, 0x13, 0]);
        msg.extend_from_slice(&[14, 0, 0, 0]);
        assert!(matches!(
            parse_messages(&msg, &mut 0, &mut hello),
            Parsed::Done
        ));
        let h = hello.unwrap();
        assert_eq!((h.version, h.suite), (TLS10, 0xC013));
    }

    /// Random bytes and every corruption of a real answer, fed as a server
    /// would send them (a few bytes at a time): never a panic, never a read
    /// past the buffer.
    #[test]
    fn arbitrary_answers_never_panic_the_parser() {
        let mut answer = vec![2, 0, 0, 38, 3, 3];
        answer.extend_from_slice(&[9; 32]);
        answer.extend_from_slice(&[0, 0x00, 0x9E, 0]); // DHE-RSA-AES128-GCM
        answer.extend_from_slice(&[11, 0, 0, 9, 0, 0, 6, 0, 0, 3, 1, 2, 3]);
        answer.extend_from_slice(&[12, 0, 0, 5, 0, 3, 0x80, 0, 1]);
        answer.extend_from_slice(&[22, 0, 0, 1, 0, 14, 0, 0, 0]);
        let feed = |buf: &[u8], step: usize| {
            let (mut from, mut hello) = (0usize, None);
            let mut end = 0;
            while end < buf.len() {
                end = (end + step).min(buf.len());
                match parse_messages(&buf[..end], &mut from, &mut hello) {
                    Parsed::NeedMore => assert!(from <= end),
                    Parsed::Done | Parsed::Malformed => break,
                }
            }
        };
        feed(&answer, 1);
        for i in 0..answer.len() {
            for v in [0u8, 1, 0x7F, 0x80, 0xFF] {
                let mut bad = answer.clone();
                bad[i] = v;
                feed(&bad, 3);
                feed(&bad[..i], 1);
            }
        }
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2_000 {
            let len = (x % 300) as usize;
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect();
            feed(&buf, 7);
        }
        // The whole answer is read as it is meant.
        let mut hello = None;
        assert!(matches!(
            parse_messages(&answer, &mut 0, &mut hello),
            Parsed::Done
        ));
        let h = hello.unwrap();
        assert_eq!((h.suite, h.certs.len(), h.stapled), (0x009E, 1, true));
        assert_eq!(h.dh_bits, Some(24));
    }

    #[tokio::test]
    async fn silence_is_not_a_refusal() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s);
        });
        let a = probe(addr, None, TLS12, &[0x002F], Duration::from_millis(200))
            .await
            .unwrap();
        assert!(matches!(a, Answer::Silent), "{a:?}");
        hold.abort();
    }

    #[test]
    fn dh_prime_size_is_counted_in_bits() {
        let mut h = ServerHello {
            suite: 0x0033,
            ..Default::default()
        };
        let mut body = vec![0, 129, 0];
        body.push(0x80);
        body.extend_from_slice(&[0xff; 127]);
        parse_key_exchange(&body, &mut h);
        assert_eq!(h.dh_bits, Some(1024));
    }
}
