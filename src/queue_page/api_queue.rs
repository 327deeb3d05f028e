//! `/api/queue`: `status --json`'s document, bounded. The queue dir may hold thousands of
//! records of up to 1 MiB each, and a slow client holds a response for seconds on each of
//! the endpoint's connections: the document lists at most [`MAX_API_RECORDS`] records
//! (live ones first) in at most [`MAX_API_RECORDS_BYTES`], each record in at most
//! [`MAX_API_RECORD_BYTES`] with every string cut to [`MAX_API_TEXT_BYTES`]. An unknown
//! field too long to fit is left out unparsed (1 MiB of `[0],[0],…` would be ~50 MiB as a
//! tree). A record cut so carries `"truncated": true`; the document says what it cut in
//! `"cut"` and `"truncated"`.

use serde_json::{Map, Value, json};

use crate::queue_report::QueueReport;
use crate::record::{Extra, Record, Status};
use crate::store::StoredRecord;

/// The records listed, live ones (in flight, queued) first, then blocked ones.
pub const MAX_API_RECORDS: usize = 1000;
/// The unreadable queue files listed.
pub const MAX_API_UNREADABLE: usize = 100;
/// A string in a record (a known field's, or inside an unknown one), in bytes.
pub const MAX_API_TEXT_BYTES: usize = 1024;
/// One record's compact JSON: unknown fields past it are left out.
pub const MAX_API_RECORD_BYTES: usize = 32 * 1024;
/// The records' compact JSON together: the records past it are left out.
pub const MAX_API_RECORDS_BYTES: usize = 8 * 1024 * 1024;

/// The bounded document of `report`.
pub fn queue_document(report: &QueueReport) -> Value {
    // In flight, queued, blocked, then the rest (stable: the scan's order within each):
    // what an operator looks for is never cut for landed history.
    let mut order: Vec<&StoredRecord> = report.scan.records.iter().collect();
    order.sort_by_key(|stored| rank(stored.record.status));
    let (mut records, mut bytes, mut shortened) = (Vec::new(), 0, 0);
    for stored in order.iter().take(MAX_API_RECORDS) {
        let (record, size, cut) = bounded_record(report, stored);
        if bytes + size > MAX_API_RECORDS_BYTES {
            break;
        }
        bytes += size;
        shortened += usize::from(cut);
        records.push(record);
    }
    let left_out = order.len() - records.len();
    let mut document = report.to_json_with(records);
    let unreadable_left_out = match document["unreadable"].as_array_mut() {
        Some(items) => {
            let left_out = items.len().saturating_sub(MAX_API_UNREADABLE);
            items.truncate(MAX_API_UNREADABLE);
            left_out
        }
        None => 0,
    };
    document["cut"] = json!({
        "records": left_out,
        "unreadable": unreadable_left_out,
        "shortenedRecords": shortened,
        "recordBytes": bytes,
    });
    document["truncated"] = json!(left_out + unreadable_left_out + shortened > 0);
    document
}

fn rank(status: Status) -> u8 {
    match status {
        status if status.is_in_flight() => 0,
        Status::Queued => 1,
        Status::Blocked => 2,
        _ => 3,
    }
}

/// One record within its bounds: its JSON, that JSON's compact size, and whether anything
/// was cut.
fn bounded_record(report: &QueueReport, stored: &StoredRecord) -> (Value, usize, bool) {
    let mut cut = false;
    let known = Record {
        extra: Extra::default(),
        ..stored.record.clone()
    };
    let fields = match serde_json::to_value(&known) {
        Ok(Value::Object(fields)) => fields,
        _ => Map::new(),
    };
    let mut fields = report.record_fields(stored, fields);
    // `waiting` too: its `notBefore` and a policy's reason are the queue writer's text.
    fields
        .values_mut()
        .for_each(|value| shorten(value, &mut cut));
    let mut size = compact_len(&Value::Object(fields.clone()));
    for (key, text) in stored.record.extra.fields() {
        // Berth's own fields stay berth's; `truncated` says what berth cut.
        if fields.contains_key(key) || key == TRUNCATED {
            continue;
        }
        // A name is counted as written (a control character is 6 bytes escaped), the
        // value by its text, which bounds its compact form: what cannot fit is never parsed.
        let name = escaped_len(key);
        let room = MAX_API_RECORD_BYTES.saturating_sub(size);
        let Some(mut value) = (name + text.get().len() + 2 <= room)
            .then(|| serde_json::from_str::<Value>(text.get()).ok())
            .flatten()
        else {
            cut = true;
            continue;
        };
        shorten(&mut value, &mut cut);
        size += name + compact_len(&value) + 2;
        fields.insert(key.to_owned(), value);
    }
    if cut {
        fields.insert(TRUNCATED.into(), Value::Bool(true));
        size += r#","truncated":true"#.len();
    }
    (Value::Object(fields), size, cut)
}

