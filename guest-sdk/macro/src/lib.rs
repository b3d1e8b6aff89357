//! The `export!` macro of `capstan-sdk`: it generates, inside the plugin crate, the bindings of
//! exactly the world the plugin type implements, sharing the SDK's generated types.
//!
//! Use it through the SDK (`capstan_sdk::export!`), never directly: the expansion names the SDK's
//! paths (`::capstan_sdk::...`).

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Path, Token, Type};

/// The contract package this SDK is built against; the keys of `with:` carry its version.
const CONTRACT_VERSION: &str = "0.2.0";

/// The contract's WIT, baked in when this crate is compiled (as Spin's `spin-sdk-macro` does), so
/// a plugin crate needs no `wit/` of its own.
const WIT_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../wit");

/// The roles a plugin type can be exported as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Handler,
    Reconciler,
}

/// `MyType: Handler`, `MyType: Reconciler` or `MyType: Handler + Reconciler`.
struct ExportInput {
    ty: Type,
    handler: bool,
    reconciler: bool,
}

impl Parse for ExportInput {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let ty: Type = input.parse()?;
        if input.is_empty() {
            return Err(syn::Error::new_spanned(
                &ty,
                "name the roles the type implements: `export!(MyType: Handler)`, \
                 `export!(MyType: Reconciler)` or `export!(MyType: Handler + Reconciler)`",
            ));
        }
        input.parse::<Token![:]>()?;
        let bounds = Punctuated::<Path, Token![+]>::parse_separated_nonempty(input)?;
        if !input.is_empty() {
            return Err(input.error("unexpected tokens after the roles"));
        }
        let (mut handler, mut reconciler) = (false, false);
        for bound in &bounds {
            let (seen, role) = match role_of(bound) {
                Some(Role::Handler) => (&mut handler, "Handler"),
                Some(Role::Reconciler) => (&mut reconciler, "Reconciler"),
                None => {
                    return Err(syn::Error::new_spanned(
                        bound,
                        "a plugin is exported as `Handler`, `Reconciler` or `Handler + Reconciler`",
                    ));
                }
            };
            if *seen {
                return Err(syn::Error::new_spanned(
                    bound,
                    format!("`{role}` is named twice"),
                ));
            }
            *seen = true;
        }
        Ok(Self {
            ty,
            handler,
            reconciler,
        })
    }
}

/// The role a bound names, by its last segment (`Handler`, `capstan_sdk::Handler`).
fn role_of(bound: &Path) -> Option<Role> {
    let last = bound.segments.last()?;
    if !last.arguments.is_empty() {
        return None;
    }
    match last.ident.to_string().as_str() {
        "Handler" => Some(Role::Handler),
        "Reconciler" => Some(Role::Reconciler),
        _ => None,
    }
}

/// The WIT world exported for a set of roles.
fn world(handler: bool, reconciler: bool) -> &'static str {
    match (handler, reconciler) {
        (true, true) => "capstan:controller/controller-plugin",
        (true, false) => "capstan:controller/handler-plugin",
        _ => "capstan:controller/reconciler-plugin",
    }
}

