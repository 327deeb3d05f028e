//! `berth status`: what is in the queue, and what needs an operator.

use serde_json::{Value, json};

use super::{Context, Outcome};
use crate::record::Status;
use crate::store::Scan;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Print `{"records": [...], "unreadable": [{"file", "reason"}]}` instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &StatusArgs) -> anyhow::Result<Outcome> {
    let scan = ctx.store.scan()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&as_json(&scan))?);
    } else {
        print!("{}", as_table(&scan, ctx));
    }
    let blocked = scan
        .records
        .iter()
        .any(|r| r.record.status == Status::Blocked);
    Ok(if blocked || !scan.unreadable.is_empty() {
        Outcome::NeedsAttention
    } else {
        Outcome::Clean
    })
}

fn as_json(scan: &Scan) -> Value {
    let records: Vec<Value> = scan
        .records
        .iter()
        .map(|stored| {
            let mut object = serde_json::Map::new();
            object.insert("id".into(), json!(stored.id));
            if let Ok(Value::Object(fields)) = serde_json::to_value(&stored.record) {
                object.extend(fields);
            }
            Value::Object(object)
        })
        .collect();
    json!({ "records": records, "unreadable": scan.unreadable })
}

fn as_table(scan: &Scan, ctx: &Context) -> String {
    let now = crate::clock::now();
    let mut rows: Vec<[String; 6]> = vec![[
        "PR".into(),
        "REPO".into(),
        "LANE".into(),
        "STATUS".into(),
        "AGE".into(),
        "LAST ERROR".into(),
    ]];
    for stored in &scan.records {
        let r = &stored.record;
        let age = crate::clock::parse_iso(&r.queued_at)
            .map(|t| crate::clock::short_age(t, now))
            .unwrap_or_else(|| "?".into());
        rows.push([
            format!("#{}", r.pr_number),
            r.identity_or_path(),
            r.base_branch.clone(),
            r.status.to_string(),
            age,
            r.last_error.clone().unwrap_or_default().replace('\n', " "),
        ]);
    }
    let mut out = String::new();
    if scan.records.is_empty() {
        out.push_str(&format!("queue {} is empty\n", ctx.store.dir().display()));
    } else {
        let widths: Vec<usize> = (0..5)
            .map(|c| {
                rows.iter()
                    .map(|row| row[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &rows {
            let mut line = String::new();
            for (c, width) in widths.iter().enumerate() {
                line.push_str(&format!("{:<width$}  ", row[c]));
            }
            line.push_str(&row[5]);
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    for bad in &scan.unreadable {
        out.push_str(&format!("unreadable: {}: {}\n", bad.file, bad.reason));
    }
    out
}
