//! Real-time updates: switching per table (the trigger is the source of truth), events
//! through `fluxbase serve`'s event stream when another connection changes the table, and
//! the stream recovering when its listening connection is killed.

use std::io::{BufRead, BufReader};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use fluxbase_tests::admin::{as_dashboard, create_admin, login, sqlstate, PASSWORD};
use fluxbase_tests::{Caller, Server, TestDb};
use postgres::fallible_iterator::FallibleIterator;
use serde_json::Value;

fn signed_in(db: &TestDb, role: &str) -> String {
    create_admin(db, &format!("{role}@example.com"), role);
    let mut web = db.connect(Caller::Dashboard);
    login(&mut web, &format!("{role}@example.com"), PASSWORD, "203.0.113.7").token().to_string()
}

fn fixture(db: &TestDb) {
    db.connect(Caller::Superuser)
        .batch_execute(
            "CREATE TABLE public.todos (id serial PRIMARY KEY, title text NOT NULL);
             CREATE TABLE public.other (id serial PRIMARY KEY);
             GRANT SELECT, INSERT, UPDATE, DELETE ON public.todos TO authenticated;
             GRANT USAGE ON SEQUENCE public.todos_id_seq TO authenticated;",
        )
        .unwrap();
}

fn set_realtime(db: &TestDb, token: &str, table: &str, on: bool) -> Result<bool, postgres::Error> {
    let mut web = db.connect(Caller::Dashboard);
    as_dashboard(&mut web, "SELECT fluxbase_admin.set_realtime($1, 'public', $2, $3)", &[&token, &table, &on]).map(|rows| rows[0].get(0))
}

/// An open event stream: (event name, data) pairs as they arrive.
struct Stream {
    events: Receiver<(String, String)>,
}

impl Stream {
    fn open(server: &Server, path: &str, token: &str) -> Result<Stream, (u16, String)> {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let response = agent.get(&server.url(path)).header("Authorization", &format!("Bearer {token}")).call().unwrap();
        let status = response.status().as_u16();
        if status != 200 {
            return Err((status, response.into_body().read_to_string().unwrap_or_default()));
        }
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut event = String::from("message");
            for line in BufReader::new(response.into_body().into_reader()).lines().map_while(Result::ok) {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = name.to_string();
                } else if let Some(data) = line.strip_prefix("data: ") {
                    if tx.send((event.clone(), data.to_string())).is_err() {
                        return;
                    }
                    event = String::from("message");
                }
            }
        });
        Ok(Stream { events: rx })
    }

    /// The next event named `name` within `wait`, skipping others.
    fn next(&self, name: &str, wait: Duration) -> Option<Value> {
        let deadline = Instant::now() + wait;
        while let Ok((event, data)) = self.events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if event == name {
                return Some(serde_json::from_str(&data).unwrap());
            }
        }
        None
    }

    /// Whether the server ends the stream within `wait` (events before the end are skipped).
    fn ends_within(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            match self.events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return true,
                Err(mpsc::RecvTimeoutError::Timeout) => return false,
            }
        }
    }
}

#[test]
fn the_trigger_is_the_switch_and_carries_no_row_data() {
    let db = TestDb::new();
    fixture(&db);
    let admin = signed_in(&db, "admin");
    assert_eq!(set_realtime(&db, &admin, "todos", true).unwrap(), true);
    assert_eq!(set_realtime(&db, &admin, "todos", true).unwrap(), true, "turning it on twice is harmless");
    let mut su = db.connect(Caller::Superuser);
    let triggers: i64 = su.query_one("SELECT count(*) FROM pg_trigger WHERE tgname = 'fluxbase_realtime'", &[]).unwrap().get(0);
    assert_eq!(triggers, 1);

    // What a LISTENer gets: the table and the kind of change, nothing else.
    let mut listener = db.connect(Caller::App);
    listener.batch_execute("LISTEN fluxbase_realtime").unwrap();
    db.connect(Caller::Superuser).batch_execute("INSERT INTO public.todos (title) VALUES ('secret title')").unwrap();
    let note = listener.notifications().timeout_iter(Duration::from_secs(5)).next().unwrap().unwrap();
    let payload: Value = serde_json::from_str(note.payload()).unwrap();
    let mut keys: Vec<&str> = payload.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["at", "change", "mac", "schema", "table"], "{payload}");
    assert_eq!((payload["schema"].as_str(), payload["table"].as_str(), payload["change"].as_str()), (Some("public"), Some("todos"), Some("insert")));
    assert!(!note.payload().contains("secret"), "no row data: {payload}");

    // Dropping the trigger by hand turns it off: the trigger is the source of truth.
    su.batch_execute("DROP TRIGGER fluxbase_realtime ON public.todos").unwrap();
    let mut web = db.connect(Caller::Dashboard);
    let listed = as_dashboard(&mut web, "SELECT count(*) FROM fluxbase_admin.list_realtime_tables($1)", &[&admin]).unwrap();
    assert_eq!(listed[0].get::<_, i64>(0), 0);

    // Views cannot be switched; viewers cannot switch.
    su.batch_execute("CREATE VIEW public.todo_view AS SELECT * FROM public.todos").unwrap();
    assert_eq!(sqlstate(set_realtime(&db, &admin, "todo_view", true).map(|_| Vec::new())), "42809");
    let viewer = signed_in(&db, "viewer");
    assert_eq!(sqlstate(set_realtime(&db, &viewer, "todos", true).map(|_| Vec::new())), "42501");
}

