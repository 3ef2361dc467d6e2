-- The RDS for PostgreSQL guide's examples, as written, against ministack.
-- Servers route calls by region: us-east-1 -> ministack, us-west-2 -> the
-- wire stub, eu-west-1 -> nothing listening.
\set VERBOSITY default
CREATE SERVER lambda_us_east_1 FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'us-east-1', endpoint_url 'http://127.0.0.1:45660', max_attempts '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER lambda_us_east_1
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key');
CREATE SERVER lambda_us_west_2 FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'us-west-2', endpoint_url 'http://127.0.0.1:45661', max_attempts '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER lambda_us_west_2
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key');

-- Step 4: the helper function, stored with \gset.
SELECT aws_commons.create_lambda_function_arn(
   'hello',
   'us-east-1'
) AS aws_lambda_arn_1 \gset
SELECT aws_commons.create_lambda_function_arn(
   '000000000000:function:hello',
   'us-east-1'
) AS lambda_partial_arn_1 \gset
SELECT aws_commons.create_lambda_function_arn(
   'arn:aws:lambda:us-east-1:000000000000:function:hello'
) AS lambda_arn_1 \gset
\echo :aws_lambda_arn_1 :lambda_partial_arn_1 :lambda_arn_1

-- Step 5: invoke the function using its ARN.
SELECT * from aws_lambda.invoke(aws_commons.create_lambda_function_arn('arn:aws:lambda:us-east-1:000000000000:function:hello', 'us-east-1'), '{"body": "Hello from Postgres!"}'::json );

-- Examples: synchronous invocation, three ways.
SELECT * FROM aws_lambda.invoke(:'aws_lambda_arn_1', '{"body": "Hello from Postgres!"}'::json);
SELECT * FROM aws_lambda.invoke(:'aws_lambda_arn_1', '{"body": "Hello from Postgres!"}'::json, 'RequestResponse');
SELECT * FROM aws_lambda.invoke(aws_commons.create_lambda_function_arn('hello', 'us-east-1'),
'{"body": "Hello from Postgres!"}'::json
);
-- The other stored forms.
SELECT status_code, payload FROM aws_lambda.invoke(:'lambda_partial_arn_1', '{"body": "Hello from Postgres!"}'::json);
SELECT status_code, payload FROM aws_lambda.invoke(:'lambda_arn_1', '{"body": "Hello from Postgres!"}'::json, 'RequestResponse');

-- Asynchronous invocation.
SELECT * FROM aws_lambda.invoke(:'aws_lambda_arn_1', '{"body": "Hello from Postgres!"}'::json, 'Event');
SELECT * FROM aws_lambda.invoke(:'aws_lambda_arn_1', '{"body": "Hello from Postgres!"}'::json, 'DryRun');

