//! Liveness from first-hand heartbeats (pure; times in milliseconds of a monotonic clock).
//!
//! A [`Watcher`] follows the heartbeats of this node's subjects (the members it observes). A
//! subject whose heartbeat is later than its deadline (`last + heartbeat + grace`, the grace
//! widening with the jitter seen so far) is pinged directly a few times; only when every ping
//! goes unanswered does the watcher suspect it, naming the subject's incarnation. A heartbeat
//! or an answer clears the suspicion.
//!
//! Every node then judges every member from the suspicions its observers published
//! ([`verdict`]), Lifeguard's way: a suspicion starts a timeout that shrinks as more observers
//! confirm it, from `suspicion_max` for a lone observer to `suspicion_min` once a quorum (a
//! majority of the observers) agrees. A member that learns it is suspected refutes by raising
//! its incarnation ([`refutation`]); suspicions of an older incarnation no longer count.

use super::ring::MemberId;
use std::collections::BTreeMap;

/// The prober's timings, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// How often a member sends its observers a heartbeat.
    pub heartbeat: u64,
    /// The least grace after a missed heartbeat before pinging.
    pub grace_min: u64,
    /// How long one ping waits for its answer.
    pub ping_timeout: u64,
    /// Pings, one after another, before suspecting.
    pub pings: u32,
    /// A suspicion confirmed by a quorum of observers is a verdict after this long.
    pub suspicion_min: u64,
    /// A lone suspicion is a verdict after this long unless refuted.
    pub suspicion_max: u64,
}

impl Timings {
    /// One LAN: a killed node is NotReady everywhere 1.15-2.35 s after the kill (see
    /// `crate::profile` for why a verdict takes that much silence).
    pub const LAN: Timings = Timings {
        heartbeat: 1_200,
        grace_min: 450,
        ping_timeout: 125,
        pings: 2,
        suspicion_min: 450,
        // A live suspect refutes within a few pushes (tens of ms on a LAN), so a lone
        // suspicion need not wait long: it only stands when its subject is really cut off.
        suspicion_max: 1_500,
    };
    /// Lossy or slow links.
    pub const WAN: Timings = Timings {
        heartbeat: 2_000,
        grace_min: 700,
        ping_timeout: 300,
        pings: 2,
        suspicion_min: 700,
        suspicion_max: 5_000,
    };
}

/// What the watcher asks its shell to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the subject a direct ping.
    Ping(MemberId),
    /// Publish this node's suspicion of the subject at that incarnation.
    Suspect { subject: MemberId, incarnation: u64 },
    /// Withdraw this node's suspicion of the subject.
    Clear(MemberId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Fine,
    Pinging { since: u64, sent: u32 },
    Suspected,
}

/// Running mean and variance of the gaps between heartbeats (Welford).
#[derive(Clone, Copy, Debug, Default)]
struct Gaps {
    count: u32,
    mean: f64,
    m2: f64,
}

impl Gaps {
    fn add(&mut self, gap: f64) {
        // A window of about the last 50 gaps: old jitter fades.
        if self.count >= 50 {
            self.count = 49;
            self.m2 *= 49.0 / 50.0;
        }
        self.count += 1;
        let delta = gap - self.mean;
        self.mean += delta / f64::from(self.count);
        self.m2 += delta * (gap - self.mean);
    }

    fn std_dev(&self) -> f64 {
        if self.count < 2 {
            0.0
        } else {
            (self.m2 / f64::from(self.count - 1)).max(0.0).sqrt()
        }
    }
}

#[derive(Clone, Debug)]
struct Watched {
    /// The last heartbeat or answer (or when the watch began).
    last: u64,
    /// The last heartbeat: gaps are measured between two heartbeats only (the time from the
    /// start of a watch to the first one says nothing about the subject's jitter).
    last_beat: Option<u64>,
    incarnation: u64,
    gaps: Gaps,
    state: State,
}

