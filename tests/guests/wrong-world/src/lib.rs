//! A valid component of some other world.

wit_bindgen::generate!({
    inline: "package other:thing; world w { export run: func() -> u32; }",
});

struct W;

impl Guest for W {
    fn run() -> u32 {
        7
    }
}

export!(W);
