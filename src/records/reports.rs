//! The supervisor's reports: a day's or a range's calls per half hour, service level and
//! speed of answer against the queue's threshold, waits, abandonment, categories,
//! languages and channels, survey scores, first-contact resolution and each agent's day.
//!
//! The store hands over the range's records once, as a stream of borrowed rows
//! ([`Store::scan_calls`]: SQLite reads them in table order between the range's first and
//! last row, which is arrival order, instead of one index lookup per row), and every chart
//! is summed in that one pass: aggregating SQL would read the range once per chart and
//! sort it for each GROUP BY, about ten times the work on a month (measured in
//! `benches/reports.rs`). The agents' away periods are one SQL query (a window function)
//! both backends run. The same function serves the JSON endpoint and the CSV tables.

use super::{SqlParam, Store, StoreError};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// What to report on. Times are Unix milliseconds; `[from_ms, to_ms)`.
#[derive(Debug, Clone)]
pub struct ReportQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    /// The centre's offset from UTC: half hours and days are local.
    pub utc_offset_s: i64,
    /// 1,800 (half hours) or 86,400 (days).
    pub bucket_s: i64,
    pub queue: Option<String>,
    pub language: Option<String>,
    pub channel: Option<String>,
    /// Each queue's service-level threshold (answered within), in ms.
    pub thresholds: Vec<(String, i64)>,
    /// For calls of a queue not listed (renamed or removed since).
    pub default_threshold_ms: i64,
    /// Width of the wait histogram's bins, and how many before the open-ended last one.
    pub wait_bin_s: i64,
    pub wait_bins: i64,
    /// Away periods still open end now (or at `to_ms`, if sooner).
    pub now_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub offered: i64,
    pub answered: i64,
    pub abandoned: i64,
    /// Answered within the threshold / answered (None with nothing answered).
    pub service_level: Option<f64>,
    pub asa_s: Option<f64>,
    /// Abandoned / offered.
    pub abandon: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Interval {
    pub start_ms: i64,
    pub offered: i64,
    pub answered: i64,
    pub abandoned: i64,
    /// Answered within the queue's SL threshold.
    pub within: i64,
    pub service_level: Option<f64>,
    pub asa_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaitBin {
    pub from_s: i64,
    /// None: the last bin, open ended.
    pub to_s: Option<i64>,
    pub answered: i64,
    pub abandoned: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Waits {
    pub bin_s: i64,
    pub bins: Vec<WaitBin>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Count {
    pub name: String,
    pub calls: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreCount {
    pub score: i64,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreAverage {
    pub name: String,
    pub answers: i64,
    pub average: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Survey {
    /// Scores 1 to 5, each present.
    pub scores: Vec<ScoreCount>,
    pub answers: i64,
    pub average: Option<f64>,
    pub by_queue: Vec<ScoreAverage>,
    pub by_agent: Vec<ScoreAverage>,
}

/// First-contact resolution: of the answered calls with a caller number, those whose
/// caller called again within 24 hours (7 days) are repeats.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Fcr {
    pub calls: i64,
    pub repeat_24h: i64,
    pub repeat_7d: i64,
    pub fcr_24h: Option<f64>,
    pub fcr_7d: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AgentSummary {
    pub agent: String,
    /// Calls answered.
    pub calls: i64,
    pub talk_s: f64,
    /// After-call work (wrap-up).
    pub acw_s: f64,
    /// Not-ready time by reason ("rona" for ring-no-answer), within the range.
    pub not_ready_s: BTreeMap<String, f64>,
    pub not_ready_total_s: f64,
    /// Average handle time: (talk + after-call work) / calls.
    pub aht_s: Option<f64>,
    pub survey_answers: i64,
    pub survey_average: Option<f64>,
}

/// Which queues, languages and channels the range has calls in (the page's filters).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Options {
    pub queues: Vec<String>,
    pub languages: Vec<String>,
    pub channels: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub bucket_s: i64,
    pub options: Options,
    pub totals: Totals,
    pub intervals: Vec<Interval>,
    pub waits: Option<Waits>,
    pub categories: Vec<Count>,
    pub languages: Vec<Count>,
    pub channels: Vec<Count>,
    pub survey: Survey,
    pub fcr: Fcr,
    pub agents: Vec<AgentSummary>,
}

const DAY_MS: i64 = 86_400_000;

fn ratio(a: i64, b: i64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// A row's index in a short list of names, added if new (queues, languages and channels
/// number a handful: a linear search beats hashing, and nothing is allocated per row).
fn slot(names: &mut Vec<String>, name: &str) -> usize {
    match names.iter().position(|n| n == name) {
        Some(i) => i,
        None => {
            names.push(name.to_string());
            names.len() - 1
        }
    }
}

/// `map[key] += …` without allocating the key when it is already there.
fn entry<'m, V: Default>(map: &'m mut HashMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

#[derive(Default)]
struct IntervalAcc {
    offered: i64,
    answered: i64,
    abandoned: i64,
    within: i64,
    wait_ms: i64,
}

#[derive(Default)]
struct AgentAcc {
    calls: i64,
    talk_ms: i64,
    wrap_ms: i64,
    answers: i64,
    score_sum: i64,
}

fn caller_key(caller: &str) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    if caller.is_empty() || caller == "anonymous" {
        return None;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    caller.hash(&mut h);
    Some(h.finish())
}

/// Builds the report from the store: the range's records are read once
/// ([`Store::scan_calls`]) and every chart is summed in that one pass; then the callers'
/// next calls for first-contact resolution (up to 7 days after the range), and the
/// agents' away periods.
pub fn build(store: &mut dyn Store, q: &ReportQuery) -> Result<Report, StoreError> {
    let bucket_ms = q.bucket_s.max(1) * 1000;
    let off_ms = q.utc_offset_s * 1000;
    let bin_ms = q.wait_bin_s.max(1) * 1000;
    let bins = q.wait_bins.max(1);
    let threshold = |queue: &str| {
        q.thresholds
            .iter()
            .find(|(n, _)| n == queue)
            .map_or(q.default_threshold_ms, |t| t.1)
    };
    let is = |want: &Option<String>, v: &str| want.as_deref().is_none_or(|w| w == v);
    let mut intervals: BTreeMap<i64, IntervalAcc> = BTreeMap::new();
    let mut waits: Vec<(i64, i64)> = vec![(0, 0); bins as usize + 1];
    // (queue, language, channel) → calls, over the whole range (the filters' options).
    let (mut queues, mut langs, mut chans) = (Vec::new(), Vec::new(), Vec::new());
    let mut mix: HashMap<(usize, usize, usize), i64> = HashMap::new();
    let mut categories: HashMap<String, i64> = HashMap::new();
    let mut scores = [0i64; 5];
    let mut survey_queue: HashMap<String, (i64, i64)> = HashMap::new();
    let mut agents: HashMap<String, AgentAcc> = HashMap::new();
    // First-contact resolution: (caller, arrival, answered call of the report).
    let mut contacts: Vec<(u64, i64, bool)> = Vec::new();
    store.scan_calls(q.from_ms, q.to_ms, &mut |c| {
        let key = (
            slot(&mut queues, c.queue),
            slot(&mut langs, c.language),
            slot(&mut chans, c.channel),
        );
        *mix.entry(key).or_insert(0) += 1;
        let chosen =
            is(&q.queue, c.queue) && is(&q.language, c.language) && is(&q.channel, c.channel);
        let abandoned = c.outcome == Some("abandoned");
        if let Some(k) = caller_key(c.caller) {
            contacts.push((k, c.arrived_ms, chosen && c.answered));
        }
        if !chosen {
            return;
        }
        let i = intervals
            .entry((c.arrived_ms + off_ms).div_euclid(bucket_ms))
            .or_default();
        i.offered += 1;
        if c.answered {
            let wait = c.wait_ms.unwrap_or(0);
            i.answered += 1;
            i.wait_ms += wait;
            if wait <= threshold(c.queue) {
                i.within += 1;
            }
        }
        if abandoned {
            i.abandoned += 1;
        }
        if let Some(w) = c.wait_ms {
            let b = if w >= bins * bin_ms {
                bins
            } else {
                w.max(0) / bin_ms
            };
            if let Some(b) = waits.get_mut(b as usize) {
                b.0 += i64::from(c.answered);
                b.1 += i64::from(abandoned);
            }
        }
        if c.answered || c.category.is_some() {
            *entry(&mut categories, c.category.unwrap_or("")) += 1;
        }
        let score = c.survey.filter(|s| (1..=5).contains(s));
        if let Some(s) = score {
            scores[s as usize - 1] += 1;
            let e = entry(&mut survey_queue, c.queue);
            e.0 += 1;
            e.1 += s;
        }
        if let (Some(agent), true) = (c.agent, c.answered) {
            let a = entry(&mut agents, agent);
            a.calls += 1;
            a.talk_ms += c.talk_ms.unwrap_or(0);
            a.wrap_ms += c.wrap_ms.unwrap_or(0);
            if let Some(s) = score {
                a.answers += 1;
                a.score_sum += s;
            }
        }
    })?;

    let mut r = Report {
        bucket_s: q.bucket_s,
        ..Default::default()
    };
    let mut t = Totals::default();
    let (mut within, mut wait_ms) = (0, 0);
    for (b, i) in intervals {
        r.intervals.push(Interval {
            start_ms: b * bucket_ms - off_ms,
            offered: i.offered,
            answered: i.answered,
            abandoned: i.abandoned,
            within: i.within,
            service_level: ratio(i.within, i.answered),
            asa_s: ratio(i.wait_ms, i.answered).map(|x| x / 1000.0),
        });
        t.offered += i.offered;
        t.answered += i.answered;
        t.abandoned += i.abandoned;
        within += i.within;
        wait_ms += i.wait_ms;
    }
    t.service_level = ratio(within, t.answered);
    t.asa_s = ratio(wait_ms, t.answered).map(|x| x / 1000.0);
    t.abandon = ratio(t.abandoned, t.offered);
    r.totals = t;
    r.waits = Some(Waits {
        bin_s: q.wait_bin_s,
        bins: waits
            .iter()
            .zip(0..)
            .map(|(&(answered, abandoned), i)| WaitBin {
                from_s: i * q.wait_bin_s,
                to_s: (i < bins).then(|| (i + 1) * q.wait_bin_s),
                answered,
                abandoned,
            })
            .collect(),
    });
    let (mut by_lang, mut by_chan) = (BTreeMap::new(), BTreeMap::new());
    for (&(qi, li, ci), &n) in &mix {
        if is(&q.queue, &queues[qi]) && is(&q.language, &langs[li]) && is(&q.channel, &chans[ci]) {
            *by_lang.entry(langs[li].clone()).or_insert(0) += n;
            *by_chan.entry(chans[ci].clone()).or_insert(0) += n;
        }
    }
    let sorted = |m: BTreeMap<String, i64>| {
        let mut v: Vec<Count> = m
            .into_iter()
            .map(|(name, calls)| Count { name, calls })
            .collect();
        v.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.name.cmp(&b.name)));
        v
    };
    r.languages = sorted(by_lang);
    r.channels = sorted(by_chan);
    let names = |mut v: Vec<String>| {
        v.sort();
        v
    };
    r.options = Options {
        queues: names(queues),
        languages: names(langs),
        channels: names(chans),
    };
    let mut cats = sorted(categories.into_iter().collect());
    cats.truncate(20);
    r.categories = cats;
    let answers: i64 = scores.iter().sum();
    let sum: i64 = scores.iter().zip(1..).map(|(n, s)| n * s).sum();
    let averages = |m: HashMap<String, (i64, i64)>| {
        let mut v: Vec<ScoreAverage> = m
            .into_iter()
            .map(|(name, (answers, sum))| ScoreAverage {
                name,
                answers,
                average: sum as f64 / answers as f64,
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    };
    r.survey = Survey {
        scores: scores
            .iter()
            .zip(1..)
            .map(|(&count, score)| ScoreCount { score, count })
            .collect(),
        answers,
        average: ratio(sum, answers),
        by_queue: averages(survey_queue),
        by_agent: averages(
            agents
                .iter()
                .filter(|(_, a)| a.answers > 0)
                .map(|(k, a)| (k.clone(), (a.answers, a.score_sum)))
                .collect(),
        ),
    };
    r.fcr = fcr(store, q, contacts)?;
    r.agents = agent_summaries(store, q, agents)?;
    Ok(r)
}

/// Each answered call's caller: did they call again within 24 h, within 7 days? Their next
/// call may come after the range, so the 7 days after it are read too (callers only).
fn fcr(
    store: &mut dyn Store,
    q: &ReportQuery,
    mut contacts: Vec<(u64, i64, bool)>,
) -> Result<Fcr, StoreError> {
    let week = 7 * DAY_MS;
    if contacts.iter().any(|c| c.2) {
        store.scan_callers(q.to_ms, q.to_ms.saturating_add(week), &mut |caller, at| {
            if let Some(k) = caller_key(caller) {
                contacts.push((k, at, false));
            }
        })?;
    }
    contacts.sort_unstable();
    let (mut calls, mut d1, mut d7) = (0, 0, 0);
    for (i, c) in contacts.iter().enumerate() {
        if !c.2 {
            continue;
        }
        calls += 1;
        // The next call of the same caller: later in time (one in the same millisecond is
        // the same contact, not a repeat).
        let next = contacts[i + 1..]
            .iter()
            .take_while(|n| n.0 == c.0)
            .find(|n| n.1 > c.1);
        if let Some(n) = next {
            let gap = n.1 - c.1;
            d1 += i64::from(gap <= DAY_MS);
            d7 += i64::from(gap <= week);
        }
    }
    Ok(Fcr {
        calls,
        repeat_24h: d1,
        repeat_7d: d7,
        fcr_24h: ratio(calls - d1, calls),
        fcr_7d: ratio(calls - d7, calls),
    })
}

fn agent_summaries(
    store: &mut dyn Store,
    q: &ReportQuery,
    calls: HashMap<String, AgentAcc>,
) -> Result<Vec<AgentSummary>, StoreError> {
    let mut by: BTreeMap<String, AgentSummary> = calls
        .into_iter()
        .map(|(agent, a)| {
            let s = AgentSummary {
                agent: agent.clone(),
                calls: a.calls,
                talk_s: a.talk_ms as f64 / 1000.0,
                acw_s: a.wrap_ms as f64 / 1000.0,
                aht_s: ratio(a.talk_ms + a.wrap_ms, a.calls).map(|x| x / 1000.0),
                survey_answers: a.answers,
                survey_average: ratio(a.score_sum, a.answers),
                ..Default::default()
            };
            (agent, s)
        })
        .collect();
    // Away periods: each row lasts until the agent's next one. A period that began up to
    // a day before the range counts for its part inside it.
    let end = q.to_ms.min(q.now_ms.max(q.from_ms));
    let rows = store.select(
        "SELECT agent, state, COALESCE(reason, ''), at_ms,
           LEAD(at_ms) OVER (PARTITION BY agent ORDER BY at_ms, id)
         FROM agent_states
         WHERE at_ms < CAST(?2 AS BIGINT) AND at_ms >= CAST(?1 AS BIGINT) - 86400000",
        &[SqlParam::Int(q.from_ms), SqlParam::Int(q.to_ms)],
    )?;
    for row in rows {
        if row[1].text() != "not-ready" {
            continue;
        }
        let (start, stop) = (row[3].int().max(q.from_ms), row[4].opt_int().unwrap_or(end));
        let ms = stop.min(end) - start;
        if ms <= 0 {
            continue;
        }
        let agent = row[0].text();
        let reason = match row[2].text() {
            r if r.is_empty() => "manual".to_string(),
            r => r,
        };
        let a = by.entry(agent.clone()).or_insert_with(|| AgentSummary {
            agent,
            ..Default::default()
        });
        *a.not_ready_s.entry(reason).or_insert(0.0) += ms as f64 / 1000.0;
        a.not_ready_total_s += ms as f64 / 1000.0;
    }
    Ok(by.into_values().collect())
}

/// One of the report's tables as CSV (`section`: agents, intervals, categories,
/// survey-agents, waits), or None for a section that is not a table.
pub fn csv(r: &Report, section: &str) -> Option<String> {
    use crate::util::csv::push_row;
    let f = |x: f64| format!("{x:.1}");
    let of = |x: Option<f64>| x.map(f).unwrap_or_default();
    let mut out = String::new();
    match section {
        "agents" => {
            let reasons: std::collections::BTreeSet<&String> =
                r.agents.iter().flat_map(|a| a.not_ready_s.keys()).collect();
            let mut head: Vec<String> = ["agent", "calls", "talk_s", "acw_s"]
                .map(String::from)
                .to_vec();
            head.extend(reasons.iter().map(|k| format!("not_ready_{k}_s")));
            head.extend(
                [
                    "not_ready_total_s",
                    "aht_s",
                    "survey_answers",
                    "survey_average",
                ]
                .map(String::from),
            );
            push_row(&mut out, &head);
            for a in &r.agents {
                let mut row = vec![
                    a.agent.clone(),
                    a.calls.to_string(),
                    f(a.talk_s),
                    f(a.acw_s),
                ];
                row.extend(
                    reasons
                        .iter()
                        .map(|k| f(a.not_ready_s.get(*k).copied().unwrap_or(0.0))),
                );
                row.extend([
                    f(a.not_ready_total_s),
                    of(a.aht_s),
                    a.survey_answers.to_string(),
                    a.survey_average
                        .map(|x| format!("{x:.2}"))
                        .unwrap_or_default(),
                ]);
                push_row(&mut out, &row);
            }
        }
        "intervals" => {
            push_row(
                &mut out,
                &[
                    "start_ms",
                    "offered",
                    "answered",
                    "abandoned",
                    "within_sl",
                    "service_level",
                    "asa_s",
                ],
            );
            for i in &r.intervals {
                push_row(
                    &mut out,
                    &[
                        i.start_ms.to_string(),
                        i.offered.to_string(),
                        i.answered.to_string(),
                        i.abandoned.to_string(),
                        i.within.to_string(),
                        i.service_level
                            .map(|x| format!("{x:.3}"))
                            .unwrap_or_default(),
                        of(i.asa_s),
                    ],
                );
            }
        }
        "categories" => {
            push_row(&mut out, &["category", "calls"]);
            for c in &r.categories {
                push_row(&mut out, &[c.name.clone(), c.calls.to_string()]);
            }
        }
        "survey-agents" => {
            push_row(&mut out, &["agent", "answers", "average"]);
            for a in &r.survey.by_agent {
                push_row(
                    &mut out,
                    &[
                        a.name.clone(),
                        a.answers.to_string(),
                        format!("{:.2}", a.average),
                    ],
                );
            }
        }
        "waits" => {
            push_row(&mut out, &["from_s", "to_s", "answered", "abandoned"]);
            for b in r.waits.iter().flat_map(|w| &w.bins) {
                push_row(
                    &mut out,
                    &[
                        b.from_s.to_string(),
                        b.to_s.map(|x| x.to_string()).unwrap_or_default(),
                        b.answered.to_string(),
                        b.abandoned.to_string(),
                    ],
                );
            }
        }
        _ => return None,
    }
    Some(out)
}

/// Generated records for benchmarks and end-to-end tests: a day of `calls` calls shaped
/// like the 120 centre's (Korean mostly, the 120+9 languages, some text and video; about
/// 85 % answered, waits mostly short; categories, survey answers, repeat callers; agents
/// 1001-1050 with breaks). The same seed gives the same records.
pub fn synthetic_day(day_start_ms: i64, calls: usize, seed: u64) -> Vec<super::RecordEvent> {
    use super::{Outcome, RecordEvent};
    use rand::{Rng, SeedableRng};
    const CATEGORIES: [&str; 24] = [
        "교통",
        "여권",
        "주차",
        "세금",
        "복지",
        "수도",
        "쓰레기",
        "버스",
        "지하철",
        "민원",
        "주민등록",
        "부동산",
        "환경",
        "보건",
        "문화",
        "교육",
        "일자리",
        "주택",
        "안전",
        "관광",
        "외국인",
        "장애인",
        "노인",
        "청년",
    ];
    const LANGS: [(&str, &str); 6] = [
        ("general", "ko"),
        ("en", "en"),
        ("zh", "zh"),
        ("ja", "ja"),
        ("vi", "vi"),
        ("mn", "mn"),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut ev = Vec::with_capacity(calls * 6);
    // 08:00 to 22:00 local, denser around 10:00 and 14:00.
    let open = day_start_ms + 8 * 3_600_000;
    let span = 14 * 3_600_000;
    let callers = (calls as u64 * 4 / 5).max(1);
    for i in 0..calls {
        let id = format!("syn{seed:x}-{i}");
        let a: f64 = rng.gen::<f64>();
        let b: f64 = rng.gen::<f64>();
        let at = open + ((a + b) / 2.0 * span as f64) as i64;
        let (queue, language) = if rng.gen_ratio(1, 10) {
            LANGS[1 + rng.gen_range(0..5)]
        } else {
            LANGS[0]
        };
        let channel = match rng.gen_range(0..100) {
            0..=89 => "voice",
            90..=97 => "text",
            _ => "video",
        };
        ev.push(RecordEvent::Arrived {
            id: id.clone(),
            sip_call_id: format!("{id}@carrier"),
            trunk: "carrier".into(),
            caller: format!("010{:08}", rng.gen_range(0..callers)),
            dialled: "120".into(),
            channel,
            queue: queue.into(),
            language: language.into(),
            at_ms: at,
        });
        // Waits: most within 20 s, a tail to a few minutes.
        let wait = if rng.gen_ratio(3, 4) {
            rng.gen_range(1_000..20_000)
        } else {
            rng.gen_range(20_000..240_000)
        };
        let agent = format!("{}", 1001 + rng.gen_range(0..50));
        if rng.gen_ratio(85, 100) {
            ev.push(RecordEvent::Offered {
                id: id.clone(),
                agent: agent.clone(),
                at_ms: at + wait - 2_000,
            });
            ev.push(RecordEvent::Answered {
                id: id.clone(),
                agent: agent.clone(),
                at_ms: at + wait,
            });
            let talk = rng.gen_range(30_000..400_000);
            ev.push(RecordEvent::Ended {
                id: id.clone(),
                outcome: Outcome::Answered,
                side: "caller",
                sip_cause: 200,
                at_ms: at + wait + talk,
            });
            ev.push(RecordEvent::WrapUp {
                id: id.clone(),
                wrap_ms: rng.gen_range(2_000..10_000),
            });
            ev.push(RecordEvent::Notes {
                id: id.clone(),
                category: Some(CATEGORIES[rng.gen_range(0..CATEGORIES.len())].into()),
                notes: None,
            });
            if rng.gen_ratio(3, 10) {
                let score = [5, 5, 5, 4, 4, 3, 2, 1][rng.gen_range(0..8)];
                ev.push(RecordEvent::Survey { id, score });
            }
        } else {
            ev.push(RecordEvent::Ended {
                id,
                outcome: Outcome::Abandoned,
                side: "caller",
                sip_cause: 487,
                at_ms: at + wait,
            });
        }
    }
    // Each agent: a break in the morning, lunch, and the odd ring-no-answer.
    for n in 0..50 {
        let agent = format!("{}", 1001 + n);
        let mut away = |state: &'static str, reason: Option<&str>, at_ms: i64| {
            ev.push(RecordEvent::AgentState {
                agent: agent.clone(),
                state,
                reason: reason.map(str::to_string),
                at_ms,
            })
        };
        let brk = open + 2 * 3_600_000 + n * 60_000;
        away("not-ready", Some("break"), brk);
        away("available", None, brk + 15 * 60_000);
        let lunch = open + 4 * 3_600_000 + n * 60_000;
        away("not-ready", Some("meal"), lunch);
        away("available", None, lunch + 3_600_000);
        if n % 7 == 0 {
            let rona = open + 6 * 3_600_000;
            away("not-ready", Some("rona"), rona);
            away("available", None, rona + 90_000);
        }
    }
    ev
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::records::{Outcome, RecordEvent};

    /// 2026-12-01 00:00 in Seoul (+09:00), in Unix ms.
    pub(crate) const DAY: i64 = 1_796_050_800_000;
    const MIN: i64 = 60_000;
    const H: i64 = 60 * MIN;

    struct Call<'a> {
        id: &'a str,
        caller: &'a str,
        queue: &'a str,
        at: i64,
        wait_ms: i64,
        /// (agent, talk ms, wrap ms); None: abandoned after `wait_ms`.
        answered: Option<(&'a str, i64, Option<i64>)>,
        category: Option<&'a str>,
        survey: Option<u8>,
    }

    fn events(c: &Call<'_>) -> Vec<RecordEvent> {
        let lang = if c.queue == "en" { "en" } else { "ko" };
        let mut ev = vec![RecordEvent::Arrived {
            id: c.id.into(),
            sip_call_id: format!("sip-{}", c.id),
            trunk: "carrier".into(),
            caller: c.caller.into(),
            dialled: "120".into(),
            channel: "voice",
            queue: c.queue.into(),
            language: lang.into(),
            at_ms: c.at,
        }];
        let end = match c.answered {
            Some((agent, talk, wrap)) => {
                let at = c.at + c.wait_ms;
                ev.push(RecordEvent::Offered {
                    id: c.id.into(),
                    agent: agent.into(),
                    at_ms: at - 1,
                });
                ev.push(RecordEvent::Answered {
                    id: c.id.into(),
                    agent: agent.into(),
                    at_ms: at,
                });
                ev.push(RecordEvent::Ended {
                    id: c.id.into(),
                    outcome: Outcome::Answered,
                    side: "caller",
                    sip_cause: 200,
                    at_ms: at + talk,
                });
                if let Some(w) = wrap {
                    ev.push(RecordEvent::WrapUp {
                        id: c.id.into(),
                        wrap_ms: w,
                    });
                }
                return with_extras(ev, c);
            }
            None => RecordEvent::Ended {
                id: c.id.into(),
                outcome: Outcome::Abandoned,
                side: "caller",
                sip_cause: 487,
                at_ms: c.at + c.wait_ms,
            },
        };
        ev.push(end);
        with_extras(ev, c)
    }

    fn with_extras(mut ev: Vec<RecordEvent>, c: &Call<'_>) -> Vec<RecordEvent> {
        if let Some(cat) = c.category {
            ev.push(RecordEvent::Notes {
                id: c.id.into(),
                category: Some(cat.into()),
                notes: None,
            });
        }
        if let Some(score) = c.survey {
            ev.push(RecordEvent::Survey {
                id: c.id.into(),
                score,
            });
        }
        ev
    }

    fn away(agent: &str, state: &'static str, reason: Option<&str>, at_ms: i64) -> RecordEvent {
        RecordEvent::AgentState {
            agent: agent.into(),
            state,
            reason: reason.map(str::to_string),
            at_ms,
        }
    }

    /// A known day: its answers are worked out by hand in the comments.
    pub(crate) fn known_day(s: &mut dyn Store) {
        let mut ev = Vec::new();
        let nine = DAY + 9 * H;
        // 09:00-09:30, general: 12 offered; 8 answered in 5 s and 2 in 30 s (threshold
        // 20 s: SL 8/10 = 80 %, ASA (40 + 60) / 10 = 10 s); 2 abandoned after 45 s.
        let ids: Vec<String> = (0..12).map(|i| format!("g{i}")).collect();
        let callers: Vec<String> = (0..12).map(|i| format!("0103000{i:04}")).collect();
        for i in 0..12 {
            let (caller, agent) = match i {
                0 => ("0101111", "1001"),
                1 => ("0102222", "1001"),
                _ => (callers[i].as_str(), if i < 6 { "1001" } else { "1002" }),
            };
            let answered = match i {
                0..=7 => Some((agent, 60_000, Some(10_000))),
                8 | 9 => Some((agent, 120_000, Some(20_000))),
                _ => None,
            };
            ev.extend(events(&Call {
                id: &ids[i],
                caller,
                queue: "general",
                at: nine + i as i64 * MIN,
                wait_ms: match i {
                    0..=7 => 5_000,
                    8 | 9 => 30_000,
                    _ => 45_000,
                },
                answered,
                category: match i {
                    0..=4 => Some("여권"),
                    5..=7 => Some("교통"),
                    _ => None,
                },
                survey: match i {
                    0 | 1 => Some(5),
                    2 => Some(4),
                    8 => Some(1),
                    _ => None,
                },
            }));
        }
        // 14:00-14:30, en (threshold 60 s): 0101111 calls again (a repeat within 24 h),
        // answered in 3 s; another answered in 50 s; one abandoned after 2 s.
        let two = DAY + 14 * H;
        for (i, (caller, wait, answered)) in [
            ("0101111", 3_000, Some(("1003", 30_000, None))),
            ("0109999", 50_000, Some(("1003", 30_000, None))),
            ("0108888", 2_000, None),
        ]
        .into_iter()
        .enumerate()
        {
            let id = format!("e{i}");
            ev.extend(events(&Call {
                id: &id,
                caller,
                queue: "en",
                at: two + i as i64 * MIN,
                wait_ms: wait,
                answered,
                category: None,
                survey: None,
            }));
        }
        // Outside the day: 0102222 again three days later (a repeat within 7 days only),
        // and a call the day before.
        ev.extend(events(&Call {
            id: "later",
            caller: "0102222",
            queue: "general",
            at: DAY + 3 * 24 * H,
            wait_ms: 1_000,
            answered: Some(("1001", 1_000, None)),
            category: None,
            survey: None,
        }));
        ev.extend(events(&Call {
            id: "before",
            caller: "0107777",
            queue: "general",
            at: DAY - H,
            wait_ms: 1_000,
            answered: Some(("1001", 1_000, None)),
            category: Some("여권"),
            survey: Some(2),
        }));
        // Away periods: 1001 on a break 10:00-10:15; 1002 RONA 11:00-11:01; 1003 at a meal
        // from 23:50 the day before until 00:20 (20 minutes of it in the day); 1004 not
        // ready since 23:00 and still (the day has ended: one hour counts).
        ev.extend([
            away("1001", "not-ready", Some("break"), DAY + 10 * H),
            away("1001", "available", None, DAY + 10 * H + 15 * MIN),
            away("1002", "not-ready", Some("rona"), DAY + 11 * H),
            away("1002", "available", None, DAY + 11 * H + MIN),
            away("1003", "not-ready", Some("meal"), DAY - 10 * MIN),
            away("1003", "available", None, DAY + 20 * MIN),
            away("1004", "not-ready", None, DAY + 23 * H),
        ]);
        s.apply(&ev).unwrap();
    }

    pub(crate) fn query() -> ReportQuery {
        ReportQuery {
            from_ms: DAY,
            to_ms: DAY + 24 * H,
            utc_offset_s: 9 * 3600,
            bucket_s: 1800,
            queue: None,
            language: None,
            channel: None,
            thresholds: vec![("general".into(), 20_000), ("en".into(), 60_000)],
            default_threshold_ms: 20_000,
            wait_bin_s: 10,
            wait_bins: 30,
            now_ms: DAY + 30 * 24 * H,
        }
    }

    /// The known day's answers; every backend must give the same.
    pub(crate) fn report_suite(s: &mut dyn Store) {
        known_day(s);
        let r = build(s, &query()).unwrap();
        // Two half hours with calls, at 09:00 and 14:00 local.
        assert_eq!(
            r.intervals.iter().map(|i| i.start_ms).collect::<Vec<_>>(),
            [DAY + 9 * H, DAY + 14 * H]
        );
        let nine = &r.intervals[0];
        assert_eq!(
            (nine.offered, nine.answered, nine.abandoned, nine.within),
            (12, 10, 2, 8)
        );
        assert_eq!(nine.service_level, Some(0.8));
        assert_eq!(nine.asa_s, Some(10.0));
        let two = &r.intervals[1];
        assert_eq!(
            (two.offered, two.answered, two.within),
            (3, 2, 2),
            "en: 60 s"
        );
        assert_eq!(
            (r.totals.offered, r.totals.answered, r.totals.abandoned),
            (15, 12, 3)
        );
        assert_eq!(r.totals.service_level, Some(10.0 / 12.0));
        assert_eq!(r.totals.abandon, Some(0.2));
        // Waits: 8 answered in [0, 10), 2 in [30, 40), 1 in [50, 60)…
        let w = r.waits.as_ref().unwrap();
        let bin = |s: i64| w.bins.iter().find(|b| b.from_s == s).unwrap();
        assert_eq!((bin(0).answered, bin(0).abandoned), (9, 1));
        assert_eq!(bin(30).answered, 2);
        assert_eq!((bin(40).answered, bin(40).abandoned), (0, 2));
        assert_eq!(bin(50).answered, 1);
        assert_eq!(w.bins.last().unwrap().to_s, None, "open ended");
        assert_eq!(w.bins.iter().map(|b| b.answered).sum::<i64>(), 12);
        // Categories (answered or categorised), top first; the day before is not counted.
        assert_eq!(
            r.categories
                .iter()
                .map(|c| (c.name.as_str(), c.calls))
                .collect::<Vec<_>>(),
            [("여권", 5), ("", 4), ("교통", 3)]
        );
        assert_eq!(
            r.languages
                .iter()
                .map(|c| (c.name.as_str(), c.calls))
                .collect::<Vec<_>>(),
            [("ko", 12), ("en", 3)]
        );
        assert_eq!(r.options.queues, ["en", "general"]);
        // Survey: 5, 5, 4, 1.
        assert_eq!(
            r.survey.scores.iter().map(|s| s.count).collect::<Vec<_>>(),
            [1, 0, 0, 1, 2]
        );
        assert_eq!((r.survey.answers, r.survey.average), (4, Some(3.75)));
        let by_agent: Vec<_> = r
            .survey
            .by_agent
            .iter()
            .map(|a| (a.name.as_str(), a.answers, a.average))
            .collect();
        assert_eq!(by_agent, [("1001", 3, 14.0 / 3.0), ("1002", 1, 1.0)]);
        // FCR: 12 answered calls with numbers; 0101111 called again the same day, 0102222
        // three days later.
        assert_eq!((r.fcr.calls, r.fcr.repeat_24h, r.fcr.repeat_7d), (12, 1, 2));
        assert_eq!(r.fcr.fcr_24h, Some(11.0 / 12.0));
        // Agents: 1001 answered g0-g5 (60 s talk, 10 s wrap each); 1002 g6, g7 (60 s, 10 s)
        // and g8, g9 (120 s, 20 s); 1003 the two en calls, no wrap-up.
        let a = |id: &str| r.agents.iter().find(|a| a.agent == id).unwrap();
        let one = a("1001");
        assert_eq!((one.calls, one.talk_s, one.acw_s), (6, 360.0, 60.0));
        assert_eq!(one.aht_s, Some(70.0));
        assert_eq!(one.not_ready_s.get("break"), Some(&900.0));
        let two = a("1002");
        assert_eq!((two.calls, two.talk_s, two.acw_s), (4, 360.0, 60.0));
        assert_eq!(two.not_ready_s.get("rona"), Some(&60.0));
        assert_eq!(two.survey_average, Some(1.0));
        assert_eq!(a("1003").not_ready_s.get("meal"), Some(&1200.0));
        assert_eq!(a("1003").calls, 2);
        let four = a("1004");
        assert_eq!(
            (four.calls, four.not_ready_total_s, four.aht_s),
            (0, 3600.0, None)
        );
        assert_eq!(four.not_ready_s.get("manual"), Some(&3600.0));
        // Filters: the en queue alone.
        let en = build(
            s,
            &ReportQuery {
                queue: Some("en".into()),
                ..query()
            },
        )
        .unwrap();
        assert_eq!((en.totals.offered, en.totals.answered), (3, 2));
        assert_eq!(en.options.queues, ["en", "general"], "options stay whole");
        assert_eq!((en.fcr.calls, en.fcr.repeat_7d), (2, 0));
        // Days as buckets over a week: one bucket.
        let week = build(
            s,
            &ReportQuery {
                bucket_s: 86_400,
                to_ms: DAY + 7 * 24 * H,
                ..query()
            },
        )
        .unwrap();
        assert_eq!(
            week.intervals
                .iter()
                .map(|i| (i.start_ms, i.offered))
                .collect::<Vec<_>>(),
            [(DAY, 15), (DAY + 3 * 24 * H, 1)]
        );
        // CSV tables: a header, then one row per agent.
        let table = csv(&r, "agents").unwrap();
        let rows = crate::util::csv::parse(&table);
        assert_eq!(
            rows[0],
            [
                "agent",
                "calls",
                "talk_s",
                "acw_s",
                "not_ready_break_s",
                "not_ready_manual_s",
                "not_ready_meal_s",
                "not_ready_rona_s",
                "not_ready_total_s",
                "aht_s",
                "survey_answers",
                "survey_average"
            ]
        );
        assert_eq!(rows.len(), 5);
        assert!(csv(&r, "nope").is_none());
        assert!(csv(&r, "intervals").unwrap().lines().count() == 3);
    }

    #[test]
    fn sqlite_reports_the_known_day() {
        let mut s = crate::records::sqlite::SqliteStore::in_memory().unwrap();
        report_suite(&mut s);
    }
}
