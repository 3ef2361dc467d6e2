-- lambda_fdw 0.2.0 -> 0.3.0: the trust boundary. Types and functions are
-- schema-qualified, and an operator that has no exact-typed match in
-- pg_catalog is named as OPERATOR(pg_catalog...), so nothing here resolves
-- through a schema that a role other than a superuser could have written to
-- (pg_catalog is searched first: its exact matches win).
\echo Use "ALTER EXTENSION lambda_fdw UPDATE TO '0.3.0'" to load this file. \quit

-- Queueing is a way to invoke: only roles granted it may queue, as only
-- those granted aws_lambda.invoke may call it (sql/queue.sql).
REVOKE ALL ON FUNCTION lambda_fdw.enqueue(pg_catalog.text, pg_catalog.jsonb, pg_catalog.text,
  pg_catalog.text, pg_catalog.text, pg_catalog.jsonb) FROM PUBLIC;

-- Which path queued a row, so that the worker signs it as that path does
-- (sql/queue.sql).
ALTER TABLE lambda_fdw.invocations ADD COLUMN foreign_table pg_catalog.oid;

-- 0.2.0 bound two operators through the installer's search_path, where a
-- database owner could have put exact-typed ones of its own first: the
-- queue's row-level security policy (regrole = regrole) and the statistics
-- view's mean (float8 / int8). Both again, with pg_catalog's operators
-- named (sql/queue.sql, sql/stats.sql).
ALTER POLICY own_invocations ON lambda_fdw.invocations
  USING (queued_by OPERATOR(pg_catalog.=) current_user::pg_catalog.regrole);
CREATE OR REPLACE VIEW lambda_fdw.stat_invocations AS
  SELECT d.datname AS database,
         r.rolname AS role,
         s.server,
         s.function_name,
         s.calls,
         s.succeeded,
         s.function_errors,
         s.throttled,
         s.client_errors,
         s.service_errors,
         s.timeouts,
         s.connect_errors,
         s.retries,
         s.total_time_ms,
         s.min_time_ms,
         s.max_time_ms,
         CASE WHEN s.calls > 0
              THEN s.total_time_ms OPERATOR(pg_catalog./) s.calls::pg_catalog.float8 END AS mean_time_ms,
         s.bytes_sent,
         s.bytes_received,
         s.last_error,
         s.last_error_at,
         s.last_call_at,
         s.dbid,
         s.userid,
         s.serverid
    FROM lambda_fdw.stat_invocations_internal() s
    LEFT JOIN pg_catalog.pg_database d ON d.oid = s.dbid
    LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.userid;
