//! Who a route is for, declared once where routes are built: operators (the default: `routes`),
//! browsers and the partner's web app (`public`), or every listener (`everywhere`: health
//! probes). With `[server] admin_listen` the public listener serves only the public side and the
//! operator listener only the operator side; without it one listener serves both.
//!
//! Each side is a utoipa `OpenApiRouter`, so the same declaration that routes a handler also puts
//! its operation in `/openapi.json`: a route cannot be served without being documented.
//!
//! Invariant: a route is public only if it is declared with `public` (or `everywhere`); a new
//! route added with `routes` lands on the operator side.

use axum::Router;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

/// Routes split by audience.
pub struct Routes<S = ()> {
    public: OpenApiRouter<S>,
    operator: OpenApiRouter<S>,
    everywhere: OpenApiRouter<S>,
}

impl<S> std::fmt::Debug for Routes<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes").finish_non_exhaustive()
    }
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub fn new() -> Self {
        Self {
            public: OpenApiRouter::new(),
            operator: OpenApiRouter::new(),
            everywhere: OpenApiRouter::new(),
        }
    }

    /// Operator routes (`routes!(handler, ...)`): metrics, the admin console, the internal API,
    /// the OpenAPI document. With `admin_listen` they are served only on the operator listener.
    pub fn routes(mut self, method_router: UtoipaMethodRouter<S>) -> Self {
        self.operator = self.operator.routes(method_router);
        self
    }

    /// Routes browsers reach (client tokens, the browser flows' links and callbacks), served on
    /// the public listener.
    pub fn public(mut self, method_router: UtoipaMethodRouter<S>) -> Self {
        self.public = self.public.routes(method_router);
        self
    }

    /// Routes every listener serves (liveness and readiness probes).
    pub fn everywhere(mut self, method_router: UtoipaMethodRouter<S>) -> Self {
        self.everywhere = self.everywhere.routes(method_router);
        self
    }

    /// Applies `f` (state, layers) to each side alike.
    pub fn map<S2>(self, f: impl Fn(OpenApiRouter<S>) -> OpenApiRouter<S2>) -> Routes<S2> {
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
}

/// Routes with their state applied, split into plain axum routers and one document.
#[derive(Debug)]
pub struct Split {
    public: Router,
    operator: Router,
    everywhere: Router,
}

impl Routes<()> {
    /// The three routers and the document of every route, whichever listener serves it.
    pub fn into_parts(self, mut doc: OpenApi) -> (Split, OpenApi) {
        let (public, p) = self.public.split_for_parts();
        let (operator, o) = self.operator.split_for_parts();
        let (everywhere, e) = self.everywhere.split_for_parts();
        doc.merge(p);
        doc.merge(o);
        doc.merge(e);
        (
            Split {
                public,
                operator,
                everywhere,
            },
            doc,
        )
    }
}

impl Split {
    /// Everything on one listener.
    pub fn into_one(self) -> Router {
        self.public.merge(self.operator).merge(self.everywhere)
    }

    /// (public listener, operator listener).
    pub fn into_split(self) -> (Router, Router) {
        (
            self.public.merge(self.everywhere.clone()),
            self.operator.merge(self.everywhere),
        )
    }
}