/// This node's first-hand watch over its subjects.
#[derive(Clone, Debug)]
pub struct Watcher {
    timings: Timings,
    subjects: BTreeMap<MemberId, Watched>,
}

impl Watcher {
    pub fn new(timings: Timings) -> Watcher {
        Watcher {
            timings,
            subjects: BTreeMap::new(),
        }
    }

    pub fn subjects(&self) -> impl Iterator<Item = &MemberId> {
        self.subjects.keys()
    }

    /// Subjects this node suspects now (the shell re-probes them now and then).
    pub fn suspected(&self) -> impl Iterator<Item = &MemberId> {
        self.subjects
            .iter()
            .filter(|(_, w)| w.state == State::Suspected)
            .map(|(m, _)| m)
    }

    /// The subjects now (the rings changed). A new subject is watched as if a heartbeat were
    /// due `now`: its first deadline is a grace away, so a node killed just after the rings
    /// moved is not given a period more by its new observer (a live one beats or answers the
    /// ping). One no longer watched loses the suspicion this node had of it.
    pub fn set_subjects(&mut self, subjects: &[MemberId], now: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        self.subjects.retain(|m, w| {
            let keep = subjects.contains(m);
            if !keep && w.state == State::Suspected {
                actions.push(Action::Clear(m.clone()));
            }
            keep
        });
        for m in subjects {
            self.subjects.entry(m.clone()).or_insert(Watched {
                last: now.saturating_sub(self.timings.heartbeat),
                last_beat: None,
                incarnation: 0,
                gaps: Gaps::default(),
                state: State::Fine,
            });
        }
        actions
    }

    /// A heartbeat from `from` at its `incarnation`.
    pub fn heartbeat(&mut self, from: &MemberId, incarnation: u64, now: u64) -> Vec<Action> {
        self.heard(from, incarnation, now, true)
    }

    /// An answer to a ping.
    pub fn pong(&mut self, from: &MemberId, incarnation: u64, now: u64) -> Vec<Action> {
        self.heard(from, incarnation, now, false)
    }

    fn heard(&mut self, from: &MemberId, incarnation: u64, now: u64, beat: bool) -> Vec<Action> {
        let Some(w) = self.subjects.get_mut(from) else {
            return Vec::new();
        };
        if beat {
            // A late beat (one that came while pinging) is the jitter the grace must absorb;
            // one after a suspicion is a return, not a gap.
            if let Some(previous) = w.last_beat
                && w.state != State::Suspected
                && now > previous
            {
                w.gaps.add((now - previous) as f64);
            }
            w.last_beat = Some(now);
        }
        w.last = w.last.max(now);
        w.incarnation = w.incarnation.max(incarnation);
        let was = std::mem::replace(&mut w.state, State::Fine);
        match was {
            State::Suspected => vec![Action::Clear(from.clone())],
            _ => Vec::new(),
        }
    }

    fn grace(&self, w: &Watched) -> u64 {
        let jitter = (4.0 * w.gaps.std_dev()).round() as u64;
        self.timings.grace_min.max(jitter)
    }

    /// When a subject is due: its deadline, or its next ping.
    fn due(&self, w: &Watched) -> Option<u64> {
        match w.state {
            State::Fine => Some(w.last + self.timings.heartbeat + self.grace(w)),
            State::Pinging { since, sent } => {
                Some(since + self.timings.ping_timeout * u64::from(sent))
            }
            State::Suspected => None,
        }
    }

    /// The earliest time [`Watcher::tick`] has something to do.
    pub fn next_due(&self) -> Option<u64> {
        self.subjects.values().filter_map(|w| self.due(w)).min()
    }

