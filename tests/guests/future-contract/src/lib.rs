//! Built against a future contract version the host cannot know.

wit_bindgen::generate!({
    inline: "package capstan:controller@0.9.0; interface plugin { describe: func() -> string; } world w { export plugin; }",
});

struct F;

impl exports::capstan::controller::plugin::Guest for F {
    fn describe() -> String {
        "from the future".into()
    }
}

export!(F);
