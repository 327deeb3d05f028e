//! One request head, parsed: the request line and the headers berth looks at.

/// The methods berth serves; anything else is answered 405 (or 400 if it is not a token).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The path, without the query (`/metrics`).
    pub path: String,
    /// What followed `?`, undecoded (`""` when there was none).
    pub query: String,
    /// HTTP/1.1 without `Connection: close`: another request may follow.
    pub keep_alive: bool,
    /// A `Content-Length` above 0 or a `Transfer-Encoding`: a body berth does not read.
    pub has_body: bool,
}

/// Why a head is not a request.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

impl Request {
    /// Parses a head (everything before the blank line, without it).
    pub fn parse(head: &[u8]) -> Result<Request, Malformed> {
        let head = std::str::from_utf8(head).map_err(|_| Malformed)?;
        let mut lines = head.split("\r\n");
        let mut parts = lines.next().ok_or(Malformed)?.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Malformed);
        };
        let method = match method {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => Method::Other,
            _ => return Err(Malformed),
        };
        if !target.starts_with('/') {
            return Err(Malformed);
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut keep_alive = match version {
            "HTTP/1.1" => true,
            "HTTP/1.0" => false,
            _ => return Err(Malformed),
        };
        let mut has_body = false;
        for line in lines {
            let (name, value) = line.split_once(':').ok_or(Malformed)?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
                keep_alive = false;
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                || name.eq_ignore_ascii_case("content-length") && value != "0"
            {
                has_body = true;
            }
        }
        Ok(Request {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            keep_alive,
            has_body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_queries_and_connection_handling() {
        let r =
            Request::parse(b"GET /metrics?x=1&y HTTP/1.1\r\nHost: h\r\nConnection: Close").unwrap();
        assert_eq!(
            (r.method, r.path.as_str(), r.query.as_str()),
            (Method::Get, "/metrics", "x=1&y")
        );
        assert!(!r.keep_alive && !r.has_body);
        let r = Request::parse(b"HEAD /healthz HTTP/1.1\r\nContent-Length: 3").unwrap();
        assert!(r.keep_alive && r.has_body && r.method == Method::Head);
        assert!(!Request::parse(b"GET / HTTP/1.0").unwrap().keep_alive);
        assert_eq!(
            Request::parse(b"POST / HTTP/1.1").unwrap().method,
            Method::Other
        );
        for bad in [
            &b"GET /"[..],
            b"GET x HTTP/1.1",
            b"GET / HTTP/2",
            b"get / HTTP/1.1",
            b"GET / HTTP/1.1\r\nno colon",
            b"\xff",
        ] {
            assert_eq!(Request::parse(bad), Err(Malformed), "{bad:?}");
        }
    }
}
