//! For `make bench`: how soon a grid page is drawn in a real browser. Signs in through the
//! form, then opens PATH RUNS times (after one warm-up, so that the stylesheet and
//! `grid.js` come from the cache, as for anyone who has opened a page before) and prints
//! the medians, in milliseconds from the start of the navigation, of:
//! - `dom_content_loaded`: the document parsed, `#grid` in it (Navigation Timing);
//! - `first_contentful_paint`: the first frame with content on screen (Paint Timing);
//! - `load`: the load event done, `grid.js` run.
//!
//! An example of the tests crate rather than a test: it measures and asserts nothing, and
//! runs against a server that `scripts/bench.sh` started, not one of its own.
//!
//! `cargo run --release -p fluxbase-tests --example grid_paint -- BASE EMAIL PASSWORD PATH [RUNS]`

use std::time::{Duration, Instant};

use fluxbase_tests::browser::Browser;
use serde_json::Value as Json;

/// What a run reads: the document's own navigation entry and its first paint with content.
const TIMINGS: &str = "const nav = performance.getEntriesByType('navigation')[0]; \
    const fcp = performance.getEntriesByName('first-contentful-paint')[0]; \
    return { grid: !!document.querySelector('#grid tbody tr'), \
             dom_content_loaded: nav ? nav.domContentLoadedEventEnd : null, \
             load: nav && nav.loadEventEnd > 0 ? nav.loadEventEnd : null, \
             first_contentful_paint: fcp ? fcp.startTime : null };";

const FIGURES: [&str; 3] = ["dom_content_loaded", "first_contentful_paint", "load"];

fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// The page's figures once all are known (the first paint can come after the load event).
fn timings(browser: &Browser) -> Json {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = browser.js(TIMINGS);
        if t["grid"].as_bool() != Some(true) {
            panic!("no grid rows on {}: is the path a table with rows?", browser.path());
        }
        if FIGURES.iter().all(|f| t[*f].is_number()) || Instant::now() > deadline {
            return t;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, email, password, path, rest @ ..] = args.as_slice() else {
        eprintln!("usage: grid_paint BASE EMAIL PASSWORD PATH [RUNS]");
        std::process::exit(2);
    };
    let runs: usize = rest.first().map_or(7, |r| r.parse().expect("RUNS is a number"));

    // The CSP report store exists only with FLUXBASE_ADMIN_TEST_PAGES=1; without it the
    // harness still sees violations in the page and in the browser's log.
    let browser = Browser::open(base, &format!("{}/__test/csp-reports", base.trim_end_matches('/')), "bench/grid_paint");
    browser.goto("/sign-in");
    browser.fill("#sign-in input[name=email]", email);
    browser.fill("#sign-in input[name=password]", password);
    browser.click_and_load("#sign-in button:not([type=button])");
    if browser.path().starts_with("/sign-in") {
        panic!("signing in as {email} failed (still on {})", browser.path());
    }

    let mut seen: Vec<Vec<f64>> = vec![Vec::new(); FIGURES.len()];
    for run in 0..=runs {
        browser.goto(path);
        let t = timings(&browser);
        if run == 0 {
            continue;
        }
        for (i, figure) in FIGURES.iter().enumerate() {
            if let Some(ms) = t[*figure].as_f64() {
                seen[i].push(ms);
            }
        }
    }
    for (figure, values) in FIGURES.iter().zip(seen.iter_mut()) {
        match median(values) {
            Some(ms) => println!("{figure} {ms:.1}"),
            None => println!("{figure} n/a"),
        }
    }
}
