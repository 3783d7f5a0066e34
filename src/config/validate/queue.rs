//! One queue's checks, producing its [`QueueSettings`]: other queues it names become
//! indices, hours become minutes, limit actions become [`Limit`]s.

use super::{dtmf, secs, Check, ConfigFile, Where};
use crate::acd::{QueueIdx, QueueParams};
use crate::config::dialplan::is_prompt_name;
use crate::config::{
    parse_hours, Announce, Limit, LimitAction, QueueConfig, QueueSettings, QueueTiming,
};
use crate::media::prompt::MusicRef;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use toml::Spanned;

/// Another queue named by queue `name`'s setting `v`; `what` says which setting.
fn other_queue(
    index: &HashMap<&str, QueueIdx>,
    name: &str,
    v: &Spanned<String>,
    what: &str,
) -> Check<QueueIdx> {
    match index.get(v.get_ref().as_str()) {
        Some(i) if v.get_ref() != name => Ok(*i),
        _ => Err((
            v.span().into(),
            format!("queue '{name}': {what} '{}'", v.get_ref()),
        )),
    }
}

pub(super) fn queue(
    f: &ConfigFile,
    index: &HashMap<&str, QueueIdx>,
    name: &str,
    q: &QueueConfig,
) -> Check<QueueSettings> {
    let steps = steps(name, q)?;
    let overflow = match &q.overflow {
        Some(o) => Some((
            secs(o.after_s),
            other_queue(index, name, &o.queue, "overflow to unknown queue")?,
        )),
        None => None,
    };
    let hours = match &q.hours {
        Some(h) => Some(parse_hours(h.get_ref()).ok_or_else(|| {
            (
                h.span().into(),
                format!(
                    "queue '{name}': hours '{}' must look like \"09:00-22:00\"",
                    h.get_ref()
                ),
            )
        })?),
        None => None,
    };
    let closed_fallback = match &q.closed_fallback {
        Some(v) => Some(other_queue(
            index,
            name,
            v,
            "closed_fallback names unknown queue",
        )?),
        None => None,
    };
    let callback = callback(f, name, q)?;
    let (when_max_wait, when_full) = limits(index, name, q)?;
    let offers_callback = q.callback_offer_after_s.is_some() || when_max_wait == Limit::Callback;
    if offers_callback && callback.is_none() {
        return Err((
            at_queue(name),
            format!("queue '{name}': a callback offer (callback_offer_after_s or when_max_wait = \"callback\") needs callback_digit"),
        ));
    }
    queue_checks(f, name, q)?;
    if !(1..=100).contains(&q.sl_target_percent) {
        return Err((
            at_queue(name),
            format!(
                "queue '{name}': sl_target_percent must be 1..=100, not {}",
                q.sl_target_percent
            ),
        ));
    }
    let (mut voice, mut text, mut video) = (false, false, false);
    for c in &q.channels {
        match c.get_ref().as_str() {
            "voice" => voice = true,
            "text" => text = true,
            "video" => video = true,
            other => {
                return Err((
                    c.span().into(),
                    format!(
                        "queue '{name}': channel '{other}' is not \"voice\", \"text\" or \"video\""
                    ),
                ))
            }
        }
    }
    if !voice && !text && !video {
        return Err((
            Where::Key("channels".into()),
            format!("queue '{name}': channels must name \"voice\", \"text\" or \"video\""),
        ));
    }
    let timing = QueueTiming {
        ring_timeout: secs(q.ring_timeout_s),
        max_wait: secs(q.max_wait_s),
        music: match q.music.get_ref().as_str() {
            "silence" => MusicRef::Silence,
            "ringback" => MusicRef::Ringback,
            p => MusicRef::Prompt(p.to_string()),
        },
        announce: (q.announce.is_some() || q.announce_position || q.announce_wait).then(|| {
            Announce {
                prompt: q.announce.as_ref().map(|a| a.get_ref().clone()),
                position: q.announce_position,
                wait: q.announce_wait,
                language: q.language.clone(),
                every: secs(q.announce_every_s),
            }
        }),
        record: q.record,
        overflow,
        survey: q
            .survey
            .as_ref()
            .map(|p| (p.get_ref().clone(), secs(q.survey_timeout_s))),
        survey_call: q.survey_call_after_s.map(secs),
        callback,
        hours,
        closed_prompt: q.closed_prompt.as_ref().map(|p| p.get_ref().clone()),
        closed_fallback,
        voice,
        text,
        video,
        callback_offer: (
            q.callback_offer_after_s.map(secs),
            q.callback_prompt.as_ref().map_or_else(
                || format!("callback-offer-{}", q.language),
                |p| p.get_ref().clone(),
            ),
        ),
        when_max_wait,
        when_full,
    };
    Ok(QueueSettings {
        acd: QueueParams {
            name: name.to_string(),
            skill: q.skill.get_ref().clone(),
            max_length: q.max_length,
            wrap_up: secs(q.wrap_up_s),
            busy_delay: secs(q.busy_delay_s),
            strategy: q.strategy,
            steps,
            priority: q.priority,
            max_no_answer: q.max_no_answer,
            reserve: q.reserve,
            reserve_max_hold: secs(q.reserve_max_hold_s),
        },
        timing,
        // Filled in once every queue has passed: digit errors come after all queues' own.
        digits: BTreeMap::new(),
        sl_threshold: secs(q.sl_threshold_s),
    })
}

/// The line that opens the queue's table, for settings serde keeps no span of.
fn at_queue(name: &str) -> Where {
    Where::Key(format!("[queue.{name}"))
}

