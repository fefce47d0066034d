//! The browser harness tests itself: screenshots of every step in light and dark, and a
//! page that breaks the Content Security Policy makes it fail.

use fluxbase_tests::browser::{target_dir, Site};

fn png_size(path: &std::path::Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{} is a PNG", path.display());
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

#[test]
fn harness_saves_full_page_screenshots_in_light_and_dark() {
    let site = Site::start();
    let mut browser = site.browser("harness_screenshots");
    browser.visit("/sign-in", "sign-in");
    // A page taller than the viewport is captured whole.
    browser.js("document.body.style.minHeight = '2000px';");
    browser.step("tall");
    drop(browser);

    let dir = target_dir().join("screenshots/harness_screenshots");
    for (name, min_height) in [("01-sign-in", 800), ("02-tall", 2000)] {
        for scheme in ["light", "dark"] {
            let (w, h) = png_size(&dir.join(format!("{name}-{scheme}.png")));
            assert_eq!(w, 1280, "{name}-{scheme}: the viewport's width");
            assert!(h >= min_height, "{name}-{scheme}: {h} px high, expected at least {min_height}");
        }
    }
}

#[test]
fn harness_reports_a_javascript_error() {
    let site = Site::start();
    let mut browser = site.browser("harness_js_error");
    browser.goto("/sign-in");
    browser.js("setTimeout(() => { throw new Error('harness self-test'); }, 0); console.error('logged by the self-test');");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let problems = browser.problems();
    assert!(problems.iter().any(|p| p.contains("harness self-test")), "an uncaught exception fails the step: {problems:?}");
    assert!(problems.iter().any(|p| p.contains("logged by the self-test")), "console.error fails the step: {problems:?}");
    assert!(browser.problems().is_empty(), "each problem is reported once");
}

#[test]
fn harness_fails_a_page_with_an_inline_script_and_style() {
    let site = Site::start();
    let mut browser = site.browser("harness_inline_script");
    let problems = browser.visit_collecting_problems("/__test/inline-script", "inline-script");
    assert!(
        problems.iter().any(|p| p.starts_with("CSP violation") && p.contains("script-src")),
        "the page's listener sees the blocked inline script: {problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.starts_with("CSP violation") && p.contains("style-src")),
        "and the blocked inline style: {problems:?}"
    );
    // The browser reports them to the server too (asynchronously).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let reports = site.csp_reports().expect("the server's CSP report store (FLUXBASE_ADMIN_TEST_PAGES=1)");
        if reports.len() >= 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the server stored {} CSP reports: {reports:?}", reports.len());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = browser.problems(); // consumed: this test expects them

    // And a plain visit, as every other test makes, fails the test on that page.
    let visit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| browser.visit("/__test/inline-script", "again")));
    let message = match visit {
        Ok(()) => panic!("visiting a page that breaks the CSP did not fail"),
        Err(e) => e.downcast_ref::<String>().cloned().unwrap_or_default(),
    };
    assert!(message.contains("CSP violation") && message.contains("/__test/inline-script"), "{message}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = browser.problems(); // the server's reports of the second visit
}
