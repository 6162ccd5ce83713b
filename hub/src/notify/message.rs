//! A notification rendered for people (pure): the title, the labelled facts (estate,
//! priority, what happened, where, the incident's state) and the links, in the recipient's
//! language, in the forms channels need — plain text, Markdown, HTML and one short SMS text.
//! Each chat robot builds its own payload from a [`Message`] (see `channels::robots`).
//!
//! Values come from configuration and from gateways (an area, a title): a line break in one
//! is folded to a space so it cannot forge a label or a link line, and HTML escapes every
//! value.

use super::body::NotificationBody;
use crate::roles::Lang;

/// A notification as people read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub language: Lang,
    /// One line: priority, estate, what happened.
    pub title: String,
    /// Labelled facts in the recipient's language (label, value).
    pub facts: Vec<(String, String)>,
    /// Plain text: the title, the facts, the links (e-mail's text part, generic use).
    pub text: String,
    /// Markdown (robots that take it).
    pub markdown: String,
    /// HTML (e-mail), every value escaped.
    pub html: String,
    /// The shortest form (SMS): the title, the links, the reply hint.
    pub short: String,
    /// The incident on the board.
    pub incident_url: Option<String>,
    /// The answer link (acknowledge / on my way).
    pub answer_url: Option<String>,
    /// `Reply ACK <code> …` where the channel takes replies.
    pub reply_hint: Option<String>,
}

/// The words of one language.
struct Words {
    estate: &'static str,
    priority: &'static str,
    what: &'static str,
    place: &'static str,
    state: &'static str,
    kind: &'static str,
    incident_link: &'static str,
    answer_link: &'static str,
    valid_until: &'static str,
}

const ZH: Words = Words {
    estate: "小区",
    priority: "优先级",
    what: "事件",
    place: "位置",
    state: "状态",
    kind: "通知类型",
    incident_link: "查看事件",
    answer_link: "确认 / 正在赶来",
    valid_until: "有效期至",
};

const EN: Words = Words {
    estate: "Estate",
    priority: "Priority",
    what: "What happened",
    place: "Where",
    state: "State",
    kind: "Notification",
    incident_link: "Open the incident",
    answer_link: "Acknowledge / on my way",
    valid_until: "valid until",
};

fn words(lang: Lang) -> &'static Words {
    match lang {
        Lang::ZhCn => &ZH,
        Lang::En => &EN,
    }
}

/// The labels of the incident link and the answer link, for channels that draw buttons.
pub fn link_words(lang: Lang) -> (&'static str, &'static str) {
    let w = words(lang);
    (w.incident_link, w.answer_link)
}

/// `P1 紧急`, `P3 Medium`; an unknown priority as given.
pub fn priority_words(lang: Lang, p: &str) -> String {
    let w = match (lang, p) {
        (Lang::ZhCn, "P1") => "紧急",
        (Lang::ZhCn, "P2") => "高",
        (Lang::ZhCn, "P3") => "中",
        (Lang::ZhCn, "P4") => "低",
        (Lang::En, "P1") => "Critical",
        (Lang::En, "P2") => "High",
        (Lang::En, "P3") => "Medium",
        (Lang::En, "P4") => "Low",
        _ => return p.to_owned(),
    };
    format!("{p} {w}")
}

/// The incident workflow's states (`incidents::workflow::IncidentState`) in words.
pub fn state_words(lang: Lang, s: &str) -> String {
    let w = match (lang, s) {
        (Lang::ZhCn, "discovered") => "已发现，待确认",
        (Lang::ZhCn, "assessed") => "已研判",
        (Lang::ZhCn, "reported") => "已上报",
        (Lang::ZhCn, "on_site") => "人员已到场",
        (Lang::ZhCn, "recorded") => "已记录",
        (Lang::ZhCn, "closed") => "已关闭",
        (Lang::ZhCn, "false_alarm") => "误报",
        (Lang::En, "discovered") => "discovered, not yet acknowledged",
        (Lang::En, "assessed") => "assessed",
        (Lang::En, "reported") => "reported",
        (Lang::En, "on_site") => "someone on site",
        (Lang::En, "recorded") => "recorded",
        (Lang::En, "closed") => "closed",
        (Lang::En, "false_alarm") => "false alarm",
        _ => return s.to_owned(),
    };
    w.to_owned()
}

