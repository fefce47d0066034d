//! The application's end users (`sql/app_users.sql`): their accounts and sessions in
//! schema `auth`, the application's own functions (granted to `service_role`), and the
//! admins' user management. Passwords and tokens reuse the admin side's primitives.

pgrx::extension_sql_file!("../../sql/app_users.sql", name = "app_users", requires = ["admin_auth", "two_factor"]);
