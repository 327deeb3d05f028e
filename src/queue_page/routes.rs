//! The page's routes on the daemon's endpoint: `/`, `/pr/...` and `/log/<record id>` (HTML), `/api/queue`
//! (`status --json`'s document, bounded: `api_queue.rs`) and `/api/pr/...` (`explain --json`'s document). Handlers run
//! on the HTTP server's blocking threads, never on the daemon's runtime; the queue's facts
//! are read at most once per [`FACTS_TTL`] however many clients ask.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::facts::{PageFacts, PageSources};
use crate::http::{Request, Response, Router};
use crate::queue_report::log_index::DecisionIndex;
use crate::queue_report::story::{Story, StoryError, Target};

/// How long one read of the queue's facts answers every request.
pub const FACTS_TTL: Duration = Duration::from_secs(1);

const HTML: &str = "text/html; charset=utf-8";

struct Page {
    sources: PageSources,
    facts: Mutex<Option<(Instant, Arc<PageFacts>)>>,
    /// The decision log followed: each request parses only what was appended.
    log: DecisionIndex,
}

impl Page {
    /// The facts of the last second, or read now (one reader at a time: others wait for
    /// its answer rather than read too).
    fn facts(&self) -> Result<Arc<PageFacts>, Response> {
        let mut cached = self.facts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, facts)) = cached.as_ref()
            && at.elapsed() < FACTS_TTL
        {
            return Ok(Arc::clone(facts));
        }
        let facts = Arc::new(
            PageFacts::read(&self.sources, &self.log)
                .map_err(|e| Response::text(503, format!("the queue cannot be read: {e}\n")))?,
        );
        *cached = Some((Instant::now(), Arc::clone(&facts)));
        Ok(facts)
    }

    fn story(&self, rest: &str) -> Result<Story, Response> {
        let (target, repo) = parse_target(rest).ok_or_else(|| {
            Response::text(
                404,
                "expected /pr/<repo>/<number>, /pr/<number> or /pr/<record id>\n",
            )
        })?;
        Story::read_indexed(
            &self.sources.store,
            &(self.sources.allowlist)(),
            &self.sources.berth_dir,
            &target,
            repo.as_deref(),
            &self.log,
        )
        .map_err(|e| match e {
            StoryError::Record(e) => Response::text(404, format!("{e}\n")),
            e => Response::text(503, format!("{e}\n")),
        })
    }
}

/// The page's routes, reading from `sources`.
pub fn routes(sources: PageSources) -> Router {
    let page = Arc::new(Page {
        sources,
        facts: Mutex::default(),
        log: DecisionIndex::default(),
    });
    let (queue, api, pr, api_pr, log) = (
        Arc::clone(&page),
        Arc::clone(&page),
        Arc::clone(&page),
        Arc::clone(&page),
        page,
    );
    Router::new()
        .get("/", move |_| match queue.facts() {
            Ok(facts) => Response::new(200, HTML, super::queue::render(&facts)),
            Err(refused) => refused,
        })
        .get("/api/queue", move |_| match api.facts() {
            Ok(facts) => json_response(&super::api_queue::queue_document(&facts.report)),
            Err(refused) => refused,
        })
        .get_prefix("/pr/", move |request: &Request| {
            match pr.story(&request.path["/pr/".len()..]) {
                Ok(story) => Response::new(200, HTML, super::pr::render(&story)),
                Err(refused) => refused,
            }
        })
        .get_prefix("/log/", move |request: &Request| {
            let facts = match log.facts() {
                Ok(facts) => facts,
                Err(refused) => return refused,
            };
            percent_decode(request.path["/log/".len()..].trim_end_matches('/'))
                .and_then(|id| super::log_tail::render(&facts, &id))
                .map_or_else(
                    || Response::text(404, "expected /log/<id of a record in the queue>\n"),
                    |html| Response::new(200, HTML, html),
                )
        })
        .get_prefix("/api/pr/", move |request: &Request| {
            match api_pr.story(&request.path["/api/pr/".len()..]) {
                Ok(story) => Response::new(200, "application/json", story.to_json()),
                Err(refused) => refused,
            }
        })
}

/// `status --json`'s document as compact JSON and a line end: pretty, a deeply nested field
/// would take many times its bytes in indentation.
fn json_response(value: &serde_json::Value) -> Response {
    match serde_json::to_string(value) {
        Ok(mut text) => {
            text.push('\n');
            Response::new(200, "application/json", text)
        }
        Err(e) => Response::text(500, format!("{e}\n")),
    }
}

