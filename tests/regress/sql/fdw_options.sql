-- Options and columns of lambda_fdw, checked when they are created.
\set VERBOSITY default
CREATE EXTENSION lambda_fdw;
SELECT fdwname, fdwhandler::regproc, fdwvalidator::regproc FROM pg_foreign_data_wrapper;

-- The wrapper itself takes no options.
ALTER FOREIGN DATA WRAPPER lambda_fdw OPTIONS (add region 'us-east-1');
\echo :LAST_ERROR_SQLSTATE

-- Servers: region is required and checked; unknown options are refused with the list.
CREATE SERVER s1 FOREIGN DATA WRAPPER lambda_fdw;
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER s1 FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-east');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER s1 FOREIGN DATA WRAPPER lambda_fdw OPTIONS (regoin 'us-east-1');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER s1 FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-east-1', endpoint_url 'localhost:4566');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER s1 FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-east-1', connect_timeout_ms '0');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER s1 FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-east-1', request_timeout_ms '900001');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER s1 FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-east-1', max_attempts 'three');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER s1 FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-east-1', max_concurrency '0');
\echo :LAST_ERROR_SQLSTATE
-- Credentials belong in user mappings only.
CREATE SERVER s1 FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-east-1', aws_secret_access_key 'SECRET-IN-SERVER');
\echo :LAST_ERROR_SQLSTATE
CREATE SERVER s1 FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-east-1', endpoint_url 'http://127.0.0.1:45660',
  connect_timeout_ms '500', request_timeout_ms '10000', max_attempts '2', max_concurrency '4');
-- ALTER is validated against the resulting option list.
ALTER SERVER s1 OPTIONS (DROP region);
\echo :LAST_ERROR_SQLSTATE
ALTER SERVER s1 OPTIONS (SET region 'eu-west-1');
ALTER SERVER s1 OPTIONS (SET region 'us-east-1');

-- User mappings: credential options and their combinations.
CREATE USER MAPPING FOR CURRENT_USER SERVER s1 OPTIONS (aws_access_key_id 'AKIDEXAMPLE');
\echo :LAST_ERROR_SQLSTATE
CREATE USER MAPPING FOR CURRENT_USER SERVER s1 OPTIONS (aws_secret_access_key 'SECRET-ALONE');
\echo :LAST_ERROR_SQLSTATE
CREATE USER MAPPING FOR CURRENT_USER SERVER s1 OPTIONS (aws_access_key_id 'AKIDEXAMPLE', aws_secret_access_key 'SECRET-1', profile 'dev');
\echo :LAST_ERROR_SQLSTATE
CREATE USER MAPPING FOR CURRENT_USER SERVER s1 OPTIONS (aws_session_token 'TOKEN-ALONE');
\echo :LAST_ERROR_SQLSTATE
CREATE USER MAPPING FOR CURRENT_USER SERVER s1 OPTIONS (external_id 'x');
\echo :LAST_ERROR_SQLSTATE
CREATE USER MAPPING FOR CURRENT_USER SERVER s1 OPTIONS (role_arn 'arn:aws:iam::12:role/x');
\echo :LAST_ERROR_SQLSTATE
CREATE USER MAPPING FOR CURRENT_USER SERVER s1 OPTIONS (region 'us-east-1');
\echo :LAST_ERROR_SQLSTATE
CREATE USER MAPPING FOR CURRENT_USER SERVER s1 OPTIONS (aws_access_key_id 'AKIDEXAMPLE', aws_secret_access_key 'SECRET-OK');
-- Nobody but the mapping's user and superusers sees the options; they are never echoed in errors.
SELECT count(*) FROM pg_user_mappings WHERE srvname = 's1';

