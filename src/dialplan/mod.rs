//! The dialplan as a pure function of a call's context: which queue or menu a dialled
//! number reaches, what a digit does while a caller waits, and the menu's own small state
//! machine (prompts, timeout, retries) under time passed in.

use crate::config::{Config, RouteTarget};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Queue(String),
    Menu(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Menu {
    pub timeout: Duration,
    pub retries: u32,
    /// (digit, prompt, queue) in the order the prompts play.
    pub options: Vec<(char, String, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct Dialplan {
    routes: HashMap<String, Target>,
    waiting_digits: HashMap<String, HashMap<char, String>>,
    menus: HashMap<String, Menu>,
}

impl Dialplan {
    /// From a loaded config: its menus and waiting digits are already parsed and checked,
    /// so this only names the queues.
    pub fn from_config(cfg: &Config) -> Dialplan {
        let s = cfg.engine();
        let queue = |q: usize| s.queues[q].acd.name.clone();
        let routes = s
            .routes
            .iter()
            .map(|(number, t)| {
                let t = match t {
                    RouteTarget::Queue(q) => Target::Queue(queue(*q)),
                    RouteTarget::Menu(m, _) => Target::Menu(m.clone()),
                };
                (number.clone(), t)
            })
            .collect();
        let waiting_digits = s
            .queues
            .iter()
            .map(|q| (q.acd.name.clone(), q.digits.clone().into_iter().collect()))
            .collect();
        let menus = s
            .menus
            .iter()
            .map(|(name, m)| {
                let options = m
                    .options
                    .iter()
                    .map(|o| (o.digit, o.prompt.clone(), queue(o.queue)))
                    .collect();
                let menu = Menu {
                    timeout: m.timeout,
                    retries: m.retries,
                    options,
                };
                (name.clone(), menu)
            })
            .collect();
        Dialplan {
            routes,
            waiting_digits,
            menus,
        }
    }

    pub fn route(&self, number: &str) -> Option<&Target> {
        self.routes.get(number)
    }

    /// The menu a digit opens for a caller waiting in `queue`, if any.
    pub fn digit_while_waiting(&self, queue: &str, digit: char) -> Option<&str> {
        self.waiting_digits
            .get(queue)?
            .get(&digit)
            .map(String::as_str)
    }

    /// Whether a caller waiting in `queue` can open a menu by a digit (120+9).
    pub fn has_waiting_menu(&self, queue: &str) -> bool {
        self.waiting_digits
            .get(queue)
            .is_some_and(|d| !d.is_empty())
    }

    pub fn menu(&self, name: &str) -> Option<&Menu> {
        self.menus.get(name)
    }
}

/// What the menu wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MenuStep {
    /// Play these prompts, in order, then wait for a digit until `poll_timeout`.
    Play(Vec<String>),
    /// The caller chose: move the call to this queue.
    Queue(String),
    /// Retries used up: the caller goes back to where they came from (never dropped).
    GiveUp,
}

/// One caller in one menu.
#[derive(Debug, Clone)]
pub struct MenuRun {
    plays: u32,
    deadline: Option<Instant>,
}

impl MenuRun {
    /// Starts the menu: the prompts play; the wait for a digit starts when the driver says
    /// they finished ([`MenuRun::prompts_done`]).
    pub fn start(menu: &Menu) -> (MenuRun, MenuStep) {
        (
            MenuRun {
                plays: 1,
                deadline: None,
            },
            MenuStep::Play(prompts(menu)),
        )
    }

    pub fn prompts_done(&mut self, menu: &Menu, now: Instant) {
        self.deadline = Some(now + menu.timeout);
    }

    /// A digit, at any time (callers may answer while the prompts still play).
    pub fn on_digit(&mut self, menu: &Menu, digit: char) -> MenuStep {
        match menu.options.iter().find(|(d, _, _)| *d == digit) {
            Some((_, _, q)) => MenuStep::Queue(q.clone()),
            None => self.again(menu),
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn handle_timeout(&mut self, menu: &Menu, now: Instant) -> Option<MenuStep> {
        match self.deadline {
            Some(t) if t <= now => Some(self.again(menu)),
            _ => None,
        }
    }

    fn again(&mut self, menu: &Menu) -> MenuStep {
        self.deadline = None;
        if self.plays > menu.retries {
            return MenuStep::GiveUp;
        }
        self.plays += 1;
        MenuStep::Play(prompts(menu))
    }
}

fn prompts(menu: &Menu) -> Vec<String> {
    menu.options.iter().map(|(_, p, _)| p.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_CONFIG, DEFAULT_CONFIG_NAME};

    fn default_plan() -> Dialplan {
        Dialplan::from_config(&Config::parse(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME).unwrap())
    }

    #[test]
    fn the_120_plus_9_flow_is_in_the_default_dialplan() {
        let d = default_plan();
        assert_eq!(d.route("120"), Some(&Target::Queue("general".into())));
        assert_eq!(d.digit_while_waiting("general", '9'), Some("languages"));
        assert_eq!(
            d.digit_while_waiting("general", '1'),
            None,
            "zero-ARS: other digits do nothing"
        );
        let m = d.menu("languages").unwrap();
        let (mut run, first) = MenuRun::start(m);
        assert_eq!(
            first,
            MenuStep::Play(vec![
                "menu-en".into(),
                "menu-zh".into(),
                "menu-ja".into(),
                "menu-vi".into(),
                "menu-mn".into()
            ])
        );
        for (digit, queue) in [
            ('1', "en"),
            ('2', "zh"),
            ('3', "ja"),
            ('4', "vi"),
            ('5', "mn"),
        ] {
            assert_eq!(run.on_digit(m, digit), MenuStep::Queue(queue.into()));
        }
    }

    #[test]
    fn wrong_digits_and_silence_replay_then_give_up() {
        let d = default_plan();
        let m = d.menu("languages").unwrap();
        let t0 = Instant::now();
        let (mut run, _) = MenuRun::start(m);
        assert!(
            matches!(run.on_digit(m, '7'), MenuStep::Play(_)),
            "wrong digit: prompts again"
        );
        run.prompts_done(m, t0);
        assert_eq!(run.poll_timeout(), Some(t0 + Duration::from_secs(8)));
        assert_eq!(run.handle_timeout(m, t0 + Duration::from_secs(7)), None);
        assert!(matches!(
            run.handle_timeout(m, t0 + Duration::from_secs(8)),
            Some(MenuStep::Play(_))
        ));
        run.prompts_done(m, t0 + Duration::from_secs(10));
        assert_eq!(
            run.handle_timeout(m, t0 + Duration::from_secs(18)),
            Some(MenuStep::GiveUp)
        );
    }
}
