//! The dashboard in a real browser, driven like a user: the first run through the printed
//! setup link, signing in (a wrong password, two-factor codes from an authenticator, a
//! recovery code, the keyboard alone), an invite link, a viewer's navigation, expiry and
//! signing out. Every step is screenshotted in light and dark under target/screenshots/,
//! and any CSP violation or JavaScript error fails the test (tests/src/browser.rs).

use fluxbase_tests::admin::{as_dashboard, create_admin, login, PASSWORD};
use fluxbase_tests::authenticator::{away_from_a_step_boundary, Authenticator};
use fluxbase_tests::browser::{keys, Browser, Site};
use fluxbase_tests::Caller;

/// A submit button of the form `form` (a `<button>` that is not `type=button`).
fn submit(form: &str) -> String {
    format!("{form} button:not([type=button])")
}

/// Signs in through the sign-in page's form, and waits for the next page.
fn sign_in(browser: &mut Browser, email: &str, password: &str, step: &str) {
    browser.visit("/sign-in", step);
    fill_sign_in(browser, email, password);
}

fn fill_sign_in(browser: &mut Browser, email: &str, password: &str) {
    browser.fill("#sign-in input[name=email]", email);
    browser.fill("#sign-in input[name=password]", password);
    browser.click_and_load(&submit("#sign-in"));
}

/// The path without its query.
fn path_only(browser: &Browser) -> String {
    browser.path().split('?').next().unwrap_or_default().to_string()
}

fn assert_signed_in_as(browser: &Browser, email: &str, role: &str) {
    assert_eq!(browser.text("#who-email"), email, "the frame shows who is signed in");
    assert!(
        browser.text("#who-role").to_lowercase().contains(role),
        "the frame shows the role {role}: {}",
        browser.text("#who-role")
    );
    assert!(browser.exists("#sign-out"), "the frame has a sign-out button");
}

/// The session token of an admin signed in through the API (as `fluxbase serve` would).
fn api_session(site: &Site, email: &str) -> String {
    let mut web = site.db.connect(Caller::Dashboard);
    login(&mut web, email, PASSWORD, "192.0.2.1").token().to_string()
}

/// Its first screenshot is README's (docs/screenshots/setup.png): after a change to the
/// setup page, copy target/screenshots/getting_started/01-setup-light.png there.
#[test]
fn getting_started_through_the_printed_setup_link() {
    let site = Site::start();
    let link = site.setup_link();
    assert!(link.starts_with(&format!("{}/setup?token=", site.base)), "the link points at this server: {link}");
    let mut browser = site.browser("getting_started");

    browser.visit(&link, "setup");
    assert!(browser.title().contains("Fluxbase Admin"), "title: {}", browser.title());
    for field in ["email", "password", "name"] {
        let id = browser.attr(&format!("#setup input[name={field}]"), "id").unwrap_or_default();
        assert!(!id.is_empty() && browser.exists(&format!("label[for='{id}']")), "the {field} input has a label");
    }
    assert_eq!(browser.text(&submit("#setup")), "Create Admin Account");

    // A weak password is refused, with the reason.
    browser.fill("#setup input[name=email]", "ann@example.com");
    browser.fill("#setup input[name=password]", "password");
    browser.fill("#setup input[name=name]", "Ann Admin");
    browser.click_and_load(&submit("#setup"));
    browser.step("setup-weak-password");
    let refusal = browser.text("#form-error");
    assert!(!refusal.trim().is_empty(), "the refusal says why");
    assert_eq!(path_only(&browser), "/setup", "still on the setup page");

    browser.fill("#setup input[name=email]", "ann@example.com");
    browser.fill("#setup input[name=password]", PASSWORD);
    browser.fill("#setup input[name=name]", "Ann Admin");
    browser.click_and_load(&submit("#setup"));
    browser.step("signed-in");
    assert_eq!(path_only(&browser), "/tables", "after setup the admin is signed in");
    assert_signed_in_as(&browser, "ann@example.com", "admin");

    // Once an admin exists, the link is gone.
    browser.allow_console_error("404");
    browser.visit(&link, "setup-link-gone");
    assert!(browser.exists("#error"), "the setup link now leads to an error page");
    assert!(!browser.exists("#setup"), "and no setup form");
}

