//! What Rampart does on its own when a rule fires, and the safeguards that
//! keep a false positive from locking everyone out: responses are rate
//! limited, trusted ranges and the addresses administrators are signed in
//! from are never blocked automatically, and an account-wide response
//! against an administrator waits for another administrator to confirm it.

use std::collections::VecDeque;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// One response a rule can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Block the source address (through the guard's blocks, so every node
    /// enforces it).
    BlockAddress,
    /// Lock the account: no sign-in until an administrator unlocks it.
    LockAccount,
    /// End every session of the account.
    RevokeSessions,
    /// Make the account's sessions prove their owner again before their
    /// next request.
    RequireStepUp,
    /// Raise an alert (always done when a rule fires and asks for anything).
    Alert,
}

impl Response {
    pub const ALL: [Response; 5] = [
        Response::BlockAddress,
        Response::LockAccount,
        Response::RevokeSessions,
        Response::RequireStepUp,
        Response::Alert,
    ];
    pub const NAMES: [&'static str; 5] = [
        "block_address",
        "lock_account",
        "revoke_sessions",
        "require_step_up",
        "alert",
    ];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|r| *r == self).unwrap_or(4)]
    }

    pub fn parse(s: &str) -> Option<Response> {
        Self::NAMES
            .iter()
            .position(|n| *n == s)
            .map(|i| Self::ALL[i])
    }

    /// Whether it acts on an account (rather than an address).
    pub fn on_account(self) -> bool {
        matches!(
            self,
            Response::LockAccount | Response::RevokeSessions | Response::RequireStepUp
        )
    }
}

/// What the safeguards decided for one response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Carry it out now.
    Act { response: Response },
    /// Not carried out; the alert says why.
    Withheld { response: Response, why: String },
    /// Against an administrator: another administrator must confirm it.
    Confirm { response: Response },
}

/// Who or what a firing is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub ip: Option<IpAddr>,
    /// An account id (`user.id`; an API key's is `key:<id>`).
    pub account: Option<String>,
    /// The account is an administrator.
    pub account_is_admin: bool,
    /// An administrator has a live session from this address.
    pub ip_is_admins: bool,
}

/// What an automatic block of `ip` covers: the address itself, or for
/// IPv6 its /64 (one host holds a whole /64).
pub fn blocked_net(ip: IpAddr) -> IpNet {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpNet::from(IpAddr::V4(v4)),
            None => IpNet::new(ip, 64).map_or(IpNet::from(ip), |n| n.trunc()),
        },
        v4 => IpNet::from(v4),
    }
}

fn loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The safeguards' settings and their memory of recent responses.
#[derive(Debug, Clone)]
pub struct Safeguards {
    trusted: Vec<IpNet>,
    per_minute: usize,
    /// When each kind of response was last carried out (by the index of
    /// [`Response::ALL`]): each kind has its own budget, so a flood of one
    /// (step-ups an account can draw upon itself) cannot use up another's
    /// (the blocks a real attack needs).
    recent: [VecDeque<i64>; Response::ALL.len()],
}

impl Safeguards {
    /// `trusted`: ranges never blocked automatically; `per_minute`: most
    /// automatic responses carried out in any minute.
    pub fn new(trusted: Vec<IpNet>, per_minute: usize) -> Self {
        Self {
            trusted,
            per_minute,
            recent: Default::default(),
        }
    }

    /// Whether a block of `ip` would touch a trusted range.
    fn trusted(&self, ip: IpAddr) -> bool {
        let blocked = blocked_net(ip);
        self.trusted
            .iter()
            .any(|n| n.contains(&blocked) || blocked.contains(n))
    }

