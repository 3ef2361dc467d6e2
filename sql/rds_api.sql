-- The Amazon RDS for PostgreSQL API, signature for signature: the schemas
-- aws_commons and aws_lambda, the ARN composite type, its constructor, and the
-- four aws_lambda.invoke overloads (text name or ARN composite, json or jsonb).
CREATE SCHEMA aws_commons;
CREATE SCHEMA aws_lambda;

CREATE TYPE aws_commons._lambda_function_arn_1 AS (function_name text, region text);

CREATE FUNCTION aws_commons.create_lambda_function_arn(function_name text, region text DEFAULT NULL)
  RETURNS aws_commons._lambda_function_arn_1
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT ROW($1, $2)::aws_commons._lambda_function_arn_1 $$;

CREATE FUNCTION aws_lambda.invoke(
  IN function_name text,
  IN payload json,
  IN region text DEFAULT NULL,
  IN invocation_type text DEFAULT 'RequestResponse',
  IN log_type text DEFAULT 'None',
  IN context json DEFAULT NULL,
  IN qualifier varchar(128) DEFAULT NULL,
  OUT status_code int,
  OUT payload json,
  OUT executed_version text,
  OUT log_result text)
  RETURNS record
  LANGUAGE c VOLATILE PARALLEL UNSAFE
  AS 'MODULE_PATHNAME', 'lambda_fdw_invoke_text_json';

CREATE FUNCTION aws_lambda.invoke(
  IN function_name aws_commons._lambda_function_arn_1,
  IN payload json,
  IN invocation_type text DEFAULT 'RequestResponse',
  IN log_type text DEFAULT 'None',
  IN context json DEFAULT NULL,
  IN qualifier varchar(128) DEFAULT NULL,
  OUT status_code int,
  OUT payload json,
  OUT executed_version text,
  OUT log_result text)
  RETURNS record
  LANGUAGE c VOLATILE PARALLEL UNSAFE
  AS 'MODULE_PATHNAME', 'lambda_fdw_invoke_arn_json';

CREATE FUNCTION aws_lambda.invoke(
  IN function_name text,
  IN payload jsonb,
  IN region text DEFAULT NULL,
  IN invocation_type text DEFAULT 'RequestResponse',
  IN log_type text DEFAULT 'None',
  IN context jsonb DEFAULT NULL,
  IN qualifier varchar(128) DEFAULT NULL,
  OUT status_code int,
  OUT payload jsonb,
  OUT executed_version text,
  OUT log_result text)
  RETURNS record
  LANGUAGE c VOLATILE PARALLEL UNSAFE
  AS 'MODULE_PATHNAME', 'lambda_fdw_invoke_text_jsonb';

CREATE FUNCTION aws_lambda.invoke(
  IN function_name aws_commons._lambda_function_arn_1,
  IN payload jsonb,
  IN invocation_type text DEFAULT 'RequestResponse',
  IN log_type text DEFAULT 'None',
  IN context jsonb DEFAULT NULL,
  IN qualifier varchar(128) DEFAULT NULL,
  OUT status_code int,
  OUT payload jsonb,
  OUT executed_version text,
  OUT log_result text)
  RETURNS record
  LANGUAGE c VOLATILE PARALLEL UNSAFE
  AS 'MODULE_PATHNAME', 'lambda_fdw_invoke_arn_jsonb';

-- As on RDS, only the installing superuser can invoke until granted:
--   GRANT USAGE ON SCHEMA aws_lambda TO u;
--   GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA aws_lambda TO u;
REVOKE ALL ON SCHEMA aws_lambda FROM PUBLIC;
REVOKE ALL ON FUNCTION aws_lambda.invoke(text, json, text, text, text, json, varchar) FROM PUBLIC;
REVOKE ALL ON FUNCTION aws_lambda.invoke(aws_commons._lambda_function_arn_1, json, text, text, json, varchar) FROM PUBLIC;
REVOKE ALL ON FUNCTION aws_lambda.invoke(text, jsonb, text, text, text, jsonb, varchar) FROM PUBLIC;
REVOKE ALL ON FUNCTION aws_lambda.invoke(aws_commons._lambda_function_arn_1, jsonb, text, text, jsonb, varchar) FROM PUBLIC;
-- The ARN type and its constructor have no side effects: usable by everyone.
GRANT USAGE ON SCHEMA aws_commons TO PUBLIC;
