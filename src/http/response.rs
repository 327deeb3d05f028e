//! A response: a status, a content type and a body, written whole.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    /// Extra headers (`Allow` on a 405), each `Name: value` without the line end.
    pub headers: Vec<String>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type: content_type.to_owned(),
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// A `text/plain` response.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status, "text/plain; charset=utf-8", body.into())
    }

    pub fn with_header(mut self, header: impl Into<String>) -> Response {
        self.headers.push(header.into());
        self
    }

    /// The status line and headers, with the body's length. The server writes the body
    /// after them from the response itself, so an answer is never held twice.
    pub fn head(&self, keep_alive: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" },
        );
        for header in &self.headers {
            out.push_str(header);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    /// The bytes on the wire in one buffer (a copy of the body: for a reader of the whole
    /// answer, not for the server); a `HEAD` gets the headers (with the body's length) only.
    pub fn to_bytes(&self, head_only: bool, keep_alive: bool) -> Vec<u8> {
        let mut bytes = self.head(keep_alive);
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_has_the_length_but_not_the_body() {
        let r = Response::text(200, "hi\n").with_header("X-A: b");
        let full = String::from_utf8(r.to_bytes(false, true)).unwrap();
        assert!(full.starts_with("HTTP/1.1 200 OK\r\n") && full.ends_with("X-A: b\r\n\r\nhi\n"));
        assert!(full.contains("Content-Length: 3\r\n") && full.contains("Connection: keep-alive"));
        let head = String::from_utf8(r.to_bytes(true, false)).unwrap();
        assert!(
            head.ends_with("\r\n\r\n") && head.contains("Content-Length: 3\r\nConnection: close")
        );
    }
}
