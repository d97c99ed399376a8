//! Procedural macros for meshtrace: the `#[traced]` attribute.
//!
//! Use it through `meshtrace::traced` (feature `macros`); its documentation lives there.
//! The expansion refers only to `::meshtrace::__private::…`, so users need no direct
//! dependency on `tracing` or `tracing-opentelemetry`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{ToTokens, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, LitStr, Pat, ReturnType, Token, Type};

/// (Implementation of `meshtrace::traced`; use it through that re-export.)
#[proc_macro_attribute]
pub fn traced(args: TokenStream, item: TokenStream) -> TokenStream {
    match expand(args.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

fn expand(args: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let args = Args::parse(args)?;
    let function: ItemFn = syn::parse2(item).map_err(|err| {
        syn::Error::new(
            err.span(),
            "#[traced] can only be applied to a function or method with a body",
        )
    })?;
    if let Some(constness) = &function.sig.constness {
        return Err(syn::Error::new(
            constness.span(),
            "#[traced] cannot be applied to a `const fn`",
        ));
    }
    let params = parameters(&function);
    let mut record = Vec::new();
    let mut late = Vec::new();
    for recorded in &args.record {
        let (field, late_record) = recorded_field(recorded, &params)?;
        record.push(field);
        late.extend(late_record);
    }
    Ok(generate(&args, record, late, function))
}

/// How a listed parameter is recorded.
#[derive(Clone, Copy)]
enum Sigil {
    /// No sigil: the value itself for integers, floats, bools and strings, else `Debug`.
    Auto,
    /// `%param`: `Display`.
    Display,
    /// `?param`: `Debug`.
    Debug,
}

struct Recorded {
    sigil: Sigil,
    ident: Ident,
}

impl Parse for Recorded {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let sigil = if input.parse::<Option<Token![%]>>()?.is_some() {
            Sigil::Display
        } else if input.parse::<Option<Token![?]>>()?.is_some() {
            Sigil::Debug
        } else {
            Sigil::Auto
        };
        let ident = if input.peek(Token![self]) {
            let token: Token![self] = input.parse()?;
            return Err(syn::Error::new(
                token.span(),
                "`self` is never recorded; list the values you need in `fields(...)`",
            ));
        } else {
            input.parse()?
        };
        Ok(Self { sigil, ident })
    }
}

#[derive(Clone, Copy)]
enum ErrMode {
    Display,
    Debug,
}

struct Args {
    name: Option<LitStr>,
    level: Option<Ident>,
    fields: Option<TokenStream2>,
    record: Vec<Recorded>,
    err: ErrMode,
}

impl Args {
    fn parse(tokens: TokenStream2) -> syn::Result<Self> {
        let mut args = Args {
            name: None,
            level: None,
            fields: None,
            record: Vec::new(),
            err: ErrMode::Display,
        };
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                let name: LitStr = meta.value()?.parse()?;
                if name.value().is_empty() {
                    return Err(syn::Error::new(
                        name.span(),
                        "the span name cannot be empty",
                    ));
                }
                set_once(&mut args.name, name, &meta)
            } else if meta.path.is_ident("level") {
                let value = meta.value()?;
                let (text, span) = if value.peek(LitStr) {
                    let lit: LitStr = value.parse()?;
                    (lit.value(), lit.span())
                } else {
                    let ident: Ident = value.parse()?;
                    (ident.to_string(), ident.span())
                };
                let level = match text.to_ascii_lowercase().as_str() {
                    "trace" => "TRACE",
                    "debug" => "DEBUG",
                    "info" => "INFO",
                    "warn" => "WARN",
                    "error" => "ERROR",
                    _ => {
                        return Err(syn::Error::new(
                            span,
                            "unknown level; expected one of \"trace\", \"debug\", \"info\", \"warn\", \"error\"",
                        ));
                    }
                };
                set_once(&mut args.level, Ident::new(level, span), &meta)
            } else if meta.path.is_ident("fields") {
                let content;
                syn::parenthesized!(content in meta.input);
                set_once(&mut args.fields, content.parse::<TokenStream2>()?, &meta)
            } else if meta.path.is_ident("record") {
                let content;
                syn::parenthesized!(content in meta.input);
                let listed = Punctuated::<Recorded, Token![,]>::parse_terminated(&content)?;
                args.record.extend(listed);
                Ok(())
            } else if meta.path.is_ident("err") {
                let content;
                syn::parenthesized!(content in meta.input);
                let mode: Ident = content.parse()?;
                args.err = match mode.to_string().as_str() {
                    "display" => ErrMode::Display,
                    "debug" => ErrMode::Debug,
                    _ => {
                        return Err(syn::Error::new(
                            mode.span(),
                            "expected `err(display)` or `err(debug)`",
                        ));
                    }
                };
                Ok(())
            } else {
                Err(meta.error(
                    "unknown #[traced] argument; expected `name`, `level`, `fields`, `record` or `err`",
                ))
            }
        });
        syn::parse::Parser::parse2(parser, tokens)?;
        Ok(args)
    }
}

fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    meta: &syn::meta::ParseNestedMeta<'_>,
) -> syn::Result<()> {
    if slot.is_some() {
        return Err(meta.error("this #[traced] argument is given twice"));
    }
    *slot = Some(value);
    Ok(())
}

/// The function's named parameters (not `self`) and their types.
fn parameters(function: &ItemFn) -> Vec<(Ident, Type)> {
    let mut params = Vec::new();
    for input in &function.sig.inputs {
        if let FnArg::Typed(typed) = input
            && let Pat::Ident(pat) = &*typed.pat
        {
            params.push((pat.ident.clone(), (*typed.ty).clone()));
        }
    }
    params
}

/// The span field for a listed parameter, and for unsigned integers the statement that
/// records its value after the span is created.
fn recorded_field(
    recorded: &Recorded,
    params: &[(Ident, Type)],
) -> syn::Result<(TokenStream2, Option<TokenStream2>)> {
    let ident = &recorded.ident;
    let Some((_, ty)) = params.iter().find(|(name, _)| name == ident) else {
        return Err(syn::Error::new(
            ident.span(),
            format!("`record({ident})`: the function has no parameter named `{ident}`"),
        ));
    };
    let private = private_path();
    let name = ident.to_string();
    let value = match recorded.sigil {
        Sigil::Display => quote!(#private::tracing::field::display(&#ident)),
        Sigil::Debug => quote!(#private::tracing::field::debug(&#ident)),
        Sigil::Auto => match primitive(ty) {
            Some(Primitive::Value) => quote!(#ident),
            Some(Primitive::String) => quote!(#ident.as_str()),
            Some(Primitive::Unsigned) => {
                let field = quote_spanned!(ident.span()=> #name = #private::tracing::field::Empty);
                let record = quote_spanned!(ident.span()=>
                    #private::record_unsigned(&__meshtrace_span, #name, &#ident);
                );
                return Ok((field, Some(record)));
            }
            None => quote!(#private::tracing::field::debug(&#ident)),
        },
    };
    Ok((quote_spanned!(ident.span()=> #name = #value), None))
}

enum Primitive {
    /// Implements `tracing::Value` itself (also behind references).
    Value,
    /// An unsigned integer: `tracing-opentelemetry` would make it a string.
    Unsigned,
    /// `String`, recorded as `&str`.
    String,
}

/// Recognises, by name, the types `tracing` records natively.
fn primitive(ty: &Type) -> Option<Primitive> {
    match ty {
        Type::Reference(reference) => primitive(&reference.elem),
        Type::Paren(paren) => primitive(&paren.elem),
        Type::Path(path) if path.qself.is_none() => {
            let ident = path.path.get_ident()?;
            match ident.to_string().as_str() {
                "i8" | "i16" | "i32" | "i64" | "isize" | "f64" | "bool" | "str" => {
                    Some(Primitive::Value)
                }
                "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => Some(Primitive::Unsigned),
                "String" => Some(Primitive::String),
                _ => None,
            }
        }
        _ => None,
    }
}

fn private_path() -> TokenStream2 {
    quote!(::meshtrace::__private)
}

fn generate(
    args: &Args,
    record: Vec<TokenStream2>,
    late: Vec<TokenStream2>,
    function: ItemFn,
) -> TokenStream2 {
    let private = private_path();
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = function;
    let name = args
        .name
        .as_ref()
        .map(LitStr::value)
        .unwrap_or_else(|| sig.ident.to_string());
    let level = args
        .level
        .clone()
        .unwrap_or_else(|| Ident::new("INFO", Span::call_site()));
    let mut fields: Vec<TokenStream2> = record;
    if let Some(extra) = &args.fields
        && !extra.is_empty()
    {
        fields.push(extra.clone());
    }
    let fields = if fields.is_empty() {
        quote!()
    } else {
        quote!(, #(#fields),*)
    };
    let record_trait = match args.err {
        ErrMode::Display => quote!(ErrWithDisplay),
        ErrMode::Debug => quote!(ErrWithDebug),
    };
    // Late records run before the span is entered, so the sampler still sees them.
    let span = quote! {
        {
            let __meshtrace_span = #private::tracing::span!(
                target: ::core::module_path!(),
                #private::tracing::Level::#level,
                #name
                #fields
            );
            #(#late)*
            #private::mark_root(&__meshtrace_span);
            __meshtrace_span
        }
    };
    let record_result = quote! {
        {
            #[allow(unused_imports)]
            use #private::{#record_trait as _, AnyErr as _, NotResult as _};
            (&&#private::Returned(&__meshtrace_ret)).__meshtrace_record(&__meshtrace_span);
        }
    };

    let body = if sig.asyncness.is_some() {
        let annotation = return_annotation(&sig.output);
        // An unreachable typed `return` gives the async block its output type, so that `?`
        // conversions and deref coercions in the body resolve as in the original function
        // (the same trick as `tracing::instrument`).
        let type_hint = if annotation.is_empty() {
            quote!()
        } else {
            quote! {
                #[allow(
                    unknown_lints,
                    unreachable_code,
                    clippy::diverging_sub_expression,
                    clippy::empty_loop,
                    clippy::let_unit_value,
                    clippy::let_with_type_underscore,
                    clippy::needless_return,
                    clippy::unreachable
                )]
                if false {
                    let __meshtrace_fake_return #annotation = ::core::unreachable!();
                    return __meshtrace_fake_return;
                }
            }
        };
        quote! {
            let __meshtrace_span = #span;
            let __meshtrace_ret #annotation = #private::tracing::Instrument::instrument(
                async move {
                    #type_hint
                    #block
                },
                ::core::clone::Clone::clone(&__meshtrace_span),
            )
            .await;
            #record_result
            __meshtrace_ret
        }
    } else if matches!(sig.output, ReturnType::Default) {
        quote! {
            let __meshtrace_span = #span;
            let __meshtrace_guard = __meshtrace_span.enter();
            #block
        }
    } else {
        let closure_output = match return_annotation(&sig.output) {
            annotation if annotation.is_empty() => quote!(),
            _ => sig.output.to_token_stream(),
        };
        quote! {
            let __meshtrace_span = #span;
            let __meshtrace_guard = __meshtrace_span.enter();
            #[allow(clippy::redundant_closure_call)]
            let __meshtrace_ret = (move || #closure_output #block)();
            #record_result
            __meshtrace_ret
        }
    };

    quote! {
        #(#attrs)*
        #vis #sig {
            #body
        }
    }
}

/// `: Type` for the return value, or nothing when the type cannot be named in a `let`
/// (`impl Trait`) and must be inferred.
fn return_annotation(output: &ReturnType) -> TokenStream2 {
    match output {
        ReturnType::Default => quote!(: ()),
        ReturnType::Type(_, ty) if mentions_impl_trait(ty) => quote!(),
        ReturnType::Type(_, ty) => quote!(: #ty),
    }
}

fn mentions_impl_trait(ty: &Type) -> bool {
    fn any_impl(tokens: TokenStream2) -> bool {
        tokens.into_iter().any(|token| match token {
            proc_macro2::TokenTree::Ident(ident) => ident == "impl",
            proc_macro2::TokenTree::Group(group) => any_impl(group.stream()),
            _ => false,
        })
    }
    any_impl(ty.to_token_stream())
}
