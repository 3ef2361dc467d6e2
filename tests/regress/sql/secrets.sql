-- Secrets live in user mappings only, and never come back: not in errors,
-- notices, EXPLAIN, or the server log (tests/run greps the log and these
-- results for the planted values; the statements below never spell them out).
\set VERBOSITY verbose
CREATE SERVER sec FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'us-west-2', endpoint_url 'http://127.0.0.1:45661', max_attempts '2', request_timeout_ms '500');
CREATE SERVER sec_dead FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'eu-central-1', endpoint_url 'http://127.0.0.1:9', max_attempts '1');
-- (psql echoes what \gexec runs: not for these two statements)
\set ECHO none
SELECT format('CREATE USER MAPPING FOR CURRENT_USER SERVER %I OPTIONS (aws_access_key_id %L, aws_secret_access_key %L, aws_session_token %L)',
              s, 'AKID' || 'PLANTED' || 'KEY', 'PLANTED' || '-SECRET-' || '5e1f', 'PLANTED' || '-TOKEN-' || '77aa')
  FROM unnest(ARRAY['sec', 'sec_dead']) s \gexec
\set ECHO all
CREATE FOREIGN TABLE sec_inspect (payload jsonb, context jsonb, response jsonb) SERVER sec OPTIONS (function_name 'inspect');
CREATE FOREIGN TABLE sec_fail (payload jsonb, response jsonb) SERVER sec OPTIONS (function_name 'handled-error');
CREATE FOREIGN TABLE sec_missing (payload jsonb, response jsonb) SERVER sec OPTIONS (function_name 'missing');
CREATE FOREIGN TABLE sec_500 (payload jsonb, response jsonb) SERVER sec OPTIONS (function_name 'server-error');
CREATE FOREIGN TABLE sec_notjson (payload jsonb, response jsonb) SERVER sec OPTIONS (function_name 'not-json');
CREATE FOREIGN TABLE sec_silence (payload jsonb, response jsonb) SERVER sec OPTIONS (function_name 'silence');
CREATE FOREIGN TABLE sec_dead_echo (payload jsonb, response jsonb) SERVER sec_dead OPTIONS (function_name 'echo');

-- The server log records everything the extension reports, at every level.
SET log_min_messages = debug5;
SET log_min_error_statement = debug5;

-- Every error path, through both surfaces, with the verbose error fields.
CREATE TABLE seen (what text, code text, message text, detail text, hint text, context text);
CREATE FUNCTION record(what text, stmt text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE c text; m text; d text; h text; x text;
BEGIN
  EXECUTE stmt;
  INSERT INTO seen VALUES (what, '00000', 'no error', NULL, NULL, NULL);
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS c = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL,
                          h = PG_EXCEPTION_HINT, x = PG_EXCEPTION_CONTEXT;
  INSERT INTO seen VALUES (what, c, m, d, h, x);
END $$;
SELECT record('fdw ok', $$SELECT * FROM sec_inspect WHERE payload = '{}'$$);
SELECT record('fdw function error', $$SELECT * FROM sec_fail WHERE payload = '{}'$$);
SELECT record('fdw not found', $$SELECT * FROM sec_missing WHERE payload = '{}'$$);
SELECT record('fdw 500 retried', $$SELECT * FROM sec_500 WHERE payload = '{}'$$);
SELECT record('fdw not json', $$SELECT * FROM sec_notjson WHERE payload = '{}'$$);
SELECT record('fdw timeout', $$SELECT * FROM sec_silence WHERE payload = '{}'$$);
SELECT record('fdw refused', $$SELECT * FROM sec_dead_echo WHERE payload = '{}'$$);
SELECT record('fdw no payload', $$SELECT * FROM sec_inspect$$);
SELECT record('fdw bad enum', $$SELECT * FROM sec_inspect WHERE payload = '{}' AND context = '[]'$$);
SELECT record('invoke function error', $$SELECT aws_lambda.invoke('handled-error', '{}'::json, 'us-west-2')$$);
SELECT record('invoke not found', $$SELECT aws_lambda.invoke('missing', '{}'::json, 'us-west-2')$$);
SELECT record('invoke 500 retried', $$SELECT aws_lambda.invoke('server-error', '{}'::json, 'us-west-2')$$);
SELECT record('invoke not json', $$SELECT aws_lambda.invoke('not-json', '{}'::jsonb, 'us-west-2')$$);
SELECT record('invoke timeout', $$SELECT aws_lambda.invoke('silence', '{}'::json, 'us-west-2')$$);
SELECT record('invoke refused', $$SELECT aws_lambda.invoke('echo', '{}'::json, 'eu-central-1')$$);
SELECT record('invoke bad input', $$SELECT aws_lambda.invoke('bad name', '{}'::json, 'us-west-2')$$);
SELECT record('option error', $$ALTER USER MAPPING FOR CURRENT_USER SERVER sec OPTIONS (DROP aws_access_key_id)$$);
SELECT record('option error 2', $$ALTER USER MAPPING FOR CURRENT_USER SERVER sec OPTIONS (ADD profile 'p')$$);
RESET log_min_messages;
RESET log_min_error_statement;

SELECT what, code, message FROM seen ORDER BY what;
-- Nothing the user was shown mentions the planted values.
SELECT count(*) AS leaks FROM seen
 WHERE concat_ws(' ', message, detail, hint, context) ~ ('PLANTED' || '|' || 'AKIDPLANTED');

-- EXPLAIN shows the scan, not the credentials.
EXPLAIN (VERBOSE, COSTS OFF) SELECT response FROM sec_inspect WHERE payload = '{"e": 1}';
-- Only the mapping's user and superusers see the options.
CREATE ROLE regress_other;
GRANT USAGE ON FOREIGN SERVER sec TO regress_other;
SET ROLE regress_other;
SELECT srvname, umoptions FROM pg_user_mappings WHERE srvname IN ('sec', 'sec_dead') ORDER BY 1;
RESET ROLE;
REVOKE ALL ON FOREIGN SERVER sec FROM regress_other;
DROP ROLE regress_other;

DROP TABLE seen;
DROP FUNCTION record;
SET client_min_messages = warning;
DROP SERVER sec, sec_dead CASCADE;
RESET client_min_messages;