    /// Pings subjects past their deadline and suspects those that answered no ping.
    pub fn tick(&mut self, now: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        let timings = self.timings;
        let dues: Vec<(MemberId, Option<u64>)> = self
            .subjects
            .iter()
            .map(|(m, w)| (m.clone(), self.due(w)))
            .collect();
        for (m, due) in dues {
            if due.is_none_or(|d| now < d) {
                continue;
            }
            let Some(w) = self.subjects.get_mut(&m) else {
                continue;
            };
            match w.state {
                State::Fine => {
                    w.state = State::Pinging {
                        since: now,
                        sent: 1,
                    };
                    actions.push(Action::Ping(m));
                }
                State::Pinging { since, sent } if sent < timings.pings => {
                    w.state = State::Pinging {
                        since,
                        sent: sent + 1,
                    };
                    actions.push(Action::Ping(m));
                }
                State::Pinging { .. } => {
                    w.state = State::Suspected;
                    actions.push(Action::Suspect {
                        subject: m,
                        incarnation: w.incarnation,
                    });
                }
                State::Suspected => {}
            }
        }
        actions
    }
}

/// One observer's published suspicion of a subject, as this node heard it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heard {
    pub observer: MemberId,
    /// The subject's incarnation the observer suspects.
    pub incarnation: u64,
    /// When this node first heard it.
    pub at: u64,
}

/// Whether the subject is dead, and since when: `observers` are its observers now, `heard`
/// the suspicions of it this node knows, `incarnation` the newest incarnation it announced.
pub fn verdict(
    observers: &[MemberId],
    heard: &[Heard],
    incarnation: u64,
    now: u64,
    timings: &Timings,
) -> Option<u64> {
    verdict_due(observers, heard, incarnation, timings).filter(|at| now >= *at)
}

/// When the suspicions heard so far make the subject dead (`None`: they never will).
pub fn verdict_due(
    observers: &[MemberId],
    heard: &[Heard],
    incarnation: u64,
    timings: &Timings,
) -> Option<u64> {
    // Each observer once, from when this node first heard it.
    let mut counted: BTreeMap<&MemberId, u64> = BTreeMap::new();
    for h in heard
        .iter()
        .filter(|h| h.incarnation >= incarnation && observers.contains(&h.observer))
    {
        let at = counted.entry(&h.observer).or_insert(h.at);
        *at = (*at).min(h.at);
    }
    let first = counted.values().copied().min()?;
    let confirmed = counted.len();
    let quorum = observers.len() / 2 + 1;
    let timeout = suspicion_timeout(confirmed, quorum, timings);
    Some(first + timeout)
}

/// Lifeguard's timeout: `max - (max - min) * ln(c) / ln(quorum)` for `c` agreeing observers,
/// `min` from a quorum on.
pub fn suspicion_timeout(agreeing: usize, quorum: usize, timings: &Timings) -> u64 {
    let (min, max) = (
        timings.suspicion_min,
        timings.suspicion_max.max(timings.suspicion_min),
    );
    if agreeing >= quorum || quorum <= 1 {
        return min;
    }
    let fraction = (agreeing.max(1) as f64).ln() / (quorum as f64).ln();
    let t = max as f64 - (max - min) as f64 * fraction;
    (t.round() as u64).clamp(min, max)
}

