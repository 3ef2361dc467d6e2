-- Reliability: retries, faults from the wire stub, time limits, cancel and
-- terminate from another session, triggers, privileges.
\set VERBOSITY default
CREATE SERVER stub FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'us-west-2', endpoint_url 'http://127.0.0.1:45661');
CREATE USER MAPPING FOR CURRENT_USER SERVER stub
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key');
CREATE FOREIGN TABLE flaky (payload jsonb, response jsonb) SERVER stub OPTIONS (function_name 'flaky');
CREATE FOREIGN TABLE calls (payload jsonb, response jsonb) SERVER stub OPTIONS (function_name 'calls');

-- Retried (max_attempts defaults to 3): throttling, honouring Retry-After ...
SELECT response->'attempts' AS attempts, (response->>'min_gap_ms')::int >= 900 AS waited_retry_after
  FROM flaky WHERE payload = '{"key": "t1", "fail": 2, "status": 429, "retry_after": "1"}';
-- ... 5xx answers, an HTML 502 from a proxy, and reset connections.
SELECT response->'attempts' AS attempts FROM flaky WHERE payload = '{"key": "s1", "fail": 2, "status": 500}';
SELECT response->'attempts' AS attempts FROM flaky WHERE payload = '{"key": "h1", "fail": 1, "status": 502}';
SELECT response->'attempts' AS attempts FROM flaky WHERE payload = '{"key": "u1", "fail": 2, "status": 503}';
SELECT response FROM aws_lambda.invoke('reset', '{"key": "r1", "fail": 2}'::jsonb, 'us-west-2') AS r(status_code, response, v, l);
-- After the last attempt the error says so, and how many there were.
SELECT response FROM flaky WHERE payload = '{"key": "t2", "fail": 5, "status": 429, "retry_after": "0"}';
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM aws_lambda.invoke('flaky', '{"key": "t3", "fail": 5, "status": 500}'::json, 'us-west-2');
\echo :LAST_ERROR_SQLSTATE
SELECT response->'calls' AS calls FROM calls WHERE payload = '{"key": "t3", "of": "flaky"}';
-- max_attempts counts every try.
ALTER SERVER stub OPTIONS (ADD max_attempts '5');
SELECT response->'attempts' AS attempts FROM flaky WHERE payload = '{"key": "t4", "fail": 4, "status": 429, "retry_after": "0"}';
ALTER SERVER stub OPTIONS (SET max_attempts '1');
SELECT response FROM flaky WHERE payload = '{"key": "t5", "fail": 1, "status": 429, "retry_after": "0"}';
ALTER SERVER stub OPTIONS (DROP max_attempts);
-- Final errors are never retried: one call.
CREATE FOREIGN TABLE counted_404 (payload jsonb, response jsonb) SERVER stub OPTIONS (function_name 'counted-404');
\set VERBOSITY terse
SELECT response FROM counted_404 WHERE payload = '{"key": "n1"}';
\set VERBOSITY default
SELECT response->'calls' AS calls FROM calls WHERE payload = '{"key": "n1", "of": "counted-404"}';

