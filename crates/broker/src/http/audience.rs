//! Who a route is for, declared once where routes are built: operators (the default: `route`),
//! browsers and the partner's web app (`public`), or every listener (`everywhere`: health
//! probes). With `[server] admin_listen` the public listener serves only the public side and the
//! operator listener only the operator side; without it one listener serves both.
//!
//! Invariant: a route is public only if it is declared with `public` (or `everywhere`); a new
//! route added with `route` lands on the operator side.

use axum::Router;
use axum::routing::MethodRouter;

/// Routes split by audience.
#[derive(Debug)]
pub struct Routes<S = ()> {
    public: Router<S>,
    operator: Router<S>,
    everywhere: Router<S>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub fn new() -> Self {
        Self {
            public: Router::new(),
            operator: Router::new(),
            everywhere: Router::new(),
        }
    }

    /// An operator route: metrics, the admin console, the internal API. With `admin_listen` it
    /// is served only on the operator listener.
    pub fn route(mut self, path: &str, method_router: MethodRouter<S>) -> Self {
        self.operator = self.operator.route(path, method_router);
        self
    }

    /// A route browsers reach (client tokens, the browser flows' links and callbacks), served on
    /// the public listener.
    pub fn public(mut self, path: &str, method_router: MethodRouter<S>) -> Self {
        self.public = self.public.route(path, method_router);
        self
    }

    /// A route every listener serves (liveness and readiness probes).
    pub fn everywhere(mut self, path: &str, method_router: MethodRouter<S>) -> Self {
        self.everywhere = self.everywhere.route(path, method_router);
        self
    }

    /// Applies `f` (state, layers, fallbacks) to each side alike.
    pub fn map<S2>(self, f: impl Fn(Router<S>) -> Router<S2>) -> Routes<S2> {
        Routes {
            public: f(self.public),
            operator: f(self.operator),
            everywhere: f(self.everywhere),
        }
    }

    pub fn merge(self, other: Routes<S>) -> Self {
        Self {
            public: self.public.merge(other.public),
            operator: self.operator.merge(other.operator),
            everywhere: self.everywhere.merge(other.everywhere),
        }
    }

    /// Everything on one listener.
    pub fn into_one(self) -> Router<S> {
        self.public.merge(self.operator).merge(self.everywhere)
    }

    /// (public listener, operator listener).
    pub fn into_split(self) -> (Router<S>, Router<S>) {
        (
            self.public.merge(self.everywhere.clone()),
            self.operator.merge(self.everywhere),
        )
    }
}