/// The `with:` entries: every interface the world imports, mapped to the SDK's bindings.
fn with_entries(handler: bool, reconciler: bool) -> TokenStream2 {
    let mut interfaces = vec![("types", "types"), ("log", "log")];
    if handler {
        interfaces.push(("status-channel", "status_channel"));
    }
    if reconciler {
        interfaces.push(("cache", "cache"));
        interfaces.push(("pod-logs", "pod_logs"));
    }
    let entries = interfaces.into_iter().map(|(wit, module)| {
        let key = format!("capstan:controller/{wit}@{CONTRACT_VERSION}");
        let module = syn::Ident::new(module, Span::call_site());
        quote! { #key: ::capstan_sdk::wit::capstan::controller::#module, }
    });
    quote! { #(#entries)* }
}

fn expand(input: &ExportInput) -> TokenStream2 {
    let ExportInput {
        ty,
        handler,
        reconciler,
    } = input;
    let (handler, reconciler) = (*handler, *reconciler);
    let world = world(handler, reconciler);
    let with = with_entries(handler, reconciler);
    let object = if handler {
        quote! { <Plugin as ::capstan_sdk::Handler>::Object }
    } else {
        quote! { <Plugin as ::capstan_sdk::Reconciler>::Object }
    };
    let same_object = (handler && reconciler).then(|| {
        quote! {
            // A plugin that is both a handler and a reconciler decodes one object type.
            const _: fn() = ::capstan_sdk::glue::same_object::<Plugin>;
        }
    });
    let handler_impl = handler.then(|| {
        quote! {
            impl exports::capstan::controller::handler::Guest for Exports {
                fn added(obj: ::std::string::String, status: &StatusSender) -> ::capstan_sdk::EventStatus {
                    ::capstan_sdk::glue::added::<Plugin>(&obj, status)
                }
                fn updated(
                    new_obj: ::std::string::String,
                    old_obj: ::std::string::String,
                    status: &StatusSender,
                ) -> ::capstan_sdk::EventStatus {
                    ::capstan_sdk::glue::updated::<Plugin>(&new_obj, &old_obj, status)
                }
                fn deleted(obj: ::std::string::String, status: &StatusSender) -> ::capstan_sdk::EventStatus {
                    ::capstan_sdk::glue::deleted::<Plugin>(&obj, status)
                }
                fn on_status(obj: ::capstan_sdk::ObjectRef, status: ::capstan_sdk::EventProcessStatus) {
                    ::capstan_sdk::glue::on_status::<Plugin>(&obj, status)
                }
            }
        }
    });
    let reconciler_impl = reconciler.then(|| {
        quote! {
            impl exports::capstan::controller::reconciler::Guest for Exports {
                type Reconciliation = Reconciliation;
            }
            impl exports::capstan::controller::reconciler::GuestReconciliation for Reconciliation {
                fn open(
                    obj: ::std::string::String,
                ) -> ::std::result::Result<exports::capstan::controller::reconciler::Reconciliation, ::capstan_sdk::Error> {
                    Reconciliation::open(&obj).map(exports::capstan::controller::reconciler::Reconciliation::new)
                }
                fn fetch(&self) -> ::std::result::Result<(), ::capstan_sdk::Error> {
                    Reconciliation::fetch(self)
                }
                fn plan_resources(&self) -> ::std::result::Result<::std::vec::Vec<::capstan_sdk::PlanEntry>, ::capstan_sdk::Error> {
                    Reconciliation::plan_resources(self)
                }
                fn get_component_health(&self) -> ::std::vec::Vec<::capstan_sdk::ComponentHealth> {
                    Reconciliation::get_component_health(self)
                }
                fn status(&self, computed: ::std::string::String) -> ::capstan_sdk::StatusUpdate {
                    Reconciliation::status(self, &computed)
                }
                fn cleanup(&self) -> ::std::result::Result<::capstan_sdk::CleanupOutcome, ::capstan_sdk::Error> {
                    Reconciliation::cleanup(self)
                }
            }
        }
    });
    quote! {
        /// The exported plugin type (only in the component; native builds call it directly).
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        type __CapstanPlugin = #ty;

        /// The component's bindings and exports, generated for exactly this plugin's world.
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[allow(missing_docs, unsafe_op_in_unsafe_fn, clippy::all, clippy::pedantic)]
        mod __capstan_exports {
            use super::__CapstanPlugin as Plugin;
            #[allow(unused_imports)]
            use ::capstan_sdk::wit::capstan::controller::status_channel::StatusSender;
            #[allow(dead_code)]
            type Reconciliation = ::capstan_sdk::glue::Reconciliation<Plugin>;

            ::capstan_sdk::__wit_bindgen::generate!({
                world: #world,
                path: #WIT_PATH,
                runtime_path: "::capstan_sdk::__wit_bindgen::rt",
                with: { #with },
            });

            #same_object

            struct Exports;

            impl exports::capstan::controller::plugin::Guest for Exports {
                fn describe() -> ::capstan_sdk::Manifest {
                    ::capstan_sdk::glue::describe::<Plugin>(::capstan_sdk::__object_kind!(#object))
                }
            }

            #handler_impl
            #reconciler_impl

            export!(Exports);
        }
    }
}

/// Export a plugin type as the component's implementation of the roles it names:
/// `export!(MyType: Handler)`, `export!(MyType: Reconciler)` or
/// `export!(MyType: Handler + Reconciler)`.
///
/// On `wasm32` this expands to `wit_bindgen::generate!` for exactly that world
/// (`handler-plugin`, `reconciler-plugin` or `controller-plugin`), with the contract types and
/// imports mapped to the SDK's own bindings, and to the exports that call the SDK's glue. On
/// other targets it expands to nothing, so the plugin's unit tests build natively.
#[proc_macro]
pub fn export(input: TokenStream) -> TokenStream {
    match syn::parse::<ExportInput>(input) {
        Ok(input) => expand(&input).into(),
        Err(e) => e.to_compile_error().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> syn::Result<ExportInput> {
        syn::parse_str(s)
    }

    #[test]
    fn roles_select_the_world() {
        let both = parse("MyType: Handler + capstan_sdk::Reconciler").unwrap();
        assert_eq!(
            world(both.handler, both.reconciler),
            "capstan:controller/controller-plugin"
        );
        let h = parse("a::MyType: Handler").unwrap();
        assert_eq!(
            world(h.handler, h.reconciler),
            "capstan:controller/handler-plugin"
        );
        let r = parse("MyType: Reconciler").unwrap();
        assert_eq!(
            world(r.handler, r.reconciler),
            "capstan:controller/reconciler-plugin"
        );
    }

    #[test]
    fn missing_unknown_or_repeated_roles_are_errors() {
        for bad in [
            "MyType",
            "MyType:",
            "MyType: Plugin",
            "MyType: Handler + Handler",
            "MyType: Handler<X>",
            "MyType: Handler, x",
        ] {
            assert!(parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn with_maps_exactly_the_imports_of_the_world() {
        let handler = with_entries(true, false).to_string();
        assert!(handler.contains("status-channel") && !handler.contains("cache"));
        let reconciler = with_entries(false, true).to_string();
        assert!(reconciler.contains("pod-logs") && !reconciler.contains("status-channel"));
    }

    #[test]
    fn the_baked_in_wit_is_the_contract_version_named_in_with() {
        let wit = std::fs::read_to_string(format!("{WIT_PATH}/plugin.wit")).unwrap();
        assert!(
            wit.contains(&format!("package capstan:controller@{CONTRACT_VERSION};")),
            "wit/plugin.wit is not capstan:controller@{CONTRACT_VERSION}"
        );
    }
}
