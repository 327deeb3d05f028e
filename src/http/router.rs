//! Which handler answers which path. `GET` routes answer `HEAD` too (the server drops the
//! body); any other method on a known path is a 405, an unknown path a 404.

use std::sync::Arc;

use super::{Method, Request, Response};

/// A handler runs on a blocking thread (it may read the disk) and must return promptly.
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

enum Route {
    Exact(String),
    /// Every path under a prefix ending in `/` (`/pr/`, `/api/`).
    Prefix(String),
}

impl Route {
    fn matches(&self, path: &str) -> bool {
        match self {
            Route::Exact(exact) => path == exact,
            Route::Prefix(prefix) => path.starts_with(prefix.as_str()),
        }
    }
}

#[derive(Default)]
pub struct Router {
    routes: Vec<(Route, Handler)>,
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    /// `GET path` (and `HEAD`), exactly.
    pub fn get(
        mut self,
        path: &str,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> Router {
        self.routes
            .push((Route::Exact(path.to_owned()), Arc::new(handler)));
        self
    }

    /// `GET` (and `HEAD`) of every path starting with `prefix`; the first matching route wins.
    pub fn get_prefix(
        mut self,
        prefix: &str,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> Router {
        self.routes
            .push((Route::Prefix(prefix.to_owned()), Arc::new(handler)));
        self
    }

    /// Adds `other`'s routes after this one's.
    pub fn merge(mut self, other: Router) -> Router {
        self.routes.extend(other.routes);
        self
    }

    pub fn handle(&self, request: &Request) -> Response {
        let Some((_, handler)) = self.routes.iter().find(|(r, _)| r.matches(&request.path)) else {
            return Response::text(404, "not found\n");
        };
        match request.method {
            Method::Get | Method::Head => handler(request),
            Method::Other => {
                Response::text(405, "only GET and HEAD\n").with_header("Allow: GET, HEAD")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, path: &str) -> Request {
        Request {
            method,
            path: path.into(),
            query: String::new(),
            keep_alive: false,
            has_body: false,
        }
    }

    #[test]
    fn exact_and_prefix_routes_methods_and_misses() {
        let router = Router::new()
            .get("/a", |_| Response::text(200, "a"))
            .merge(Router::new().get_prefix("/p/", |r| Response::text(200, r.path.clone())));
        assert_eq!(router.handle(&request(Method::Get, "/a")).body, b"a");
        assert_eq!(router.handle(&request(Method::Head, "/a")).status, 200);
        assert_eq!(
            router.handle(&request(Method::Get, "/p/x/y")).body,
            b"/p/x/y"
        );
        assert_eq!(router.handle(&request(Method::Get, "/a/")).status, 404);
        assert_eq!(router.handle(&request(Method::Other, "/a")).status, 405);
    }
}
