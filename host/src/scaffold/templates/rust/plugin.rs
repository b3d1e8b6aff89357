
/// The plugin.
pub struct {{Type}};

impl capstan_sdk::Plugin for {{Type}} {
    fn manifest() -> capstan_sdk::Manifest {
        capstan_sdk::Manifest::new("{{name}}", "0.1.0")
            .watches::<ConfigMap>(){{manifest_extra}}
    }
}

capstan_sdk::export!({{Type}}: {{roles}});
