//! The systemd user unit: `~/.config/systemd/user/<name>.service`.
//!
//! Values are written the way systemd reads them back: `Environment=` and `ExecStart=`
//! words in double quotes with C escapes (`\\`, `\"`, `\n`, `\xNN`), `%` doubled everywhere
//! (systemd expands `%h`, `%u`… specifiers), and `$` doubled in `ExecStart=` (systemd
//! expands `$VAR` there), so a path with spaces, quotes, `%` or `$` arrives verbatim.

use std::path::{Path, PathBuf};

use super::{ServiceSpec, UnitFile};

pub fn unit_path(name: &str, home: &Path) -> PathBuf {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home.join(".config"));
    config.join("systemd/user").join(format!("{name}.service"))
}

pub fn unit(spec: &ServiceSpec) -> UnitFile {
    let name = spec.name();
    let exec = spec
        .argv()
        .iter()
        .map(|word| quote(word, true))
        .collect::<Vec<_>>()
        .join(" ");
    let env: String = spec
        .env()
        .iter()
        .map(|(key, value)| format!("Environment={}\n", quote(&format!("{key}={value}"), false)))
        .collect();
    let hardening = hardening(spec);
    let text = format!(
        "# Written by `berth install`; remove with `berth uninstall --berth-dir <dir>`.\n\
         [Unit]\n\
         Description={}\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=exec\n\
         WorkingDirectory=~\n\
         {env}\
         ExecStart={exec}\n\
         # SIGHUP re-reads the config file and the rules root (`systemctl --user reload`).\n\
         ExecReload=kill -HUP $MAINPID\n\
         Restart=on-failure\n\
         RestartSec=10\n\
         # SIGTERM to berth only: it stops its own landings (kills their process groups,\n\
         # requeues their records, releases their lane locks) within 6.5 s, then exits 143.\n\
         KillMode=mixed\n\
         TimeoutStopSec=30\n\
         SuccessExitStatus=143\n\
         # berth raises its soft open-files limit to this at start and serves HTTP\n\
         # clients with at most a quarter of it (64 connections, 16 waiting, at most).\n\
         LimitNOFILE=65536\n\
         {hardening}\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        plain(&format!(
            "berth release-queue daemon ({})",
            spec.berth_dir.display()
        )),
    );
    UnitFile {
        path: unit_path(&name, &spec.home),
        text,
        start_hint: format!(
            "systemctl --user daemon-reload && systemctl --user enable --now {name}"
        ),
        stop_hint: format!("systemctl --user disable --now {name}"),
    }
}

/// The sandbox (`systemd-analyze security` scores it 2.1 of 10). What berth and its
/// landing commands need stays open: the network, the home directory (repos, the forge
/// CLI's credentials), `/tmp`, and processes that JIT (no `MemoryDenyWriteExecute`).
/// `ProtectProc=invisible` hides other users' processes: berth treats a pid it cannot
/// see as unknown, never as gone.
const HARDENING: &str = "\
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
PrivateDevices=yes
PrivateMounts=yes
ProtectSystem=full
ProtectClock=yes
ProtectKernelLogs=yes
ProtectKernelModules=yes
ProtectKernelTunables=yes
ProtectControlGroups=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RemoveIPC=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
";

/// [`HARDENING`], plus a private `/tmp` unless a path the service uses lives there (it
/// would be a different, empty directory inside the sandbox).
fn hardening(spec: &ServiceSpec) -> String {
    let in_tmp = |p: &Path| p.starts_with("/tmp") || p.starts_with("/var/tmp");
    let mut paths = vec![&spec.queue_dir, &spec.berth_dir, &spec.home];
    paths.extend(&spec.config);
    paths.extend(&spec.project_root);
    paths.extend(&spec.rules_root);
    paths.extend(&spec.allowed_roots);
    let private_tmp = if paths.iter().any(|p| in_tmp(p)) {
        "# PrivateTmp is off: a path this service uses is under /tmp.\n"
    } else {
        "PrivateTmp=yes\n"
    };
    format!("# Hardening; see docs/service.md.\n{HARDENING}{private_tmp}")
}

/// The `BERTH_DIR` of an installed unit.
pub fn recorded_berth_dir(text: &str) -> Option<PathBuf> {
    text.lines()
        .filter_map(|line| line.strip_prefix("Environment="))
        .filter_map(unquote)
        .find_map(|assignment| assignment.strip_prefix("BERTH_DIR=").map(PathBuf::from))
}

/// The program an installed unit's `ExecStart=` runs (its first word, as [`quote`] wrote
/// it).
pub fn recorded_binary(text: &str) -> Option<PathBuf> {
    let exec = text
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))?;
    let mut end = None;
    let mut escaped = false;
    for (i, ch) in exec.char_indices().skip(1) {
        match ch {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => {
                end = Some(i);
                break;
            }
            _ => {}
        }
    }
    let word = unquote(&exec[..=end?])?;
    Some(PathBuf::from(word.replace("$$", "$")))
}

/// One word in double quotes, escaped for systemd; `exec` also doubles `$`.
pub fn quote(word: &str, exec: bool) -> String {
    let mut out = String::from("\"");
    for ch in word.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '%' => out.push_str("%%"),
            '$' if exec => out.push_str("$$"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Free text (a description) on one line: specifiers doubled, control characters dropped.
fn plain(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .replace('%', "%%")
}

/// The inverse of [`quote`] for one quoted word (no `$$`: `Environment=` has none);
/// `None` for anything else.
pub fn unquote(text: &str) -> Option<String> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'x' => {
                    let hex: String = chars.by_ref().take(2).collect();
                    out.push(char::from(u8::from_str_radix(&hex, 16).ok()?));
                }
                other => out.push(other),
            },
            '%' => {
                if chars.next()? != '%' {
                    return None;
                }
                out.push('%');
            }
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips_the_characters_systemd_treats_specially() {
        for word in ["plain", "a b", "q\"uo\\te", "50%", "new\nline", "bell\u{7}"] {
            assert_eq!(unquote(&quote(word, false)).as_deref(), Some(word));
        }
        assert_eq!(quote("$HOME/%h", true), "\"$$HOME/%%h\"");
        assert_eq!(quote("$HOME/%h", false), "\"$HOME/%%h\"");
        let unit = format!(
            "[Service]\nExecStart={} \"run\"\n",
            quote("/opt/a \"b\"/$x%/berth", true)
        );
        assert_eq!(
            recorded_binary(&unit),
            Some(PathBuf::from("/opt/a \"b\"/$x%/berth"))
        );
    }

    #[test]
    fn tmp_is_private_unless_the_service_uses_a_path_there() {
        let mut spec = ServiceSpec {
            binary: "/usr/bin/berth".into(),
            berth_dir: "/home/me/.gstack/berth".into(),
            queue_dir: "/home/me/.gstack/build-state/release-queue".into(),
            config: None,
            project_root: None,
            rules_root: None,
            allowed_roots: vec!["/srv/code".into()],
            metrics_addr: None,
            home: "/home/me".into(),
            path: "/usr/bin:/bin".into(),
        };
        assert!(unit(&spec).text.contains("\nPrivateTmp=yes\n"));
        spec.allowed_roots.push("/var/tmp/checkouts".into());
        assert!(!unit(&spec).text.contains("PrivateTmp=yes"));
    }
}
