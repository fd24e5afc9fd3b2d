//! `rampart install systemd`: a hardened service unit (ADR 0016).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

pub const HELP: &str = "The unit runs `rampart serve` as a dedicated user with the one capability \
needed to bind ports 443 and 80, no new privileges, a read-only system (ProtectSystem=strict) with \
the data, witness, backup and key directories as the only writable paths, private /tmp and devices, \
and a system-call filter. `systemd-analyze security rampart.service` rates it 1.5 (\"OK\"; lower is \
better). The unit runs `rampart serve --config <--config, default /etc/rampart/rampart.toml> --data-dir \
<--data-dir>`; the settings in that file (when it exists) say which other directories it writes. \
Writing to /etc/systemd/system needs root; --output - prints the unit instead.";

#[derive(Subcommand)]
pub enum InstallCommand {
    /// Write a hardened systemd service unit and print how to enable it.
    #[command(after_help = HELP)]
    Systemd(SystemdArgs),
}

#[derive(Args)]
pub struct SystemdArgs {
    /// The dedicated user the service runs as (created with useradd, see
    /// the printed steps)
    #[arg(long, default_value = "rampart", value_parser = user_name)]
    user: String,
    /// Where the unit is written; `-` prints it
    #[arg(long, default_value = "/etc/systemd/system/rampart.service")]
    output: PathBuf,
    /// Where the binary is installed (the unit runs it from there; a home
    /// directory is hidden from the service)
    #[arg(long, default_value = "/usr/local/bin/rampart")]
    binary: PathBuf,
    /// The data directory of the service
    #[arg(long, default_value = "/var/lib/rampart")]
    data_dir: PathBuf,
}

/// A system user name useradd accepts: it goes into the unit verbatim.
fn user_name(s: &str) -> std::result::Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok && s != "root" {
        Ok(s.to_owned())
    } else {
        Err("a user name of lower-case letters, digits, '-' and '_' (not root)".to_owned())
    }
}

/// A path that can go into a unit file as it is: absolute, no spaces,
/// quotes, specifiers, control characters or `..`, and not where the
/// service cannot see it (home directories, a /tmp of its own).
fn unit_path(p: &Path, what: &str) -> Result<String> {
    let s = p
        .to_str()
        .with_context(|| format!("{what} {} is not UTF-8", p.display()))?;
    let ok = p.is_absolute()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | ','))
        && !s.contains("/./")
        && !s.contains("//")
        && !s.ends_with("/.")
        && !p.components().any(|c| {
            matches!(
                c,
                std::path::Component::ParentDir | std::path::Component::CurDir
            )
        });
    if !ok {
        bail!("{what} must be an absolute path of letters, digits and / . _ - + , without `..` (got {s:?})");
    }
    const HIDDEN: [&str; 5] = ["/home", "/root", "/run/user", "/tmp", "/var/tmp"];
    if let Some(h) = HIDDEN.iter().find(|h| p.starts_with(h)) {
        bail!("{what} {s} is under {h}, which the service does not see (ProtectHome, PrivateTmp): choose a path elsewhere");
    }
    Ok(s.to_owned())
}

