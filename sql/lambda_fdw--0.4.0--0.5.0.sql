-- lambda_fdw 0.4.0 -> 0.5.0: lambda_fdw.stat_invocations gains `rows`, the
-- rows its calls carried (a batched call carries many; docs/statistics.md),
-- shown after `calls`. A view cannot gain a column in the middle, so the
-- view and the function behind it are made again, as pg_stat_statements'
-- updates do: a view of your own over lambda_fdw.stat_invocations must be
-- dropped before the update and made again after it (docs/upgrading.md).
-- Grants are the install script's: SELECT to PUBLIC.
\echo Use "ALTER EXTENSION lambda_fdw UPDATE TO '0.5.0'" to load this file. \quit

DROP VIEW lambda_fdw.stat_invocations;
DROP FUNCTION lambda_fdw.stat_invocations_internal();
CREATE FUNCTION lambda_fdw.stat_invocations_internal(
  OUT dbid oid,
  OUT userid oid,
  OUT serverid oid,
  OUT server text,
  OUT function_name text,
  OUT calls bigint,
  OUT succeeded bigint,
  OUT function_errors bigint,
  OUT throttled bigint,
  OUT client_errors bigint,
  OUT service_errors bigint,
  OUT timeouts bigint,
  OUT connect_errors bigint,
  OUT retries bigint,
  OUT total_time_ms double precision,
  OUT min_time_ms double precision,
  OUT max_time_ms double precision,
  OUT bytes_sent bigint,
  OUT bytes_received bigint,
  OUT last_error text,
  OUT last_error_at timestamptz,
  OUT last_call_at timestamptz,
  OUT rows bigint)
  RETURNS SETOF record
  LANGUAGE c VOLATILE STRICT PARALLEL RESTRICTED
  AS 'MODULE_PATHNAME', 'lambda_fdw_stat_invocations';
COMMENT ON FUNCTION lambda_fdw.stat_invocations_internal() IS
  'The entries behind lambda_fdw.stat_invocations that the current role may see';

-- One row per database, role, server (NULL: no server, the default AWS
-- chain) and function as resolved (with its qualifier). A role sees its
-- own rows (and those of roles it has the privileges of); superusers and
-- members of pg_read_all_stats see all.
CREATE VIEW lambda_fdw.stat_invocations AS
  SELECT d.datname AS database,
         r.rolname AS role,
         s.server,
         s.function_name,
         s.calls,
         s.rows,
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
COMMENT ON VIEW lambda_fdw.stat_invocations IS
  'Lambda invocations made by this server, per database, role, server and function (needs lambda_fdw in shared_preload_libraries)';
GRANT SELECT ON lambda_fdw.stat_invocations TO PUBLIC;
