//! `#[derive(Config)]` and `#[derive(Choice)]`: a method's parameters are declared
//! once, as the fields of its config struct. See `lumen_core::config`.
//!
//! Field attributes of `Config` (`#[param(...)]`):
//! - `name = "word"`: the parameter's name when it differs from the field's;
//! - `max = EXPR`: the largest integer accepted (shown by `lumen list`);
//! - `positive`: an integer that must be at least 1;
//! - `flatten`: the field is itself a `Config`, whose parameters are this one's;
//! - `skip`: not a parameter; parsing keeps the `Default` value;
//! - `recorded_if = path`: `params()` records the field only when `path(&config)`
//!   is true (a parameter that other fields make irrelevant keeps run keys short);
//! - `with = module`: the field's parameters are read and written by `module::specs`,
//!   `module::read` and `module::write` (the signatures of `ParamType`'s), for a
//!   field type that stands for several parameters.
//!
//! Variant attribute of `Choice`: `#[choice(name = "word")]` (default: the variant's
//! name in snake_case).

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::quote;
use syn::{parse_macro_input, Attribute, Data, DeriveInput, Expr, Fields, LitStr};

/// The doc comment of an item, its lines joined by spaces.
fn doc_of(attrs: &[Attribute]) -> String {
    let mut lines = vec![];
    for a in attrs {
        if !a.path().is_ident("doc") {
            continue;
        }
        if let syn::Meta::NameValue(nv) = &a.meta {
            if let Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) = &nv.value {
                let t = s.value();
                let t = t.trim();
                if !t.is_empty() {
                    lines.push(t.to_string());
                }
            }
        }
    }
    lines.join(" ")
}

#[derive(Default)]
struct FieldOpts {
    name: Option<String>,
    max: Option<Expr>,
    positive: bool,
    flatten: bool,
    skip: bool,
    with: Option<syn::Path>,
    recorded_if: Option<syn::Path>,
}

fn field_opts(attrs: &[Attribute]) -> syn::Result<FieldOpts> {
    let mut o = FieldOpts::default();
    for a in attrs.iter().filter(|a| a.path().is_ident("param")) {
        a.parse_nested_meta(|m| {
            if m.path.is_ident("name") {
                o.name = Some(m.value()?.parse::<LitStr>()?.value());
            } else if m.path.is_ident("max") {
                o.max = Some(m.value()?.parse::<Expr>()?);
            } else if m.path.is_ident("positive") {
                o.positive = true;
            } else if m.path.is_ident("flatten") {
                o.flatten = true;
            } else if m.path.is_ident("skip") {
                o.skip = true;
            } else if m.path.is_ident("with") {
                o.with = Some(m.value()?.parse::<syn::Path>()?);
            } else if m.path.is_ident("recorded_if") {
                o.recorded_if = Some(m.value()?.parse::<syn::Path>()?);
            } else {
                return Err(m.error("expected one of: name, max, positive, flatten, skip, with, recorded_if"));
            }
            Ok(())
        })?;
    }
    Ok(o)
}

