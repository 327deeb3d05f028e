//! The launchd agent: `~/Library/LaunchAgents/dev.berth.<name>.plist`, an XML property
//! list written and read back with the `plist` crate (escaping as launchd reads it).

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
    let string = |text: &str| plist::Value::String(text.to_owned());
    let log = |file: &str| string(&spec.berth_dir.join(file).display().to_string());
    let mut keep_alive = plist::Dictionary::new();
    keep_alive.insert("SuccessfulExit".into(), false.into());
    let mut agent = plist::Dictionary::new();
    agent.insert("Label".into(), string(&label));
    agent.insert(
        "ProgramArguments".into(),
        plist::Value::Array(spec.argv().iter().map(|a| string(a)).collect()),
    );
    agent.insert(
        "EnvironmentVariables".into(),
        plist::Value::Dictionary(
            spec.env()
                .iter()
                .map(|(k, v)| (k.to_string(), string(v)))
                .collect(),
        ),
    );
    agent.insert(
        "WorkingDirectory".into(),
        string(&spec.home.display().to_string()),
    );
    agent.insert("RunAtLoad".into(), true.into());
    agent.insert("KeepAlive".into(), keep_alive.into());
    agent.insert("ExitTimeOut".into(), 30.into());
    agent.insert("StandardOutPath".into(), log("berth.out.log"));
    agent.insert("StandardErrorPath".into(), log("berth.err.log"));
    let mut xml = Vec::new();
    plist::Value::Dictionary(agent)
        .to_writer_xml(&mut xml)
        .expect("a plist of strings, booleans and integers always serializes");
    let text = String::from_utf8(xml).expect("plist writes UTF-8") + "\n";
    let path = agent_path(&name, &spec.home);
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

/// The `BERTH_DIR` in an installed agent's `EnvironmentVariables`; `None` when the file
/// is not a property list holding one.
pub fn recorded_berth_dir(text: &str) -> Option<PathBuf> {
    let agent = plist::Value::from_reader_xml(text.as_bytes()).ok()?;
    let dir = agent
        .as_dictionary()?
        .get("EnvironmentVariables")?
        .as_dictionary()?
        .get("BERTH_DIR")?
        .as_string()?;
    Some(PathBuf::from(dir))
}

/// The program an installed agent runs (the first of its `ProgramArguments`).
pub fn recorded_binary(text: &str) -> Option<PathBuf> {
    let agent = plist::Value::from_reader_xml(text.as_bytes()).ok()?;
    let program = agent
        .as_dictionary()?
        .get("ProgramArguments")?
        .as_array()?
        .first()?
        .as_string()?;
    Some(PathBuf::from(program))
}
