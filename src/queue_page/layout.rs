//! The frame every page shares: no external asset, no script, readable without colour (the
//! state is always a word), refreshed by the browser every [`REFRESH_SECS`].

use super::escape::escape;

/// Seconds between two loads of a page.
pub const REFRESH_SECS: u32 = 5;

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;max-width:72em;margin:1em auto;padding:0 1em}\
h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #999;margin-top:1.6em}\
h3{font-size:1em;margin-bottom:.3em}code,pre{font:13px ui-monospace,monospace}\
pre{white-space:pre-wrap;background:#f4f4f4;padding:.5em}\
table{border-collapse:collapse}td,th{text-align:left;vertical-align:top;padding:.15em .6em .15em 0}\
.muted{color:#555}.word{font-weight:bold}";

/// A whole page titled `title` around `body` (already HTML).
pub fn page(title: &str, body: &str) -> String {
    let title = escape(title);
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
<title>{title}</title><style>{STYLE}</style></head>\n<body>\n{body}\n\
<p class=\"muted\"><a href=\"/\">queue</a> · <a href=\"/api/queue\">/api/queue</a> · \
<a href=\"/metrics\">/metrics</a> · refreshes every {REFRESH_SECS} s</p>\n</body></html>\n"
    )
}

/// `<li>` lines, at most `max` of `items`, then "and K more" when some were left out.
pub fn bounded_list<T>(items: &[T], max: usize, item: impl Fn(&T) -> String) -> String {
    let mut out = String::new();
    for it in items.iter().take(max) {
        out.push_str("<li>");
        out.push_str(&item(it));
        out.push_str("</li>\n");
    }
    if items.len() > max {
        out.push_str(&format!(
            "<li class=\"more\">and {} more</li>\n",
            items.len() - max
        ));
    }
    out
}
