
    #[test]
    fn added_reports_the_keys_and_closes() {
        use capstan_sdk::{Delivery, EventStatus, Handler, StatusChannel};
        let channel = StatusChannel::recorder();
        let out = <{{Type}} as Handler>::added(config_map("settings"), &channel);
        assert_eq!(out, EventStatus::Completed);
        let sent = channel.recorded();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1, Delivery::SendClose);
        assert!(sent[0].0.messages.iter().any(|m| m.key == "keys" && m.value == "1"));
    }