/// The directories the service writes, from its settings: the data
/// directory and the witness beside it, the master key's directory when
/// the key is outside, the backup directory.
fn writable(settings: &crate::Settings, data_dir: &Path) -> Vec<PathBuf> {
    let abs = |p: &Path| {
        if p.is_absolute() {
            p.to_owned()
        } else {
            data_dir.join(p)
        }
    };
    let mut dirs = vec![
        data_dir.to_owned(),
        abs(&rampart::audit::witness_dir(settings)),
    ];
    if let Some(k) = &settings.master_key_file {
        if let Some(parent) = abs(k).parent() {
            dirs.push(parent.to_owned());
        }
    }
    if let Some(b) = &settings.backup.dir {
        dirs.push(abs(b));
    }
    // A SQLite database elsewhere: its directory (the WAL lives beside it).
    let url = settings.database_url();
    if let Some(parent) = rampart_store::sqlite_path(url.expose_secret())
        .and_then(|f| abs(&f).parent().map(Path::to_owned))
    {
        dirs.push(parent);
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for d in dirs {
        if !out.iter().any(|o| d.starts_with(o)) {
            out.retain(|o| !o.starts_with(&d));
            out.push(d);
        }
    }
    out
}

/// The unit's text.
pub fn unit(user: &str, binary: &str, config: &str, data_dir: &str, writable: &[String]) -> String {
    // Directories under /var/lib are made by systemd for the user.
    let state: Vec<&str> = writable
        .iter()
        .filter_map(|d| d.strip_prefix("/var/lib/"))
        .filter(|d| !d.is_empty())
        .collect();
    let state = if state.is_empty() {
        String::new()
    } else {
        format!(
            "StateDirectory={}\nStateDirectoryMode=0700\n",
            state.join(" ")
        )
    };
    let writable = writable.join(" ");
    format!(
        "# Written by `rampart install systemd`. Rate it: systemd-analyze security rampart.service\n\
[Unit]\n\
Description=Rampart secure back end\n\
Wants=network-online.target\n\
After=network-online.target postgresql.service\n\
\n\
[Service]\n\
Type=simple\n\
User={user}\n\
Group={user}\n\
ExecStart={binary} serve --config {config} --data-dir {data_dir}\n\
ExecReload=/bin/kill -HUP $MAINPID\n\
Restart=on-failure\n\
RestartSec=5\n\
{state}\
ConfigurationDirectory=rampart\n\
ConfigurationDirectoryMode=0750\n\
WorkingDirectory={data_dir}\n\
UMask=0077\n\
LimitNOFILE=65536\n\
# Binding 443 and 80 is the one privilege it needs.\n\
AmbientCapabilities=CAP_NET_BIND_SERVICE\n\
CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n\
NoNewPrivileges=yes\n\
# The whole system read-only, but for these.\n\
ProtectSystem=strict\n\
ReadWritePaths={writable}\n\
ProtectHome=yes\n\
PrivateTmp=yes\n\
PrivateDevices=yes\n\
PrivateIPC=yes\n\
PrivateMounts=yes\n\
ProtectHostname=yes\n\
ProtectClock=yes\n\
ProtectKernelTunables=yes\n\
ProtectKernelModules=yes\n\
ProtectKernelLogs=yes\n\
ProtectControlGroups=yes\n\
ProtectProc=invisible\n\
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n\
RestrictNamespaces=yes\n\
RestrictRealtime=yes\n\
RestrictSUIDSGID=yes\n\
LockPersonality=yes\n\
MemoryDenyWriteExecute=yes\n\
RemoveIPC=yes\n\
KeyringMode=private\n\
DevicePolicy=closed\n\
SystemCallArchitectures=native\n\
SystemCallFilter=@system-service\n\
SystemCallFilter=~@privileged\n\
SystemCallErrorNumber=EPERM\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n"
    )
}

/// The settings file the service reads, unless --config names another.
const SERVICE_CONFIG: &str = "/etc/rampart/rampart.toml";

pub async fn run(config: Option<PathBuf>, command: InstallCommand) -> Result<()> {
    let InstallCommand::Systemd(args) = command;
    let binary = unit_path(&args.binary, "--binary")?;
    // The service's settings, as it will read them: --config, or the
    // usual file when it is there already.
    let explicit = config.is_some();
    let config_path = match config {
        Some(c) => std::path::absolute(&c).with_context(|| format!("--config {}", c.display()))?,
        None => PathBuf::from(SERVICE_CONFIG),
    };
    let service_config = unit_path(&config_path, "--config")?;
    let data_dir = unit_path(&args.data_dir, "--data-dir")?;
    // Only that file: not this shell's RAMPART_* variables or a
    // rampart.toml in this directory, which the service will not read.
    let file = match (config_path.exists(), explicit) {
        (true, _) => Some(config_path.clone()),
        (false, true) => bail!(
            "--config {} does not exist: write the settings first, or leave --config out",
            config_path.display()
        ),
        (false, false) => None,
    };
    let overrides = rampart::Overrides {
        data_dir: Some(args.data_dir.clone()),
        ..rampart::Overrides::default()
    };
    let settings = rampart::Settings::load(file.as_deref(), std::iter::empty(), &overrides)?;
    let dirs = writable(&settings, &args.data_dir)
        .iter()
        .map(|d| unit_path(d, "a directory the service writes"))
        .collect::<Result<Vec<_>>>()?;
    let text = unit(&args.user, &binary, &service_config, &data_dir, &dirs);
    if args.output == Path::new("-") {
        print!("{text}");
        return Ok(());
    }
    if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create {} (run as root?)", dir.display()))?;
    }
    std::fs::write(&args.output, &text)
        .with_context(|| format!("cannot write {} (run as root?)", args.output.display()))?;
    let user = &args.user;
    let name = args
        .output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rampart.service".to_owned());
    let outside: Vec<&String> = dirs
        .iter()
        .filter(|d| !d.starts_with("/var/lib/"))
        .collect();
    println!("Wrote {}.", args.output.display());
    if file.is_none() {
        println!(
            "{} does not exist yet: the unit follows the default settings. Run this again once it \
             names other directories (master_key_file, [backup] dir, a SQLite database_url).",
            config_path.display()
        );
    }
    println!("\nTo run Rampart with it:");
    println!(
        "  useradd --system --user-group --home-dir {data_dir} --shell /usr/sbin/nologin {user}"
    );
    if let Ok(me) = std::env::current_exe() {
        if me != args.binary {
            println!("  install -m 0755 {} {binary}", me.display());
        }
    }
    println!("  install -d -m 0750 -o root -g {user} /etc/rampart");
    println!("  $EDITOR {service_config}    # listen = \"0.0.0.0:443\", http_listen = \"0.0.0.0:80\", [tls] acme (README, \"Going to production\")");
    for d in outside {
        println!("  install -d -m 0700 -o {user} -g {user} {d}");
    }
    println!("  systemctl daemon-reload");
    println!("  systemctl enable --now {name}");
    println!("  journalctl -u {name} -f    # the setup link for the first administrator is printed there");
    println!("\nRate the hardening: systemd-analyze security {name}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths_that_would_change_the_unit_are_refused() {
        assert!(user_name("rampart").is_ok());
        assert!(user_name("_svc-1").is_ok());
        for bad in [
            "",
            "root",
            "Rampart",
            "ram part",
            "a\nExecStart=/bin/sh",
            "1abc",
        ] {
            assert!(user_name(bad).is_err(), "{bad:?}");
        }
        assert!(unit_path(Path::new("/usr/local/bin/rampart"), "x").is_ok());
        for bad in [
            "relative/path",
            "/a b",
            "/a\nX=1",
            "/%h/x",
            "/a;b",
            "/a\"b",
            "/var/lib/../etc",
            "/var/./lib",
            "/var//lib",
            "/home/me/rampart",
            "/root/rampart",
            "/tmp/rampart",
        ] {
            assert!(unit_path(Path::new(bad), "x").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_service_writes_only_its_own_directories() {
        let mut s = crate::Settings {
            data_dir: PathBuf::from("/var/lib/rampart"),
            ..crate::Settings::default()
        };
        assert_eq!(
            writable(&s, Path::new("/var/lib/rampart")),
            vec![
                PathBuf::from("/var/lib/rampart"),
                PathBuf::from("/var/lib/rampart-witness")
            ]
        );
        s.master_key_file = Some(PathBuf::from("/etc/rampart/keys/master.key"));
        s.backup.dir = Some(PathBuf::from("/srv/backups/rampart"));
        s.audit.witness_dir = Some(PathBuf::from("/var/lib/rampart/witness"));
        assert_eq!(
            writable(&s, Path::new("/var/lib/rampart")),
            vec![
                PathBuf::from("/var/lib/rampart"),
                PathBuf::from("/etc/rampart/keys"),
                PathBuf::from("/srv/backups/rampart"),
            ]
        );
    }
}
