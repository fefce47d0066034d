-- Real-time updates. A table's real time is on when it has the trigger
-- fluxbase_realtime: the trigger is the source of truth, so turning it off is dropping
-- it, and a restore brings it back with the table. The trigger sends pg_notify on the
-- channel fluxbase_realtime with only the table, the kind of change and its time: any
-- role can LISTEN, so no keys and no row data go out. fluxbase serve listens on one
-- connection and streams the events to the pages, which fetch again through the normal
-- browse path.
--
-- Any role can NOTIFY on that channel too, so each event carries a MAC (realtime.rs)
-- that fluxbase serve checks with the key of fluxbase_admin.get_realtime_key; an event
-- the database did not make, or one older than a few seconds, is dropped.

-- A definer, so that it can make the MAC; its code is all its own (no name is looked up
-- on the application's path). Only set_realtime attaches it: EXECUTE, which CREATE
-- TRIGGER needs, is granted to no one.
CREATE FUNCTION fluxbase_admin.notify_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    change text := pg_catalog.lower(TG_OP);
    at_ms  bigint := pg_catalog.floor(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) * 1000)::bigint;
BEGIN
    PERFORM pg_catalog.pg_notify('fluxbase_realtime', pg_catalog.json_build_object(
        'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME, 'change', change, 'at', at_ms,
        'mac', fluxbase_admin.realtime_event_mac(TG_TABLE_SCHEMA, TG_TABLE_NAME, change, at_ms))::text);
    RETURN NULL;
END
$$;

-- The key fluxbase serve checks events with: for the dashboard login, which holds no
-- other key (it is derived for events alone).
CREATE FUNCTION fluxbase_admin.get_realtime_key() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT fluxbase_admin.realtime_event_key() $$;

-- Whether real time is on for a relation: its trigger exists.
CREATE FUNCTION fluxbase_admin.realtime_on(rel oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                    WHERE t.tgrelid = rel AND t.tgname = 'fluxbase_realtime' AND NOT t.tgisinternal
                      AND t.tgfoid = 'fluxbase_admin.notify_change()'::pg_catalog.regprocedure)
$$;

-- Turns real time on or off for a table (admins; audited). Returns whether it is on.
CREATE FUNCTION fluxbase_admin.set_realtime(session_token text, schema_name text, relation_name text, enabled boolean)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who dashboard_auth.session_admin := dashboard_auth.require_capability(session_token, 'change_settings');
    rel oid := fluxbase_admin.browsable_relation(schema_name, relation_name);
    qualified text;
BEGIN
    IF enabled IS NULL THEN
        RAISE EXCEPTION 'enabled is true or false' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = rel) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '%.% is not a table: real time follows changes to tables', pg_catalog.quote_ident(schema_name),
                        pg_catalog.quote_ident(relation_name)
              USING ERRCODE = 'wrong_object_type';
    END IF;
    -- Names from the catalog (rel), quoted: never request text.
    qualified := (SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
                    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel);
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = rel AND t.tgname = 'fluxbase_realtime')
       AND NOT fluxbase_admin.realtime_on(rel) THEN
        RAISE EXCEPTION '%.% has a trigger named fluxbase_realtime that is not the dashboard''s', pg_catalog.quote_ident(schema_name),
                        pg_catalog.quote_ident(relation_name)
              USING ERRCODE = 'duplicate_object', HINT = 'Rename that trigger to use real time here.';
    END IF;
    IF enabled AND NOT fluxbase_admin.realtime_on(rel) THEN
        EXECUTE pg_catalog.format('CREATE TRIGGER fluxbase_realtime AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s '
                                  'FOR EACH STATEMENT EXECUTE FUNCTION fluxbase_admin.notify_change()', qualified);
    ELSIF NOT enabled AND fluxbase_admin.realtime_on(rel) THEN
        EXECUTE pg_catalog.format('DROP TRIGGER fluxbase_realtime ON %s', qualified);
    ELSE
        RETURN enabled;
    END IF;
    PERFORM dashboard_auth.audit_by(dashboard_auth.session_actor(who),
        CASE WHEN enabled THEN 'explorer.realtime_on' ELSE 'explorer.realtime_off' END, 'relation', qualified,
        pg_catalog.jsonb_build_object('schema', schema_name, 'table', relation_name));
    RETURN enabled;
END
$$;

-- Whether real time is on for a table, for a signed-in admin or viewer (fluxbase serve
-- asks before it streams a table's events).
CREATE FUNCTION fluxbase_admin.get_realtime(session_token text, schema_name text, relation_name text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM dashboard_auth.check_session(session_token);
    RETURN fluxbase_admin.realtime_on(fluxbase_admin.browsable_relation(schema_name, relation_name));
END
$$;

-- The tables with real time on.
CREATE FUNCTION fluxbase_admin.list_realtime_tables(session_token text DEFAULT NULL) RETURNS TABLE (schema text, name text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM dashboard_auth.check_session(session_token);
    RETURN QUERY SELECT r.schema, r.name FROM fluxbase_admin.browsable_relations() r
                  WHERE fluxbase_admin.realtime_on(r.oid) ORDER BY r.schema, r.name;
END
$$;

GRANT EXECUTE ON FUNCTION
    fluxbase_admin.get_realtime_key(),
    fluxbase_admin.set_realtime(text, text, text, boolean),
    fluxbase_admin.get_realtime(text, text, text),
    fluxbase_admin.list_realtime_tables(text)
TO fluxbase_dashboard;