/// `<repo>/<n>` (the repo percent-encoded or not), `<n>`, or `<record id>`.
fn parse_target(rest: &str) -> Option<(Target, Option<String>)> {
    let rest = rest.trim_end_matches('/');
    match rest.rsplit_once('/') {
        Some((repo, number)) => {
            let pr = number.parse::<u64>().ok()?;
            Some((Target::Pr(pr), Some(percent_decode(repo)?)))
        }
        None if rest.is_empty() => None,
        None => {
            let decoded = percent_decode(rest)?;
            match decoded.rsplit_once('/') {
                // `/pr/github.com%2Facme%2Fw%2F7` names the repo in one segment too.
                Some((repo, number)) if number.parse::<u64>().is_ok() => {
                    Some((Target::Pr(number.parse().ok()?), Some(repo.to_owned())))
                }
                _ => Some((Target::parse(&decoded), None)),
            }
        }
    }
}

/// `%XX` sequences as bytes; `None` when one is malformed or the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(rest: &str) -> Option<(String, Option<String>)> {
        parse_target(rest).map(|(target, repo)| {
            let target = match target {
                Target::Pr(n) => format!("pr {n}"),
                Target::Record(id) => format!("record {id}"),
            };
            (target, repo)
        })
    }

    /// `/pr/<n>` and `/api/pr/<n>` follow the decision log: a request after an append
    /// parses what was appended, never the whole log again.
    #[test]
    fn a_story_request_after_an_append_reads_no_whole_log() {
        use crate::rules::decisions::{PASSES, files};
        use std::io::Write as _;
        let berth = tempfile::tempdir().unwrap();
        let queue = tempfile::tempdir().unwrap();
        let line = |n: u64| {
            format!(
                "{}\n",
                serde_json::json!({"time": format!("2026-01-01T00:00:{:02}.000Z", n % 60),
                    "kind": "status", "record": "r", "pr": 7, "repo": "r",
                    "from": "queued", "to": "claiming", "reason": format!("n{n}")})
            )
        };
        let append = |text: String| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(files(berth.path()).current())
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap()
        };
        (0..100).for_each(|n| append(line(n)));
        let router = routes(PageSources {
            store: crate::store::QueueStore::new(queue.path()),
            berth_dir: berth.path().to_owned(),
            halts: crate::faults::HaltStore::new(berth.path().join("faults")),
            allowlist: Box::new(|| Arc::new(crate::gates::Allowlist::default())),
            order: Arc::new(crate::queue_order::QueueOrder::default()),
        });
        let get = |path: &str| {
            let request = Request::parse(format!("GET {path} HTTP/1.1").as_bytes()).unwrap();
            String::from_utf8_lossy(&router.handle(&request).to_bytes(false, false)).into_owned()
        };
        assert!(get("/api/pr/7").contains("n99"));
        append(line(100));
        let passes = PASSES.with(std::cell::Cell::get);
        assert!(get("/api/pr/7").contains("n100"));
        assert!(get("/pr/7").contains("n100"));
        assert_eq!(
            PASSES.with(std::cell::Cell::get) - passes,
            0,
            "whole reads of the log"
        );
    }

    #[test]
    fn a_pr_path_names_a_repo_and_number_a_number_or_a_record() {
        let repo = Some("github.com/acme/w".to_owned());
        assert_eq!(
            parsed("github.com/acme/w/7"),
            Some(("pr 7".into(), repo.clone()))
        );
        assert_eq!(
            parsed("github.com%2Facme%2Fw/7"),
            Some(("pr 7".into(), repo.clone()))
        );
        assert_eq!(
            parsed("github.com%2Facme%2Fw%2F7"),
            Some(("pr 7".into(), repo))
        );
        assert_eq!(
            parsed("path%3A%2Fsrv%2Frepo/12/"),
            Some(("pr 12".into(), Some("path:/srv/repo".into())))
        );
        assert_eq!(parsed("7"), Some(("pr 7".into(), None)));
        assert_eq!(
            parsed("gh-acme-main-pr-7"),
            Some(("record gh-acme-main-pr-7".into(), None))
        );
        assert_eq!(parsed("a/b/not-a-number"), None);
        assert_eq!(parsed(""), None);
        assert_eq!(parsed("bad%zz"), None);
    }
}
