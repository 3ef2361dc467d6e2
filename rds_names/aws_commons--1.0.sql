-- aws_commons 1.0: the Amazon RDS for PostgreSQL extension name. Installing
-- it creates nothing: the objects RDS's aws_commons holds for Lambda (the
-- aws_commons schema, aws_commons._lambda_function_arn_1 and
-- aws_commons.create_lambda_function_arn) are lambda_fdw's, which this
-- extension requires. See docs/rds.md, "The extension names".
\echo Use "CREATE EXTENSION aws_commons" to load this file. \quit