#[test]
fn changes_arrive_over_the_event_stream_and_it_recovers_when_its_connection_is_killed() {
    let db = TestDb::new();
    fixture(&db);
    let admin = signed_in(&db, "admin");
    let server = Server::start(&db);

    // Real time off: the stream says so.
    let refused = Stream::open(&server, "/api/realtime/public/todos", &admin).err().expect("refused while off");
    assert_eq!(refused.0, 409, "{}", refused.1);
    assert_eq!(Stream::open(&server, "/api/realtime/public/todos", "fbs_wrong").err().unwrap().0, 401);

    set_realtime(&db, &admin, "todos", true).unwrap();
    set_realtime(&db, &admin, "other", true).unwrap();
    let stream = Stream::open(&server, "/api/realtime/public/todos", &admin).unwrap();
    assert!(stream.next("ready", Duration::from_secs(5)).is_some());

    // Another connection, an app role, changes the table.
    let mut app = db.connect(Caller::App);
    app.batch_execute("SET ROLE authenticated; INSERT INTO public.todos (title) VALUES ('a'); UPDATE public.todos SET title = 'b'").unwrap();
    db.connect(Caller::Superuser).batch_execute("INSERT INTO public.other DEFAULT VALUES").unwrap();
    let first = stream.next("change", Duration::from_secs(5)).expect("the insert's event");
    assert_eq!((first["table"].as_str(), first["change"].as_str()), (Some("todos"), Some("insert")));
    let second = stream.next("change", Duration::from_secs(5)).expect("the update's event");
    assert_eq!(second["change"], "update");

    // The listening connection dies: the stream says to fetch again, and goes on.
    let mut su = db.connect(Caller::Superuser);
    let killed: i64 = su
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
              WHERE application_name = 'fluxbase realtime' AND datname = current_database()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "one listening connection per copy of fluxbase serve");
    assert!(stream.next("refetch", Duration::from_secs(10)).is_some(), "no refetch after the connection came back");
    app.batch_execute("DELETE FROM public.todos").unwrap();
    let after = stream.next("change", Duration::from_secs(5)).expect("events after recovery");
    assert_eq!(after["change"], "delete");
}

#[test]
fn an_apps_own_trigger_of_the_same_name_is_left_alone() {
    let db = TestDb::new();
    fixture(&db);
    let admin = signed_in(&db, "admin");
    db.connect(Caller::Superuser)
        .batch_execute(
            "CREATE FUNCTION public.app_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
             CREATE TRIGGER fluxbase_realtime AFTER INSERT ON public.todos FOR EACH STATEMENT EXECUTE FUNCTION public.app_audit();",
        )
        .unwrap();
    assert_eq!(sqlstate(set_realtime(&db, &admin, "todos", false).map(|_| Vec::new())), "42710");
    assert_eq!(sqlstate(set_realtime(&db, &admin, "todos", true).map(|_| Vec::new())), "42710");
    let kept: i64 = db
        .connect(Caller::Superuser)
        .query_one("SELECT count(*) FROM pg_trigger WHERE tgname = 'fluxbase_realtime' AND tgfoid = 'public.app_audit()'::regprocedure", &[])
        .unwrap()
        .get(0);
    assert_eq!(kept, 1, "the app's trigger is still there");
}