fn steps(name: &str, q: &QueueConfig) -> Check<Vec<(Duration, u8)>> {
    let mut last = None;
    for st in &q.steps {
        if !(1..=5).contains(&st.min_proficiency) || last.is_some_and(|l| st.after_s <= l) {
            return Err((
                at_queue(name),
                format!("queue '{name}': steps need min_proficiency 1-5 and increasing after_s"),
            ));
        }
        last = Some(st.after_s);
    }
    Ok(q.steps
        .iter()
        .map(|st| (secs(st.after_s), st.min_proficiency))
        .collect())
}

/// The callback digit, attempts and the pause between them.
fn callback(f: &ConfigFile, name: &str, q: &QueueConfig) -> Check<Option<(char, u32, Duration)>> {
    let Some(d) = &q.callback_digit else {
        return Ok(None);
    };
    let digit = dtmf(d.get_ref())
        .filter(|_| f.outbound.trunk.is_some() && f.media.anchor)
        .ok_or_else(|| {
            (
                d.span().into(),
                format!("queue '{name}': callback_digit must be a DTMF digit, and callbacks need [outbound] trunk and [media] anchor = true"),
            )
        })?;
    if q.callback_attempts == 0 {
        return Err((
            at_queue(name),
            format!("queue '{name}': callback_attempts must be at least 1"),
        ));
    }
    Ok(Some((digit, q.callback_attempts, secs(q.callback_retry_s))))
}

/// `when_max_wait` and `when_full`, with their queues resolved.
fn limits(index: &HashMap<&str, QueueIdx>, name: &str, q: &QueueConfig) -> Check<(Limit, Limit)> {
    let limit = |v: &Spanned<String>, what: &str| -> Check<Limit> {
        let full = what == "when_full";
        let not_one_of = || {
            (
                v.span().into(),
                format!(
                    "queue '{name}': {what} '{}' is not one of {}",
                    v.get_ref(),
                    if full {
                        "\"503\", \"480\", \"queue:NAME\""
                    } else {
                        "\"480\", \"queue:NAME\", \"message:PROMPT\", \"callback\""
                    }
                ),
            )
        };
        match LimitAction::parse(v.get_ref()) {
            Some(LimitAction::Queue(t)) => match index.get(t.as_str()) {
                Some(i) if t != name => Ok(Limit::Queue(*i)),
                _ => Err((
                    v.span().into(),
                    format!("queue '{name}': {what} names unknown queue '{t}'"),
                )),
            },
            Some(LimitAction::Reject(503)) if !full => Err(not_one_of()),
            Some(LimitAction::Reject(c)) => Ok(Limit::Reject(c)),
            Some(LimitAction::Message(p)) if !full => Ok(Limit::Message(p)),
            Some(LimitAction::Callback) if !full => Ok(Limit::Callback),
            _ => Err(not_one_of()),
        }
    };
    Ok((
        limit(&q.when_max_wait, "when_max_wait")?,
        limit(&q.when_full, "when_full")?,
    ))
}

/// The queue's settings that name no other queue: the survey, prompts, counts.
fn queue_checks(f: &ConfigFile, name: &str, q: &QueueConfig) -> Check<()> {
    if q.survey_call_after_s.is_some()
        && (q.survey.is_none() || f.outbound.trunk.is_none() || !f.media.anchor)
    {
        return Err((
            at_queue(name),
            format!("queue '{name}': survey_call_after_s needs survey, [outbound] trunk and [media] anchor = true"),
        ));
    }
    if q.max_no_answer == 0 {
        return Err((
            at_queue(name),
            format!("queue '{name}': max_no_answer must be at least 1"),
        ));
    }
    for p in [
        Some(&q.music),
        q.announce.as_ref(),
        q.survey.as_ref(),
        q.closed_prompt.as_ref(),
        q.callback_prompt.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        if !is_prompt_name(p.get_ref()) {
            return Err((
                p.span().into(),
                format!(
                    "queue '{name}': '{}' must be ringback, silence or a prompt name",
                    p.get_ref()
                ),
            ));
        }
    }
    if !is_prompt_name(&q.language) {
        return Err((
            at_queue(name),
            format!("queue '{name}': language '{}' is not a name", q.language),
        ));
    }
    if (q.announce.is_some() || q.announce_position || q.announce_wait) && q.announce_every_s == 0 {
        return Err((
            at_queue(name),
            format!("queue '{name}': announce_every_s must be > 0"),
        ));
    }
    if q.ring_timeout_s == 0 || q.max_wait_s == 0 || q.max_length == 0 {
        return Err((
            at_queue(name),
            format!("queue '{name}': ring_timeout_s, max_wait_s and max_length must be > 0"),
        ));
    }
    Ok(())
}

/// Digits that open a menu while a caller waits in queue `name`.
pub(super) fn waiting_digits(
    f: &ConfigFile,
    name: &str,
    q: &QueueConfig,
) -> Check<BTreeMap<char, String>> {
    let mut out = BTreeMap::new();
    for (digit, menu) in &q.digits {
        let Some(d) = dtmf(digit) else {
            return Err((
                at_queue(name),
                format!("queue '{name}': '{digit}' is not a DTMF digit"),
            ));
        };
        if !f.menus.contains_key(menu.get_ref()) {
            return Err((
                menu.span().into(),
                format!(
                    "queue '{name}': digit {digit} names unknown menu '{}'",
                    menu.get_ref()
                ),
            ));
        }
        out.insert(d, menu.get_ref().clone());
    }
    Ok(out)
}
