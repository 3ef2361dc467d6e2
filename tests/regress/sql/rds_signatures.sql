-- aws_lambda.invoke and aws_commons.create_lambda_function_arn have the exact
-- signatures of RDS for PostgreSQL's reference: declared here from the
-- reference text in a scratch schema, and compared with ours.
\set VERBOSITY default
SELECT nspname FROM pg_namespace WHERE nspname IN ('aws_commons', 'aws_lambda') ORDER BY 1;
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = 'aws_commons._lambda_function_arn_1'::regclass AND attnum > 0 ORDER BY attnum;

CREATE SCHEMA rds_reference;
CREATE FUNCTION rds_reference.invoke(
  IN function_name TEXT, IN payload JSON, IN region TEXT DEFAULT NULL,
  IN invocation_type TEXT DEFAULT 'RequestResponse', IN log_type TEXT DEFAULT 'None',
  IN context JSON DEFAULT NULL, IN qualifier VARCHAR(128) DEFAULT NULL,
  OUT status_code INT, OUT payload JSON, OUT executed_version TEXT, OUT log_result TEXT)
  LANGUAGE sql AS $$ SELECT NULL::int, NULL::json, NULL::text, NULL::text $$;
CREATE FUNCTION rds_reference.invoke(
  IN function_name aws_commons._lambda_function_arn_1, IN payload JSON,
  IN invocation_type TEXT DEFAULT 'RequestResponse', IN log_type TEXT DEFAULT 'None',
  IN context JSON DEFAULT NULL, IN qualifier VARCHAR(128) DEFAULT NULL,
  OUT status_code INT, OUT payload JSON, OUT executed_version TEXT, OUT log_result TEXT)
  LANGUAGE sql AS $$ SELECT NULL::int, NULL::json, NULL::text, NULL::text $$;
CREATE FUNCTION rds_reference.invoke(
  IN function_name TEXT, IN payload JSONB, IN region TEXT DEFAULT NULL,
  IN invocation_type TEXT DEFAULT 'RequestResponse', IN log_type TEXT DEFAULT 'None',
  IN context JSONB DEFAULT NULL, IN qualifier VARCHAR(128) DEFAULT NULL,
  OUT status_code INT, OUT payload JSONB, OUT executed_version TEXT, OUT log_result TEXT)
  LANGUAGE sql AS $$ SELECT NULL::int, NULL::jsonb, NULL::text, NULL::text $$;
CREATE FUNCTION rds_reference.invoke(
  IN function_name aws_commons._lambda_function_arn_1, IN payload JSONB,
  IN invocation_type TEXT DEFAULT 'RequestResponse', IN log_type TEXT DEFAULT 'None',
  IN context JSONB DEFAULT NULL, IN qualifier VARCHAR(128) DEFAULT NULL,
  OUT status_code INT, OUT payload JSONB, OUT executed_version TEXT, OUT log_result TEXT
  ) LANGUAGE sql AS $$ SELECT NULL::int, NULL::jsonb, NULL::text, NULL::text $$;
CREATE FUNCTION rds_reference.create_lambda_function_arn(function_name TEXT, region TEXT DEFAULT NULL)
  RETURNS aws_commons._lambda_function_arn_1
  LANGUAGE sql AS $$ SELECT NULL::aws_commons._lambda_function_arn_1 $$;

CREATE VIEW signatures AS
SELECT n.nspname AS schema, p.proname AS name,
       pg_get_function_arguments(p.oid) AS arguments, pg_get_function_result(p.oid) AS result
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname IN ('aws_lambda', 'aws_commons', 'rds_reference');

-- Every reference signature has an identical one of ours, and no more.
SELECT r.name, r.arguments, r.result FROM signatures r
 WHERE r.schema = 'rds_reference'
   AND NOT EXISTS (SELECT 1 FROM signatures o WHERE o.schema IN ('aws_lambda', 'aws_commons')
                     AND o.name = r.name AND o.arguments = r.arguments AND o.result = r.result);
SELECT o.schema, o.name, o.arguments, o.result FROM signatures o
 WHERE o.schema IN ('aws_lambda', 'aws_commons')
   AND NOT EXISTS (SELECT 1 FROM signatures r WHERE r.schema = 'rds_reference'
                     AND o.name = r.name AND o.arguments = r.arguments AND o.result = r.result);
-- Ours, in full.
SELECT schema, name, arguments, result FROM signatures WHERE schema <> 'rds_reference' ORDER BY 1, 2, 3;

-- VOLATILE and PARALLEL UNSAFE: invoking has side effects.
SELECT p.proname, p.provolatile, p.proparallel, p.proisstrict, l.lanname
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'aws_lambda'::regnamespace ORDER BY pg_get_function_arguments(p.oid);

DROP VIEW signatures;
DROP SCHEMA rds_reference CASCADE;

-- create_lambda_function_arn builds the composite; the region may be omitted.
SELECT aws_commons.create_lambda_function_arn('my-function', 'us-west-1');
SELECT aws_commons.create_lambda_function_arn('arn:aws:lambda:us-west-2:555555555555:function:my-function');
SELECT (aws_commons.create_lambda_function_arn('my-function', 'us-west-1')).*;
