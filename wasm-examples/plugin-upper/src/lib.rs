//! A plugin component: exports `upper`, which upper-cases a string.
//! It imports nothing of its own, so any component host can call it.

wit_bindgen::generate!({
    path: "wit",
    world: "plugin",
});

struct Upper;

impl Guest for Upper {
    fn upper(s: String) -> String {
        s.to_uppercase()
    }
}

export!(Upper);
