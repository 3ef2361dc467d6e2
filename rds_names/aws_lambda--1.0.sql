-- aws_lambda 1.0: the Amazon RDS for PostgreSQL extension name. Installing
-- it creates nothing: the aws_lambda schema and its four invoke functions
-- are lambda_fdw's, which this extension requires through aws_commons. See
-- docs/rds.md, "The extension names".
\echo Use "CREATE EXTENSION aws_lambda" to load this file. \quit