-- Capturing the execution log (the guide's statement, without its stray "select").
SELECT status_code, payload, position('lambda_fdw log line for ann' IN log) > 0 AS logged FROM (
SELECT *, convert_from(decode(log_result, 'base64'), 'utf-8') as log FROM aws_lambda.invoke(aws_commons.create_lambda_function_arn('logger', 'us-east-1'), '{"name": "ann"}'::json, 'RequestResponse', 'Tail')
) s;
-- log_result is NULL unless log_type is Tail.
SELECT log_result IS NULL AS no_log FROM aws_lambda.invoke('logger', '{}'::json, 'us-east-1');

-- Client context: a JSON object in the context parameter (the stub echoes what it received).
SELECT payload->'client_context' AS received, payload->>'log_type' AS log_type
  FROM aws_lambda.invoke(aws_commons.create_lambda_function_arn('inspect', 'us-west-2'),
       '{"body": "Hello from Postgres!"}'::json, 'RequestResponse', 'Tail', '{"custom": {"foo": "bar"}}'::json);
SELECT payload->'client_context' AS received
  FROM aws_lambda.invoke('inspect', '{}'::jsonb, 'us-west-2', context => '{"env": {"stage": "test"}}'::jsonb);

-- A specific version: "versioned" has version 1 (alias custom_version) and other code at $LATEST.
SELECT aws_commons.create_lambda_function_arn('versioned', 'us-east-1') AS versioned_arn \gset
-- As the guide writes it, PostgreSQL cannot choose between the text and the
-- composite overloads (on RDS too, with the same signatures):
SELECT * FROM aws_lambda.invoke(:'versioned_arn', '{"body": "Hello from Postgres!"}'::json, 'RequestResponse', 'None', NULL, 'custom_version');
\echo :LAST_ERROR_SQLSTATE
-- With the variable cast to the composite, or the qualifier in the name, it works.
SELECT * FROM aws_lambda.invoke(:'versioned_arn'::aws_commons._lambda_function_arn_1, '{"body": "Hello from Postgres!"}'::json, 'RequestResponse', 'None', NULL, 'custom_version');
SELECT * FROM aws_lambda.invoke(aws_commons.create_lambda_function_arn('versioned:custom_version', 'us-east-1'),
'{"body": "Hello from Postgres!"}'::json);
SELECT status_code, payload, executed_version FROM aws_lambda.invoke('versioned', '{}'::json, 'us-east-1', qualifier => '1');
SELECT status_code, payload, executed_version FROM aws_lambda.invoke('versioned:custom_version', '{}'::jsonb, 'us-east-1');

-- jsonb in, jsonb out; json in, json out (the text as the function returned it).
SELECT pg_typeof(payload), payload FROM aws_lambda.invoke('echo', '{"b": 1, "a": [1, 2]}'::jsonb, 'us-east-1');
SELECT pg_typeof(payload), payload FROM aws_lambda.invoke('echo', '{"b": 1, "a": [1, 2]}'::json, 'us-east-1');
SELECT payload FROM aws_lambda.invoke('echo', '[1, "two", null]'::json, 'us-east-1');

-- Errors, worded as RDS words them.
SELECT * FROM aws_lambda.invoke(:'aws_lambda_arn_1', '{"body": "Hello from Postgres!"}'::json, 'RequestResponse', 'tail');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM aws_lambda.invoke(:'aws_lambda_arn_1', '{}'::json, 'requestresponse');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM aws_lambda.invoke('fail', '{"reason": "bad input"}'::json, 'us-east-1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM aws_lambda.invoke('handled-error', '{}'::jsonb, 'us-west-2');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM aws_lambda.invoke('arn:aws:lambda:us-east-1:000000000000:function:hello', '{}'::json, 'us-west-2');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM aws_lambda.invoke(aws_commons.create_lambda_function_arn('arn:aws:lambda:us-east-1:000000000000:function:hello', 'us-west-1'), '{}'::json);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM aws_lambda.invoke('versioned:custom_version', '{}'::json, 'us-east-1', qualifier => '1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM aws_lambda.invoke('hello', NULL::json, 'us-east-1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM aws_lambda.invoke(NULL::text, '{}'::json, 'us-east-1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM aws_lambda.invoke('hello', '{}'::json, 'us-east-1', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM aws_lambda.invoke('bad name!', '{}'::json, 'us-east-1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM aws_lambda.invoke('hello', '{}'::json, 'moon-1');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM aws_lambda.invoke('hello', '{}'::json);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
SELECT * FROM aws_lambda.invoke('nope', '{}'::json, 'us-east-1');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default

-- The region comes from the argument, the ARN, then aws_lambda.default_region.
SET aws_lambda.default_region = 'us-east-1';
SELECT status_code, payload FROM aws_lambda.invoke('hello', '{}'::json);
SELECT status_code FROM aws_lambda.invoke('inspect', '{}'::json, 'us-west-2');
RESET aws_lambda.default_region;

-- No server for the region: the settings and the default AWS chain (which has no credentials here).
CREATE SERVER lambda_eu_west_1 FOREIGN DATA WRAPPER lambda_fdw
  OPTIONS (region 'eu-west-1', endpoint_url 'http://127.0.0.1:9', max_attempts '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER lambda_eu_west_1
  OPTIONS (aws_access_key_id 'AKIDTEST', aws_secret_access_key 'test-secret-key');
SELECT * FROM aws_lambda.invoke('hello', '{}'::json, 'eu-west-1');
\echo :LAST_ERROR_SQLSTATE
SET aws_lambda.endpoint_override = 'http://127.0.0.1:45660';
SELECT * FROM aws_lambda.invoke('hello', '{}'::json, 'ap-south-1');
\echo :LAST_ERROR_SQLSTATE
RESET aws_lambda.endpoint_override;
-- Two servers for one region is an error that names them.
CREATE SERVER lambda_us_east_1_bis FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-east-1');
SELECT * FROM aws_lambda.invoke('hello', '{}'::json, 'us-east-1');
\echo :LAST_ERROR_SQLSTATE
DROP SERVER lambda_us_east_1_bis;

-- Settings: RDS's names, defaults and ranges; endpoint_override is superuser-only.
SHOW aws_lambda.connect_timeout_ms;
SHOW aws_lambda.request_timeout_ms;
SET aws_lambda.request_timeout_ms = 0;
SET aws_lambda.connect_timeout_ms = 900001;

-- Privileges, as on RDS: nobody but the installing superuser until granted.
CREATE ROLE regress_lambda_user;
SET ROLE regress_lambda_user;
SELECT * FROM aws_lambda.invoke(:'aws_lambda_arn_1', '{}'::json);
SET aws_lambda.endpoint_override = 'http://127.0.0.1:45661';
RESET ROLE;
GRANT USAGE ON SCHEMA aws_lambda TO regress_lambda_user;
SET ROLE regress_lambda_user;
SELECT * FROM aws_lambda.invoke(:'aws_lambda_arn_1', '{}'::json);
RESET ROLE;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA aws_lambda TO regress_lambda_user;
SET ROLE regress_lambda_user;
-- The RDS grants are enough: the call routes through the superuser's
-- us-east-1 server, which needs no USAGE grant. With no mapping there, its
-- own or PUBLIC's, the server process's AWS chain signs (it has none here).
SELECT * FROM aws_lambda.invoke(:'aws_lambda_arn_1', '{}'::json);
RESET ROLE;
CREATE USER MAPPING FOR regress_lambda_user SERVER lambda_us_east_1
  OPTIONS (aws_access_key_id 'AKIDUSER', aws_secret_access_key 'user-secret-key');
SET ROLE regress_lambda_user;
SELECT status_code, payload FROM aws_lambda.invoke(:'aws_lambda_arn_1', '{}'::json);
RESET ROLE;
DROP USER MAPPING FOR regress_lambda_user SERVER lambda_us_east_1;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA aws_lambda FROM regress_lambda_user;
REVOKE ALL ON SCHEMA aws_lambda FROM regress_lambda_user;
DROP ROLE regress_lambda_user;

-- Leave no servers behind for the next suites.
SET client_min_messages = warning;
DROP SERVER lambda_us_east_1, lambda_us_west_2, lambda_eu_west_1 CASCADE;
RESET client_min_messages;
