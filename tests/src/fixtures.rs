//! Data several test files share.

use crate::{Caller, TestDb};

/// The RLS fixture: todos whose owner policy uses `(select auth.uid())`, public rows
/// readable by anon, and grants for authenticated and service_role. Rows: 1 "joe
/// private", 2 "joe public", 3 "bea private", 4 "nobody public". Returns (joe's id,
/// bea's id) in auth.users.
pub fn rls_todos(db: &TestDb) -> (String, String) {
    let mut su = db.connect(Caller::Superuser);
    su.batch_execute(
        "CREATE TABLE public.todos (id bigserial PRIMARY KEY, owner uuid, title text NOT NULL, public boolean NOT NULL DEFAULT false);
         ALTER TABLE public.todos ENABLE ROW LEVEL SECURITY;
         CREATE POLICY owner_all ON public.todos TO authenticated
             USING (owner = (select auth.uid())) WITH CHECK (owner = (select auth.uid()));
         CREATE POLICY public_read ON public.todos FOR SELECT TO anon USING (public);
         GRANT SELECT ON public.todos TO anon;
         GRANT SELECT, INSERT, UPDATE, DELETE ON public.todos TO authenticated, service_role;
         GRANT USAGE ON SEQUENCE public.todos_id_seq TO authenticated, service_role;",
    )
    .unwrap();
    let mut ids = Vec::new();
    for email in ["joe@example.com", "bea@example.com"] {
        let id: String = su
            .query_one("INSERT INTO auth.users (email, confirmed_at) VALUES ($1, now()) RETURNING id::text", &[&email])
            .unwrap()
            .get(0);
        ids.push(id);
    }
    su.execute(
        "INSERT INTO public.todos (owner, title, public) VALUES
            ($1::text::uuid, 'joe private', false), ($1::text::uuid, 'joe public', true),
            ($2::text::uuid, 'bea private', false), (NULL, 'nobody public', true)",
        &[&ids[0], &ids[1]],
    )
    .unwrap();
    (ids.remove(0), ids.remove(0))
}

/// One more private todo of the owner `owner` (row 5 after rls_todos).
pub fn add_private_todo(db: &TestDb, owner: &str, title: &str) {
    db.connect(Caller::Superuser)
        .execute("INSERT INTO public.todos (owner, title) VALUES ($1::text::uuid, $2)", &[&owner, &title])
        .unwrap();
}