/// The member of a record that says berth cut it.
const TRUNCATED: &str = "truncated";

/// `text`'s length as a JSON string, quotes included, escaped as `serde_json` writes it.
fn escaped_len(text: &str) -> usize {
    let escaped = |byte: &u8| match byte {
        b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
        0..=0x1f => 6,
        _ => 1,
    };
    2 + text.as_bytes().iter().map(escaped).sum::<usize>()
}

/// Cuts every string in `value` to [`MAX_API_TEXT_BYTES`] (ending in `…`); `cut` is set
/// when one was.
fn shorten(value: &mut Value, cut: &mut bool) {
    match value {
        Value::String(text) if text.len() > MAX_API_TEXT_BYTES => {
            let mut end = MAX_API_TEXT_BYTES - '…'.len_utf8();
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
            *cut = true;
        }
        Value::Array(items) => items.iter_mut().for_each(|item| shorten(item, cut)),
        Value::Object(fields) => fields.values_mut().for_each(|item| shorten(item, cut)),
        _ => {}
    }
}

fn compact_len(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(0, |bytes| bytes.len())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::gates::Allowlist;
    use crate::queue_report::Waits;
    use crate::queue_report::log_index::DecisionIndex;
    use crate::store::{QueueStore, Scan};

    fn stored(id: &str, status: &str, extra: &[(&str, Value)]) -> StoredRecord {
        let mut json = json!({
            "runId": "run-1", "repoPath": "/r", "baseBranch": "main", "featureBranch": "f",
            "prNumber": 7, "version": "1.0.0", "livingPlanPath": "/r/PLAN.md",
            "worktreePath": "/r", "queuedAt": "2026-01-01T00:00:00.000Z", "status": status,
        });
        for (key, value) in extra {
            json[*key] = value.clone();
        }
        StoredRecord {
            id: id.into(),
            path: PathBuf::from(format!("/q/{id}.json")),
            record: Record::from_json(json).unwrap(),
            changed_at: None,
        }
    }

    fn report(records: Vec<StoredRecord>, unreadable: usize) -> QueueReport {
        let unreadable = (0..unreadable)
            .map(|n| crate::store::Unreadable {
                file: format!("bad-{n}.json"),
                reason: "not JSON".into(),
            })
            .collect();
        let scan = Scan {
            records,
            unreadable,
        };
        QueueReport::of(scan, Waits::default())
    }

    /// `/api/queue` lists at most its caps, live records first, and says how many it left
    /// out.
    #[test]
    fn the_queue_document_is_cut_live_records_first() {
        let mut records: Vec<StoredRecord> = (0..MAX_API_RECORDS)
            .map(|n| stored(&format!("landed-{n}"), "landed", &[]))
            .collect();
        records.push(stored("live", "queued", &[]));
        let document = queue_document(&report(records, MAX_API_UNREADABLE + 5));
        let listed = document["records"].as_array().unwrap();
        assert_eq!(listed.len(), MAX_API_RECORDS);
        assert_eq!(listed[0]["id"], "live");
        assert_eq!(listed[1]["id"], "landed-0");
        assert_eq!(
            document["unreadable"].as_array().unwrap().len(),
            MAX_API_UNREADABLE
        );
        assert_eq!(document["cut"]["records"], 1);
        assert_eq!(document["cut"]["unreadable"], 5);
        assert_eq!(document["truncated"], true);
    }

    /// Records of up to 1 MiB each (a long known field, a 1 MiB note, a 1 MiB
    /// `[0],[0],…` that is ~50 MiB as a tree) and hundreds of records filling their own
    /// bound: the response stays within the records' bound (plus the document's other
    /// parts), and building it holds a few times that, never the records' size.
    #[test]
    fn many_large_records_make_a_bounded_response_from_a_bounded_heap() {
        let huge = |n: usize| {
            let blob: Value =
                serde_json::from_str(&format!("[{}[0]]", "[0],".repeat(250_000))).unwrap();
            stored(
                &format!("huge-{n}"),
                "queued",
                &[
                    ("lastError", json!("e".repeat(512 * 1024))),
                    ("notes", json!("n".repeat(1024 * 1024))),
                    ("blob", blob),
                ],
            )
        };
        let wide = |n: usize| {
            let fields: Vec<(String, Value)> = (0..40)
                .map(|f| (format!("field{f}"), json!("w".repeat(1000))))
                .collect();
            let fields: Vec<(&str, Value)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            stored(&format!("wide-{n}"), "queued", &fields)
        };
        let mut records: Vec<StoredRecord> = (0..4).map(huge).collect();
        records.extend((0..400).map(wide));
        let report = report(records, 0);
        crate::rules::memory::start();
        let text = serde_json::to_string(&queue_document(&report)).unwrap();
        let peak = crate::rules::memory::stop();
        let document: Value = serde_json::from_str(&text).unwrap();
        let listed = document["records"].as_array().unwrap();
        let bound = MAX_API_RECORDS_BYTES + 64 * 1024;
        assert!(text.len() <= bound, "{} bytes, over {bound}", text.len());
        let peak_bound = 6 * MAX_API_RECORDS_BYTES as isize;
        assert!(
            peak <= peak_bound,
            "building the response held {peak} bytes at its peak, over {peak_bound}"
        );
        assert!(
            document["cut"]["records"].as_u64().unwrap() > 0,
            "{}",
            document["cut"]
        );
        assert_eq!(document["truncated"], true);
        let first = &listed[0];
        assert_eq!(
            (&first["id"], &first["prNumber"], &first["status"]),
            (&json!("huge-0"), &json!(7), &json!("queued"))
        );
        assert_eq!(first["truncated"], true);
        assert!(first["lastError"].as_str().unwrap().len() <= MAX_API_TEXT_BYTES);
        assert!(
            first.get("blob").is_none(),
            "a field too long to fit is left out"
        );
        assert!(
            listed
                .iter()
                .all(|r| r["truncated"] == true && r["runId"] == "run-1")
        );
    }

    /// An unknown field's name of 30,000 control characters is 30,000 bytes as read and
    /// 180,000 as written (`\u0001` each): each record stays within 32 KiB and all of them
    /// within 8 MiB as written.
    #[test]
    fn an_unknown_field_name_of_escaped_characters_stays_within_the_bounds() {
        let name = "\u{1}".repeat(30_000);
        let records: Vec<StoredRecord> = (0..60)
            .map(|n| stored(&format!("esc-{n}"), "queued", &[(name.as_str(), json!(0))]))
            .collect();
        let document = queue_document(&report(records, 0));
        let first = compact_len(&document["records"][0]);
        let text = serde_json::to_string(&document).unwrap();
        let bound = MAX_API_RECORDS_BYTES + 64 * 1024;
        assert!(
            first <= MAX_API_RECORD_BYTES && text.len() <= bound,
            "one record is {first} bytes as written (bound {MAX_API_RECORD_BYTES}), the document {} (bound {bound})",
            text.len()
        );
        assert_eq!(document["records"][0]["truncated"], true);
    }

    /// A queue writer's `berthNotBefore` of 200,000 bytes on a queued record: `/api/queue`
    /// still holds the record to 32 KiB and every string in it, `waiting`'s too, to 1,024
    /// bytes.
    #[test]
    fn a_long_berth_not_before_is_cut_like_every_string_of_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let queue = dir.path().join("queue");
        let berth_dir = dir.path().join("berth");
        std::fs::create_dir_all(&queue).unwrap();
        std::fs::create_dir_all(&berth_dir).unwrap();
        let long = [("berthNotBefore", json!("9".repeat(200_000)))];
        let record = stored("r-7", "queued", &long).record.to_compact_json();
        std::fs::write(queue.join("r-7.json"), record).unwrap();
        let report = QueueReport::read_indexed(
            &QueueStore::new(&queue),
            &Allowlist::default(),
            &berth_dir,
            &DecisionIndex::default(),
        )
        .unwrap();
        let document = queue_document(&report);
        let listed = &document["records"][0];
        let size = compact_len(listed);
        let not_before = listed["waiting"]["notBefore"].as_str().map_or(0, str::len);
        assert!(
            size <= MAX_API_RECORD_BYTES && not_before <= MAX_API_TEXT_BYTES,
            "the record is {size} bytes (bound {MAX_API_RECORD_BYTES}), its waiting.notBefore {not_before} (bound {MAX_API_TEXT_BYTES})"
        );
        assert_eq!(listed["truncated"], true);
    }

    /// A queue writer's unknown fields `"id"`, `"waiting"` and `"truncated"` do not replace
    /// the id berth reads from the file name or why berth says it waits, nor say the record
    /// was cut when it was not.
    #[test]
    fn a_record_cannot_name_itself_another_record() {
        let own = [
            ("id", json!("github.com-acme-other-main-pr-9")),
            ("waiting", json!({"policy": "forged"})),
            ("truncated", json!(true)),
        ];
        let id = "github.com-acme-widget-main-pr-7";
        let report = report(vec![stored(id, "queued", &own)], 0);
        for listed in [
            &queue_document(&report)["records"][0],
            &report.to_json()["records"][0],
        ] {
            assert_eq!(
                listed["id"], id,
                "the record's own \"id\" replaced its file's"
            );
            assert_eq!(listed["waiting"], Value::Null, "{listed}");
        }
        assert!(
            queue_document(&report)["records"][0]
                .get("truncated")
                .is_none()
        );
    }
}