-- Foreign tables: function_name is required and parsed; defaults are checked.
CREATE FOREIGN TABLE t (payload jsonb) SERVER s1;
\echo :LAST_ERROR_SQLSTATE
CREATE FOREIGN TABLE t (payload jsonb) SERVER s1 OPTIONS (function_name 'a:b:c');
\echo :LAST_ERROR_SQLSTATE
CREATE FOREIGN TABLE t (payload jsonb) SERVER s1 OPTIONS (function_name 'arn:aws:s3:us-east-1:123456789012:function:f');
\echo :LAST_ERROR_SQLSTATE
CREATE FOREIGN TABLE t (payload jsonb) SERVER s1 OPTIONS (function_name 'f:prod', qualifier 'dev');
\echo :LAST_ERROR_SQLSTATE
CREATE FOREIGN TABLE t (payload jsonb) SERVER s1 OPTIONS (function_name 'f', invocation_type 'event');
\echo :LAST_ERROR_SQLSTATE
CREATE FOREIGN TABLE t (payload jsonb) SERVER s1 OPTIONS (function_name 'f', log_type 'TAIL');
\echo :LAST_ERROR_SQLSTATE
CREATE FOREIGN TABLE t (payload jsonb) SERVER s1 OPTIONS (function_name 'f', function_errors 'ignore');
\echo :LAST_ERROR_SQLSTATE
CREATE FOREIGN TABLE t (payload jsonb) SERVER s1 OPTIONS (function_name 'f', startup_cost '10');
\echo :LAST_ERROR_SQLSTATE
CREATE FOREIGN TABLE t (payload jsonb) SERVER s1 OPTIONS (function_name 'f', aws_access_key_id 'AKIDEXAMPLE');
\echo :LAST_ERROR_SQLSTATE
CREATE FOREIGN TABLE t (payload jsonb) SERVER s1 OPTIONS (function_name 'f', qualifier 'bad qualifier');
\echo :LAST_ERROR_SQLSTATE

-- Columns: unknown names and wrong types are refused when the table is
-- created or altered (an event trigger) ...
CREATE FOREIGN TABLE badcol (payload jsonb, result jsonb) SERVER s1 OPTIONS (function_name 'echo');
\echo :LAST_ERROR_SQLSTATE
CREATE FOREIGN TABLE badtype (payload json, response jsonb) SERVER s1 OPTIONS (function_name 'echo');
\echo :LAST_ERROR_SQLSTATE
CREATE FOREIGN TABLE goodcols (response json, payload jsonb) SERVER s1 OPTIONS (function_name 'echo');
ALTER FOREIGN TABLE goodcols ADD COLUMN status_code bigint;
\echo :LAST_ERROR_SQLSTATE
ALTER FOREIGN TABLE goodcols ADD COLUMN status_code integer, ADD COLUMN function_error text;
-- Tables of other wrappers are not checked.
CREATE FOREIGN DATA WRAPPER other_fdw;
CREATE SERVER other FOREIGN DATA WRAPPER other_fdw;
CREATE FOREIGN TABLE other_table (anything int) SERVER other;
DROP FOREIGN DATA WRAPPER other_fdw CASCADE;
-- ... and again when the table is used, should a table have escaped the check.
ALTER EVENT TRIGGER lambda_fdw_check_columns DISABLE;
CREATE FOREIGN TABLE badcol (payload jsonb, result jsonb) SERVER s1 OPTIONS (function_name 'echo');
CREATE FOREIGN TABLE badtype2 (payload jsonb, status_code bigint) SERVER s1 OPTIONS (function_name 'echo');
ALTER EVENT TRIGGER lambda_fdw_check_columns ENABLE;
SELECT * FROM badcol WHERE payload = '{}';
\echo :LAST_ERROR_SQLSTATE
SELECT status_code FROM badtype2 WHERE payload = '{}';
\echo :LAST_ERROR_SQLSTATE
-- A full ARN in another region than the server's: refused when created ...
CREATE FOREIGN TABLE otherregion (payload jsonb, response jsonb) SERVER s1
  OPTIONS (function_name 'arn:aws:lambda:eu-west-1:000000000000:function:echo');
\echo :LAST_ERROR_SQLSTATE
-- ... and when used, if the server's region changed since.
CREATE FOREIGN TABLE otherregion (payload jsonb, response jsonb) SERVER s1
  OPTIONS (function_name 'arn:aws:lambda:us-east-1:000000000000:function:echo');
ALTER SERVER s1 OPTIONS (SET region 'eu-central-1');
SELECT response FROM otherregion WHERE payload = '{}';
\echo :LAST_ERROR_SQLSTATE
ALTER SERVER s1 OPTIONS (SET region 'us-east-1');
DROP FOREIGN TABLE badcol, badtype2, goodcols, otherregion;
DROP SERVER s1 CASCADE;
