//! Telling what a binary is: a core module, a component, or a function (a
//! component exporting `wasi:http/incoming-handler`), by header and exports.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Module,
    Component,
    /// A component exporting `wasi:http/incoming-handler`.
    Function,
    /// A component exporting `wasi:cli/run@0.3` (WASI 0.3).
    Command3,
    /// A component exporting `wasi:http/handler@0.3` (a WASI 0.3 function).
    Function3,
}

impl Kind {
    pub(crate) fn ext(self) -> &'static str {
        match self {
            Kind::Module => "module",
            Kind::Component => "component",
            Kind::Function => "function",
            Kind::Command3 => "p3-command",
            Kind::Function3 => "p3-function",
        }
    }
}

/// Does this component export `wasi:http/incoming-handler` at its top
/// level (the `wasi:http/proxy` world)?
pub(crate) fn exports_http_handler(bytes: &[u8]) -> bool {
    exports(bytes, "wasi:http/incoming-handler@")
}

/// What kind of component this is, by its top-level exports: a function,
/// a WASI 0.3 command, or (otherwise) a preview 2 command.
pub(crate) fn component_kind(bytes: &[u8]) -> Kind {
    if exports_http_handler(bytes) {
        Kind::Function
    } else if exports(bytes, "wasi:http/handler@0.3") {
        Kind::Function3
    } else if exports(bytes, "wasi:cli/run@0.3") {
        Kind::Command3
    } else {
        Kind::Component
    }
}

/// Does this component export an instance whose name starts with
/// `prefix` at its top level? Reads only the export sections.
fn exports(bytes: &[u8], prefix: &str) -> bool {
    use wasmparser::{Parser, Payload};
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(Payload::Version { .. }) => depth += 1,
            Ok(Payload::End(_)) => depth = depth.saturating_sub(1),
            Ok(Payload::ComponentExportSection(reader)) if depth == 1 => {
                for export in reader.into_iter().flatten() {
                    if export.name.name.starts_with(prefix) {
                        return true;
                    }
                }
            }
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

/// Core module (version 1) or component (layer 1) by header.
pub(crate) fn wasm_kind(b: &[u8]) -> Option<Kind> {
    if b.len() < 8 || &b[..4] != b"\0asm" {
        return None;
    }
    match b[4..8] {
        [1, 0, 0, 0] => Some(Kind::Module),
        [_, _, 1, 0] => Some(Kind::Component),
        _ => None,
    }
}

/// Is this a WebAssembly binary (module or component)?
pub fn is_wasm(b: &[u8]) -> bool {
    b.len() >= 4 && &b[..4] == b"\0asm"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_http_handler_export_of_a_function() {
        let function = wat::parse_str(
            r#"(component
                (core module $m (func (export "h")))
                (core instance $i (instantiate $m))
                (func $h (canon lift (core func $i "h")))
                (instance $ih (export "handle" (func $h)))
                (export "wasi:http/incoming-handler@0.2.0" (instance $ih)))"#,
        )
        .unwrap();
        assert!(exports_http_handler(&function));
        let command = wat::parse_str(
            r#"(component
                (core module $m (func (export "h")))
                (core instance $i (instantiate $m))
                (func $h (canon lift (core func $i "h")))
                (instance $ih (export "run" (func $h)))
                (export "wasi:cli/run@0.2.0" (instance $ih)))"#,
        )
        .unwrap();
        assert!(!exports_http_handler(&command));
    }

    #[test]
    fn detects_modules_and_components() {
        assert!(wasm_kind(b"\0asm\x01\0\0\0").is_some_and(|k| k == Kind::Module));
        assert!(wasm_kind(b"\0asm\x0d\0\x01\0").is_some_and(|k| k == Kind::Component));
        assert!(wasm_kind(b"#!/bin/sh\n").is_none());
    }
}
