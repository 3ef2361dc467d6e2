-- The foreign data wrapper. Its handler and validator functions are created
-- by the Rust code (lambda_fdw_handler, lambda_fdw_validator).
CREATE FOREIGN DATA WRAPPER lambda_fdw
  HANDLER lambda_fdw_handler
  VALIDATOR lambda_fdw_validator;
COMMENT ON FOREIGN DATA WRAPPER lambda_fdw IS 'Invoke AWS Lambda functions: one foreign table per function';