#[test]
fn a_wrong_password_and_a_locked_account_get_the_same_message() {
    let site = Site::start();
    create_admin(&site.db, "ann@example.com", "admin");
    create_admin(&site.db, "lock@example.com", "admin");
    site.db
        .connect(Caller::Superuser)
        .batch_execute(
            "INSERT INTO dashboard_auth.address_lockouts (admin_id, ip, lockout_count, locked_until)
             SELECT id, ip::inet, 1, now() + interval '1 hour'
               FROM dashboard_auth.dashboard_users, (VALUES ('127.0.0.1'), ('::1')) AS a(ip)
              WHERE email = 'lock@example.com'",
        )
        .unwrap();
    let mut browser = site.browser("wrong_password");

    browser.visit("/sign-in", "sign-in");
    assert!(browser.title().contains("Fluxbase Admin"), "title: {}", browser.title());
    let forgot = browser.text("#forgot-password");
    assert!(!forgot.is_empty(), "the forgot-password hint is there");
    browser.click("#forgot-password summary");
    let forgot = browser.text("#forgot-password");
    assert!(forgot.contains("fluxbase admin reset-password"), "it names the operator command: {forgot}");

    fill_sign_in(&mut browser, "ann@example.com", "not the password at all");
    browser.step("wrong-password");
    let wrong = browser.text("#form-error");
    assert_eq!(path_only(&browser), "/sign-in");
    assert!(!wrong.is_empty());
    assert_eq!(
        browser.attr("#sign-in input[name=email]", "value").as_deref(),
        Some("ann@example.com"),
        "the email is kept for the next try"
    );

    fill_sign_in(&mut browser, "lock@example.com", PASSWORD);
    browser.step("locked-account");
    assert_eq!(browser.text("#form-error"), wrong, "a locked account looks the same as a wrong password");
    assert!(!browser.exists("#who-email"), "nobody is signed in");
}

#[test]
fn two_factor_sign_in_with_an_authenticator_code_then_a_recovery_code() {
    let site = Site::start();
    create_admin(&site.db, "ann@example.com", "admin");
    // Enrol through the API, as the 2FA settings would.
    let mut web = site.db.connect(Caller::Dashboard);
    away_from_a_step_boundary();
    let token = api_session(&site, "ann@example.com");
    let started = as_dashboard(&mut web, "SELECT secret FROM dashboard_auth.start_two_factor($1, $2)", &[&token, &PASSWORD]).unwrap();
    let app = Authenticator::new(&started[0].get::<_, String>(0));
    let confirmed = as_dashboard(
        &mut web,
        "SELECT ok, code, recovery_codes FROM dashboard_auth.confirm_two_factor($1, $2)",
        &[&token, &app.code(-1)],
    )
    .unwrap();
    assert!(confirmed[0].get::<_, bool>(0), "confirm: {}", confirmed[0].get::<_, String>(1));
    let recovery: Vec<String> = confirmed[0].get(2);

    let mut browser = site.browser("two_factor");
    sign_in(&mut browser, "ann@example.com", PASSWORD, "sign-in");
    browser.step("code");
    assert_eq!(path_only(&browser), "/sign-in/code", "the password step leads to the code step");
    let code_input = "#second-factor input[name=code]";
    assert_eq!(browser.attr(code_input, "autocomplete").as_deref(), Some("one-time-code"));
    assert_eq!(browser.attr(code_input, "inputmode").as_deref(), Some("numeric"));
    assert!(!browser.exists("#who-email"), "not signed in before the code");

    // A wrong code first, then the authenticator's current one.
    let current = app.code(0);
    let wrong = if current == "000000" { "111111" } else { "000000" };
    browser.fill(code_input, wrong);
    browser.click_and_load(&submit("#second-factor"));
    browser.step("wrong-code");
    assert!(!browser.text("#form-error").is_empty(), "a wrong code is refused");
    browser.fill(code_input, &app.code(0));
    browser.click_and_load(&submit("#second-factor"));
    browser.step("signed-in-with-code");
    assert_eq!(path_only(&browser), "/tables");
    assert_signed_in_as(&browser, "ann@example.com", "admin");

    browser.click_and_load(&submit("#sign-out"));
    sign_in(&mut browser, "ann@example.com", PASSWORD, "sign-in-again");
    assert_eq!(path_only(&browser), "/sign-in/code");
    browser.click_and_load("#use-recovery-code");
    browser.step("recovery-code");
    browser.fill(code_input, &recovery[0]);
    browser.click_and_load(&submit("#second-factor"));
    browser.step("signed-in-with-recovery-code");
    assert_eq!(path_only(&browser), "/tables");
    assert_signed_in_as(&browser, "ann@example.com", "admin");
}

