
    #[test]
    fn plans_a_mirror_with_the_same_data() {
        use capstan_sdk::{Cache, HealthState, Reconciler};
        let cm = config_map("settings");
        let observed = <{{Type}} as Reconciler>::fetch(&cm, &Cache::from_objects(vec![])).unwrap();
        let plan = <{{Type}} as Reconciler>::plan(&cm, &observed).unwrap();
        let mirror = plan.applied().next().unwrap();
        assert_eq!(mirror["metadata"]["name"], "settings-mirror");
        assert_eq!(mirror["data"]["greeting"], "hello");
        let health = <{{Type}} as Reconciler>::health(&cm, &observed);
        assert_eq!(health[0].state, HealthState::Progressing, "no mirror yet");
    }