/// Derives `lumen_core::config::Config` for a struct with named fields.
#[proc_macro_derive(Config, attributes(param))]
pub fn derive_config(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match config(&input) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn config(input: &DeriveInput) -> syn::Result<Tokens> {
    let ident = &input.ident;
    let fields = match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(f) => &f.named,
            _ => return Err(syn::Error::new_spanned(ident, "Config needs a struct with named fields")),
        },
        _ => return Err(syn::Error::new_spanned(ident, "Config can only be derived for a struct")),
    };
    let c = quote!(::lumen_core::config);
    let (mut specs, mut reads, mut writes) = (vec![], vec![], vec![]);
    let mut any_skip = false;
    for f in fields {
        let fid = f.ident.as_ref().expect("named field");
        let ty = &f.ty;
        let o = field_opts(&f.attrs)?;
        if o.skip {
            any_skip = true;
            continue;
        }
        if o.flatten {
            specs.push(quote!(v.extend_from_slice(<#ty as #c::Config>::schema());));
            reads.push(quote!(#fid: <#ty as #c::Config>::from_args(args, ctx)?,));
            writes.push(quote!(<#ty as #c::Config>::write(&self.#fid, out);));
            continue;
        }
        let name = o.name.unwrap_or_else(|| fid.to_string());
        let doc = doc_of(&f.attrs);
        let max = match &o.max {
            Some(m) => quote!(Some((#m) as i64)),
            None => quote!(None),
        };
        let via = match &o.with {
            Some(path) => quote!(#path),
            None => quote!(<#ty as #c::ParamType>),
        };
        specs.push(quote! {
            v.extend(#c::bounded(#via::specs(#name, #doc, &d.#fid), #max));
        });
        let read = quote!(#via::read(args, #name, ctx)?);
        let read = if o.positive { quote!(#c::positive(args, #name, #read)?) } else { read };
        reads.push(quote!(#fid: #read,));
        writes.push(match &o.recorded_if {
            Some(when) => quote!(if #when(self) { #via::write(&self.#fid, #name, out); }),
            None => quote!(#via::write(&self.#fid, #name, out);),
        });
    }
    let rest = if any_skip { quote!(..<Self as ::core::default::Default>::default()) } else { quote!() };
    let (ig, tg, wh) = input.generics.split_for_impl();
    Ok(quote! {
        impl #ig #c::Config for #ident #tg #wh {
            fn schema() -> &'static [::lumen_core::params::ParamSpec] {
                // Built once: the defaults come from `Default`, at run time.
                static SCHEMA: ::std::sync::OnceLock<::std::vec::Vec<::lumen_core::params::ParamSpec>> =
                    ::std::sync::OnceLock::new();
                SCHEMA.get_or_init(|| {
                    #[allow(unused_variables)]
                    let d = <Self as ::core::default::Default>::default();
                    let mut v = ::std::vec::Vec::new();
                    #(#specs)*
                    v
                })
            }
            #[allow(unused_variables)]
            fn from_args(args: &::lumen_core::params::Args, ctx: &dyn #c::Builder) -> ::lumen_core::Result<Self> {
                ::core::result::Result::Ok(Self { #(#reads)* #rest })
            }
            #[allow(unused_variables)]
            fn write(&self, out: &mut ::std::collections::BTreeMap<::std::string::String, ::std::string::String>) {
                #(#writes)*
            }
        }
    })
}

/// `RiemannLeft` -> `riemann_left`.
fn snake(s: &str) -> String {
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if ch.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(ch.to_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

/// Derives `lumen_core::config::Choice` (and `ParamType`) for an enum of unit variants,
/// plus inherent `NAMES`, `name` and `from_name`.
#[proc_macro_derive(Choice, attributes(choice))]
pub fn derive_choice(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match choice(&input) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn choice(input: &DeriveInput) -> syn::Result<Tokens> {
    let ident = &input.ident;
    let Data::Enum(e) = &input.data else {
        return Err(syn::Error::new_spanned(ident, "Choice can only be derived for an enum"));
    };
    let (mut names, mut vars) = (vec![], vec![]);
    for v in &e.variants {
        if !matches!(v.fields, Fields::Unit) {
            return Err(syn::Error::new_spanned(v, "Choice variants carry no data"));
        }
        let mut name = snake(&v.ident.to_string());
        for a in v.attrs.iter().filter(|a| a.path().is_ident("choice")) {
            a.parse_nested_meta(|m| {
                if m.path.is_ident("name") {
                    name = m.value()?.parse::<LitStr>()?.value();
                    Ok(())
                } else {
                    Err(m.error("expected `name = \"...\"`"))
                }
            })?;
        }
        if names.contains(&name) {
            return Err(syn::Error::new_spanned(v, format!("choice '{name}' is given twice")));
        }
        names.push(name);
        vars.push(v.ident.clone());
    }
    let c = quote!(::lumen_core::config);
    Ok(quote! {
        impl #ident {
            /// The words this choice accepts, in declaration order.
            pub const NAMES: &'static [&'static str] = &[#(#names),*];
            /// The word of this value.
            pub fn name(&self) -> &'static str {
                match self { #(#ident::#vars => #names,)* }
            }
            /// The value of `word`, if it is one of [`Self::NAMES`].
            pub fn from_name(word: &str) -> ::core::option::Option<Self> {
                match word { #(#names => ::core::option::Option::Some(#ident::#vars),)* _ => ::core::option::Option::None }
            }
        }
        impl #c::Choice for #ident {
            const NAMES: &'static [&'static str] = #ident::NAMES;
            fn name(&self) -> &'static str { #ident::name(self) }
            fn from_name(word: &str) -> ::core::option::Option<Self> { #ident::from_name(word) }
        }
        impl #c::ParamType for #ident {
            fn kind() -> ::lumen_core::params::ParamKind { ::lumen_core::params::ParamKind::Choice(#ident::NAMES) }
            fn text(&self) -> ::core::option::Option<::std::string::String> {
                ::core::option::Option::Some(#ident::name(self).to_string())
            }
            fn read(args: &::lumen_core::params::Args, name: &'static str, _: &dyn #c::Builder) -> ::lumen_core::Result<Self> {
                #c::read_choice(args, name)
            }
        }
    })
}
