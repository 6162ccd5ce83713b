//! Loading and validating configuration documents: defaults, every refusal names its key.

use super::*;
use crate::alarms::Priority;

const BASE: &str = r#"
[hub]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
database = "sqlite://data/hub.db"

[tls]
plaintext = true

[[estates]]
id = "estate-a"
name = "Riverside Gardens"
timezone = "Asia/Shanghai"
"#;

fn with(extra: &str) -> Result<HubConfig, ConfigError> {
    HubConfig::from_toml(&format!("{BASE}{extra}"))
}

#[test]
fn example_configuration_loads_with_defaults() {
    let c = with(
        r#"
[[rules.points]]
point = "outlet_pressure"
low = 0.25
deadband = 0.02
delay_s = 5
priority = "P3"

[[rules.points]]
point = "pump1_fault"
when = true
priority = "P3"
"#,
    )
    .unwrap();
    assert_eq!(c.hub.hub_id, "hub");
    assert_eq!(c.rules.points.len(), 2);
    assert_eq!(c.rules.points[0].priority, Priority::P3);
    assert_eq!(
        c.database_url().unwrap(),
        DatabaseUrl::Sqlite("sqlite://data/hub.db".into())
    );
}

#[test]
fn unknown_key_is_rejected_and_named() {
    let err = with("[[rules.points]]\npoint = \"p\"\nlow = 1.0\npriority = \"P3\"\nlimit = 3\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("limit"), "{err}");
}

#[test]
fn rule_without_condition_is_rejected() {
    let err = with("[[rules.points]]\npoint = \"p\"\npriority = \"P3\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("rules.points[0]"), "{err}");
    assert!(err.contains("neither low/high nor when"), "{err}");
}

#[test]
fn rule_naming_unknown_estate_is_rejected() {
    let err = with("[[rules.points]]\npoint = \"p\"\nhigh = 2.0\nestate = \"nowhere\"\npriority = \"P2\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("rules.points[0].estate"), "{err}");
}

#[test]
fn bad_priority_and_bad_address_are_rejected() {
    assert!(with("[[rules.points]]\npoint = \"p\"\nhigh = 2.0\npriority = \"P9\"\n").is_err());
    let err = HubConfig::from_toml(&BASE.replace("127.0.0.1:0\"\nhttp", "nowhere\"\nhttp"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("grpc_listen"), "{err}");
}

#[test]
fn low_above_high_and_unknown_database_scheme_are_rejected() {
    assert!(with("[[rules.points]]\npoint = \"p\"\nlow = 3.0\nhigh = 2.0\npriority = \"P3\"\n").is_err());
    let err = HubConfig::from_toml(&BASE.replace("sqlite://data/hub.db", "mysql://x"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("hub.database"), "{err}");
}

#[test]
fn postgres_url_is_accepted_by_the_parser() {
    let c = HubConfig::from_toml(&BASE.replace("sqlite://data/hub.db", "postgres://u@h/db")).unwrap();
    assert!(matches!(c.database_url().unwrap(), DatabaseUrl::Postgres(_)));
}

#[test]
fn incident_sections_load_with_defaults_and_policies_roster_and_procedures() {
    let c = with(
        r#"
[alarms]
flood_start_above = 20

[incidents]
response_target_s = 600

[[escalation.policies]]
category = "fire"
priority = "P1"
steps = [
  { role = "monitoring_room" },
  { role = "duty_manager", wait_s = 30, condition = "not_acknowledged", repeat = 2, repeat_every_s = 60 },
]

[[procedures]]
category = "pump_flooding"
steps = [{ id = "check", text = "Check the pump room", mandatory = true }]

[[roster]]
estate = "estate-a"
role = "supervisor"
name = "Zhang Wei"
channel = "http://127.0.0.1:9000/hook"

[[roster]]
role = "duty_manager"
name = "Centre duty manager"
channel = "log"

[notify]
webhook_secret = "0123456789abcdef0123"
"#,
    )
    .unwrap();
    assert_eq!(c.alarms.flood_start_above, 20);
    assert_eq!(c.alarms.flood_end_below, 5);
    assert_eq!(c.incidents.response_target_s, 600);
    assert_eq!(c.escalation.policies[0].steps[1].repeat, 2);
    assert_eq!(c.roster.len(), 2);
    assert_eq!(c.notify.max_attempts, 8);
}

#[test]
fn bad_incident_configuration_is_rejected_and_named() {
    for (extra, needle) in [
        (
            "[[roster]]\nrole = \"supervisor\"\nname = \"x\"\nchannel = \"http://h/x\"\n",
            "roster[0].channel",
        ),
        ("[[roster]]\nrole = \"boss\"\nname = \"x\"\nchannel = \"log\"\n", "boss"),
        (
            "[[roster]]\nestate = \"zz\"\nrole = \"supervisor\"\nname = \"x\"\nchannel = \"log\"\n",
            "roster[0].estate",
        ),
        (
            "[[roster]]\nrole = \"supervisor\"\nname = \"x\"\nchannel = \"mailto:x\"\n",
            "roster[0].channel",
        ),
        (
            "[[escalation.policies]]\ncategory = \"fire\"\nsteps = []\n",
            "escalation.policies[0].steps",
        ),
        ("[[escalation.policies]]\ncategory = \"arson\"\nsteps = []\n", "arson"),
        (
            "[[procedures]]\ncategory = \"fire\"\nsteps = [{ id = \"a b\", text = \"t\" }]\n",
            "procedures[0].steps[0].id",
        ),
        ("[alarms]\nflood_end_below = 50\n", "alarms.flood_end_below"),
        ("[notify]\nsurprise = 1\n", "surprise"),
    ] {
        let err = with(extra).unwrap_err().to_string();
        assert!(err.contains(needle), "{extra}: {err}");
    }
}

#[test]
fn limits_load_with_defaults_and_bad_limits_are_named() {
    let c = with("[limits.http]\nheader_timeout_s = 2\n").unwrap();
    assert_eq!(c.limits.http.header_timeout_s, 2);
    assert_eq!(c.limits.http.max_connections, 384);
    assert_eq!(c.limits.grpc.max_connections_per_source, 8);
    assert_eq!(c.limits.grpc.max_connections(1), 512);
    assert_eq!(c.limits.grpc.max_connections(1000), 2008, "two per configured estate");
    for (extra, needle) in [
        ("[limits.http]\nmax_connections = 0\n", "limits.http.max_connections"),
        (
            "[limits.http]\nmax_connections = 4\nmax_connections_per_source = 5\n",
            "limits.http.max_connections_per_source",
        ),
        (
            "[limits.grpc]\nmax_connections = 2\nmax_connections_per_source = 2\n",
            "limits.grpc.max_connections",
        ),
        ("[limits.grpc]\nidle = 3\n", "idle"),
    ] {
        let err = with(extra).unwrap_err().to_string();
        assert!(err.contains(needle), "{extra}: {err}");
    }
}

#[test]
fn duplicate_estate_is_rejected() {
    let err = with("[[estates]]\nid = \"estate-a\"\nname = \"again\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("estates[1].id"), "{err}");
}

#[test]
fn tls_is_required_and_plaintext_only_on_loopback() {
    let no_tls = BASE.replace("[tls]\nplaintext = true\n", "");
    let err = HubConfig::from_toml(&no_tls).unwrap_err().to_string();
    assert!(err.contains("tls: missing"), "{err}");

    let exposed = BASE.replace("grpc_listen = \"127.0.0.1:0\"", "grpc_listen = \"0.0.0.0:50051\"");
    let err = HubConfig::from_toml(&exposed).unwrap_err().to_string();
    assert!(err.contains("tls.plaintext") && err.contains("loopback"), "{err}");

    let half = no_tls.replace(
        "[[estates]]",
        "[tls]\ncert = \"hub.pem\"\nkey = \"hub.key\"\n\n[[estates]]",
    );
    let err = HubConfig::from_toml(&half).unwrap_err().to_string();
    assert!(err.contains("tls.client_ca"), "{err}");

    let full = exposed.replace(
        "[tls]\nplaintext = true\n",
        "[tls]\ncert = \"hub.pem\"\nkey = \"hub.key\"\nclient_ca = \"ca.pem\"\ncrl = \"crl.pem\"\n",
    );
    let c = HubConfig::from_toml(&full).unwrap();
    assert!(matches!(c.tls_mode().unwrap(), TlsMode::Tls { crl_poll_s: 3, .. }));
}

#[test]
fn gateways_must_name_a_served_estate_once() {
    let err = with("[[gateways]]\nid = \"gw-1\"\nestate = \"estate-z\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("gateways[0].estate"), "{err}");
    let err = with(
        "[[gateways]]\nid = \"gw-1\"\nestate = \"estate-a\"\n[[gateways]]\nid = \"gw-1\"\nestate = \"estate-a\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("gateways[1].id"), "{err}");
    let c = with("[[gateways]]\nid = \"gw-1\"\nestate = \"estate-a\"\n").unwrap();
    assert_eq!(c.gateways[0].identity().uri(), "urn:gatehouse:gateway:estate-a:gw-1");
}

#[test]
fn retention_defaults_to_90_days_and_refuses_zero() {
    let c = with("").unwrap();
    assert_eq!(c.retention.events_days, 90);
    assert_eq!(c.retention.purge_batch, 500);
    for (extra, needle) in [
        ("[retention]\nevents_days = 0\n", "retention.events_days"),
        ("[retention]\npurge_batch = 0\n", "retention.purge_batch"),
        ("[retention]\nevents_dayz = 3\n", "events_dayz"),
        ("[retention]\npartition_hours = 0\n", "retention.partition_hours"),
        ("[retention]\naudit_days = 30\n", "retention.audit_days"),
    ] {
        let err = with(extra).unwrap_err().to_string();
        assert!(err.contains(needle), "{extra}: {err}");
    }
}

#[test]
fn robots_load_and_bad_robots_are_refused_without_quoting_the_url() {
    let c = with(
        "[[notify.robots]]\nname = \"duty-ding\"\nkind = \"dingtalk\"\nurl = \"https://oapi.dingtalk.com/robot/send?access_token=TOKEN123456\"\nsecret = \"SECabc\"\n\
         [[notify.robots]]\nname = \"ops_slack\"\nkind = \"slack\"\nurl_env = \"GATEHOUSE_SLACK_URL\"\n\
         [[notify.robots]]\nname = \"local\"\nkind = \"teams\"\nurl = \"http://127.0.0.1:9000/hook\"\n\
         [[roster]]\nestate = \"estate-a\"\nrole = \"supervisor\"\nname = \"Wang\"\nchannel = \"robot:duty-ding\"\n",
    )
    .unwrap();
    assert_eq!(c.notify.robots.len(), 3);

    let robot = |body: &str| format!("[[notify.robots]]\n{body}\n");
    for (extra, key, needle) in [
        (
            robot(
                "name = \"Duty Ding\"\nkind = \"wecom\"\nurl = \"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=TOKEN123456\"",
            ),
            "notify.robots[0].name",
            "slug",
        ),
        (
            format!(
                "{}{}",
                robot("name = \"a\"\nkind = \"wecom\"\nurl = \"https://x.example/send?key=TOKEN123456\""),
                robot("name = \"a\"\nkind = \"slack\"\nurl = \"https://hooks.slack.com/services/TOKEN123456\"")
            ),
            "notify.robots[1].name",
            "twice",
        ),
        (
            robot("name = \"a\"\nkind = \"wecom\""),
            "notify.robots[0].url",
            "url_env",
        ),
        (
            robot("name = \"a\"\nkind = \"wecom\"\nurl = \"https://x.example/send?key=TOKEN123456\"\nurl_env = \"X\""),
            "notify.robots[0].url",
            "both",
        ),
        (
            robot("name = \"a\"\nkind = \"wecom\"\nurl = \"http://qyapi.example/send?key=TOKEN123456\""),
            "notify.robots[0].url",
            "https",
        ),
        (
            robot(
                "name = \"a\"\nkind = \"dingtalk\"\nurl = \"https://oapi.dingtalk.com/robot/send?access_token=TOKEN123456\"",
            ),
            "notify.robots[0].secret",
            "signing secret",
        ),
        (
            robot(
                "name = \"a\"\nkind = \"feishu\"\nurl = \"https://open.feishu.cn/open-apis/bot/v2/hook/TOKEN123456\"",
            ),
            "notify.robots[0].secret",
            "signing secret",
        ),
        (
            robot(
                "name = \"a\"\nkind = \"teams\"\nurl = \"http://127.0.0.1:9/hook?sig=TOKEN123456\"\nca_file = \"ca.pem\"",
            ),
            "notify.robots[0]",
            "ca_file",
        ),
        (
            robot("name = \"a\"\nkind = \"slack\"\nurl = \"ftp://hooks.example/TOKEN123456\""),
            "notify.robots[0].url",
            "https",
        ),
        (
            "[[roster]]\nestate = \"estate-a\"\nrole = \"supervisor\"\nname = \"Wang\"\nchannel = \"robot:nobody\"\n"
                .to_owned(),
            "roster[0].channel",
            "nobody",
        ),
    ] {
        let err = with(&extra).unwrap_err().to_string();
        assert!(err.contains(key) && err.contains(needle), "{extra}: {err}");
        assert!(!err.contains("TOKEN123456"), "a refusal quotes the robot's URL: {err}");
    }
    // A secret from the environment is enough for a signed platform.
    with(&robot(
        "name = \"a\"\nkind = \"feishu\"\nurl = \"https://open.feishu.cn/open-apis/bot/v2/hook/TOKEN123456\"\nsecret_env = \"GATEHOUSE_FEISHU_SECRET\"",
    ))
    .unwrap();
}

const EMAIL: &str = "[notify.email]\nserver = \"smtp.example.com\"\nfrom = \"Gatehouse <gatehouse@example.com>\"\n";
const SMS: &str = "[notify.sms]\nurl = \"https://sms.example.com/send?key={env:SMS_KEY}\"\nbody = '{\"to\":\"{to}\",\"text\":\"{text}\"}'\n";
const MAIL_GUARD: &str = "[[roster]]\nestate = \"estate-a\"\nrole = \"facility_team\"\nname = \"Ops\"\nchannel = \"mailto:ops@example.com\"\n";
const SMS_GUARD: &str =
    "[[roster]]\nestate = \"estate-a\"\nrole = \"facility_team\"\nname = \"Ops\"\nchannel = \"sms:+8613800000000\"\n";

fn refused(extra: &str, needle: &str) {
    let err = with(extra).expect_err(extra).to_string();
    assert!(err.contains(needle), "{extra}\n→ {err}");
}

#[test]
fn mailto_and_sms_channels_need_their_sections() {
    refused(MAIL_GUARD, "needs [notify.email]");
    refused(SMS_GUARD, "needs [notify.sms]");
    let c = with(&format!("{MAIL_GUARD}[notify]\n{EMAIL}")).unwrap();
    let e = c.notify.email.unwrap();
    assert_eq!(e.security, crate::notify::config::EmailSecurity::Starttls);
    let c = with(&format!("{SMS_GUARD}[notify]\n{SMS}")).unwrap();
    let s = c.notify.sms.unwrap();
    assert_eq!(
        (s.method.as_str(), s.content_type.as_str(), s.max_chars),
        ("POST", "application/json", 280)
    );
}

#[test]
fn email_settings_are_checked_and_named() {
    let e = |extra: &str| format!("[notify.email]\n{extra}");
    refused(&e("server = \"\"\nfrom = \"a@example.com\"\n"), "notify.email.server");
    refused(
        &e("server = \"smtp.example.com\"\nfrom = \"not a mailbox\"\n"),
        "notify.email.from",
    );
    refused(
        &e("server = \"smtp.example.com\"\nfrom = \"a@example.com\"\nport = 0\n"),
        "notify.email.port",
    );
    refused(
        &e("server = \"smtp.example.com\"\nfrom = \"a@example.com\"\nsecurity = \"none\"\n"),
        "notify.email.security",
    );
    refused(
        &e("server = \"smtp.example.com\"\nfrom = \"a@example.com\"\nsecurity = \"plain\"\n"),
        "plain",
    );
    refused(
        &e(
            "server = \"smtp.example.com\"\nfrom = \"a@example.com\"\nusername = \"u\"\npassword = \"p\"\npassword_env = \"P\"\n",
        ),
        "notify.email.password",
    );
    refused(
        &e("server = \"smtp.example.com\"\nfrom = \"a@example.com\"\nusername = \"u\"\n"),
        "notify.email.password",
    );
    refused(
        &e("server = \"smtp.example.com\"\nfrom = \"a@example.com\"\npassword_env = \"P\"\n"),
        "notify.email.username",
    );
    refused(
        &e("server = \"127.0.0.1\"\nfrom = \"a@example.com\"\nsecurity = \"none\"\nca_file = \"ca.pem\"\n"),
        "notify.email.ca_file",
    );
    for ok in [
        "server = \"127.0.0.1\"\nfrom = \"a@example.com\"\nsecurity = \"none\"\nport = 2525\n",
        "server = \"localhost\"\nfrom = \"a@example.com\"\nsecurity = \"none\"\n",
        "server = \"smtp.example.com\"\nfrom = \"门卫 <a@example.com>\"\nsecurity = \"tls\"\nusername = \"u\"\npassword_env = \"P\"\n",
    ] {
        with(&e(ok)).unwrap_or_else(|err| panic!("{ok}: {err}"));
    }
}

#[test]
fn sms_templates_are_checked_and_named() {
    let s = |extra: &str| format!("[notify.sms]\n{extra}");
    let body = "body = '{\"to\":\"{to}\",\"text\":\"{text}\"}'\n";
    refused(&s(&format!("url = \"not a url\"\n{body}")), "notify.sms.url");
    refused(
        &s(&format!("url = \"ftp://sms.example.com/\"\n{body}")),
        "notify.sms.url",
    );
    refused(&s(&format!("url = \"http://sms.example.com/\"\n{body}")), "loopback");
    refused(
        &s(&format!(
            "url = \"https://sms.example.com/\"\nmethod = \"PATCH\"\n{body}"
        )),
        "notify.sms.method",
    );
    refused(
        &s("url = \"https://sms.example.com/?to={to}&m={text}\"\nmethod = \"GET\"\nbody = \"x\"\n"),
        "notify.sms.body",
    );
    refused(
        &s(&format!(
            "url = \"https://sms.example.com/\"\ncontent_type = \"json\"\n{body}"
        )),
        "notify.sms.content_type",
    );
    refused(
        &s(&format!("url = \"https://sms.example.com/\"\nmax_chars = 69\n{body}")),
        "notify.sms.max_chars",
    );
    refused(
        &s("url = \"https://sms.example.com/\"\nbody = '{\"to\":\"{to}\"}'\n"),
        "{text}",
    );
    refused(
        &s("url = \"https://sms.example.com/\"\nbody = '{\"text\":\"{text}\"}'\n"),
        "{to}",
    );
    refused(
        &s(&format!(
            "url = \"https://sms.example.com/\"\n{body}inbound_token = \"short\"\n"
        )),
        "notify.sms.inbound_token",
    );
    refused(
        &s(&format!(
            "url = \"https://sms.example.com/\"\n{body}inbound_token = \"0123456789abcdef\"\ninbound_token_env = \"T\"\n"
        )),
        "notify.sms.inbound_token",
    );
    refused(
        &s(&format!(
            "url = \"https://sms.example.com/\"\n{body}[notify.sms.headers]\n\"bad name\" = \"x\"\n"
        )),
        "notify.sms.headers",
    );
    for ok in [
        "url = \"https://sms.example.com/send?to={to}&text={text}&key={env:SMS_KEY}\"\nmethod = \"get\"\n".to_owned(),
        format!("url = \"http://127.0.0.1:9/send\"\n{body}inbound_token_env = \"T\"\n"),
        "url = \"https://sms.example.com/\"\ncontent_type = \"application/x-www-form-urlencoded\"\nbody = \"to={to}&text={text}\"\n[notify.sms.headers]\nAuthorization = \"Bearer {env:SMS_KEY}\"\n".to_owned(),
    ] {
        with(&s(&ok)).unwrap_or_else(|err| panic!("{ok}: {err}"));
    }
}

#[test]
fn link_settings_are_checked() {
    refused("[notify]\npublic_url = \"centre.example.com\"\n", "notify.public_url");
    refused(
        "[notify]\npublic_url = \"ftp://centre.example.com\"\n",
        "notify.public_url",
    );
    refused("[notify]\nlink_secret = \"too short\"\n", "notify.link_secret");
    refused(
        "[notify]\nlink_secret = \"0123456789abcdef0123456789abcdef\"\nlink_secret_env = \"L\"\n",
        "notify.link_secret",
    );
    refused("[notify]\nanswer_link_ttl_s = 59\n", "notify.answer_link_ttl_s");
    let c = with(
        "[notify]\npublic_url = \"https://centre.example.com\"\nlink_secret = \"0123456789abcdef0123456789abcdef\"\nanswer_link_ttl_s = 60\n",
    )
    .unwrap();
    assert_eq!(c.notify.answer_link_ttl_s, 60);
}

#[test]
fn a_webhook_secret_may_come_from_the_environment_but_not_from_both_places() {
    let hook = "[[roster]]\nrole = \"supervisor\"\nname = \"x\"\nchannel = \"https://h/x\"\n";
    assert!(with(&format!("{hook}[notify]\nwebhook_secret_env = \"GATEHOUSE_HOOK\"\n")).is_ok());
    assert!(with(&format!("{hook}secret_env = \"GATEHOUSE_HOOK\"\n")).is_ok());
    let both = with(&format!("{hook}secret = \"0123456789abcdef\"\nsecret_env = \"X\"\n"))
        .unwrap_err()
        .to_string();
    assert!(both.contains("roster[0].secret"), "{both}");
    let both = with(&format!(
        "{hook}[notify]\nwebhook_secret = \"0123456789abcdef\"\nwebhook_secret_env = \"X\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(both.contains("notify.webhook_secret"), "{both}");
    let none = with(hook).unwrap_err().to_string();
    assert!(none.contains("signing secret"), "{none}");
}

#[test]
fn the_database_url_may_come_from_an_environment_variable_and_its_absence_is_named() {
    let mut c = HubConfig::from_toml(BASE).unwrap_or_else(|e| panic!("{e}"));
    c.hub.database_env = Some("GATEHOUSE_TEST_DB".into());
    let url = c
        .database_url_from(|name| (name == "GATEHOUSE_TEST_DB").then(|| "postgres://hub:pw@db/gatehouse".to_owned()))
        .unwrap();
    assert_eq!(url, DatabaseUrl::Postgres("postgres://hub:pw@db/gatehouse".into()));
    let missing = c.database_url_from(|_| None).unwrap_err().to_string();
    assert!(
        missing.contains("hub.database_env") && missing.contains("GATEHOUSE_TEST_DB"),
        "{missing}"
    );
    let bad = c
        .database_url_from(|_| Some("mysql://root:secret@x/db".into()))
        .unwrap_err()
        .to_string();
    assert!(bad.contains("hub.database_env") && !bad.contains("secret"), "{bad}");
    let neither = HubConfig::from_toml(&BASE.replace("database = \"sqlite://data/hub.db\"\n", ""));
    let err = neither
        .map(|c| c.database_url())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("hub.database"), "{err}");
}