#[test]
fn an_admin_invite_link_opened_in_a_second_browser_ends_signed_in() {
    let site = Site::start();
    create_admin(&site.db, "ann@example.com", "admin");

    // Ann, signed in in her browser, invites Bob (through the API: the users page comes later).
    let mut ann = site.browser("invite_link/ann");
    sign_in(&mut ann, "ann@example.com", PASSWORD, "sign-in");
    assert_eq!(path_only(&ann), "/tables");
    let token = api_session(&site, "ann@example.com");
    let mut web = site.db.connect(Caller::Dashboard);
    let invited = as_dashboard(
        &mut web,
        "SELECT invite_token FROM dashboard_auth.invite_admin($1, 'bob@example.com', 'Bob Builder', 'admin')",
        &[&token],
    )
    .unwrap();
    let invite_token: String = invited[0].get(0);

    let mut bob = site.browser("invite_link/bob");
    bob.visit(&format!("/invite?token={invite_token}"), "invite");
    assert_eq!(bob.text("#link-email"), "bob@example.com", "the page says who the link is for");
    bob.fill("#set-password input[name=password]", "amber lantern drifts east");
    bob.click_and_load(&submit("#set-password"));
    bob.step("signed-in");
    assert_eq!(path_only(&bob), "/tables");
    assert_signed_in_as(&bob, "bob@example.com", "admin");

    // Ann's session is untouched by Bob's.
    ann.visit("/tables", "still-signed-in");
    assert_signed_in_as(&ann, "ann@example.com", "admin");

    // The link works once.
    let mut again = site.browser("invite_link/again");
    again.visit(&format!("/invite?token={invite_token}"), "invite-used");
    assert!(again.exists("#link-invalid"), "a used invite link says so");
}

/// The nav entries (`data-nav`) the frame shows.
fn nav(browser: &Browser) -> Vec<String> {
    let v = browser.js(
        "return [...document.querySelectorAll('#main-nav a[data-nav]')]\
            .filter(a => a.offsetParent !== null).map(a => a.dataset.nav);",
    );
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap_or_default().to_string()).collect()
}

#[test]
fn a_viewer_sees_only_what_it_may_use() {
    let site = Site::start();
    create_admin(&site.db, "ann@example.com", "admin");
    create_admin(&site.db, "vic@example.com", "viewer");

    let mut admin = site.browser("viewer_navigation/admin");
    sign_in(&mut admin, "ann@example.com", PASSWORD, "sign-in");
    admin.step("admin-frame");
    let admin_nav = nav(&admin);
    for entry in ["tables", "users", "settings", "analytics", "sql", "audit"] {
        assert!(admin_nav.contains(&entry.to_string()), "an admin's nav has {entry}: {admin_nav:?}");
    }

    let mut viewer = site.browser("viewer_navigation/viewer");
    sign_in(&mut viewer, "vic@example.com", PASSWORD, "sign-in");
    viewer.step("viewer-frame");
    assert_signed_in_as(&viewer, "vic@example.com", "viewer");
    let viewer_nav = nav(&viewer);
    assert!(!viewer_nav.contains(&"users".to_string()), "a viewer's nav has no Users: {viewer_nav:?}");
    assert!(viewer_nav.contains(&"tables".to_string()), "a viewer still browses tables: {viewer_nav:?}");
    // Every entry it shows opens, marked as the current page, with its own title.
    let mut titles = Vec::new();
    for entry in &viewer_nav {
        viewer.click_and_load(&format!("#main-nav a[data-nav='{entry}']"));
        viewer.step(&format!("viewer-{entry}"));
        assert!(!viewer.exists("#error"), "{entry} opens for a viewer");
        assert_eq!(
            viewer.attr(&format!("#main-nav a[data-nav='{entry}']"), "aria-current").as_deref(),
            Some("page"),
            "{entry} is marked as the current page"
        );
        titles.push(viewer.title());
    }
    titles.dedup();
    assert_eq!(titles.len(), viewer_nav.len(), "every page has its own title: {titles:?}");

    // What it may not use is refused, also when typed in.
    viewer.allow_console_error("403");
    viewer.visit("/users", "viewer-users-refused");
    assert!(viewer.exists("#error"), "the users page is refused to a viewer");
}

