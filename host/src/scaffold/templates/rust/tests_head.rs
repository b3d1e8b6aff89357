
#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config_map(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: capstan_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([("greeting".into(), "hello".into())])),
            ..Default::default()
        }
    }
