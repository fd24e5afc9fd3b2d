//! `rampart drill` (ADR 0014): safe, bounded, simulated attacks against
//! this deployment (or an allowed loopback address), scored by what the
//! deployment did about each.

use anyhow::{bail, Result};

/// Checks that `target` is an `https://` URL on a loopback address, the
/// only kind a drill may aim at besides this deployment's own address.
pub fn loopback_target(target: &str) -> Result<url::Url> {
    let url = url::Url::parse(target).map_err(|e| anyhow::anyhow!("not a URL: {e}"))?;
    if url.scheme() != "https" {
        bail!("a drill target is an https:// URL");
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if !loopback {
        bail!("a drill aims only at this machine (127.0.0.0/8, ::1 or localhost): never at a server of anyone else");
    }
    Ok(url)
}
