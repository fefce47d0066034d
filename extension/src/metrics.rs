//! Analytics and monitoring (`sql/metrics.sql`): sessions, connections, query
//! performance, storage, the sampled history, and each dashboard copy's pool heartbeat.

pgrx::extension_sql_file!("../../sql/metrics.sql", name = "metrics", requires = ["impersonation"]);
