-- Bad input, table-driven, over both surfaces: every case gets its exact
-- SQLSTATE and message, and none reaches the network. The only server points
-- at a closed port: a case that sent anything would fail with "invoke API
-- failed" / "could not connect" instead of its own message.
\set VERBOSITY default
CREATE SERVER nonet FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'us-east-1', endpoint_url 'http://127.0.0.1:9', max_attempts '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER nonet
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key');
CREATE FOREIGN TABLE f (payload jsonb, qualifier text, invocation_type text, log_type text, context jsonb,
  status_code int, response jsonb) SERVER nonet OPTIONS (function_name 'f');

CREATE TABLE cases (n serial PRIMARY KEY, surface text, stmt text);
INSERT INTO cases (surface, stmt) VALUES
-- aws_lambda.invoke: function names
('invoke', $$SELECT aws_lambda.invoke('', '{}'::json, 'us-east-1')$$),
('invoke', $$SELECT aws_lambda.invoke(repeat('a', 65), '{}'::json, 'us-east-1')$$),
('invoke', $$SELECT aws_lambda.invoke('arn:aws:lambda:us-east-1:123456789012:function:' || repeat('a', 64) || ':' || repeat('q', 60), '{}'::json)$$),
('invoke', $$SELECT aws_lambda.invoke('a:b:c', '{}'::json, 'us-east-1')$$),
('invoke', $$SELECT aws_lambda.invoke('arn:aws:s3:us-east-1:123456789012:function:f', '{}'::json)$$),
('invoke', $$SELECT aws_lambda.invoke('arn:aws:lambda:us-east-1:123456789012:function', '{}'::json)$$),
('invoke', $$SELECT aws_lambda.invoke('arn:aws:lambda:us-east-1:123456789012:layer:f', '{}'::json)$$),
('invoke', $$SELECT aws_lambda.invoke('arn:aws:lambda:useast1:123456789012:function:f', '{}'::json)$$),
('invoke', $$SELECT aws_lambda.invoke('arn:aws:lambda:us-east-1:123456789012:function:f:v1:extra', '{}'::json)$$),
('invoke', $$SELECT aws_lambda.invoke('12345:function:f', '{}'::json, 'us-east-1')$$),
('invoke', $$SELECT aws_lambda.invoke('my function', '{}'::json, 'us-east-1')$$),
('invoke', $$SELECT aws_lambda.invoke(' f', '{}'::json, 'us-east-1')$$),
('invoke', $$SELECT aws_lambda.invoke('f ', '{}'::json, 'us-east-1')$$),
('invoke', $$SELECT aws_lambda.invoke('f:', '{}'::json, 'us-east-1')$$),
-- qualifiers
('invoke', $$SELECT aws_lambda.invoke('f', '{}'::json, 'us-east-1', qualifier => '')$$),
('invoke', $$SELECT aws_lambda.invoke('f', '{}'::json, 'us-east-1', qualifier => 'bad/alias')$$),
('invoke', $$SELECT aws_lambda.invoke('f', '{}'::json, 'us-east-1', qualifier => repeat('q', 128) || 'x')$$),
('invoke', $$SELECT aws_lambda.invoke('f:prod', '{}'::json, 'us-east-1', qualifier => 'dev')$$),
-- regions
('invoke', $$SELECT aws_lambda.invoke('f', '{}'::json, 'us-east')$$),
('invoke', $$SELECT aws_lambda.invoke('f', '{}'::json, 'US-EAST-1')$$),
('invoke', $$SELECT aws_lambda.invoke('f', '{}'::json, 'us-east-1 ')$$),
('invoke', $$SELECT aws_lambda.invoke('arn:aws:lambda:eu-west-1:123456789012:function:f', '{}'::json, 'us-east-1')$$),
('invoke', $$SELECT aws_lambda.invoke('f', '{}'::json)$$),
-- enums
('invoke', $$SELECT aws_lambda.invoke('f', '{}'::json, 'us-east-1', 'event')$$),
('invoke', $$SELECT aws_lambda.invoke('f', '{}'::json, 'us-east-1', 'Event ')$$),
('invoke', $$SELECT aws_lambda.invoke('f', '{}'::json, 'us-east-1', '')$$),
('invoke', $$SELECT aws_lambda.invoke('f', '{}'::jsonb, 'us-east-1', 'DRYRUN')$$),
('invoke', $$SELECT aws_lambda.invoke('f', '{}'::json, 'us-east-1', 'RequestResponse', 'tail')$$),
('invoke', $$SELECT aws_lambda.invoke('f', '{}'::json, 'us-east-1', 'RequestResponse', 'NONE')$$),
-- context and payload limits
('invoke', $$SELECT aws_lambda.invoke('f', '{}'::json, 'us-east-1', context => '[1]'::json)$$),
('invoke', $$SELECT aws_lambda.invoke('f', '{}'::jsonb, 'us-east-1', context => '"text"'::jsonb)$$),
('invoke', $$SELECT aws_lambda.invoke('f', '{}'::json, 'us-east-1', context => json_build_object('custom', repeat('x', 3000)))$$),
('invoke', $$SELECT aws_lambda.invoke('f', json_build_object('k', repeat('x', 6 * 1024 * 1024)), 'us-east-1')$$),
('invoke', $$SELECT aws_lambda.invoke('f', json_build_object('k', repeat('x', 1024 * 1024)), 'us-east-1', 'Event')$$),
-- NULLs
('invoke', $$SELECT aws_lambda.invoke(NULL::text, '{}'::json, 'us-east-1')$$),
('invoke', $$SELECT aws_lambda.invoke('f', NULL::json, 'us-east-1')$$),
('invoke', $$SELECT aws_lambda.invoke('f', NULL::jsonb, 'us-east-1')$$),
('invoke', $$SELECT aws_lambda.invoke('f', '{}'::json, 'us-east-1', NULL)$$),
('invoke', $$SELECT aws_lambda.invoke('f', '{}'::json, 'us-east-1', 'RequestResponse', NULL)$$),
('invoke', $$SELECT aws_lambda.invoke(ROW(NULL, 'us-east-1')::aws_commons._lambda_function_arn_1, '{}'::json)$$),
('invoke', $$SELECT aws_lambda.invoke(NULL::aws_commons._lambda_function_arn_1, '{}'::jsonb)$$),
('invoke', $$SELECT aws_lambda.invoke(aws_commons.create_lambda_function_arn('f', 'us-east-1'), '{}'::json, NULL)$$),
-- foreign tables
('fdw', $$SELECT * FROM f$$),
('fdw', $$SELECT * FROM f WHERE payload = '{}' AND invocation_type = 'event'$$),
('fdw', $$SELECT * FROM f WHERE payload = '{}' AND log_type = 'Tail '$$),
('fdw', $$SELECT * FROM f WHERE payload = '{}' AND qualifier = ''$$),
('fdw', $$SELECT * FROM f WHERE payload = '{}' AND qualifier = 'a b'$$),
('fdw', $$SELECT * FROM f WHERE payload = '{}' AND context = '[1]'$$),
('fdw', $$SELECT * FROM f WHERE payload = ('{"k": "' || repeat('x', 6 * 1024 * 1024) || '"}')::jsonb$$),
('fdw', $$SELECT * FROM f WHERE payload = (SELECT '{}'::jsonb) AND qualifier = (SELECT 'bad qualifier!')$$),
-- options, refused at CREATE time
('ddl', $$CREATE SERVER s FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'nowhere')$$),
('ddl', $$CREATE SERVER s FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-east-1', max_concurrency '-1')$$),
('ddl', $$CREATE SERVER s FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-east-1', endpoint_url 'http://')$$),
('ddl', $$CREATE SERVER s FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-east-1', aws_session_token 't')$$),
('ddl', $$CREATE USER MAPPING FOR PUBLIC SERVER nonet OPTIONS (role_arn 'arn:aws:iam::123:role/r')$$),
('ddl', $$CREATE FOREIGN TABLE t (payload jsonb) SERVER nonet OPTIONS (function_name '')$$),
('ddl', $$CREATE FOREIGN TABLE t (payload jsonb) SERVER nonet OPTIONS (function_name 'f', invocation_type 'Event ')$$),
('ddl', $$CREATE FOREIGN TABLE t (payload jsonb) SERVER nonet OPTIONS (function_name 'f', max_concurrency 'ten')$$);

-- Non-object payloads are valid Lambda input: these do go out (and meet the closed port).
INSERT INTO cases (surface, stmt) VALUES
('sent', $$SELECT aws_lambda.invoke('f', '[1, 2]'::json, 'us-east-1')$$),
('sent', $$SELECT aws_lambda.invoke('f', '"just a string"'::jsonb, 'us-east-1')$$),
('sent', $$SELECT * FROM f WHERE payload = '42'$$);

CREATE FUNCTION run_case(stmt text, OUT code text, OUT message text) LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE stmt;
  code := '00000';
  message := 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
END $$;

SELECT n, surface, r.code, left(r.message, 150) AS message
  FROM cases, LATERAL run_case(stmt) r ORDER BY n;
SELECT count(*) FILTER (WHERE surface <> 'sent') AS bad_inputs,
       count(*) FILTER (WHERE surface <> 'sent' AND r.message ~ 'connect|invoke API failed') AS reached_network
  FROM cases, LATERAL run_case(stmt) r;

DROP TABLE cases;
DROP FUNCTION run_case;
SET client_min_messages = warning;
DROP SERVER nonet CASCADE;
RESET client_min_messages;