    /// Decides each of `responses` for `subject` at `now_ms`; responses
    /// carried out count toward the rate limit.
    pub fn decide(
        &mut self,
        responses: &[Response],
        subject: &Subject,
        now_ms: i64,
    ) -> Vec<Decision> {
        for recent in &mut self.recent {
            while recent.front().is_some_and(|t| *t <= now_ms - 60_000) {
                recent.pop_front();
            }
        }
        let mut out = Vec::new();
        for &response in responses {
            if response == Response::Alert {
                continue;
            }
            let withheld = |why: &str| Decision::Withheld {
                response,
                why: why.to_owned(),
            };
            let decision = match response {
                Response::BlockAddress => match subject.ip {
                    None => withheld("the events name no address"),
                    Some(ip) if self.trusted(ip) => withheld("the address is in a trusted range"),
                    // Traffic from this machine is a local proxy not named
                    // in trusted_proxies, or the operator: blocking it
                    // would refuse everyone behind it.
                    Some(ip) if loopback(ip) => withheld(
                        "a loopback address (a local proxy not in [guard] trusted_proxies, or this machine)",
                    ),
                    Some(_) if subject.ip_is_admins => {
                        withheld("an administrator is signed in from this address")
                    }
                    Some(_) => Decision::Act { response },
                },
                _ => match &subject.account {
                    None => withheld("the events name no account"),
                    Some(_) if subject.account_is_admin => Decision::Confirm { response },
                    Some(_) => Decision::Act { response },
                },
            };
            let kind = Response::ALL
                .iter()
                .position(|r| *r == response)
                .unwrap_or(0);
            let recent = &mut self.recent[kind];
            let decision = match decision {
                Decision::Act { .. } if recent.len() >= self.per_minute => withheld(
                    "more automatic responses of this kind in the last minute than [detect] responses_per_minute allows",
                ),
                Decision::Act { .. } => {
                    recent.push_back(now_ms);
                    decision
                }
                d => d,
            };
            out.push(decision);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(ip: &str) -> Subject {
        Subject {
            ip: Some(ip.parse().unwrap()),
            account: Some("acc_1".into()),
            ..Subject::default()
        }
    }

    #[test]
    fn trusted_ranges_are_never_blocked() {
        let mut s = Safeguards::new(vec!["10.0.0.0/8".parse().unwrap()], 10);
        let d = s.decide(&[Response::BlockAddress], &subject("10.1.2.3"), 0);
        assert!(matches!(d[0], Decision::Withheld { .. }), "{d:?}");
        let d = s.decide(&[Response::BlockAddress], &subject("::ffff:10.1.2.3"), 0);
        assert!(matches!(d[0], Decision::Withheld { .. }), "{d:?}");
        let d = s.decide(&[Response::BlockAddress], &subject("11.1.2.3"), 0);
        assert_eq!(
            d[0],
            Decision::Act {
                response: Response::BlockAddress
            }
        );
        // A block of an IPv6 address covers its /64: withheld when a
        // trusted range lies inside it.
        let mut s = Safeguards::new(vec!["2001:db8:1:2::5/128".parse().unwrap()], 10);
        let d = s.decide(&[Response::BlockAddress], &subject("2001:db8:1:2::99"), 0);
        assert!(matches!(d[0], Decision::Withheld { .. }), "{d:?}");
    }

    #[test]
    fn loopback_is_never_blocked() {
        let mut s = Safeguards::new(vec![], 10);
        for ip in ["127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"] {
            let d = s.decide(&[Response::BlockAddress], &subject(ip), 0);
            assert!(matches!(d[0], Decision::Withheld { .. }), "{ip}: {d:?}");
        }
    }

    #[test]
    fn an_administrators_address_is_not_blocked() {
        let mut s = Safeguards::new(vec![], 10);
        let mut who = subject("203.0.113.9");
        who.ip_is_admins = true;
        let d = s.decide(&[Response::BlockAddress], &who, 0);
        assert!(matches!(&d[0], Decision::Withheld { why, .. } if why.contains("administrator")));
    }

    #[test]
    fn account_responses_against_an_administrator_need_confirmation() {
        let mut s = Safeguards::new(vec![], 10);
        let mut who = subject("203.0.113.9");
        who.account_is_admin = true;
        let d = s.decide(
            &[
                Response::RevokeSessions,
                Response::BlockAddress,
                Response::Alert,
            ],
            &who,
            0,
        );
        assert_eq!(
            d,
            vec![
                Decision::Confirm {
                    response: Response::RevokeSessions
                },
                Decision::Act {
                    response: Response::BlockAddress
                },
            ]
        );
    }

    #[test]
    fn responses_are_rate_limited_per_minute() {
        let mut s = Safeguards::new(vec![], 3);
        let acted = |d: &[Decision]| {
            d.iter()
                .filter(|d| matches!(d, Decision::Act { .. }))
                .count()
        };
        let mut n = 0;
        for i in 0..10 {
            n += acted(&s.decide(
                &[Response::BlockAddress],
                &subject(&format!("198.51.100.{i}")),
                1_000,
            ));
        }
        assert_eq!(n, 3);
        // Each kind has its own budget: step-ups an account draws upon
        // itself cannot use up the blocks an attack needs, nor the reverse.
        let mut t = Safeguards::new(vec![], 3);
        for i in 0..10 {
            t.decide(
                &[Response::RequireStepUp],
                &subject(&format!("198.51.100.{i}")),
                1_000,
            );
        }
        let d = t.decide(&[Response::BlockAddress], &subject("198.51.100.50"), 1_000);
        assert_eq!(acted(&d), 1);
        // A minute later there is room again.
        let d = s.decide(&[Response::BlockAddress], &subject("198.51.100.99"), 61_001);
        assert_eq!(acted(&d), 1);
    }

    #[test]
    fn names_round_trip() {
        for r in Response::ALL {
            assert_eq!(Response::parse(r.as_str()), Some(r));
        }
        assert_eq!(Response::parse("nuke"), None);
    }
}