#[test]
fn keyboard_only_sign_in_with_visible_focus() {
    let site = Site::start();
    create_admin(&site.db, "ann@example.com", "admin");
    let mut browser = site.browser("keyboard_sign_in");
    browser.visit("/sign-in", "sign-in");

    // The email field has the focus (autofocus) or Tab reaches it. Tab goes once round
    // the page: every stop shows where the focus is. (On `body` the focus has left the
    // page for the browser's own controls, as it does after the last stop.)
    let mut stops = Vec::new();
    let mut rounds = 0;
    for _ in 0..20 {
        let focused = browser.focused();
        if focused.tag != "body" {
            assert!(focused.is_visible() && focused.focus_visible, "focus is visible on {focused:?}");
        }
        stops.push(format!("{}#{}[{}] {:?}", focused.tag, focused.id, focused.name, focused.text));
        if focused.name == "email" {
            rounds += 1;
            if rounds == 2 {
                break;
            }
        }
        browser.keyboard(keys::TAB);
    }
    assert_eq!((rounds, browser.focused().name.as_str()), (2, "email"), "Tab goes round the page to the email field: {stops:?}");
    assert!(stops.iter().any(|s| s.contains("Skip to content")), "the skip link is a stop: {stops:?}");
    browser.step("email-focused");
    browser.keyboard("ann@example.com");
    browser.keyboard(keys::TAB);
    let focused = browser.focused();
    assert_eq!(focused.name, "password", "Tab goes from email to password: {focused:?}");
    assert!(focused.is_visible(), "focus is visible on {focused:?}");
    browser.keyboard(PASSWORD);
    browser.step("password-typed");
    browser.keyboard_and_load(keys::ENTER);
    browser.step("signed-in");
    assert_eq!(path_only(&browser), "/tables", "Enter submits the form");
    assert_signed_in_as(&browser, "ann@example.com", "admin");
}

#[test]
fn after_expiry_signing_in_again_returns_to_the_page_you_were_on() {
    let site = Site::start();
    create_admin(&site.db, "ann@example.com", "admin");
    let mut browser = site.browser("expiry");
    sign_in(&mut browser, "ann@example.com", PASSWORD, "sign-in");
    browser.visit("/settings", "settings");
    assert_eq!(path_only(&browser), "/settings");

    site.db
        .connect(Caller::Superuser)
        .batch_execute("UPDATE dashboard_auth.sessions SET last_seen_at = now() - interval '2 hours'")
        .unwrap();
    browser.visit("/settings", "expired");
    assert_eq!(path_only(&browser), "/sign-in", "an idle session leads back to sign-in");
    let status = browser.text("#status");
    assert!(!status.trim().is_empty(), "with a message saying why");
    assert!(browser.path().contains("next="), "and the page to come back to: {}", browser.path());

    fill_sign_in(&mut browser, "ann@example.com", PASSWORD);
    browser.step("back-on-settings");
    assert_eq!(path_only(&browser), "/settings", "signing in again returns to the page you were on");
    assert_signed_in_as(&browser, "ann@example.com", "admin");
}

#[test]
fn signing_out_ends_the_session() {
    let site = Site::start();
    create_admin(&site.db, "ann@example.com", "admin");
    let mut browser = site.browser("sign_out");
    sign_in(&mut browser, "ann@example.com", PASSWORD, "sign-in");
    assert_eq!(path_only(&browser), "/tables");

    browser.click_and_load(&submit("#sign-out"));
    browser.step("signed-out");
    assert_eq!(path_only(&browser), "/sign-in");
    assert!(!browser.text("#status").trim().is_empty(), "the page says you signed out");
    assert!(!browser.exists("#who-email"));

    browser.visit("/tables", "tables-after-sign-out");
    assert_eq!(path_only(&browser), "/sign-in", "the old session opens nothing");
    let live: i64 = site
        .db
        .connect(Caller::Superuser)
        .query_one("SELECT count(*) FROM dashboard_auth.sessions WHERE revoked_at IS NULL", &[])
        .map(|r| r.get(0))
        .unwrap_or(0);
    assert_eq!(live, 0, "the session is revoked in the database");
}

/// How far the page is wider than the viewport (0 when nothing scrolls sideways).
fn sideways_overflow(browser: &Browser) -> i64 {
    browser.js("return document.documentElement.scrollWidth - document.documentElement.clientWidth;").as_i64().unwrap_or(0)
}

#[test]
fn the_pages_fit_a_phone_screen() {
    let site = Site::start();
    create_admin(&site.db, "ann@example.com", "admin");
    let mut browser = site.browser("phone");
    browser.set_viewport(390, 844);
    sign_in(&mut browser, "ann@example.com", PASSWORD, "sign-in");
    assert_eq!(sideways_overflow(&browser), 0, "the sign-in page fits 390 px");
    browser.step("tables");
    assert_eq!(path_only(&browser), "/tables");
    assert_eq!(sideways_overflow(&browser), 0, "the frame fits 390 px");
    assert!(browser.is_displayed("#sign-out"), "sign-out is reachable on a phone");
    for entry in ["users", "audit"] {
        browser.visit(&format!("/{entry}"), entry);
        assert_eq!(sideways_overflow(&browser), 0, "{entry} fits 390 px");
    }
}
