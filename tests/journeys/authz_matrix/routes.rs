//! The routes the server mounts, read from the code: every `.route("/literal", get(..).post(..))`
//! in web/src (test modules aside), plus the providers' notification endpoints, which are
//! mounted from what each provider declares.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::Arc,
};

use marketlink_core::SystemClock;
use marketlink_e2e::Stack;
use syn::visit::Visit;

/// (method, route template), e.g. `("POST", "/account/users/{id}/role")`.
pub type Route = (String, String);

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete", "head", "options"];

/// Every literal route in web/src with its methods, and every provider's inbound endpoint.
pub async fn mounted(stack: &Stack) -> BTreeSet<Route> {
    let mut routes = BTreeSet::new();
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/src");
    for file in rust_files(&web) {
        let text = std::fs::read_to_string(&file).unwrap();
        let syntax = syn::parse_file(&text)
            .unwrap_or_else(|e| panic!("cannot parse {}: {e}", file.display()));
        let mut calls = RouteCalls {
            routes: &mut routes,
            unreadable: Vec::new(),
        };
        calls.visit_file(&syntax);
        // The notification endpoints' paths are the providers' (below); any other route whose
        // path is not a literal would escape the matrix.
        let inbound = file.ends_with("inbound.rs");
        assert!(
            inbound || calls.unreadable.is_empty(),
            "{}: {:?} cannot be read from the source; mount it with a literal path (or teach \
             tests/journeys/authz_matrix/routes.rs to read it)",
            file.display(),
            calls.unreadable
        );
    }
    let providers = marketlink_cli::run::providers(&stack.config, Arc::new(SystemClock))
        .await
        .unwrap();
    for provider in providers.iter() {
        for endpoint in provider.inbound_endpoints() {
            routes.insert(("POST".into(), endpoint.path.into()));
        }
    }
    routes
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

struct RouteCalls<'a> {
    routes: &'a mut BTreeSet<Route>,
    /// Router calls this scanner cannot resolve to (method, path) pairs.
    unreadable: Vec<String>,
}

impl<'ast> Visit<'ast> for RouteCalls<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        // Test modules build routers of their own.
        let test_only = m.attrs.iter().any(|a| {
            a.path().is_ident("cfg")
                && a.parse_args::<syn::Ident>()
                    .is_ok_and(|ident| ident == "test")
        });
        if !test_only {
            syn::visit::visit_item_mod(self, m);
        }
    }

    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        let name = call.method.to_string();
        if name == "route" {
            let path = match call.args.first() {
                Some(syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(path),
                    ..
                })) => Some(path.value()),
                _ => None,
            };
            let methods = call.args.get(1).map(methods_of).unwrap_or_default();
            match path {
                Some(path) if !methods.is_empty() => {
                    for method in methods {
                        self.routes.insert((method.to_uppercase(), path.clone()));
                    }
                }
                _ => self.unreadable.push(format!(".route({path:?}, ..)")),
            }
        } else if ["nest", "nest_service", "route_service"].contains(&name.as_str()) {
            // Prefixes and services would need reading of their own.
            self.unreadable.push(format!(".{name}(..)"));
        }
        syn::visit::visit_expr_method_call(self, call);
    }
}

/// The methods of a handler chain such as `get(a).post(b)` or `axum::routing::get(a)`.
fn methods_of(expr: &syn::Expr) -> Vec<String> {
    match expr {
        syn::Expr::Call(call) => match &*call.func {
            syn::Expr::Path(path) => path
                .path
                .segments
                .last()
                .map(|s| s.ident.to_string())
                .filter(|name| METHODS.contains(&name.as_str()))
                .into_iter()
                .collect(),
            _ => Vec::new(),
        },
        syn::Expr::MethodCall(call) => {
            let mut methods = methods_of(&call.receiver);
            let name = call.method.to_string();
            if METHODS.contains(&name.as_str()) {
                methods.push(name);
            }
            methods
        }
        _ => Vec::new(),
    }
}