#[test]
fn an_open_stream_does_not_keep_its_session_alive_and_ends_with_it() {
    let db = TestDb::new();
    fixture(&db);
    let admin = signed_in(&db, "admin");
    let server = Server::start(&db);
    set_realtime(&db, &admin, "todos", true).unwrap();
    let stream = Stream::open(&server, "/api/realtime/public/todos", &admin).unwrap();
    assert!(stream.next("ready", Duration::from_secs(5)).is_some());

    // The admin leaves the tab open and does nothing: 20 of the 30 idle minutes pass
    // (backdated), then at least one of the stream's checks (every 10 s at most).
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute("UPDATE dashboard_auth.sessions SET last_seen_at = now() - interval '20 minutes'").unwrap();
    std::thread::sleep(Duration::from_secs(12));
    let idle_for: f64 = su.query_one("SELECT extract(epoch FROM now() - last_seen_at)::float8 FROM dashboard_auth.sessions", &[]).unwrap().get(0);
    assert!(idle_for >= 20.0 * 60.0, "the stream's check counted as activity: last seen {idle_for}s ago");

    // The idle timeout comes: the stream says why, and ends.
    su.batch_execute("UPDATE dashboard_auth.sessions SET last_seen_at = now() - interval '30 minutes' + interval '2 seconds'").unwrap();
    let ended = stream.next("session_ended", Duration::from_secs(15)).expect("a session_ended event");
    assert_eq!(ended["reason"], "idle");
    assert!(stream.ends_within(Duration::from_secs(5)), "the stream ends with the session");
}

#[test]
fn events_the_database_did_not_make_are_dropped_and_a_flood_is_folded() {
    let db = TestDb::new();
    fixture(&db);
    let admin = signed_in(&db, "admin");
    let server = Server::start(&db);
    set_realtime(&db, &admin, "todos", true).unwrap();
    let stream = Stream::open(&server, "/api/realtime/public/todos", &admin).unwrap();
    assert!(stream.next("ready", Duration::from_secs(5)).is_some());

    // Any role may NOTIFY on the channel: a made-up change, a made-up refetch, and a real
    // event's payload copied with another table put in.
    let mut app = db.connect(Caller::App);
    let mut listener = db.connect(Caller::App);
    listener.batch_execute("LISTEN fluxbase_realtime").unwrap();
    db.connect(Caller::Superuser).batch_execute("INSERT INTO public.other DEFAULT VALUES").unwrap(); // real time is off: no event
    app.batch_execute("SET ROLE authenticated; INSERT INTO public.todos (title) VALUES ('real')").unwrap();
    let genuine = listener.notifications().timeout_iter(Duration::from_secs(5)).next().unwrap().unwrap().payload().to_string();
    assert!(stream.next("change", Duration::from_secs(5)).is_some(), "the genuine event arrives");
    let forged_change = r#"{"schema": "public", "table": "todos", "change": "insert"}"#;
    let forged_refetch = r#"{"refetch": "do it again"}"#;
    let moved: Value = {
        let mut event: Value = serde_json::from_str(&genuine).unwrap();
        event["change"] = "delete".into();
        event
    };
    for payload in [forged_change.to_string(), forged_refetch.to_string(), moved.to_string()] {
        app.execute("SELECT pg_notify('fluxbase_realtime', $1)", &[&payload]).unwrap();
    }
    let got: Vec<(String, String)> = {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut got = Vec::new();
        while let Ok(event) = stream.events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            got.push(event);
        }
        got
    };
    assert!(got.is_empty(), "forged events reached the page: {got:?}");

    // A flood of real changes: a burst goes out, the rest are folded into one refetch.
    for i in 0..40 {
        app.execute("INSERT INTO public.todos (title) VALUES ($1)", &[&format!("t{i}")]).unwrap();
    }
    let (mut changes, mut refetches) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(4);
    while let Ok((event, _)) = stream.events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        match event.as_str() {
            "change" => changes += 1,
            "refetch" => refetches += 1,
            _ => {}
        }
    }
    assert!(changes >= 5 && changes < 40, "a burst, not all 40: {changes} changes");
    assert!(refetches >= 1, "the rest are folded into a refetch ({changes} changes, {refetches} refetches)");
    assert!(changes + refetches < 40, "the page was flooded: {changes} changes, {refetches} refetches");
}