-- Faults: each a clear error or the right row, never a crash or a hang.
ALTER SERVER stub OPTIONS (ADD max_attempts '1', request_timeout_ms '1500');
CREATE FOREIGN TABLE truncated (payload jsonb, response jsonb) SERVER stub OPTIONS (function_name 'truncated');
SELECT response FROM truncated WHERE payload = '{}';
\echo :LAST_ERROR_SQLSTATE
CREATE FOREIGN TABLE reset_mid_body (payload jsonb, response jsonb) SERVER stub OPTIONS (function_name 'reset-mid-body');
SELECT response FROM reset_mid_body WHERE payload = '{}';
\echo :LAST_ERROR_SQLSTATE
CREATE FOREIGN TABLE silence (payload jsonb, response jsonb) SERVER stub OPTIONS (function_name 'silence');
SELECT response FROM silence WHERE payload = '{}';
\echo :LAST_ERROR_SQLSTATE
CREATE FOREIGN TABLE slow_headers (payload jsonb, response jsonb) SERVER stub OPTIONS (function_name 'slow-headers');
SELECT response FROM slow_headers WHERE payload = '{"ms": 300}';
SELECT response FROM slow_headers WHERE payload = '{"ms": 3000}';
\echo :LAST_ERROR_SQLSTATE
CREATE FOREIGN TABLE html_502 (payload jsonb, response jsonb) SERVER stub OPTIONS (function_name 'html-502');
SELECT response FROM html_502 WHERE payload = '{}';
\echo :LAST_ERROR_SQLSTATE
-- Answers of up to 6 MB (Lambda's most) are read, with a Content-Length or
-- chunked; larger ones are refused as they arrive: on their Content-Length,
-- else once the streamed count passes 6 MB. The function ran: no retry.
CREATE FOREIGN TABLE huge (payload jsonb, response jsonb) SERVER stub OPTIONS (function_name 'huge');
SELECT length(response #>> '{}') AS chars FROM huge WHERE payload = '{"mb": 5}';
SELECT length(response #>> '{}') AS chars FROM huge WHERE payload = '{"mb": 5, "chunked": true}';
SELECT length(response::text) AS body_bytes FROM huge WHERE payload = '{"bytes": 6291456, "chunked": true}';
ALTER SERVER stub OPTIONS (SET max_attempts '3');
SELECT length(response #>> '{}') AS chars FROM huge WHERE payload = '{"key": "big1", "mb": 8}';
\echo :LAST_ERROR_SQLSTATE
SELECT length(response #>> '{}') AS chars FROM huge WHERE payload = '{"key": "big2", "bytes": 6291457, "chunked": true}';
\echo :LAST_ERROR_SQLSTATE
SELECT length(response #>> '{}') AS chars FROM huge WHERE payload = '{"key": "big3", "mb": 50, "chunked": true}';
SELECT payload->>'key' AS key, response->'calls' AS calls FROM calls
  WHERE payload IN ('{"key": "big1", "of": "huge"}', '{"key": "big2", "of": "huge"}', '{"key": "big3", "of": "huge"}')
  ORDER BY 1;
ALTER SERVER stub OPTIONS (SET max_attempts '1');
SELECT length(payload::text) AS chars FROM aws_lambda.invoke('huge', '{"mb": 5}'::json, 'us-west-2');
SELECT length(payload::text) AS chars FROM aws_lambda.invoke('huge', '{"mb": 8}'::json, 'us-west-2');
\echo :LAST_ERROR_SQLSTATE
SELECT length(payload::text) AS chars FROM aws_lambda.invoke('huge', '{"mb": 8, "chunked": true}'::jsonb, 'us-west-2');
\echo :LAST_ERROR_SQLSTATE
-- The headers lambda_fdw keeps are bounded too: X-Amz-Log-Result to 8 KiB
-- (Lambda sends 4 KB of log as base64), the executed version to 1 KiB.
CREATE FOREIGN TABLE long_header (payload jsonb, response jsonb, executed_version text, log_result text)
  SERVER stub OPTIONS (function_name 'long-header');
SELECT length(log_result) AS log_chars FROM long_header WHERE payload = '{"bytes": 8192}';
SELECT length(log_result) AS log_chars FROM long_header WHERE payload = '{"bytes": 8193}';
\echo :LAST_ERROR_SQLSTATE
SELECT length(executed_version) AS version_chars FROM long_header
  WHERE payload = '{"header": "X-Amz-Executed-Version", "bytes": 1025}';
ALTER SERVER stub OPTIONS (DROP max_attempts, DROP request_timeout_ms);
SELECT 'still usable' AS session;

-- Time limits: a connection that cannot be made in connect_timeout_ms.
CREATE SERVER blackhole FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'ap-south-1', endpoint_url 'http://127.0.0.1:45662', connect_timeout_ms '300', max_attempts '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER blackhole
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key');
CREATE FOREIGN TABLE unconnectable (payload jsonb, response jsonb) SERVER blackhole OPTIONS (function_name 'echo');
SELECT response FROM unconnectable WHERE payload = '{}';
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM aws_lambda.invoke('echo', '{}'::json, 'ap-south-1');
\echo :LAST_ERROR_SQLSTATE
-- The settings apply where a server sets nothing.
ALTER SERVER blackhole OPTIONS (DROP connect_timeout_ms);
SET aws_lambda.connect_timeout_ms = 200;
SELECT response FROM unconnectable WHERE payload = '{}';
RESET aws_lambda.connect_timeout_ms;
SET aws_lambda.request_timeout_ms = 500;
SELECT response FROM silence WHERE payload = '{}';
RESET aws_lambda.request_timeout_ms;

-- statement_timeout interrupts aws_lambda.invoke and a call in a trigger.
CREATE SERVER ms FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'us-east-1', endpoint_url 'http://127.0.0.1:45660', max_attempts '1', request_timeout_ms '60000');
CREATE USER MAPPING FOR CURRENT_USER SERVER ms
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key');
SET statement_timeout = '500ms';
SELECT * FROM aws_lambda.invoke('slow', '{"seconds": 5}'::json, 'us-east-1');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE orders (id int PRIMARY KEY, notified jsonb);
CREATE FUNCTION notify_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  SELECT payload INTO NEW.notified FROM aws_lambda.invoke('slow', json_build_object('seconds', NEW.id), 'us-east-1');
  RETURN NEW;
END $$;
CREATE TRIGGER orders_notify BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION notify_order();
INSERT INTO orders (id) VALUES (5);
\echo :LAST_ERROR_SQLSTATE
RESET statement_timeout;
INSERT INTO orders (id) VALUES (0);
SELECT * FROM orders;

-- pg_cancel_backend and pg_terminate_backend from another session, through
-- dblink: the waiting call ends within a second; the cluster carries on.
CREATE EXTENSION dblink;
SELECT dblink_connect('other', format('dbname=%s host=%s port=%s', current_database(),
  current_setting('unix_socket_directories'), current_setting('port')));
SELECT dblink_exec('other', 'SET application_name = ''lambda_other''');
CREATE FUNCTION cancel_other_after(query text, wait interval)
  RETURNS TABLE (canceled bool, ended_within_1s bool, error text)
LANGUAGE plpgsql AS $$
DECLARE pid int; t0 timestamptz;
BEGIN
  PERFORM set_config('client_min_messages', 'warning', true);
  SELECT p INTO pid FROM dblink('other', 'SELECT pg_backend_pid()') AS t(p int);
  PERFORM dblink_send_query('other', query);
  PERFORM pg_sleep_for(wait);
  t0 := clock_timestamp();
  canceled := pg_cancel_backend(pid);
  WHILE dblink_is_busy('other') = 1 AND clock_timestamp() - t0 < interval '10 seconds' LOOP
    PERFORM pg_sleep(0.01);
  END LOOP;
  ended_within_1s := clock_timestamp() - t0 < interval '1 second';
  PERFORM * FROM dblink_get_result('other', false) AS t(x text);
  PERFORM * FROM dblink_get_result('other', false) AS t(x text);
  error := dblink_error_message('other');
  RETURN NEXT;
END $$;
SELECT * FROM cancel_other_after($$SELECT status_code::text FROM aws_lambda.invoke('slow', '{"seconds": 5}'::json, 'us-east-1')$$, '300ms');
CREATE FOREIGN TABLE slow (payload jsonb, response jsonb) SERVER ms OPTIONS (function_name 'slow');
SELECT * FROM cancel_other_after($$SELECT response::text FROM slow WHERE payload IN ('{"seconds": 5}', '{"seconds": 4}', '{"seconds": 3}')$$, '300ms');
SELECT * FROM cancel_other_after($$INSERT INTO orders (id) VALUES (7) RETURNING id::text$$, '300ms');
-- The other session is usable again, and sees no stale response.
SELECT * FROM dblink('other', $$SELECT payload::text FROM aws_lambda.invoke('echo', '{"fresh": true}'::json, 'us-east-1')$$) AS t(payload text);
SELECT id FROM orders ORDER BY id;
-- Terminate during a call: that backend ends, nobody else notices.
SELECT p AS other_pid FROM dblink('other', 'SELECT pg_backend_pid()') AS t(p int) \gset
SELECT dblink_send_query('other', $$SELECT status_code FROM aws_lambda.invoke('slow', '{"seconds": 5}'::json, 'us-east-1')$$);
SELECT pg_sleep_for('300ms');
SELECT pg_terminate_backend(:other_pid, 2000);
SELECT count(*) AS still_there FROM pg_stat_activity WHERE pid = :other_pid;
SELECT dblink_disconnect('other');
SELECT 'this session survived' AS session;
DROP TABLE orders;
DROP FUNCTION notify_order();

-- Privileges: a foreign table needs USAGE on its server to invoke, as
-- aws_lambda.invoke does; only superusers create servers (the wrapper has no
-- grants) and only a server's owner changes its endpoint.
CREATE ROLE regress_reader;
CREATE FOREIGN TABLE echo_ms (payload jsonb, response jsonb) SERVER ms OPTIONS (function_name 'echo');
GRANT SELECT ON echo_ms TO regress_reader;
CREATE USER MAPPING FOR regress_reader SERVER ms
  OPTIONS (aws_access_key_id 'AKIDREADER', aws_secret_access_key 'reader-secret-key');
SET ROLE regress_reader;
SELECT response FROM echo_ms WHERE payload = '{"who": "reader"}';
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER mine FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-east-1', endpoint_url 'http://127.0.0.1:1');
ALTER SERVER ms OPTIONS (SET endpoint_url 'http://127.0.0.1:1');
SET aws_lambda.endpoint_override = 'http://127.0.0.1:1';
RESET ROLE;
GRANT USAGE ON FOREIGN SERVER ms TO regress_reader;
SET ROLE regress_reader;
SELECT response FROM echo_ms WHERE payload = '{"who": "reader"}';
RESET ROLE;
DROP USER MAPPING FOR regress_reader SERVER ms;
REVOKE ALL ON FOREIGN SERVER ms FROM regress_reader;
DROP FOREIGN TABLE echo_ms;
DROP ROLE regress_reader;

SET client_min_messages = warning;
DROP SERVER stub, blackhole, ms CASCADE;
RESET client_min_messages;
