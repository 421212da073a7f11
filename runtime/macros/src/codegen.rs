//! Writing the impls for a checked [`AgentModel`].

use proc_macro_crate::{FoundCrate, crate_name};
use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote, quote_spanned};

use syn::DeriveInput;

use crate::attr::RestartKind;
use crate::model::AgentModel;

/// The `AgentDescriptor` impl, and an assertion that the type implements `Agent` so a
/// forgotten impl is reported at the derive (with the trait's own advice) rather than
/// where the agent is first spawned.
pub(crate) fn expand(model: &AgentModel) -> TokenStream {
    let rt = runtime_path();
    let ident = &model.ident;
    let name = &model.name;

    let millis = |ms: u64| {
        let ms = Literal::u64_unsuffixed(ms);
        quote!(::core::time::Duration::from_millis(#ms))
    };
    let mut settings = quote!(#rt::AgentSettings::new(#name));
    if let Some(ms) = model.cycle_ms {
        let interval = millis(ms);
        settings = quote!(#settings.with_cycle_interval(#interval));
    }
    if let Some(ms) = model.cycle_timeout_ms {
        let timeout = millis(ms);
        settings = quote!(#settings.with_cycle_timeout(#timeout));
    }
    if let Some(ms) = model.heartbeat_ms {
        let interval = millis(ms);
        settings = quote!(#settings.with_heartbeat_interval(#interval));
    }
    if let Some(restart) = model.restart {
        let variant = match restart {
            RestartKind::Permanent => quote!(Permanent),
            RestartKind::Transient => quote!(Transient),
            RestartKind::Temporary => quote!(Temporary),
        };
        settings = quote!(#settings.with_restart(#rt::Restart::#variant));
    }
    if let Some(capacity) = model.mailbox {
        let capacity = Literal::usize_unsuffixed(capacity);
        settings = quote!(#settings.with_mailbox_capacity(#capacity));
    }
    if let Some(ms) = model.shutdown_timeout_ms {
        let timeout = millis(ms);
        settings = quote!(#settings.with_shutdown_timeout(#timeout));
    }

    // Spanned at the type name, so a missing `impl Agent` is reported there.
    let assert_agent = quote_spanned!(ident.span()=> __vigil_assert_agent::<#ident>());

    quote! {
        #[automatically_derived]
        impl #rt::AgentDescriptor for #ident {
            fn settings() -> #rt::AgentSettings {
                #settings
            }
        }

        const _: () = {
            const fn __vigil_assert_agent<T: #rt::Agent>() {}
            #assert_agent
        };
    }
}

/// The errors, plus a stand-in `AgentDescriptor` impl (for a struct or enum) so that
/// the user's `impl Agent` does not add a second, misleading error about the missing
/// descriptor. The stand-in never runs: the crate does not compile.
pub(crate) fn expand_error(input: &DeriveInput, errors: &syn::Error) -> TokenStream {
    let rt = runtime_path();
    let errors = errors.to_compile_error();
    if matches!(input.data, syn::Data::Union(_)) {
        return errors;
    }
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    quote! {
        #errors

        #[automatically_derived]
        impl #impl_generics #rt::AgentDescriptor for #ident #ty_generics #where_clause {
            fn settings() -> #rt::AgentSettings {
                ::core::unreachable!("`#[derive(Agent)]` failed; the crate does not compile")
            }
        }
    }
}

/// How the generated code names the runtime crate, read from the Cargo.toml of the
/// crate using the derive: `vigil-runtime` if it depends on that (under whatever name
/// it gave it), else the `runtime` module of the `vigil` facade, so that depending on
/// `vigil` alone is enough.
fn runtime_path() -> TokenStream {
    choose_runtime_path(crate_name("vigil-runtime").ok(), crate_name("vigil").ok())
}

fn choose_runtime_path(runtime: Option<FoundCrate>, facade: Option<FoundCrate>) -> TokenStream {
    match (runtime, facade) {
        (Some(FoundCrate::Name(name)), _) => {
            let name = format_ident!("{name}");
            quote!(::#name)
        }
        (None, Some(FoundCrate::Name(name))) => {
            let name = format_ident!("{name}");
            quote!(::#name::runtime)
        }
        // `Itself` is vigil-runtime's own library (which declares `extern crate self as
        // vigil_runtime`) or one of its tests and examples, where the library is
        // `vigil_runtime` too. Nothing found (a manifest cargo did not write): the
        // documented default.
        _ => quote!(::vigil_runtime),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chosen(runtime: Option<FoundCrate>, facade: Option<FoundCrate>) -> String {
        choose_runtime_path(runtime, facade).to_string().replace(' ', "")
    }

    #[test]
    fn a_direct_dependency_on_the_runtime_wins_under_its_local_name() {
        let facade = Some(FoundCrate::Name("vigil".into()));
        assert_eq!(chosen(Some(FoundCrate::Name("vigil_runtime".into())), facade.clone()), "::vigil_runtime");
        assert_eq!(chosen(Some(FoundCrate::Name("rt".into())), facade), "::rt");
    }

    #[test]
    fn the_facade_alone_is_enough() {
        assert_eq!(chosen(None, Some(FoundCrate::Name("vigil".into()))), "::vigil::runtime");
        assert_eq!(chosen(None, Some(FoundCrate::Name("watch".into()))), "::watch::runtime");
    }

    #[test]
    fn inside_the_runtime_or_without_a_manifest_the_default_path() {
        assert_eq!(chosen(Some(FoundCrate::Itself), None), "::vigil_runtime");
        assert_eq!(chosen(None, None), "::vigil_runtime");
    }
}
