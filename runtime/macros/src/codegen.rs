//! Writing the impls for a checked [`AgentModel`].

use proc_macro2::{Literal, TokenStream};
use quote::{quote, quote_spanned};

use syn::DeriveInput;

use crate::attr::RestartKind;
use crate::model::AgentModel;

/// The `AgentDescriptor` impl, and an assertion that the type implements `Agent` so a
/// forgotten impl is reported at the derive (with the trait's own advice) rather than
/// where the agent is first spawned.
pub(crate) fn expand(model: &AgentModel) -> TokenStream {
    let ident = &model.ident;
    let name = &model.name;

    let millis = |ms: u64| {
        let ms = Literal::u64_unsuffixed(ms);
        quote!(::core::time::Duration::from_millis(#ms))
    };
    let mut settings = quote!(::vigil_runtime::AgentSettings::new(#name));
    if let Some(ms) = model.cycle_ms {
        let interval = millis(ms);
        settings = quote!(#settings.with_cycle_interval(#interval));
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
        settings = quote!(#settings.with_restart(::vigil_runtime::Restart::#variant));
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
        impl ::vigil_runtime::AgentDescriptor for #ident {
            fn settings() -> ::vigil_runtime::AgentSettings {
                #settings
            }
        }

        const _: () = {
            const fn __vigil_assert_agent<T: ::vigil_runtime::Agent>() {}
            #assert_agent
        };
    }
}

/// The errors, plus a stand-in `AgentDescriptor` impl (for a struct or enum) so that
/// the user's `impl Agent` does not add a second, misleading error about the missing
/// descriptor. The stand-in never runs: the crate does not compile.
pub(crate) fn expand_error(input: &DeriveInput, errors: &syn::Error) -> TokenStream {
    let errors = errors.to_compile_error();
    if matches!(input.data, syn::Data::Union(_)) {
        return errors;
    }
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    quote! {
        #errors

        #[automatically_derived]
        impl #impl_generics ::vigil_runtime::AgentDescriptor for #ident #ty_generics #where_clause {
            fn settings() -> ::vigil_runtime::AgentSettings {
                ::core::unreachable!("`#[derive(Agent)]` failed; the crate does not compile")
            }
        }
    }
}