fn kind_words(lang: Lang, k: &str) -> String {
    let w = match (lang, k) {
        (Lang::ZhCn, "escalation") => "升级通知",
        (Lang::ZhCn, "supervisor") => "主管提醒",
        (Lang::ZhCn, "response_target") => "响应超时",
        (Lang::ZhCn, "flood") => "报警泛滥",
        (Lang::ZhCn, "digest") => "汇总",
        (Lang::En, "escalation") => "escalation",
        (Lang::En, "supervisor") => "supervisor alert",
        (Lang::En, "response_target") => "response target missed",
        (Lang::En, "flood") => "alarm flood",
        (Lang::En, "digest") => "digest",
        _ => return k.to_owned(),
    };
    w.to_owned()
}

fn reply_hint(lang: Lang, code: &str) -> String {
    match lang {
        Lang::ZhCn => format!("回复 ACK {code} 确认，OMW {code} 表示正在赶来"),
        Lang::En => format!("Reply ACK {code} to acknowledge, OMW {code} if on your way"),
    }
}

/// `2026-12-01T17:30:00Z` → `2026-12-01 17:30 UTC`; anything else as given.
fn when(rfc3339: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M UTC").to_string(),
        Err(_) => one_line(rfc3339),
    }
}

/// A value on one line: line breaks (which could forge a label line) become spaces.
fn one_line(s: &str) -> String {
    s.split(['\r', '\n', '\u{2028}', '\u{2029}'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Escapes text for HTML element content and double-quoted attributes.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A URL inside Markdown's `(…)`: a `)` or a space would end it early.
fn md_url(url: &str) -> String {
    one_line(url)
        .replace(' ', "%20")
        .replace(')', "%29")
        .replace('(', "%28")
}

/// Markdown link text: brackets would end it early.
fn md_text(s: &str) -> String {
    one_line(s).replace('[', "(").replace(']', ")")
}

/// One notification's lines, shared by single messages and digest items.
struct Parts {
    title: String,
    facts: Vec<(String, String)>,
    incident_url: Option<String>,
    answer_url: Option<String>,
    answer_expires: Option<String>,
    reply_hint: Option<String>,
}

fn parts(body: &NotificationBody, lang: Lang) -> Parts {
    let w = words(lang);
    let estate = one_line(body.estate_name.as_deref().unwrap_or(&body.estate));
    let inc = body.incident.as_ref();
    let what = one_line(
        inc.map(|i| i.title.as_str())
            .filter(|t| !t.trim().is_empty())
            .unwrap_or(&body.text),
    );
    let mut facts = vec![(w.estate.to_owned(), estate.clone())];
    let mut title = String::new();
    if let Some(i) = inc {
        let p = priority_words(lang, &i.priority);
        title.push_str(&format!("[{}] ", one_line(&p)));
        facts.push((w.priority.to_owned(), one_line(&p)));
    }
    title.push_str(&format!("{estate} · {what}"));
    facts.push((w.what.to_owned(), what));
    if let Some(i) = inc {
        if !i.area.trim().is_empty() {
            facts.push((w.place.to_owned(), one_line(&i.area)));
        }
        facts.push((w.state.to_owned(), one_line(&state_words(lang, &i.state))));
    }
    // The hub's own sentence says why this notice went out (a step, a missed target).
    if inc.is_some_and(|i| i.title.trim() != body.text.trim()) && !body.text.trim().is_empty() {
        facts.push((
            w.kind.to_owned(),
            format!("{}: {}", kind_words(lang, &body.kind), one_line(&body.text)),
        ));
    } else {
        facts.push((w.kind.to_owned(), kind_words(lang, &body.kind)));
    }
    Parts {
        title,
        facts,
        incident_url: body.incident_url.as_deref().map(one_line),
        answer_url: body.answer_url.as_deref().map(one_line),
        answer_expires: body.answer_expires_at.as_deref().map(when),
        reply_hint: body.reply_code.as_deref().map(|c| reply_hint(lang, &one_line(c))),
    }
}

/// The link lines of one notification in each form.
struct Links {
    text: Vec<String>,
    markdown: Vec<String>,
    html: Vec<String>,
}

fn links(p: &Parts, w: &Words) -> Links {
    let mut l = Links {
        text: Vec::new(),
        markdown: Vec::new(),
        html: Vec::new(),
    };
    if let Some(u) = &p.incident_url {
        l.text.push(format!("{}: {u}", w.incident_link));
        l.markdown.push(format!("[{}]({})", w.incident_link, md_url(u)));
        l.html.push(format!(
            "<a href=\"{}\">{}</a>",
            html_escape(u),
            html_escape(w.incident_link)
        ));
    }
    if let Some(u) = &p.answer_url {
        let until = p
            .answer_expires
            .as_ref()
            .map(|e| format!(" ({} {e})", w.valid_until))
            .unwrap_or_default();
        l.text.push(format!("{}{until}: {u}", w.answer_link));
        l.markdown
            .push(format!("[{}]({}){}", w.answer_link, md_url(u), md_text(&until)));
        l.html.push(format!(
            "<a href=\"{}\">{}</a>{}",
            html_escape(u),
            html_escape(w.answer_link),
            html_escape(&until)
        ));
    }
    if let Some(h) = &p.reply_hint {
        l.text.push(h.clone());
        l.markdown.push(md_text(h));
        l.html.push(html_escape(h));
    }
    l
}

/// Renders a body in its `language`.
pub fn render(body: &NotificationBody) -> Message {
    if body.kind == "digest" {
        return render_digest(body);
    }
    let lang = body.language;
    let w = words(lang);
    let p = parts(body, lang);
    let l = links(&p, w);

    let mut text = p.title.clone();
    for (k, v) in &p.facts {
        text.push_str(&format!("\n{k}: {v}"));
    }
    for line in &l.text {
        text.push('\n');
        text.push_str(line);
    }

    let mut markdown = format!("**{}**\n", md_text(&p.title));
    for (k, v) in &p.facts {
        markdown.push_str(&format!("\n**{k}**: {}", md_text(v)));
    }
    if !l.markdown.is_empty() {
        markdown.push('\n');
        for line in &l.markdown {
            markdown.push_str(&format!("\n{line}"));
        }
    }

    let mut html = format!("<h3>{}</h3>\n<table>\n", html_escape(&p.title));
    for (k, v) in &p.facts {
        html.push_str(&format!(
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>\n",
            html_escape(k),
            html_escape(v)
        ));
    }
    html.push_str("</table>\n");
    for line in &l.html {
        html.push_str(&format!("<p>{line}</p>\n"));
    }

    let mut short = p.title.clone();
    for u in [&p.incident_url, &p.answer_url].into_iter().flatten() {
        short.push('\n');
        short.push_str(u);
    }
    if let Some(h) = &p.reply_hint {
        short.push('\n');
        short.push_str(h);
    }

    Message {
        language: lang,
        title: p.title,
        facts: p.facts,
        text,
        markdown,
        html,
        short,
        incident_url: p.incident_url,
        answer_url: p.answer_url,
        reply_hint: p.reply_hint,
    }
}

/// A digest: one title, one line per carried notification (priority, estate, what, state)
/// with that notification's links.
fn render_digest(body: &NotificationBody) -> Message {
    let lang = body.language;
    let w = words(lang);
    let n = body.items.len();
    let title = match lang {
        Lang::ZhCn => format!("{n} 条更新"),
        Lang::En if n == 1 => "1 update".to_owned(),
        Lang::En => format!("{n} updates"),
    };
    let mut text = title.clone();
    let mut markdown = format!("**{title}**\n");
    let mut html = format!("<h3>{}</h3>\n<ul>\n", html_escape(&title));
    let mut short = title.clone();
    let mut facts = Vec::new();
    for item in &body.items {
        let p = parts(item, lang);
        let state = item
            .incident
            .as_ref()
            .map(|i| format!(" · {}", one_line(&state_words(lang, &i.state))))
            .unwrap_or_default();
        let line = format!("{}{state}", p.title);
        facts.push((kind_words(lang, &item.kind), line.clone()));
        let l = links(&p, w);
        text.push_str(&format!("\n- {line}"));
        for t in &l.text {
            text.push_str(&format!("\n  {t}"));
        }
        markdown.push_str(&format!("\n- {}", md_text(&line)));
        if !l.markdown.is_empty() {
            markdown.push_str(&format!(" — {}", l.markdown.join(" · ")));
        }
        html.push_str(&format!("<li>{}", html_escape(&line)));
        for h in &l.html {
            html.push_str(&format!("<br>{h}"));
        }
        html.push_str("</li>\n");
        short.push_str(&format!("\n{}", p.title));
        if let Some(u) = &p.incident_url {
            short.push_str(&format!(" {u}"));
        }
    }
    html.push_str("</ul>\n");
    // The digest's own links (its answer link answers every item).
    let own = Parts {
        title: String::new(),
        facts: Vec::new(),
        incident_url: body.incident_url.as_deref().map(one_line),
        answer_url: body.answer_url.as_deref().map(one_line),
        answer_expires: body.answer_expires_at.as_deref().map(when),
        reply_hint: body.reply_code.as_deref().map(|c| reply_hint(lang, &one_line(c))),
    };
    let l = links(&own, w);
    for t in &l.text {
        text.push_str(&format!("\n{t}"));
    }
    for m in &l.markdown {
        markdown.push_str(&format!("\n\n{m}"));
    }
    for h in &l.html {
        html.push_str(&format!("<p>{h}</p>\n"));
    }
    if let Some(u) = &own.answer_url {
        short.push_str(&format!("\n{u}"));
    }
    if let Some(h) = &own.reply_hint {
        short.push_str(&format!("\n{h}"));
    }
    Message {
        language: lang,
        title,
        facts,
        text,
        markdown,
        html,
        short,
        incident_url: own.incident_url,
        answer_url: own.answer_url,
        reply_hint: own.reply_hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::body::IncidentSummary;

    fn body(lang: Lang) -> NotificationBody {
        NotificationBody {
            notification_id: 7,
            kind: "escalation".into(),
            role: "supervisor".into(),
            recipient: "Wang".into(),
            estate: "estate-a".into(),
            estate_name: Some("Riverside Gardens".into()),
            text: "Escalation step 1: P1 fire alarm not acknowledged".into(),
            created_at: "2026-12-01T16:00:00Z".into(),
            hub: "hub-1".into(),
            language: lang,
            incident: Some(IncidentSummary {
                id: 42,
                estate: "estate-a".into(),
                area: "Block 3 lobby".into(),
                category: "fire".into(),
                priority: "P1".into(),
                title: "Fire alarm".into(),
                state: "discovered".into(),
            }),
            incident_url: Some("https://centre.example.com/#/incidents/42".into()),
            answer_url: Some("https://centre.example.com/n/tok".into()),
            answer_expires_at: Some("2026-12-02T04:00:00Z".into()),
            reply_code: Some("K7Q2".into()),
            items: Vec::new(),
        }
    }

    #[test]
    fn chinese_names_every_fact_and_link() {
        let m = render(&body(Lang::ZhCn));
        assert_eq!(m.title, "[P1 紧急] Riverside Gardens · Fire alarm");
        for want in [
            "小区: Riverside Gardens",
            "优先级: P1 紧急",
            "事件: Fire alarm",
            "位置: Block 3 lobby",
            "状态: 已发现，待确认",
            "升级通知",
            "https://centre.example.com/#/incidents/42",
            "有效期至 2026-12-02 04:00 UTC",
            "回复 ACK K7Q2 确认，OMW K7Q2 表示正在赶来",
        ] {
            assert!(m.text.contains(want), "{want:?} not in\n{}", m.text);
        }
        assert!(
            m.markdown
                .contains("[查看事件](https://centre.example.com/#/incidents/42)"),
            "{}",
            m.markdown
        );
        assert!(m.markdown.contains("**位置**: Block 3 lobby"), "{}", m.markdown);
        assert_eq!(
            m.short,
            "[P1 紧急] Riverside Gardens · Fire alarm\nhttps://centre.example.com/#/incidents/42\n\
             https://centre.example.com/n/tok\n回复 ACK K7Q2 确认，OMW K7Q2 表示正在赶来"
        );
        assert_eq!(
            m.reply_hint.as_deref(),
            Some("回复 ACK K7Q2 确认，OMW K7Q2 表示正在赶来")
        );
    }

    #[test]
    fn english_names_every_fact_and_link_and_falls_back_to_the_estate_id() {
        let mut b = body(Lang::En);
        b.estate_name = None;
        b.incident.as_mut().unwrap().state = "on_site".into();
        b.incident.as_mut().unwrap().priority = "P3".into();
        let m = render(&b);
        assert_eq!(m.title, "[P3 Medium] estate-a · Fire alarm");
        for want in [
            "Estate: estate-a",
            "Priority: P3 Medium",
            "What happened: Fire alarm",
            "Where: Block 3 lobby",
            "State: someone on site",
            "Notification: escalation: Escalation step 1",
            "Open the incident: https://centre.example.com/#/incidents/42",
            "valid until 2026-12-02 04:00 UTC",
            "Reply ACK K7Q2 to acknowledge, OMW K7Q2 if on your way",
        ] {
            assert!(m.text.contains(want), "{want:?} not in\n{}", m.text);
        }
        assert!(
            m.html.contains("<th align=\"left\">Where</th><td>Block 3 lobby</td>"),
            "{}",
            m.html
        );
        assert_eq!(m.facts.len(), 6);
    }

    #[test]
    fn without_an_incident_the_text_is_what_happened_and_there_is_no_hint() {
        let mut b = body(Lang::En);
        b.incident = None;
        b.incident_url = None;
        b.answer_url = None;
        b.answer_expires_at = None;
        b.reply_code = None;
        b.kind = "flood".into();
        b.text = "Alarm flood at estate-a".into();
        let m = render(&b);
        assert_eq!(m.title, "Riverside Gardens · Alarm flood at estate-a");
        assert!(m.text.contains("Notification: alarm flood"), "{}", m.text);
        assert_eq!(m.short, m.title);
        assert_eq!(m.reply_hint, None);
    }

    #[test]
    fn html_escapes_every_value_and_no_value_forges_a_line() {
        let mut b = body(Lang::En);
        b.estate_name = Some("<b>Oak & \"Elm\"</b>".into());
        b.incident.as_mut().unwrap().area = "lobby\nPriority: P4 Low".into();
        b.incident.as_mut().unwrap().title = "<script>alert('x')</script>".into();
        b.incident_url = Some("https://c.example/#/incidents/42\"><script>".into());
        let m = render(&b);
        assert!(!m.html.contains("<script>"), "{}", m.html);
        assert!(!m.html.contains("<b>"), "{}", m.html);
        assert!(
            m.html.contains("&lt;b&gt;Oak &amp; &quot;Elm&quot;&lt;/b&gt;"),
            "{}",
            m.html
        );
        assert!(
            m.html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
            "{}",
            m.html
        );
        assert!(
            m.html
                .contains("href=\"https://c.example/#/incidents/42&quot;&gt;&lt;script&gt;\"")
        );
        assert!(!m.text.lines().any(|l| l.starts_with("Priority: P4")), "{}", m.text);
        assert!(m.text.contains("Where: lobby Priority: P4 Low"), "{}", m.text);
    }

    #[test]
    fn a_digest_has_one_title_and_one_line_per_item_with_its_links() {
        let mut second = body(Lang::En);
        second.incident.as_mut().unwrap().id = 43;
        second.incident.as_mut().unwrap().priority = "P4".into();
        second.incident.as_mut().unwrap().title = "Door held open".into();
        second.incident.as_mut().unwrap().state = "assessed".into();
        second.incident_url = Some("https://centre.example.com/#/incidents/43".into());
        second.answer_url = None;
        second.reply_code = None;
        for lang in [Lang::ZhCn, Lang::En] {
            let mut first = body(lang);
            first.incident.as_mut().unwrap().priority = "P3".into();
            let mut second = second.clone();
            second.language = lang;
            let mut d = body(lang);
            d.kind = "digest".into();
            d.incident = None;
            d.incident_url = None;
            d.answer_url = None;
            d.answer_expires_at = None;
            d.reply_code = None;
            d.items = vec![first, second];
            let m = render(&d);
            let (title, p3, p4, state) = match lang {
                Lang::ZhCn => ("2 条更新", "[P3 中]", "[P4 低]", "已研判"),
                Lang::En => ("2 updates", "[P3 Medium]", "[P4 Low]", "assessed"),
            };
            assert_eq!(m.title, title);
            let items: Vec<&str> = m.text.lines().filter(|l| l.starts_with("- ")).collect();
            assert_eq!(items.len(), 2, "{}", m.text);
            assert!(
                items[0].contains(p3) && items[0].contains("Riverside Gardens · Fire alarm"),
                "{}",
                m.text
            );
            assert!(items[1].contains(p4) && items[1].contains("Door held open") && items[1].contains(state));
            assert!(m.text.contains("#/incidents/42") && m.text.contains("#/incidents/43"));
            assert!(m.text.contains("n/tok"), "the first item's answer link: {}", m.text);
            assert_eq!(
                m.markdown.lines().filter(|l| l.starts_with("- ")).count(),
                2,
                "{}",
                m.markdown
            );
            assert_eq!(m.html.matches("<li>").count(), 2);
            assert!(m.short.starts_with(title) && m.short.contains("#/incidents/43"));
        }
    }
}
