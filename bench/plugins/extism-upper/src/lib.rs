//! `upper`: the input string, uppercased (Unicode, as `str::to_uppercase`),
//! the same work as the `upper` export of wasm-examples/plugin-upper.
use extism_pdk::*;

#[plugin_fn]
pub fn upper(input: String) -> FnResult<String> {
    Ok(input.to_uppercase())
}
