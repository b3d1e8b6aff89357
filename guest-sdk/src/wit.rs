//! The contract's types and imports, generated once from `wit/` on every target; authors use them
//! through the SDK's re-exports, and each plugin's `export!` maps its bindings onto these (`with:`).
//!
//! The world is the union of every plugin world's imports and exports nothing, so no plugin is
//! asked to implement what it does not: a component only imports what its code calls
//! (`wit-component` drops the rest).
#![allow(missing_docs, clippy::all, clippy::pedantic, unsafe_op_in_unsafe_fn)]

wit_bindgen::generate!({
    inline: "
        package capstan:sdk;

        world imports {
            import capstan:controller/types@0.2.0;
            import capstan:controller/log@0.2.0;
            import capstan:controller/status-channel@0.2.0;
            import capstan:controller/cache@0.2.0;
            import capstan:controller/pod-logs@0.2.0;
        }
    ",
    path: "../wit",
    additional_derives: [PartialEq, Eq, Hash],
    generate_all,
});
