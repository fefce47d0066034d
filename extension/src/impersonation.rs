//! Impersonation (`sql/impersonation.sql`): view the database as an app user, as
//! anonymous, or as the service role, to debug Row Level Security. The check is a
//! definer function; the role switch is an invoker function, since Postgres refuses
//! SET ROLE inside a definer function.

pgrx::extension_sql_file!("../../sql/impersonation.sql", name = "impersonation", requires = ["app_users"]);
