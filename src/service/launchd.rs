//! The launchd agent: `~/Library/LaunchAgents/dev.berth.<name>.plist`, an XML property
//! list with every string XML-escaped.

use std::path::{Path, PathBuf};

use super::{ServiceSpec, UnitFile};

pub fn label(name: &str) -> String {
    format!("dev.berth.{name}")
}

pub fn agent_path(name: &str, home: &Path) -> PathBuf {
    home.join("Library/LaunchAgents")
        .join(format!("{}.plist", label(name)))
}

pub fn agent(spec: &ServiceSpec) -> UnitFile {
    let name = spec.name();
    let label = label(&name);
    let args: String = spec
        .argv()
        .iter()
        .map(|a| format!("    <string>{}</string>\n", escape(a)))
        .collect();
    let env: String = spec
        .env()
        .iter()
        .map(|(k, v)| {
            format!(
                "    <key>{}</key>\n    <string>{}</string>\n",
                escape(k),
                escape(v)
            )
        })
        .collect();
    let log = |file: &str| escape(&spec.berth_dir.join(file).display().to_string());
    let path = agent_path(&name, &spec.home);
    let text = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <!-- Written by `berth install`; remove with `berth uninstall`. -->\n\
         <plist version=\"1.0\">\n\
         <dict>\n\
         \x20 <key>Label</key>\n  <string>{}</string>\n\
         \x20 <key>ProgramArguments</key>\n  <array>\n{args}  </array>\n\
         \x20 <key>EnvironmentVariables</key>\n  <dict>\n{env}  </dict>\n\
         \x20 <key>WorkingDirectory</key>\n  <string>{}</string>\n\
         \x20 <key>RunAtLoad</key>\n  <true/>\n\
         \x20 <key>KeepAlive</key>\n  <dict>\n    <key>SuccessfulExit</key>\n    <false/>\n  </dict>\n\
         \x20 <key>ExitTimeOut</key>\n  <integer>30</integer>\n\
         \x20 <key>StandardOutPath</key>\n  <string>{}</string>\n\
         \x20 <key>StandardErrorPath</key>\n  <string>{}</string>\n\
         </dict>\n\
         </plist>\n",
        escape(&label),
        escape(&spec.home.display().to_string()),
        log("berth.out.log"),
        log("berth.err.log"),
    );
    let shown = path.display().to_string();
    UnitFile {
        start_hint: format!(
            "launchctl bootstrap gui/$(id -u) '{}'",
            shown.replace('\'', "'\\''")
        ),
        stop_hint: format!("launchctl bootout gui/$(id -u)/{label}"),
        path,
        text,
    }
}

/// The `BERTH_DIR` of an installed agent: the string after `<key>BERTH_DIR</key>`.
pub fn recorded_berth_dir(text: &str) -> Option<PathBuf> {
    let after = text.split_once("<key>BERTH_DIR</key>")?.1;
    let value = after.trim_start().strip_prefix("<string>")?;
    let value = value.split_once("</string>")?.0;
    Some(PathBuf::from(unescape(value)))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}