/// The incarnation a member announces after learning of suspicions of itself at `suspected`
/// incarnations while at `mine`: one past the highest it must outrun, or `None` if none counts.
pub fn refutation(mine: u64, suspected: impl IntoIterator<Item = u64>) -> Option<u64> {
    let highest = suspected.into_iter().filter(|s| *s >= mine).max()?;
    Some(highest + 1)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Round numbers for the tables (the presets are checked in `crate::profile`).
    pub(crate) const T: Timings = Timings {
        heartbeat: 1_000,
        grace_min: 250,
        ping_timeout: 100,
        pings: 2,
        suspicion_min: 200,
        suspicion_max: 4_000,
    };

    fn m(name: &str) -> MemberId {
        MemberId::new(name, 1)
    }

    /// Runs a watcher of one subject that beats at `beats` (ms), ticking every 10 ms up to
    /// `until`; returns the actions with their times.
    fn watch(beats: &[u64], pongs: &[u64], until: u64) -> Vec<(u64, Action)> {
        let mut w = Watcher::new(T);
        let x = m("x");
        let mut out = Vec::new();
        w.set_subjects(std::slice::from_ref(&x), 0);
        for now in (0..=until).step_by(10) {
            if beats.contains(&now) {
                out.extend(w.heartbeat(&x, 0, now).into_iter().map(|a| (now, a)));
            }
            if pongs.contains(&now) {
                out.extend(w.pong(&x, 0, now).into_iter().map(|a| (now, a)));
            }
            out.extend(w.tick(now).into_iter().map(|a| (now, a)));
        }
        out
    }

    #[test]
    fn watcher_table() {
        let x = || m("x");
        let suspect = || Action::Suspect {
            subject: m("x"),
            incarnation: 0,
        };
        let steady: Vec<u64> = (1..=10).map(|i| i * 1000).collect();
        type Row = (&'static str, Vec<u64>, Vec<u64>, u64, Vec<(u64, Action)>);
        let rows: Vec<Row> = vec![
            (
                "steady beats: nothing to do",
                steady.clone(),
                vec![],
                10_000,
                vec![],
            ),
            (
                "silent from the start: ping at 1.25 s, again at 1.35 s, suspect at 1.45 s",
                vec![],
                vec![],
                2_000,
                vec![
                    (1_250, Action::Ping(x())),
                    (1_350, Action::Ping(x())),
                    (1_450, suspect()),
                ],
            ),
            (
                "stops after 3 s: suspected 1.45 s after its last beat",
                vec![1_000, 2_000, 3_000],
                vec![],
                5_000,
                vec![
                    (4_250, Action::Ping(x())),
                    (4_350, Action::Ping(x())),
                    (4_450, suspect()),
                ],
            ),
            (
                "a late beat answers the ping: no suspicion",
                vec![1_000, 2_300, 3_300],
                vec![],
                4_000,
                vec![(2_250, Action::Ping(x()))],
            ),
            (
                "a pong clears the doubt",
                vec![1_000],
                vec![2_300],
                3_000,
                vec![(2_250, Action::Ping(x()))],
            ),
            (
                "back after a suspicion: cleared",
                vec![1_000, 3_000],
                vec![],
                3_000,
                vec![
                    (2_250, Action::Ping(x())),
                    (2_350, Action::Ping(x())),
                    (2_450, suspect()),
                    (3_000, Action::Clear(x())),
                ],
            ),
        ];
        for (name, beats, pongs, until, want) in rows {
            assert_eq!(watch(&beats, &pongs, until), want, "{name}");
        }
    }

    #[test]
    fn jittery_heartbeats_widen_the_grace() {
        let mut w = Watcher::new(T);
        let x = m("x");
        w.set_subjects(std::slice::from_ref(&x), 0);
        // Gaps alternating 600 and 1400 ms: std dev 400, grace 1.6 s instead of 250 ms.
        let mut now = 0;
        for i in 0..20 {
            now += if i % 2 == 0 { 600 } else { 1_400 };
            w.heartbeat(&x, 0, now);
        }
        assert!(w.tick(now + 2_400).is_empty(), "within the widened grace");
        assert_eq!(w.tick(now + 2_700), vec![Action::Ping(x)]);
    }

    #[test]
    fn the_wait_for_a_new_subjects_first_beat_is_not_jitter() {
        let mut w = Watcher::new(T);
        let x = m("x");
        w.set_subjects(std::slice::from_ref(&x), 0);
        // First beat 50 ms after the watch began, then steady 1 s beats.
        for beat in [50, 1_050, 2_050, 3_050] {
            w.heartbeat(&x, 0, beat);
        }
        // The deadline is the plain one: a period plus the least grace.
        assert!(w.tick(3_050 + 1_000 + T.grace_min - 10).is_empty());
        assert_eq!(w.tick(3_050 + 1_000 + T.grace_min), vec![Action::Ping(x)]);
    }

    #[test]
    fn subjects_come_and_go() {
        let mut w = Watcher::new(T);
        let (a, b) = (m("a"), m("b"));
        w.set_subjects(&[a.clone(), b.clone()], 0);
        for now in (0..=1_500).step_by(50) {
            w.tick(now);
        }
        assert_eq!(
            w.set_subjects(std::slice::from_ref(&b), 2_000),
            vec![Action::Clear(a)]
        );
        // A new subject is due a grace after it was added, as if a beat were due then.
        let c = m("c");
        w.set_subjects(&[b, c.clone()], 2_000);
        assert!(!w.tick(2_200).contains(&Action::Ping(c.clone())));
        assert!(w.tick(2_260).contains(&Action::Ping(c.clone())));
        assert_eq!(w.next_due(), Some(2_360));
        // It answers: a period and a grace from its answer.
        w.pong(&c, 0, 2_300);
        assert!(!w.tick(3_540).contains(&Action::Ping(c.clone())));
        assert!(w.tick(3_550).contains(&Action::Ping(c)));
    }

    fn heard(observer: &str, incarnation: u64, at: u64) -> Heard {
        Heard {
            observer: m(observer),
            incarnation,
            at,
        }
    }

    #[test]
    fn verdict_table() {
        let obs = [m("o1"), m("o2"), m("o3")];
        type Row = (&'static str, Vec<Heard>, u64, u64, Option<u64>);
        let rows: Vec<Row> = vec![
            ("nobody suspects", vec![], 0, 99_000, None),
            (
                "a lone suspicion waits the longest",
                vec![heard("o1", 0, 1_000)],
                0,
                4_999,
                None,
            ),
            (
                "... then counts",
                vec![heard("o1", 0, 1_000)],
                0,
                5_000,
                Some(5_000),
            ),
            (
                "a quorum of two: the shortest timeout from the first",
                vec![heard("o1", 0, 1_000), heard("o2", 0, 1_100)],
                0,
                1_200,
                Some(1_200),
            ),
            (
                "a refuted incarnation does not count",
                vec![heard("o1", 0, 1_000), heard("o2", 0, 1_100)],
                1,
                60_000,
                None,
            ),
            (
                "a non-observer does not count",
                vec![heard("stranger", 0, 1_000)],
                0,
                60_000,
                None,
            ),
            (
                "the same observer twice is one",
                vec![heard("o1", 0, 1_000), heard("o1", 0, 1_050)],
                0,
                1_300,
                None,
            ),
        ];
        for (name, heard, inc, now, want) in rows {
            assert_eq!(verdict(&obs, &heard, inc, now, &T), want, "{name}");
        }
        // A single observer (a two-node cluster) is its own quorum.
        assert_eq!(
            verdict(&[m("o1")], &[heard("o1", 0, 1_000)], 0, 1_200, &T),
            Some(1_200)
        );
    }

    #[test]
    fn timeouts_shrink_with_confirmations() {
        let timeouts: Vec<u64> = (1..=3).map(|c| suspicion_timeout(c, 3, &T)).collect();
        assert_eq!(timeouts[0], T.suspicion_max);
        assert!(
            timeouts[1] < timeouts[0] && timeouts[1] > T.suspicion_min,
            "{timeouts:?}"
        );
        assert_eq!(timeouts[2], T.suspicion_min);
    }

    #[test]
    fn refutations_outrun_the_suspected_incarnation() {
        assert_eq!(refutation(0, []), None);
        assert_eq!(refutation(3, [1, 2]), None, "old suspicions");
        assert_eq!(refutation(3, [3]), Some(4));
        assert_eq!(refutation(3, [5, 3]), Some(6));
    }
}
